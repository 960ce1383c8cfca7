//! kube-apiserver: the Kubernetes API over HTTPS, stored in an etcd v3 compatible store.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod catalog;
pub mod certs;
pub mod crd;
pub mod crd_sync;
pub mod discovery;
pub mod error;
pub mod fieldmanager;
pub mod handlers;
pub mod http;
pub mod impersonation;
pub mod kubelet;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod scale;
pub mod selector;
pub mod server;
pub mod serviceaccount;
pub mod source;
pub mod storage;
pub mod table;
pub mod typed;

pub use options::{Config, Options};
pub use server::{run, start, Running};

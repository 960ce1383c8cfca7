//! kube-apiserver: the Kubernetes API over HTTPS, stored in an etcd v3 compatible store.

pub mod error;
pub mod object;
pub mod registry;
pub mod resources;
pub mod typed;

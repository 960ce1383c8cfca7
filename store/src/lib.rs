//! kube-store: an MVCC key-value store on sled, replicated with Raft (openraft), serving the
//! etcd v3 gRPC API. Usable as a library: the apiserver embeds a single member in-process.

pub mod client;
pub mod metrics;
pub mod mvcc;
pub mod options;
pub mod raft;
pub mod server;

pub use client::{GrpcStore, KvStore};
pub use server::EmbeddedStore;

//! Generated protobuf types and gRPC stubs: etcd's `mvccpb` and `etcdserverpb`, and `storepb`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// etcd's storage data model: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's v3 client API: KV, Watch, Lease, Cluster and Maintenance.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// kube-store internals: the replicated command and the Raft peer service.
pub mod storepb {
    tonic::include_proto!("storepb");
}

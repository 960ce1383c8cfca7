//! The etcd v3 gRPC services and the member that ties MVCC, Raft and leases together.

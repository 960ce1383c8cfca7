//! Raft replication with openraft: sled log storage, the state machine over MVCC, peer transport.
//!
//! CONTRACT (the server module builds against these; keep them stable):
//! - [`start`] opens the Raft log in the given sled db, wraps [`crate::mvcc::Mvcc`] as the
//!   state machine, serves nothing itself, and returns a [`RaftNode`].
//! - [`peer_service`] builds the tonic `RaftPeer` service: Raft RPCs go to openraft, the
//!   forwarding RPCs go to the [`ForwardHandler`] the server module provides.
//! - [`RaftNode::peer`] gives a cached gRPC client to another member's peer service.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use proto::etcdserverpb as pb;
use proto::storepb::{self, InternalRaftRequest, InternalRaftResponse};
use serde::{Deserialize, Serialize};

use crate::mvcc::Mvcc;

/// A member's Raft id: etcd's member ID, derived from its peer URLs (see [`member_id`]).
pub type NodeId = u64;

/// What Raft knows of a member: etcd's `Member` minus the id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// etcd-style member id: a hash of the sorted peer URLs and the cluster token. Every member
/// computes the same id for the same URLs, so a member added with `member add` knows its id.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> NodeId {
    use sha2::{Digest, Sha256};
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha256::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(cluster_token.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A log entry's payload: one etcd request (bincode carries it as protobuf bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request(pub InternalRaftRequest);

/// What applying a [`Request`] produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response(pub InternalRaftResponse);

macro_rules! prost_serde {
    ($t:ty, $inner:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&prost::Message::encode_to_vec(&self.0))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes: Vec<u8> = serde::de::Deserialize::deserialize(d)?;
                let inner = <$inner as prost::Message>::decode(bytes.as_slice())
                    .map_err(serde::de::Error::custom)?;
                Ok(Self(inner))
            }
        }
    };
}
prost_serde!(Request, InternalRaftRequest);
prost_serde!(Response, InternalRaftResponse);

openraft::declare_raft_types!(
    /// openraft type configuration of kube-store.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
);

/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Errors starting or driving the Raft member.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("mvcc: {0}")]
    Mvcc(#[from] crate::mvcc::MvccError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("transport: {0}")]
    Transport(String),
}

/// Peer transport TLS (PEM file paths); `None` means plaintext http peers.
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub trusted_ca_file: std::path::PathBuf,
}

/// How to start this member's Raft.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: NodeId,
    /// The initial cluster (id -> member), used only when `new_cluster` and the log is empty.
    pub initial_members: BTreeMap<NodeId, Member>,
    /// `--initial-cluster-state new`: initialize with `initial_members` if the log is empty.
    /// `existing`: wait to be contacted by the leader (added with `member add`).
    pub new_cluster: bool,
    pub peer_tls: Option<PeerTls>,
    /// Take a snapshot (and purge the log before it) every this many applied entries.
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
}

/// The server-side handler for RPCs a follower forwards to the leader.
#[tonic::async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    async fn propose(&self, req: InternalRaftRequest) -> Result<InternalRaftResponse, tonic::Status>;
    async fn read_index(&self) -> Result<storepb::ReadIndexResponse, tonic::Status>;
    async fn lease_keep_alive(
        &self,
        req: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, tonic::Status>;
    async fn lease_time_to_live(
        &self,
        req: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, tonic::Status>;
    async fn member_add(
        &self,
        req: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse, tonic::Status>;
    async fn member_remove(
        &self,
        req: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, tonic::Status>;
}

/// A running Raft member.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    pub mvcc: Mvcc,
    _inner: Arc<()>,
}

impl RaftNode {
    /// A gRPC client to `id`'s peer service (cached channel), for forwarding.
    pub fn peer(
        &self,
        _id: NodeId,
    ) -> Result<storepb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>, RaftError> {
        unimplemented!("raft in progress")
    }

    /// Waits until the local state machine has applied `index` (for ReadIndex reads).
    pub async fn wait_applied(&self, _index: u64) -> Result<(), RaftError> {
        unimplemented!()
    }
}

/// Opens the log in `db` (trees prefixed "raft"), builds openraft over it and `mvcc`, and
/// initializes the cluster if `cfg.new_cluster` and the log is empty.
pub async fn start(_cfg: RaftConfig, _db: sled::Db, _mvcc: Mvcc) -> Result<RaftNode, RaftError> {
    unimplemented!("raft in progress")
}

/// The tonic `RaftPeer` service for this member.
pub fn peer_service(
    _node: RaftNode,
    _forward: Arc<dyn ForwardHandler>,
) -> storepb::raft_peer_server::RaftPeerServer<impl storepb::raft_peer_server::RaftPeer> {
    storepb::raft_peer_server::RaftPeerServer::new(Unimplemented)
}

struct Unimplemented;
#[tonic::async_trait]
impl storepb::raft_peer_server::RaftPeer for Unimplemented {
    async fn append_entries(&self, _r: tonic::Request<storepb::RaftMessage>) -> Result<tonic::Response<storepb::RaftMessage>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn vote(&self, _r: tonic::Request<storepb::RaftMessage>) -> Result<tonic::Response<storepb::RaftMessage>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn install_snapshot(&self, _r: tonic::Request<storepb::RaftMessage>) -> Result<tonic::Response<storepb::RaftMessage>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn propose(&self, _r: tonic::Request<InternalRaftRequest>) -> Result<tonic::Response<InternalRaftResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn read_index(&self, _r: tonic::Request<storepb::ReadIndexRequest>) -> Result<tonic::Response<storepb::ReadIndexResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn lease_keep_alive(&self, _r: tonic::Request<pb::LeaseKeepAliveRequest>) -> Result<tonic::Response<pb::LeaseKeepAliveResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn lease_time_to_live(&self, _r: tonic::Request<pb::LeaseTimeToLiveRequest>) -> Result<tonic::Response<pb::LeaseTimeToLiveResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn member_add(&self, _r: tonic::Request<pb::MemberAddRequest>) -> Result<tonic::Response<pb::MemberAddResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
    async fn member_remove(&self, _r: tonic::Request<pb::MemberRemoveRequest>) -> Result<tonic::Response<pb::MemberRemoveResponse>, tonic::Status> { Err(tonic::Status::unimplemented("")) }
}

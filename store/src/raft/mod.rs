//! Raft replication with openraft: the log in its own write-ahead log, the state machine over MVCC, peer transport.
//!
//! CONTRACT (the server module builds against these; keep them stable):
//! - [`start`] opens the Raft log in [`RaftConfig::wal_dir`], wraps [`crate::mvcc::Mvcc`] as the
//!   state machine, serves nothing itself, and returns a [`RaftNode`].
//! - [`peer_service`] builds the tonic `RaftPeer` service: Raft RPCs go to openraft, the
//!   forwarding RPCs go to the [`ForwardHandler`] the server module provides.
//! - [`RaftNode::peer`] gives a cached gRPC client to another member's peer service.
//!
//! For the server: a write on a non-leader fails with `ClientWriteError::ForwardToLeader`
//! (`err.forward_to_leader()`); forward it with [`RaftNode::peer`] to
//! [`RaftNode::current_leader`]. Linearizable reads use `raft.ensure_linearizable()`. etcd
//! `member add` maps to `add_learner` then `change_membership(AddVoterIds)`, `member remove` to
//! `change_membership(RemoveVoters)` (learners: `RemoveNodes`).

mod log_store;
mod network;
mod peer;
mod state_machine;
mod storage;
mod wal;

/// Log entries for the storage tests.
#[cfg(test)]
mod test_log {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use super::{NodeId, TypeConfig};

    pub fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    pub fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    pub fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }
}

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb as pb;
use proto::storepb::{self, InternalRaftRequest, InternalRaftResponse};
use serde::{Deserialize, Serialize};

use crate::mvcc::Mvcc;

pub use self::log_store::LogStore;
pub use self::network::{Channels, NetworkFactory, PeerNetwork};
pub use self::peer::PeerService;
pub use self::state_machine::{SnapshotBuilder, StateBackend, StateMachine};
pub use self::storage::open_storage;

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
    /// The write-ahead log's directory (etcd's `member/wal`).
    pub wal_dir: std::path::PathBuf,
}

/// The server-side handler for RPCs a follower forwards to the leader.
#[tonic::async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    async fn propose(
        &self,
        req: InternalRaftRequest,
    ) -> Result<InternalRaftResponse, tonic::Status>;
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

/// How long [`RaftNode::wait_applied`] waits before giving up.
pub const WAIT_APPLIED_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Raft member.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    pub mvcc: Mvcc,
    channels: Channels,
}

impl RaftNode {
    /// A gRPC client to `id`'s peer service (cached channel), for forwarding.
    pub fn peer(
        &self,
        id: NodeId,
    ) -> Result<storepb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>, RaftError>
    {
        let member = self
            .members()
            .remove(&id)
            .ok_or_else(|| RaftError::Transport(format!("member {id:x} is not in the cluster")))?;
        let url = member
            .0
            .peer_urls
            .first()
            .ok_or_else(|| RaftError::Transport(format!("member {id:x} has no peer url")))?;
        self.channels.client(id, url)
    }

    /// Waits until the local state machine has applied `index` (for ReadIndex reads).
    pub async fn wait_applied(&self, index: u64) -> Result<(), RaftError> {
        self.raft
            .wait(Some(WAIT_APPLIED_TIMEOUT))
            .applied_index_at_least(Some(index), "wait_applied")
            .await
            .map(|_| ())
            .map_err(|e| RaftError::Raft(format!("waiting for applied index {index}: {e}")))
    }

    /// The leader this member currently follows (or is), if known. From the server metrics,
    /// which change only with leadership and membership: every response header reads this, and
    /// the full metrics are rewritten on every append and apply.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.server_metrics().borrow().current_leader
    }

    /// The current Raft term.
    pub fn current_term(&self) -> u64 {
        self.raft
            .server_metrics()
            .borrow()
            .vote
            .leader_id()
            .get_term()
    }

    /// The index of the last entry applied to the state machine (0 if none).
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The members of the latest membership config (including not yet committed changes),
    /// each with whether it is a voter (`false`: a learner).
    pub fn members(&self) -> BTreeMap<NodeId, (Member, bool)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, (node.clone(), voters.contains(id))))
            .collect()
    }
}

/// Opens the log in `db` (trees prefixed "raft"), builds openraft over it and `mvcc`, and
/// initializes the cluster if `cfg.new_cluster` and the log is empty.
pub async fn start(cfg: RaftConfig, db: sled::Db, mvcc: Mvcc) -> Result<RaftNode, RaftError> {
    let (raft, channels) = start_raft(&cfg, &db, mvcc.clone()).await?;
    Ok(RaftNode {
        id: cfg.id,
        raft,
        mvcc,
        channels,
    })
}

/// The openraft configuration for `cfg`.
pub fn openraft_config(cfg: &RaftConfig) -> Result<openraft::Config, RaftError> {
    // openraft makes a follower that saw a leader wait its leader lease (election_timeout_max)
    // plus a random election timeout before campaigning. With etcd's [T, 2T) window that is
    // 3-4 T; [T/2, T] gives 1.5-2 T, about etcd's failover time. Reads stay linearizable: they
    // confirm leadership with a quorum round, not with the lease.
    let election = cfg
        .election_timeout_ms
        .max(2 * cfg.heartbeat_interval_ms + 2);
    let config = openraft::Config {
        cluster_name: "kube-store".to_string(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: election / 2,
        election_timeout_max: election,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count.max(1)),
        // Like etcd's SnapshotCatchUpEntries: a slightly lagging follower catches up from the
        // log instead of needing a whole snapshot.
        max_in_snapshot_log_to_keep: cfg.snapshot_count.clamp(1, 5000),
        max_payload_entries: 256,
        // Per snapshot chunk (3 MiB), generous for TLS on a loaded machine.
        install_snapshot_timeout: 10_000.max(election),
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| RaftError::Raft(format!("invalid raft config: {e}")))
}

/// Builds openraft over any state backend; `start` with [`Mvcc`] is the production path.
pub(crate) async fn start_raft<B: StateBackend>(
    cfg: &RaftConfig,
    db: &sled::Db,
    backend: B,
) -> Result<(Raft, Channels), RaftError> {
    let config = Arc::new(openraft_config(cfg)?);
    let channels = Channels::new(cfg.peer_tls.as_ref())?;
    let (log_store, state_machine) = open_storage(db, &cfg.wal_dir, backend)
        .map_err(|e| RaftError::Raft(format!("opening raft storage: {e}")))?;
    let network = NetworkFactory {
        id: cfg.id,
        channels: channels.clone(),
    };
    let raft = openraft::Raft::new(cfg.id, config, network, log_store, state_machine)
        .await
        .map_err(|e| RaftError::Raft(format!("starting raft: {e}")))?;
    if cfg.new_cluster {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        if !initialized {
            match raft.initialize(cfg.initial_members.clone()).await {
                Ok(()) => {}
                // Another initial member initialized first and already contacted us.
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(_),
                )) => {}
                Err(e) => return Err(RaftError::Raft(format!("initializing cluster: {e}"))),
            }
        }
    }
    Ok((raft, channels))
}

/// The tonic `RaftPeer` service for this member.
pub fn peer_service(
    node: RaftNode,
    forward: Arc<dyn ForwardHandler>,
) -> storepb::raft_peer_server::RaftPeerServer<impl storepb::raft_peer_server::RaftPeer> {
    storepb::raft_peer_server::RaftPeerServer::new(PeerService {
        raft: node.raft,
        forward,
    })
    .max_decoding_message_size(network::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(network::MAX_MESSAGE_BYTES)
}

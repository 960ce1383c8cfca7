//! Multi-version key-value state on sled: one global revision, per-key history, leases, compaction.
//!
//! CONTRACT (other modules build against these signatures; keep them stable):
//! - Writes only come through [`Mvcc::apply`], called by the Raft state machine in log order.
//! - Reads ([`Mvcc::range`], [`Mvcc::events`]) may run concurrently with apply.
//! - After every applied batch, subscribers get each new revision's events, prev_kv filled.

use std::sync::Arc;

use proto::etcdserverpb as pb;
use proto::mvccpb;
use proto::storepb::{InternalRaftRequest, InternalRaftResponse};

/// What went wrong reading or writing MVCC state.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

/// Tunables of the MVCC store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Logical size budget (bytes of stored keys + values + history); over it puts fail with
    /// NOSPACE and the NOSPACE alarm is raised. 0 means the default, 2 GiB.
    pub quota_backend_bytes: u64,
}

/// One entry handed to [`Mvcc::apply`]: the Raft log index and the request, or `None` for
/// entries that carry no request (blank, membership) but still advance the applied index.
pub struct ApplyEntry<'a> {
    pub index: u64,
    pub request: Option<&'a InternalRaftRequest>,
}

/// The events of one revision, in the order the request produced them; `prev_kv` is always
/// filled where a previous version existed (the watch layer strips it when not asked for).
#[derive(Debug, Clone)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<mvccpb::Event>,
}

/// What subscribers receive.
#[derive(Debug, Clone)]
pub enum Notification {
    /// Revisions applied, ascending, contiguous with what came before.
    Events(Arc<Vec<RevisionEvents>>),
    /// The state was replaced by a snapshot: watchers must resync from history at their next
    /// revision (and are cancelled with compact_revision if it was compacted).
    Reset,
}

/// A granted lease as stored in the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
    /// Keys attached to it, sorted.
    pub keys: Vec<Vec<u8>>,
}

/// The MVCC store. Cheap to clone.
#[derive(Clone)]
pub struct Mvcc {
    _inner: Arc<()>,
}

impl Mvcc {
    /// Opens or creates the store in `db` and rebuilds the in-memory key index.
    pub fn open(_db: &sled::Db, _opts: Options) -> Result<Self, MvccError> {
        unimplemented!("mvcc in progress")
    }

    /// The current (newest) revision; 1 on an empty store, as in etcd.
    pub fn revision(&self) -> i64 {
        unimplemented!()
    }

    /// The revision of the last compaction; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        unimplemented!()
    }

    /// Serves a Range at `req.revision` (0 = current). The header carries only `revision`
    /// (the current revision); the caller fills cluster_id, member_id and raft_term.
    pub fn range(&self, _req: &pb::RangeRequest) -> Result<pb::RangeResponse, MvccError> {
        unimplemented!()
    }

    /// Applies entries in order, atomically in one sled batch together with `meta` (an opaque
    /// blob of the Raft layer: last applied log id and membership). Returns one response per
    /// entry (`InternalRaftResponse::default()` for entries without a request). A request that
    /// MVCC rules reject (unknown lease, NOSPACE, ...) gets an error response and changes nothing.
    /// Does not flush; the caller decides when to call [`Mvcc::flush`].
    pub fn apply(
        &self,
        _entries: &[ApplyEntry<'_>],
        _meta: &[u8],
    ) -> Result<Vec<InternalRaftResponse>, MvccError> {
        unimplemented!()
    }

    /// The `meta` blob stored by the last apply or restore, if any.
    pub fn meta(&self) -> Result<Option<Vec<u8>>, MvccError> {
        unimplemented!()
    }

    /// Flushes everything applied so far to disk.
    pub fn flush(&self) -> Result<(), MvccError> {
        unimplemented!()
    }

    /// The whole state (history, leases, alarms, meta) as one self-describing blob.
    pub fn snapshot(&self) -> Result<Vec<u8>, MvccError> {
        unimplemented!()
    }

    /// Replaces the whole state with a blob from [`Mvcc::snapshot`] and sends `Reset`.
    pub fn restore(&self, _data: &[u8]) -> Result<(), MvccError> {
        unimplemented!()
    }

    /// History: every revision in `[from_rev, to_rev]` that changed a key, with its events
    /// (prev_kv filled). `Compacted` if `from_rev` <= the compact revision (and > 0).
    pub fn events(&self, _from_rev: i64, _to_rev: i64) -> Result<Vec<RevisionEvents>, MvccError> {
        unimplemented!()
    }

    /// Subscribes to what later applies produce.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notification> {
        unimplemented!()
    }

    /// A lease, if granted and not revoked.
    pub fn lease(&self, _id: i64) -> Option<LeaseInfo> {
        unimplemented!()
    }

    /// Every live lease.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        unimplemented!()
    }

    /// Active alarms (NOSPACE, CORRUPT) by member.
    pub fn alarms(&self) -> Vec<pb::AlarmMember> {
        unimplemented!()
    }

    /// A hash of all key-value history up to `revision` (0 = current) that is the same on every
    /// member with the same history, and the compact revision it started from.
    pub fn hash_kv(&self, _revision: i64) -> Result<(u32, i64), MvccError> {
        unimplemented!()
    }

    /// Bytes on disk (the sled database).
    pub fn db_size(&self) -> u64 {
        unimplemented!()
    }

    /// Logical bytes in use (what the quota is checked against).
    pub fn db_size_in_use(&self) -> u64 {
        unimplemented!()
    }
}

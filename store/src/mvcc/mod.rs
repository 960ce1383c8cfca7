//! Multi-version key-value state on sled: one global revision, per-key history, leases, compaction.
//!
//! CONTRACT (other modules build against these signatures; keep them stable):
//! - Writes only come through [`Mvcc::apply`], called by the Raft state machine in log order.
//! - Reads ([`Mvcc::range`], [`Mvcc::events`]) may run concurrently with apply.
//! - After every applied batch, subscribers get each new revision's events, prev_kv filled.

mod apply;
pub(crate) use apply::{Reject, COMPACTED, FUTURE_REV, LEASE_NOT_FOUND};
mod codec;
mod index;
mod overlay;
mod read;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use apply::Applier;
use index::State;
use overlay::{Backend, Overlay};
use read::Reader;

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
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Logical size budget (bytes of stored keys + values + history); over it puts fail with
    /// NOSPACE and the NOSPACE alarm is raised. 0 means the default, 2 GiB.
    pub quota_backend_bytes: u64,
}

/// The quota used when [`Options::quota_backend_bytes`] is 0.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

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
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    /// The sled tree and the applied writes not yet in it.
    backend: Backend,
    /// Index, leases, alarms and counters. Apply holds the write lock from the first request
    /// until the batch is in the overlay and subscribers are notified; reads hold the read
    /// lock (and take the overlay's after it).
    state: RwLock<State>,
    events: broadcast::Sender<Notification>,
    quota: u64,
    /// Copies of the counters in `state`, published once a batch is fully applied.
    rev: AtomicI64,
    compact_rev: AtomicI64,
    size: AtomicU64,
}

/// How many notifications a subscriber may fall behind before it lags (and resyncs).
const NOTIFY_CAPACITY: usize = 4096;
const TREE_NAME: &str = "mvcc";

impl Inner {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written: apply reloads
        // from sled on failure, so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, st: &State) {
        self.rev.store(st.rev, Ordering::Release);
        self.compact_rev.store(st.compact_rev, Ordering::Release);
        self.size.store(st.size, Ordering::Release);
    }

    fn reader<'a>(&'a self, overlay: &'a Overlay) -> Reader<'a> {
        Reader {
            tree: &self.backend.tree,
            overlay,
            pending: None,
        }
    }

    /// Reloads the state from sled after a failed apply (whose writes never reached the
    /// overlay): everything applied before it is written back first.
    fn reload(&self, st: &mut State) -> Result<(), MvccError> {
        self.backend.write_back()?;
        *st = State::load(&self.backend.tree)?;
        Ok(())
    }
}

impl Mvcc {
    /// Opens or creates the store in `db` and rebuilds the in-memory key index.
    pub fn open(db: &sled::Db, opts: Options) -> Result<Self, MvccError> {
        let tree = db.open_tree(TREE_NAME)?;
        let state = State::load(&tree)?;
        let (events, _) = broadcast::channel(NOTIFY_CAPACITY);
        let quota = match opts.quota_backend_bytes {
            0 => DEFAULT_QUOTA_BYTES,
            q => q,
        };
        let inner = Inner {
            db: db.clone(),
            backend: Backend::new(tree),
            rev: AtomicI64::new(state.rev),
            compact_rev: AtomicI64::new(state.compact_rev),
            size: AtomicU64::new(state.size),
            state: RwLock::new(state),
            events,
            quota,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The current (newest) revision; 1 on an empty store, as in etcd.
    pub fn revision(&self) -> i64 {
        self.inner.rev.load(Ordering::Acquire)
    }

    /// The revision of the last compaction; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.inner.compact_rev.load(Ordering::Acquire)
    }

    /// Serves a Range at `req.revision` (0 = current). The header carries only `revision`
    /// (the current revision); the caller fills cluster_id, member_id and raft_term.
    pub fn range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse, MvccError> {
        let st = self.inner.read_state();
        let ov = self.inner.backend.overlay();
        read::range(&st, &self.inner.reader(&ov), req, st.rev, st.rev)
    }

    /// Applies entries in order, atomically together with `meta` (an opaque blob of the Raft
    /// layer: last applied log id and membership). Returns one response per entry
    /// (`InternalRaftResponse::default()` for entries without a request). A request that MVCC
    /// rules reject (unknown lease, NOSPACE, ...) gets an error response and changes nothing.
    /// The writes go to the in-memory overlay (see `overlay.rs`); [`Mvcc::flush`] puts them in
    /// sled and on disk, and the caller decides when.
    pub fn apply(
        &self,
        entries: &[ApplyEntry<'_>],
        meta: &[u8],
    ) -> Result<Vec<InternalRaftResponse>, MvccError> {
        let inner = &*self.inner;
        let mut st = inner.write_state();
        // Counted under the write lock, which `subscribe` also takes: a subscriber either
        // gets all of this batch's events (with prev_kv) or none of them.
        let want_events = inner.events.receiver_count() > 0;
        let start_rev = st.rev;
        let ov = inner.backend.overlay();
        let mut applier = Applier::new(&mut st, inner.reader(&ov), want_events, inner.quota);
        let mut responses = Vec::with_capacity(entries.len());
        let mut failure = None;
        for entry in entries {
            let Some(req) = entry.request else {
                responses.push(InternalRaftResponse::default());
                continue;
            };
            match applier.apply_request(req) {
                Ok(resp) => responses.push(resp),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut batch = std::mem::take(&mut applier.batch);
        let revisions = std::mem::take(&mut applier.revisions);
        drop(applier);
        drop(ov);

        if let Some(e) = failure {
            inner.reload(&mut st)?;
            return Err(e);
        }
        batch.insert(codec::META_RAFT, meta);
        if st.rev != start_rev {
            batch.insert(codec::META_REVISION, &st.rev.to_be_bytes()[..]);
        }
        inner.backend.merge(batch);
        inner.publish(&st);
        if !revisions.is_empty() {
            // No receiver left is fine: nobody is watching.
            let _ = inner.events.send(Notification::Events(Arc::new(revisions)));
        }
        Ok(responses)
    }

    /// The `meta` blob stored by the last apply or restore, if any.
    pub fn meta(&self) -> Result<Option<Vec<u8>>, MvccError> {
        let _st = self.inner.read_state();
        let ov = self.inner.backend.overlay();
        Ok(match ov.get(codec::META_RAFT) {
            Some(v) => v.map(|v| v.to_vec()),
            None => self
                .inner
                .backend
                .tree
                .get(codec::META_RAFT)?
                .map(|v| v.to_vec()),
        })
    }

    /// Moves everything applied so far into sled and flushes it to disk.
    pub fn flush(&self) -> Result<(), MvccError> {
        self.inner.backend.write_back()?;
        self.inner.db.flush()?;
        Ok(())
    }

    /// The whole state (history, leases, alarms, meta) as one self-describing blob.
    pub fn snapshot(&self) -> Result<Vec<u8>, MvccError> {
        // Holding the state lock, no apply can add to the overlay once it is written back.
        let _st = self.inner.read_state();
        self.inner.backend.write_back()?;
        codec::encode_snapshot(self.inner.backend.tree.iter())
    }

    /// Replaces the whole state with a blob from [`Mvcc::snapshot`] and sends `Reset`.
    pub fn restore(&self, data: &[u8]) -> Result<(), MvccError> {
        let entries = codec::decode_snapshot(data)?;
        let inner = &*self.inner;
        let mut st = inner.write_state();
        // Written back first, so the overlay is empty and the tree is the whole old state.
        inner.backend.write_back()?;
        // One batch that removes every old key and inserts every new one: sled applies it
        // atomically, so a crash leaves either the old or the new state.
        let mut batch = sled::Batch::default();
        for key in inner.backend.tree.iter().keys() {
            batch.remove(key?);
        }
        for (k, v) in entries {
            batch.insert(k, v);
        }
        inner.backend.tree.apply_batch(batch)?;
        inner.db.flush()?;
        *st = State::load(&inner.backend.tree)?;
        inner.publish(&st);
        let _ = inner.events.send(Notification::Reset);
        Ok(())
    }

    /// History: every revision in `[from_rev, to_rev]` that changed a key, with its events
    /// (prev_kv filled). `Compacted` if `from_rev` is below the compact revision.
    pub fn events(&self, from_rev: i64, to_rev: i64) -> Result<Vec<RevisionEvents>, MvccError> {
        let st = self.inner.read_state();
        // Compaction at C keeps every record at C and later, so history from C is whole (etcd
        // likewise serves a watch that starts at the compact revision).
        if st.compact_rev > 0 && from_rev < st.compact_rev {
            return Err(MvccError::Compacted);
        }
        let ov = self.inner.backend.overlay();
        read::events(
            &st,
            &self.inner.reader(&ov),
            from_rev.max(1),
            to_rev.min(st.rev),
        )
    }

    /// Subscribes to what later applies produce.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notification> {
        let _st = self.inner.read_state();
        self.inner.events.subscribe()
    }

    /// A lease, if granted and not revoked.
    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        let st = self.inner.read_state();
        st.leases.get(&id).map(|l| LeaseInfo {
            id,
            ttl: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// Every live lease.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        let st = self.inner.read_state();
        st.leases
            .iter()
            .map(|(&id, l)| LeaseInfo {
                id,
                ttl: l.ttl,
                keys: l.keys.iter().cloned().collect(),
            })
            .collect()
    }

    /// The granted TTL of a live lease, without copying its keys (keep-alives need only this).
    pub fn lease_ttl(&self, id: i64) -> Option<i64> {
        self.inner.read_state().leases.get(&id).map(|l| l.ttl)
    }

    /// Every live lease as (id, granted TTL), without copying keys.
    pub fn lease_ttls(&self) -> Vec<(i64, i64)> {
        let st = self.inner.read_state();
        st.leases.iter().map(|(&id, l)| (id, l.ttl)).collect()
    }

    /// Active alarms (NOSPACE, CORRUPT) by member.
    pub fn alarms(&self) -> Vec<pb::AlarmMember> {
        apply::alarm_members(&self.inner.read_state())
    }

    /// A hash of all key-value history up to `revision` (0 = current) that is the same on every
    /// member with the same history, and the compact revision it started from.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), MvccError> {
        let st = self.inner.read_state();
        if revision > st.rev {
            return Err(MvccError::FutureRev);
        }
        if revision > 0 && revision < st.compact_rev {
            return Err(MvccError::Compacted);
        }
        let upto = if revision <= 0 { st.rev } else { revision };
        let mut hasher = crc32fast::Hasher::new();
        let start = codec::record_key(1, 0);
        let end = codec::record_key(upto.saturating_add(1), 0);
        let ov = self.inner.backend.overlay();
        for item in overlay::range(&self.inner.backend.tree, &ov, &start, &end) {
            let (k, v) = item?;
            hasher.update(&k);
            hasher.update(&v);
        }
        Ok((hasher.finalize(), st.compact_rev))
    }

    /// Bytes of the database: sled's size on disk, or the logical bytes in use when more of
    /// them are still in the overlay than sled has written (etcd's dbSize is never below
    /// dbSizeInUse).
    pub fn db_size(&self) -> u64 {
        let on_disk = self.inner.db.size_on_disk().unwrap_or(0);
        on_disk.max(self.db_size_in_use())
    }

    /// Logical bytes in use (what the quota is checked against).
    pub fn db_size_in_use(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }
}

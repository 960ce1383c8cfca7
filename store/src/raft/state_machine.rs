//! The Raft state machine over MVCC: applied log id and membership persist with the data, and
//! the current snapshot is kept in sled so it survives restarts.
// openraft's `StorageError` is the error type its storage traits require; its size is not ours.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use proto::storepb::InternalRaftResponse;
use tokio::sync::Mutex;

use super::{Member, NodeId, Response, TypeConfig};
use crate::mvcc::{ApplyEntry, Mvcc, MvccError};

/// The current snapshot: its metadata and its data, written together.
pub(crate) const SNAPSHOT_TREE: &str = "raft_snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// What the state machine needs from the data it replicates; [`Mvcc`] in production.
pub trait StateBackend: Clone + Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies entries and stores `meta` atomically with them.
    fn apply(
        &self,
        entries: &[ApplyEntry<'_>],
        meta: &[u8],
    ) -> Result<Vec<InternalRaftResponse>, Self::Error>;
    /// The `meta` of the last apply or restore.
    fn meta(&self) -> Result<Option<Vec<u8>>, Self::Error>;
    fn flush(&self) -> Result<(), Self::Error>;
    fn snapshot(&self) -> Result<Vec<u8>, Self::Error>;
    fn restore(&self, data: &[u8]) -> Result<(), Self::Error>;
}

impl StateBackend for Mvcc {
    type Error = MvccError;

    fn apply(
        &self,
        entries: &[ApplyEntry<'_>],
        meta: &[u8],
    ) -> Result<Vec<InternalRaftResponse>, MvccError> {
        Mvcc::apply(self, entries, meta)
    }
    fn meta(&self) -> Result<Option<Vec<u8>>, MvccError> {
        Mvcc::meta(self)
    }
    fn flush(&self) -> Result<(), MvccError> {
        Mvcc::flush(self)
    }
    fn snapshot(&self) -> Result<Vec<u8>, MvccError> {
        Mvcc::snapshot(self)
    }
    fn restore(&self, data: &[u8]) -> Result<(), MvccError> {
        Mvcc::restore(self, data)
    }
}

/// Last applied log id and membership: what the backend's `meta` blob holds (bincode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

impl Applied {
    fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        bincode::serialize(&(&self.last_applied, &self.membership))
    }

    fn decode(raw: &[u8]) -> Result<Self, bincode::Error> {
        let (last_applied, membership) = bincode::deserialize(raw)?;
        Ok(Self {
            last_applied,
            membership,
        })
    }
}

fn sm_err<E: std::error::Error + 'static>(
    f: fn(AnyError) -> StorageIOError<NodeId>,
    e: &E,
) -> StorageError<NodeId> {
    f(AnyError::new(e)).into()
}

/// The state-machine half of the Raft storage.
pub struct StateMachine<B: StateBackend> {
    backend: B,
    /// Mirrors the backend's meta. Held across apply and snapshot building so a snapshot's
    /// data and metadata describe the same log position.
    applied: Arc<Mutex<Applied>>,
    db: sled::Db,
    snapshots: sled::Tree,
    snapshot_seq: Arc<AtomicU64>,
    flusher: Flusher,
}

/// How long applied state may stay only in memory (and the write-ahead log) before it is
/// written to disk in the background. etcd commits its backend every 100 ms; a longer interval
/// means fewer, larger syncs competing with the log's, and only a longer replay after a crash.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes applied state to disk off the apply path, at most one flush at a time. Nothing waits
/// for it: the log is durable before anything is applied, and a restart re-applies from the
/// last flushed position. Snapshots flush synchronously before the log may be purged.
#[derive(Clone)]
struct Flusher {
    last: Arc<std::sync::Mutex<std::time::Instant>>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl Flusher {
    fn new() -> Self {
        Self {
            last: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Starts a background flush of `backend` if the last one is older than [`FLUSH_INTERVAL`].
    fn maybe_flush<B: StateBackend>(&self, backend: &B) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < FLUSH_INTERVAL || self.running.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = std::time::Instant::now();
        }
        let backend = backend.clone();
        let running = self.running.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = backend.flush() {
                // The next flush retries; the log still holds everything applied.
                tracing::warn!(error = %e, "flushing applied state");
            }
            running.store(false, Ordering::Release);
        });
    }
}

impl<B: StateBackend> StateMachine<B> {
    /// Opens the snapshot tree in `db` and reads the applied state from `backend`.
    pub fn open(db: &sled::Db, backend: B) -> StorageResult<Self> {
        let snapshots = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| sm_err(StorageIOError::read_state_machine, &e))?;
        let applied = match backend
            .meta()
            .map_err(|e| sm_err(StorageIOError::read_state_machine, &e))?
        {
            Some(raw) => {
                Applied::decode(&raw).map_err(|e| sm_err(StorageIOError::read_state_machine, &e))?
            }
            None => Applied::default(),
        };
        Ok(Self {
            backend,
            applied: Arc::new(Mutex::new(applied)),
            db: db.clone(),
            snapshots,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            flusher: Flusher::new(),
        })
    }

    pub async fn applied_state(&self) -> (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>) {
        let a = self.applied.lock().await;
        (a.last_applied, a.membership.clone())
    }

    /// Applies a batch in one backend write, membership and last applied id included.
    pub async fn apply(&self, entries: &[Entry<TypeConfig>]) -> StorageResult<Vec<Response>> {
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let mut applied = self.applied.lock().await;
        let mut next = applied.clone();
        let batch: Vec<ApplyEntry<'_>> = entries
            .iter()
            .map(|e| {
                let request = match &e.payload {
                    EntryPayload::Normal(r) => Some(&r.0),
                    EntryPayload::Blank => None,
                    EntryPayload::Membership(m) => {
                        next.membership = StoredMembership::new(Some(e.log_id), m.clone());
                        None
                    }
                };
                ApplyEntry {
                    index: e.log_id.index,
                    request,
                }
            })
            .collect();
        next.last_applied = Some(last.log_id);
        let meta = next
            .encode()
            .map_err(|e| sm_err(StorageIOError::write_state_machine, &e))?;
        let responses = crate::metrics::timed(&crate::metrics::BACKEND_COMMIT, || {
            self.backend.apply(&batch, &meta)
        })
        .map_err(|e| StorageError::from(StorageIOError::apply(last.log_id, AnyError::new(&e))))?;
        if responses.len() != entries.len() {
            let msg = format!(
                "{} responses for {} entries",
                responses.len(),
                entries.len()
            );
            return Err(StorageIOError::apply(last.log_id, AnyError::error(msg)).into());
        }
        *applied = next;
        drop(applied);
        self.flusher.maybe_flush(&self.backend);
        Ok(responses.into_iter().map(Response).collect())
    }

    pub fn snapshot_builder(&self) -> SnapshotBuilder<B> {
        SnapshotBuilder {
            backend: self.backend.clone(),
            applied: self.applied.clone(),
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
        }
    }

    /// Replaces the state with a snapshot received from the leader and makes it current.
    pub async fn install_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let sig = || Some(meta.signature());
        let mut applied = self.applied.lock().await;
        let data = snapshot.into_inner();
        let backend = self.backend.clone();
        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, B::Error> {
            backend.restore(&data)?;
            backend.flush()?;
            Ok(data)
        })
        .await
        .map_err(|e| sm_err(|a| StorageIOError::write_snapshot(None, a), &e))?
        .map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(sig(), AnyError::new(&e)))
        })?;
        *applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        // Still under the lock: a snapshot being built concurrently must not overwrite this one.
        persist_snapshot(&self.db, &self.snapshots, meta, &data).await
    }

    pub fn current_snapshot(&self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(meta) = self
            .snapshots
            .get(KEY_SNAPSHOT_META)
            .map_err(|e| sm_err(read_snapshot_err, &e))?
        else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, Member> =
            bincode::deserialize(&meta).map_err(|e| sm_err(read_snapshot_err, &e))?;
        let data = self
            .snapshots
            .get(KEY_SNAPSHOT_DATA)
            .map_err(|e| sm_err(read_snapshot_err, &e))?
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}

/// openraft drives this from its state-machine worker, so applying overlaps with log appends
/// and flushes on the core task. The inherent methods (called by path, so the trait methods of
/// the same name do not recurse) do the work.
impl<B: StateBackend> RaftStateMachine<TypeConfig> for StateMachine<B> {
    type SnapshotBuilder = SnapshotBuilder<B>;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok(StateMachine::applied_state(self).await)
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        StateMachine::apply(self, &entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        StateMachine::install_snapshot(self, meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.current_snapshot()
    }
}

fn read_snapshot_err(e: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::read_snapshot(None, e)
}

/// Writes `meta` and `data` as the current snapshot, atomically, and waits for the flush.
async fn persist_snapshot(
    db: &sled::Db,
    tree: &sled::Tree,
    meta: &SnapshotMeta<NodeId, Member>,
    data: &[u8],
) -> StorageResult<()> {
    let sig = meta.signature();
    let write_err =
        |e: AnyError| StorageError::from(StorageIOError::write_snapshot(Some(sig.clone()), e));
    let raw_meta = bincode::serialize(meta).map_err(|e| write_err(AnyError::new(&e)))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_SNAPSHOT_META, raw_meta);
    batch.insert(KEY_SNAPSHOT_DATA, data);
    tree.apply_batch(batch)
        .map_err(|e| write_err(AnyError::new(&e)))?;
    db.flush_async()
        .await
        .map_err(|e| write_err(AnyError::new(&e)))?;
    Ok(())
}

/// Builds snapshots off the Raft core task.
pub struct SnapshotBuilder<B: StateBackend> {
    backend: B,
    applied: Arc<Mutex<Applied>>,
    db: sled::Db,
    snapshots: sled::Tree,
    snapshot_seq: Arc<AtomicU64>,
}

impl<B: StateBackend> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<B> {
    /// Flushes the backend first: openraft purges the log only up to a snapshot's last log id,
    /// so everything whose log may go is on disk in the state machine.
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let applied = self.applied.lock().await;
        let backend = self.backend.clone();
        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, B::Error> {
            backend.flush()?;
            crate::metrics::timed(&crate::metrics::BACKEND_SNAPSHOT, || backend.snapshot())
        })
        .await
        .map_err(|e| sm_err(StorageIOError::read_state_machine, &e))?
        .map_err(|e| sm_err(StorageIOError::read_state_machine, &e))?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let snapshot_id = match &applied.last_applied {
            Some(l) => format!("{}-{}-{millis}-{seq}", l.leader_id.term, l.index),
            None => format!("0-0-{millis}-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        persist_snapshot(&self.db, &self.snapshots, &meta, &data).await?;
        drop(applied);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

//! The Raft log, vote and purge/commit pointers in sled trees, flushed before openraft relies on them.
// openraft's `StorageError` is the error type its storage traits require; its size is not ours.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NodeId, TypeConfig};

/// Entries keyed by their index, big-endian so sled's order is the log's order.
pub(crate) const LOG_TREE: &str = "raft_log";
/// Vote, last purged log id and committed log id.
pub(crate) const META_TREE: &str = "raft_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_err<E: std::error::Error + 'static>(
    f: fn(AnyError) -> StorageIOError<NodeId>,
    e: &E,
) -> StorageError<NodeId> {
    f(AnyError::new(e)).into()
}

/// The log half of the Raft storage. Cheap to clone: clones are the log readers openraft's
/// replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens (or creates) the log trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            log: db.open_tree(LOG_TREE)?,
            meta: db.open_tree(META_TREE)?,
        })
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let Some(raw) = self
            .meta
            .get(key)
            .map_err(|e| io_err(StorageIOError::read, &e))?
        else {
            return Ok(None);
        };
        let v = bincode::deserialize(&raw).map_err(|e| io_err(StorageIOError::read, &e))?;
        Ok(Some(v))
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        v: &T,
        on_err: fn(AnyError) -> StorageIOError<NodeId>,
    ) -> StorageResult<()> {
        let raw = bincode::serialize(v).map_err(|e| io_err(on_err, &e))?;
        self.meta.insert(key, raw).map_err(|e| io_err(on_err, &e))?;
        Ok(())
    }

    /// Waits until everything written to the db so far is on disk.
    async fn flush(&self, on_err: fn(AnyError) -> StorageIOError<NodeId>) -> StorageResult<()> {
        let start = std::time::Instant::now();
        // Inline, not `flush_async`: the Raft core waits for this flush anyway, and sled's async
        // flush hands every call to its thread pool and back (two context switches per write
        // batch; measured ~15% more puts/s inline).
        let res = self.db.flush();
        crate::metrics::WAL_FSYNC.observe(start.elapsed().as_secs_f64());
        res.map_err(|e| io_err(on_err, &e))?;
        Ok(())
    }

    /// Entries with index in `range` that are present, in order.
    pub fn entries<RB: RangeBounds<u64>>(
        &self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) if e < start => return Ok(Vec::new()),
            Bound::Included(&e) => Bound::Included(e.to_be_bytes()),
            Bound::Excluded(&e) if e <= start => return Ok(Vec::new()),
            Bound::Excluded(&e) => Bound::Excluded(e.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.log
            .range((Bound::Included(start.to_be_bytes()), end))
            .values()
            .map(|v| {
                let v = v.map_err(|e| io_err(StorageIOError::read_logs, &e))?;
                bincode::deserialize(&v).map_err(|e| io_err(StorageIOError::read_logs, &e))
            })
            .collect()
    }

    fn last_entry_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let Some((_, v)) = self
            .log
            .last()
            .map_err(|e| io_err(StorageIOError::read_logs, &e))?
        else {
            return Ok(None);
        };
        let entry: Entry<TypeConfig> =
            bincode::deserialize(&v).map_err(|e| io_err(StorageIOError::read_logs, &e))?;
        Ok(Some(entry.log_id))
    }

    /// The last purged log id and the last log id (the purged one if the log is empty).
    pub fn log_state(&self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Stores the vote; returns only once it is on disk.
    pub async fn save_vote(&self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(KEY_VOTE, vote, StorageIOError::write_vote)?;
        self.flush(StorageIOError::write_vote).await
    }

    pub fn read_vote(&self) -> StorageResult<Option<Vote<NodeId>>> {
        self.read_meta(KEY_VOTE)
    }

    /// Records the committed log id. Not flushed on its own: it is a hint for re-applying on
    /// restart and rides on the next flush; losing it only means waiting for the leader.
    pub fn save_committed(&self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.write_meta(KEY_COMMITTED, &committed, StorageIOError::write)
    }

    pub fn read_committed(&self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?
            .flatten())
    }

    /// Appends entries in one batch and returns once they are on disk (one flush per call).
    pub async fn append(&self, entries: Vec<Entry<TypeConfig>>) -> StorageResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for entry in &entries {
            let raw = bincode::serialize(entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), raw);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))?;
        self.flush(StorageIOError::write_logs).await
    }

    /// Deletes entries from `log_id.index` on, atomically, and flushes so that conflicting
    /// entries a new leader overwrote cannot come back after a crash.
    pub async fn truncate(&self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(key.map_err(|e| io_err(StorageIOError::write_logs, &e))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))?;
        self.flush(StorageIOError::write_logs).await
    }

    /// Deletes entries up to `log_id.index`, inclusive. The purge pointer is written before the
    /// entries go: sled persists writes in order, so a crash can leave stale entries below the
    /// pointer (harmless) but never a hole above it.
    pub fn purge(&self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.write_meta(KEY_LAST_PURGED, &log_id, StorageIOError::write_logs)?;
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(key.map_err(|e| io_err(StorageIOError::write_logs, &e))?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.entries(range)
    }
}

/// openraft drives this from its core task, independently of the state machine; the inherent
/// methods (called by path, so the trait methods of the same name do not recurse) do the work.
impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        self.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        LogStore::save_vote(self, vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        LogStore::read_vote(self)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        LogStore::save_committed(self, committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        LogStore::read_committed(self)
    }

    /// Acknowledges only after the flush: `LogStore::append` returns once the entries are on
    /// disk, and on error the callback is dropped unacknowledged.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        LogStore::append(self, entries.into_iter().collect()).await?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        LogStore::truncate(self, log_id).await
    }

    /// openraft purges only up to `snapshot.last_log_id - max_in_snapshot_log_to_keep`, and
    /// building a snapshot flushes the state machine, so purged entries are durable in it.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        LogStore::purge(self, log_id)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn open() -> (tempfile::TempDir, sled::Db, LogStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("open sled");
        let store = LogStore::open(&db).expect("open log store");
        (dir, db, store)
    }

    #[tokio::test]
    async fn appended_entries_read_back_in_index_order_across_byte_boundaries() {
        let (_dir, _db, store) = open();
        store
            .append((250..260).map(|i| blank(1, i)).collect())
            .await
            .expect("append");
        assert_eq!(
            indexes(&store.entries(..).expect("read")),
            (250..260).collect::<Vec<_>>()
        );
        assert_eq!(
            indexes(&store.entries(255..=256).expect("read")),
            vec![255, 256]
        );
        assert_eq!(
            indexes(&store.entries(257..257).expect("read")),
            Vec::<u64>::new()
        );
        assert_eq!(
            store.log_state().expect("state").last_log_id,
            Some(log_id(1, 259))
        );
    }

    #[tokio::test]
    async fn truncate_removes_the_suffix_and_purge_the_prefix() {
        let (_dir, _db, store) = open();
        store
            .append((1..=10).map(|i| blank(1, i)).collect())
            .await
            .expect("append");
        store.truncate(log_id(1, 8)).await.expect("truncate");
        store.purge(log_id(1, 3)).expect("purge");
        assert_eq!(indexes(&store.entries(..).expect("read")), vec![4, 5, 6, 7]);
        let state = store.log_state().expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(1, 7)));
    }

    #[tokio::test]
    async fn purging_past_the_last_entry_reports_the_purged_id_as_last() {
        let (_dir, _db, store) = open();
        store
            .append((1..=3).map(|i| blank(1, i)).collect())
            .await
            .expect("append");
        store.purge(log_id(2, 9)).expect("purge");
        let state = store.log_state().expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 9)));
        assert_eq!(state.last_log_id, Some(log_id(2, 9)));
    }

    #[tokio::test]
    async fn log_vote_and_committed_survive_reopening_the_db() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("open sled");
            let store = LogStore::open(&db).expect("open");
            store
                .append((1..=5).map(|i| blank(2, i)).collect())
                .await
                .expect("append");
            store
                .save_vote(&Vote::new_committed(2, 7))
                .await
                .expect("vote");
            store.save_committed(Some(log_id(2, 4))).expect("committed");
            store.purge(log_id(2, 1)).expect("purge");
            db.flush_async().await.expect("flush");
        }
        let db = sled::open(dir.path()).expect("reopen sled");
        let store = LogStore::open(&db).expect("reopen");
        assert_eq!(
            store.read_vote().expect("vote"),
            Some(Vote::new_committed(2, 7))
        );
        assert_eq!(
            store.read_committed().expect("committed"),
            Some(log_id(2, 4))
        );
        assert_eq!(indexes(&store.entries(..).expect("read")), vec![2, 3, 4, 5]);
        assert_eq!(
            store.log_state().expect("state").last_purged_log_id,
            Some(log_id(2, 1))
        );
    }
}

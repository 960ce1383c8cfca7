//! The Raft log, vote and purge/commit pointers in the write-ahead log under `member/wal`,
//! durable before openraft relies on them.
// openraft's `StorageError` is the error type its storage traits require; its size is not ours.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};

use super::wal::{Wal, WalState, SEGMENT_BYTES};
use super::{NodeId, TypeConfig};

/// Where releases before the write-ahead log kept the Raft log in the sled db: entries keyed by
/// big-endian index, and the vote and pointers. Read once to move them into the log.
const LEGACY_LOG_TREE: &str = "raft_log";
const LEGACY_META_TREE: &str = "raft_meta";

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
    wal: Wal,
}

impl LogStore {
    /// Opens the log at `dir`, creating it on first start. A data dir from before the
    /// write-ahead log has its Raft log in `db`: it is moved into the new log, then dropped
    /// from the db.
    pub fn open(db: &sled::Db, dir: &Path) -> StorageResult<Self> {
        let read = |e: &dyn std::error::Error| -> StorageError<NodeId> {
            StorageIOError::read_logs(AnyError::error(e.to_string())).into()
        };
        let wal = if Wal::exists(dir) {
            Wal::open(dir, SEGMENT_BYTES).map_err(|e| read(&e))?
        } else {
            let (state, entries) = legacy_log(db).map_err(|e| read(&*e))?;
            Wal::create(dir, SEGMENT_BYTES, &state, &entries).map_err(|e| read(&e))?
        };
        // Dropped only once the log holding them is on disk (also after a crash in between).
        let names = db.tree_names();
        for tree in [LEGACY_LOG_TREE, LEGACY_META_TREE] {
            if names.iter().any(|n| n.as_ref() == tree.as_bytes()) {
                db.drop_tree(tree).map_err(|e| read(&e))?;
            }
        }
        Ok(Self { wal })
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
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        self.wal
            .entries(start, end)
            .map_err(|e| io_err(StorageIOError::read_logs, &e))
    }

    /// The last purged log id and the last log id (the purged one if the log is empty).
    pub fn log_state(&self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.wal.state().purged;
        let last_log_id = self.wal.last_log_id().or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    /// Stores the vote; returns only once it is on disk.
    pub async fn save_vote(&self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.wal
            .save_vote(vote)
            .map_err(|e| io_err(StorageIOError::write_vote, &e))
    }

    pub fn read_vote(&self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.wal.state().vote)
    }

    /// Records the committed log id. Not synced on its own: it is a hint for re-applying on
    /// restart and rides on the next sync; losing it only means waiting for the leader.
    pub fn save_committed(&self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.wal
            .save_committed(committed)
            .map_err(|e| io_err(StorageIOError::write, &e))
    }

    pub fn read_committed(&self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.wal.state().committed)
    }

    /// Appends entries in one write and returns once they are on disk (one sync per call).
    /// Inline on the Raft core's task: the core waits for the sync anyway.
    pub async fn append(&self, entries: Vec<Entry<TypeConfig>>) -> StorageResult<()> {
        self.wal
            .append(&entries)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))
    }

    /// Deletes entries from `log_id.index` on, durably, so that conflicting entries a new
    /// leader overwrote cannot come back after a crash.
    pub async fn truncate(&self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.wal
            .truncate(log_id.index)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))
    }

    /// Deletes entries up to `log_id.index`, inclusive, and the segments left holding none.
    pub fn purge(&self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.wal
            .purge(log_id)
            .map_err(|e| io_err(StorageIOError::write_logs, &e))
    }
}

/// A Raft log as data dirs from before the write-ahead log kept it.
type LegacyLog = (WalState, Vec<Entry<TypeConfig>>);

/// The Raft log a data dir from before the write-ahead log kept in `db`, if any.
fn legacy_log(db: &sled::Db) -> Result<LegacyLog, Box<dyn std::error::Error>> {
    let names = db.tree_names();
    let has = |t: &str| names.iter().any(|n| n.as_ref() == t.as_bytes());
    let mut state = WalState::default();
    let mut entries = Vec::new();
    if has(LEGACY_META_TREE) {
        let meta = db.open_tree(LEGACY_META_TREE)?;
        if let Some(v) = meta.get(b"vote")? {
            state.vote = Some(bincode::deserialize::<Vote<NodeId>>(&v)?);
        }
        if let Some(v) = meta.get(b"committed")? {
            state.committed = bincode::deserialize::<Option<LogId<NodeId>>>(&v)?;
        }
        if let Some(v) = meta.get(b"last_purged")? {
            state.purged = Some(bincode::deserialize::<LogId<NodeId>>(&v)?);
        }
    }
    if has(LEGACY_LOG_TREE) {
        for v in db.open_tree(LEGACY_LOG_TREE)?.iter().values() {
            let entry: Entry<TypeConfig> = bincode::deserialize(&v?)?;
            // Stale entries below the purge pointer could remain after a crash mid-purge.
            if state.purged.is_none_or(|p| entry.log_id.index > p.index) {
                entries.push(entry);
            }
        }
    }
    Ok((state, entries))
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
    use super::super::test_log::{blank, indexes, log_id};
    use super::*;

    fn open() -> (tempfile::TempDir, sled::Db, LogStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("db")).expect("open sled");
        let store = LogStore::open(&db, &dir.path().join("wal")).expect("open log store");
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
    async fn log_vote_and_committed_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("wal");
        {
            let db = sled::open(dir.path().join("db")).expect("open sled");
            let store = LogStore::open(&db, &wal).expect("open");
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
        }
        let db = sled::open(dir.path().join("db")).expect("reopen sled");
        let store = LogStore::open(&db, &wal).expect("reopen");
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

    /// A data dir written before the write-ahead log: the log moves over whole, once.
    #[tokio::test]
    async fn a_raft_log_kept_in_sled_moves_into_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("wal");
        {
            let db = sled::open(dir.path().join("db")).expect("open sled");
            let log = db.open_tree(LEGACY_LOG_TREE).expect("log tree");
            for i in 1..=6 {
                let raw = bincode::serialize(&blank(3, i)).expect("encode");
                log.insert(i.to_be_bytes(), raw).expect("insert");
            }
            let meta = db.open_tree(LEGACY_META_TREE).expect("meta tree");
            let put = |k: &[u8], raw: Vec<u8>| meta.insert(k, raw).expect("insert");
            put(
                b"vote",
                bincode::serialize(&Vote::<NodeId>::new_committed(3, 1)).expect("vote"),
            );
            put(
                b"committed",
                bincode::serialize(&Some(log_id(3, 5))).expect("committed"),
            );
            put(
                b"last_purged",
                bincode::serialize(&log_id(3, 2)).expect("purged"),
            );
            db.flush().expect("flush");
        }
        for _ in 0..2 {
            let db = sled::open(dir.path().join("db")).expect("open sled");
            let store = LogStore::open(&db, &wal).expect("open");
            assert_eq!(indexes(&store.entries(..).expect("read")), vec![3, 4, 5, 6]);
            assert_eq!(
                store.read_vote().expect("vote"),
                Some(Vote::new_committed(3, 1))
            );
            assert_eq!(
                store.read_committed().expect("committed"),
                Some(log_id(3, 5))
            );
            let names = db.tree_names();
            assert!(
                !names
                    .iter()
                    .any(|n| n.as_ref() == LEGACY_LOG_TREE.as_bytes()),
                "the sled copy of the log was not dropped"
            );
            db.flush().expect("flush");
        }
    }
}

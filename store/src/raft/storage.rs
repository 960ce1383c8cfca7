//! openraft storage over sled: [`LogStore`] and [`StateMachine`] behind openraft's `RaftStorage`.
//!
//! openraft 0.9 seals `RaftLogStorage`/`RaftStateMachine` unless its `storage-v2` feature is on,
//! so the two halves are joined here and split again by [`Adaptor`]. The halves keep their own
//! methods so that moving to v2 is a matter of implementing the traits on them directly.
// openraft's `StorageError` is the error type its storage traits require; its size is not ours.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;

use openraft::storage::Adaptor;
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, RaftStorage, Snapshot, SnapshotMeta,
    StorageError, StoredMembership, Vote,
};

use super::log_store::LogStore;
use super::state_machine::{SnapshotBuilder, StateBackend, StateMachine};
use super::{Member, NodeId, Response, TypeConfig};
use crate::mvcc::Mvcc;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The log store handed to `openraft::Raft::new`.
pub type LogStorage<B = Mvcc> = Adaptor<TypeConfig, SledStore<B>>;
/// The state machine handed to `openraft::Raft::new`.
pub type StateMachineStorage<B = Mvcc> = Adaptor<TypeConfig, SledStore<B>>;

/// Raft log (trees `raft_log`, `raft_meta`), current snapshot (`raft_snapshot`) and the state
/// machine `B`, all in one sled db.
pub struct SledStore<B: StateBackend = Mvcc> {
    log: LogStore,
    sm: StateMachine<B>,
}

impl<B: StateBackend> SledStore<B> {
    pub fn open(db: &sled::Db, backend: B) -> StorageResult<Self> {
        let log = LogStore::open(db).map_err(|e| {
            StorageError::from(openraft::StorageIOError::read_logs(
                openraft::AnyError::new(&e),
            ))
        })?;
        Ok(Self {
            log,
            sm: StateMachine::open(db, backend)?,
        })
    }

    /// Opens the store and splits it into openraft's log store and state machine.
    pub fn open_split(
        db: &sled::Db,
        backend: B,
    ) -> StorageResult<(LogStorage<B>, StateMachineStorage<B>)> {
        Ok(Adaptor::new(Self::open(db, backend)?))
    }
}

impl<B: StateBackend> RaftLogReader<TypeConfig> for SledStore<B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.log.entries(range)
    }
}

impl<B: StateBackend> RaftStorage<TypeConfig> for SledStore<B> {
    type LogReader = LogStore;
    type SnapshotBuilder = SnapshotBuilder<B>;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.log.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.log.read_vote()
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.log.save_committed(committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        self.log.read_committed()
    }

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        self.log.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.log.clone()
    }

    /// Returns only after the entries are flushed: the `Adaptor` acknowledges the append to
    /// openraft when this returns.
    async fn append_to_log<I>(&mut self, entries: I) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        self.log.append(entries).await
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.log.truncate(log_id).await
    }

    /// openraft purges only up to `snapshot.last_log_id - max_in_snapshot_log_to_keep`, and
    /// building a snapshot flushes the state machine, so purged entries are durable in it.
    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.log.purge(log_id)
    }

    async fn last_applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok(self.sm.applied_state().await)
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> StorageResult<Vec<Response>> {
        self.sm.apply(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.sm.snapshot_builder()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        self.sm.install_snapshot(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.sm.current_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use openraft::testing::{StoreBuilder, Suite};
    use proto::storepb::InternalRaftResponse;

    use super::*;
    use crate::mvcc::ApplyEntry;

    /// Keeps only the meta blob, which is all the storage layer reads back.
    #[derive(Clone, Default)]
    struct MetaOnly(Arc<Mutex<Option<Vec<u8>>>>);

    #[derive(Debug, thiserror::Error)]
    #[error("poisoned")]
    struct Poisoned;

    impl StateBackend for MetaOnly {
        type Error = Poisoned;

        fn apply(
            &self,
            entries: &[ApplyEntry<'_>],
            meta: &[u8],
        ) -> Result<Vec<InternalRaftResponse>, Poisoned> {
            *self.0.lock().map_err(|_| Poisoned)? = Some(meta.to_vec());
            Ok(entries
                .iter()
                .map(|_| InternalRaftResponse::default())
                .collect())
        }
        fn meta(&self) -> Result<Option<Vec<u8>>, Poisoned> {
            Ok(self.0.lock().map_err(|_| Poisoned)?.clone())
        }
        fn flush(&self) -> Result<(), Poisoned> {
            Ok(())
        }
        fn snapshot(&self) -> Result<Vec<u8>, Poisoned> {
            Ok(self
                .0
                .lock()
                .map_err(|_| Poisoned)?
                .clone()
                .unwrap_or_default())
        }
        fn restore(&self, data: &[u8]) -> Result<(), Poisoned> {
            *self.0.lock().map_err(|_| Poisoned)? = (!data.is_empty()).then(|| data.to_vec());
            Ok(())
        }
    }

    struct Builder;

    impl
        StoreBuilder<
            TypeConfig,
            LogStorage<MetaOnly>,
            StateMachineStorage<MetaOnly>,
            tempfile::TempDir,
        > for Builder
    {
        async fn build(
            &self,
        ) -> StorageResult<(
            tempfile::TempDir,
            LogStorage<MetaOnly>,
            StateMachineStorage<MetaOnly>,
        )> {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = sled::open(dir.path()).expect("open sled");
            let (log, sm) = SledStore::open_split(&db, MetaOnly::default())?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn sled_log_storage_passes_the_openraft_suite_with_a_stub_state_machine() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}

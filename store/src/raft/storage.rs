//! Opens the Raft storage: the [`LogStore`] in its write-ahead log and the [`StateMachine`] over
//! a sled db, the two halves openraft drives.
// openraft's `StorageError` is the error type its storage traits require; its size is not ours.
#![allow(clippy::result_large_err)]

use std::path::Path;

use openraft::StorageError;

use super::log_store::LogStore;
use super::state_machine::{StateBackend, StateMachine};
use super::NodeId;

/// Opens the Raft log in `wal_dir` and the state machine over `backend` with its current
/// snapshot (`raft_snapshot`) in `db`. The two halves share nothing, so openraft applies
/// entries while it appends and syncs the log, and applying never waits for a disk sync: the
/// log is what a restart replays from.
pub fn open_storage<B: StateBackend>(
    db: &sled::Db,
    wal_dir: &Path,
    backend: B,
) -> Result<(LogStore, StateMachine<B>), StorageError<NodeId>> {
    let log = LogStore::open(db, wal_dir)?;
    Ok((log, StateMachine::open(db, backend)?))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use openraft::testing::{StoreBuilder, Suite};
    use proto::storepb::InternalRaftResponse;

    use super::*;
    use crate::mvcc::ApplyEntry;
    use crate::raft::TypeConfig;

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

    impl StoreBuilder<TypeConfig, LogStore, StateMachine<MetaOnly>, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine<MetaOnly>), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = sled::open(dir.path().join("db")).expect("open sled");
            let (log, sm) = open_storage(&db, &dir.path().join("wal"), MetaOnly::default())?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn wal_log_storage_passes_the_openraft_suite_with_a_stub_state_machine() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}

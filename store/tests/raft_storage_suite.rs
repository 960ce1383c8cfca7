//! openraft's storage test suite against the write-ahead log store and the MVCC state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use store::mvcc::{Mvcc, Options};
use store::raft::{open_storage, LogStore, NodeId, StateMachine, TypeConfig};

struct SledMvccBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Mvcc>, tempfile::TempDir> for SledMvccBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine<Mvcc>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("db")).expect("open sled");
        let mvcc = Mvcc::open(
            &db,
            Options {
                quota_backend_bytes: 0,
            },
        )
        .expect("open mvcc");
        let (log, sm) = open_storage(&db, &dir.path().join("wal"), mvcc)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn wal_log_and_mvcc_state_machine_pass_the_openraft_storage_suite() {
    Suite::test_all(SledMvccBuilder).expect("openraft storage suite");
}

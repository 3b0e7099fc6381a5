use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use super::log::LogStore;
use super::sm::StateMachineStore;
use crate::command::Command;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("raft"), false, 4096).expect("open log");
        let sm = StateMachineStore::open(&dir.path().join("state"), false, 16).expect("open sm");
        Ok((dir, log, sm))
    }
}

/// openraft's storage conformance suite.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("suite");
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command::ReserveObjectIds {
            count: index as u32,
        }),
    }
}

async fn indexes(log: &mut LogStore) -> Vec<(u64, u64)> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

/// Append across segments, truncate, purge, re-append; a reopened log holds
/// exactly what the live one did.
#[tokio::test]
async fn reopen_recovers_appends_truncations_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let mut log = LogStore::open(&path, true, 100).unwrap();
    log.blocking_append((1..=40).map(|i| entry(1, i)))
        .await
        .unwrap();
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 25))
        .await
        .unwrap();
    log.blocking_append((25..=30).map(|i| entry(2, i)))
        .await
        .unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 10))
        .await
        .unwrap();
    let vote = Vote::new(2, 1);
    log.save_vote(&vote).await.unwrap();
    let expected = indexes(&mut log).await;
    assert_eq!(expected.first(), Some(&(1, 11)));
    assert_eq!(expected.last(), Some(&(2, 30)));
    assert_eq!(expected.len(), 20);
    let segments = std::fs::read_dir(&path).unwrap().count();
    assert!(segments > 3, "small segments roll over");
    drop(log);

    let mut log = LogStore::open(&path, true, 100).unwrap();
    assert_eq!(indexes(&mut log).await, expected);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(10));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(30));
    // Appends continue after recovery.
    log.blocking_append([entry(2, 31)]).await.unwrap();
    drop(log);
    let mut log = LogStore::open(&path, true, 100).unwrap();
    assert_eq!(indexes(&mut log).await.last(), Some(&(2, 31)));
}

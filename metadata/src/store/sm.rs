//! The state machine store: the in-memory [`ClusterState`] plus snapshots on
//! disk.
//!
//! The state lives in memory behind a lock that the client API reads
//! directly. Durability comes from the Raft log and from snapshots: a
//! snapshot is one frame (`crate::frame`) holding the snapshot metadata and
//! the whole postcard-encoded state, written to `snapshot.tmp`, fsynced and
//! renamed to `snapshot`, so there is always one complete snapshot or none.
//! On start the snapshot is loaded and openraft re-applies the log after it.
//! A lagging or new member receives the same bytes via `install_snapshot`.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Response;
use crate::frame;
use crate::state::{Change, ClusterState};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// What the client API reads.
#[derive(Debug, Default)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterState,
}

/// Shared between the Raft state machine and the client API.
#[derive(Debug)]
pub struct SmShared {
    pub applied: RwLock<Applied>,
    pub changes: broadcast::Sender<Change>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    state: ClusterState,
}

/// The openraft state machine.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    dir: PathBuf,
    fsync: bool,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl StateMachineStore {
    /// Open the state machine in `dir`, loading the last snapshot if any.
    pub fn open(dir: &Path, fsync: bool, watch_capacity: usize) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut applied = Applied::default();
        if let Some(file) = crate::store::log::read_single::<SnapshotFile>(&dir.join("snapshot"))? {
            applied.last_applied = file.meta.last_log_id;
            applied.membership = file.meta.last_membership.clone();
            applied.state = file.state;
        }
        let (changes, _) = broadcast::channel(watch_capacity.max(1));
        Ok(Self {
            shared: Arc::new(SmShared {
                applied: RwLock::new(applied),
                changes,
            }),
            dir: dir.to_path_buf(),
            fsync,
        })
    }

    /// The state shared with the client API.
    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    /// Run file I/O on the blocking pool, or inline without fsync (tests
    /// and simulations: small files, and a simulation on one thread must
    /// never wait for another).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<io::Result<T>, StorageError> {
        if self.fsync {
            tokio::task::spawn_blocking(f).await.map_err(sm_err)
        } else {
            Ok(f())
        }
    }

    fn write_snapshot(&self, bytes: &[u8]) -> io::Result<()> {
        skiff_common::fs::write_atomic(&self.dir, "snapshot", bytes, self.fsync)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Copy under the lock (cheap next to encoding), encode and write
        // outside it so applying is not held up by a large snapshot.
        let (meta, state) = {
            let a = self.shared.applied.read();
            let snapshot_id = match a.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: a.last_applied,
                last_membership: a.membership.clone(),
                snapshot_id,
            };
            (meta, a.state.clone())
        };
        let this = self.clone();
        let file = SnapshotFile {
            meta: meta.clone(),
            state,
        };
        let bytes = self
            .blocking(move || -> io::Result<Vec<u8>> {
                let bytes = frame::encode(&file).map_err(io::Error::other)?;
                this.write_snapshot(&bytes)?;
                Ok(bytes)
            })
            .await?
            .map_err(sm_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.applied.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut published = Vec::new();
        {
            let mut a = self.shared.applied.write();
            for e in entries {
                a.last_applied = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => out.push(Ok(crate::Output::Done)),
                    EntryPayload::Normal(cmd) => {
                        let (resp, changes) = a.state.apply(&cmd);
                        published.extend(changes);
                        out.push(resp);
                    }
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(e.log_id), m);
                        out.push(Ok(crate::Output::Done));
                    }
                }
            }
        }
        for c in published {
            // No receiver is fine: nobody watches.
            let _ = self.shared.changes.send(c);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let (file, _): (SnapshotFile, usize) = frame::decode(&bytes, usize::MAX)
            .map_err(sm_err)?
            .ok_or_else(|| {
            sm_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated snapshot",
            ))
        })?;
        let this = self.clone();
        let data = bytes.clone();
        self.blocking(move || this.write_snapshot(&data))
            .await?
            .map_err(sm_err)?;
        {
            let mut a = self.shared.applied.write();
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
            a.state = file.state;
        }
        let _ = self.shared.changes.send(Change::Resync);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.dir.join("snapshot");
        let bytes = match self.blocking(move || std::fs::read(&path)).await? {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(sm_err(e)),
        };
        let (file, _): (SnapshotFile, usize) = frame::decode(&bytes, usize::MAX)
            .map_err(sm_err)?
            .ok_or_else(|| {
            sm_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated snapshot",
            ))
        })?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

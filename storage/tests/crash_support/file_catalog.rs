//! A catalog that survives SIGKILL, for the crash tests: an
//! [`InMemoryCatalog`] whose every successful change is appended to a log
//! file (one line each, fsync'd before the call returns) and replayed on
//! open. A torn last line is a change whose caller never saw success.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use skiff_common::{ObjectId, StreamEpoch, StreamId};
use skiff_storage::catalog::{
    Catalog, CatalogError, Commit, CommitRange, InMemoryCatalog, NewObject, ObjectInfo, ObjectKind,
    ObjectSlice, StreamMeta,
};

pub(crate) struct FileCatalog {
    mem: InMemoryCatalog,
    log: Mutex<File>,
}

fn kind_str(k: ObjectKind) -> &'static str {
    match k {
        ObjectKind::Stream => "s",
        ObjectKind::StreamSet => "m",
    }
}

fn encode_commit(c: &Commit) -> String {
    let objs: Vec<String> = c
        .objects
        .iter()
        .map(|o| {
            let ranges: Vec<String> = o
                .ranges
                .iter()
                .map(|r| format!("{}/{}/{}/{}", r.stream.0, r.epoch.0, r.start, r.end))
                .collect();
            format!(
                "{}:{}:{}:{}",
                o.id.0,
                kind_str(o.kind),
                o.size,
                ranges.join(",")
            )
        })
        .collect();
    let replaces: Vec<String> = c.replaces.iter().map(|id| id.0.to_string()).collect();
    format!(
        "C {} {}",
        objs.join(";"),
        if replaces.is_empty() {
            "-".into()
        } else {
            replaces.join(",")
        }
    )
}

fn decode_commit(objs: &str, replaces: &str) -> Option<Commit> {
    let mut objects = Vec::new();
    for o in objs.split(';').filter(|s| !s.is_empty()) {
        let mut p = o.split(':');
        let id = ObjectId(p.next()?.parse().ok()?);
        let kind = match p.next()? {
            "s" => ObjectKind::Stream,
            _ => ObjectKind::StreamSet,
        };
        let size = p.next()?.parse().ok()?;
        let mut ranges = Vec::new();
        for r in p.next()?.split(',').filter(|s| !s.is_empty()) {
            let v: Vec<u64> = r
                .split('/')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            ranges.push(CommitRange {
                stream: StreamId(*v.first()?),
                epoch: StreamEpoch(*v.get(1)?),
                start: *v.get(2)?,
                end: *v.get(3)?,
            });
        }
        objects.push(NewObject {
            id,
            kind,
            size,
            ranges,
        });
    }
    let replaces = if replaces == "-" {
        Vec::new()
    } else {
        replaces
            .split(',')
            .map(|x| x.parse().ok().map(ObjectId))
            .collect::<Option<_>>()?
    };
    Some(Commit { objects, replaces })
}

impl FileCatalog {
    pub(crate) async fn open(path: &Path) -> std::io::Result<Self> {
        let mem = InMemoryCatalog::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                match parts.as_slice() {
                    ["R", n] => {
                        let _ = mem.reserve_object_ids(n.parse().unwrap_or(0)).await;
                    }
                    ["O", s] => {
                        if let Ok(s) = s.parse() {
                            mem.open_stream(StreamId(s));
                        }
                    }
                    ["C", objs, rep] => {
                        if let Some(c) = decode_commit(objs, rep) {
                            let _ = mem.commit(c).await;
                        }
                    }
                    ["T", s, e, n] => {
                        if let (Ok(s), Ok(e), Ok(n)) = (s.parse(), e.parse(), n.parse()) {
                            let _ = mem.trim(StreamId(s), StreamEpoch(e), n).await;
                        }
                    }
                    _ => {} // torn last line
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            mem,
            log: Mutex::new(log),
        })
    }

    fn record(&self, line: String) -> Result<(), CatalogError> {
        let mut f = self.log.lock();
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| CatalogError::Unavailable(e.to_string()))
    }

    /// Create the stream or bump its epoch (an ownership change).
    pub(crate) fn open_stream(&self, stream: StreamId) -> Result<StreamEpoch, CatalogError> {
        let e = self.mem.open_stream(stream);
        self.record(format!("O {}", stream.0))?;
        Ok(e)
    }
}

#[async_trait]
impl Catalog for FileCatalog {
    async fn reserve_object_ids(&self, count: u32) -> Result<Range<u64>, CatalogError> {
        let r = self.mem.reserve_object_ids(count).await?;
        self.record(format!("R {count}"))?;
        Ok(r)
    }
    async fn stream(&self, stream: StreamId) -> Result<StreamMeta, CatalogError> {
        self.mem.stream(stream).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        let line = encode_commit(&commit);
        self.mem.commit(commit).await?;
        self.record(line)
    }
    async fn lookup(
        &self,
        s: StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ObjectSlice>, CatalogError> {
        self.mem.lookup(s, from, limit).await
    }
    async fn trim(&self, s: StreamId, e: StreamEpoch, n: u64) -> Result<(), CatalogError> {
        self.mem.trim(s, e, n).await?;
        self.record(format!("T {} {} {n}", s.0, e.0))
    }
    async fn list_objects(&self) -> Result<Vec<ObjectInfo>, CatalogError> {
        self.mem.list_objects().await
    }
    async fn deletable_objects(&self, grace: Duration) -> Result<Vec<ObjectId>, CatalogError> {
        self.mem.deletable_objects(grace).await
    }
    async fn forget_objects(&self, ids: Vec<ObjectId>) -> Result<(), CatalogError> {
        self.mem.forget_objects(ids).await
    }
}

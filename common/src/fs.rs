//! Durable file-system steps that the WAL, the local object store and the
//! metadata log all take: fsyncing a directory after a name in it changed,
//! and replacing a small file atomically.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! skiff_common::fs::write_atomic(dir.path(), "vote", b"term 3", true).unwrap();
//! assert_eq!(std::fs::read(dir.path().join("vote")).unwrap(), b"term 3");
//! skiff_common::fs::sync_dir(dir.path()).unwrap();
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Fsync `dir`, so that a file created, renamed or removed in it survives a
/// power loss (POSIX makes the name durable only with its directory).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `dir/name` with `bytes` atomically: write `dir/name.tmp`, then
/// rename it over `name`. With `fsync`, the file is synced before the rename
/// and the directory after it, so a crash leaves either the old or the new
/// contents, never a torn file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if fsync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "snapshot", b"one", true).unwrap();
        write_atomic(dir.path(), "snapshot", b"second", false).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("snapshot")).unwrap(),
            b"second"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["snapshot"]);
    }

    #[test]
    fn sync_dir_reports_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = sync_dir(&dir.path().join("absent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

//! A small disk for a broker's WAL directory, to inject disk-full: a tmpfs of
//! a few MiB mounted on the directory (needs root / CAP_SYS_ADMIN). The fault
//! fills it with a ballast file; healing deletes the ballast.
//!
//! Where mounting is not permitted (containers without CAP_SYS_ADMIN),
//! [`SmallDisk::mount`] returns [`DiskError::NotPermitted`] with the reason,
//! and the harness runs without the disk-full fault rather than failing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors setting up or filling the small disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot mount a tmpfs on {dir} (disk-full fault unavailable): {reason}")]
    NotPermitted { dir: String, reason: String },
    #[error("disk I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A tmpfs mounted on a directory, unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
    ballast: PathBuf,
    mounted: bool,
}

const BALLAST: &str = ".jepsen-ballast";

impl SmallDisk {
    /// Mounts a `size_bytes` tmpfs on `dir` (created if missing).
    pub fn mount(dir: &Path, size_bytes: u64) -> Result<Self, DiskError> {
        let not_permitted = |reason: String| DiskError::NotPermitted {
            dir: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|source| DiskError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_bytes}"),
                "jepsen-wal",
            ])
            .arg(dir)
            .output()
            .map_err(|e| not_permitted(format!("running mount: {e}")))?;
        if !out.status.success() {
            return Err(not_permitted(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
            ballast: dir.join(BALLAST),
            mounted: true,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fills the disk until a write fails with "no space"; returns the bytes
    /// of ballast written.
    pub fn fill(&self) -> Result<u64, DiskError> {
        let io = |source| DiskError::Io {
            path: self.ballast.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ballast)
            .map_err(io)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => return Err(io(e)),
            }
        }
        // A flush can also hit ENOSPC; that is the point.
        let _ = f.sync_all();
        Ok(written)
    }

    /// Deletes the ballast: space is available again.
    pub fn free(&self) -> Result<(), DiskError> {
        match std::fs::remove_file(&self.ballast) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DiskError::Io {
                path: self.ballast.display().to_string(),
                source,
            }),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy unmount: a killed broker may still hold files open briefly.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_makes_writes_fail_and_free_heals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("wal");
        let disk = match SmallDisk::mount(&wal, 2 * 1024 * 1024) {
            Ok(d) => d,
            Err(e @ DiskError::NotPermitted { .. }) => {
                eprintln!("skipping: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let written = disk.fill().expect("fill");
        assert!(written > 0 && written <= 2 * 1024 * 1024, "{written}");
        let probe = wal.join("probe");
        let res = std::fs::write(&probe, vec![1u8; 64 * 1024]);
        assert_eq!(
            res.err().and_then(|e| e.raw_os_error()),
            Some(nix::libc::ENOSPC)
        );
        disk.free().expect("free");
        std::fs::write(&probe, vec![1u8; 64 * 1024]).expect("space again");
        drop(disk);
        assert!(
            !wal.join("probe").exists(),
            "unmounted: the tmpfs contents are gone"
        );
    }
}

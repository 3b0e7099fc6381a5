//! Block-aligned writes for the file WAL, so segments can be written with
//! `O_DIRECT`.
//!
//! A buffered `write` copies every byte into freshly allocated page-cache
//! pages; on the produce path that kernel copy was the largest single cost
//! (about 30% of the broker's CPU at 400 MB/s, see BENCHMARKS.md), and the
//! WAL never reads those pages back outside recovery. With `O_DIRECT` the
//! device reads the bytes straight from our buffer, but offsets, lengths and
//! the buffer's address must all be multiples of the block size.
//!
//! [`AlignedWriter`] keeps one block-aligned staging buffer. Each group is
//! copied into it after the segment's partial last block (kept from the
//! previous group), padded with zeros to a block boundary and written with
//! one positioned write at the start of that partial block. The bytes on disk
//! are the same as an unaligned append would leave, followed by zeros up to
//! the block boundary, which recovery already treats as the torn tail (the
//! writer cuts them off when it rolls or stops). Rewriting the partial block
//! rewrites durable bytes with themselves, so a torn write cannot damage
//! acknowledged records.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Alignment of offsets, lengths and buffer addresses. 4 KiB satisfies every
/// logical block size Linux file systems use for direct I/O.
pub(crate) const BLOCK: usize = 4096;

/// `n` rounded up to a multiple of [`BLOCK`].
pub(crate) fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Turn on `O_DIRECT` for `file`. Fails on file systems that refuse it
/// (for example tmpfs before Linux 6.6, some FUSE and network file systems).
pub(crate) fn enable_direct_io(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        fcntl(file, FcntlArg::F_SETFL(OFlag::O_DIRECT))
            .map(|_| ())
            .map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Zeroed memory holding an aligned window of `cap` bytes at the returned
/// start: `cap + BLOCK` bytes, so the window always fits (safe code cannot
/// ask the allocator for alignment).
pub(crate) fn aligned_buffer(cap: usize) -> (Vec<u8>, usize) {
    let mem = vec![0u8; cap + BLOCK];
    let start = mem.as_ptr().align_offset(BLOCK);
    (mem, start)
}

/// A block-aligned staging buffer that remembers the current segment's
/// partial last block.
pub(super) struct AlignedWriter {
    /// Backing memory, from [`aligned_buffer`].
    mem: Vec<u8>,
    /// Start of the aligned window in `mem`.
    start: usize,
    /// Size of the aligned window, a multiple of [`BLOCK`].
    cap: usize,
    /// Bytes of the segment's partial last block, held at the window's start.
    tail: usize,
    /// Capacity kept after a write needed more: one oversized record does not
    /// pin its buffer for good, but the usual overshoot (a group ends with
    /// the record that crossed its byte limit) must not reallocate per group
    /// (a fresh multi-MiB allocation is page-faulted in, zeroed, each time).
    keep: usize,
}

impl AlignedWriter {
    /// A writer for groups of about `group_bytes`: it keeps a buffer of
    /// twice that (a group may end with one record past the limit).
    pub(super) fn new(group_bytes: usize) -> Self {
        let keep = round_up(2 * group_bytes as u64 + BLOCK as u64) as usize;
        let mut w = Self {
            mem: Vec::new(),
            start: 0,
            cap: 0,
            tail: 0,
            keep,
        };
        w.resize(keep);
        w
    }

    /// A new, empty segment begins: no partial block to carry.
    pub(super) fn reset(&mut self) {
        self.tail = 0;
    }

    fn resize(&mut self, cap: usize) {
        let (mut mem, start) = aligned_buffer(cap);
        mem[start..start + self.tail].copy_from_slice(&self.window()[..self.tail]);
        self.mem = mem;
        self.start = start;
        self.cap = cap;
    }

    fn window(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.cap]
    }

    /// Write `parts` (together `len` bytes) to `file` at segment offset
    /// `seg_len`, where the previous group ended. Returns the file length the
    /// write leaves: `seg_len + len` rounded up to a block. Call
    /// [`commit`](Self::commit) once the bytes are durable; until then a
    /// failed group can be cut back and the next one starts from the same
    /// partial block.
    pub(super) fn write(
        &mut self,
        file: &File,
        seg_len: u64,
        parts: &[&[u8]],
        len: usize,
    ) -> io::Result<u64> {
        debug_assert_eq!(seg_len % BLOCK as u64, self.tail as u64);
        let end = self.tail + len;
        let padded = round_up(end as u64) as usize;
        if padded > self.cap {
            self.resize(padded.max(self.keep));
        }
        let window = &mut self.mem[self.start..self.start + padded];
        copy_parts(&mut window[self.tail..end], parts);
        window[end..].fill(0);
        let offset = seg_len - self.tail as u64;
        file.write_all_at(window, offset)?;
        Ok(offset + padded as u64)
    }

    /// The group of `len` bytes last passed to [`write`](Self::write) is
    /// durable: its partial last block becomes the one the next group starts
    /// from.
    pub(super) fn commit(&mut self, len: usize) {
        let end = self.tail + len;
        let block_start = end / BLOCK * BLOCK;
        let s = self.start;
        self.mem.copy_within(s + block_start..s + end, s);
        self.tail = end - block_start;
        if self.cap > self.keep {
            self.resize(self.keep);
        }
    }

    /// A group of `len` bytes (`parts`) was written and made durable by
    /// other means (a buffered vectored write at the segment's end): keep
    /// its partial last block, so a later [`write`](Self::write) starts from
    /// the right bytes. Copies at most one block.
    pub(super) fn commit_written(&mut self, parts: &[&[u8]], len: usize) {
        debug_assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), len);
        let end = self.tail + len;
        let new_tail = end % BLOCK;
        let s = self.start;
        if end < BLOCK {
            // Still inside the same block: it grows by the whole group.
            copy_parts(&mut self.mem[s + self.tail..s + end], parts);
        } else {
            // The group crossed a block boundary: the new partial block is
            // the group's last `new_tail` bytes.
            let mut need = new_tail;
            for part in parts.iter().rev() {
                if need == 0 {
                    break;
                }
                let n = need.min(part.len());
                self.mem[s + need - n..s + need].copy_from_slice(&part[part.len() - n..]);
                need -= n;
            }
        }
        self.tail = new_tail;
    }
}

/// Copy `parts`, back to back, into `dst` (exactly their total length).
fn copy_parts(dst: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for part in parts {
        dst[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, dst.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh open: reading through the direct descriptor needs aligned buffers.
    fn read(path: &std::path::Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn segment(dir: &tempfile::TempDir) -> (File, std::path::PathBuf) {
        let path = dir.path().join("seg");
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Direct I/O when the file system allows it; the layout is the same.
        let _ = enable_direct_io(&file);
        (file, path)
    }

    #[test]
    fn groups_land_as_an_unaligned_append_would_followed_by_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = segment(&dir);
        let mut w = AlignedWriter::new(4 * 1024);
        let mut expect = Vec::new();
        let mut seg_len = 0u64;
        // Sizes that start and end inside, on and across block boundaries,
        // plus one group larger than the kept buffer.
        for (i, size) in [10usize, 4086, 4096, 1, 9000, 20_000, 3]
            .into_iter()
            .enumerate()
        {
            let a = vec![i as u8 + 1; size / 2];
            let b = vec![i as u8 + 100; size - size / 2];
            let file_len = w.write(&file, seg_len, &[&a, &b], size).unwrap();
            w.commit(size);
            expect.extend_from_slice(&a);
            expect.extend_from_slice(&b);
            seg_len += size as u64;
            assert_eq!(file_len, round_up(seg_len));
            let on_disk = read(&path);
            assert_eq!(on_disk.len() as u64, file_len);
            assert_eq!(&on_disk[..expect.len()], &expect[..], "after group {i}");
            assert!(on_disk[expect.len()..].iter().all(|&z| z == 0));
        }
        assert_eq!(w.cap, w.keep, "an oversized group does not keep its buffer");
    }

    #[test]
    fn aligned_writes_continue_after_groups_written_elsewhere() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut buffered = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .unwrap();
        let direct = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let _ = enable_direct_io(&direct);
        let mut w = AlignedWriter::new(16 * 1024);
        let mut expect: Vec<u8> = Vec::new();
        // Buffered (b) and aligned (a) groups alternating, ending inside,
        // on and across block boundaries, split over several parts.
        for (i, (how, size)) in [
            ('b', 10usize),
            ('b', 100),
            ('a', 5000),
            ('b', 4096 - 5110 % 4096),
            ('a', 7),
            ('b', 9000),
            ('b', 1),
            ('a', 12_345),
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..size).map(|k| (i * 31 + k) as u8).collect();
            let (x, y) = data.split_at(size / 3);
            let parts: [&[u8]; 2] = [x, y];
            let seg_len = expect.len() as u64;
            if how == 'b' {
                use std::io::{Seek, SeekFrom};
                buffered.seek(SeekFrom::Start(seg_len)).unwrap();
                buffered.write_all(x).unwrap();
                buffered.write_all(y).unwrap();
                w.commit_written(&parts, size);
            } else {
                w.write(&direct, seg_len, &parts, size).unwrap();
                w.commit(size);
            }
            expect.extend_from_slice(&data);
            let on_disk = read(&path);
            assert_eq!(&on_disk[..expect.len()], &expect[..], "after group {i}");
            assert!(on_disk[expect.len()..].iter().all(|&z| z == 0));
        }
    }

    #[test]
    fn an_uncommitted_group_is_rewritten_from_the_same_partial_block() {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = segment(&dir);
        let mut w = AlignedWriter::new(4096);
        w.write(&file, 0, &[b"durable"], 7).unwrap();
        w.commit(7);
        // A group whose fsync failed: the writer cuts the file back and
        // does not commit it.
        w.write(&file, 7, &[&[9u8; 5000]], 5000).unwrap();
        file.set_len(7).unwrap();
        w.write(&file, 7, &[b"next"], 4).unwrap();
        w.commit(4);
        let on_disk = read(&path);
        assert_eq!(&on_disk[..11], b"durablenext");
        assert!(on_disk[11..].iter().all(|&z| z == 0));
        assert_eq!(on_disk.len(), BLOCK);
    }
}

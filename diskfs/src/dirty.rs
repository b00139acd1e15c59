//! The volatile write cache: the bytes a disk has acknowledged but not yet
//! made durable.
//!
//! A [`DirtyFile`] is one file's unsynced state: the byte ranges written
//! since the file was last written back (kept coalesced, never overlapping),
//! its logical length, and how much of the backing file still shows through
//! (a truncate hides the backing bytes past it, even if a later write or
//! extension grows the file again). Reads merge the ranges over the backing
//! bytes; write-back replays them onto the backing file.
//!
//! A [`DirtyTable`] holds the dirty files of a mount, keyed by inode (dirty
//! data follows the inode, not the name, so renames and unlinks do not touch
//! it), counts the dirty bytes and enforces the dirty limit by writing back
//! the oldest dirty file first, as the kernel's writeback does.
//!
//! Everything here is pure bookkeeping over the [`Backing`] trait; it knows
//! nothing of FUSE, faults or locks (the caller serialises access).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// At most this many files may be dirty at once, whatever their bytes: each
/// dirty file holds an open descriptor, and a truncate-only entry has no
/// bytes for the byte limit to see.
pub const DIRTY_FILES_MAX: usize = 1024;

/// Where written-back bytes land: the real file behind a dirty one.
pub trait Backing {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The current length in bytes.
    fn size(&self) -> io::Result<u64>;
}

impl Backing for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// Fills `buf` from `offset` until it is full or the backing ends; returns
/// the bytes read. A short `read_at` is not the end of file, so loop.
fn read_full_at<B: Backing + ?Sized>(backing: &B, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match backing.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// One file's unsynced writes and length changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyFile {
    /// Written ranges by start offset; never overlapping nor touching.
    ranges: BTreeMap<u64, Vec<u8>>,
    /// The length readers see.
    logical_len: u64,
    /// Backing bytes below this offset still show through; above it the
    /// file reads as zeros unless a range covers it.
    backing_valid: u64,
    /// Sum of the ranges' lengths.
    bytes: u64,
}

impl DirtyFile {
    /// A clean view of a backing file `backing_len` bytes long.
    pub fn new(backing_len: u64) -> Self {
        DirtyFile {
            ranges: BTreeMap::new(),
            logical_len: backing_len,
            backing_valid: backing_len,
            bytes: 0,
        }
    }

    /// The length readers see (and `stat` reports).
    pub fn logical_len(&self) -> u64 {
        self.logical_len
    }

    /// Bytes held in memory, waiting for write-back.
    pub fn dirty_bytes(&self) -> u64 {
        self.bytes
    }

    /// How many disjoint ranges are held (for tests and diagnostics).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// Records a write of `data` at `offset`, merging it with every range it
    /// overlaps or touches so the ranges stay disjoint and few.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return; // POSIX: a zero-length write changes nothing, not even the length.
        }
        let end = offset
            .checked_add(data.len() as u64)
            .expect("write end overflows u64; caller must bound it");
        let touching = self.touching_keys(offset, end);
        let merged_start = touching.first().map_or(offset, |&k| k.min(offset));
        let merged_end = touching
            .last()
            .map_or(end, |&k| (k + self.ranges[&k].len() as u64).max(end));
        let merged_len = usize::try_from(merged_end - merged_start).expect("a dirty range fits in memory");

        // Reuse the first range's buffer when it starts the merged range: an
        // append then extends in place instead of copying the whole range.
        let mut base = match touching.first() {
            Some(&k) if k == merged_start => self.take_range(k),
            _ => Vec::new(),
        };
        base.resize(merged_len, 0);
        for &k in touching.iter().filter(|&&k| k != merged_start) {
            let part = self.take_range(k);
            let at = (k - merged_start) as usize;
            base[at..at + part.len()].copy_from_slice(&part);
        }
        let at = (offset - merged_start) as usize;
        base[at..at + data.len()].copy_from_slice(data);
        self.bytes += base.len() as u64;
        self.ranges.insert(merged_start, base);
        self.logical_len = self.logical_len.max(end);
    }

    /// Start offsets of the ranges that overlap or touch `[offset, end]`.
    fn touching_keys(&self, offset: u64, end: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        if let Some((&k, v)) = self.ranges.range(..offset).next_back() {
            if k + v.len() as u64 >= offset {
                keys.push(k);
            }
        }
        keys.extend(self.ranges.range(offset..=end).map(|(&k, _)| k));
        keys
    }

    /// Removes the range starting at `key`, keeping the byte count right.
    fn take_range(&mut self, key: u64) -> Vec<u8> {
        let v = self.ranges.remove(&key).expect("key came from the map");
        self.bytes -= v.len() as u64;
        v
    }

    /// Truncates or extends to `len`. Bytes past a truncation are gone for
    /// good: growing the file again shows zeros there, not the old bytes.
    pub fn set_len(&mut self, len: u64) {
        for (_, v) in self.ranges.split_off(&len) {
            self.bytes -= v.len() as u64;
        }
        if let Some((&k, v)) = self.ranges.iter_mut().next_back() {
            let keep = (len - k) as usize;
            if v.len() > keep {
                self.bytes -= (v.len() - keep) as u64;
                v.truncate(keep);
            }
        }
        self.backing_valid = self.backing_valid.min(len);
        self.logical_len = len;
    }

    /// Reads up to `size` bytes at `offset` as a reader of the file would see
    /// them: backing bytes where they still show, zeros past them, the dirty
    /// ranges on top; nothing past the logical length.
    pub fn read<B: Backing + ?Sized>(&self, backing: &B, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        if offset >= self.logical_len {
            return Ok(Vec::new());
        }
        let end = self.logical_len.min(offset.saturating_add(size as u64));
        let mut buf = vec![0u8; (end - offset) as usize];
        let backing_end = end.min(self.backing_valid);
        if offset < backing_end {
            // A short read leaves zeros, which is what a hole reads as.
            read_full_at(backing, &mut buf[..(backing_end - offset) as usize], offset)?;
        }
        // Ranges are disjoint, so walking back from `end` their ends fall too.
        for (&k, v) in self.ranges.range(..end).rev() {
            let r_end = k + v.len() as u64;
            if r_end <= offset {
                break;
            }
            let from = k.max(offset);
            let to = r_end.min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&v[(from - k) as usize..(to - k) as usize]);
        }
        Ok(buf)
    }

    /// Replays this state onto `backing` so that the backing file reads
    /// exactly as this view does. Safe to repeat after a failure.
    pub fn write_back<B: Backing + ?Sized>(&self, backing: &B) -> io::Result<()> {
        if backing.size()? > self.backing_valid {
            backing.set_len(self.backing_valid)?;
        }
        for (&k, v) in &self.ranges {
            backing.write_all_at(v, k)?;
        }
        if backing.size()? != self.logical_len {
            backing.set_len(self.logical_len)?;
        }
        Ok(())
    }
}

/// A dirty file and where it goes when written back.
#[derive(Debug)]
struct Entry<B> {
    file: DirtyFile,
    /// An open descriptor of the inode, so write-back works after the name
    /// is renamed or unlinked and every handle is closed.
    backing: Arc<B>,
    /// When the file became dirty (a sequence number): write-back order.
    since: u64,
}

/// What a bulk operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Dirty bytes written back or dropped.
    pub bytes: u64,
    /// The inodes concerned.
    pub inos: Vec<u64>,
}

/// A write-back that failed: the file stays dirty.
#[derive(Debug, thiserror::Error)]
#[error("writing back inode {ino}: {source}")]
pub struct WriteBackError {
    /// The inode whose write-back failed.
    pub ino: u64,
    /// The backing file's error.
    #[source]
    pub source: io::Error,
}

/// The dirty files of one mount.
#[derive(Debug)]
pub struct DirtyTable<B> {
    files: HashMap<u64, Entry<B>>,
    dirty_bytes: u64,
    limit_bytes: u64,
    next_since: u64,
}

impl<B: Backing> DirtyTable<B> {
    /// An empty table that writes back once more than `limit_bytes` are dirty.
    pub fn new(limit_bytes: u64) -> Self {
        DirtyTable {
            files: HashMap::new(),
            dirty_bytes: 0,
            limit_bytes,
            next_since: 0,
        }
    }

    /// Bytes held in memory over every file.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// Files with unsynced writes or length changes.
    pub fn dirty_files(&self) -> usize {
        self.files.len()
    }

    /// The dirty limit in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// The length a reader of `ino` sees, if it differs from the backing's.
    pub fn logical_len(&self, ino: u64) -> Option<u64> {
        self.files.get(&ino).map(|e| e.file.logical_len())
    }

    /// The descriptor a dirty `ino` will be written back through.
    pub fn backing_of(&self, ino: u64) -> Option<&Arc<B>> {
        self.files.get(&ino).map(|e| &e.backing)
    }

    /// The entry of `ino`, made from `backing`'s current length if new.
    fn entry(&mut self, ino: u64, backing: &Arc<B>) -> io::Result<&mut Entry<B>> {
        if !self.files.contains_key(&ino) {
            let file = DirtyFile::new(backing.size()?);
            let since = self.next_since;
            self.next_since += 1;
            self.files.insert(
                ino,
                Entry {
                    file,
                    backing: Arc::clone(backing),
                    since,
                },
            );
        }
        Ok(self.files.get_mut(&ino).expect("just inserted"))
    }

    /// Records a write to `ino`. Call [`DirtyTable::enforce_limits`] after.
    pub fn write(&mut self, ino: u64, backing: &Arc<B>, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(()); // Changes nothing; do not hold a descriptor for it.
        }
        let entry = self.entry(ino, backing)?;
        let before = entry.file.dirty_bytes();
        entry.file.write(offset, data);
        let after = entry.file.dirty_bytes();
        self.dirty_bytes = self.dirty_bytes - before + after;
        Ok(())
    }

    /// Records a truncate or extension of `ino` to `len`.
    pub fn set_len(&mut self, ino: u64, backing: &Arc<B>, len: u64) -> io::Result<()> {
        if !self.files.contains_key(&ino) && backing.size()? == len {
            return Ok(()); // Nothing changes; do not hold a descriptor for it.
        }
        let entry = self.entry(ino, backing)?;
        let before = entry.file.dirty_bytes();
        entry.file.set_len(len);
        let after = entry.file.dirty_bytes();
        self.dirty_bytes = self.dirty_bytes - before + after;
        Ok(())
    }

    /// Reads `ino` as its readers see it; `backing` is any descriptor of it.
    pub fn read(&self, ino: u64, backing: &B, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        match self.files.get(&ino) {
            Some(e) => e.file.read(backing, offset, size),
            None => {
                let mut buf = vec![0u8; size];
                let n = read_full_at(backing, &mut buf, offset)?;
                buf.truncate(n);
                Ok(buf)
            }
        }
    }

    /// Writes `ino` back and forgets it; returns the bytes written back.
    /// On failure the file stays dirty.
    pub fn write_back(&mut self, ino: u64) -> Result<u64, WriteBackError> {
        let Some(entry) = self.files.get(&ino) else {
            return Ok(0);
        };
        entry
            .file
            .write_back(&*entry.backing)
            .map_err(|source| WriteBackError { ino, source })?;
        Ok(self.discard(ino).unwrap_or(0))
    }

    /// Writes back every dirty file, oldest first. A file that fails stays
    /// dirty and the others are still written; the first failure is returned.
    pub fn write_back_all(&mut self) -> Result<Outcome, WriteBackError> {
        let mut order: Vec<(u64, u64)> = self.files.iter().map(|(&ino, e)| (e.since, ino)).collect();
        order.sort_unstable();
        let mut outcome = Outcome::default();
        let mut first_error = None;
        for (_, ino) in order {
            match self.write_back(ino) {
                Ok(bytes) => {
                    outcome.bytes += bytes;
                    outcome.inos.push(ino);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(outcome), Err)
    }

    /// Writes back the oldest files while more bytes than the limit, or more
    /// files than [`DIRTY_FILES_MAX`], are dirty. Returns what it wrote.
    pub fn enforce_limits(&mut self) -> Result<Outcome, WriteBackError> {
        let mut outcome = Outcome::default();
        while self.dirty_bytes > self.limit_bytes || self.files.len() > DIRTY_FILES_MAX {
            let over_files = self.files.len() > DIRTY_FILES_MAX;
            // Over the byte limit only files with bytes help; over the file
            // limit any file does.
            let oldest = self
                .files
                .iter()
                .filter(|(_, e)| over_files || e.file.dirty_bytes() > 0)
                .min_by_key(|(_, e)| e.since)
                .map(|(&ino, _)| ino);
            let Some(ino) = oldest else { break };
            outcome.bytes += self.write_back(ino)?;
            outcome.inos.push(ino);
        }
        Ok(outcome)
    }

    /// Forgets `ino`'s unsynced state without writing it; returns its bytes.
    pub fn discard(&mut self, ino: u64) -> Option<u64> {
        let entry = self.files.remove(&ino)?;
        self.dirty_bytes -= entry.file.dirty_bytes();
        Some(entry.file.dirty_bytes())
    }

    /// Forgets every unsynced write, as a power loss would.
    pub fn drop_all(&mut self) -> Outcome {
        let inos: Vec<u64> = self.files.keys().copied().collect();
        let outcome = Outcome {
            bytes: self.dirty_bytes,
            inos,
        };
        self.files.clear();
        self.dirty_bytes = 0;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_testkit::Below;

    /// A real (unlinked) temporary file holding `content`.
    fn backing_with(content: &[u8]) -> Arc<File> {
        let f = tempfile::tempfile().expect("tempfile");
        FileExt::write_all_at(&f, content, 0).expect("seed backing");
        Arc::new(f)
    }

    fn backing_bytes(f: &File) -> Vec<u8> {
        let mut buf = vec![0u8; f.size().unwrap() as usize];
        read_full_at(f, &mut buf, 0).unwrap();
        buf
    }

    fn read_all(d: &DirtyFile, f: &File) -> Vec<u8> {
        d.read(f, 0, usize::MAX / 2).unwrap()
    }

    #[test]
    fn overlapping_writes_coalesce_and_later_bytes_win() {
        let f = backing_with(b"");
        let mut d = DirtyFile::new(0);
        d.write(0, b"aaaa");
        d.write(2, b"bbbb");
        d.write(10, b"cc");
        assert_eq!(d.range_count(), 2);
        d.write(5, b"ddddd"); // touches [0,6) and [10,12): all one range now
        assert_eq!(d.range_count(), 1);
        assert_eq!(read_all(&d, &f), b"aabbbdddddcc");
        assert_eq!(d.dirty_bytes(), 12);
        assert_eq!(d.logical_len(), 12);
    }

    #[test]
    fn write_inside_an_existing_range_keeps_one_range() {
        let f = backing_with(b"");
        let mut d = DirtyFile::new(0);
        d.write(0, b"0123456789");
        d.write(3, b"xy");
        assert_eq!(d.range_count(), 1);
        assert_eq!(d.dirty_bytes(), 10);
        assert_eq!(read_all(&d, &f), b"012xy56789");
    }

    #[test]
    fn reads_merge_dirty_ranges_over_backing_bytes() {
        let f = backing_with(b"ABCDEFGHIJ");
        let mut d = DirtyFile::new(10);
        d.write(2, b"xx");
        d.write(7, b"y");
        assert_eq!(read_all(&d, &f), b"ABxxEFGyIJ");
        assert_eq!(d.read(&*f, 3, 5).unwrap(), b"xEFGy");
        assert_eq!(d.read(&*f, 10, 5).unwrap(), b"");
        assert_eq!(backing_bytes(&f), b"ABCDEFGHIJ", "reads never touch the backing");
    }

    #[test]
    fn truncate_hides_backing_bytes_even_after_regrowing() {
        let f = backing_with(b"ABCDEFGHIJ");
        let mut d = DirtyFile::new(10);
        d.write(1, b"zzzzzz"); // [1,7)
        d.set_len(4);
        assert_eq!(read_all(&d, &f), b"Azzz");
        assert_eq!(d.dirty_bytes(), 3);
        d.set_len(8);
        assert_eq!(read_all(&d, &f), b"Azzz\0\0\0\0");
        d.write(6, b"q");
        assert_eq!(read_all(&d, &f), b"Azzz\0\0q\0");
        d.write_back(&*f).unwrap();
        assert_eq!(backing_bytes(&f), b"Azzz\0\0q\0");
    }

    #[test]
    fn writes_beyond_the_backing_length_extend_with_zeros() {
        let f = backing_with(b"abc");
        let mut d = DirtyFile::new(3);
        d.write(6, b"xyz");
        assert_eq!(d.logical_len(), 9);
        assert_eq!(read_all(&d, &f), b"abc\0\0\0xyz");
        d.set_len(12); // ftruncate up
        assert_eq!(read_all(&d, &f), b"abc\0\0\0xyz\0\0\0");
        d.write_back(&*f).unwrap();
        assert_eq!(backing_bytes(&f), b"abc\0\0\0xyz\0\0\0");
    }

    #[test]
    fn write_back_makes_the_backing_read_as_the_view_and_is_repeatable() {
        let f = backing_with(b"0123456789");
        let mut d = DirtyFile::new(10);
        d.write(8, b"abcd");
        d.write(0, b"_");
        let view = read_all(&d, &f);
        d.write_back(&*f).unwrap();
        assert_eq!(backing_bytes(&f), view);
        d.write_back(&*f).unwrap();
        assert_eq!(backing_bytes(&f), view);
    }

    #[test]
    fn table_write_back_drop_and_discard_keep_counts() {
        let a = backing_with(b"aaaa");
        let b = backing_with(b"bbbb");
        let mut t = DirtyTable::new(1 << 20);
        t.write(1, &a, 0, b"AA").unwrap();
        t.write(2, &b, 4, b"BBB").unwrap();
        assert_eq!((t.dirty_bytes(), t.dirty_files()), (5, 2));
        assert_eq!(t.logical_len(2), Some(7));
        assert_eq!(t.read(2, &*b, 0, 100).unwrap(), b"bbbbBBB");
        assert_eq!(t.write_back(1).unwrap(), 2);
        assert_eq!(backing_bytes(&a), b"AAaa");
        assert_eq!((t.dirty_bytes(), t.dirty_files()), (3, 1));
        let dropped = t.drop_all();
        assert_eq!(
            dropped,
            Outcome {
                bytes: 3,
                inos: vec![2]
            }
        );
        assert_eq!(backing_bytes(&b), b"bbbb", "dropped bytes never reach the backing");
        assert_eq!(t.read(2, &*b, 0, 100).unwrap(), b"bbbb");
        t.write(2, &b, 0, b"x").unwrap();
        assert_eq!(t.discard(2), Some(1));
        assert_eq!((t.dirty_bytes(), t.dirty_files()), (0, 0));
    }

    #[test]
    fn a_no_op_truncate_creates_no_entry() {
        let a = backing_with(b"abc");
        let mut t = DirtyTable::new(100);
        t.set_len(1, &a, 3).unwrap();
        assert_eq!(t.dirty_files(), 0);
        t.set_len(1, &a, 1).unwrap();
        assert_eq!((t.dirty_files(), t.logical_len(1)), (1, Some(1)));
        assert_eq!(backing_bytes(&a), b"abc", "the truncate is pending");
    }

    #[test]
    fn the_dirty_limit_writes_back_the_oldest_file_first() {
        let (a, b, c) = (backing_with(b""), backing_with(b""), backing_with(b""));
        let mut t = DirtyTable::new(10);
        t.write(1, &a, 0, &[1; 4]).unwrap();
        t.write(2, &b, 0, &[2; 4]).unwrap();
        assert!(
            t.enforce_limits().unwrap().inos.is_empty(),
            "8 bytes are under the limit"
        );
        t.write(1, &a, 4, &[1; 1]).unwrap(); // file 1 stays the oldest though written last
        t.write(3, &c, 0, &[3; 4]).unwrap();
        let written = t.enforce_limits().unwrap();
        assert_eq!(
            written,
            Outcome {
                bytes: 5,
                inos: vec![1]
            }
        );
        assert_eq!(backing_bytes(&a), [1; 5]);
        assert!(backing_bytes(&b).is_empty() && backing_bytes(&c).is_empty());
        assert_eq!(t.dirty_bytes(), 8);
    }

    #[test]
    fn the_file_limit_bounds_truncate_only_entries() {
        let mut t = DirtyTable::new(u64::MAX);
        let files: Vec<Arc<File>> = (0..DIRTY_FILES_MAX + 1).map(|_| backing_with(b"x")).collect();
        for (i, f) in files.iter().enumerate() {
            t.set_len(i as u64, f, 0).unwrap();
        }
        let written = t.enforce_limits().unwrap();
        assert_eq!(written.inos, vec![0]);
        assert_eq!(t.dirty_files(), DIRTY_FILES_MAX);
        assert_eq!(files[0].size().unwrap(), 0);
        assert_eq!(files[1].size().unwrap(), 1);
    }

    #[test]
    fn a_failed_write_back_keeps_that_file_dirty_and_writes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"ro").unwrap();
        let read_only = Arc::new(File::open(&path).unwrap()); // write_all_at fails: EBADF
        let good = backing_with(b"");
        let mut t = DirtyTable::new(1 << 20);
        t.write(1, &read_only, 0, b"XX").unwrap();
        t.write(2, &good, 0, b"ok").unwrap();
        let err = t.write_back_all().unwrap_err();
        assert_eq!(err.ino, 1);
        assert_eq!(backing_bytes(&good), b"ok");
        assert_eq!((t.dirty_files(), t.dirty_bytes()), (1, 2));
        assert_eq!(
            t.read(1, &*read_only, 0, 10).unwrap(),
            b"XX",
            "still readable from the cache"
        );
    }

    /// The obvious model: the file as a plain vector, edited in place.
    fn model_apply(model: &mut Vec<u8>, op: &Op) {
        match op {
            Op::Write(off, data) => {
                let end = *off as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[*off as usize..end].copy_from_slice(data);
            }
            Op::SetLen(len) => model.resize(*len as usize, 0),
        }
    }

    #[derive(Debug)]
    enum Op {
        Write(u64, Vec<u8>),
        SetLen(u64),
    }

    #[test]
    fn random_edits_match_a_plain_vector_model() {
        for seed in 1..=200u64 {
            let mut rng = faultline_testkit::rng(seed);
            let initial: Vec<u8> = (0..rng.below(64)).map(|i| b'a' + (i % 26) as u8).collect();
            let f = backing_with(&initial);
            let mut d = DirtyFile::new(initial.len() as u64);
            let mut model = initial.clone();
            let mut ops = Vec::new();
            for step in 0..40 {
                let op = if rng.below(4) == 0 {
                    Op::SetLen(rng.below(96))
                } else {
                    let len = 1 + rng.below(16) as usize;
                    Op::Write(rng.below(80), (0..len).map(|_| b'A' + rng.below(26) as u8).collect())
                };
                match &op {
                    Op::Write(off, data) => d.write(*off, data),
                    Op::SetLen(len) => d.set_len(*len),
                }
                model_apply(&mut model, &op);
                ops.push(op);
                let off = rng.below(100);
                let size = rng.below(40) as usize;
                let want: Vec<u8> = model.iter().skip(off as usize).take(size).copied().collect();
                assert_eq!(
                    d.read(&*f, off, size).unwrap(),
                    want,
                    "seed {seed} step {step} ops {ops:?}"
                );
                let sum: u64 = d.ranges.values().map(|v| v.len() as u64).sum();
                assert_eq!(d.dirty_bytes(), sum, "seed {seed}: byte count drifted");
            }
            assert_eq!(
                backing_bytes(&f),
                initial,
                "seed {seed}: nothing written before write-back"
            );
            d.write_back(&*f).unwrap();
            assert_eq!(
                backing_bytes(&f),
                model,
                "seed {seed}: write-back differs from the model"
            );
        }
    }
}

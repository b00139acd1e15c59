//! Thin wrappers over the system calls std does not offer (renameat2,
//! mknod, utimensat, statvfs) and the conversion of a backing file's
//! metadata into FUSE attributes.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

/// The errno FUSE should answer for an I/O error.
pub fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

/// `path` as a C string; a path with a NUL byte cannot name a file.
pub fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `renameat2(2)`, so `RENAME_NOREPLACE` and `RENAME_EXCHANGE` work.
pub fn rename2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (from, to) = (cpath(from)?, cpath(to)?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    check(unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) })
}

/// `mknod(2)` for fifos, sockets and device nodes.
pub fn mknod(path: &Path, mode: u32, rdev: u32) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: the string is NUL-terminated and outlives the call.
    check(unsafe { libc::mknod(path.as_ptr(), mode as libc::mode_t, libc::dev_t::from(rdev)) })
}

/// `statvfs(3)` of `path`.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let path = cpath(path)?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; the string outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st)
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    let (tv_sec, tv_nsec) = match t {
        None => (0, libc::UTIME_OMIT),
        Some(TimeOrNow::Now) => (0, libc::UTIME_NOW),
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as libc::time_t, d.subsec_nanos() as libc::c_long),
            // Before 1970: whole seconds back, nanoseconds forward.
            Err(e) => {
                let d = e.duration();
                let secs = -(d.as_secs() as libc::time_t) - libc::time_t::from(d.subsec_nanos() > 0);
                let nanos = (1_000_000_000 - d.subsec_nanos()) % 1_000_000_000;
                (secs, nanos as libc::c_long)
            }
        },
    };
    libc::timespec { tv_sec, tv_nsec }
}

/// Sets access and modification times of an open file (`None` keeps one).
pub fn futimens(file: &File, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: the descriptor is open for the call; `times` has two entries.
    check(unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) })
}

/// Sets the times of `path` itself, not of what a symlink points to.
pub fn utimens(path: &Path, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    let path = cpath(path)?;
    // SAFETY: the string is NUL-terminated; `times` has two entries.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// A timestamp of `stat` (seconds and nanoseconds since the epoch).
fn system_time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nanos.clamp(0, 999_999_999) as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

/// The FUSE kind of a std file type (sockets and the like included).
pub fn kind(file_type: std::fs::FileType) -> FileType {
    FileType::from_std(file_type).unwrap_or(FileType::RegularFile)
}

/// FUSE attributes of a backing file seen as inode `ino`, its size replaced
/// by the dirty length when the file has unsynced writes or truncates.
pub fn attr(meta: &Metadata, ino: u64, dirty_len: Option<u64>) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: dirty_len.unwrap_or(meta.size()),
        blocks: meta.blocks(),
        atime: system_time(meta.atime(), meta.atime_nsec()),
        mtime: system_time(meta.mtime(), meta.mtime_nsec()),
        ctime: system_time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(meta.file_type()),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_round_trip_through_timespec() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        let ts = timespec(Some(TimeOrNow::SpecificTime(t)));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (-2, 500_000_000));
        assert_eq!(system_time(ts.tv_sec, ts.tv_nsec), t);
        assert_eq!(timespec(None).tv_nsec, libc::UTIME_OMIT);
    }
}

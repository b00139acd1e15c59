//! File data operations: open, create, read, write, fsync, fallocate,
//! release. Writes and length changes go to the device's dirty table; only
//! fsync (and `O_SYNC`/`O_DSYNC` writes) write a file back before the dirty
//! limit or the `sync` command does.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use fuser::{Errno, FileAttr, Request};
use tracing::{debug, warn};

use super::nodes::OpenFile;
use super::{io_errno, sys, DiskFs};
use crate::dirty::Backing;

/// Largest offset + length a write or extension may reach (`off_t`'s range).
const FILE_BYTES_MAX: u64 = i64::MAX as u64;

/// Opens backing `path` with `flags`' access mode. `O_APPEND` is left out on
/// purpose: the kernel passes the append offset, and an `O_APPEND` backing
/// descriptor would make `pwrite` ignore the offsets of write-back. With
/// `create_mode`, creates the file (exclusively if `exclusive`).
fn open_backing(path: &Path, flags: i32, create_mode: Option<(u32, bool)>) -> io::Result<File> {
    let mut options = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY => options.write(true),
        libc::O_RDWR => options.read(true).write(true),
        _ => options.read(true),
    };
    // Passed raw: std refuses O_CREAT and O_TRUNC on a read-only open,
    // which POSIX allows.
    let mut custom = flags & libc::O_TRUNC;
    if let Some((mode, exclusive)) = create_mode {
        custom |= libc::O_CREAT | if exclusive { libc::O_EXCL } else { 0 };
        options.mode(mode & 0o7777);
    }
    options.custom_flags(custom).open(path)
}

/// Whether writes through a descriptor opened with `flags` must be durable.
fn sync_writes(flags: i32) -> bool {
    // O_SYNC includes the O_DSYNC bit on Linux.
    flags & libc::O_DSYNC != 0
}

impl DiskFs {
    pub(super) fn do_open(&self, ino: u64, flags: i32) -> Result<u64, Errno> {
        let path = self.verified_path(ino)?;
        let file = if flags & libc::O_TRUNC != 0 {
            // Truncation on open is metadata: applied now, and every unsynced
            // write of the inode goes with the old contents.
            let mut dirty = self.device.dirty();
            let file = open_backing(&path, flags, None).map_err(io_errno)?;
            dirty.discard(ino);
            file
        } else {
            open_backing(&path, flags, None).map_err(io_errno)?
        };
        if self.fuse_ino(file.metadata().map_err(io_errno)?.ino()) != ino {
            return Err(Errno::ESTALE); // Renamed over between the check and the open.
        }
        debug!(ino, path = %path.display(), flags, "open");
        self.handles().open_file(OpenFile {
            ino,
            file: Arc::new(file),
            sync_writes: sync_writes(flags),
        })
    }

    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let path = self.nodes().child(parent, name)?;
        let (file, created) = self.create_backing(&path, mode, flags)?;
        let meta = file.metadata().map_err(io_errno)?;
        let ino = self.fuse_ino(meta.ino());
        if created {
            self.chown_to_caller(&path, req).map_err(io_errno)?;
        }
        let attr = self.attr_of_file(ino, &file)?;
        let fh = self.handles().open_file(OpenFile {
            ino,
            file: Arc::new(file),
            sync_writes: sync_writes(flags),
        })?;
        self.nodes().remember(ino, path);
        Ok((attr, fh))
    }

    /// Creates `path`, or opens it if it exists and the caller did not ask
    /// for `O_EXCL`; says which, since only a new file gets a new owner.
    fn create_backing(&self, path: &Path, mode: u32, flags: i32) -> Result<(File, bool), Errno> {
        match open_backing(path, flags, Some((mode, true))) {
            Ok(file) => Ok((file, true)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & libc::O_EXCL == 0 => {
                // The name existed after all: with O_TRUNC this is do_open's
                // truncation, under the same lock.
                let mut dirty = self.device.dirty();
                let file = open_backing(path, flags, None).map_err(io_errno)?;
                if flags & libc::O_TRUNC != 0 {
                    dirty.discard(self.fuse_ino(file.metadata().map_err(io_errno)?.ino()));
                }
                Ok((file, false))
            }
            Err(e) => Err(io_errno(e)),
        }
    }

    pub(super) fn do_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let open = self.handles().file(fh)?;
        let dirty = self.device.dirty();
        dirty
            .read(open.ino, &*open.file, offset, size as usize)
            .map_err(io_errno)
    }

    pub(super) fn do_write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        if self.device.faults.writes_fail() {
            return Err(Errno::EIO);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= FILE_BYTES_MAX)
            .ok_or(Errno::EFBIG)?;
        let open = self.handles().file(fh)?;
        {
            let mut dirty = self.device.dirty();
            dirty.write(open.ino, &open.file, offset, data).map_err(io_errno)?;
            match dirty.enforce_limits() {
                Ok(written) if !written.inos.is_empty() => {
                    debug!(bytes = written.bytes, inos = ?written.inos, "dirty limit: wrote back the oldest files")
                }
                Ok(_) => {}
                // The write itself is cached; the failed file stays dirty.
                Err(e) => warn!(error = %e, "dirty-limit write-back failed"),
            }
            if open.sync_writes {
                dirty.write_back(open.ino).map_err(|e| io_errno(e.source))?;
            }
        }
        if open.sync_writes {
            open.file.sync_data().map_err(io_errno)?;
        }
        debug!(ino = open.ino, offset, end, "write");
        Ok(data.len() as u32)
    }

    pub(super) fn do_fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        self.device.faults.delay_fsync();
        if self.device.faults.fsyncs_fail() {
            return Err(Errno::EIO);
        }
        let open = self.handles().file(fh)?;
        let bytes = self.device.dirty().write_back(open.ino).map_err(|e| {
            warn!(error = %e, "fsync write-back failed");
            io_errno(e.source)
        })?;
        // The bytes now sit in the backing file system's own cache; make
        // them as durable as the caller asked.
        if datasync {
            open.file.sync_data()
        } else {
            open.file.sync_all()
        }
        .map_err(io_errno)?;
        debug!(ino = open.ino, bytes, datasync, "fsync");
        Ok(())
    }

    pub(super) fn do_fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        // Preallocation without a size change has no visible effect; a size
        // change is a pending extension like ftruncate; the rest (punching
        // holes, zeroing, collapsing) is not modelled.
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= FILE_BYTES_MAX)
            .ok_or(Errno::EFBIG)?;
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Ok(());
        }
        let open = self.handles().file(fh)?;
        let mut dirty = self.device.dirty();
        let len = match dirty.logical_len(open.ino) {
            Some(len) => len,
            None => open.file.size().map_err(io_errno)?,
        };
        if end > len {
            dirty.set_len(open.ino, &open.file, end).map_err(io_errno)?;
        }
        Ok(())
    }

    pub(super) fn do_release(&self, fh: u64) {
        // Bound first: an `if let` scrutinee's guard would live through the
        // body, and `reap` takes the handle table again.
        let closed = self.handles().close_file(fh);
        if let Some(open) = closed {
            self.reap(open.ino);
        }
    }

    /// Attributes of open `file` as inode `ino`, with its dirty length.
    pub(super) fn attr_of_file(&self, ino: u64, file: &File) -> Result<FileAttr, Errno> {
        let dirty = self.device.dirty();
        let meta = file.metadata().map_err(io_errno)?;
        Ok(sys::attr(&meta, ino, dirty.logical_len(ino)))
    }
}

//! The FUSE filesystem: a passthrough to a backing directory whose file data
//! goes through the [`Device`]'s volatile cache and whose every operation
//! passes the device's fault gates.
//!
//! - Data (write, truncate, extension by `fallocate`) is held in the dirty
//!   table until fsync, `sync`, the dirty limit or an orderly exit writes it
//!   back; reads and `stat` see it. See [`data`].
//! - Metadata (create, mkdir, mknod, symlink, link, rename, unlink, rmdir,
//!   chmod, chown, utimes, and truncation by `O_TRUNC` on open) goes straight
//!   to the backing directory, so a dropped cache loses file contents, never
//!   names: the LazyFS simplification. See [`meta`].
//! - Files open with `FOPEN_DIRECT_IO` and every entry and attribute has a
//!   zero TTL, so the kernel's page cache and attribute cache never serve
//!   bytes or sizes the device has dropped.
//!
//! Locks: the device's dirty table may be held while the node or handle
//! table is taken, never the other way round; node and handle guards are
//! only ever statement temporaries.
//!
//! Each trait method gates on the stall, runs a `do_*` method returning
//! `Result<_, Errno>`, and replies; fuser runs them on [`FUSE_THREADS`]
//! threads, so a stall holds at most that many operations in userspace and
//! the rest queue in the kernel.

mod data;
mod meta;
mod nodes;
mod sys;

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use tracing::warn;

use crate::device::Device;
use nodes::{Handles, Nodes};

pub(crate) use sys::cpath;

/// Threads serving FUSE requests.
pub const FUSE_THREADS: usize = 4;

/// Kernel caching of entries and attributes: none (see the module doc).
const TTL: Duration = Duration::ZERO;

/// Every open file bypasses the page cache.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// Inode generations never change: backing inode numbers are only reused
/// after the kernel has forgotten the old inode.
const GENERATION: Generation = Generation(0);

/// The disk-fault filesystem over one backing directory.
#[derive(Debug)]
pub struct DiskFs {
    device: Arc<Device>,
    backing_root: PathBuf,
    /// The backing root's `st_ino`, which FUSE sees as inode 1.
    root_st_ino: u64,
    nodes: Mutex<Nodes>,
    handles: Mutex<Handles>,
    /// Running as root: give new nodes the caller's owner, as a kernel
    /// filesystem would.
    chown_new: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tables stay consistent between statements; serve on after a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DiskFs {
    /// A filesystem over `backing_root` (an existing directory) and `device`.
    pub fn new(device: Arc<Device>, backing_root: &Path) -> io::Result<DiskFs> {
        let root_st_ino = std::fs::metadata(backing_root)?.ino();
        Ok(DiskFs {
            device,
            backing_root: backing_root.to_path_buf(),
            root_st_ino,
            nodes: Mutex::new(Nodes::new(backing_root.to_path_buf())),
            handles: Mutex::new(Handles::default()),
            // SAFETY: geteuid has no preconditions.
            chown_new: unsafe { libc::geteuid() } == 0,
        })
    }

    /// Holds the calling operation while a stall is in force. Called before
    /// any lock is taken, so nothing the control thread needs is held.
    fn gate(&self) {
        self.device.faults.wait_stall();
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        lock(&self.handles)
    }

    fn fuse_ino(&self, st_ino: u64) -> u64 {
        nodes::fuse_ino(self.root_st_ino, st_ino)
    }

    /// Gives a node just made the caller's owner (when running as root).
    fn chown_to_caller(&self, path: &Path, req: &Request) -> io::Result<()> {
        if self.chown_new && (req.uid(), req.gid()) != (0, 0) {
            std::os::unix::fs::lchown(path, Some(req.uid()), Some(req.gid()))?;
        }
        Ok(())
    }

    /// Discards the unsynced state of `ino` once nothing can reach it: no
    /// name links to it and no handle has it open, as the backing inode
    /// itself is then gone. Until then dirty data follows the inode.
    fn reap(&self, ino: u64) {
        if self.handles().is_open(ino) {
            return;
        }
        let mut dirty = self.device.dirty();
        let Some(backing) = dirty.backing_of(ino) else { return };
        match backing.metadata() {
            Ok(meta) if meta.nlink() == 0 => {
                let bytes = dirty.discard(ino);
                tracing::debug!(ino, ?bytes, "discarded the dirty data of an unreachable inode");
            }
            Ok(_) => {}
            Err(e) => warn!(ino, error = %e, "fstat of a dirty inode"),
        }
    }
}

/// Replies `result`'s value with `ok`, or its errno.
macro_rules! reply_with {
    ($reply:expr, $result:expr, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // O_TRUNC arrives with the open instead of as a separate truncate,
        // so it can be told apart from ftruncate and applied at once.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            warn!(
                ?missing,
                "kernel lacks atomic O_TRUNC: O_TRUNC becomes a pending truncate"
            );
        }
        // Direct I/O would otherwise refuse shared mmap (SQLite's -shm, LMDB).
        if config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP).is_err() {
            tracing::info!("kernel refuses mmap of direct-I/O files");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.gate();
        reply_with!(reply, self.do_lookup(parent.0, name), |a| reply
            .entry(&TTL, &a, GENERATION));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.gate();
        reply_with!(reply, self.do_getattr(ino.0, fh.map(|f| f.0)), |a| reply.attr(&TTL, &a));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.gate();
        let change = meta::AttrChange {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        reply_with!(reply, self.do_setattr(ino.0, fh.map(|f| f.0), change), |a| reply
            .attr(&TTL, &a));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.gate();
        reply_with!(reply, self.do_readlink(ino.0), |target| reply.data(&target));
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.gate();
        let made = self.do_mknod(req, parent.0, name, mode & !umask, rdev);
        reply_with!(reply, made, |a| reply.entry(&TTL, &a, GENERATION));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.gate();
        reply_with!(reply, self.do_mkdir(req, parent.0, name, mode & !umask), |a| reply
            .entry(&TTL, &a, GENERATION));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.gate();
        reply_with!(reply, self.do_unlink(parent.0, name), |()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.gate();
        reply_with!(reply, self.do_rmdir(parent.0, name), |()| reply.ok());
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.gate();
        reply_with!(reply, self.do_symlink(req, parent.0, link_name, target), |a| reply
            .entry(&TTL, &a, GENERATION));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.gate();
        reply_with!(
            reply,
            self.do_rename(parent.0, name, newparent.0, newname, flags),
            |()| reply.ok()
        );
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.gate();
        reply_with!(reply, self.do_link(ino.0, newparent.0, newname), |a| reply
            .entry(&TTL, &a, GENERATION));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.gate();
        reply_with!(reply, self.do_open(ino.0, flags.0), |fh| reply
            .opened(FileHandle(fh), OPEN_FLAGS));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.gate();
        reply_with!(reply, self.do_read(fh.0, offset, size), |bytes| reply.data(&bytes));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.gate();
        reply_with!(reply, self.do_write(fh.0, offset, data), |n| reply.written(n));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() makes nothing durable: that is the point of this filesystem.
        self.gate();
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.gate();
        self.do_release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.gate();
        reply_with!(reply, self.do_fsync(fh.0, datasync), |()| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.gate();
        reply_with!(reply, self.do_opendir(ino.0), |fh| reply
            .opened(FileHandle(fh), FopenFlags::empty()));
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.gate();
        let listing = self.handles().dir(fh.0);
        let entries = match listing {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            // The offset of an entry is where the next readdir resumes.
            if reply.add(INodeNo(entry.ino), i as u64 + 1, entry.kind, &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.gate();
        self.handles().close_dir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.gate();
        reply_with!(reply, self.do_fsyncdir(ino.0), |()| reply.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.gate();
        match sys::statvfs(&self.backing_root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(sys::errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.gate();
        let created = self.do_create(req, parent.0, name, mode & !umask, flags);
        reply_with!(reply, created, |(a, fh)| reply.created(
            &TTL,
            &a,
            GENERATION,
            FileHandle(fh),
            OPEN_FLAGS
        ));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.gate();
        reply_with!(reply, self.do_fallocate(fh.0, offset, length, mode), |()| reply.ok());
    }
}

/// The errno of an I/O error, for `?` in `do_*` methods.
fn io_errno(e: io::Error) -> Errno {
    sys::errno(&e)
}

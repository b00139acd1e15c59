//! Metadata operations: lookup, getattr, setattr, the making and removing of
//! names, rename, directories, fsyncdir. They go straight to the backing
//! directory; only a size change through setattr is held as dirty state.
//! Sizes reported come from the dirty table, read under its lock together
//! with the `stat`, so a concurrent write-back never shows a stale size.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Errno, FileAttr, RenameFlags, Request, TimeOrNow};
use tracing::debug;

use super::nodes::DirEntry;
use super::{io_errno, sys, DiskFs};

/// Most entries one directory listing holds; past it the listing is cut
/// short (and says so in the log) rather than growing without bound.
const DIR_ENTRIES_MAX: usize = 1 << 20;

/// The attribute changes of one setattr.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

/// What a setattr acts through: an open descriptor, or the path.
enum Target {
    File(Arc<File>),
    Path(PathBuf),
}

impl DiskFs {
    /// The path of `ino`, checked to still name that inode.
    pub(super) fn verified_path(&self, ino: u64) -> Result<PathBuf, Errno> {
        let path = self.nodes().path(ino)?;
        let meta = fs::symlink_metadata(&path).map_err(io_errno)?;
        if self.fuse_ino(meta.ino()) == ino {
            Ok(path)
        } else {
            Err(Errno::ESTALE)
        }
    }

    /// The metadata of `ino`: through `fh` if given, else its path, else any
    /// open descriptor of it (an unlinked file still open).
    fn stat_ino(&self, ino: u64, fh: Option<u64>) -> Result<Metadata, Errno> {
        if let Some(open) = fh.and_then(|fh| self.handles().file(fh).ok()) {
            return open.file.metadata().map_err(io_errno);
        }
        let path = self.nodes().path(ino)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if self.fuse_ino(meta.ino()) == ino => Ok(meta),
            _ => {
                let open = self.handles().any_file_of(ino);
                open.ok_or(Errno::ENOENT)?.metadata().map_err(io_errno)
            }
        }
    }

    /// The attributes of `path` just made or found, remembered as a lookup.
    fn entry_of(&self, path: PathBuf) -> Result<FileAttr, Errno> {
        let dirty = self.device.dirty();
        let meta = fs::symlink_metadata(&path).map_err(io_errno)?;
        let ino = self.fuse_ino(meta.ino());
        let attr = sys::attr(&meta, ino, dirty.logical_len(ino));
        drop(dirty);
        self.nodes().remember(ino, path);
        Ok(attr)
    }

    pub(super) fn do_lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let path = self.nodes().child(parent, name)?;
        self.entry_of(path)
    }

    pub(super) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let dirty = self.device.dirty();
        let meta = self.stat_ino(ino, fh)?;
        Ok(sys::attr(&meta, ino, dirty.logical_len(ino)))
    }

    fn target(&self, ino: u64, fh: Option<u64>) -> Result<Target, Errno> {
        if let Some(open) = fh.and_then(|fh| self.handles().file(fh).ok()) {
            return Ok(Target::File(Arc::clone(&open.file)));
        }
        match self.verified_path(ino) {
            Ok(path) => Ok(Target::Path(path)),
            Err(e) => self.handles().any_file_of(ino).map(Target::File).ok_or(e),
        }
    }

    pub(super) fn do_setattr(&self, ino: u64, fh: Option<u64>, change: AttrChange) -> Result<FileAttr, Errno> {
        let target = self.target(ino, fh)?;
        if let Some(mode) = change.mode {
            let perms = fs::Permissions::from_mode(mode & 0o7777);
            match &target {
                Target::File(f) => f.set_permissions(perms),
                Target::Path(p) => fs::set_permissions(p, perms),
            }
            .map_err(io_errno)?;
        }
        if change.uid.is_some() || change.gid.is_some() {
            match &target {
                Target::File(f) => std::os::unix::fs::fchown(&**f, change.uid, change.gid),
                Target::Path(p) => std::os::unix::fs::lchown(p, change.uid, change.gid),
            }
            .map_err(io_errno)?;
        }
        if let Some(size) = change.size {
            self.truncate(ino, &target, size)?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            match &target {
                Target::File(f) => sys::futimens(f, change.atime, change.mtime),
                Target::Path(p) => sys::utimens(p, change.atime, change.mtime),
            }
            .map_err(io_errno)?;
        }
        self.do_getattr(ino, fh)
    }

    /// A truncate or extension: held as dirty state, like a write. It needs
    /// a writable descriptor for the write-back to come.
    fn truncate(&self, ino: u64, target: &Target, size: u64) -> Result<(), Errno> {
        if size > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let backing = match target {
            // The kernel passes a handle only for ftruncate, which needs it writable.
            Target::File(f) => Arc::clone(f),
            Target::Path(p) => Arc::new(OpenOptions::new().write(true).open(p).map_err(io_errno)?),
        };
        self.device.dirty().set_len(ino, &backing, size).map_err(io_errno)?;
        debug!(ino, size, "truncate");
        Ok(())
    }

    pub(super) fn do_readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let target = fs::read_link(self.verified_path(ino)?).map_err(io_errno)?;
        Ok(target.into_os_string().into_encoded_bytes())
    }

    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<FileAttr, Errno> {
        let path = self.nodes().child(parent, name)?;
        sys::mknod(&path, mode, rdev).map_err(io_errno)?;
        self.chown_to_caller(&path, req).map_err(io_errno)?;
        self.entry_of(path)
    }

    pub(super) fn do_mkdir(&self, req: &Request, parent: u64, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let path = self.nodes().child(parent, name)?;
        fs::DirBuilder::new()
            .mode(mode & 0o7777)
            .create(&path)
            .map_err(io_errno)?;
        self.chown_to_caller(&path, req).map_err(io_errno)?;
        self.entry_of(path)
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let path = self.nodes().child(parent, name)?;
        std::os::unix::fs::symlink(target, &path).map_err(io_errno)?;
        self.chown_to_caller(&path, req).map_err(io_errno)?;
        self.entry_of(path)
    }

    pub(super) fn do_link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<FileAttr, Errno> {
        let from = self.verified_path(ino)?;
        let to = self.nodes().child(newparent, newname)?;
        fs::hard_link(&from, &to).map_err(io_errno)?;
        self.entry_of(to)
    }

    /// The inode `path` names now, if any.
    fn ino_at(&self, path: &Path) -> Option<u64> {
        fs::symlink_metadata(path).ok().map(|m| self.fuse_ino(m.ino()))
    }

    pub(super) fn do_unlink(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let path = self.nodes().child(parent, name)?;
        let ino = self.ino_at(&path);
        fs::remove_file(&path).map_err(io_errno)?;
        debug!(?ino, path = %path.display(), "unlink");
        if let Some(ino) = ino {
            self.reap(ino);
        }
        Ok(())
    }

    pub(super) fn do_rmdir(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let path = self.nodes().child(parent, name)?;
        fs::remove_dir(&path).map_err(io_errno)
    }

    pub(super) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.nodes().child(parent, name)?;
        let to = self.nodes().child(newparent, newname)?;
        let (moved, replaced) = (self.ino_at(&from), self.ino_at(&to));
        sys::rename2(&from, &to, flags.bits()).map_err(io_errno)?;
        debug!(from = %from.display(), to = %to.display(), ?moved, ?replaced, "rename");
        if moved.is_some() && moved == replaced {
            return Ok(()); // Two links of one inode: POSIX makes this a no-op.
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            self.nodes().exchanged(&from, &to);
            return Ok(());
        }
        self.nodes().renamed(&from, &to);
        // The inode renamed over lost a name; its dirty data dies with it
        // once nothing else reaches it.
        if let Some(replaced) = replaced {
            self.reap(replaced);
        }
        Ok(())
    }

    pub(super) fn do_opendir(&self, ino: u64) -> Result<u64, Errno> {
        let path = self.verified_path(ino)?;
        let entries = self.list_dir(ino, &path)?;
        self.handles().open_dir(entries)
    }

    /// A snapshot of the directory at `path`, `.` and `..` first: readdir
    /// then pages through a listing that cannot shift under its offsets.
    fn list_dir(&self, ino: u64, path: &Path) -> Result<Vec<DirEntry>, Errno> {
        let parent_ino = match path.parent() {
            Some(parent) if ino != fuser::INodeNo::ROOT.0 => self.ino_at(parent).unwrap_or(ino),
            _ => ino,
        };
        let dir = |name: &str, ino| DirEntry {
            ino,
            kind: fuser::FileType::Directory,
            name: name.into(),
        };
        let mut entries = vec![dir(".", ino), dir("..", parent_ino)];
        for entry in fs::read_dir(path).map_err(io_errno)? {
            if entries.len() >= DIR_ENTRIES_MAX {
                tracing::warn!(path = %path.display(), max = DIR_ENTRIES_MAX, "directory listing cut short");
                break;
            }
            let entry = entry.map_err(io_errno)?;
            let kind = entry.file_type().map_err(io_errno)?;
            let st_ino = std::os::unix::fs::DirEntryExt::ino(&entry);
            entries.push(DirEntry {
                ino: self.fuse_ino(st_ino),
                kind: sys::kind(kind),
                name: entry.file_name(),
            });
        }
        Ok(entries)
    }

    pub(super) fn do_fsyncdir(&self, ino: u64) -> Result<(), Errno> {
        self.device.faults.delay_fsync();
        if self.device.faults.fsyncs_fail() {
            return Err(Errno::EIO);
        }
        // Names are already in the backing directory; make them durable there.
        File::open(self.verified_path(ino)?)
            .and_then(|d| d.sync_all())
            .map_err(io_errno)
    }
}

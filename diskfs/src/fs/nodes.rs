//! Which backing path an inode number stands for, and which backing file an
//! open handle reads and writes.
//!
//! FUSE inode numbers are the backing files' own `st_ino`, with the backing
//! root and inode 1 swapped (FUSE's root must be 1): the map is a bijection,
//! needs no allocation, and makes a name that reappears through another path
//! (a hard link, a rename) the same inode, so dirty data keyed by inode
//! follows the file. A path can go stale (renamed over, unlinked): callers
//! check that the path's `st_ino` still matches before trusting it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Errno, FileType, INodeNo};

/// At most this many files and directories may be open through the mount.
pub const HANDLES_MAX: usize = 1 << 20;

#[derive(Debug)]
struct Node {
    path: PathBuf,
    /// Lookups the kernel holds; the node is forgotten at zero.
    lookups: u64,
}

/// The FUSE inode number of backing inode `st_ino`, the backing root being
/// `root_st_ino`.
pub fn fuse_ino(root_st_ino: u64, st_ino: u64) -> u64 {
    if st_ino == root_st_ino {
        INodeNo::ROOT.0
    } else if st_ino == INodeNo::ROOT.0 {
        root_st_ino
    } else {
        st_ino
    }
}

/// Inode number to backing path.
#[derive(Debug)]
pub struct Nodes {
    nodes: HashMap<u64, Node>,
}

impl Nodes {
    /// A table holding the root, backed by `root`.
    pub fn new(root: PathBuf) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(INodeNo::ROOT.0, Node { path: root, lookups: 1 });
        Nodes { nodes }
    }

    /// The backing path last known for `ino`.
    pub fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.nodes.get(&ino).map(|n| n.path.clone()).ok_or(Errno::ESTALE)
    }

    /// The backing path of `name` in directory `parent`.
    pub fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        let bytes = name.as_encoded_bytes();
        if bytes.is_empty() || bytes.contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        Ok(self.path(parent)?.join(name))
    }

    /// Records one more kernel reference to `ino`, now reachable at `path`.
    pub fn remember(&mut self, ino: u64, path: PathBuf) {
        let node = self.nodes.entry(ino).or_insert(Node {
            path: PathBuf::new(),
            lookups: 0,
        });
        node.path = path;
        node.lookups += 1;
    }

    /// Drops `n` kernel references to `ino`; the root is never forgotten.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == INodeNo::ROOT.0 {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Moves every path under `from` to the same place under `to`.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = join_rest(to, rest);
            }
        }
    }

    /// Swaps the paths under `a` and under `b` (`RENAME_EXCHANGE`).
    pub fn exchanged(&mut self, a: &Path, b: &Path) {
        for node in self.nodes.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(a) {
                node.path = join_rest(b, rest);
            } else if let Ok(rest) = node.path.strip_prefix(b) {
                node.path = join_rest(a, rest);
            }
        }
    }
}

fn join_rest(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

/// An open file of the mount.
#[derive(Debug)]
pub struct OpenFile {
    /// Its inode.
    pub ino: u64,
    /// The backing file, opened with the same access mode.
    pub file: Arc<File>,
    /// Opened with `O_SYNC`/`O_DSYNC`: every write is durable on return.
    pub sync_writes: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// FUSE inode number.
    pub ino: u64,
    /// Its kind.
    pub kind: FileType,
    /// Its name.
    pub name: OsString,
}

/// Open files and directories by handle number.
#[derive(Debug, Default)]
pub struct Handles {
    next_fh: u64,
    files: HashMap<u64, Arc<OpenFile>>,
    dirs: HashMap<u64, Arc<Vec<DirEntry>>>,
}

impl Handles {
    fn next(&mut self) -> Result<u64, Errno> {
        if self.files.len() + self.dirs.len() >= HANDLES_MAX {
            return Err(Errno::EMFILE);
        }
        self.next_fh += 1;
        Ok(self.next_fh)
    }

    /// Registers an open file; returns its handle.
    pub fn open_file(&mut self, file: OpenFile) -> Result<u64, Errno> {
        let fh = self.next()?;
        self.files.insert(fh, Arc::new(file));
        Ok(fh)
    }

    /// The open file behind `fh`.
    pub fn file(&self, fh: u64) -> Result<Arc<OpenFile>, Errno> {
        self.files.get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// Forgets `fh`; returns what it was.
    pub fn close_file(&mut self, fh: u64) -> Option<Arc<OpenFile>> {
        self.files.remove(&fh)
    }

    /// Any open backing file of `ino` (for an inode whose name is gone).
    pub fn any_file_of(&self, ino: u64) -> Option<Arc<File>> {
        self.files.values().find(|f| f.ino == ino).map(|f| Arc::clone(&f.file))
    }

    /// Whether `ino` is open through any handle.
    pub fn is_open(&self, ino: u64) -> bool {
        self.files.values().any(|f| f.ino == ino)
    }

    /// Registers a directory listing; returns its handle.
    pub fn open_dir(&mut self, entries: Vec<DirEntry>) -> Result<u64, Errno> {
        let fh = self.next()?;
        self.dirs.insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// The listing behind `fh`.
    pub fn dir(&self, fh: u64) -> Result<Arc<Vec<DirEntry>>, Errno> {
        self.dirs.get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// Forgets directory handle `fh`.
    pub fn close_dir(&mut self, fh: u64) {
        self.dirs.remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_inode_one_swap_and_everything_else_is_kept() {
        assert_eq!((fuse_ino(77, 77), fuse_ino(77, 1), fuse_ino(77, 5)), (1, 77, 5));
    }

    #[test]
    fn renames_move_descendants_and_exchanges_swap_them() {
        let mut n = Nodes::new(PathBuf::from("/b"));
        n.remember(10, PathBuf::from("/b/d"));
        n.remember(11, PathBuf::from("/b/d/f"));
        n.remember(12, PathBuf::from("/b/dd"));
        n.renamed(Path::new("/b/d"), Path::new("/b/e"));
        assert_eq!(n.path(10).unwrap(), PathBuf::from("/b/e"));
        assert_eq!(n.path(11).unwrap(), PathBuf::from("/b/e/f"));
        assert_eq!(
            n.path(12).unwrap(),
            PathBuf::from("/b/dd"),
            "a sibling sharing a prefix stays"
        );
        n.exchanged(Path::new("/b/e"), Path::new("/b/dd"));
        assert_eq!(n.path(11).unwrap(), PathBuf::from("/b/dd/f"));
        assert_eq!(n.path(12).unwrap(), PathBuf::from("/b/e"));
    }

    #[test]
    fn forgetting_every_lookup_drops_a_node_but_never_the_root() {
        let mut n = Nodes::new(PathBuf::from("/b"));
        n.remember(10, PathBuf::from("/b/x"));
        n.remember(10, PathBuf::from("/b/x"));
        n.forget(10, 1);
        assert!(n.path(10).is_ok());
        n.forget(10, 1);
        assert_eq!(n.path(10), Err(Errno::ESTALE));
        n.forget(1, 100);
        assert!(n.path(1).is_ok());
        assert_eq!(n.child(1, OsStr::new("a/b")), Err(Errno::EINVAL));
    }
}

//! faultline's disk-fault filesystem: a FUSE passthrough, mounted as a
//! database node's data directory, that behaves like a disk with a volatile
//! write cache and takes faults on command, as Jepsen's LazyFS does.
//!
//! What it promises:
//!
//! - **Unsynced data can be lost, synced data cannot.** A write is held in
//!   memory (per inode, as byte ranges plus a pending length) until the file
//!   is fsynced, the `sync` command runs, the dirty limit forces the oldest
//!   file out, or the daemon exits in order. `drop-unsynced` discards every
//!   held write, as a power loss would; reads and `stat` see held data until
//!   then. Dirty data follows the inode across renames and survives an
//!   unlink until the last handle closes.
//! - **Metadata is never lost** (the LazyFS simplification): create, mkdir,
//!   rename, unlink, link, chmod, utimes and `O_TRUNC` on open go straight
//!   to the backing directory. A file created and never fsynced survives a
//!   drop, empty.
//! - **Faults are paired verbs** on a control socket: `stall`/`stall 0`,
//!   `fsync-delay`/`fsync-delay 0`, `fail-writes on`/`off`, `fail-fsync
//!   on`/`off`, and `heal` ending them all. The socket has its own threads
//!   and never waits behind a held operation.
//!
//! Modules: [`dirty`] (the cache, pure), [`faults`] (the gates), [`protocol`]
//! (the control language), [`device`] (cache + faults + commands),
//! [`control`] (the socket and its client), [`fs`] (the FUSE filesystem),
//! [`daemon`] (mount, signals, orderly unmount), [`error`].
//!
//! `RUST_LOG=faultline_diskfs=debug` logs every write, fsync, open, rename
//! and unlink; `info` logs control commands and mount events.

pub mod control;
pub mod daemon;
pub mod device;
pub mod dirty;
pub mod error;
pub mod faults;
pub mod fs;
pub mod protocol;

pub use control::{send_command, ControlServer};
pub use daemon::MountConfig;
pub use device::Device;
pub use error::{ClientError, CommandError, DaemonError};
pub use protocol::{Command, Reply};

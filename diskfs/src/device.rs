//! The simulated disk of one mount: its volatile cache (the dirty table), the
//! faults in force, and the control commands that act on both.
//!
//! The filesystem threads and the control thread share one [`Device`]. The
//! dirty table has one mutex, held only while bytes move (never while an
//! operation waits for a fault), so the control thread never waits long.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use fuser::{INodeNo, Notifier};
use serde::Serialize;
use tracing::{info, warn};

use crate::dirty::DirtyTable;
use crate::faults::{FaultStatus, Faults};
use crate::protocol::{Command, Reply};

/// What `status` replies.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The faults in force and how often they fired.
    #[serde(flatten)]
    pub faults: FaultStatus,
    /// Bytes written but not written back.
    pub dirty_bytes: u64,
    /// Files with unsynced writes or length changes.
    pub dirty_files: usize,
    /// Past this many dirty bytes the oldest file is written back.
    pub dirty_limit_bytes: u64,
}

/// The cache and the faults of one mount.
#[derive(Debug)]
pub struct Device {
    /// Faults in force.
    pub faults: Faults,
    dirty: Mutex<DirtyTable<File>>,
    /// The backing directory, for `syncfs`.
    backing_root: File,
    /// Set once the session exists; used to make the kernel forget the
    /// attributes of files whose writes were dropped.
    notifier: Mutex<Option<Notifier>>,
}

impl Device {
    /// A clean device over the open backing directory.
    pub fn new(backing_root: File, dirty_limit_bytes: u64) -> Self {
        Device {
            faults: Faults::new(),
            dirty: Mutex::new(DirtyTable::new(dirty_limit_bytes)),
            backing_root,
            notifier: Mutex::new(None),
        }
    }

    /// The dirty table. A panic while it was held leaves at worst one file's
    /// ranges half-updated; serving on beats wedging every operation.
    pub fn dirty(&self) -> MutexGuard<'_, DirtyTable<File>> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the device the session's notifier.
    pub fn set_notifier(&self, notifier: Notifier) {
        *self.notifier.lock().unwrap_or_else(PoisonError::into_inner) = Some(notifier);
    }

    /// Runs one control command.
    pub fn execute(&self, command: Command) -> Reply {
        let reply = match command {
            Command::DropUnsynced => self.drop_unsynced(),
            Command::Status => json(&self.status()),
            Command::Sync => self.sync(),
            fault => {
                self.set_fault(fault);
                Reply::Ok
            }
        };
        info!(command = %command, reply = %reply, "control");
        reply
    }

    /// Starts or ends a fault; commands that are not faults do nothing.
    fn set_fault(&self, command: Command) {
        match command {
            Command::Stall { ms } => self.faults.stall(ms),
            Command::FsyncDelay { ms } => self.faults.set_fsync_delay(ms),
            Command::FailWrites(on) => self.faults.set_fail_writes(on),
            Command::FailFsync(on) => self.faults.set_fail_fsync(on),
            Command::Heal => self.faults.heal(),
            Command::DropUnsynced | Command::Status | Command::Sync => {}
        }
    }

    /// The faults and the dirty bytes now.
    pub fn status(&self) -> Status {
        let dirty = self.dirty();
        Status {
            faults: self.faults.status(),
            dirty_bytes: dirty.dirty_bytes(),
            dirty_files: dirty.dirty_files(),
            dirty_limit_bytes: dirty.limit_bytes(),
        }
    }

    fn drop_unsynced(&self) -> Reply {
        let dropped = self.dirty().drop_all();
        self.forget_attributes(dropped.inos.clone());
        json(&serde_json::json!({ "dropped_bytes": dropped.bytes, "files": dropped.inos.len() }))
    }

    /// Writes every dirty file back, then syncs the backing filesystem.
    pub fn sync(&self) -> Reply {
        let written = match self.dirty().write_back_all() {
            Ok(w) => w,
            Err(e) => return Reply::err(e),
        };
        // SAFETY: syncfs only reads the descriptor, which `backing_root` owns.
        if unsafe { libc::syncfs(self.backing_root.as_raw_fd()) } != 0 {
            return Reply::err(format!(
                "syncfs of the backing directory: {}",
                std::io::Error::last_os_error()
            ));
        }
        json(&serde_json::json!({ "written_bytes": written.bytes, "files": written.inos.len() }))
    }

    /// Tells the kernel to refetch the attributes (the size above all) of
    /// files whose unsynced data is gone. From its own thread: a notification
    /// can wait on the kernel, and the control thread must stay free.
    fn forget_attributes(&self, inos: Vec<u64>) {
        let Some(notifier) = self.notifier.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let spawned = thread::Builder::new().name("diskfs-inval".into()).spawn(move || {
            for ino in inos {
                // An inode the kernel has already forgotten answers ENOENT: fine.
                if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                    tracing::debug!(ino, error = %e, "inval_inode");
                }
            }
        });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the invalidation thread; sizes refresh at the next lookup");
        }
    }

    /// Writes everything back on an orderly exit, as a clean unmount would.
    pub fn flush_on_exit(&self) {
        match self.dirty().write_back_all() {
            Ok(w) if !w.inos.is_empty() => info!(bytes = w.bytes, files = w.inos.len(), "wrote back on exit"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "write-back on exit failed; those writes are lost"),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_value(value) {
        Ok(v) => Reply::OkJson(v),
        Err(e) => Reply::err(format!("encoding the reply: {e}")),
    }
}

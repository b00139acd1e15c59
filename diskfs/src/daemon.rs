//! The `mount` daemon: checks its configuration, binds the control socket,
//! mounts, and serves until SIGTERM or SIGINT (or an outside unmount), then
//! writes the cache back and unmounts.
//!
//! Threads: fuser's [`FUSE_THREADS`] request threads, the control socket's
//! own, and one that waits for signals with `sigwait` (the signals are
//! blocked in every thread, so no handler runs at an arbitrary point). The
//! main thread waits for the first event and then shuts down, each wait
//! bounded: if the kernel still holds the session [`UNMOUNT_GRACE`] after a
//! lazy unmount, the daemon exits anyway, and closing `/dev/fuse` aborts the
//! connection.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use tracing::{error, info, warn};

use crate::control::ControlServer;
use crate::device::Device;
use crate::error::DaemonError;
use crate::fs::{DiskFs, FUSE_THREADS};

/// Default dirty limit, MiB.
pub const DIRTY_LIMIT_MIB_DEFAULT: u64 = 64;

/// Largest dirty limit accepted, MiB: the cache lives in the daemon's memory.
pub const DIRTY_LIMIT_MIB_MAX: u64 = 16 * 1024;

/// How long shutdown waits for the kernel to end the session.
pub const UNMOUNT_GRACE: Duration = Duration::from_secs(5);

/// A checked mount configuration.
#[derive(Debug, Clone)]
pub struct MountConfig {
    backing: PathBuf,
    mountpoint: PathBuf,
    control: PathBuf,
    dirty_limit_bytes: u64,
}

impl MountConfig {
    /// Checks what the user typed: both directories exist, neither contains
    /// the other, the limit is in range.
    pub fn new(backing: &Path, mountpoint: &Path, control: &Path, dirty_limit_mib: u64) -> Result<Self, DaemonError> {
        let backing = existing_dir("backing", backing)?;
        let mountpoint = existing_dir("mountpoint", mountpoint)?;
        if backing.starts_with(&mountpoint) || mountpoint.starts_with(&backing) {
            return Err(DaemonError::Nested { backing, mountpoint });
        }
        if dirty_limit_mib > DIRTY_LIMIT_MIB_MAX {
            return Err(DaemonError::DirtyLimit {
                mib: dirty_limit_mib,
                max: DIRTY_LIMIT_MIB_MAX,
            });
        }
        Ok(MountConfig {
            backing,
            mountpoint,
            control: control.to_path_buf(),
            dirty_limit_bytes: dirty_limit_mib << 20,
        })
    }
}

fn existing_dir(role: &'static str, path: &Path) -> Result<PathBuf, DaemonError> {
    let bad = |reason: String| DaemonError::BadDirectory {
        role,
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| bad(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(bad("not a directory".into()));
    }
    Ok(canonical)
}

/// What ends the serving phase.
enum Event {
    Signal(libc::c_int),
    SessionEnded(io::Result<()>),
}

/// Mounts and serves until a signal or an outside unmount. Returns once the
/// mount is gone and the cache written back.
pub fn run(config: &MountConfig) -> Result<(), DaemonError> {
    // Before any thread exists, so every thread inherits the mask.
    let signals = block_signals()?;
    raise_fd_limit();
    // Bound under the invoker's umask: who may drive faults is theirs to say.
    let server = ControlServer::bind(&config.control)?;
    // The kernel applies the caller's umask to new files already; ours must
    // not apply a second time.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    let backing_root = File::open(&config.backing).map_err(|source| DaemonError::Setup {
        what: "opening the backing dir",
        source,
    })?;
    let device = Arc::new(Device::new(backing_root, config.dirty_limit_bytes));
    let fs = DiskFs::new(Arc::clone(&device), &config.backing).map_err(|source| DaemonError::Setup {
        what: "reading the backing dir",
        source,
    })?;
    let mut session = Session::new(fs, &config.mountpoint, &fuse_config()).map_err(|source| DaemonError::Mount {
        mountpoint: config.mountpoint.clone(),
        source,
    })?;
    device.set_notifier(session.notifier());
    // From here on every way out of this function, a panic included, unmounts.
    let mut unmount_guard = UnmountGuard {
        unmounter: session.unmount_callable(),
        mountpoint: &config.mountpoint,
        done: false,
    };
    info!(backing = %config.backing.display(), mountpoint = %config.mountpoint.display(),
        control = %server.path().display(), dirty_limit_bytes = config.dirty_limit_bytes, "mounted");

    let (tx, rx) = mpsc::channel();
    let session_tx = tx.clone();
    spawn("diskfs-session", move || {
        let _ = session_tx.send(Event::SessionEnded(session.run()));
    })?;
    server.spawn(Arc::clone(&device)).map_err(|source| DaemonError::Setup {
        what: "control thread",
        source,
    })?;
    spawn("diskfs-signals", move || wait_signals(&signals, &tx))?;

    let result = match rx.recv() {
        Ok(Event::Signal(sig)) => {
            info!(signal = sig, "unmounting");
            // Held operations must finish for the session to end.
            device.faults.heal();
            unmount_guard.unmount();
            wait_session_end(&rx)
        }
        Ok(Event::SessionEnded(res)) => {
            info!("unmounted from outside");
            unmount_guard.done = true;
            res.map_err(DaemonError::Session)
        }
        Err(_) => Ok(()), // Every sender gone: nothing left to wait for.
    };
    device.flush_on_exit();
    let _ = std::fs::remove_file(&config.control);
    result
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), DaemonError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|source| DaemonError::Setup {
            what: "starting a thread",
            source,
        })
}

fn fuse_config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("faultline-diskfs".into()),
        MountOption::Subtype("faultline-diskfs".into()),
        // The kernel checks permissions against the attributes we report,
        // so a database running as another user is refused what the
        // backing directory would refuse it.
        MountOption::DefaultPermissions,
    ];
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // Root may let every user in (the database need not run as root);
    // others would need user_allow_other in /etc/fuse.conf.
    config.acl = if root { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(FUSE_THREADS);
    config
}

/// Unmounts when told to or when dropped, whichever comes first.
struct UnmountGuard<'a> {
    unmounter: SessionUnmounter,
    mountpoint: &'a Path,
    done: bool,
}

impl UnmountGuard<'_> {
    /// Unmounts; a busy mount (files still open) is detached lazily instead.
    /// A second call, or one after an outside unmount, does nothing.
    fn unmount(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        match self.unmounter.unmount() {
            Ok(()) => info!("unmounted"),
            Err(e) => {
                warn!(error = %e, "unmount failed; detaching lazily");
                if let Err(e) = lazy_unmount(self.mountpoint) {
                    error!(error = %e, "lazy unmount failed");
                }
            }
        }
    }
}

impl Drop for UnmountGuard<'_> {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn lazy_unmount(mountpoint: &Path) -> io::Result<()> {
    let path = crate::fs::cpath(mountpoint)?;
    // SAFETY: the string is NUL-terminated and outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("fusermount3 -u -z exited with {status}")))
    }
}

fn wait_session_end(rx: &mpsc::Receiver<Event>) -> Result<(), DaemonError> {
    let deadline = std::time::Instant::now() + UNMOUNT_GRACE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::SessionEnded(res)) => return res.map_err(DaemonError::Session),
            Ok(Event::Signal(sig)) => info!(signal = sig, "already shutting down"),
            Err(_) => {
                warn!(grace = ?UNMOUNT_GRACE, "session still open (files held open?); exiting anyway");
                return Ok(());
            }
        }
    }
}

/// The signals that stop the daemon, blocked so `sigwait` receives them.
struct Signals(libc::sigset_t);

fn block_signals() -> Result<Signals, DaemonError> {
    // SAFETY: the set is initialised by sigemptyset before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(DaemonError::Setup {
                what: "blocking signals",
                source: io::Error::from_raw_os_error(rc),
            });
        }
        Ok(Signals(set))
    }
}

/// Forwards each stopping signal to the main thread; ends when it is gone.
fn wait_signals(signals: &Signals, tx: &mpsc::Sender<Event>) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: the set is initialised; `sig` is a valid out-parameter.
        let rc = unsafe { libc::sigwait(&signals.0, &mut sig) };
        if rc != 0 {
            error!(error = %io::Error::from_raw_os_error(rc), "sigwait");
            return;
        }
        if tx.send(Event::Signal(sig)).is_err() {
            return;
        }
    }
}

/// Every handle and every dirty file holds a descriptor: take the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!(error = %io::Error::last_os_error(), "raising the descriptor limit");
            }
        }
    }
}

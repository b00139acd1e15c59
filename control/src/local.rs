//! [`LocalControl`]: every node is this machine, daemons are child
//! processes of the harness.
//!
//! [`LocalControl`] runs everything as child processes of the harness:
//! each daemon gets its own process group (a Ctrl-C at the terminal reaches
//! the harness, which then heals and stops the cluster in order) and dies
//! with the harness (`PR_SET_PDEATHSIG`) should the harness itself be killed.
//! The kernel sends that signal when the *thread* that forked the child
//! exits, not the process, and tokio retires idle threads: so every daemon
//! is forked by one spawner thread that lives as long as the process (see
//! [`spawn_tied`]), and a node restarted from any task lives until it is
//! stopped or the harness exits.
//! A [`Daemon`] handle stops its process when dropped: SIGCONT first (a
//! paused process must not outlive us), then SIGKILL, then reap.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{CommandSpec, Control, ControlError, Daemon, DaemonSpec, Signal};

/// How long a killed process may take to be reaped.
const REAP_TIMEOUT_MS: u64 = 5_000;
/// Poll period while waiting for a process to exit.
const POLL_MS: u64 = 5;
/// How long a caller waits for the spawner thread to fork its daemon (a
/// fork and exec take milliseconds; this bounds a wedged spawner).
const SPAWN_TIMEOUT_MS: u64 = 30_000;

/// Every node is this machine; daemons are child processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalControl;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.to_owned(),
        source,
    }
}

fn open_log(path: &Path) -> Result<File, ControlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

impl Control for LocalControl {
    fn start(&self, node: &str, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args).envs(spec.env.iter().cloned());
        spawn_daemon(node, cmd, spec)
    }

    fn run(&self, node: &str, cmd: &CommandSpec) -> Result<Output, ControlError> {
        run_local(node, Command::new(&cmd.program).args(&cmd.args), cmd)
    }

    fn put(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), ControlError> {
        use std::os::unix::fs::PermissionsExt;
        if local != remote {
            self.fetch(node, local, remote)?;
        }
        std::fs::set_permissions(remote, std::fs::Permissions::from_mode(mode)).map_err(io_err(remote))
    }

    fn fetch(&self, _node: &str, remote: &Path, local: &Path) -> Result<(), ControlError> {
        if remote == local {
            return Ok(());
        }
        if let Some(dir) = local.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        std::fs::copy(remote, local).map_err(io_err(remote))?;
        Ok(())
    }
}

/// Starts `cmd` (its program, arguments and environment already set, and
/// any `pre_exec` of the caller, such as entering a namespace) as a daemon:
/// output appended to `spec.log_file`, its own process group, tied to our
/// life. Namespaces reuse it.
pub fn spawn_daemon(node: &str, mut cmd: Command, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError> {
    let log = open_log(&spec.log_file)?;
    let log2 = log.try_clone().map_err(io_err(&spec.log_file))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    detach_and_tie_to_parent(&mut cmd);
    let child = spawn_tied(cmd).map_err(|source| ControlError::Spawn {
        node: node.to_owned(),
        program: spec.program.clone(),
        source,
    })?;
    tracing::debug!(node, pid = child.id(), "started daemon");
    Ok(Box::new(LocalDaemon { child, exited: false }))
}

/// Runs `command` (already given its program and arguments) to completion
/// on this machine with `spec`'s input and time limit. Namespaces reuse it
/// with a command that enters the node's namespace first.
pub fn run_local(node: &str, command: &mut Command, spec: &CommandSpec) -> Result<Output, ControlError> {
    use std::io::Write as _;
    let mut child = command
        .stdin(if spec.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ControlError::Spawn {
            node: node.to_owned(),
            program: spec.program.clone(),
            source,
        })?;
    let pid = child.id();
    let input = child.stdin.take().map(|mut pipe| {
        let bytes = spec.stdin.clone();
        // A separate thread, so a program that does not read its input
        // cannot block us past the timeout.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(spec.timeout) {
        Ok(out) => out.map_err(io_err(&spec.program)),
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_millis(REAP_TIMEOUT_MS));
            Err(ControlError::Timeout {
                node: node.to_owned(),
                program: spec.display(),
                timeout_ms: spec.timeout.as_millis() as u64,
            })
        }
    };
    if let Some(t) = input {
        let _ = t.join();
    }
    out
}

/// A command for the spawner thread, and where to send the child.
struct SpawnJob {
    cmd: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// The spawner thread's queue. The sender lives in a static, so the thread's
/// `recv` loop never ends: the thread lives exactly as long as the process.
fn spawner() -> std::io::Result<&'static mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Result<mpsc::Sender<SpawnJob>, String>> = OnceLock::new();
    let queue = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("faultline-spawner".into())
            .spawn(move || {
                for job in rx {
                    serve(job);
                }
            })
            .map(|_| tx)
            .map_err(|e| format!("starting the spawner thread: {e}"))
    });
    queue.as_ref().map_err(|e| std::io::Error::other(e.clone()))
}

/// Forks `job`'s command; a child whose caller gave up waiting is killed
/// and reaped here rather than left running unowned.
fn serve(job: SpawnJob) {
    let SpawnJob { mut cmd, reply } = job;
    if let Err(mpsc::SendError(Ok(mut child))) = reply.send(cmd.spawn()) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Spawns `cmd` from the spawner thread, so its `PR_SET_PDEATHSIG` fires
/// when the harness process dies (kill -9 included) and never because the
/// thread that asked for it was retired.
pub fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    let (reply, answer) = mpsc::channel();
    spawner()?
        .send(SpawnJob { cmd, reply })
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv_timeout(Duration::from_millis(SPAWN_TIMEOUT_MS))
        .map_err(|_| {
            std::io::Error::other(format!(
                "the spawner thread did not answer within {SPAWN_TIMEOUT_MS} ms"
            ))
        })?
}

/// Puts the child in its own process group (a terminal Ctrl-C reaches only
/// the harness, which then stops the cluster in order) and asks the kernel to
/// SIGKILL it when the thread that forks it dies: that is the spawner thread
/// of [`spawn_tied`], which dies only with the process, so a killed harness
/// leaves no node behind and a living one loses none.
fn detach_and_tie_to_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only prctl(2)
    // and getppid(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
            }
            Ok(())
        });
    }
}

/// A child process of the harness.
struct LocalDaemon {
    child: Child,
    exited: bool,
}

impl Daemon for LocalDaemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&mut self, signal: Signal) -> Result<(), ControlError> {
        if !self.is_running() {
            return Ok(());
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not
        // reaped yet (is_running said so), so its pid is still ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal.raw()) };
        if rc != 0 {
            return Err(ControlError::Signal {
                signal: signal.name(),
                pid: self.child.id(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn is_running(&mut self) -> bool {
        if !self.exited {
            self.exited = !matches!(self.child.try_wait(), Ok(None));
        }
        !self.exited
    }

    fn stop(&mut self) -> Result<(), ControlError> {
        self.signal(Signal::Cont)?;
        self.signal(Signal::Kill)?;
        let deadline = Instant::now() + Duration::from_millis(REAP_TIMEOUT_MS);
        while self.is_running() {
            if Instant::now() > deadline {
                return Err(ControlError::WouldNotDie {
                    pid: self.child.id(),
                    timeout_ms: REAP_TIMEOUT_MS,
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        Ok(())
    }
}

impl Drop for LocalDaemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "could not stop a daemon");
        }
    }
}

/// Whether a process with this pid exists (zombies included).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> DaemonSpec {
        DaemonSpec {
            program: "sleep".into(),
            args: vec!["30".into()],
            env: vec![],
            log_file: dir.join("n1/node.log"),
        }
    }

    #[test]
    fn a_dropped_daemon_is_gone_even_when_paused() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalControl.start("n1", &sleeper(dir.path())).unwrap();
        let pid = d.pid();
        assert!(d.is_running());
        d.signal(Signal::Stop).unwrap();
        drop(d);
        assert!(!pid_exists(pid), "pid {pid} survived");
        assert!(dir.path().join("n1/node.log").exists());
    }

    #[test]
    fn kill_makes_the_process_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalControl.start("n1", &sleeper(dir.path())).unwrap();
        d.signal(Signal::Kill).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!d.is_running());
        assert!(!pid_exists(d.pid()));
    }

    #[test]
    fn a_daemon_outlives_the_thread_that_started_it() {
        // PR_SET_PDEATHSIG follows the forking thread: a daemon started
        // from a thread that then exits (as tokio's idle workers do) must
        // keep running.
        let dir = tempfile::tempdir().unwrap();
        let spec = sleeper(dir.path());
        let mut d = std::thread::spawn(move || LocalControl.start("n1", &spec).unwrap())
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(d.is_running(), "the daemon died with the thread that started it");
        d.stop().unwrap();
        assert!(!pid_exists(d.pid()));
    }

    #[test]
    fn run_is_bounded() {
        let out = LocalControl.run("n1", &CommandSpec::new("echo", &["hi"], Duration::from_secs(5)));
        assert_eq!(out.unwrap().stdout, b"hi\n");
        let cat = CommandSpec::new("cat", &[], Duration::from_secs(5)).with_stdin("fed");
        assert_eq!(LocalControl.run("n1", &cat).unwrap().stdout, b"fed");
        let err = LocalControl
            .run("n1", &CommandSpec::new("sleep", &["10"], Duration::from_millis(100)))
            .unwrap_err();
        assert!(matches!(err, ControlError::Timeout { .. }), "{err}");
    }
}

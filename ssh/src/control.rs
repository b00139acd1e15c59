//! [`SshControl`]: the `Control` boundary of faultline-control over SSH, and the
//! [`Daemon`] handle of a process started through it.
//!
//! Every method hands its work to the node's worker thread (see
//! [`crate::worker`]) and waits for it with a bound. The daemon handle keeps
//! the worker alive, so it can still stop its process after the control
//! itself is dropped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_control::{CommandSpec, Control, ControlError, Daemon, DaemonSpec, Signal};

use crate::config::SshConfig;
use crate::connection::Connection;
use crate::error::SshError;
use crate::exec::{self, helper, Bound};
use crate::shell;
use crate::transfer;
use crate::worker::NodeWorker;

/// How long a killed daemon may take to disappear.
const STOP_TIMEOUT_MS: u64 = 5_000;
/// Poll period while waiting for it.
const STOP_POLL_MS: u64 = 50;

/// Runs commands and daemons on remote machines over SSH and copies files to
/// and from them with SFTP.
pub struct SshControl {
    config: Arc<SshConfig>,
    workers: BTreeMap<String, Arc<NodeWorker>>,
}

impl std::fmt::Debug for SshControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshControl")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SshControl {
    /// Validates `config` and starts one worker thread per node. Nothing is
    /// connected yet: each node connects on its first call (or on
    /// [`SshControl::connect`]).
    pub fn new(config: SshConfig) -> Result<SshControl, SshError> {
        config.validate()?;
        let config = Arc::new(config);
        let mut workers = BTreeMap::new();
        for (node, addr) in &config.nodes {
            workers.insert(
                node.clone(),
                NodeWorker::spawn(node, addr.clone(), Arc::clone(&config))?,
            );
        }
        Ok(SshControl { config, workers })
    }

    /// The validated config.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// Connects to `node` now (host key check, authentication) unless it is
    /// connected already, so a misconfigured node fails at cluster setup
    /// rather than at its first fault.
    pub fn connect(&self, node: &str) -> Result<(), SshError> {
        let bound = self.config.connect_timeout;
        self.worker(node)?.call(bound, |conn: &mut Connection| conn.ensure())
    }

    /// [`Control::run`] with this crate's error, which says more (host key,
    /// authentication, transport) than `ControlError` can.
    pub fn exec(&self, node: &str, cmd: &CommandSpec) -> Result<Output, SshError> {
        let job = RunJob {
            words: shell::command_words(&cmd.program, &cmd.args)?,
            what: cmd.display(),
            program: cmd.program.display().to_string(),
            stdin: cmd.stdin.clone(),
            timeout: cmd.timeout,
        };
        self.worker(node)?
            .call(cmd.timeout, move |conn: &mut Connection| job.run(conn))
    }

    fn worker(&self, node: &str) -> Result<&Arc<NodeWorker>, SshError> {
        self.workers
            .get(node)
            .ok_or_else(|| SshError::UnknownNode { node: node.to_owned() })
    }

    fn start_daemon(&self, node: &str, spec: &DaemonSpec) -> Result<SshDaemon, SshError> {
        let worker = Arc::clone(self.worker(node)?);
        let script = shell::start_daemon(spec)?;
        let what = format!("starting {}", spec.program.display());
        let out = helper_call(&worker, self.config.command_timeout, what.clone(), script)?;
        if out.trim() == shell::MISSING {
            return Err(SshError::NotRunnable {
                node: node.to_owned(),
                program: spec.program.display().to_string(),
                message: "not found, or not an executable file".into(),
                not_found: true,
            });
        }
        let (pid, start_ticks) = shell::parse_started(&out).ok_or_else(|| SshError::BadReply {
            node: node.to_owned(),
            what,
            output: out.trim().to_owned(),
        })?;
        tracing::debug!(node, pid, program = %spec.program.display(), "started daemon");
        Ok(SshDaemon {
            worker,
            pid,
            start_ticks,
            helper_timeout: self.config.command_timeout,
            gone: false,
        })
    }

    fn put_file(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), SshError> {
        let (local, remote, timeout) = (local.to_owned(), remote.to_owned(), self.config.command_timeout);
        self.worker(node)?.call(timeout, move |conn: &mut Connection| {
            conn.ensure()?;
            let bound = Bound::new(format!("put {}", remote.display()), timeout);
            transfer::put(conn, &local, &remote, mode, &bound)
        })
    }

    fn fetch_file(&self, node: &str, remote: &Path, local: &Path) -> Result<(), SshError> {
        let (local, remote, timeout) = (local.to_owned(), remote.to_owned(), self.config.command_timeout);
        self.worker(node)?.call(timeout, move |conn: &mut Connection| {
            conn.ensure()?;
            let bound = Bound::new(format!("fetch {}", remote.display()), timeout);
            transfer::fetch(conn, &remote, &local, &bound)
        })
    }
}

impl Control for SshControl {
    fn start(&self, node: &str, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError> {
        match self.start_daemon(node, spec) {
            Ok(daemon) => Ok(Box::new(daemon)),
            Err(e) => Err(e.into_spawn(node, &spec.program)),
        }
    }

    fn run(&self, node: &str, cmd: &CommandSpec) -> Result<Output, ControlError> {
        self.exec(node, cmd).map_err(|e| e.into_spawn(node, &cmd.program))
    }

    fn put(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), ControlError> {
        self.put_file(node, local, remote, mode).map_err(|e| e.into_io(remote))
    }

    fn fetch(&self, node: &str, remote: &Path, local: &Path) -> Result<(), ControlError> {
        self.fetch_file(node, remote, local).map_err(|e| e.into_io(remote))
    }

    fn shares_filesystem(&self) -> bool {
        false
    }
}

/// A command for [`SshControl::exec`], owned so it can move to the worker.
struct RunJob {
    /// `program args...`, quoted.
    words: String,
    /// The command line, for messages.
    what: String,
    program: String,
    stdin: Vec<u8>,
    timeout: Duration,
}

impl RunJob {
    fn run(self, conn: &mut Connection) -> Result<Output, SshError> {
        // The command's own limit starts once the node is reached.
        conn.ensure()?;
        let bound = Bound::new(self.what, self.timeout);
        let (session, channel) = conn.channel()?;
        let left = bound.left().ok_or_else(|| bound.expired(conn.node()))?;
        // The node kills it at the same deadline we give up at.
        let command = shell::under_timeout(&self.words, left);
        let out = exec::run_on(conn.node(), &session, channel, &command, &self.stdin, &bound)?;
        match exec::not_runnable(conn.node(), &self.program, &out) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Runs one helper script on `worker`'s node within `timeout` (counted once
/// the node is reached) and returns its stdout.
fn helper_call(worker: &NodeWorker, timeout: Duration, what: String, script: String) -> Result<String, SshError> {
    worker.call(timeout, move |conn: &mut Connection| {
        conn.ensure()?;
        helper(conn, &script, &Bound::new(what, timeout))
    })
}

/// A process started on a node by [`SshControl`]; dropping it stops the
/// process.
struct SshDaemon {
    worker: Arc<NodeWorker>,
    pid: u32,
    /// Start time in clock ticks (`/proc/PID/stat` field 22), when the node
    /// has `/proc`: tells the daemon from a later process given its pid.
    start_ticks: Option<u64>,
    helper_timeout: Duration,
    /// Seen gone once: never signal that pid again.
    gone: bool,
}

impl SshDaemon {
    fn node(&self) -> &str {
        self.worker.node()
    }

    /// Whether it runs, asking the node.
    fn probe(&mut self) -> Result<bool, SshError> {
        if self.gone {
            return Ok(false);
        }
        let script = shell::probe(self.pid, self.start_ticks);
        let what = format!("probing pid {}", self.pid);
        match helper_call(&self.worker, self.helper_timeout, what.clone(), script)?.trim() {
            "running" => Ok(true),
            "gone" => {
                self.gone = true;
                Ok(false)
            }
            other => Err(self.bad_reply(what, other)),
        }
    }

    /// Sends `signal` unless the daemon is gone already (not an error, as for
    /// a local daemon).
    fn send(&mut self, signal: Signal) -> Result<(), SshError> {
        if self.gone {
            return Ok(());
        }
        let script = shell::signal(self.pid, self.start_ticks, signal);
        let what = format!("{} to pid {}", signal.name(), self.pid);
        let reply = match helper_call(&self.worker, self.helper_timeout, what.clone(), script) {
            Ok(reply) => reply,
            // It may have exited between the check and the kill.
            Err(e @ SshError::Remote { .. }) => return if self.probe()? { Err(e) } else { Ok(()) },
            Err(e) => return Err(e),
        };
        match reply.trim() {
            "sent" => {
                tracing::debug!(
                    node = self.node(),
                    pid = self.pid,
                    signal = signal.name(),
                    "signalled daemon"
                );
                Ok(())
            }
            "gone" => {
                self.gone = true;
                Ok(())
            }
            other => Err(self.bad_reply(what, other)),
        }
    }

    fn bad_reply(&self, what: String, output: &str) -> SshError {
        SshError::BadReply {
            node: self.node().to_owned(),
            what,
            output: output.to_owned(),
        }
    }

    /// Polls until the daemon is gone, at most [`STOP_TIMEOUT_MS`].
    fn wait_gone(&mut self) -> Result<(), ControlError> {
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        loop {
            match self.probe() {
                Ok(false) => return Ok(()),
                Ok(true) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(STOP_POLL_MS)),
                Ok(true) => {
                    return Err(ControlError::WouldNotDie {
                        pid: self.pid,
                        timeout_ms: STOP_TIMEOUT_MS,
                    })
                }
                Err(e) => return Err(e.into_signal(Signal::Kill, self.pid)),
            }
        }
    }
}

impl Daemon for SshDaemon {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&mut self, signal: Signal) -> Result<(), ControlError> {
        self.send(signal).map_err(|e| e.into_signal(signal, self.pid))
    }

    /// An unreachable node answers "running": we cannot prove it gone, and
    /// saying so would let a caller restart a second copy.
    fn is_running(&mut self) -> bool {
        self.probe().unwrap_or_else(|e| {
            tracing::warn!(node = self.node(), pid = self.pid, error = %e, "cannot tell whether the daemon runs");
            true
        })
    }

    fn stop(&mut self) -> Result<(), ControlError> {
        // A paused process must not outlive us: thaw it first.
        self.signal(Signal::Cont)?;
        self.signal(Signal::Kill)?;
        self.wait_gone()
    }
}

impl Drop for SshDaemon {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        if let Err(e) = self.stop() {
            tracing::error!(node = self.node(), pid = self.pid, error = %e, "could not stop a daemon");
        }
    }
}

//! What a run over SSH leaves on its machines should its harness die, and
//! how `faultline clean` stops it.
//!
//! Remote daemons outlive the SSH channel (`nohup setsid`), so unlike local
//! nodes they do not die with the harness. A run therefore registers its
//! machines under `/run/faultline/` before it uploads or starts anything,
//! and [`RecordedControl`] records every daemon there *before* starting it
//! (its program and the pid file written beside its log), then its pid.
//! [`clean_remote`] reads such a record back: it stops each listed daemon
//! still running (the pid checked against the program's name, so a reused
//! pid is left alone), lazily unmounts the disk-fault filesystems under the
//! node's folder, and deletes the `inet faultline` table, or says which
//! machine it could not reach.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::netns::{RemoteDaemon, RemoteRecord, RemoteRun};
use faultline_nemesis::{CommandSpec, Control, ControlError, Daemon, DaemonSpec, Signal};

/// How long the clean-up script may take on one machine.
const CLEAN_TIMEOUT_MS: u64 = 30_000;

/// A `Control` that records every daemon in the run's registration before
/// starting it.
pub struct RecordedControl {
    inner: Arc<dyn Control>,
    record: Arc<RemoteRecord>,
}

impl RecordedControl {
    /// `inner`, with its daemons recorded in `record`.
    pub fn new(inner: Arc<dyn Control>, record: RemoteRecord) -> RecordedControl {
        RecordedControl {
            inner,
            record: Arc::new(record),
        }
    }
}

fn record_err(node: &str, e: impl std::fmt::Display) -> ControlError {
    ControlError::Io {
        path: PathBuf::from(faultline_nemesis::netns::REGISTRY_DIR),
        source: std::io::Error::other(format!("registering a daemon of {node}: {e}")),
    }
}

/// The pid file the SSH backend writes beside a daemon's log.
fn pid_file(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".pid");
    log.with_file_name(name)
}

impl Control for RecordedControl {
    fn start(&self, node: &str, spec: &DaemonSpec) -> Result<Box<dyn Daemon>, ControlError> {
        let daemon = RemoteDaemon {
            program: spec.program.clone(),
            pid_file: pid_file(&spec.log_file),
            pid: None,
        };
        let index = self.record.starting(node, daemon).map_err(|e| record_err(node, e))?;
        let inner = self.inner.start(node, spec)?;
        if let Err(e) = self.record.started(node, index, inner.pid()) {
            // The pid file beside the log still names it.
            tracing::warn!(node, error = %e, "could not record a daemon's pid");
        }
        Ok(Box::new(RecordedDaemon {
            inner,
            record: self.record.clone(),
        }))
    }

    fn run(&self, node: &str, cmd: &CommandSpec) -> Result<Output, ControlError> {
        self.inner.run(node, cmd)
    }

    fn put(&self, node: &str, local: &Path, remote: &Path, mode: u32) -> Result<(), ControlError> {
        self.inner.put(node, local, remote, mode)
    }

    fn fetch(&self, node: &str, remote: &Path, local: &Path) -> Result<(), ControlError> {
        self.inner.fetch(node, remote, local)
    }

    fn shares_filesystem(&self) -> bool {
        self.inner.shares_filesystem()
    }
}

/// A recorded daemon: the registration lives at least as long as it does,
/// and is kept for `faultline clean` if the daemon could not be stopped.
struct RecordedDaemon {
    inner: Box<dyn Daemon>,
    record: Arc<RemoteRecord>,
}

impl Daemon for RecordedDaemon {
    fn pid(&self) -> u32 {
        self.inner.pid()
    }

    fn signal(&mut self, signal: Signal) -> Result<(), ControlError> {
        self.inner.signal(signal)
    }

    fn is_running(&mut self) -> bool {
        self.inner.is_running()
    }

    fn stop(&mut self) -> Result<(), ControlError> {
        let r = self.inner.stop();
        if r.is_err() {
            self.record.keep();
        }
        r
    }
}

impl Drop for RecordedDaemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(pid = self.inner.pid(), error = %e, "could not stop a remote daemon; `faultline clean` will try");
        }
    }
}

/// Stops what the dead run `run` left on its machines; `live_hosts` are
/// machines that runs still alive use, whose `inet faultline` table is
/// theirs and stays. Every machine is tried; returns what was done, or the
/// machines that could not be reached or cleaned.
pub fn clean_remote(run: &RemoteRun, live_hosts: &[String]) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (node, at) in &run.nodes {
        let place = format!("{node} ({}:{})", at.host, at.port);
        let keep_table = live_hosts.contains(&at.host);
        match clean_node(run, node, keep_table) {
            Ok(lines) if lines.is_empty() => done.push(format!("{place}: nothing left running")),
            Ok(lines) => done.extend(lines.into_iter().map(|l| format!("{place}: {l}"))),
            Err(e) => failed.push(format!("could not clean {place}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(done)
    } else {
        Err(failed.join("; "))
    }
}

/// The clean-up script, run with `sh -c SCRIPT DIR TABLE [PIDFILE PROGRAM
/// PID]...`: each daemon stopped (SIGCONT, SIGKILL) when its pid, recorded
/// or in its pid file, still runs its program; mounts under DIR lazily
/// unmounted; the table deleted when TABLE is `drop`. Each action prints a
/// line.
const CLEAN_SCRIPT: &str = r#"dir=$0; table=$1; shift
stop() {
  case $1 in ''|*[!0-9]*) return 0 ;; esac
  [ -r /proc/$1/cmdline ] || return 0
  first=$(tr '\0' ' ' < /proc/$1/cmdline | cut -d' ' -f1)
  [ "${first##*/}" = "${2##*/}" ] || return 0
  kill -CONT "$1" 2>/dev/null
  kill -KILL "$1" 2>/dev/null && echo "stopped ${2##*/} (pid $1)"
}
while [ $# -ge 3 ]; do
  stop "$3" "$2"
  [ -r "$1" ] && stop "$(cat "$1")" "$2"
  shift 3
done
sleep 1
awk '{print $2}' /proc/mounts | while read -r m; do
  case $m in "$dir"/*) umount -l "$m" && echo "unmounted $m" ;; esac
done
if [ "$table" = drop ] && command -v nft >/dev/null 2>&1 && nft list table inet faultline >/dev/null 2>&1; then
  nft delete table inet faultline && echo "deleted table inet faultline"
fi
exit 0"#;

/// Runs [`CLEAN_SCRIPT`] on `node` over SSH.
fn clean_node(run: &RemoteRun, node: &str, keep_table: bool) -> Result<Vec<String>, String> {
    let at = &run.nodes[node];
    let mut config = faultline_ssh::SshConfig::new(&run.user);
    config.key = run.key.clone();
    if let Some(k) = &run.known_hosts {
        config.known_hosts = k.clone();
    }
    config.accept_unknown_hosts = run.accept_unknown_hosts;
    let control =
        faultline_ssh::SshControl::new(config.with_node(node, &at.host, at.port)).map_err(|e| e.to_string())?;
    control.connect(node).map_err(|e| format!("could not reach it: {e}"))?;
    let mut args = vec![
        "-c".to_owned(),
        CLEAN_SCRIPT.to_owned(),
        at.dir.display().to_string(),
        if keep_table { "keep" } else { "drop" }.to_owned(),
    ];
    for d in &at.daemons {
        args.push(d.pid_file.display().to_string());
        args.push(d.program.display().to_string());
        args.push(d.pid.map(|p| p.to_string()).unwrap_or_default());
    }
    let cmd = CommandSpec {
        program: "sh".into(),
        args,
        stdin: Vec::new(),
        timeout: Duration::from_millis(CLEAN_TIMEOUT_MS),
    };
    let out = control.exec(node, &cmd).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_is_the_one_the_ssh_backend_writes() {
        assert_eq!(
            pid_file(Path::new("/r/run/n1/node.log")),
            Path::new("/r/run/n1/node.log.pid")
        );
    }
}

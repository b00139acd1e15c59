//! Why something on a node could not be done over SSH, and how that maps onto
//! faultline-control's [`ControlError`] where the [`Control`] trait needs one.
//!
//! `ControlError` has no variant for "the node could not be reached or
//! trusted", so those errors travel inside the closest variant (`Spawn`,
//! `Io`, `Signal`) as an `io::Error` whose inner error is the [`SshError`]:
//! a caller can get it back with `source.get_ref()` and `downcast_ref`.
//!
//! [`Control`]: faultline_control::Control

use std::path::{Path, PathBuf};

use faultline_control::{ControlError, Signal};

use crate::config::NodeAddr;

/// Why an SSH operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A configuration field is unusable.
    #[error("ssh config: {field}: {reason}")]
    Config {
        /// The field, dotted for nested ones (`nodes.n1.port`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node name the config does not list.
    #[error("no node {node:?} in the ssh config")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
    /// The host name did not resolve to any address.
    #[error("resolving {addr} for node {node}: {source}")]
    Resolve {
        /// Node.
        node: String,
        /// `host:port`.
        addr: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// No TCP connection to sshd.
    #[error("connecting to node {node} at {addr}: {source}")]
    Connect {
        /// Node.
        node: String,
        /// `host:port`.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The SSH handshake failed.
    #[error("ssh handshake with node {node} at {addr}: {source}")]
    Handshake {
        /// Node.
        node: String,
        /// `host:port`.
        addr: String,
        /// libssh2's error.
        #[source]
        source: ssh2::Error,
    },
    /// The known_hosts file could not be read.
    #[error("reading known_hosts {}: {reason}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server's key is in no known_hosts entry for this host.
    #[error(
        "host key of node {node} ({}, {key_type} {fingerprint}) is not in {}: check the fingerprint, \
         then add it with `{} >> {}`, or set accept_unknown_hosts to trust unknown hosts",
        addr.known_hosts_name(),
        known_hosts.display(),
        addr.keyscan_command(),
        known_hosts.display()
    )]
    UnknownHost {
        /// Node.
        node: String,
        /// Where it was reached.
        addr: NodeAddr,
        /// Key algorithm (`ssh-ed25519`, ...).
        key_type: &'static str,
        /// `SHA256:...`, as `ssh-keygen -l` prints it.
        fingerprint: String,
        /// The file consulted.
        known_hosts: PathBuf,
    },
    /// known_hosts records another key for this host: refused, always.
    #[error(
        "host key of node {node} ({}) is {key_type} {fingerprint}, which does not match the key recorded in {}: \
         the host may have been reinstalled, or someone is intercepting the connection; refusing it",
        addr.known_hosts_name(),
        known_hosts.display()
    )]
    HostKeyMismatch {
        /// Node.
        node: String,
        /// Where it was reached.
        addr: NodeAddr,
        /// Key algorithm the server offered.
        key_type: &'static str,
        /// Fingerprint of the key the server offered.
        fingerprint: String,
        /// The file consulted.
        known_hosts: PathBuf,
    },
    /// The server refused us (or we had nothing to offer).
    #[error("authenticating as {user} on node {node} with {method}: {source}{hint}")]
    Auth {
        /// Node.
        node: String,
        /// Remote user.
        user: String,
        /// `key file PATH` or `ssh-agent`.
        method: String,
        /// libssh2's error.
        #[source]
        source: ssh2::Error,
        /// What to check, or empty.
        hint: &'static str,
    },
    /// An SSH operation (channel, exec, SFTP) failed.
    #[error("{action} on node {node}: {source}")]
    Ssh {
        /// Node.
        node: String,
        /// What was attempted.
        action: String,
        /// libssh2's error.
        #[source]
        source: ssh2::Error,
    },
    /// Reading or writing a channel or a remote file failed.
    #[error("{action} on node {node}: {source}")]
    Io {
        /// Node.
        node: String,
        /// What was attempted.
        action: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Local {
        /// The local path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Past its time limit; a remote command is killed.
    #[error("{what} on node {node} ran past {timeout_ms} ms")]
    Timeout {
        /// Node.
        node: String,
        /// The command or transfer.
        what: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// A command printed more than we keep in memory.
    #[error("{what} on node {node} wrote more than {limit_bytes} bytes to {stream}")]
    OutputTooLarge {
        /// Node.
        node: String,
        /// The command.
        what: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The bound.
        limit_bytes: usize,
    },
    /// The node could not find or execute the program.
    #[error("{program} on node {node}: {message}")]
    NotRunnable {
        /// Node.
        node: String,
        /// The program.
        program: String,
        /// The node's message.
        message: String,
        /// The node could not find it (rather than not execute it).
        not_found: bool,
    },
    /// One of the crate's own helper commands failed on the node.
    #[error("{what} on node {node} failed ({status}): {stderr}")]
    Remote {
        /// Node.
        node: String,
        /// The helper (`mkdir`, `start`, `kill`, ...).
        what: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A helper command printed something we cannot parse.
    #[error("{what} on node {node} printed {output:?}, not what was expected")]
    BadReply {
        /// Node.
        node: String,
        /// The helper.
        what: String,
        /// Its standard output, trimmed.
        output: String,
    },
    /// A command or daemon spec that cannot be expressed safely remotely.
    #[error("cannot run {what} over ssh: {reason}")]
    InvalidSpec {
        /// The command or part of it.
        what: String,
        /// Why.
        reason: String,
    },
    /// The node's queue of pending calls is full.
    #[error("node {node} has {queued_max} ssh calls queued already")]
    Busy {
        /// Node.
        node: String,
        /// The queue bound.
        queued_max: usize,
    },
    /// Earlier calls on the node did not finish in time for this one to start.
    #[error("waited {waited_ms} ms for earlier ssh calls on node {node} to finish")]
    QueueTimeout {
        /// Node.
        node: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The node's worker did not answer within the call's bound.
    #[error("no answer from the ssh worker of node {node} within {waited_ms} ms")]
    ReplyTimeout {
        /// Node.
        node: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The node's worker thread is gone (it panicked).
    #[error("the ssh worker of node {node} is gone")]
    WorkerGone {
        /// Node.
        node: String,
    },
    /// The node's worker thread could not be started.
    #[error("starting the ssh worker of node {node}: {source}")]
    Thread {
        /// Node.
        node: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Whether the session may be left mid-operation (a half-read packet, an
    /// abandoned channel), so it must be dropped and the next call reconnect.
    pub(crate) fn breaks_session(&self) -> bool {
        matches!(
            self,
            SshError::Ssh { .. } | SshError::Io { .. } | SshError::Timeout { .. } | SshError::OutputTooLarge { .. }
        )
    }

    /// The error for a program that could not be run (or started) on `node`.
    pub(crate) fn into_spawn(self, node: &str, program: &Path) -> ControlError {
        let kind = match &self {
            SshError::NotRunnable { not_found: true, .. } => std::io::ErrorKind::NotFound,
            SshError::NotRunnable { not_found: false, .. } => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        self.or_timeout(|e| ControlError::Spawn {
            node: node.to_owned(),
            program: program.to_owned(),
            source: std::io::Error::new(kind, e),
        })
    }

    /// The error for a file that could not be copied to or from a node.
    pub(crate) fn into_io(self, path: &Path) -> ControlError {
        self.or_timeout(|e| match e {
            // A local file's error names its own path.
            SshError::Local { path, source } => ControlError::Io { path, source },
            e => ControlError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(e),
            },
        })
    }

    /// The error for a signal that could not be delivered.
    pub(crate) fn into_signal(self, signal: Signal, pid: u32) -> ControlError {
        self.or_timeout(|e| ControlError::Signal {
            signal: signal.name(),
            pid,
            source: std::io::Error::other(e),
        })
    }

    /// `ControlError::Timeout` for a timeout, else `other(self)`.
    fn or_timeout(self, other: impl FnOnce(SshError) -> ControlError) -> ControlError {
        match self {
            SshError::Timeout { node, what, timeout_ms } => ControlError::Timeout {
                node,
                program: what,
                timeout_ms,
            },
            e => other(e),
        }
    }
}

/// The `SshError` inside a `ControlError`, if there is one.
pub fn ssh_error_of(err: &ControlError) -> Option<&SshError> {
    let source = match err {
        ControlError::Spawn { source, .. } | ControlError::Io { source, .. } | ControlError::Signal { source, .. } => {
            source
        }
        _ => return None,
    };
    source.get_ref()?.downcast_ref::<SshError>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_stay_timeouts_and_the_rest_can_be_recovered() {
        let t = SshError::Timeout {
            node: "n1".into(),
            what: "sleep 9".into(),
            timeout_ms: 5,
        };
        assert!(matches!(
            t.into_spawn("n1", Path::new("sleep")),
            ControlError::Timeout { timeout_ms: 5, .. }
        ));
        let e = SshError::WorkerGone { node: "n1".into() }.into_io(Path::new("/x"));
        assert!(matches!(ssh_error_of(&e), Some(SshError::WorkerGone { .. })), "{e}");
        let missing = SshError::NotRunnable {
            node: "n1".into(),
            program: "nope".into(),
            message: "No such file".into(),
            not_found: true,
        };
        match missing.into_spawn("n1", Path::new("nope")) {
            ControlError::Spawn { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }
}

//! faultline's SSH backend: the [`Control`] boundary (faultline-control) for remote
//! machines, so the same faults that drive a laptop cluster drive a rack of
//! VMs.
//!
//! [`SshControl`] runs commands and daemons on each node over SSH and moves
//! files with SFTP. What it promises:
//!
//! - **Host keys are checked.** Every connection verifies the server's key
//!   against an OpenSSH `known_hosts` file (`[host]:port` entries for ports
//!   other than 22). An unknown host is refused unless the caller opted in
//!   with [`SshConfig::accept_unknown_hosts`]; a host whose key differs from
//!   the recorded one is always refused.
//! - **Nothing blocks the async runtime, nothing hangs.** ssh2 is blocking, so
//!   each node has one worker thread that owns its session; calls queue a job
//!   and wait for the answer with a bound. Commands run under `timeout -s
//!   KILL` on the node and are abandoned locally at the same deadline, so a
//!   command past its limit is an error and leaves no process behind.
//! - **Daemons outlive the SSH channel** (`nohup setsid`, a PID file next to
//!   the log) and are stopped when their [`Daemon`] handle is dropped.
//!
//! The node needs a POSIX `sh`, GNU coreutils (`timeout`, `nohup`, `env`,
//! `mkdir`, `mv`), `setsid` and `kill`; `/proc` is used when present to tell
//! a zombie or a reused pid from a live daemon.
//!
//! [`Control`]: faultline_control::Control
//! [`Daemon`]: faultline_control::Daemon

mod config;
mod connection;
mod control;
mod error;
mod exec;
mod hostkey;
mod shell;
mod transfer;
mod worker;

pub use config::{NodeAddr, SshConfig, DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, TIMEOUT_MAX_MS};
pub use control::SshControl;
pub use error::{ssh_error_of, SshError};

//! Running one command on a node: feed its stdin, collect stdout and stderr,
//! read its exit status, all before a deadline.
//!
//! The channel is driven in non-blocking mode: a blocking read of stdout
//! would wait while the program fills the shared window with stderr (or
//! waits for stdin we have not sent), and past the deadline nothing may
//! wait. Each round moves whatever can move without blocking; an idle round
//! sleeps a little longer each time, up to [`IDLE_MAX_MS`], so a quiet
//! command costs little and a chatty one is read promptly.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use ssh2::{Channel, ErrorCode, Session};

use crate::connection::{abandon, timeout_ms, Connection, LIBSSH2_ERROR_EAGAIN};
use crate::error::SshError;

/// Output kept per stream; past it the command fails (we hold it in memory).
pub(crate) const OUTPUT_MAX_BYTES: usize = 64 << 20;
/// Longest sleep of an idle round.
const IDLE_MAX_MS: u64 = 16;
/// Bytes moved per read or write call.
const CHUNK_BYTES: usize = 32 << 10;

/// A piece of work on a node and its time limit.
#[derive(Clone, Debug)]
pub(crate) struct Bound {
    /// The command or transfer, for messages.
    pub(crate) what: String,
    /// When it must be done.
    pub(crate) deadline: Instant,
    /// The limit it was given.
    pub(crate) timeout: Duration,
}

impl Bound {
    /// `what`, to be done within `timeout` from now.
    pub(crate) fn new(what: impl Into<String>, timeout: Duration) -> Bound {
        Bound {
            what: what.into(),
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    /// Time left, `None` once past the deadline.
    pub(crate) fn left(&self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// The error for having run past the deadline.
    pub(crate) fn expired(&self, node: &str) -> SshError {
        SshError::Timeout {
            node: node.to_owned(),
            what: self.what.clone(),
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }

    /// `err`, or a timeout if the deadline has passed: a libssh2 call that
    /// fails because its time ran out is a timeout, whatever it says.
    pub(crate) fn or_expired(&self, node: &str, err: SshError) -> SshError {
        if self.left().is_none() {
            self.expired(node)
        } else {
            err
        }
    }
}

/// Runs `command` (a shell string) on an open channel of `session`, feeding
/// it `stdin`. A command still running at the deadline is a timeout.
pub(crate) fn run_on(
    node: &str,
    session: &Session,
    mut channel: Channel,
    command: &str,
    stdin: &[u8],
    bound: &Bound,
) -> Result<Output, SshError> {
    let left = bound.left().ok_or_else(|| bound.expired(node))?;
    session.set_timeout(timeout_ms(left));
    channel.exec(command).map_err(|source| {
        let err = SshError::Ssh {
            node: node.to_owned(),
            action: format!("starting {}", bound.what),
            source,
        };
        bound.or_expired(node, err)
    })?;
    session.set_blocking(false);
    let mut pump = Pump::new(node, bound, stdin);
    let result = pump.run(&mut channel);
    session.set_blocking(true);
    if let Err(e) = result {
        // The channel is dropped on the way out, without its remote close.
        abandon(session);
        return Err(e);
    }
    // Finishing after the deadline means the node's `timeout` killed it.
    if bound.left().is_none() {
        return Err(bound.expired(node));
    }
    Ok(Output {
        status: exit_status(&channel),
        stdout: pump.stdout,
        stderr: pump.stderr,
    })
}

/// Runs one of the crate's own helper scripts and returns its stdout; a
/// non-zero exit is an error carrying its stderr.
pub(crate) fn helper(conn: &mut Connection, script: &str, bound: &Bound) -> Result<String, SshError> {
    let (session, channel) = conn.channel()?;
    let out = run_on(conn.node(), &session, channel, script, &[], bound)?;
    if !out.status.success() {
        return Err(SshError::Remote {
            node: conn.node().to_owned(),
            what: bound.what.clone(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state of one command's streams.
struct Pump<'a> {
    node: &'a str,
    bound: &'a Bound,
    stdin: &'a [u8],
    written: usize,
    eof_sent: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    chunk: Vec<u8>,
    idle_ms: u64,
}

impl<'a> Pump<'a> {
    fn new(node: &'a str, bound: &'a Bound, stdin: &'a [u8]) -> Pump<'a> {
        Pump {
            node,
            bound,
            stdin,
            written: 0,
            eof_sent: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            chunk: vec![0; CHUNK_BYTES],
            idle_ms: 0,
        }
    }

    /// Moves bytes until the remote side has closed the channel (its exit
    /// status then is final) or the deadline passes.
    fn run(&mut self, channel: &mut Channel) -> Result<(), SshError> {
        loop {
            let mut progress = self.feed(channel);
            progress |= self.drain(channel, false)?;
            progress |= self.drain(channel, true)?;
            if channel.eof() && self.close(channel)? {
                return Ok(());
            }
            let left = self.bound.left().ok_or_else(|| self.bound.expired(self.node))?;
            self.idle(progress, left);
        }
    }

    /// Sends what stdin the window takes, then EOF. A program that exits
    /// without reading its input is no error (as with a local pipe), so
    /// write failures just end the input.
    fn feed(&mut self, channel: &mut Channel) -> bool {
        if self.eof_sent {
            return false;
        }
        let mut progress = false;
        while self.written < self.stdin.len() {
            let end = self.stdin.len().min(self.written + CHUNK_BYTES);
            match channel.write(&self.stdin[self.written..end]) {
                Ok(0) => return progress,
                Ok(n) => {
                    self.written += n;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return progress,
                Err(_) => self.written = self.stdin.len(),
            }
        }
        match channel.send_eof() {
            Err(e) if would_block(&e) => progress,
            _ => {
                self.eof_sent = true;
                true
            }
        }
    }

    /// Reads what has arrived on stdout (or stderr) without blocking.
    fn drain(&mut self, channel: &Channel, stderr: bool) -> Result<bool, SshError> {
        let (mut stream, buf, name) = if stderr {
            (channel.stderr(), &mut self.stderr, "stderr")
        } else {
            (channel.stream(0), &mut self.stdout, "stdout")
        };
        let chunk = &mut self.chunk;
        let mut progress = false;
        loop {
            match stream.read(chunk) {
                Ok(0) => return Ok(progress),
                Ok(n) if buf.len() + n > OUTPUT_MAX_BYTES => {
                    return Err(SshError::OutputTooLarge {
                        node: self.node.to_owned(),
                        what: self.bound.what.clone(),
                        stream: name,
                        limit_bytes: OUTPUT_MAX_BYTES,
                    })
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(progress),
                Err(source) => {
                    return Err(SshError::Io {
                        node: self.node.to_owned(),
                        action: format!("reading the {name} of {}", self.bound.what),
                        source,
                    })
                }
            }
        }
    }

    /// After the remote EOF: waits for the remote close, then closes our
    /// side. True when both are done. The remote close, not the EOF, says
    /// the program has exited and its status is final (a program may close
    /// its output and run on).
    fn close(&mut self, channel: &mut Channel) -> Result<bool, SshError> {
        match channel.wait_close() {
            Ok(()) => {}
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(self.ssh_error("waiting for the exit of", e)),
        }
        match channel.close() {
            Ok(()) => Ok(true),
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(self.ssh_error("closing the channel of", e)),
        }
    }

    fn ssh_error(&self, action: &str, source: ssh2::Error) -> SshError {
        SshError::Ssh {
            node: self.node.to_owned(),
            action: format!("{action} {}", self.bound.what),
            source,
        }
    }

    /// Sleeps after an idle round, twice as long as after the last one (up
    /// to the cap and never past the deadline); no sleep after progress.
    fn idle(&mut self, progress: bool, left: Duration) {
        if progress {
            self.idle_ms = 0;
            return;
        }
        self.idle_ms = (self.idle_ms * 2).clamp(1, IDLE_MAX_MS);
        std::thread::sleep(left.min(Duration::from_millis(self.idle_ms)));
    }
}

fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

/// The status as a local wait status: killed by a signal if sshd says so,
/// else exited with its code.
fn exit_status(channel: &Channel) -> ExitStatus {
    let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
    if let Some(name) = signal {
        // An unnamed signal still must not look like success.
        return ExitStatus::from_raw(signal_number(&name).unwrap_or(255 << 8));
    }
    let code = channel.exit_status().unwrap_or(255);
    ExitStatus::from_raw((code & 0xff) << 8)
}

/// Linux numbers of the signals sshd names (without `SIG`).
fn signal_number(name: &str) -> Option<i32> {
    let number = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => return None,
    };
    Some(number)
}

/// Whether `timeout` could not run the program at all (exit 126: found but
/// not executable, 127: not found), as opposed to the program failing: the
/// local backend reports those as a failed spawn, so this one does too.
pub(crate) fn not_runnable(node: &str, program: &str, out: &Output) -> Option<SshError> {
    let code = out.status.code()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !(code == 126 || code == 127) || !stderr.starts_with("timeout: failed to run command") {
        return None;
    }
    Some(SshError::NotRunnable {
        node: node.to_owned(),
        program: program.to_owned(),
        message: stderr.trim().to_owned(),
        not_found: code == 127,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_codes_become_wait_statuses() {
        assert_eq!(ExitStatus::from_raw(signal_number("KILL").unwrap()).signal(), Some(9));
        assert_eq!(ExitStatus::from_raw(3 << 8).code(), Some(3));
        assert_eq!(signal_number("NOPE"), None);
    }

    #[test]
    fn only_timeouts_own_complaints_are_spawn_failures() {
        let out = |code: i32, stderr: &str| Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: vec![],
            stderr: stderr.as_bytes().to_vec(),
        };
        let missing = out(
            127,
            "timeout: failed to run command 'nope': No such file or directory\n",
        );
        assert!(matches!(
            not_runnable("n1", "nope", &missing),
            Some(SshError::NotRunnable { not_found: true, .. })
        ));
        assert!(not_runnable("n1", "sh", &out(127, "sh: 1: x: not found\n")).is_none());
        assert!(not_runnable("n1", "false", &out(1, "")).is_none());
    }

    #[test]
    fn a_bound_knows_when_it_is_spent() {
        let spent = Bound::new("sleep 9", Duration::ZERO);
        assert!(spent.left().is_none());
        let err = spent.or_expired("n1", SshError::WorkerGone { node: "n1".into() });
        assert!(matches!(err, SshError::Timeout { .. }), "{err}");
        assert!(Bound::new("true", Duration::from_secs(60)).left().is_some());
    }
}

//! The control socket: a Unix stream socket served by threads of its own, so
//! it answers while filesystem operations are stalled, and the client `ctl`
//! uses to send it one command.
//!
//! Bounds: lines of at most [`LINE_BYTES_MAX`] bytes, at most
//! [`CONNECTIONS_MAX`] connections at once, each dropped after
//! [`IDLE_TIMEOUT`] without a command; the client waits at most its timeout
//! to connect and again to read the reply.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use tracing::{debug, warn};

use crate::device::Device;
use crate::error::{ClientError, DaemonError};
use crate::protocol::{Command, Reply, LINE_BYTES_MAX};

/// Most control connections served at once; more are refused with `err`.
pub const CONNECTIONS_MAX: usize = 16;

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bound control socket, not yet served.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path`, replacing a stale socket file but never one a live
    /// daemon still answers on.
    pub fn bind(path: &Path) -> Result<ControlServer, DaemonError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(DaemonError::ControlInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|source| DaemonError::ControlBind {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let listener = UnixListener::bind(path).map_err(|source| DaemonError::ControlBind {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves commands against `device` from a thread of its own.
    pub fn spawn(self, device: Arc<Device>) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("diskfs-control".into())
            .spawn(move || self.accept_loop(&device))
    }

    fn accept_loop(self, device: &Arc<Device>) {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            match stream {
                Ok(stream) => serve_connection(stream, device, &active),
                Err(e) => {
                    warn!(error = %e, "accepting a control connection");
                    // Out of descriptors, say: do not spin.
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Hands `stream` to a thread of its own, unless too many are open.
fn serve_connection(mut stream: UnixStream, device: &Arc<Device>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
        active.fetch_sub(1, Ordering::SeqCst);
        let _ = writeln!(stream, "{}", Reply::err("too many control connections"));
        return;
    }
    let (device, active) = (Arc::clone(device), Arc::clone(active));
    let active_on_failure = Arc::clone(&active);
    let spawned = thread::Builder::new()
        .name("diskfs-control-conn".into())
        .spawn(move || {
            if let Err(e) = handle_lines(stream, &device) {
                debug!(error = %e, "control connection ended");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        active_on_failure.fetch_sub(1, Ordering::SeqCst);
        warn!(error = %e, "cannot start a control connection thread");
    }
}

/// Answers each line of one connection until it closes or idles out.
fn handle_lines(stream: UnixStream, device: &Device) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(line) = read_line_bounded(&mut reader)? {
        let text = match line {
            Ok(text) => text,
            Err(reason) => {
                // Read the rest of the bad line before answering: closing on
                // unread bytes would cut the client off mid-write (EPIPE)
                // before it reads the reason.
                skip_line(&mut reader)?;
                writeln!(writer, "{}", Reply::err(reason))?;
                continue;
            }
        };
        let reply = match Command::parse(&text) {
            Ok(command) => device.execute(command),
            Err(e) => Reply::err(e),
        };
        writeln!(writer, "{reply}")?;
    }
    Ok(())
}

/// Reads one line of at most [`LINE_BYTES_MAX`] bytes. `None` at end of
/// stream; `Some(Err(reason))` for a line that is too long or not UTF-8.
fn read_line_bounded<R: BufRead>(reader: &mut R) -> io::Result<Option<Result<String, String>>> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(LINE_BYTES_MAX as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && buf.len() > LINE_BYTES_MAX {
        return Ok(Some(Err(format!("line longer than {LINE_BYTES_MAX} bytes"))));
    }
    Ok(Some(
        String::from_utf8(buf).map_err(|_| "command is not UTF-8".to_string()),
    ))
}

/// Discards bytes up to and including the next newline (or end of stream),
/// in constant memory; the idle timeout bounds how long a sender may take.
fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// Sends one command line to the daemon at `socket` and returns its reply;
/// waits at most `timeout` to connect and `timeout` again for the reply.
pub fn send_command(socket: &Path, line: &str, timeout: Duration) -> Result<Reply, ClientError> {
    let path = socket.to_path_buf();
    let mut stream = connect_bounded(socket, timeout)?;
    let io_err = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    // One command, one line: an embedded newline would send a second.
    let line = format!("{}\n", line.replace(['\n', '\r'], " ").trim());
    let written = stream.write_all(line.as_bytes());
    let mut reader = BufReader::new(stream);
    let read = read_line_bounded(&mut reader);
    // A daemon may answer and close before taking all of a bad line: its
    // reply says more than our broken pipe does.
    let read = match (written, read) {
        (Err(e), Err(_) | Ok(None)) => return Err(io_err(e)),
        (_, read) => read,
    };
    match read.map_err(io_err)? {
        None => Err(ClientError::NoReply(path)),
        Some(Err(reason)) => Err(ClientError::Malformed { path, reason }),
        Some(Ok(text)) => Reply::parse(&text).map_err(|reason| ClientError::Malformed { path, reason }),
    }
}

/// `UnixStream::connect` has no timeout and can block on a full backlog, so
/// connect from a helper thread and stop waiting for it after `timeout`.
fn connect_bounded(socket: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let (tx, rx) = mpsc::channel();
    let target = socket.to_path_buf();
    thread::Builder::new()
        .name("diskfs-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(&target));
        })
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        }),
        Err(_) => Err(ClientError::ConnectTimeout {
            path: socket.to_path_buf(),
            timeout_ms: timeout.as_millis() as u64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn device() -> Arc<Device> {
        Arc::new(Device::new(File::open(std::env::temp_dir()).unwrap(), 1 << 20))
    }

    #[test]
    fn a_served_socket_answers_commands_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let server = ControlServer::bind(&sock).unwrap();
        server.spawn(device()).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(send_command(&sock, "stall 100", t).unwrap(), Reply::Ok);
        match send_command(&sock, "status", t).unwrap() {
            Reply::OkJson(v) => assert!(v["stall_remaining_ms"].as_u64().unwrap() <= 100),
            other => panic!("status replied {other:?}"),
        }
        assert!(matches!(send_command(&sock, "stall nope", t).unwrap(), Reply::Err(_)));
        let long = "x".repeat(LINE_BYTES_MAX + 10);
        let reply = send_command(&sock, &long, t).unwrap();
        assert!(
            matches!(reply, Reply::Err(ref r) if r.contains("longer than")),
            "{reply:?}"
        );
        assert!(matches!(ControlServer::bind(&sock), Err(DaemonError::ControlInUse(_))));
    }

    #[test]
    fn an_overlong_line_is_answered_and_the_connection_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        ControlServer::bind(&sock).unwrap().spawn(device()).unwrap();
        let mut stream = UnixStream::connect(&sock).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let long = "x".repeat(LINE_BYTES_MAX * 3);
        // Written in pieces, as a slow client would: the reply must wait
        // for the newline, and the next command must still be served.
        for chunk in long.as_bytes().chunks(1000) {
            stream.write_all(chunk).unwrap();
        }
        stream.write_all(b"\nstatus\n").unwrap();
        let mut reader = BufReader::new(stream);
        let first = read_line_bounded(&mut reader).unwrap().unwrap().unwrap();
        assert!(first.contains("longer than"), "{first}");
        let second = read_line_bounded(&mut reader).unwrap().unwrap().unwrap();
        assert!(matches!(Reply::parse(&second), Ok(Reply::OkJson(_))), "{second}");
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_a_missing_one_fails_to_connect() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        drop(UnixListener::bind(&sock).unwrap()); // leaves the file, nobody listening
        let err = send_command(&sock, "status", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        ControlServer::bind(&sock).unwrap();
        let missing = dir.path().join("none.sock");
        assert!(matches!(
            send_command(&missing, "status", Duration::from_secs(5)),
            Err(ClientError::Connect { .. })
        ));
    }
}

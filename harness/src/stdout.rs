//! Standard output that a closed pipe ends quietly.
//!
//! `faultline check --json F | head -1` closes the pipe after one line. A
//! plain `println!` then panics ("Broken pipe"), and a `?` on the write
//! would turn a verdict into exit code 3. Here the first write that meets a
//! closed pipe marks stdout closed: every later line is dropped, and the
//! command goes on to exit with its own code (the verdict's).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stdout and flushes; a closed pipe is a normal end,
/// any other error is reported on stderr once and stdout then given up too.
pub fn write_all(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("faultline: writing to stdout: {e}");
        }
    }
}

/// Writes one formatted line; see [`write_all`].
pub fn line(args: std::fmt::Arguments<'_>) {
    write_all(format!("{args}\n").as_bytes());
}

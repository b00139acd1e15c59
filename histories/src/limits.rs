//! Bounds on what a reader takes from its input, so that no file, however
//! hostile (`/dev/zero`, a binary file, one line of gigabytes), makes a
//! reader grow without end: past [`ReadLimits::max_line_bytes`] a line is an
//! error naming its number, and no reader buffers more than that limit of
//! one line.

use std::io::{self, BufRead, Read};
use std::path::Path;

use crate::error::HistoryError;

/// How much of its input a reader may hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The longest line accepted, in bytes, its newline not counted.
    pub max_line_bytes: usize,
}

impl ReadLimits {
    /// The default line limit: 256 MiB, far above any real history's line
    /// (a Jepsen history written as one vector on a single line included)
    /// and far below what would exhaust a machine.
    pub const DEFAULT_MAX_LINE_MIB: usize = 256;

    /// Limits with the longest line given in MiB, as the command line takes
    /// it. `None` when `mib` is 0 or its bytes do not fit a `usize`.
    pub fn with_max_line_mib(mib: usize) -> Option<ReadLimits> {
        let max_line_bytes = mib.checked_mul(1 << 20).filter(|&b| b > 0)?;
        Some(ReadLimits { max_line_bytes })
    }
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_line_bytes: ReadLimits::DEFAULT_MAX_LINE_MIB << 20,
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// The input ended before any byte.
    End,
    /// A line, in the buffer with its newline if it had one.
    Line,
}

/// The error of a line past the limit.
pub(crate) fn line_too_long(path: &Path, line: usize, limits: &ReadLimits) -> HistoryError {
    HistoryError::LineTooLong {
        path: path.to_owned(),
        line,
        max_line_bytes: limits.max_line_bytes,
    }
}

/// Reads the next line into `buf` (cleared first), holding at most
/// `max_line_bytes + 1` bytes: past that the line is `line_too_long` (the
/// error names `line`, the 1-based number of the line being read).
pub fn read_line<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    path: &Path,
    line: usize,
    limits: &ReadLimits,
) -> Result<LineRead, HistoryError> {
    buf.clear();
    // `Take` over a `BufRead` is a `BufRead`, so `read_until` keeps its fast
    // search for the newline and stops at the limit on its own.
    let bound = limits.max_line_bytes as u64 + 1;
    let n = input
        .by_ref()
        .take(bound)
        .read_until(b'\n', buf)
        .map_err(|source| io_error(path, source))?;
    if n == 0 {
        return Ok(LineRead::End);
    }
    if buf.last() != Some(&b'\n') && n as u64 == bound {
        return Err(line_too_long(path, line, limits));
    }
    Ok(LineRead::Line)
}

/// Reads the next line keeping at most `prefix_max` of its first bytes in
/// `prefix` (cleared first, newline dropped): for a reader that needs only
/// the start of each line. Past `max_line_bytes` the line is an error, as in
/// [`read_line`]; nothing past `prefix_max` is held.
pub(crate) fn read_line_prefix<R: BufRead>(
    input: &mut R,
    prefix: &mut Vec<u8>,
    prefix_max: usize,
    path: &Path,
    line: usize,
    limits: &ReadLimits,
) -> Result<LineRead, HistoryError> {
    prefix.clear();
    let mut length = 0usize;
    loop {
        let available = input.fill_buf().map_err(|source| io_error(path, source))?;
        if available.is_empty() {
            return Ok(if length == 0 { LineRead::End } else { LineRead::Line });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let taken = newline.unwrap_or(available.len());
        let keep = taken.min(prefix_max.saturating_sub(prefix.len()));
        prefix.extend_from_slice(&available[..keep]);
        length += taken;
        input.consume(taken + usize::from(newline.is_some()));
        if length > limits.max_line_bytes {
            return Err(line_too_long(path, line, limits));
        }
        if newline.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> HistoryError {
    HistoryError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless source of zero bytes, like `/dev/zero`, that counts what
    /// was taken from it so a test can tell the reader stopped early.
    struct Zeros {
        taken: usize,
    }

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.taken += buf.len();
            Ok(buf.len())
        }
    }

    const SMALL: ReadLimits = ReadLimits { max_line_bytes: 1000 };

    #[test]
    fn reads_lines_up_to_the_limit_and_no_further() {
        let text = format!("ab\n{}\n{}", "x".repeat(1000), "y".repeat(1001));
        let mut input = text.as_bytes();
        let mut buf = Vec::new();
        let path = Path::new("t");
        assert_eq!(
            read_line(&mut input, &mut buf, path, 1, &SMALL).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ab\n");
        assert_eq!(
            read_line(&mut input, &mut buf, path, 2, &SMALL).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf.len(), 1001);
        let e = read_line(&mut input, &mut buf, path, 3, &SMALL).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:3: line 3 is longer than 1000 bytes (the limit of one line)"
        );
    }

    #[test]
    fn an_endless_line_stops_at_the_limit() {
        let mut input = io::BufReader::with_capacity(64, Zeros { taken: 0 });
        let mut buf = Vec::new();
        let e = read_line(&mut input, &mut buf, Path::new("zero"), 1, &SMALL).unwrap_err();
        assert!(matches!(e, HistoryError::LineTooLong { line: 1, .. }), "{e}");
        assert!(buf.len() <= 1001 && input.get_ref().taken < 1100, "{}", buf.len());
        let mut prefix = Vec::new();
        let e = read_line_prefix(&mut input, &mut prefix, 10, Path::new("zero"), 1, &SMALL).unwrap_err();
        assert!(matches!(e, HistoryError::LineTooLong { .. }), "{e}");
        assert_eq!(prefix.len(), 10);
    }

    #[test]
    fn a_prefix_keeps_the_start_of_each_line() {
        let mut input = io::BufReader::with_capacity(4, "hello world\n\nlast".as_bytes());
        let mut prefix = Vec::new();
        let path = Path::new("t");
        let mut lines = Vec::new();
        while read_line_prefix(&mut input, &mut prefix, 5, path, 1, &SMALL).unwrap() == LineRead::Line {
            lines.push(String::from_utf8(prefix.clone()).unwrap());
        }
        assert_eq!(lines, ["hello", "", "last"]);
    }

    #[test]
    fn limits_in_mib() {
        assert_eq!(ReadLimits::with_max_line_mib(1).unwrap().max_line_bytes, 1 << 20);
        assert_eq!(ReadLimits::with_max_line_mib(0), None);
        assert_eq!(ReadLimits::with_max_line_mib(usize::MAX), None);
        assert_eq!(ReadLimits::default().max_line_bytes, 256 << 20);
    }
}

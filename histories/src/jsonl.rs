//! The JSONL history file: a streaming reader and an appending writer.
//!
//! The writer flushes every line as the test runs, so a controller that dies
//! leaves a valid prefix. The reader therefore accepts what such a death
//! leaves: a truncated last line is reported (as a warning) and dropped, and
//! operations invoked but never completed become pending (crashed)
//! operations. Any other malformed line is an error naming its line and field.
//! A line longer than [`ReadLimits::max_line_bytes`] is an error too, read no
//! further than the limit. Integer literals past 64 bits are read exactly, as
//! `{"$int": "<digits>"}` ([`crate::value`]), not rounded to floats.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::HistoryError;
use crate::event::Event;
use crate::history::{Header, History, HistoryBuilder};
use crate::limits::{self, LineRead, ReadLimits};

/// One parsed line of a history file.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Header(Header),
    Event(Event),
}

/// Reads a history file line by line without holding the text in memory.
pub struct JsonlReader<R> {
    input: R,
    path: PathBuf,
    line: usize,
    buf: Vec<u8>,
    limits: ReadLimits,
    /// Set once a truncated last line has been seen and dropped.
    pub truncated: Option<String>,
}

impl<R: BufRead> JsonlReader<R> {
    /// A reader over `input`; `path` is used in error messages only.
    pub fn new(input: R, path: impl Into<PathBuf>) -> Self {
        JsonlReader {
            input,
            path: path.into(),
            line: 0,
            buf: Vec::with_capacity(256),
            limits: ReadLimits::default(),
            truncated: None,
        }
    }

    /// The same reader held to `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: &ReadLimits) -> Self {
        self.limits = *limits;
        self
    }

    /// The 1-based number of the line last returned.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The next line, `None` at the end of the file.
    pub fn next_line(&mut self) -> Option<Result<Line, HistoryError>> {
        loop {
            let next = self.line + 1;
            match limits::read_line(&mut self.input, &mut self.buf, &self.path, next, &self.limits) {
                Ok(LineRead::End) => return None,
                Ok(LineRead::Line) => {}
                Err(e) => return Some(Err(e)),
            }
            self.line = next;
            let complete = self.buf.last() == Some(&b'\n');
            let text = trim_ascii(&self.buf);
            if text.is_empty() {
                continue;
            }
            match parse_line(text, self.line == 1) {
                Ok(l) => return Some(Ok(l)),
                Err(_) if !complete => {
                    self.truncated = Some(format!(
                        "{}:{}: the last line is truncated (the writer stopped mid-line); dropped it",
                        self.path.display(),
                        self.line
                    ));
                    return None;
                }
                Err(message) => {
                    return Some(Err(HistoryError::Parse {
                        path: self.path.clone(),
                        line: self.line,
                        message,
                    }))
                }
            }
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Parses one line; the header is recognised only on the first line. A line
/// with an integer past 64 bits is parsed with it encoded exactly (error
/// columns then count in the encoded text).
fn parse_line(text: &[u8], first: bool) -> Result<Line, String> {
    match crate::value::exact_json_integers(text) {
        Some(exact) => parse_json_line(&exact, first),
        None => parse_json_line(text, first),
    }
}

fn parse_json_line(text: &[u8], first: bool) -> Result<Line, String> {
    const TAG: &[u8] = b"\"faultline_history\"";
    if first && text.windows(TAG.len()).any(|w| w == TAG) {
        return serde_json::from_slice::<Header>(text)
            .map(Line::Header)
            .map_err(|e| format!("header: {}", json_message(&e)));
    }
    serde_json::from_slice::<Event>(text)
        .map(Line::Event)
        .map_err(|e| json_message(&e))
}

/// serde_json's message without its " at line 1 column N" suffix: every
/// line is parsed on its own, so "line 1" would mislead; the column stays.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let bare = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    if e.column() > 0 {
        format!("{bare} (column {})", e.column())
    } else {
        bare.to_owned()
    }
}

/// Reads a whole history from any buffered input.
pub fn read_history<R: BufRead>(input: R, path: &Path) -> Result<History, HistoryError> {
    read_history_with(input, path, &ReadLimits::default())
}

/// Reads a whole history from any buffered input, held to `limits`.
pub fn read_history_with<R: BufRead>(input: R, path: &Path, limits: &ReadLimits) -> Result<History, HistoryError> {
    let mut reader = JsonlReader::new(input, path).with_limits(limits);
    let mut builder = HistoryBuilder::default();
    while let Some(line) = reader.next_line() {
        match line? {
            Line::Header(h) => builder.set_header(h),
            Line::Event(ev) => builder.push(ev).map_err(|e| e.at_line(path, reader.line()))?,
        }
    }
    if let Some(w) = reader.truncated.take() {
        builder.warn(w);
    }
    Ok(builder.finish())
}

/// Reads the history file at `path`.
pub fn read_history_file(path: &Path) -> Result<History, HistoryError> {
    read_history_file_with(path, &ReadLimits::default())
}

/// Reads the history file at `path`, held to `limits`.
pub fn read_history_file_with(path: &Path, limits: &ReadLimits) -> Result<History, HistoryError> {
    let file = File::open(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_history_with(BufReader::with_capacity(1 << 16, file), path, limits)
}

/// Appends events to a history file, one line each, flushed as written so
/// that nothing recorded is lost if the controller dies.
pub struct JsonlWriter<W: Write> {
    out: W,
    next_index: u64,
}

impl JsonlWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
        Ok(JsonlWriter::new(BufWriter::new(f)))
    }
}

impl<W: Write> JsonlWriter<W> {
    /// A writer over any output.
    pub fn new(out: W) -> Self {
        JsonlWriter { out, next_index: 0 }
    }

    /// The index the next event will be given by [`JsonlWriter::append`].
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Writes the header line.
    pub fn write_header(&mut self, header: &Header) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, header)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// Writes an event exactly as given (its index included) and flushes it.
    pub fn write_event(&mut self, ev: &Event) -> std::io::Result<()> {
        self.write_unflushed(ev)?;
        self.out.flush()
    }

    /// Writes an event without flushing; call [`JsonlWriter::flush`] after a
    /// batch. For writers that flush on a timer.
    pub fn write_unflushed(&mut self, ev: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, ev)?;
        self.out.write_all(b"\n")?;
        self.next_index = self.next_index.max(ev.index + 1);
        Ok(())
    }

    /// Gives the event the next index, writes it and flushes it.
    pub fn append(&mut self, mut ev: Event) -> std::io::Result<Event> {
        ev.index = self.next_index;
        self.write_event(&ev)?;
        Ok(ev)
    }

    /// Flushes buffered lines to the operating system.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The underlying output.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventType, Process, F};
    use crate::history::Outcome;
    use serde_json::json;

    fn sample() -> Vec<Event> {
        vec![
            Event::new(0, 5, Process::Client(0), EventType::Invoke, F::Write, json!(1)).with_key("k"),
            Event::new(1, 9, Process::Client(0), EventType::Ok, F::Write, json!(1)).with_key("k"),
            Event::new(2, 12, Process::Client(1), EventType::Invoke, F::Read, json!(null)).with_key("k"),
        ]
    }

    fn write_all(events: &[Event]) -> Vec<u8> {
        let mut w = JsonlWriter::new(Vec::new());
        w.write_header(&Header {
            faultline_history: 1,
            seed: Some(42),
            ..Header::default()
        })
        .unwrap();
        for e in events {
            w.write_event(e).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn writes_and_reads_back() {
        let bytes = write_all(&sample());
        let h = read_history(&bytes[..], Path::new("h.jsonl")).unwrap();
        assert_eq!(h.header.unwrap().seed, Some(42));
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.ops[1].outcome, Outcome::Pending);
        assert!(h.warnings.is_empty());
    }

    #[test]
    fn drops_a_truncated_last_line_with_a_warning() {
        let mut bytes = write_all(&sample());
        bytes.extend_from_slice(br#"{"index":3,"time":15,"proc"#);
        let h = read_history(&bytes[..], Path::new("h.jsonl")).unwrap();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.warnings.len(), 1);
        assert!(h.warnings[0].contains("h.jsonl:5"), "{:?}", h.warnings);
    }

    #[test]
    fn a_bad_middle_line_names_file_line_and_field() {
        let text = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n\
                    {\"index\":1,\"time\":1,\"process\":\"zero\",\"type\":\"ok\",\"f\":\"read\"}\n";
        let err = read_history(text.as_bytes(), Path::new("x.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.jsonl:2:"), "{err}");
        assert!(err.contains("field `process`"), "{err}");
    }

    fn event_line(index: u64, kind: &str, value: &str) -> String {
        format!(
            "{{\"index\":{index},\"time\":{index},\"process\":0,\"type\":\"{kind}\",\"f\":\"write\",\"value\":{value}}}\n"
        )
    }

    #[test]
    fn integers_past_64_bits_are_read_exactly() {
        let two_64 = "18446744073709551616";
        let text = event_line(0, "invoke", two_64) + &event_line(1, "ok", "18446744073709551617");
        let h = read_history(text.as_bytes(), Path::new("h.jsonl")).unwrap();
        assert_eq!(h.ops[0].input, json!({"$int": two_64}));
        assert_eq!(h.ops[0].output, json!({"$int": "18446744073709551617"}));
        assert_ne!(h.ops[0].input, h.ops[0].output);
        // In range they stay numbers; in strings they stay strings.
        let text = event_line(
            0,
            "invoke",
            "[18446744073709551615,-9223372036854775808,\"18446744073709551616\"]",
        );
        let h = read_history(text.as_bytes(), Path::new("h.jsonl")).unwrap();
        assert_eq!(h.ops[0].input, json!([u64::MAX, i64::MIN, two_64]));
        // What is written is read back the same.
        let mut w = JsonlWriter::new(Vec::new());
        let ev = Event::new(
            0,
            0,
            Process::Client(0),
            EventType::Invoke,
            F::Write,
            json!({"$int": two_64}),
        );
        w.write_event(&ev).unwrap();
        let h = read_history(&w.into_inner()[..], Path::new("h.jsonl")).unwrap();
        assert_eq!(h.ops[0].input, json!({"$int": two_64}));
        // A field that must be an integer says so.
        let text = format!("{{\"index\":{two_64},\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}}\n");
        let err = read_history(text.as_bytes(), Path::new("h.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h.jsonl:1: field `index`"), "{err}");
    }

    #[test]
    fn an_overlong_line_is_an_error_naming_it() {
        let limits = ReadLimits { max_line_bytes: 200 };
        let long = event_line(1, "ok", &format!("\"{}\"", "x".repeat(200)));
        let text = event_line(0, "invoke", "1") + &long;
        let err = read_history_with(text.as_bytes(), Path::new("h.jsonl"), &limits)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "h.jsonl:2: line 2 is longer than 200 bytes (the limit of one line)"
        );
        // Within the limit it reads, as it does with the default limits.
        assert_eq!(
            read_history(text.as_bytes(), Path::new("h.jsonl")).unwrap().ops.len(),
            1
        );
    }

    /// An endless source of zero bytes, like `/dev/zero`, counting what was
    /// taken from it.
    struct Zeros(usize);

    impl std::io::Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            self.0 += buf.len();
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_input_ends_at_the_limit() {
        let limits = ReadLimits {
            max_line_bytes: 1 << 20,
        };
        let mut input = BufReader::new(Zeros(0));
        let err = read_history_with(&mut input, Path::new("/dev/zero"), &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero:1: line 1 is longer than 1 MiB (the limit of one line)"
        );
        assert!(
            input.get_ref().0 < (1 << 20) + (1 << 16),
            "read {} bytes",
            input.get_ref().0
        );
    }

    #[test]
    fn a_pairing_error_names_the_line() {
        let text = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"ok\",\"f\":\"read\"}\n";
        let err = read_history(text.as_bytes(), Path::new("x.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.jsonl:1:"), "{err}");
    }
}

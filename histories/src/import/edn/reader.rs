//! A small streaming reader of EDN (extensible data notation), the text
//! format Clojure programs such as Jepsen write.
//!
//! It promises to read every form of the EDN specification that a history
//! can hold: `nil`, booleans, integers (arbitrary size, with or without the
//! `N` suffix), floats (with or without `M`), ratios, strings with escapes,
//! characters, symbols, keywords (namespaced too), lists, vectors, maps,
//! hexadecimal integers (Clojure prints them in `#object[...]`),
//! sets, tagged literals (`#inst "..."`, `#jepsen.history.Op{...}`), `;`
//! comments, commas as whitespace and `#_` discards. It reads from any
//! [`Read`] a buffer at a time, so a history of any length is never held as
//! text, and it tracks line numbers so that every error names the line where
//! the problem is and, when it differs, the line where the form began.
//!
//! Bounded on any input: a line longer than [`ReadLimits::max_line_bytes`] is
//! an error (so `/dev/zero` ends at the limit, not in an out-of-memory
//! abort); forms nest at most [`DEPTH_MAX`] deep, past which the reader
//! says so rather than overflow its stack; and a run of `#_` discards,
//! however long, is counted rather than recursed into.
//!
//! Why not the `edn-format` crate: it parses a `&str` (the whole file in
//! memory), pulls in eight dependencies (chrono, uuid, bigdecimal, ...) that
//! nothing here needs, and reports the position of syntax errors only, not
//! the line where each form starts, which a history importer needs to name
//! the operation at fault.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::HistoryError;
use crate::limits::{self, ReadLimits};

/// Forms nested deeper than this are rejected rather than risking the stack:
/// each level costs a few stack frames, and 256 of them fit the smallest
/// thread stack many times over, while a history nests a handful deep.
pub const DEPTH_MAX: usize = 256;

/// The most the reader takes from its input at once. The line limit is
/// checked a block at a time, so it is exact for limits of a block or more
/// (the command line's are whole MiB); under that, a line may pass it by
/// less than a block.
const BLOCK_BYTES: usize = 1 << 16;

/// One EDN value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Edn {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`, or written with the `N` suffix and outside
    /// `i64`: its decimal digits, with sign.
    BigInt(String),
    Float(f64),
    /// A float written with the `M` suffix (arbitrary precision): its text
    /// without the suffix.
    Decimal(String),
    Str(String),
    Char(char),
    /// Without the leading colon: `:jepsen/op` is `Keyword("jepsen/op")`.
    Keyword(String),
    Symbol(String),
    List(Vec<Edn>),
    Vector(Vec<Edn>),
    Set(Vec<Edn>),
    /// Entries in the order written.
    Map(Vec<(Edn, Edn)>),
    /// `#tag value`; the tag without the `#`.
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// The value of `key` if this is a map holding the keyword `key`.
    pub fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(name) if name == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Prints EDN back as text, for error messages (`got "x"`).
impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::BigInt(s) => write!(f, "{s}N"),
            Edn::Float(x) if x.is_nan() => f.write_str("##NaN"),
            Edn::Float(x) if x.is_infinite() => f.write_str(if *x > 0.0 { "##Inf" } else { "##-Inf" }),
            Edn::Float(x) => write!(f, "{x:?}"),
            Edn::Decimal(s) => write!(f, "{s}M"),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(items) => write_seq(f, "(", items, ")"),
            Edn::Vector(items) => write_seq(f, "[", items, "]"),
            Edn::Set(items) => write_seq(f, "#{", items, "}"),
            Edn::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(tag, v) => write!(f, "#{tag}{}{v}", if matches!(**v, Edn::Map(_)) { "" } else { " " }),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

/// Reads EDN forms one after another from a byte stream.
pub struct EdnReader<R> {
    input: R,
    path: PathBuf,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The 1-based line of the next byte.
    line: usize,
    /// The line where the top-level form being read began, while one is.
    form_line: Option<usize>,
    /// Reused for tokens, which are mostly keywords and numbers that need
    /// no allocation of their own.
    scratch: Vec<u8>,
    limits: ReadLimits,
    /// Bytes read from the input so far.
    read_bytes: usize,
    /// The input offset just past the last newline read, where the line
    /// being read (the last one in the buffer) begins.
    line_start: usize,
}

/// Bytes that end a symbol, keyword or number.
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

impl<R: Read> EdnReader<R> {
    /// A reader over `input`; `path` is used in error messages only.
    pub fn new(input: R, path: &Path) -> Self {
        EdnReader {
            input,
            path: path.to_owned(),
            buf: vec![0; BLOCK_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            line: 1,
            form_line: None,
            scratch: Vec::new(),
            limits: ReadLimits::default(),
            read_bytes: 0,
            line_start: 0,
        }
    }

    /// The same reader held to `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: &ReadLimits) -> Self {
        self.limits = *limits;
        self
    }

    /// The line of the next unread byte.
    pub fn line(&self) -> usize {
        self.line
    }

    /// A parse error at the current line, naming the form's first line when
    /// the form began earlier.
    pub fn error(&self, message: impl fmt::Display) -> HistoryError {
        let message = match self.form_line {
            Some(first) if first < self.line => format!("{message} (in the form that begins on line {first})"),
            _ => message.to_string(),
        };
        HistoryError::Parse {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }

    fn io_error(&self, source: io::Error) -> HistoryError {
        HistoryError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Makes at least `n` unread bytes available unless the input ends first.
    fn fill(&mut self, n: usize) -> Result<(), HistoryError> {
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(()),
                Ok(k) => self.took(k)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(())
    }

    /// Accounts for `k` bytes just read at the end of the buffer; an error
    /// once a line exceeds the limit: the line the block's first newline
    /// ends, or the line its end is in (lines between lie within the block,
    /// so are shorter than a block). Newlines are looked for from the
    /// block's two ends, which costs a few bytes a block on text of short
    /// lines.
    fn took(&mut self, k: usize) -> Result<(), HistoryError> {
        let block = &self.buf[self.end..self.end + k];
        if let Some(first) = block.iter().position(|&b| b == b'\n') {
            if self.read_bytes + first - self.line_start > self.limits.max_line_bytes {
                return Err(self.line_too_long());
            }
            let last = block.iter().rposition(|&b| b == b'\n').unwrap_or(first);
            self.line_start = self.read_bytes + last + 1;
        }
        self.read_bytes += k;
        self.end += k;
        if self.read_bytes - self.line_start > self.limits.max_line_bytes {
            return Err(self.line_too_long());
        }
        Ok(())
    }

    /// The error of the line that follows the lines read and those waiting
    /// in the buffer (up to `end`).
    fn line_too_long(&self) -> HistoryError {
        let waiting = self.buf[self.start..self.end].iter().filter(|&&b| b == b'\n').count();
        limits::line_too_long(&self.path, self.line + waiting, &self.limits)
    }

    /// The byte `ahead` positions past the next one (0: the next byte).
    fn peek_at(&mut self, ahead: usize) -> Result<Option<u8>, HistoryError> {
        if self.start + ahead >= self.end {
            self.fill(ahead + 1)?;
        }
        let i = self.start + ahead;
        Ok((i < self.end).then(|| self.buf[i]))
    }

    #[inline]
    fn peek(&mut self) -> Result<Option<u8>, HistoryError> {
        if self.start < self.end {
            return Ok(Some(self.buf[self.start]));
        }
        self.peek_at(0)
    }

    /// Moves the bytes before the first one that `stop` accepts (or the end
    /// of the input) onto `out`, a buffer at a time rather than byte by byte.
    fn take_until(&mut self, out: &mut Vec<u8>, stop: impl Fn(u8) -> bool) -> Result<(), HistoryError> {
        loop {
            if self.start == self.end {
                self.fill(1)?;
                if self.start == self.end {
                    return Ok(());
                }
            }
            let available = &self.buf[self.start..self.end];
            let n = available.iter().position(|&b| stop(b)).unwrap_or(available.len());
            let taken = &available[..n];
            self.line += taken.iter().filter(|&&b| b == b'\n').count();
            out.extend_from_slice(taken);
            self.start += n;
            if self.start < self.end {
                return Ok(());
            }
        }
    }

    /// Consumes the next byte, which the caller has peeked.
    fn bump(&mut self) {
        if self.buf[self.start] == b'\n' {
            self.line += 1;
        }
        self.start += 1;
    }

    fn next_byte(&mut self) -> Result<Option<u8>, HistoryError> {
        let b = self.peek()?;
        if b.is_some() {
            self.bump();
        }
        Ok(b)
    }

    /// Skips whitespace, commas, comments and `#_` discarded forms; returns
    /// the first byte of the next form without consuming it.
    pub fn skip_blank(&mut self) -> Result<Option<u8>, HistoryError> {
        self.skip_blank_at(0)
    }

    /// [`EdnReader::skip_blank`] among forms at nesting `depth`. A run of
    /// `#_` is counted, then as many forms read and dropped (`#_ #_ a b`
    /// drops both), so a run of any length costs no stack; each dropped form
    /// nests one level deeper, so nesting bounds discards inside discards.
    fn skip_blank_at(&mut self, depth: usize) -> Result<Option<u8>, HistoryError> {
        let mut discards = 0usize;
        loop {
            match self.peek()? {
                Some(b) if b.is_ascii_whitespace() || b == b',' => self.bump(),
                Some(b';') => self.skip_comment()?,
                Some(b'#') if self.peek_at(1)? == Some(b'_') => {
                    self.bump();
                    self.bump();
                    discards += 1;
                }
                Some(_) if discards > 0 => {
                    self.read_nested(depth + 1)?;
                    discards -= 1;
                }
                None if discards > 0 => return Err(self.error("the file ends after `#_`, before the form it discards")),
                other => return Ok(other),
            }
        }
    }

    fn skip_comment(&mut self) -> Result<(), HistoryError> {
        while let Some(b) = self.next_byte()? {
            if b == b'\n' {
                break;
            }
        }
        Ok(())
    }

    /// Consumes the next byte if it is `b`, after skipping blanks.
    pub fn eat(&mut self, b: u8) -> Result<bool, HistoryError> {
        if self.skip_blank()? == Some(b) {
            self.bump();
            return Ok(true);
        }
        Ok(false)
    }

    /// The next top-level form and the line it begins on; `None` at the end.
    pub fn next_form(&mut self) -> Result<Option<(usize, Edn)>, HistoryError> {
        if self.skip_blank()?.is_none() {
            return Ok(None);
        }
        let line = self.line;
        self.form_line = Some(line);
        let form = self.read_nested(0);
        self.form_line = None;
        Ok(Some((line, form?)))
    }

    /// Reads one form at nesting `depth`, blanks before it included.
    fn read_nested(&mut self, depth: usize) -> Result<Edn, HistoryError> {
        if depth > DEPTH_MAX {
            return Err(self.error(format!(
                "forms nested deeper than {DEPTH_MAX} levels (no history nests so deep)"
            )));
        }
        let Some(b) = self.skip_blank_at(depth)? else {
            return Err(self.error("the file ends in the middle of a form"));
        };
        match b {
            b'(' => self.read_seq(b')', depth).map(Edn::List),
            b'[' => self.read_seq(b']', depth).map(Edn::Vector),
            b'{' => self.read_map(depth),
            b')' | b']' | b'}' => Err(self.error(format!("unexpected `{}`", b as char))),
            b'"' => self.read_string().map(Edn::Str),
            b'\\' => self.read_char(),
            b'#' => self.read_dispatch(depth),
            _ => self.read_atom(),
        }
    }

    /// Reads the items up to `close`; the opening byte is next.
    fn read_seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, HistoryError> {
        self.bump();
        let mut items = Vec::new();
        loop {
            match self.skip_blank_at(depth)? {
                Some(b) if b == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => items.push(self.read_nested(depth + 1)?),
                None => return Err(self.error(format!("the file ends before the closing `{}`", close as char))),
            }
        }
    }

    /// Reads the entries up to `}`; the `{` is next.
    fn read_map(&mut self, depth: usize) -> Result<Edn, HistoryError> {
        self.bump();
        let mut entries = Vec::new();
        loop {
            match self.skip_blank_at(depth)? {
                Some(b'}') => {
                    self.bump();
                    return Ok(Edn::Map(entries));
                }
                Some(_) => {
                    let key = self.read_nested(depth + 1)?;
                    if self.skip_blank_at(depth)? == Some(b'}') {
                        self.bump();
                        return Err(self.error("a map has a key without a value"));
                    }
                    let value = self.read_nested(depth + 1)?;
                    entries.push((key, value));
                }
                None => return Err(self.error("the file ends before the closing `}`")),
            }
        }
    }

    /// `#{...}` sets, `##Inf`-style symbolic values and `#tag form`.
    fn read_dispatch(&mut self, depth: usize) -> Result<Edn, HistoryError> {
        self.bump();
        match self.peek()? {
            Some(b'{') => self.read_seq(b'}', depth).map(Edn::Set),
            Some(b'#') => {
                self.bump();
                match self.read_token()?.as_str() {
                    "Inf" => Ok(Edn::Float(f64::INFINITY)),
                    "-Inf" => Ok(Edn::Float(f64::NEG_INFINITY)),
                    "NaN" => Ok(Edn::Float(f64::NAN)),
                    other => Err(self.error(format!("unknown symbolic value `##{other}`"))),
                }
            }
            Some(b) if b.is_ascii_alphabetic() => {
                let tag = self.read_token()?;
                let value = self.read_nested(depth + 1)?;
                Ok(Edn::Tagged(tag, Box::new(value)))
            }
            Some(b) => Err(self.error(format!("unsupported dispatch `#{}`", b as char))),
            None => Err(self.error("the file ends after `#`")),
        }
    }

    /// The bytes up to the next delimiter.
    fn read_token(&mut self) -> Result<String, HistoryError> {
        let mut token = Vec::new();
        self.take_until(&mut token, is_delimiter)?;
        String::from_utf8(token).map_err(|_| self.error("a symbol is not valid UTF-8"))
    }

    fn read_atom(&mut self) -> Result<Edn, HistoryError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let atom = self
            .take_until(&mut scratch, is_delimiter)
            .and_then(|()| self.atom(&scratch));
        self.scratch = scratch;
        atom
    }

    /// The value of a token: keyword, number, `nil`, boolean or symbol.
    fn atom(&self, token: &[u8]) -> Result<Edn, HistoryError> {
        let token = std::str::from_utf8(token).map_err(|_| self.error("a symbol is not valid UTF-8"))?;
        if let Some(name) = token.strip_prefix(':') {
            if name.is_empty() || name.starts_with(':') {
                return Err(self.error(format!("malformed keyword `{token}`")));
            }
            return Ok(Edn::Keyword(name.to_owned()));
        }
        let b = token.as_bytes();
        let numeric =
            b[0].is_ascii_digit() || (matches!(b[0], b'+' | b'-') && b.get(1).is_some_and(u8::is_ascii_digit));
        if numeric {
            return parse_number(token).ok_or_else(|| self.error(format!("malformed number `{token}`")));
        }
        Ok(match token {
            "nil" => Edn::Nil,
            "true" => Edn::Bool(true),
            "false" => Edn::Bool(false),
            _ => Edn::Symbol(token.to_owned()),
        })
    }

    fn read_string(&mut self) -> Result<String, HistoryError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            self.take_until(&mut out, |b| b == b'"' || b == b'\\')?;
            match self.next_byte()? {
                Some(b'"') => break,
                Some(_) => self.read_escape(&mut out)?,
                None => return Err(self.error("the file ends inside a string")),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    fn read_escape(&mut self, out: &mut Vec<u8>) -> Result<(), HistoryError> {
        let c = match self.next_byte()? {
            Some(b'n') => '\n',
            Some(b't') => '\t',
            Some(b'r') => '\r',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'u') => self.read_unicode_escape()?,
            Some(b) => return Err(self.error(format!("unknown string escape `\\{}`", b as char))),
            None => return Err(self.error("the file ends inside a string")),
        };
        let mut utf8 = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    fn read_unicode_escape(&mut self) -> Result<char, HistoryError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = self.next_byte()?.and_then(|b| (b as char).to_digit(16));
            let Some(d) = digit else {
                return Err(self.error("`\\u` must be followed by four hexadecimal digits"));
            };
            code = code * 16 + d;
        }
        char::from_u32(code).ok_or_else(|| self.error(format!("`\\u{code:04x}` is not a character")))
    }

    /// `\a`, `\newline`, `\space`, `\tab`, `\return`, `\uXXXX`, ...
    fn read_char(&mut self) -> Result<Edn, HistoryError> {
        self.bump();
        let Some(first) = self.next_byte()? else {
            return Err(self.error("the file ends after `\\`"));
        };
        let mut name = vec![first];
        while let Some(b) = self.peek()? {
            if is_delimiter(b) {
                break;
            }
            name.push(b);
            self.bump();
        }
        let name = String::from_utf8(name).map_err(|_| self.error("a character is not valid UTF-8"))?;
        char_named(&name)
            .map(Edn::Char)
            .ok_or_else(|| self.error(format!("unknown character `\\{name}`")))
    }
}

fn char_named(name: &str) -> Option<char> {
    let mut chars = name.chars();
    let first = chars.next()?;
    if chars.next().is_none() {
        return Some(first);
    }
    match name {
        "newline" => Some('\n'),
        "space" => Some(' '),
        "tab" => Some('\t'),
        "return" => Some('\r'),
        "backspace" => Some('\u{8}'),
        "formfeed" => Some('\u{c}'),
        _ => {
            let hex = name.strip_prefix('u').filter(|h| h.len() == 4)?;
            char::from_u32(u32::from_str_radix(hex, 16).ok()?)
        }
    }
}

/// Integers (`N` suffix allowed), floats (`M` suffix allowed) and ratios.
fn parse_number(token: &str) -> Option<Edn> {
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    if unsigned.starts_with("0x") || unsigned.starts_with("0X") {
        return parse_integer(token);
    }
    if let Some(digits) = token.strip_suffix('N') {
        return parse_integer(digits);
    }
    if let Some(text) = token.strip_suffix('M') {
        text.parse::<f64>().ok()?;
        return Some(Edn::Decimal(text.to_owned()));
    }
    if let Some((n, d)) = token.split_once('/') {
        let (Some(Edn::Int(n)), Some(Edn::Int(d))) = (parse_integer(n), parse_integer(d)) else {
            return None;
        };
        return (d != 0).then(|| Edn::Float(n as f64 / d as f64));
    }
    if token.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return token.parse::<f64>().ok().filter(|x| x.is_finite()).map(Edn::Float);
    }
    parse_integer(token)
}

fn parse_integer(text: &str) -> Option<Edn> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        return parse_hex(hex, text.starts_with('-'));
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match text.parse::<i64>() {
        Ok(i) => Edn::Int(i),
        Err(_) => Edn::BigInt(text.strip_prefix('+').unwrap_or(text).to_owned()),
    })
}

/// Hexadecimal, which EDN lacks but Clojure prints inside `#object[...]`
/// (identity hashes such as `0x5e3a8624`), so Jepsen's errors hold it.
fn parse_hex(hex: &str, negative: bool) -> Option<Edn> {
    let magnitude = i64::from_str_radix(hex, 16)
        .ok()
        .filter(|_| !hex.starts_with(['+', '-']))?;
    Some(Edn::Int(if negative { -magnitude } else { magnitude }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<(usize, Edn)>, HistoryError> {
        let mut r = EdnReader::new(text.as_bytes(), Path::new("t.edn"));
        let mut out = Vec::new();
        while let Some(f) = r.next_form()? {
            out.push(f);
        }
        Ok(out)
    }

    fn one(text: &str) -> Edn {
        let forms = read_all(text).unwrap();
        assert_eq!(forms.len(), 1, "{forms:?}");
        forms.into_iter().next().unwrap().1
    }

    fn err(text: &str) -> String {
        read_all(text).unwrap_err().to_string()
    }

    fn kw(s: &str) -> Edn {
        Edn::Keyword(s.into())
    }

    #[test]
    fn reads_scalars() {
        assert_eq!(one("nil"), Edn::Nil);
        assert_eq!(one("true"), Edn::Bool(true));
        assert_eq!(one("false"), Edn::Bool(false));
        assert_eq!(one("-42"), Edn::Int(-42));
        assert_eq!(one("+7"), Edn::Int(7));
        assert_eq!(one("7N"), Edn::Int(7));
        assert_eq!(
            one("123456789012345678901234567890"),
            Edn::BigInt("123456789012345678901234567890".into())
        );
        assert_eq!(one("-9223372036854775809N"), Edn::BigInt("-9223372036854775809".into()));
        assert_eq!(one("1.5"), Edn::Float(1.5));
        assert_eq!(one("-2e3"), Edn::Float(-2000.0));
        assert_eq!(one("1.25M"), Edn::Decimal("1.25".into()));
        assert_eq!(one("1/4"), Edn::Float(0.25));
        assert_eq!(one("0x1F"), Edn::Int(31));
        assert_eq!(one("-0x10"), Edn::Int(-16));
        assert_eq!(one("0XE"), Edn::Int(14));
        assert_eq!(
            one("#object[java.net.SocketTimeoutException 0x5e3a8624 \"Read timed out\"]"),
            Edn::Tagged(
                "object".into(),
                Box::new(Edn::Vector(vec![
                    Edn::Symbol("java.net.SocketTimeoutException".into()),
                    Edn::Int(0x5e3a8624),
                    Edn::Str("Read timed out".into()),
                ]))
            )
        );
        assert_eq!(one("##Inf"), Edn::Float(f64::INFINITY));
        assert_eq!(one(":ok"), kw("ok"));
        assert_eq!(one(":jepsen.history/op"), kw("jepsen.history/op"));
        assert_eq!(one("foo/bar"), Edn::Symbol("foo/bar".into()));
        assert_eq!(one("-"), Edn::Symbol("-".into()));
    }

    #[test]
    fn reads_strings_and_characters() {
        assert_eq!(one(r#""a\"b\\c\n\t\u00e9""#), Edn::Str("a\"b\\c\n\t\u{e9}".into()));
        assert_eq!(one("\"multi\nline\""), Edn::Str("multi\nline".into()));
        assert_eq!(one("\"h\u{e9}\""), Edn::Str("h\u{e9}".into()));
        assert_eq!(one(r"[\a \newline \space \u0041 \\]"), {
            Edn::Vector(vec![
                Edn::Char('a'),
                Edn::Char('\n'),
                Edn::Char(' '),
                Edn::Char('A'),
                Edn::Char('\\'),
            ])
        });
    }

    #[test]
    fn reads_collections_tags_comments_and_discards() {
        let form = one("; a comment\n{:a [1 2], :b (3) :c #{:x} #_ :ignored :d #_#_ 1 2 #inst \"2026\"}");
        assert_eq!(form.get("a"), Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)])));
        assert_eq!(form.get("b"), Some(&Edn::List(vec![Edn::Int(3)])));
        assert_eq!(form.get("c"), Some(&Edn::Set(vec![kw("x")])));
        assert_eq!(
            form.get("d"),
            Some(&Edn::Tagged("inst".into(), Box::new(Edn::Str("2026".into()))))
        );
        assert_eq!(one("#{}"), Edn::Set(vec![]));
        let op = one("#jepsen.history.Op{:index 0, :type :invoke}");
        let Edn::Tagged(tag, map) = op else { panic!() };
        assert_eq!(tag, "jepsen.history.Op");
        assert_eq!(map.get("type"), Some(&kw("invoke")));
    }

    #[test]
    fn reports_the_line_each_form_begins_on() {
        let forms = read_all("{:a 1}\n\n{:b\n 2}\n;c\n:x").unwrap();
        let lines: Vec<usize> = forms.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 3, 6]);
    }

    #[test]
    fn prints_forms_back() {
        let text = "#t{:a [1 \"x\" nil], :b #{:k}}";
        assert_eq!(one(text).to_string(), text);
    }

    #[test]
    fn syntax_errors_name_the_line_and_the_problem() {
        assert_eq!(err("{:a 1}\n{:b 2"), "t.edn:2: the file ends before the closing `}`");
        assert_eq!(err("{:a 1}\n(1 2]"), "t.edn:2: unexpected `]`");
        assert_eq!(err("\"abc"), "t.edn:1: the file ends inside a string");
        assert_eq!(err(r#""\q""#), "t.edn:1: unknown string escape `\\q`");
        assert_eq!(
            err(r#""\u12""#),
            "t.edn:1: `\\u` must be followed by four hexadecimal digits"
        );
        assert_eq!(err("{:a}"), "t.edn:1: a map has a key without a value");
        assert_eq!(err("12abc"), "t.edn:1: malformed number `12abc`");
        assert_eq!(err("0x-1"), "t.edn:1: malformed number `0x-1`");
        assert_eq!(err("::x"), "t.edn:1: malformed keyword `::x`");
        assert_eq!(err(r"\bogus"), "t.edn:1: unknown character `\\bogus`");
        assert_eq!(err("#?(:clj 1)"), "t.edn:1: unsupported dispatch `#?`");
        assert_eq!(err("##Foo"), "t.edn:1: unknown symbolic value `##Foo`");
        assert_eq!(err("#"), "t.edn:1: the file ends after `#`");
        assert_eq!(
            err("{:a\n\n[1 2"),
            "t.edn:3: the file ends before the closing `]` (in the form that begins on line 1)"
        );
        assert_eq!(
            err(&"[".repeat(DEPTH_MAX + 2)),
            format!("t.edn:1: forms nested deeper than {DEPTH_MAX} levels (no history nests so deep)")
        );
    }

    /// EDN values whose printed form ([`Edn`]'s `Display`) is valid EDN:
    /// strings without control characters, finite floats, symbols that are
    /// not `nil`, `true` or `false`.
    fn any_edn() -> impl proptest::strategy::Strategy<Value = Edn> {
        use proptest::prelude::*;
        let name = "[a-z][a-z0-9.*!?-]{0,6}(/[a-z][a-z0-9-]{0,4})?"
            .prop_filter("not a literal", |s| !matches!(s.as_str(), "nil" | "true" | "false"));
        let leaf = prop_oneof![
            Just(Edn::Nil),
            any::<bool>().prop_map(Edn::Bool),
            any::<i64>().prop_map(Edn::Int),
            "[1-9][0-9]{19,30}".prop_map(Edn::BigInt),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Edn::Float),
            (-1000i32..1000, 1u32..100).prop_map(|(a, b)| Edn::Decimal(format!("{a}.{b}"))),
            "[ -~\u{e9}\u{3bb}\n\t]{0,12}".prop_map(Edn::Str),
            "[a-zA-Z0-9\u{e9}]".prop_map(|c| Edn::Char(c.chars().next().unwrap())),
            name.clone().prop_map(Edn::Keyword),
            name.clone().prop_map(Edn::Symbol),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Edn::List),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Edn::Vector),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Edn::Set),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Edn::Map),
                ("[a-z][a-z.]{0,10}", inner).prop_map(|(t, v)| Edn::Tagged(t, Box::new(v))),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Reading what was printed gives the value back, whatever the
        /// blanks, comments and discards between the forms.
        #[test]
        fn reads_back_what_it_prints(forms in proptest::collection::vec(any_edn(), 1..4), sep in 0usize..4) {
            let separators = [" ", "\n", " , ;c\n", " #_ :gone "];
            let text: Vec<String> = forms.iter().map(Edn::to_string).collect();
            let text = text.join(separators[sep]);
            let read: Vec<Edn> = read_all(&text).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?
                .into_iter()
                .map(|(_, f)| f)
                .collect();
            proptest::prop_assert_eq!(read, forms, "{}", text);
        }
    }

    #[test]
    fn a_long_run_of_discards_costs_no_stack() {
        let n = 50_000;
        let text = format!("{}{}:kept", "#_ ".repeat(n), "1 ".repeat(n));
        assert_eq!(read_all(&text).unwrap(), vec![(1, kw("kept"))]);
        let text = format!("[{} 1]", "#_".repeat(n));
        assert_eq!(err(&text), "t.edn:1: unexpected `]`");
        assert_eq!(
            err(&"#_".repeat(n)),
            "t.edn:1: the file ends after `#_`, before the form it discards"
        );
        // Discards inside discards nest, and nesting is bounded.
        let e = err(&"#_[".repeat(100_000));
        assert!(e.contains("nested deeper than 256"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in ["[", "(", "{:a ", "#{", "#t ", "#_["] {
            let e = err(&open.repeat(100_000));
            assert!(
                e.starts_with("t.edn:1: forms nested deeper than 256 levels"),
                "{open}: {e}"
            );
        }
        let ok = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert_eq!(read_all(&ok).unwrap().len(), 1);
    }

    /// An endless source of zero bytes, like `/dev/zero`, counting what was
    /// taken from it.
    struct Zeros<'a>(&'a std::cell::Cell<usize>);

    impl Read for Zeros<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.0.set(self.0.get() + buf.len());
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_line_is_an_error_at_the_limit() {
        let taken = std::cell::Cell::new(0);
        let input = "{:a 1}\n\n".as_bytes().chain(Zeros(&taken));
        let limits = ReadLimits {
            max_line_bytes: 1 << 20,
        };
        let mut r = EdnReader::new(input, Path::new("zero")).with_limits(&limits);
        assert_eq!(r.next_form().unwrap().map(|f| f.0), Some(1));
        let e = r.next_form().unwrap_err();
        assert_eq!(
            e.to_string(),
            "zero:3: line 3 is longer than 1 MiB (the limit of one line)"
        );
        assert!(taken.get() < (1 << 20) + (1 << 17), "read {} bytes", taken.get());
        // Within a string, and on the first line, alike.
        let taken = std::cell::Cell::new(0);
        let input = "\"abc".as_bytes().chain(Zeros(&taken));
        let mut r = EdnReader::new(input, Path::new("zero")).with_limits(&limits);
        let e = r.next_form().unwrap_err();
        assert!(matches!(e, HistoryError::LineTooLong { line: 1, .. }), "{e}");
    }

    #[test]
    fn lines_up_to_the_limit_are_read() {
        // A limit of at least a block, where the check is exact.
        let max = BLOCK_BYTES + 10;
        let limits = ReadLimits { max_line_bytes: max };
        let text = format!("{}\n{}\n", "x".repeat(max), "y".repeat(max + 1));
        let mut r = EdnReader::new(text.as_bytes(), Path::new("t")).with_limits(&limits);
        assert_eq!(r.next_form().unwrap(), Some((1, Edn::Symbol("x".repeat(max)))));
        let e = r.next_form().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("t:2: line 2 is longer than {max} bytes (the limit of one line)")
        );
    }

    #[test]
    fn reads_across_buffer_boundaries() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("{{:index {i}, :value \"v{i}\"}} #_ :x\n"));
        }
        let forms = read_all(&text).unwrap();
        assert_eq!(forms.len(), 20_000);
        assert_eq!(forms[19_999].0, 20_000);
        assert_eq!(forms[19_999].1.get("value"), Some(&Edn::Str("v19999".into())));
    }
}

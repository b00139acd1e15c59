//! Importers of other tools' histories into faultline's [`History`], so every
//! checker reads Jepsen's and Porcupine's histories as it reads its own.
//!
//! - [`edn`]: Jepsen's `history.edn` (maps or records one per line, or one
//!   vector or list of them; `jepsen.independent` tuples become keys; values
//!   compare as Clojure compares them).
//! - [`porcupine`]: Porcupine's test logs, Jepsen's etcd logs and the kv logs.
//!
//! Each importer keeps the promises of the crate: nothing recorded is lost,
//! operations that never completed are pending, and every error names the
//! file, the line and the field. [`detect_format`] tells the formats apart
//! from their first lines so that a command line can take any of them;
//! [`read_any`] reads a file in the format given or detected, or the history
//! a store folder holds (Jepsen's `history.edn`, faultline's
//! `history.jsonl`). Every reader is held to [`ReadLimits`], so no input
//! makes one grow without end.

pub mod edn;
pub mod porcupine;

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::HistoryError;
use crate::history::History;
use crate::limits::{self, LineRead, ReadLimits};

/// A history file format faultline reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// faultline's own `history.jsonl`.
    Jsonl,
    /// Jepsen's `history.edn`.
    JepsenEdn,
    /// Jepsen's etcd logs as shipped with Porcupine.
    PorcupineEtcd,
    /// Porcupine's kv logs.
    PorcupineKv,
}

impl Format {
    /// Every format, in the order the command line lists them.
    pub const ALL: [Format; 4] = [
        Format::Jsonl,
        Format::JepsenEdn,
        Format::PorcupineEtcd,
        Format::PorcupineKv,
    ];

    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JepsenEdn => "jepsen-edn",
            Format::PorcupineEtcd => "porcupine-etcd",
            Format::PorcupineKv => "porcupine-kv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name the command line does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown history format {0:?}: expected jsonl, jepsen-edn, porcupine-etcd or porcupine-kv")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// How many lines [`detect_format`] looks at for an etcd log's marker when
/// the first line is log noise.
const DETECT_LINES_MAX: usize = 1000;

/// How much of each line [`detect_format`] keeps: the markers it looks for
/// sit at the start.
const DETECT_PREFIX_BYTES: usize = 4096;

/// The history files a store folder may hold, in the order looked for:
/// Jepsen's store writes `history.edn`, faultline's `history.jsonl`.
pub const STORE_HISTORY_FILES: [&str; 2] = ["history.edn", "history.jsonl"];

/// The history file `path` names: `path` itself, or for a folder (a Jepsen
/// or faultline store) the first of [`STORE_HISTORY_FILES`] it holds.
pub fn history_file(path: &Path) -> Result<PathBuf, HistoryError> {
    if !path.is_dir() {
        return Ok(path.to_owned());
    }
    STORE_HISTORY_FILES
        .iter()
        .map(|name| path.join(name))
        .find(|file| file.is_file())
        .ok_or_else(|| HistoryError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "a folder without history.edn or history.jsonl",
            ),
        })
}

/// Tells a history file's format from its first non-empty lines: `{"` is
/// JSONL; a `jepsen.util - ` line is an etcd log; `{:process` with `:key` is
/// a kv log; `{:`, `[`, `(`, `#` (a record such as `#jepsen.history.Op`) or
/// `;` is Jepsen EDN. An empty file is an etcd log if its name ends with `.log`
/// (Porcupine ships an empty one), and otherwise an empty JSONL history. A
/// store folder is detected by the history file it holds.
pub fn detect_format(path: &Path) -> Result<Format, HistoryError> {
    detect_format_with(path, &ReadLimits::default())
}

/// [`detect_format`] held to `limits`: a line past the limit is an error,
/// and only the start of each line is kept.
pub fn detect_format_with(path: &Path, limits: &ReadLimits) -> Result<Format, HistoryError> {
    let path = &history_file(path)?;
    let file = File::open(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut input = BufReader::new(file);
    let mut prefix = Vec::new();
    let mut first: Option<(usize, String)> = None;
    for line in 1..=DETECT_LINES_MAX {
        if limits::read_line_prefix(&mut input, &mut prefix, DETECT_PREFIX_BYTES, path, line, limits)? == LineRead::End
        {
            break;
        }
        let line_text = String::from_utf8_lossy(&prefix);
        let text = line_text.trim_start();
        if text.is_empty() {
            continue;
        }
        if let Some(format) = format_of_line(text) {
            return Ok(format);
        }
        first.get_or_insert_with(|| (line, text.chars().take(60).collect()));
    }
    match first {
        None if path.extension().is_some_and(|e| e == "log") => Ok(Format::PorcupineEtcd),
        None => Ok(Format::Jsonl),
        Some((line, text)) => Err(HistoryError::Parse {
            path: path.to_owned(),
            line,
            message: format!(
                "cannot tell the history format from {text:?}; name it (jsonl, jepsen-edn, porcupine-etcd or porcupine-kv)"
            ),
        }),
    }
}

/// The format a non-empty line announces, if any.
fn format_of_line(text: &str) -> Option<Format> {
    if text.starts_with("{\"") {
        Some(Format::Jsonl)
    } else if text.contains("jepsen.util - ") {
        Some(Format::PorcupineEtcd)
    } else if text.starts_with("{:process") && text.contains(":key") {
        Some(Format::PorcupineKv)
    } else if text.starts_with("{:") || text.starts_with(['[', '(', '#', ';']) {
        Some(Format::JepsenEdn)
    } else {
        None
    }
}

/// Reads the history at `path` (a file, or a store folder's history file)
/// in `format`, or in the format [`detect_format`] finds, held to `limits`;
/// returns the format read too.
///
/// A file with no operations is no error here: a command line that wants
/// operations tells "empty" from "read in the wrong format" by the format
/// returned and [`History::skipped_lines`].
pub fn read_any(path: &Path, format: Option<Format>, limits: &ReadLimits) -> Result<(History, Format), HistoryError> {
    let path = &history_file(path)?;
    let format = match format {
        Some(f) => f,
        None => detect_format_with(path, limits)?,
    };
    let history = match format {
        Format::Jsonl => crate::jsonl::read_history_file_with(path, limits)?,
        Format::JepsenEdn => {
            let options = edn::EdnOptions {
                limits: *limits,
                ..edn::EdnOptions::default()
            };
            edn::read_jepsen_edn(path, &options)?
        }
        Format::PorcupineEtcd => porcupine::read_etcd_log_with(path, limits)?,
        Format::PorcupineKv => porcupine::read_kv_log_with(path, limits)?,
    };
    Ok((history, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    fn detect(name: &str, text: &str) -> Result<Format, HistoryError> {
        let (_dir, path) = file(name, text);
        detect_format(&path)
    }

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        let e = "edn".parse::<Format>().unwrap_err().to_string();
        assert!(e.contains("\"edn\"") && e.contains("jepsen-edn"), "{e}");
    }

    #[test]
    fn detects_each_format() {
        let jsonl = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n";
        assert_eq!(detect("h.jsonl", &format!("\n{jsonl}")).unwrap(), Format::Jsonl);
        let etcd = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n";
        assert_eq!(detect("e.log", etcd).unwrap(), Format::PorcupineEtcd);
        assert_eq!(
            detect("e.log", &format!("starting\n{etcd}")).unwrap(),
            Format::PorcupineEtcd
        );
        let kv = "{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}\n";
        assert_eq!(detect("c.txt", kv).unwrap(), Format::PorcupineKv);
        for edn in [
            "{:process 0, :type :invoke, :f :read}",
            "{:type :invoke}",
            "[{:type :invoke}",
            "({:type :invoke}",
            "#jepsen.history.Op{:index 0}",
            "; a comment",
        ] {
            assert_eq!(detect("history.edn", edn).unwrap(), Format::JepsenEdn, "{edn}");
        }
        assert_eq!(detect("etcd_095.log", "").unwrap(), Format::PorcupineEtcd);
        assert_eq!(detect("history.jsonl", "\n\n").unwrap(), Format::Jsonl);
        let e = detect("x.txt", "\nhello\n").unwrap_err().to_string();
        assert!(
            e.contains("x.txt:2: cannot tell the history format from \"hello\""),
            "{e}"
        );
    }

    #[test]
    fn reads_any_format() {
        let (_d, path) = file("e.log", "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n");
        let (h, f) = read_any(&path, None, &ReadLimits::default()).unwrap();
        assert_eq!((h.ops.len(), f), (1, Format::PorcupineEtcd));
        let (_d, path) = file("h.edn", "{:type :invoke, :f :read, :process 0}\n");
        assert_eq!(
            read_any(&path, None, &ReadLimits::default()).unwrap().1,
            Format::JepsenEdn
        );
        let (_d, path) = file(
            "c.txt",
            "{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}\n",
        );
        assert_eq!(
            read_any(&path, None, &ReadLimits::default()).unwrap().1,
            Format::PorcupineKv
        );
        let (_d, path) = file(
            "h.jsonl",
            "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n",
        );
        assert_eq!(read_any(&path, None, &ReadLimits::default()).unwrap().1, Format::Jsonl);
        // A format given is used as given.
        let err = read_any(&path, Some(Format::JepsenEdn), &ReadLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("h.jsonl:1:"), "{err}");
        let missing = read_any(Path::new("/nonexistent/h.edn"), None, &ReadLimits::default()).unwrap_err();
        assert!(matches!(missing, HistoryError::Io { .. }), "{missing}");
    }
}

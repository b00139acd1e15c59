//! Porcupine's test histories (`testdata/porcupine/README.md`) as
//! faultline [`History`]s, so that faultline's checkers can be measured on
//! the same inputs as Porcupine and their verdicts compared.
//!
//! Two formats, neither with times or indices: both are synthesized from the
//! event's position (0, 1, 2, ...), which keeps the order and increases
//! strictly.
//!
//! - The etcd logs of Jepsen (`INFO  jepsen.util - 2 :invoke :cas [3 0]`), one
//!   register without a key, initially nil. The mapping follows the
//!   semantics the expected verdicts depend on: `:fail :cas [A B]` is a real
//!   observation (the value was not A), recorded as `fail` with the error
//!   [`CAS_MISMATCH`]; `:fail :read :timed-out` constrains nothing and
//!   becomes `info`; `:info` keeps the invocation's value as the event's
//!   value, since the completion's value is irrelevant. (A `:fail :write`,
//!   which the logs never hold, would be a plain `fail`: it did nothing.) Lines without the
//!   `jepsen.util - ` marker are log noise and skipped (and counted, in
//!   [`History::skipped_lines`]); a marked line with a
//!   malformed field is an error naming line and field. Lines of Jepsen's
//!   nemesis (`:nemesis :info :start nil`), which Porcupine's copies do not
//!   hold but other Jepsen logs do, become nemesis events. Fields are separated
//!   by tabs in most logs and by spaces in a few; both are read.
//! - The `kv` logs (`{:process 0, :type :invoke, :f :get, :key "5", :value
//!   nil}`), read with the EDN reader: `:get`, `:put` and `:append` become
//!   `read`, `write` and `append` on a string key.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::edn::edn_to_json;
use super::edn::reader::{Edn, EdnReader};
use crate::error::HistoryError;
use crate::event::{Event, EventType, Key, Process, F};
use crate::history::{History, HistoryBuilder};
use crate::limits::{self, LineRead, ReadLimits};

/// The error of a `:fail :cas`: the compare-and-set ran and its comparison
/// failed, so the register did not hold the expected value at that moment.
/// The linearizability checker treats exactly this error as an observation.
pub const CAS_MISMATCH: &str = "cas-mismatch";

/// The error given to etcd operations that timed out.
pub const TIMED_OUT: &str = "timed-out";

fn open(path: &Path) -> Result<BufReader<File>, HistoryError> {
    File::open(path).map(BufReader::new).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads an etcd log of Jepsen at `path`.
pub fn read_etcd_log(path: &Path) -> Result<History, HistoryError> {
    read_etcd_log_with(path, &ReadLimits::default())
}

/// Reads an etcd log of Jepsen at `path`, held to `limits`.
pub fn read_etcd_log_with(path: &Path, limits: &ReadLimits) -> Result<History, HistoryError> {
    parse_etcd_log_with(open(path)?, path, limits)
}

/// Reads an etcd log from any buffered input; `path` names it in errors.
pub fn parse_etcd_log<R: BufRead>(input: R, path: &Path) -> Result<History, HistoryError> {
    parse_etcd_log_with(input, path, &ReadLimits::default())
}

/// Reads an etcd log from any buffered input, held to `limits`.
pub fn parse_etcd_log_with<R: BufRead>(
    mut input: R,
    path: &Path,
    limits: &ReadLimits,
) -> Result<History, HistoryError> {
    const MARKER: &str = "jepsen.util - ";
    let mut builder = HistoryBuilder::default();
    let mut invoked: HashMap<u64, Value> = HashMap::new();
    let mut position = 0u64;
    let mut buf = Vec::new();
    let mut line = 0;
    while limits::read_line(&mut input, &mut buf, path, line + 1, limits)? == LineRead::Line {
        line += 1;
        // Log noise need not be UTF-8; only a marked line must be.
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        let Some((_, fields)) = text.split_once(MARKER) else {
            if !text.trim().is_empty() {
                builder.skipped_line();
            }
            continue;
        };
        let parse_error = |message| HistoryError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let event = match nemesis_event(fields, position) {
            Some(event) => event,
            None => EtcdLine::parse(fields).and_then(|entry| entry.into_event(position, &mut invoked)),
        }
        .map_err(parse_error)?;
        builder.push(event).map_err(|e| e.at_line(path, line))?;
        position += 1;
    }
    Ok(builder.finish())
}

/// The `type` field of an etcd log line.
fn etcd_type(kind: &str) -> Result<EventType, String> {
    Ok(match kind {
        ":invoke" => EventType::Invoke,
        ":ok" => EventType::Ok,
        ":fail" => EventType::Fail,
        ":info" => EventType::Info,
        _ => {
            return Err(format!(
                "field `type`: expected :invoke, :ok, :fail or :info, got {kind:?}"
            ))
        }
    })
}

/// A line of Jepsen's nemesis (`:nemesis :info :start nil`), if this is
/// one: an event of [`Process::Nemesis`], its value the logged text (null
/// for `nil`), since the nemesis logs values in no fixed shape.
fn nemesis_event(fields: &str, position: u64) -> Option<Result<Event, String>> {
    let (process, rest) = split_field(fields);
    if process != ":nemesis" {
        return None;
    }
    let (kind, rest) = split_field(rest);
    let (f, rest) = split_field(rest);
    let value = match rest.trim() {
        "nil" => Value::Null,
        text => Value::String(text.to_owned()),
    };
    let f = F::parse(f.strip_prefix(':').unwrap_or(f));
    Some(etcd_type(kind).map(|kind| Event::new(position, position, Process::Nemesis, kind, f, value)))
}

/// The value field of an etcd log line.
#[derive(Clone, Copy, Debug, PartialEq)]
enum EtcdValue {
    Nil,
    Int(i64),
    /// `[A B]`: the expected and the new value of a cas.
    Pair(i64, i64),
    TimedOut,
}

impl EtcdValue {
    fn parse(text: &str) -> Option<EtcdValue> {
        match text {
            "nil" => return Some(EtcdValue::Nil),
            ":timed-out" => return Some(EtcdValue::TimedOut),
            _ => {}
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let mut parts = inner.split_ascii_whitespace();
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return None;
            };
            return Some(EtcdValue::Pair(a.parse().ok()?, b.parse().ok()?));
        }
        text.parse().ok().map(EtcdValue::Int)
    }

    fn to_json(self) -> Value {
        match self {
            EtcdValue::Nil | EtcdValue::TimedOut => Value::Null,
            EtcdValue::Int(v) => Value::from(v),
            EtcdValue::Pair(a, b) => Value::from(vec![a, b]),
        }
    }
}

/// The fields of one marked line: `process type f value`.
#[derive(Debug)]
struct EtcdLine {
    process: u64,
    kind: EventType,
    f: F,
    value: EtcdValue,
}

/// Splits off the first whitespace-separated field.
fn split_field(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(|c: char| c.is_ascii_whitespace()).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

impl EtcdLine {
    fn parse(text: &str) -> Result<EtcdLine, String> {
        let (process, rest) = split_field(text);
        let (kind, rest) = split_field(rest);
        let (f, rest) = split_field(rest);
        let value = rest.trim();
        let process = process
            .parse()
            .map_err(|_| format!("field `process`: expected a non-negative integer or :nemesis, got {process:?}"))?;
        let kind = etcd_type(kind)?;
        let f = match f {
            ":read" => F::Read,
            ":write" => F::Write,
            ":cas" => F::Cas,
            _ => return Err(format!("field `f`: expected :read, :write or :cas, got {f:?}")),
        };
        let value = EtcdValue::parse(value)
            .ok_or_else(|| format!("field `value`: expected nil, an integer, [A B] or :timed-out, got {value:?}"))?;
        Ok(EtcdLine {
            process,
            kind,
            f,
            value,
        })
    }

    /// Whether the value has the shape this type of `f` needs. Only the
    /// values that mean something are checked: an invocation's argument, an
    /// ok's result and a failed cas's pair.
    fn value_fits(&self) -> bool {
        use EtcdValue::*;
        match (self.kind, &self.f, self.value) {
            (EventType::Invoke, F::Read, v) => v == Nil,
            (EventType::Ok, F::Read, v) => matches!(v, Nil | Int(_)),
            (EventType::Invoke | EventType::Ok, F::Write, v) => matches!(v, Int(_)),
            (EventType::Invoke | EventType::Ok | EventType::Fail, F::Cas, v) => matches!(v, Pair(..)),
            _ => true,
        }
    }

    /// The event, given its position and the values of the open invocations.
    fn into_event(self, position: u64, invoked: &mut HashMap<u64, Value>) -> Result<Event, String> {
        if !self.value_fits() {
            return Err(format!(
                "field `value`: {:?} is not a value of `:{} :{}`",
                self.value,
                self.kind.as_str(),
                self.f
            ));
        }
        let process = Process::Client(self.process);
        let value = self.value.to_json();
        let (kind, value, error) = match (self.kind, &self.f) {
            (EventType::Invoke, _) => {
                invoked.insert(self.process, value.clone());
                (EventType::Invoke, value, None)
            }
            (EventType::Ok, _) => (EventType::Ok, value, None),
            (EventType::Fail, F::Cas) => (EventType::Fail, value, Some(CAS_MISMATCH)),
            // A read that failed constrains nothing: unknown, like info.
            (EventType::Fail, F::Read) | (EventType::Info, _) => {
                let input = invoked.get(&self.process).cloned().unwrap_or(Value::Null);
                (EventType::Info, input, timed_out(self.value))
            }
            (EventType::Fail, _) => (EventType::Fail, value, timed_out(self.value)),
        };
        let mut event = Event::new(position, position, process, kind, self.f, value);
        event.error = error.map(str::to_owned);
        Ok(event)
    }
}

fn timed_out(v: EtcdValue) -> Option<&'static str> {
    (v == EtcdValue::TimedOut).then_some(TIMED_OUT)
}

/// Reads a kv log of Porcupine at `path`.
pub fn read_kv_log(path: &Path) -> Result<History, HistoryError> {
    read_kv_log_with(path, &ReadLimits::default())
}

/// Reads a kv log of Porcupine at `path`, held to `limits`.
pub fn read_kv_log_with(path: &Path, limits: &ReadLimits) -> Result<History, HistoryError> {
    parse_kv_log_with(open(path)?, path, limits)
}

/// Reads a kv log from any buffered input; `path` names it in errors.
pub fn parse_kv_log<R: BufRead>(input: R, path: &Path) -> Result<History, HistoryError> {
    parse_kv_log_with(input, path, &ReadLimits::default())
}

/// Reads a kv log from any buffered input, held to `limits`.
pub fn parse_kv_log_with<R: BufRead>(input: R, path: &Path, limits: &ReadLimits) -> Result<History, HistoryError> {
    let mut reader = EdnReader::new(input, path).with_limits(limits);
    let mut builder = HistoryBuilder::default();
    let mut position = 0u64;
    while let Some((line, form)) = reader.next_form()? {
        let event = kv_event(form, position).map_err(|message| HistoryError::Parse {
            path: path.to_owned(),
            line,
            message,
        })?;
        builder.push(event).map_err(|e| e.at_line(path, line))?;
        position += 1;
    }
    Ok(builder.finish())
}

/// One kv map as an event; the error names the field.
fn kv_event(form: Edn, position: u64) -> Result<Event, String> {
    let Edn::Map(entries) = form else {
        return Err(format!(
            "expected a map like {{:process 0, :type :invoke, ...}}, got {form}"
        ));
    };
    let mut event = Event::new(
        position,
        position,
        Process::Client(0),
        EventType::Invoke,
        F::Read,
        Value::Null,
    );
    let (mut process, mut kind, mut f, mut key) = (None, None, None, None);
    for (k, v) in entries {
        let Edn::Keyword(name) = k else {
            return Err(format!("expected keyword keys, got {k}"));
        };
        let field_error = |what: &str| format!("field `:{name}`: expected {what}, got {v}");
        match name.as_str() {
            "process" => process = Some(kv_process(&v).ok_or_else(|| field_error("a non-negative integer"))?),
            "type" => kind = Some(kv_type(&v).ok_or_else(|| field_error(":invoke, :ok, :fail or :info"))?),
            "f" => f = Some(kv_f(&v).ok_or_else(|| field_error(":get, :put or :append"))?),
            "key" => key = Some(kv_key(&v).ok_or_else(|| field_error("a string"))?),
            "value" => match v {
                Edn::Nil | Edn::Str(_) => event.value = edn_to_json(&v),
                _ => return Err(field_error("a string or nil")),
            },
            _ => {
                event.extra.insert(name.clone(), edn_to_json(&v));
            }
        }
    }
    event.process = Process::Client(process.ok_or("missing field `:process`")?);
    event.kind = kind.ok_or("missing field `:type`")?;
    event.f = f.ok_or("missing field `:f`")?;
    event.key = Some(key.ok_or("missing field `:key`")?);
    Ok(event)
}

fn kv_process(v: &Edn) -> Option<u64> {
    match v {
        Edn::Int(p) => u64::try_from(*p).ok(),
        _ => None,
    }
}

fn kv_type(v: &Edn) -> Option<EventType> {
    let Edn::Keyword(k) = v else { return None };
    Some(match k.as_str() {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        _ => return None,
    })
}

fn kv_f(v: &Edn) -> Option<F> {
    let Edn::Keyword(k) = v else { return None };
    Some(match k.as_str() {
        "get" => F::Read,
        "put" => F::Write,
        "append" => F::Append,
        _ => return None,
    })
}

fn kv_key(v: &Edn) -> Option<Key> {
    match v {
        Edn::Str(s) => Some(Key::Str(s.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use serde_json::json;

    fn etcd(text: &str) -> Result<History, HistoryError> {
        parse_etcd_log(text.as_bytes(), Path::new("etcd.log"))
    }

    fn etcd_err(text: &str) -> String {
        etcd(text).unwrap_err().to_string()
    }

    fn kv(text: &str) -> Result<History, HistoryError> {
        parse_kv_log(text.as_bytes(), Path::new("c01.txt"))
    }

    fn kv_err(text: &str) -> String {
        kv(text).unwrap_err().to_string()
    }

    const ETCD: &str = "\
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:invoke\t:write\t4
some unrelated log line
INFO  jepsen.util - 2   :invoke :cas    [4 0]
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1\t:info\t:write\t:timed-out
INFO  jepsen.util - 2\t:fail\t:cas\t[4 0]
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:fail\t:read\t:timed-out
INFO  jepsen.util - 4\t:invoke\t:cas\t[0 1]
INFO  jepsen.util - 4\t:ok\t:cas\t[0 1]
INFO  jepsen.util - 5\t:invoke\t:read\tnil
INFO  jepsen.util - 5\t:ok\t:read\t1
INFO  jepsen.util - 6\t:invoke\t:cas\t[1 2]
";

    #[test]
    fn maps_every_etcd_line_kind() {
        let h = etcd(ETCD).unwrap();
        let summary: Vec<(F, Outcome, Value, Value, Option<&str>)> = h
            .ops
            .iter()
            .map(|o| {
                (
                    o.f.clone(),
                    o.outcome,
                    o.input.clone(),
                    o.output.clone(),
                    o.error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (F::Read, Outcome::Ok, json!(null), json!(null), None),
                (F::Write, Outcome::Info, json!(4), json!(null), Some(TIMED_OUT)),
                (F::Cas, Outcome::Fail, json!([4, 0]), json!(null), Some(CAS_MISMATCH)),
                (F::Read, Outcome::Info, json!(null), json!(null), Some(TIMED_OUT)),
                (F::Cas, Outcome::Ok, json!([0, 1]), json!([0, 1]), None),
                (F::Read, Outcome::Ok, json!(null), json!(1), None),
                (F::Cas, Outcome::Pending, json!([1, 2]), json!(null), None),
            ]
        );
        assert!(h.keys.is_empty() && h.ops.iter().all(|o| o.key.is_none()));
        // Positions stand for index and time: strictly increasing.
        assert_eq!(h.ops[2].invoke_index, 2);
        assert_eq!(h.ops[2].complete_time, Some(5));
    }

    #[test]
    fn an_info_event_keeps_the_invocation_value() {
        let text = "INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]\nINFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n";
        let mut events = Vec::new();
        let mut invoked = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let (_, fields) = l.split_once("jepsen.util - ").unwrap();
            events.push(
                EtcdLine::parse(fields)
                    .unwrap()
                    .into_event(i as u64, &mut invoked)
                    .unwrap(),
            );
        }
        assert_eq!(events[1].kind, EventType::Info);
        assert_eq!(events[1].value, json!([3, 4]));
    }

    #[test]
    fn nemesis_lines_become_nemesis_events() {
        let h = etcd(
            "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
             INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
             INFO  jepsen.util - :nemesis\t:info\t:start\t[:isolated {\"n1\" #{\"n2\"}}]\n",
        )
        .unwrap();
        assert_eq!(h.ops.len(), 1);
        let nemesis: Vec<_> = h
            .nemesis
            .iter()
            .map(|e| (e.index, e.f.to_string(), e.value.clone()))
            .collect();
        assert_eq!(
            nemesis,
            vec![
                (0, "start".to_owned(), json!(null)),
                (2, "start".to_owned(), json!("[:isolated {\"n1\" #{\"n2\"}}]")),
            ]
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - :nemesis\t:begin\t:start\tnil\n"),
            "etcd.log:1: field `type`: expected :invoke, :ok, :fail or :info, got \":begin\""
        );
    }

    #[test]
    fn an_empty_etcd_log_is_an_empty_history() {
        let h = etcd("").unwrap();
        assert!(h.ops.is_empty() && h.nemesis.is_empty());
        assert_eq!(h.skipped_lines, 0);
    }

    #[test]
    fn noise_lines_are_counted_so_a_wrong_format_shows() {
        let h = etcd("starting\n\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\r\nbye\n").unwrap();
        assert_eq!((h.ops.len(), h.skipped_lines), (1, 2));
        // A JSONL history read as an etcd log: nothing matched, all skipped.
        let jsonl = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n".repeat(3);
        let h = etcd(&jsonl).unwrap();
        assert_eq!((h.ops.len(), h.skipped_lines), (0, 3));
    }

    #[test]
    fn an_overlong_line_is_an_error_naming_it() {
        let limits = ReadLimits { max_line_bytes: 64 };
        let text = format!("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n{}\n", "x".repeat(65));
        let e = parse_etcd_log_with(text.as_bytes(), Path::new("etcd.log"), &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "etcd.log:2: line 2 is longer than 64 bytes (the limit of one line)"
        );
        let text = format!("{}\n", "y".repeat(64));
        let h = parse_etcd_log_with(text.as_bytes(), Path::new("etcd.log"), &limits).unwrap();
        assert_eq!(h.skipped_lines, 1);
    }

    #[test]
    fn etcd_errors_name_file_line_and_field() {
        let ok = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n";
        assert_eq!(
            etcd_err(&format!("{ok}INFO  jepsen.util - x\t:ok\t:read\tnil\n")),
            "etcd.log:2: field `process`: expected a non-negative integer or :nemesis, got \"x\""
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:done\t:read\tnil\n"),
            "etcd.log:1: field `type`: expected :invoke, :ok, :fail or :info, got \":done\""
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:invoke\t:append\t1\n"),
            "etcd.log:1: field `f`: expected :read, :write or :cas, got \":append\""
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:invoke\t:cas\t[1 x]\n"),
            "etcd.log:1: field `value`: expected nil, an integer, [A B] or :timed-out, got \"[1 x]\""
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:invoke\t:read\n"),
            "etcd.log:1: field `value`: expected nil, an integer, [A B] or :timed-out, got \"\""
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:invoke\t:write\tnil\n"),
            "etcd.log:1: field `value`: Nil is not a value of `:invoke :write`"
        );
        assert_eq!(
            etcd_err(&format!("{ok}{ok}")),
            "etcd.log:2: event index 1: process 0 invokes while its operation of index 0 is still in flight"
        );
        assert_eq!(
            etcd_err("INFO  jepsen.util - 0\t:ok\t:read\t1\n"),
            "etcd.log:1: event index 0: process 0 completes an operation it never invoked"
        );
    }

    #[test]
    fn maps_kv_operations() {
        let h = kv("{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}\n\
                    {:process 1, :type :invoke, :f :append, :key \"0\", :value \"x 1 0 y\"}\n\
                    {:process 0, :type :ok, :f :get, :key \"5\", :value \"\"}\n\
                    {:process 2, :type :invoke, :f :put, :key \"5\", :value \"a\"}\n\
                    {:process 1, :type :ok, :f :append, :key \"0\", :value \"x 1 0 y\"}\n")
        .unwrap();
        assert_eq!(h.ops.len(), 3);
        assert_eq!(h.keys, vec![Key::Str("5".into()), Key::Str("0".into())]);
        assert_eq!((h.ops[0].f.clone(), h.ops[0].output.clone()), (F::Read, json!("")));
        assert_eq!((h.ops[1].f.clone(), h.ops[1].outcome), (F::Append, Outcome::Ok));
        assert_eq!((h.ops[2].f.clone(), h.ops[2].outcome), (F::Write, Outcome::Pending));
        assert_eq!(h.ops[2].input, json!("a"));
        assert_eq!(h.ops[1].complete_time, Some(4));
    }

    #[test]
    fn kv_errors_name_file_line_and_field() {
        let line =
            |fields: &str| format!("{{:process 0, :type :invoke, :f :get, :key \"5\", :value nil}}\n{{{fields}}}\n");
        assert_eq!(
            kv_err(&line(":process -1, :type :ok, :f :get, :key \"5\", :value nil")),
            "c01.txt:2: field `:process`: expected a non-negative integer, got -1"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :done, :f :get, :key \"5\", :value nil")),
            "c01.txt:2: field `:type`: expected :invoke, :ok, :fail or :info, got :done"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :f :cas, :key \"5\", :value nil")),
            "c01.txt:2: field `:f`: expected :get, :put or :append, got :cas"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :f :get, :key 5, :value nil")),
            "c01.txt:2: field `:key`: expected a string, got 5"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :f :get, :key \"5\", :value 7")),
            "c01.txt:2: field `:value`: expected a string or nil, got 7"
        );
        assert_eq!(
            kv_err(&line(":type :ok, :f :get, :key \"5\", :value nil")),
            "c01.txt:2: missing field `:process`"
        );
        assert_eq!(
            kv_err(&line(":process 0, :f :get, :key \"5\", :value nil")),
            "c01.txt:2: missing field `:type`"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :key \"5\"")),
            "c01.txt:2: missing field `:f`"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :f :get")),
            "c01.txt:2: missing field `:key`"
        );
        assert_eq!(
            kv_err("[1]\n"),
            "c01.txt:1: expected a map like {:process 0, :type :invoke, ...}, got [1]"
        );
        assert_eq!(kv_err("{1 2}\n"), "c01.txt:1: expected keyword keys, got 1");
        assert_eq!(
            kv_err("{:process 0\n"),
            "c01.txt:2: the file ends before the closing `}` (in the form that begins on line 1)"
        );
        assert_eq!(
            kv_err(&line(":process 0, :type :ok, :f :put, :key \"5\", :value nil")),
            "c01.txt:2: event index 1: completion `write` pairs with an invocation of `read`"
        );
    }
}

//! Jepsen's `history.edn` as a faultline [`History`].
//!
//! Jepsen's store writes one operation map per line (`{:type :invoke, :f
//! :read, :value nil, :process 0, :time 12, :index 0}`), since 0.3 as
//! records (`#jepsen.history.Op{...}`); other tools write the whole history
//! as one vector `[...]` or list `(...)` of them. This importer reads all of
//! these with a streaming EDN reader ([`reader`], bounded on any input: see
//! its doc) and promises:
//!
//! - Every event keeps what Jepsen recorded. `:type`, `:f`, `:process`,
//!   `:time`, `:index`, `:value`, `:error`, `:node` (and `:key`, `:final` if
//!   present) map to the fields of the same name; anything else goes to
//!   [`Event::extra`]. `:f`'s name is the function (`:read` is `read`,
//!   `:acquire` is `acquire`); `:process` is an integer or `:nemesis`.
//! - Values compare as Jepsen compares them (Clojure's `=`), since checkers
//!   compare `serde_json::Value`s with `==`. The encoding:
//!
//! | EDN | JSON |
//! |---|---|
//! | `nil`, `true`, `false` | `null`, `true`, `false` |
//! | integer inside `i64`/`u64` (`7`, `7N`) | number `7` |
//! | integer outside them (`18446744073709551616`, with or without `N`) | `{"$int": "18446744073709551616"}` (decimal, optional leading `-`; JSONL numbers past 64 bits read the same) |
//! | float (`1.5`, `1.5M`, ratio `1/2`) | number `1.5` |
//! | `##Inf`, `##-Inf`, `##NaN` | `{"$float": "Inf"}`, `{"$float": "-Inf"}`, `{"$float": "NaN"}` |
//! | string `"a"` | string `"a"` |
//! | keyword `:a`, `:ns/a` | `{"$keyword": "a"}`, `{"$keyword": "ns/a"}` |
//! | symbol `a` | `{"$symbol": "a"}` |
//! | character `\a` | `{"$char": "a"}` |
//! | list `(1 2)`, vector `[1 2]` | array `[1, 2]` (Clojure's `=` calls them equal) |
//! | set `#{2 1}` | `{"$set": [1, 2]}`: no duplicates, sorted by JSON text, so order does not matter |
//! | map with only string keys `{"a" 1}` | object `{"a": 1}` (order does not matter) |
//! | any other map `{:a 1, 2 3}` | `{"$map": [[2, 3], [{"$keyword": "a"}, 1]]}`: pairs sorted by the key's JSON text |
//! | tagged literal `#inst "2026-01-01"`, `#uuid "..."`, `#my.Rec{...}` | `{"$tag": ["inst", "2026-01-01"]}`: the tag and its value, encoded |
//! | `:f :txn` micro-op `[:append 1 2]`, `[:r 1 [2]]`, `[:read :x nil]`, `[:write :y 2]` | `["append", 1, 2]`, `["r", 1, [2]]`, `["read", "x", null]`, `["write", "y", 2]`: the function's name as written, the key by the key rule, the value by this table |
//! | key (`:key`, a `jepsen.independent` tuple's first element, a micro-op's key) | an integer stays an integer; a keyword, symbol or string becomes its name as a string |
//!
//!   So `:a`, `a` and `"a"` are three different values, `#{1 2}` equals
//!   `#{2 1}` but not `[1 2]`, and 2^64 differs from 2^64+1. A record
//!   (`#jepsen.history.Op{...}`) at the top level is the operation map it
//!   tags; `:error` becomes text (a keyword's or string's name, or the EDN
//!   text of anything else).
//! - `jepsen.independent` histories, whose client values are `[key value]`
//!   tuples, become keyed events (`key`, `value`), so checkers decompose them
//!   by key as they do faultline's own histories. [`EdnOptions::independent`]
//!   forces the choice; left `None`, it is detected.
//! - A missing `:index` or `:time` is replaced by the event's position, which
//!   increases strictly, so the order of events is never lost.
//! - Every error names the file, the line where the operation's form begins
//!   and the field at fault.

pub mod reader;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Number, Value};

use self::reader::{Edn, EdnReader};
use crate::error::HistoryError;
use crate::event::{Event, EventType, Key, Process, F};
use crate::history::{History, HistoryBuilder};
use crate::limits::ReadLimits;
use crate::value::{self, tagged};

/// The key of a keyword: `:a` is `{"$keyword": "a"}`.
pub const KEYWORD: &str = "$keyword";
/// The key of a symbol: `a` is `{"$symbol": "a"}`.
pub const SYMBOL: &str = "$symbol";
/// The key of a character: `\a` is `{"$char": "a"}`.
pub const CHAR: &str = "$char";
/// The key of a tagged literal: `#inst "2026"` is `{"$tag": ["inst", "2026"]}`.
pub const TAG: &str = "$tag";
/// The key of a float JSON cannot hold: `##Inf` is `{"$float": "Inf"}`.
pub const FLOAT: &str = "$float";

/// How to read a Jepsen history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdnOptions {
    /// Whether client values are `jepsen.independent` `[key value]` tuples.
    /// `None` detects it: a history is independent when it has a client
    /// event and every client event's value (read invocations included, as
    /// `[k nil]`) is a two-element vector whose first element can be a key
    /// (an integer, string or keyword) and, for a cas, whose second is the
    /// `[old new]` pair. A plain `nil` read invocation says it is not; so do
    /// a txn's vector of micro-ops and a plain cas `[1 2]`.
    pub independent: Option<bool>,
    /// How long a line may be.
    pub limits: ReadLimits,
}

/// Reads the Jepsen `history.edn` at `path`.
pub fn read_jepsen_edn(path: &Path, options: &EdnOptions) -> Result<History, HistoryError> {
    let file = File::open(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    // No BufReader: the EDN reader reads in large blocks of its own.
    parse_jepsen_edn(file, path, options)
}

/// Reads a Jepsen history from any seekable input (a file, a
/// `Cursor<&[u8]>`); `path` is used in error messages.
///
/// Events stream into the history as they are read, so memory holds the
/// operations, not the text or the events. Detecting `jepsen.independent`
/// without holding every event is optimistic: the first client event's value
/// decides, and if a later client event is no tuple after all (so the history
/// is not independent), the input is read again from the start as plain.
pub fn parse_jepsen_edn<R: Read + Seek>(
    mut input: R,
    path: &Path,
    options: &EdnOptions,
) -> Result<History, HistoryError> {
    if let Some(history) = read_ops(&mut input, path, options)? {
        return Ok(history);
    }
    input.seek(SeekFrom::Start(0)).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    let plain = EdnOptions {
        independent: Some(false),
        ..options.clone()
    };
    let history = read_ops(&mut input, path, &plain)?;
    Ok(history.expect("a plain reading never restarts"))
}

/// Reads every operation into a history; `None` when `independent` was to
/// be detected and a client event contradicted the guess of independence.
fn read_ops<R: Read>(input: R, path: &Path, options: &EdnOptions) -> Result<Option<History>, HistoryError> {
    let independent = options.independent;
    let mut forms = OpForms {
        reader: EdnReader::new(input, path).with_limits(&options.limits),
        closer: None,
    };
    let mut split = independent;
    let mut builder = HistoryBuilder::default();
    let mut position = 0u64;
    while let Some((line, form)) = forms.next()? {
        let parse_error = |message| HistoryError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let (mut event, value) = event_from_form(form, position).map_err(parse_error)?;
        let value = if event.process == Process::Nemesis {
            value
        } else {
            let tuple = looks_like_tuple(&event.f, &value);
            match *split.get_or_insert(tuple) {
                false => value,
                true if !tuple && independent.is_none() => return Ok(None),
                true => {
                    let (key, value) = split_tuple(value).map_err(|m| parse_error(format!("field `:value`: {m}")))?;
                    event.key = Some(key);
                    value
                }
            }
        };
        event.value = op_value(&event.f, &value);
        builder.push(event).map_err(|e| e.at_line(path, line))?;
        position += 1;
    }
    Ok(Some(builder.finish()))
}

/// The operation forms of a history, one per line (Jepsen's store writes
/// that) or inside a top-level vector `[{...} {...}]` or list `({...}
/// {...})`; either way each comes with the line it begins on. The top-level
/// collection is streamed, never held.
struct OpForms<R> {
    reader: EdnReader<R>,
    /// The byte that closes the top-level collection being read, if any.
    closer: Option<u8>,
}

impl<R: Read> OpForms<R> {
    fn next(&mut self) -> Result<Option<(usize, Edn)>, HistoryError> {
        loop {
            let next = self.reader.skip_blank()?;
            match (self.closer, next) {
                (Some(close), Some(b)) if b == close => {
                    self.reader.eat(close)?;
                    self.closer = None;
                }
                (Some(close), None) => {
                    return Err(self.reader.error(format!(
                        "the file ends before the `{}` that closes the history",
                        close as char
                    )))
                }
                (None, Some(open @ (b'[' | b'('))) => {
                    self.reader.eat(open)?;
                    self.closer = Some(if open == b'[' { b']' } else { b')' });
                }
                _ => return self.reader.next_form(),
            }
        }
    }
}

/// Builds an event from one operation form; the error names the field.
fn event_from_form(form: Edn, position: u64) -> Result<(Event, Edn), String> {
    // A record (`#jepsen.history.Op{...}`) is its map.
    let form = match form {
        Edn::Tagged(_, inner) if matches!(*inner, Edn::Map(_)) => *inner,
        other => other,
    };
    let Edn::Map(entries) = form else {
        return Err(format!("expected an operation map, got {}", shorten(&form)));
    };
    let mut fields = OpFields::default();
    let mut event = Event::new(
        position,
        position,
        Process::Nemesis,
        EventType::Invoke,
        F::Read,
        Value::Null,
    );
    for (k, v) in entries {
        let name = match k {
            Edn::Keyword(name) => name,
            other => other.to_string(),
        };
        fields
            .set(&name, v, &mut event)
            .map_err(|m| format!("field `:{name}`: {m}"))?;
    }
    event.kind = fields.kind.ok_or("missing field `:type`")?;
    event.f = fields.f.ok_or("missing field `:f`")?;
    event.process = fields.process.ok_or("missing field `:process`")?;
    event.index = fields.index.unwrap_or(position);
    event.time = fields.time.unwrap_or(position);
    Ok((event, fields.value))
}

/// The required fields of an operation, gathered as they come.
#[derive(Default)]
struct OpFields {
    kind: Option<EventType>,
    f: Option<F>,
    process: Option<Process>,
    index: Option<u64>,
    time: Option<u64>,
    value: Edn,
}

impl OpFields {
    /// Takes one field of the operation map; the error says what was expected.
    fn set(&mut self, name: &str, v: Edn, event: &mut Event) -> Result<(), String> {
        match name {
            "type" => self.kind = Some(event_type(&v)?),
            "f" => self.f = Some(F::parse(name_of(&v).ok_or_else(|| expected("a keyword", &v))?)),
            "process" => self.process = Some(process(&v)?),
            "index" => self.index = Some(non_negative(&v)?),
            "time" => self.time = Some(non_negative(&v)?),
            "value" => self.value = v,
            "error" => event.error = error_text(v),
            "node" => event.node = optional_name(&v)?,
            "key" => event.key = optional_key(&v)?,
            "final" => event.is_final = matches!(v, Edn::Bool(true)),
            other => {
                event.extra.insert(other.to_owned(), edn_to_json(&v));
            }
        }
        Ok(())
    }
}

/// The text of a keyword, symbol or string.
fn name_of(v: &Edn) -> Option<&str> {
    match v {
        Edn::Keyword(s) | Edn::Symbol(s) | Edn::Str(s) => Some(s),
        _ => None,
    }
}

fn expected(what: &str, got: &Edn) -> String {
    format!("expected {what}, got {}", shorten(got))
}

/// A form printed for an error message, cut short if long.
fn shorten(v: &Edn) -> String {
    const LEN_MAX: usize = 80;
    let text = v.to_string();
    match text.char_indices().nth(LEN_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn event_type(v: &Edn) -> Result<EventType, String> {
    let t = match v {
        Edn::Keyword(k) => match k.as_str() {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        },
        _ => None,
    };
    t.ok_or_else(|| expected(":invoke, :ok, :fail or :info", v))
}

fn process(v: &Edn) -> Result<Process, String> {
    match v {
        Edn::Int(p) if *p >= 0 => Ok(Process::Client(*p as u64)),
        Edn::Keyword(k) if k == "nemesis" => Ok(Process::Nemesis),
        _ => Err(expected("an integer or :nemesis", v)),
    }
}

fn non_negative(v: &Edn) -> Result<u64, String> {
    match v {
        Edn::Int(i) if *i >= 0 => Ok(*i as u64),
        _ => Err(expected("a non-negative integer", v)),
    }
}

/// Jepsen's errors are keywords, strings or structured data; all become text.
fn error_text(v: Edn) -> Option<String> {
    match v {
        Edn::Nil => None,
        Edn::Str(s) | Edn::Keyword(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn optional_name(v: &Edn) -> Result<Option<String>, String> {
    match v {
        Edn::Nil => Ok(None),
        _ => name_of(v)
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| expected("a string or keyword", v)),
    }
}

fn optional_key(v: &Edn) -> Result<Option<Key>, String> {
    match v {
        Edn::Nil => Ok(None),
        _ => key_of(v)
            .map(Some)
            .ok_or_else(|| expected("an integer, a string or a keyword", v)),
    }
}

/// The key a value names: an integer (of `i64`) stays an integer; a
/// keyword, symbol or string becomes its name, so `:x`, `x` and `"x"` are
/// one key (Jepsen's keys are one kind per test).
fn key_of(v: &Edn) -> Option<Key> {
    match v {
        Edn::Int(i) => Some(Key::Int(*i)),
        Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Some(Key::Str(s.clone())),
        _ => None,
    }
}

/// `[key value]` into its parts.
fn split_tuple(v: Edn) -> Result<(Key, Edn), String> {
    const WANTED: &str = "a jepsen.independent [key value] tuple with an integer, string or keyword key";
    let v = match v {
        Edn::List(items) => Edn::Vector(items),
        other => other,
    };
    match v {
        Edn::Vector(mut items) if items.len() == 2 => match key_of(&items[0]) {
            Some(key) => Ok((key, items.pop().unwrap_or_default())),
            None => Err(expected(WANTED, &Edn::Vector(items))),
        },
        other => Err(expected(WANTED, &other)),
    }
}

/// `[k v]` with a key first; for a cas, `v` must itself be the `[old new]`
/// pair, which tells `[k [1 2]]` from a plain cas `[1 2]`.
fn looks_like_tuple(f: &F, value: &Edn) -> bool {
    let (Edn::Vector(items) | Edn::List(items)) = value else {
        return false;
    };
    let [k, v] = items.as_slice() else { return false };
    key_of(k).is_some() && (*f != F::Cas || matches!(v, Edn::Vector(pair) | Edn::List(pair) if pair.len() == 2))
}

/// An operation's value as JSON: a txn's micro-ops by [`micro_op`],
/// anything else by [`edn_to_json`].
fn op_value(f: &F, v: &Edn) -> Value {
    match (f, v) {
        (F::Txn, Edn::Vector(ops) | Edn::List(ops)) => Value::Array(ops.iter().map(micro_op).collect()),
        _ => edn_to_json(v),
    }
}

/// A micro-op `[:append k v]`, `[:r k v]`, `[:write :y 2]` as `["append",
/// k, v]`: the function's name as written, the key by the key rule of
/// [`key_of`] (an integer, else the name as a string), the value by
/// [`edn_to_json`]. Faultline's own txn histories hold exactly this shape.
/// A form of another shape is a value like any other.
fn micro_op(v: &Edn) -> Value {
    if let Edn::Vector(items) | Edn::List(items) = v {
        if let [f, k, value] = items.as_slice() {
            if let Some(name) = name_of(f).filter(|_| !matches!(f, Edn::Str(_))) {
                let key = match key_of(k) {
                    Some(Key::Int(i)) => Value::from(i),
                    Some(Key::Str(s)) => Value::String(s),
                    None => edn_to_json(k),
                };
                return Value::Array(vec![Value::String(name.to_owned()), key, edn_to_json(value)]);
            }
        }
    }
    edn_to_json(v)
}

/// EDN as JSON, by the table of the module doc: values equal in Clojure
/// (`=`) are equal JSON, and values Clojure tells apart stay apart.
pub fn edn_to_json(v: &Edn) -> Value {
    match v {
        Edn::Nil => Value::Null,
        Edn::Bool(b) => Value::Bool(*b),
        Edn::Int(i) => Value::from(*i),
        Edn::BigInt(digits) => value::integer(digits).unwrap_or_else(|| Value::String(digits.clone())),
        Edn::Float(x) => float(*x),
        Edn::Decimal(text) => match text.parse::<f64>() {
            Ok(x) => float(x),
            Err(_) => tagged(FLOAT, Value::String(text.clone())),
        },
        Edn::Str(s) => Value::String(s.clone()),
        Edn::Keyword(s) => tagged(KEYWORD, Value::String(s.clone())),
        Edn::Symbol(s) => tagged(SYMBOL, Value::String(s.clone())),
        Edn::Char(c) => tagged(CHAR, Value::String(c.to_string())),
        Edn::List(items) | Edn::Vector(items) => Value::Array(items.iter().map(edn_to_json).collect()),
        Edn::Set(items) => value::set(items.iter().map(edn_to_json).collect()),
        Edn::Map(entries) => value::map(entries.iter().map(|(k, v)| (edn_to_json(k), edn_to_json(v))).collect()),
        Edn::Tagged(tag, inner) => tagged(TAG, Value::Array(vec![Value::String(tag.clone()), edn_to_json(inner)])),
    }
}

/// A float as a JSON number, or `{"$float": "Inf" | "-Inf" | "NaN"}`.
fn float(x: f64) -> Value {
    match Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => tagged(FLOAT, Value::String("NaN".into())),
        None if x > 0.0 => tagged(FLOAT, Value::String("Inf".into())),
        None => tagged(FLOAT, Value::String("-Inf".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use serde_json::json;

    fn parse(text: &str, independent: Option<bool>) -> Result<History, HistoryError> {
        parse_jepsen_edn(
            std::io::Cursor::new(text.as_bytes()),
            Path::new("history.edn"),
            &EdnOptions {
                independent,
                ..EdnOptions::default()
            },
        )
    }

    fn err(text: &str) -> String {
        parse(text, None).unwrap_err().to_string()
    }

    #[test]
    fn reads_one_operation_per_line() {
        let h = parse(
            "{:type :invoke, :f :write, :value 3, :process 0, :time 10, :index 0}\n\
             {:type :invoke, :f :read, :value nil, :process 1, :time 11, :index 1}\n\
             {:type :ok, :f :write, :value 3, :process 0, :time 20, :index 2, :node \"n1\"}\n\
             {:type :info, :f :start, :value nil, :process :nemesis, :time 25, :index 3}\n\
             {:type :fail, :f :read, :value nil, :process 1, :time 30, :index 4, :error :timeout}\n",
            None,
        )
        .unwrap();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.ops[0].outcome, Outcome::Ok);
        assert_eq!(h.ops[0].output, json!(3));
        assert_eq!(h.ops[0].complete_time, Some(20));
        assert_eq!(h.nodes, vec!["n1".to_owned()]);
        assert_eq!(h.ops[1].outcome, Outcome::Fail);
        assert_eq!(h.ops[1].error.as_deref(), Some("timeout"));
        assert_eq!(h.nemesis.len(), 1);
        assert_eq!(h.nemesis[0].f, F::Other("start".into()));
        assert!(h.keys.is_empty());
    }

    #[test]
    fn reads_records_and_a_vector_of_operations() {
        let h = parse(
            "[#jepsen.history.Op{:index 0, :time 5, :type :invoke, :process 0, :f :cas, :value [1 2]}\n\
             {:index 1, :time 6, :type :info, :process 0, :f :cas, :value [1 2], :error [:timeout 5]}]\n",
            None,
        )
        .unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].input, json!([1, 2]));
        assert_eq!(h.ops[0].outcome, Outcome::Info);
        assert_eq!(h.ops[0].error.as_deref(), Some("[:timeout 5]"));
        assert!(h.keys.is_empty());
    }

    #[test]
    fn synthesizes_index_and_time_from_the_position() {
        let h = parse(
            "{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :value 1, :process 0}\n",
            None,
        )
        .unwrap();
        assert_eq!((h.ops[0].invoke_index, h.ops[0].invoke_time), (0, 0));
        assert_eq!((h.ops[0].complete_index, h.ops[0].complete_time), (Some(1), Some(1)));
    }

    #[test]
    fn splits_independent_tuples_into_key_and_value() {
        let text = "{:type :invoke, :f :read, :value [7 nil], :process 0, :time 1}\n\
                    {:type :invoke, :f :cas, :value [7 [1 2]], :process 2, :time 1}\n\
                    {:type :ok, :f :read, :value [7 4], :process 0, :time 2}\n\
                    {:type :invoke, :f :write, :value [\"k\" 5], :process 1, :time 3}\n\
                    {:type :info, :f :kill, :value [:n1 :n2], :process :nemesis, :time 4}\n";
        let h = parse(text, None).unwrap();
        assert_eq!(h.keys, vec![Key::Int(7), Key::Str("k".into())]);
        assert_eq!(h.ops[0].output, json!(4));
        assert_eq!(h.ops[1].input, json!([1, 2]));
        assert_eq!(h.ops[2].input, json!(5));
        assert_eq!(h.nemesis[0].value, json!([{"$keyword": "n1"}, {"$keyword": "n2"}]));
        let plain = parse(text, Some(false)).unwrap();
        assert!(plain.keys.is_empty());
        assert_eq!(plain.ops[0].output, json!([7, 4]));
    }

    #[test]
    fn detects_plain_histories() {
        // A read of nil says plain; so does a cas without its pair, even
        // alone; nor is a two-micro-op txn a tuple.
        for text in [
            "{:type :invoke, :f :write, :value [1 2], :process 0}\n{:type :invoke, :f :read, :value nil, :process 1}\n",
            "{:type :invoke, :f :cas, :value [1 2], :process 0}\n",
        ] {
            assert!(parse(text, None).unwrap().keys.is_empty(), "{text}");
        }
        let h = parse(
            "{:type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0}\n\
             {:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [2]]], :process 0}\n",
            None,
        )
        .unwrap();
        assert!(h.keys.is_empty());
        assert_eq!(h.ops[0].f, F::Txn);
        assert_eq!(h.ops[0].output, json!([["append", 1, 2], ["r", 1, [2]]]));
    }

    #[test]
    fn reads_again_as_plain_when_a_later_value_is_no_tuple() {
        let text = "{:type :invoke, :f :write, :value [1 2], :process 0}\n\
                    {:type :ok, :f :write, :value [1 2], :process 0}\n\
                    {:type :invoke, :f :read, :value nil, :process 1}\n";
        let h = parse(text, None).unwrap();
        assert!(h.keys.is_empty());
        assert_eq!(h.ops[0].input, json!([1, 2]));
        assert_eq!(h.ops.len(), 2);
        assert_eq!(
            parse(text, Some(true)).unwrap_err().to_string(),
            "history.edn:3: field `:value`: expected a jepsen.independent [key value] tuple with an integer, string or keyword key, got nil"
        );
    }

    #[test]
    fn converts_edn_values_to_json() {
        let h = parse(
            "{:type :invoke, :f :x, :process 0, :value {\"a\" #{1} \"s\" \\c \"n\" 99999999999999999999N, \"i\" ##Inf, \"t\" #inst \"2026\"}, :custom {:k 1}}\n",
            None,
        )
        .unwrap();
        let v = &h.ops[0].input;
        assert_eq!(v["a"], json!({"$set": [1]}));
        assert_eq!(v["s"], json!({"$char": "c"}));
        assert_eq!(v["n"], json!({"$int": "99999999999999999999"}));
        assert_eq!(v["i"], json!({"$float": "Inf"}));
        assert_eq!(v["t"], json!({"$tag": ["inst", "2026"]}));
        assert_eq!(h.ops[0].f, F::Other("x".into()));
        let one = |text: &str| {
            let mut r = EdnReader::new(text.as_bytes(), Path::new("v"));
            edn_to_json(&r.next_form().unwrap().unwrap().1)
        };
        assert_eq!(one("18446744073709551615"), json!(u64::MAX));
        assert_eq!(one("7N"), json!(7));
        assert_eq!(one("2.5M"), json!(2.5));
        assert_eq!(one("1/2"), json!(0.5));
        assert_eq!(one("##-Inf"), json!({"$float": "-Inf"}));
        assert_eq!(one("nil"), json!(null));
        assert_eq!(one("(1 [2])"), json!([1, [2]]));
        assert_eq!(one(":ns/a"), json!({"$keyword": "ns/a"}));
        assert_eq!(one("a"), json!({"$symbol": "a"}));
        assert_eq!(one("#uuid \"x\""), json!({"$tag": ["uuid", "x"]}));
        assert_eq!(one("{:a 1, 2 3}"), json!({"$map": [[2, 3], [{"$keyword": "a"}, 1]]}));
        assert_eq!(one("{\"b\" 1, \"a\" [:x]}"), json!({"a": [{"$keyword": "x"}], "b": 1}));
    }

    /// Values as Clojure's `=` compares them: what it calls equal is equal
    /// JSON, what it tells apart stays apart.
    #[test]
    fn values_compare_as_clojure_compares_them() {
        let one = |text: &str| {
            let mut r = EdnReader::new(text.as_bytes(), Path::new("v"));
            edn_to_json(&r.next_form().unwrap().unwrap().1)
        };
        let equal = [
            ("#{1 2}", "#{2 1}"),
            ("#{1 2 #{3 4}}", "#{#{4 3} 2 1}"),
            ("{:a 1, :b 2}", "{:b 2, :a 1}"),
            ("{\"a\" 1, \"b\" 2}", "{\"b\" 2, \"a\" 1}"),
            ("[1 2]", "(1 2)"),
            ("18446744073709551616N", "18446744073709551616"),
            ("5N", "5"),
        ];
        for (a, b) in equal {
            assert_eq!(one(a), one(b), "{a} = {b}");
        }
        let different = [
            ("#{1 2}", "[1 2]"),
            (":a", "\"a\""),
            (":a", "a"),
            ("a", "\"a\""),
            ("\\a", "\"a\""),
            ("18446744073709551616", "18446744073709551617"),
            ("-9223372036854775809", "-9223372036854775810"),
            ("{:a 1}", "{\"a\" 1}"),
            ("#inst \"2026\"", "\"2026\""),
        ];
        for (a, b) in different {
            assert_ne!(one(a), one(b), "{a} != {b}");
        }
    }

    #[test]
    fn keeps_unknown_fields() {
        let h = parse(
            "{:type :info, :f :start, :process :nemesis, :value nil, :clock-offsets {\"n1\" 3}}\n",
            None,
        )
        .unwrap();
        assert_eq!(h.nemesis[0].extra["clock-offsets"], json!({"n1": 3}));
    }

    #[test]
    fn field_errors_name_file_line_and_field() {
        assert_eq!(
            err("{:type :invoke, :f :read, :process 0}\n\n{:type :invoke, :f :read, :process \"x\"}"),
            "history.edn:3: field `:process`: expected an integer or :nemesis, got \"x\""
        );
        assert_eq!(
            err("{:type :done, :f :read, :process 0}"),
            "history.edn:1: field `:type`: expected :invoke, :ok, :fail or :info, got :done"
        );
        assert_eq!(
            err("{:type :ok, :f 3, :process 0}"),
            "history.edn:1: field `:f`: expected a keyword, got 3"
        );
        assert_eq!(
            err("{:type :ok, :f :read, :process 0, :time -1}"),
            "history.edn:1: field `:time`: expected a non-negative integer, got -1"
        );
        assert_eq!(
            err("{:type :ok, :f :read, :process 0, :index 1.5}"),
            "history.edn:1: field `:index`: expected a non-negative integer, got 1.5"
        );
        assert_eq!(
            err("{:type :ok, :f :read, :process 0, :node 3}"),
            "history.edn:1: field `:node`: expected a string or keyword, got 3"
        );
        assert_eq!(
            err("{:type :ok, :f :read, :process 0, :key [1]}"),
            "history.edn:1: field `:key`: expected an integer, a string or a keyword, got [1]"
        );
        assert_eq!(err("{:f :read, :process 0}"), "history.edn:1: missing field `:type`");
        assert_eq!(err("{:type :ok, :process 0}"), "history.edn:1: missing field `:f`");
        assert_eq!(err("{:type :ok, :f :read}"), "history.edn:1: missing field `:process`");
        assert_eq!(err("[1 2]"), "history.edn:1: expected an operation map, got 1");
        assert_eq!(err("#op 7"), "history.edn:1: expected an operation map, got #op 7");
        assert_eq!(
            err("[{:type :ok"),
            "history.edn:1: the file ends before the closing `}`"
        );
        assert_eq!(
            err("[{:type :invoke, :f :read, :process 0}\n"),
            "history.edn:2: the file ends before the `]` that closes the history"
        );
    }

    #[test]
    fn forced_independence_rejects_a_value_that_is_no_tuple() {
        let e = parse("{:type :invoke, :f :read, :process 0, :value nil}\n", Some(true))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "history.edn:1: field `:value`: expected a jepsen.independent [key value] tuple with an integer, string or keyword key, got nil"
        );
    }

    #[test]
    fn forced_independence_rejects_a_tuple_without_a_key() {
        let e = parse("{:type :invoke, :f :read, :process 0, :value [[1] nil]}\n", Some(true))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("history.edn:1: field `:value`: expected a jepsen.independent"),
            "{e}"
        );
        assert!(e.ends_with("got [[1] nil]"), "{e}");
    }

    #[test]
    fn pairing_errors_name_the_line() {
        let e = err("{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :process 1}\n");
        assert!(e.starts_with("history.edn:2: "), "{e}");
        let e = err("{:type :invoke, :f :read, :process 0}\n{:type :invoke, :f :read, :process 0}\n");
        assert!(e.starts_with("history.edn:2: "), "{e}");
    }
}

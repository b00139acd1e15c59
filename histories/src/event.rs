//! One line of a history: an [`Event`] as `HISTORY_FORMAT.md` defines it.
//!
//! An event is what the controller saw at one instant: a client about to send
//! a request (`invoke`) or learning how it ended (`ok`, `fail`, `info`). The
//! format is the contract between the harness and the checkers, so this type
//! keeps every field a later version may add (`extra`) and writes it back
//! unchanged. Deserialization is hand-written rather than derived with
//! `#[serde(flatten)]` for two reasons: flatten buffers every field and is
//! several times slower on million-line histories, and a hand-written visitor
//! can name the field at fault in every error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The logical client that issued an event. One operation is in flight per
/// process at a time; a process that saw `info` is retired for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A client worker, numbered by the harness.
    Client(u64),
    /// The fault injector: its events mark faults starting and stopping.
    Nemesis,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .map(Process::Client)
                .ok_or_else(|| de::Error::custom(format!("expected a non-negative integer or \"nemesis\", got {n}"))),
            Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            other => Err(de::Error::custom(format!(
                "expected a non-negative integer or \"nemesis\", got {other}"
            ))),
        }
    }
}

/// How far an operation had got when the event was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client is about to send the request.
    Invoke,
    /// The operation took effect; `value` is its result.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Unknown: it may have taken effect at any time after its invoke, or never.
    Info,
}

impl EventType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "invoke" => EventType::Invoke,
            "ok" => EventType::Ok,
            "fail" => EventType::Fail,
            "info" => EventType::Info,
            _ => return None,
        })
    }

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

/// The function an operation performs. The common ones are variants so that
/// checkers match on them without comparing strings; anything else (nemesis
/// faults, future operations) is kept by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum F {
    Read,
    Write,
    Cas,
    Append,
    Txn,
    Other(Box<str>),
}

impl F {
    /// Reads `read`, `write`, ...; anything else becomes [`F::Other`].
    pub fn parse(s: &str) -> F {
        match s {
            "read" => F::Read,
            "write" => F::Write,
            "cas" => F::Cas,
            "append" => F::Append,
            "txn" => F::Txn,
            other => F::Other(other.into()),
        }
    }

    /// The name used in the file.
    pub fn as_str(&self) -> &str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Append => "append",
            F::Txn => "txn",
            F::Other(s) => s,
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for F {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The object an operation touches. Checkers decompose a history by key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Str(s.to_owned())
    }
}

impl From<i64> for Key {
    fn from(i: i64) -> Self {
        Key::Int(i)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Key::Int(i) => s.serialize_i64(*i),
            Key::Str(k) => s.serialize_str(k),
        }
    }
}

impl Key {
    fn from_json(v: Value) -> Result<Key, String> {
        match v {
            Value::String(s) => Ok(Key::Str(s)),
            Value::Number(n) => n
                .as_i64()
                .map(Key::Int)
                .ok_or_else(|| format!("expected a string or an integer, got {n}")),
            other => Err(format!("expected a string or an integer, got {other}")),
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the file: 0, 1, 2, ...
    pub index: u64,
    /// Nanoseconds since the test started, by the controller's monotonic clock.
    pub time: u64,
    pub process: Process,
    /// The `type` field.
    pub kind: EventType,
    pub f: F,
    pub key: Option<Key>,
    /// The argument on invoke, the result on ok; `null` when absent.
    pub value: Value,
    /// The server node that answered.
    pub node: Option<String>,
    /// Why an operation failed or is indeterminate.
    pub error: Option<String>,
    /// True on the reads the harness takes after healing every fault.
    pub is_final: bool,
    /// Fields this version does not know, kept so that a rewrite loses nothing.
    pub extra: Map<String, Value>,
}

impl Event {
    /// An event with the required fields set and every optional one empty.
    pub fn new(index: u64, time: u64, process: Process, kind: EventType, f: F, value: Value) -> Event {
        Event {
            index,
            time,
            process,
            kind,
            f,
            key: None,
            value,
            node: None,
            error: None,
            is_final: false,
            extra: Map::new(),
        }
    }

    /// Sets the key, for chaining.
    pub fn with_key(mut self, key: impl Into<Key>) -> Event {
        self.key = Some(key.into());
        self
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("index", &self.index)?;
        m.serialize_entry("time", &self.time)?;
        m.serialize_entry("process", &self.process)?;
        m.serialize_entry("type", self.kind.as_str())?;
        m.serialize_entry("f", self.f.as_str())?;
        if let Some(k) = &self.key {
            m.serialize_entry("key", k)?;
        }
        m.serialize_entry("value", &self.value)?;
        if let Some(n) = &self.node {
            m.serialize_entry("node", n)?;
        }
        if let Some(e) = &self.error {
            m.serialize_entry("error", e)?;
        }
        if self.is_final {
            m.serialize_entry("final", &true)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

/// Reads a string field through a function of `&str`, without allocating:
/// serde's `Cow<str>` always allocates, which was a fifth of the time of
/// reading a million-line history (a key name and two values per line).
struct WithStr<G>(G);

impl<'de, T, G: FnOnce(&str) -> T> DeserializeSeed<'de> for WithStr<G> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T, G: FnOnce(&str) -> T> Visitor<'de> for WithStr<G> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        Ok((self.0)(s))
    }
}

/// The fields the visitor knows, named without allocating.
enum Field {
    Index,
    Time,
    Process,
    Type,
    F,
    Key,
    Value,
    Node,
    Error,
    Final,
    Other(String),
}

impl Field {
    fn parse(name: &str) -> Field {
        match name {
            "index" => Field::Index,
            "time" => Field::Time,
            "process" => Field::Process,
            "type" => Field::Type,
            "f" => Field::F,
            "key" => Field::Key,
            "value" => Field::Value,
            "node" => Field::Node,
            "error" => Field::Error,
            "final" => Field::Final,
            other => Field::Other(other.to_owned()),
        }
    }
}

/// Wraps a message so the error names the field at fault.
fn field_err<E: de::Error>(field: &str, msg: impl fmt::Display) -> E {
    E::custom(format!("field `{field}`: {msg}"))
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a history event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut index = None;
        let mut time = None;
        let mut process = None;
        let mut kind = None;
        let mut f = None;
        let mut ev = Event::new(0, 0, Process::Nemesis, EventType::Invoke, F::Read, Value::Null);
        while let Some(name) = map.next_key_seed(WithStr(Field::parse))? {
            match name {
                Field::Index => index = Some(map.next_value::<u64>().map_err(|e| field_err("index", e))?),
                Field::Time => time = Some(map.next_value::<u64>().map_err(|e| field_err("time", e))?),
                Field::Process => process = Some(map.next_value::<Process>().map_err(|e| field_err("process", e))?),
                Field::Type => {
                    let parsed = map
                        .next_value_seed(WithStr(|s: &str| EventType::parse(s).ok_or_else(|| s.to_owned())))
                        .map_err(|e| field_err("type", e))?;
                    kind = Some(
                        parsed
                            .map_err(|s| field_err("type", format!("expected invoke, ok, fail or info, got {s:?}")))?,
                    );
                }
                Field::F => f = Some(map.next_value_seed(WithStr(F::parse)).map_err(|e| field_err("f", e))?),
                Field::Key => {
                    let v = map.next_value::<Value>()?;
                    ev.key = match v {
                        Value::Null => None,
                        v => Some(Key::from_json(v).map_err(|e| field_err("key", e))?),
                    };
                }
                Field::Value => ev.value = map.next_value()?,
                Field::Node => ev.node = map.next_value().map_err(|e| field_err("node", e))?,
                Field::Error => {
                    // Jepsen-style errors are sometimes structured; keep them as text.
                    ev.error = match map.next_value::<Value>()? {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    }
                }
                Field::Final => {
                    ev.is_final = map
                        .next_value::<Option<bool>>()
                        .map_err(|e| field_err("final", e))?
                        .unwrap_or(false)
                }
                Field::Other(other) => {
                    let v = map.next_value::<Value>()?;
                    ev.extra.insert(other, v);
                }
            }
        }
        ev.index = index.ok_or_else(|| de::Error::missing_field("index"))?;
        ev.time = time.ok_or_else(|| de::Error::missing_field("time"))?;
        ev.process = process.ok_or_else(|| de::Error::missing_field("process"))?;
        ev.kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        ev.f = f.ok_or_else(|| de::Error::missing_field("f"))?;
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_keeps_unknown_fields() {
        let line = r#"{"index":18,"time":1239999,"process":3,"type":"ok","f":"write","key":"k7","value":42,"node":"n2","lsn":9}"#;
        let ev: Event = serde_json::from_str(line).unwrap();
        assert_eq!(ev.kind, EventType::Ok);
        assert_eq!(ev.key, Some(Key::Str("k7".into())));
        assert_eq!(ev.extra.get("lsn"), Some(&json!(9)));
        assert_eq!(serde_json::to_string(&ev).unwrap(), line);
    }

    #[test]
    fn names_the_field_at_fault() {
        let err = serde_json::from_str::<Event>(r#"{"index":1,"time":2,"process":3,"type":"done","f":"read"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `type`"), "{err}");
        let err = serde_json::from_str::<Event>(r#"{"index":1,"time":-2,"process":3,"type":"ok","f":"read"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `time`"), "{err}");
        let err = serde_json::from_str::<Event>(r#"{"index":1,"process":3,"type":"ok","f":"read"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("time"), "{err}");
    }

    #[test]
    fn nemesis_process_and_integer_keys() {
        let ev: Event = serde_json::from_str(
            r#"{"index":0,"time":0,"process":"nemesis","type":"info","f":"start-partition","key":7}"#,
        )
        .unwrap();
        assert_eq!(ev.process, Process::Nemesis);
        assert_eq!(ev.key, Some(Key::Int(7)));
        assert_eq!(ev.f, F::Other("start-partition".into()));
    }
}

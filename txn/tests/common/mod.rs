//! Building small transactional histories for tests: `invoke`, then `ok`,
//! `fail` or `info`, with micro-ops written as JSON.
#![allow(dead_code)]

use faultline_histories::{Event, EventType, History, Process, F};
use faultline_txn::{check, Analysis, Config, Model};
use serde_json::{json, Value};

/// A history under construction; every event gets the next index and time.
#[derive(Default)]
pub struct H {
    events: Vec<Event>,
}

/// The micro-ops as invoked: reads' values unknown.
fn invoked(mops: &Value) -> Value {
    let ms = mops.as_array().expect("a list of micro-ops");
    Value::Array(
        ms.iter()
            .map(|m| {
                let m = m.as_array().expect("a micro-op");
                if m[0] == "r" {
                    json!(["r", m[1], null])
                } else {
                    Value::Array(m.clone())
                }
            })
            .collect(),
    )
}

impl H {
    pub fn new() -> H {
        H::default()
    }

    fn push(&mut self, p: u64, kind: EventType, value: Value) {
        let i = self.events.len() as u64;
        self.events
            .push(Event::new(i, i * 1_000_000, Process::Client(p), kind, F::Txn, value));
    }

    /// Process `p` invokes a transaction.
    pub fn invoke(&mut self, p: u64, mops: Value) -> &mut H {
        self.push(p, EventType::Invoke, invoked(&mops));
        self
    }

    /// Process `p`'s transaction completes ok with `mops` (reads filled in).
    pub fn ok(&mut self, p: u64, mops: Value) -> &mut H {
        self.push(p, EventType::Ok, mops);
        self
    }

    /// Process `p`'s transaction fails.
    pub fn fail(&mut self, p: u64, mops: Value) -> &mut H {
        let v = invoked(&mops);
        self.push(p, EventType::Fail, v);
        self
    }

    /// Process `p`'s transaction ends indeterminate.
    pub fn info(&mut self, p: u64, mops: Value) -> &mut H {
        let v = invoked(&mops);
        self.push(p, EventType::Info, v);
        self
    }

    /// A whole transaction that committed, alone in time.
    pub fn txn(&mut self, p: u64, mops: Value) -> &mut H {
        self.invoke(p, mops.clone()).ok(p, mops)
    }

    pub fn history(&self) -> History {
        History::from_events(self.events.clone()).expect("a well-formed history")
    }

    /// Checked against `models`.
    pub fn check(&self, models: &[Model]) -> Analysis {
        let config = Config {
            models: models.to_vec(),
            ..Config::default()
        };
        check(&self.history(), &config).expect("checkable")
    }

    /// Checked against strict serializability, the default.
    pub fn strict(&self) -> Analysis {
        self.check(&[Model::StrictSerializable])
    }
}

/// The kinds found, as strings.
pub fn kinds(a: &Analysis) -> Vec<&str> {
    a.anomaly_types.iter().map(String::as_str).collect()
}

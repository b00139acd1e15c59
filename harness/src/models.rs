//! The linearizability models as users name them, and how `faultline check`
//! picks one: the user's `--model`, else what the input format implies
//! (Porcupine's etcd logs are compare-and-set registers, its kv logs
//! key-value strings), else what the operations show. Every choice comes
//! with a one-sentence reason, printed in the report, so a user who gets a
//! verdict knows which specification it was measured against.
//!
//! Also here: what `--initial` and `--nil-reads` mean. A read that
//! completes ok with `null` is a read of null in faultline's JSONL and
//! Porcupine's logs, and "result unknown" in Jepsen's EDN (Knossos's rule:
//! Jepsen clients report a read whose answer was lost that way).

use std::collections::BTreeSet;

use faultline_checkers::linear::{ModelSpec, NilReads};
use faultline_histories::import::Format;
use faultline_histories::{History, Outcome, F};
use serde::Serialize;
use serde_json::Value;

/// A model for linearizability, as the user names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelName {
    Register,
    CasRegister,
    MultiRegister,
    Mutex,
    Set,
    UnorderedQueue,
    FifoQueue,
    Kv,
    List,
}

impl ModelName {
    /// Every model, in the order the docs list them.
    pub const ALL: [ModelName; 9] = [
        ModelName::Register,
        ModelName::CasRegister,
        ModelName::MultiRegister,
        ModelName::Mutex,
        ModelName::Set,
        ModelName::UnorderedQueue,
        ModelName::FifoQueue,
        ModelName::Kv,
        ModelName::List,
    ];

    /// The name `--model` takes.
    pub fn name(self) -> &'static str {
        match self {
            ModelName::Register => "register",
            ModelName::CasRegister => "cas-register",
            ModelName::MultiRegister => "multi-register",
            ModelName::Mutex => "mutex",
            ModelName::Set => "set",
            ModelName::UnorderedQueue => "unordered-queue",
            ModelName::FifoQueue => "fifo-queue",
            ModelName::Kv => "kv",
            ModelName::List => "list",
        }
    }

    /// Whether the model has registers, whose reads `--initial` and
    /// `--nil-reads` are about.
    pub fn has_registers(self) -> bool {
        matches!(
            self,
            ModelName::Register | ModelName::CasRegister | ModelName::MultiRegister
        )
    }
}

impl std::str::FromStr for ModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ModelName::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ModelName::ALL.iter().map(|m| m.name()).collect();
            format!("unknown model {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// Reads `--nil-reads`: `unknown` or `value`.
pub fn parse_nil_reads(s: &str) -> Result<NilReads, String> {
    match s {
        "unknown" => Ok(NilReads::Unknown),
        "value" => Ok(NilReads::Value),
        other => Err(format!("unknown --nil-reads {other:?}: expected unknown or value")),
    }
}

/// Reads `--initial`: JSON (`0`, `"x"`, `null`), or else a bare word taken
/// as a string, so `--initial a` works.
pub fn parse_initial(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// What a read of null means when the user did not say: Knossos's rule for
/// Jepsen's histories, a read of null for everything else.
pub fn default_nil_reads(format: Format) -> NilReads {
    match format {
        Format::JepsenEdn => NilReads::Unknown,
        _ => NilReads::Value,
    }
}

/// What the user said about models (all optional).
#[derive(Clone, Debug, Default)]
pub struct ModelRequest {
    pub model: Option<ModelName>,
    pub initial: Value,
    pub nil_reads: Option<NilReads>,
}

/// The model a report was checked against, and why; serialized into the
/// report's `model` field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelChoice {
    /// The model's `--model` name.
    pub name: &'static str,
    /// One sentence: why this model.
    pub why: String,
    /// For models with registers: what a read of null meant (`value` or
    /// `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nil_reads: Option<&'static str>,
}

/// A model picked from the operations, or none, with the reason either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inference {
    pub model: Option<ModelName>,
    pub why: String,
}

impl Inference {
    fn some(model: ModelName, why: String) -> Inference {
        Inference {
            model: Some(model),
            why,
        }
    }
}

/// The checker's specification for `name`, with the user's settings.
pub fn spec(name: ModelName, initial: &Value, nil_reads: NilReads) -> ModelSpec {
    let initial = initial.clone();
    match name {
        ModelName::Register => ModelSpec::Register { initial, nil_reads },
        ModelName::CasRegister => ModelSpec::CasRegister { initial, nil_reads },
        ModelName::MultiRegister => ModelSpec::MultiRegister { initial, nil_reads },
        ModelName::Mutex => ModelSpec::Mutex,
        ModelName::Set => ModelSpec::Set,
        ModelName::UnorderedQueue => ModelSpec::UnorderedQueue,
        ModelName::FifoQueue => ModelSpec::FifoQueue,
        ModelName::Kv => ModelSpec::Kv,
        ModelName::List => ModelSpec::List,
    }
}

/// The model for `history` read as `format`: the user's choice, else what
/// the format implies, else what the operations show (see [`infer`]).
pub fn choose(history: &History, format: Format, request: &ModelRequest) -> Inference {
    if let Some(m) = request.model {
        return Inference::some(m, format!("chosen with --model {}", m.name()));
    }
    match format {
        Format::PorcupineEtcd => Inference::some(
            ModelName::CasRegister,
            "Porcupine's etcd logs are a compare-and-set register".to_owned(),
        ),
        Format::PorcupineKv => Inference::some(ModelName::Kv, "Porcupine's kv logs are key-value strings".to_owned()),
        _ => infer(history),
    }
}

/// The checker's specification and the report's account of it, for a
/// chosen model.
pub fn settle(name: ModelName, why: String, format: Format, request: &ModelRequest) -> (ModelSpec, ModelChoice) {
    let nil_reads = request.nil_reads.unwrap_or_else(|| default_nil_reads(format));
    let choice = ModelChoice {
        name: name.name(),
        why,
        nil_reads: name.has_registers().then(|| nil_reads.name()),
    };
    (spec(name, &request.initial, nil_reads), choice)
}

/// What `faultline check` runs linearizability with, and what the report
/// says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The specification, when some model applies.
    pub spec: Option<ModelSpec>,
    /// The model and why, for the report.
    pub choice: Option<ModelChoice>,
    /// Why no model applies, when none does.
    pub none_why: Option<String>,
}

/// Decides the model for `history`. With `required` (the user asked for
/// the linearizability checker by name) and no model that fits, the
/// register, so the checker runs and says what it cannot read.
pub fn decide(history: &History, format: Format, request: &ModelRequest, required: bool) -> Decision {
    let inference = choose(history, format, request);
    let (name, why) = match (inference.model, required) {
        (Some(m), _) => (m, inference.why),
        (None, true) => (
            ModelName::Register,
            format!("{}; the linearizable checker was asked for: register", inference.why),
        ),
        (None, false) => {
            return Decision {
                spec: None,
                choice: None,
                none_why: Some(inference.why),
            }
        }
    };
    let (spec, choice) = settle(name, why, format, request);
    Decision {
        spec: Some(spec),
        choice: Some(choice),
        none_why: None,
    }
}

/// The distinct `f`s of the client operations, by name.
fn fs_of(history: &History) -> BTreeSet<&str> {
    history.ops.iter().map(|o| o.f.as_str()).collect()
}

/// "a, b or c" (with `or`) or "a, b and c" (with `and`).
fn listing(words: &[&str], last: &str) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., end] => format!("{} {last} {end}", init.join(", ")),
    }
}

/// "every op is acquire or release" when those are all the history has,
/// else "ops include acquire and release (and also read)".
fn ops_sentence(all: &BTreeSet<&str>, wanted: &[&str]) -> String {
    let present: Vec<&str> = wanted.iter().copied().filter(|f| all.contains(f)).collect();
    let others: Vec<&str> = all.iter().copied().filter(|f| !wanted.contains(f)).collect();
    if others.is_empty() {
        return format!("every op is {}", listing(&present, "or"));
    }
    format!(
        "ops include {} (and also {})",
        listing(&present, "and"),
        others.join(", ")
    )
}

/// Picks a model from what the operations do, Knossos's models first (their
/// `f`s are their own), then transactions, then appends, registers.
pub fn infer(history: &History) -> Inference {
    let fs = fs_of(history);
    let has = |f: &str| fs.contains(f);
    if has("acquire") || has("release") {
        return Inference::some(
            ModelName::Mutex,
            format!("{}: mutex", ops_sentence(&fs, &["acquire", "release"])),
        );
    }
    if has("enqueue") || has("dequeue") {
        let ops = ops_sentence(&fs, &["enqueue", "dequeue"]);
        let why = format!(
            "{ops}: unordered-queue (--model fifo-queue is the stricter choice, for a queue that promises order)"
        );
        return Inference::some(ModelName::UnorderedQueue, why);
    }
    if has("add") || reads_a_set(history) {
        return Inference::some(
            ModelName::Set,
            format!("{}, reads return whole sets: set", ops_sentence(&fs, &["add", "read"])),
        );
    }
    if has("txn") {
        return infer_txn(history, &fs);
    }
    infer_plain(history, &fs)
}

/// True when some ok read returned an EDN set (`{"$set": [...]}`).
fn reads_a_set(history: &History) -> bool {
    history
        .ops
        .iter()
        .any(|o| o.f == F::Read && o.outcome == Outcome::Ok && o.output.get("$set").is_some())
}

/// The micro-op kinds the transactions use: `read`, `write`, `append`, or
/// the text of anything else.
fn micro_kinds(history: &History) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for op in history.ops.iter().filter(|o| o.f == F::Txn) {
        let Some(items) = op.value().as_array() else { continue };
        for m in items {
            let f = m.get(0).map(micro_word).unwrap_or_else(|| "?".to_owned());
            kinds.insert(f);
        }
    }
    kinds
}

/// A micro-op's function, its short spellings folded in.
fn micro_word(f: &Value) -> String {
    let word = f
        .as_str()
        .or_else(|| f.get("$keyword").and_then(Value::as_str))
        .unwrap_or("?");
    match word {
        "r" => "read",
        "w" => "write",
        other => other,
    }
    .to_owned()
}

fn infer_txn(history: &History, fs: &BTreeSet<&str>) -> Inference {
    let kinds = micro_kinds(history);
    let listed = kinds.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    if kinds.iter().all(|k| k == "read" || k == "write") {
        let why = format!(
            "{}, whose micro-ops are all read or write: multi-register",
            ops_sentence(fs, &["txn"])
        );
        return Inference::some(ModelName::MultiRegister, why);
    }
    let why = if kinds.contains("append") {
        format!(
            "txns with {listed} micro-ops are list-append transactions (Elle's); no linearizability model checks them"
        )
    } else {
        format!("txns with {listed} micro-ops fit no linearizability model")
    };
    Inference { model: None, why }
}

/// Appends, compare-and-set, reads and writes.
fn infer_plain(history: &History, fs: &BTreeSet<&str>) -> Inference {
    if fs.contains("append") {
        return infer_append(history, fs);
    }
    if fs.contains("cas") {
        let why = format!("{}: cas-register", ops_sentence(fs, &["read", "write", "cas"]));
        return Inference::some(ModelName::CasRegister, why);
    }
    if fs.contains("read") || fs.contains("write") {
        let why = format!("{}: register", ops_sentence(fs, &["read", "write"]));
        return Inference::some(ModelName::Register, why);
    }
    let listed = fs.iter().copied().collect::<Vec<_>>().join(", ");
    let why = if listed.is_empty() {
        "the history has no client operations".to_owned()
    } else {
        format!("no model has the operations {listed}")
    };
    Inference { model: None, why }
}

/// Appends read back as lists mean the list model, as strings the
/// key-value model (a list read anywhere wins).
fn infer_append(history: &History, fs: &BTreeSet<&str>) -> Inference {
    let ok_reads = || {
        history
            .ops
            .iter()
            .filter(|o| o.f == F::Read && o.outcome == Outcome::Ok)
    };
    let ops = ops_sentence(fs, &["append", "read", "write"]);
    if ok_reads().any(|o| o.output.is_array()) {
        return Inference::some(ModelName::List, format!("{ops}, reads return lists: list"));
    }
    if ok_reads().any(|o| o.output.is_string()) {
        return Inference::some(ModelName::Kv, format!("{ops}, reads return strings: kv"));
    }
    Inference::some(ModelName::List, format!("{ops}, no read returns a string: list"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType, Process};
    use serde_json::json;

    /// A history of one ok op per `(f, input, output)`, one after another.
    fn history(ops: &[(&str, Value, Value)]) -> History {
        let mut events = Vec::new();
        for (i, (f, input, output)) in ops.iter().enumerate() {
            let i = 2 * i as u64;
            let f = F::parse(f);
            events.push(Event::new(
                i,
                i,
                Process::Client(0),
                EventType::Invoke,
                f.clone(),
                input.clone(),
            ));
            events.push(Event::new(
                i + 1,
                i + 1,
                Process::Client(0),
                EventType::Ok,
                f,
                output.clone(),
            ));
        }
        History::from_events(events).expect("well formed")
    }

    fn inferred(ops: &[(&str, Value, Value)]) -> (Option<&'static str>, String) {
        let i = infer(&history(ops));
        (i.model.map(ModelName::name), i.why)
    }

    #[test]
    fn every_name_parses_back() {
        for m in ModelName::ALL {
            assert_eq!(m.name().parse::<ModelName>(), Ok(m));
        }
        let e = "queue".parse::<ModelName>().unwrap_err();
        assert!(e.contains("fifo-queue") && e.contains("multi-register"), "{e}");
    }

    #[test]
    fn knossos_models_are_inferred_with_their_reason() {
        let n = Value::Null;
        let (m, why) = inferred(&[("acquire", n.clone(), n.clone()), ("release", n.clone(), n.clone())]);
        assert_eq!(
            (m, why.as_str()),
            (Some("mutex"), "every op is acquire or release: mutex")
        );
        let (m, why) = inferred(&[("enqueue", json!(1), json!(1)), ("dequeue", n.clone(), json!(1))]);
        assert_eq!(m, Some("unordered-queue"));
        assert!(why.contains("fifo-queue is the stricter choice"), "{why}");
        let (m, _) = inferred(&[("add", json!(1), json!(1)), ("read", n.clone(), json!({"$set": [1]}))]);
        assert_eq!(m, Some("set"));
        let (m, _) = inferred(&[("read", n.clone(), json!({"$set": [1]}))]);
        assert_eq!(m, Some("set"));
        let txn = json!([["r", "x", 1], [{"$keyword": "w"}, "y", 2]]);
        let (m, why) = inferred(&[("txn", txn.clone(), txn)]);
        assert_eq!(m, Some("multi-register"), "{why}");
    }

    #[test]
    fn list_append_transactions_get_no_model_and_say_why() {
        let txn = json!([["append", 1, 2], ["r", 1, [2]]]);
        let (m, why) = inferred(&[("txn", txn.clone(), txn)]);
        assert_eq!(m, None);
        assert!(why.contains("append") && why.contains("Elle"), "{why}");
    }

    #[test]
    fn registers_lists_and_strings_are_told_apart() {
        let n = Value::Null;
        let (m, why) = inferred(&[("write", json!(1), json!(1)), ("cas", json!([1, 2]), json!([1, 2]))]);
        assert_eq!(
            (m, why.as_str()),
            (Some("cas-register"), "every op is write or cas: cas-register")
        );
        let three = [
            ("read", n.clone(), json!(1)),
            ("write", json!(1), json!(1)),
            ("cas", json!([1, 2]), json!([1, 2])),
        ];
        assert_eq!(inferred(&three).1, "every op is read, write or cas: cas-register");
        let (_, why) = inferred(&[("acquire", n.clone(), n.clone()), ("read", n.clone(), n.clone())]);
        assert_eq!(why, "ops include acquire (and also read): mutex");
        assert_eq!(inferred(&[("write", json!(1), json!(1))]).0, Some("register"));
        let list = [("append", json!(1), json!(1)), ("read", n.clone(), json!([1]))];
        assert_eq!(inferred(&list).0, Some("list"));
        let kv = [("append", json!("a"), json!("a")), ("read", n.clone(), json!("a"))];
        assert_eq!(inferred(&kv).0, Some("kv"));
        let (m, why) = inferred(&[("frob", n.clone(), n)]);
        assert_eq!(m, None);
        assert!(why.contains("frob"), "{why}");
    }

    #[test]
    fn nil_reads_default_by_format_and_show_only_for_registers() {
        let req = ModelRequest::default();
        let (spec, choice) = settle(ModelName::CasRegister, "w".into(), Format::JepsenEdn, &req);
        assert_eq!(
            spec,
            ModelSpec::CasRegister {
                initial: Value::Null,
                nil_reads: NilReads::Unknown
            }
        );
        assert_eq!(choice.nil_reads, Some("unknown"));
        let (_, choice) = settle(ModelName::Register, "w".into(), Format::Jsonl, &req);
        assert_eq!(choice.nil_reads, Some("value"));
        let (_, choice) = settle(ModelName::Mutex, "w".into(), Format::JepsenEdn, &req);
        assert_eq!(choice.nil_reads, None);
        let forced = ModelRequest {
            nil_reads: Some(NilReads::Value),
            ..ModelRequest::default()
        };
        let (spec, _) = settle(ModelName::MultiRegister, "w".into(), Format::JepsenEdn, &forced);
        assert_eq!(
            spec,
            ModelSpec::MultiRegister {
                initial: Value::Null,
                nil_reads: NilReads::Value
            }
        );
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_nil_reads("unknown"), Ok(NilReads::Unknown));
        assert!(parse_nil_reads("nil").is_err());
        assert_eq!(parse_initial("0"), json!(0));
        assert_eq!(parse_initial("a"), json!("a"));
        assert_eq!(parse_initial("null"), Value::Null);
    }
}

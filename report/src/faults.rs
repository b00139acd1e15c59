//! The nemesis's faults as bands of time: when each fault started, when it
//! was healed, and what it did.
//!
//! The history records faults as paired verbs of the nemesis process
//! (STYLE.md, 7): `start-partition`/`stop-partition`, `kill`/`start`,
//! `pause`/`resume`, `start-disk-stall`/`stop-disk-stall`, ... The nemesis
//! crate's [`FaultEvent`] names them all, and an event is read by its whole
//! `f` through it: another tool's nemesis event (an imported history's
//! `start-foo`) is an instant of its own, never taken apart. Pairing them here
//! gives every part of the report one answer to "which fault was active at
//! that moment". A fault never healed in the history runs to its end; an
//! event with no partner is an instant. A fault or heal that did not take
//! effect is an event of type `fail` with the error: an instant labelled
//! `... FAILED: <error>`, which opens and closes nothing. At most
//! [`MAX_BANDS`] bands are kept.

use std::collections::BTreeMap;

use faultline_histories::{Event, EventType, History};
use faultline_nemesis::{FaultEvent, FaultFamily};
use serde_json::Value;

use crate::escape::truncate;

/// Most bands a report draws; a history with more keeps the first ones.
pub const MAX_BANDS: usize = 10_000;
/// Longest fault label, in characters.
const LABEL_CHARS_MAX: usize = 120;

/// One fault, from its start to its heal.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultBand {
    /// What the fault did; `None` for a nemesis event faultline does not
    /// write (another tool's, in an imported history).
    pub family: Option<FaultFamily>,
    /// `partition {"n1":["n2"]}`, `kill n2`, ...
    pub label: String,
    pub start_ns: u64,
    /// When it was healed; `None` when the history ends first.
    pub end_ns: Option<u64>,
}

impl FaultBand {
    /// The CSS class suffix and legend word, which decides the band's
    /// colour: a failover cuts links as a partition does, and every disk
    /// fault shares one colour.
    pub fn class(&self) -> &'static str {
        match self.family {
            Some(FaultFamily::Partition | FaultFamily::Failover) => "partition",
            Some(FaultFamily::Kill) => "kill",
            Some(FaultFamily::Pause) => "pause",
            Some(f) if f.is_disk() => "disk",
            Some(FaultFamily::Clock) => "clock",
            _ => "other",
        }
    }

    /// The end, or `t_end` for a fault never healed.
    pub fn end_or(&self, t_end: u64) -> u64 {
        self.end_ns.unwrap_or(t_end).max(self.start_ns)
    }

    /// Whether the fault was in force at some time in `[from, to]`.
    pub fn overlaps(&self, from: u64, to: u64, t_end: u64) -> bool {
        self.start_ns <= to && self.end_or(t_end) >= from
    }
}

/// The node a node fault names: `{"node": "n1"}` or a bare string.
fn node_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("node").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// How an event opens or closes a fault: `(family, slot, opens)`, where
/// the slot pairs an opening with its closing. The event is matched by its
/// whole `f` ([`FaultEvent`]); a failed one opens and closes nothing.
fn classify(ev: &Event) -> (Option<FaultFamily>, String, Option<bool>) {
    let event = FaultEvent::from_name(ev.f.as_str());
    let family = event.map(FaultEvent::family);
    if ev.kind == EventType::Fail {
        let error = ev.error.as_deref().unwrap_or("no error given");
        return (family, format!("{} FAILED: {error}", ev.f), None);
    }
    match event {
        Some(e) => (family, slot(e.family(), &ev.value), Some(e.opens())),
        None => (None, ev.f.to_string(), None),
    }
}

/// Kills and pauses pair per node; other faults per family.
fn slot(family: FaultFamily, value: &Value) -> String {
    match family {
        FaultFamily::Kill | FaultFamily::Pause => {
            format!("{} {}", family.name(), node_of(value).unwrap_or_default())
        }
        f => f.name().to_owned(),
    }
}

fn label(family: Option<FaultFamily>, slot: &str, value: &Value) -> String {
    let per_node = matches!(family, Some(FaultFamily::Kill | FaultFamily::Pause));
    let text = if per_node || value.is_null() {
        slot.to_owned()
    } else {
        format!("{slot} {value}")
    };
    truncate(&text, LABEL_CHARS_MAX)
}

/// The history's faults as bands, in order of start.
pub fn fault_bands(history: &History) -> Vec<FaultBand> {
    let mut open: BTreeMap<String, FaultBand> = BTreeMap::new();
    let mut done = Vec::new();
    for ev in &history.nemesis {
        if done.len() + open.len() >= MAX_BANDS {
            break;
        }
        let (family, slot, opens) = classify(ev);
        match opens {
            Some(true) => {
                // A second start of the same slot ends the first one.
                if let Some(mut prev) = open.remove(&slot) {
                    prev.end_ns = Some(ev.time);
                    done.push(prev);
                }
                let band = FaultBand {
                    family,
                    label: label(family, &slot, &ev.value),
                    start_ns: ev.time,
                    end_ns: None,
                };
                open.insert(slot, band);
            }
            Some(false) => match open.remove(&slot) {
                Some(mut b) => {
                    b.end_ns = Some(ev.time);
                    done.push(b);
                }
                None => done.push(instant(family, &format!("{} (no start)", ev.f), ev)),
            },
            None => done.push(instant(family, &slot, ev)),
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|b| (b.start_ns, b.end_ns));
    done
}

fn instant(family: Option<FaultFamily>, slot: &str, ev: &Event) -> FaultBand {
    FaultBand {
        family,
        label: label(family, slot, &ev.value),
        start_ns: ev.time,
        end_ns: Some(ev.time),
    }
}

/// The labels of the faults in force at some time in `[from, to]`.
pub fn active_during(bands: &[FaultBand], from: u64, to: u64, t_end: u64) -> Vec<&str> {
    bands
        .iter()
        .filter(|b| b.overlaps(from, to, t_end))
        .map(|b| b.label.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{EventType, Process, F};
    use serde_json::json;

    fn nem(i: u64, t: u64, f: &str, v: Value) -> Event {
        Event::new(i, t, Process::Nemesis, EventType::Info, F::parse(f), v)
    }

    #[test]
    fn pairs_starts_with_stops_per_node_and_keeps_unhealed_faults_open() {
        let h = History::from_events([
            nem(0, 10, "start-partition", json!({"n1": ["n2", "n3"]})),
            nem(1, 20, "kill", json!({"node": "n2", "pid": 7})),
            nem(2, 30, "stop-partition", json!({"n1": ["n2", "n3"]})),
            nem(3, 35, "pause", json!({"node": "n3"})),
            nem(4, 40, "start", json!({"node": "n2", "pid": 8})),
            nem(5, 50, "clock-bump", json!(5)),
        ])
        .unwrap();
        let bands = fault_bands(&h);
        let by_label: Vec<(&str, u64, Option<u64>)> =
            bands.iter().map(|b| (b.label.as_str(), b.start_ns, b.end_ns)).collect();
        assert_eq!(
            by_label,
            vec![
                (r#"partition {"n1":["n2","n3"]}"#, 10, Some(30)),
                ("kill n2", 20, Some(40)),
                ("pause n3", 35, None),
                ("clock-bump 5", 50, Some(50)),
            ]
        );
        assert_eq!(active_during(&bands, 31, 36, 100), vec!["kill n2", "pause n3"]);
        assert_eq!(active_during(&bands, 0, 5, 100), Vec::<&str>::new());
    }

    #[test]
    fn a_failed_fault_is_an_instant_with_its_error_and_opens_nothing() {
        let mut failed = nem(1, 20, "start-partition", json!({"fault": "partition-halves"}));
        failed.kind = EventType::Fail;
        failed.error = Some("applying firewall rules on n2: nft exited 1".into());
        let h = History::from_events([
            nem(0, 10, "kill", json!({"node": "n1"})),
            failed,
            nem(2, 30, "start", json!({"node": "n1"})),
        ])
        .unwrap();
        let bands = fault_bands(&h);
        assert_eq!(bands.len(), 2, "{bands:?}");
        assert_eq!((bands[0].label.as_str(), bands[0].end_ns), ("kill n1", Some(30)));
        assert_eq!(bands[1].family, Some(FaultFamily::Partition));
        assert_eq!((bands[1].start_ns, bands[1].end_ns), (20, Some(20)));
        assert!(
            bands[1]
                .label
                .starts_with("start-partition FAILED: applying firewall rules on n2: nft exited 1"),
            "{}",
            bands[1].label
        );
    }

    #[test]
    fn a_history_written_before_the_typed_faults_reads_the_same() {
        // Lines as faultline wrote them when `f` was a plain string.
        let text = r#"{"index":0,"time":10,"process":"nemesis","type":"info","f":"start-partition","value":{"n1":["n2"]}}
{"index":1,"time":15,"process":"nemesis","type":"info","f":"start-disk-slow","value":{"node":"n3"}}
{"index":2,"time":20,"process":"nemesis","type":"info","f":"stop-partition","value":null}
{"index":3,"time":25,"process":"nemesis","type":"fail","f":"kill","value":{"fault":"kill"},"error":"n2 is not running"}
{"index":4,"time":30,"process":"nemesis","type":"info","f":"stop-disk-slow","value":{"node":"n3"}}
"#;
        let h = faultline_histories::read_history(text.as_bytes(), std::path::Path::new("old.jsonl")).unwrap();
        let got: Vec<(Option<FaultFamily>, u64, Option<u64>)> = fault_bands(&h)
            .iter()
            .map(|b| (b.family, b.start_ns, b.end_ns))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(FaultFamily::Partition), 10, Some(20)),
                (Some(FaultFamily::DiskSlow), 15, Some(30)),
                (Some(FaultFamily::Kill), 25, Some(25)),
            ]
        );
    }

    #[test]
    fn another_tools_events_are_instants_whatever_their_prefix() {
        let h = History::from_events([nem(0, 10, "start-foo", json!(1)), nem(1, 20, "stop-foo", json!(1))]).unwrap();
        let bands = fault_bands(&h);
        let got: Vec<(&str, &str, Option<u64>)> =
            bands.iter().map(|b| (b.class(), b.label.as_str(), b.end_ns)).collect();
        assert_eq!(
            got,
            vec![("other", "start-foo 1", Some(10)), ("other", "stop-foo 1", Some(20))]
        );
    }

    #[test]
    fn disk_clock_and_failover_faults_get_their_own_colours() {
        let h = History::from_events([
            nem(0, 10, "start-disk-stall", json!({"node": "n1"})),
            nem(1, 20, "stop-disk-stall", json!({"node": "n1"})),
            nem(2, 30, "start-power-loss", json!({"pids": {}})),
            nem(3, 40, "stop-power-loss", json!({})),
            nem(4, 50, "start-clock", json!({"offsets_ms": {"n2": -1500}})),
            nem(5, 60, "stop-clock", json!({})),
            nem(6, 70, "start-failover", json!({"old": "n1", "new": "n2"})),
            nem(7, 80, "stop-failover", json!({})),
        ])
        .unwrap();
        let kinds: Vec<(&str, u64, Option<u64>)> = fault_bands(&h)
            .iter()
            .map(|b| (b.class(), b.start_ns, b.end_ns))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("disk", 10, Some(20)),
                ("disk", 30, Some(40)),
                ("clock", 50, Some(60)),
                ("partition", 70, Some(80)),
            ]
        );
    }
}

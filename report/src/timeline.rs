//! The timeline's data: operations per process as bars in time, small
//! enough that a browser draws a million-operation history at once.
//!
//! Two promises shape it. First, every operation an anomaly names is drawn
//! individually, with the operations around it, so the proof can be read
//! op by op. Second, the data stays bounded whatever the history's size:
//! at most [`Limits::detail_ops_max`] operations are kept individually
//! (all of them in a small history; windows around anomalies and fault
//! starts in a large one), and every other operation is counted into a
//! cell of a grid of time buckets by lane, at most [`Limits::cells_max`]
//! cells. Processes retired after an `info` hand their work to fresh
//! process numbers, so processes whose lives do not overlap share a lane:
//! there are as many lanes as processes ever ran at once, at most
//! [`Limits::lanes_max`]. Each lane carries a label naming its processes
//! (`p3 p13 +2`), and each fault band its short name, so the page can
//! label lanes and name bands without re-deriving either.
//!
//! The output is compact JSON read by `assets/report.js`; times are in
//! microseconds since the test started.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write;

use faultline_histories::{History, Op, Outcome, Process};

use crate::escape::truncate;
use crate::faults::FaultBand;
use crate::legend::short_name;

/// Bounds on the timeline's data.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Operations drawn individually.
    pub detail_ops_max: usize,
    /// Aggregate cells (lane x time bucket) for the rest.
    pub cells_max: usize,
    /// Time buckets across the whole test.
    pub buckets_max: usize,
    /// Lanes; processes past it share the last lane.
    pub lanes_max: usize,
    /// Operations an anomaly marks (the rest of a huge anomaly is not marked).
    pub marked_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            detail_ops_max: 50_000,
            cells_max: 200_000,
            buckets_max: 2_000,
            lanes_max: 1_024,
            marked_max: 5_000,
        }
    }
}

/// Characters of an operation's description kept for its tooltip.
const DESC_CHARS_MAX: usize = 60;
/// Processes named in a lane's label; the rest are counted (`p3 p13 +4`).
const LANE_NAMES_MAX: usize = 2;
/// Fewest operations kept on each side of an anomaly's operation.
const RADIUS_MIN: usize = 20;

/// The end of the history: the latest time any event carries.
pub fn end_time(history: &History) -> u64 {
    let ops = history
        .ops
        .iter()
        .map(|o| o.complete_time.unwrap_or(o.invoke_time))
        .max()
        .unwrap_or(0);
    let nem = history.nemesis.iter().map(|e| e.time).max().unwrap_or(0);
    ops.max(nem)
}

/// The outcome's code in the data: 0 ok, 1 fail, 2 info, 3 pending.
fn outcome_code(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Fail => 1,
        Outcome::Info => 2,
        Outcome::Pending => 3,
    }
}

/// Assigns each client process a lane such that processes alive at the
/// same time never share one (greedy colouring of lifetimes).
pub fn lanes(history: &History, t_end: u64, lanes_max: usize) -> (HashMap<Process, usize>, usize) {
    let mut life: BTreeMap<Process, (u64, u64)> = BTreeMap::new();
    for op in &history.ops {
        let end = op.complete_time.unwrap_or(t_end);
        let e = life.entry(op.process).or_insert((op.invoke_time, end));
        e.0 = e.0.min(op.invoke_time);
        e.1 = e.1.max(end);
    }
    let mut by_start: Vec<(u64, u64, Process)> = life.into_iter().map(|(p, (s, e))| (s, e, p)).collect();
    by_start.sort();
    let mut free: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut lane_of = HashMap::with_capacity(by_start.len());
    let mut count = 0usize;
    for (start, end, p) in by_start {
        let lane = match free.peek() {
            // Strictly before: a process starting the instant another ends
            // would otherwise draw on top of it.
            Some(Reverse((free_at, lane))) if *free_at < start => {
                let lane = *lane;
                free.pop();
                lane
            }
            _ if count < lanes_max => {
                count += 1;
                count - 1
            }
            _ => lanes_max - 1,
        };
        free.push(Reverse((end, lane)));
        lane_of.insert(p, lane);
    }
    (lane_of, count.max(1))
}

/// Which operations (positions in `history.ops`) are drawn individually.
fn detail_positions(history: &History, centers: &BTreeSet<usize>, limits: &Limits) -> Vec<bool> {
    let n = history.ops.len();
    if n <= limits.detail_ops_max {
        return vec![true; n];
    }
    let mut keep = vec![false; n];
    if centers.is_empty() {
        return keep;
    }
    let radius = (limits.detail_ops_max / (2 * centers.len())).max(RADIUS_MIN);
    let mut kept = 0usize;
    // Anomalies' own operations first, so they are detailed whatever the budget.
    for &c in centers {
        if !keep[c] {
            keep[c] = true;
            kept += 1;
        }
    }
    for &c in centers {
        for i in c.saturating_sub(radius)..(c + radius + 1).min(n) {
            if kept >= limits.detail_ops_max {
                return keep;
            }
            if !keep[i] {
                keep[i] = true;
                kept += 1;
            }
        }
    }
    keep
}

/// The position of the operation invoked at `index`, if any (operations are
/// in invocation order, so invoke indices increase).
pub fn position_of(history: &History, index: u64) -> Option<usize> {
    history.ops.binary_search_by_key(&index, |o| o.invoke_index).ok()
}

fn describe(history: &History, op: &Op) -> String {
    let key = op.key.map(|k| format!(" {}", history.key(k))).unwrap_or_default();
    let value = op.value();
    let value = if value.is_null() {
        String::new()
    } else {
        format!(" {value}")
    };
    let mut s = truncate(&format!("{}{key}{value}", op.f), DESC_CHARS_MAX);
    if let Some(e) = &op.error {
        s.push_str(" (");
        s.push_str(&truncate(e, DESC_CHARS_MAX / 2));
        s.push(')');
    }
    s
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// Builds the timeline's JSON. `marked` holds the invoke indices of the
/// operations anomalies name.
pub fn timeline_json(history: &History, marked: &BTreeSet<u64>, bands: &[FaultBand], limits: &Limits) -> String {
    let t_end = end_time(history);
    let (lane_of, lane_count) = lanes(history, t_end, limits.lanes_max);
    let marked_pos: BTreeSet<usize> = marked
        .iter()
        .take(limits.marked_max)
        .filter_map(|&i| position_of(history, i))
        .collect();
    let mut centers = marked_pos.clone();
    for b in bands {
        let p = history.ops.partition_point(|o| o.invoke_time < b.start_ns);
        if p < history.ops.len() && centers.len() < limits.detail_ops_max / (2 * RADIUS_MIN) {
            centers.insert(p);
        }
    }
    let detail = detail_positions(history, &centers, limits);
    let mut fs: Vec<String> = Vec::new();
    let mut f_code: HashMap<String, usize> = HashMap::new();
    let mut out = String::with_capacity(1 << 20);
    let _ = write!(out, "{{\"t_end\":{},\"lanes\":{lane_count},\"ops\":[", t_end / 1000);
    let mut first = true;
    for (op, _) in history.ops.iter().zip(&detail).filter(|(_, d)| **d) {
        let name = op.f.as_str();
        let code = *f_code.entry(name.to_owned()).or_insert_with(|| {
            fs.push(name.to_owned());
            fs.len() - 1
        });
        let end = op.complete_time.map(|t| (t / 1000) as i64).unwrap_or(-1);
        let sep = if first { "" } else { "," };
        first = false;
        let _ = write!(
            out,
            "{sep}[{},{},{end},{},{code},{},{},{}]",
            lane_of[&op.process],
            op.invoke_time / 1000,
            outcome_code(op.outcome),
            op.invoke_index,
            op.process,
            json_str(&describe(history, op))
        );
    }
    out.push_str("],\"fs\":");
    out.push_str(&serde_json::to_string(&fs).expect("strings serialize"));
    out.push_str(",\"lane_names\":");
    out.push_str(&serde_json::to_string(&lane_names(&lane_of, lane_count)).expect("strings serialize"));
    write_cells(&mut out, history, &detail, &lane_of, lane_count, t_end, limits);
    write_bands(&mut out, bands, t_end);
    out.push_str(",\"marked\":[");
    let marked_idx: Vec<String> = marked_pos
        .iter()
        .map(|&p| history.ops[p].invoke_index.to_string())
        .collect();
    out.push_str(&marked_idx.join(","));
    let _ = write!(
        out,
        "],\"total_ops\":{},\"detail_ops\":{}}}",
        history.ops.len(),
        detail.iter().filter(|d| **d).count()
    );
    out
}

/// The grid of counts for operations not drawn individually:
/// `"bucket_us":w,"cells":[lane,bucket,ok,fail,info,pending, ...]`.
fn write_cells(
    out: &mut String,
    history: &History,
    detail: &[bool],
    lane_of: &HashMap<Process, usize>,
    lane_count: usize,
    t_end: u64,
    limits: &Limits,
) {
    let buckets = (limits.cells_max / lane_count).clamp(1, limits.buckets_max.max(1)) as u64;
    let width_us = (t_end / 1000 / buckets).max(1) + 1;
    let mut cells: HashMap<(usize, u64), [u32; 4]> = HashMap::new();
    for (op, _) in history.ops.iter().zip(detail).filter(|(_, d)| !**d) {
        let b = (op.invoke_time / 1000) / width_us;
        cells.entry((lane_of[&op.process], b)).or_default()[outcome_code(op.outcome)] += 1;
    }
    let mut cells: Vec<((usize, u64), [u32; 4])> = cells.into_iter().collect();
    cells.sort_unstable_by_key(|c| c.0);
    let _ = write!(out, ",\"bucket_us\":{width_us},\"cells\":[");
    for (i, ((lane, b), n)) in cells.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{lane},{b},{},{},{},{}", n[0], n[1], n[2], n[3]);
    }
    out.push(']');
}

/// Each lane's label: the processes that ran in it, in order, the first
/// [`LANE_NAMES_MAX`] by name and the rest counted.
fn lane_names(lane_of: &HashMap<Process, usize>, lane_count: usize) -> Vec<String> {
    let mut procs: Vec<Vec<Process>> = vec![Vec::new(); lane_count];
    for (p, &lane) in lane_of {
        procs[lane].push(*p);
    }
    procs
        .into_iter()
        .map(|mut ps| {
            ps.sort();
            let mut name: Vec<String> = ps.iter().take(LANE_NAMES_MAX).map(|p| format!("p{p}")).collect();
            if ps.len() > LANE_NAMES_MAX {
                name.push(format!("+{}", ps.len() - LANE_NAMES_MAX));
            }
            name.join(" ")
        })
        .collect()
}

/// Faults as `[start, end, kind, label, short name]`.
fn write_bands(out: &mut String, bands: &[FaultBand], t_end: u64) {
    out.push_str(",\"bands\":[");
    for (i, b) in bands.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}[{},{},{},{},{}]",
            b.start_ns / 1000,
            b.end_or(t_end) / 1000,
            json_str(b.class()),
            json_str(&b.label),
            json_str(&short_name(&b.label))
        );
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_histories::{Event, EventType, F};
    use serde_json::{json, Value};

    /// `n` writes by `procs` processes, one after another per process.
    pub(crate) fn history(n: u64, procs: u64) -> History {
        let mut evs = Vec::new();
        let mut i = 0;
        for k in 0..n {
            let p = k % procs;
            let t = k * 1_000_000;
            evs.push(Event::new(i, t, Process::Client(p), EventType::Invoke, F::Write, json!(k)).with_key("x"));
            evs.push(
                Event::new(
                    i + 1,
                    t + 500_000,
                    Process::Client(p),
                    EventType::Ok,
                    F::Write,
                    json!(k),
                )
                .with_key("x"),
            );
            i += 2;
        }
        History::from_events(evs).unwrap()
    }

    #[test]
    fn processes_that_never_overlap_share_a_lane() {
        let h = history(10, 10);
        let (lanes, count) = lanes(&h, end_time(&h), 1024);
        assert_eq!(count, 1, "{lanes:?}");
        assert_eq!(lane_names(&lanes, count), vec!["p0 p1 +8"]);
    }

    #[test]
    fn small_histories_are_all_detail_large_ones_keep_the_marked_ops_and_stay_bounded() {
        let limits = Limits {
            detail_ops_max: 100,
            cells_max: 50,
            ..Limits::default()
        };
        let small = history(50, 3);
        let v: Value = serde_json::from_str(&timeline_json(&small, &BTreeSet::new(), &[], &limits)).unwrap();
        assert_eq!(v["ops"].as_array().unwrap().len(), 50);
        assert_eq!(v["cells"].as_array().unwrap().len(), 0);

        let big = history(10_000, 3);
        let marked: BTreeSet<u64> = [5_000 * 2].into_iter().collect();
        let v: Value = serde_json::from_str(&timeline_json(&big, &marked, &[], &limits)).unwrap();
        let ops = v["ops"].as_array().unwrap();
        assert!(ops.len() <= 100 && ops.len() > 20, "{}", ops.len());
        assert!(ops.iter().any(|o| o[5] == json!(10_000)), "the marked op is detailed");
        assert_eq!(v["marked"], json!([10_000]));
        let cells = v["cells"].as_array().unwrap();
        assert!(cells.len() / 6 <= 50, "{}", cells.len());
        let counted: u64 = cells
            .chunks(6)
            .map(|c| (2..6).map(|i| c[i].as_u64().unwrap()).sum::<u64>())
            .sum();
        assert_eq!(counted as usize + ops.len(), 10_000, "every op is drawn once");
    }
}

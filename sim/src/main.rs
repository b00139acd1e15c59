//! `faultline-sim`: replay one seed, hunt over seeds, or measure.
//!
//! ```text
//! faultline-sim run --scenario safe --seed 42 [--history h.jsonl]  # replay one schedule
//! faultline-sim run --scenario txn-snapshot --seed 3 --history h.jsonl  # a transactional row
//! faultline-sim hunt --scenario fsync-never --seeds 500
//! faultline-sim bench [--seeds 300] [--threads N] [--scenario S]  # the README's table (or one row)
//! ```
//! Exit codes: 0 as expected (safe passed / unsafe found), 1 otherwise,
//! 2 on bad arguments.

use faultline_sim::{history_of, hunt, run_seed, scenario, Scenario};
use std::process::ExitCode;

/// A schedule allocates a few thousand small objects (messages, log
/// entries, history events) and frees them soon after; mimalloc serves
/// them in about half the instructions the system allocator takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: u64| flag(name).map_or(Ok(default), |v| v.parse::<u64>());
    let scenario = flag("--scenario").map(|s| scenario::named(&s).ok_or(s));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (Ok(seed), Ok(seeds), Ok(threads)) = (number("--seed", 0), number("--seeds", 300), number("--threads", cores))
    else {
        return usage("--seed, --seeds and --threads take numbers");
    };
    let threads = threads.max(1) as usize;
    match (args.first().map(String::as_str), scenario) {
        (Some("run"), Some(Ok(s))) => replay(&s, seed, flag("--history")),
        (Some("hunt"), Some(Ok(s))) => report_hunt(&s, seed, seeds, threads),
        (Some("bench"), None) => bench(&scenario::all(), seeds, threads),
        (Some("bench"), Some(Ok(s))) => bench(&[s], seeds, threads),
        (_, Some(Err(name))) => usage(&format!("no scenario {name}")),
        _ => usage("expected run, hunt or bench"),
    }
}

fn usage(why: &str) -> ExitCode {
    let names: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
    eprintln!("faultline-sim: {why}");
    eprintln!("usage: faultline-sim run --scenario S --seed N [--history FILE] | hunt --scenario S [--seed FIRST] [--seeds N] [--threads T] | bench [--seeds N] [--threads T] [--scenario S]");
    eprintln!("scenarios: {}", names.join(", "));
    ExitCode::from(2)
}

fn replay(s: &Scenario, seed: u64, history: Option<String>) -> ExitCode {
    let r = run_seed(s, seed);
    if let Some(path) = history {
        if let Err(e) = write_history(s, seed, std::path::Path::new(&path)) {
            eprintln!("faultline-sim: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
        println!(
            "history written to {path} (check it: faultline check {path}{})",
            check_flags(s)
        );
    }
    println!(
        "scenario {} seed {seed}: {:?}, {} ops, {} faults, {} events",
        s.name, r.valid, r.ops, r.faults, r.events
    );
    if let Some(a) = &r.anomaly {
        println!("anomaly: {a}");
    }
    if let Some(u) = &r.unknown {
        println!("unknown: {u}");
    }
    if !r.kinds.is_empty() {
        println!("anomaly types: {}", r.kinds.join(", "));
    }
    if let Some(b) = &r.broken {
        let what = if s.txn.is_some() {
            "the row's model broken"
        } else {
            "session guarantee broken"
        };
        println!("{what}: {b}");
    }
    if let Some(m) = &r.missing {
        println!("expected anomaly not shown: {m}");
    }
    expected(s, r.found() && r.broken.is_none())
}

/// The flags of `faultline check` that judge `s`'s history as the
/// simulation does: a transactional row under its own model.
fn check_flags(s: &Scenario) -> String {
    match &s.txn {
        Some(row) => {
            let model = row
                .holds
                .map_or(String::new(), |m| format!(" --consistency-model {}", m.name()));
            format!(" --checkers transactional{model}")
        }
        None => String::new(),
    }
}

fn write_history(s: &Scenario, seed: u64, path: &std::path::Path) -> std::io::Result<()> {
    let mut out = faultline_histories::JsonlWriter::create(path)?;
    for event in history_of(s, seed) {
        out.write_event(&event)?;
    }
    Ok(())
}

fn report_hunt(s: &Scenario, first: u64, seeds: u64, threads: usize) -> ExitCode {
    let h = hunt(s, first, seeds, s.expected.is_some(), threads);
    let per_cpu = h
        .per_cpu_second()
        .map_or(String::new(), |r| format!(", {r:.0} per CPU-second"));
    println!(
        "scenario {}: {} seeds in {:.2}s ({:.0}/s{per_cpu}), {} unknown, {} faults",
        s.name,
        h.seeds,
        h.elapsed.as_secs_f64(),
        h.per_second(),
        h.unknown,
        h.faults
    );
    if !s.must_hold.is_empty() {
        println!("{}", sessions_line(s, &h));
    }
    if s.txn.is_some() {
        println!("{}", txn_line(s, &h));
    }
    if let Some(r) = &h.found {
        println!(
            "found at seed {} (rerun: faultline-sim run --scenario {} --seed {})",
            r.seed, s.name, r.seed
        );
        println!("anomaly: {}", r.anomaly.as_deref().unwrap_or("-"));
    }
    expected(s, h.found.is_some() && h.broken == 0)
}

fn expected(s: &Scenario, found: bool) -> ExitCode {
    if found == s.expected.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// For every scenario given: schedules per second over `seeds` seeds, and
/// for the unsafe ones the seeds it took to find the anomaly (from several
/// starting points, so the figure is not one lucky seed).
fn bench(scenarios: &[Scenario], seeds: u64, threads: usize) -> ExitCode {
    println!("{seeds} schedules per scenario on {threads} threads");
    println!("| scenario | nodes | schedules/s (all threads) | per thread | per CPU-second | seeds run | seeds with the anomaly | found after (seeds; 5 hunts from seeds 0, 10k, 20k, 30k, 40k) |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    let mut kept = Vec::new();
    for s in scenarios {
        let h = hunt(s, 0, seeds, false, threads);
        if !s.must_hold.is_empty() {
            ok &= h.broken == 0;
            kept.push(sessions_line(s, &h));
        }
        if s.txn.is_some() {
            ok &= h.broken == 0;
            kept.push(txn_line(s, &h));
        }
        let finds = if s.expected.is_some() {
            let to_find: Vec<String> = (0..5)
                .map(|i| {
                    let f = hunt(s, i * 10_000, s.find_within, true, threads);
                    ok &= f.found.is_some();
                    f.found.map_or(format!("none in {}", s.find_within), |r| {
                        (r.seed - i * 10_000 + 1).to_string()
                    })
                })
                .collect();
            to_find.join(", ")
        } else {
            ok &= h.found.is_none();
            match &h.found {
                Some(r) => format!("UNEXPECTED at seed {}", r.seed),
                None => "none (safe)".into(),
            }
        };
        let share = 100.0 * h.shown as f64 / h.seeds.max(1) as f64;
        let per_cpu = h.per_cpu_second().map_or("-".into(), |r| format!("{r:.0}"));
        println!(
            "| {} | {} | {:.0} | {:.0} | {per_cpu} | {} | {} ({share:.0}%) | {finds} |",
            s.name,
            s.nodes,
            h.per_second(),
            h.per_second() / threads as f64,
            h.seeds,
            h.shown
        );
    }
    for line in kept {
        println!("{line}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What a hunt says of the session guarantees `s` must keep.
fn sessions_line(s: &Scenario, h: &faultline_sim::Hunt) -> String {
    let kept = h.seeds - h.broken;
    let line = format!(
        "{}: {} held in {kept} of {} schedules ({} operations judged)",
        s.name,
        s.must_hold.join(" and "),
        h.seeds,
        h.session_ops
    );
    line + &broken_suffix(h)
}

/// "; BROKEN at seed N (why)" for a hunt whose row's guarantee broke.
fn broken_suffix(h: &faultline_sim::Hunt) -> String {
    h.first_broken.as_ref().map_or(String::new(), |r| {
        format!("; BROKEN at seed {} ({})", r.seed, r.broken.as_deref().unwrap_or("-"))
    })
}

/// What a hunt says of a transactional row: its model kept, and the
/// anomaly types found (in how many schedules each).
fn txn_line(s: &Scenario, h: &faultline_sim::Hunt) -> String {
    let Some(row) = &s.txn else {
        return String::new();
    };
    let model = row.holds.map_or("no model".to_string(), |m| m.name().to_string());
    let kinds: Vec<String> = h.kinds.iter().map(|(k, n)| format!("{k} in {n}")).collect();
    let line = format!(
        "{} ({}): {model} held in {} of {} schedules ({} transactions judged); types found: {}",
        s.name,
        row.row,
        h.seeds - h.broken,
        h.seeds,
        h.session_ops,
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        }
    );
    line + &broken_suffix(h)
}

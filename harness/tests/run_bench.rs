//! The harness's overhead: operations per second that `faultline run`'s
//! workload phase achieves against a cluster, against a bare load loop with
//! the same client against the same cluster, in one run. Ignored by default
//! (it wants a release build and a quiet machine):
//!
//! ```sh
//! cargo test --release -p faultline-harness --test run_bench -- --ignored --nocapture
//! ```
//!
//! Both sides use `ServerClient` with the same routes (through the proxy
//! mesh, as `faultline run` does by default; `FAULTLINE_BENCH_DIRECT=1`
//! connects both straight to the nodes), the same concurrency, the same
//! register operation mix and no rate limit. The bare loop records nothing;
//! the harness side generates seeded operations, records every invoke and
//! completion to `history.jsonl` and retires processes on info.
//! `FAULTLINE_BENCH_SECS` (default 10) and `FAULTLINE_BENCH_CLIENTS`
//! (default 64) tune it; `FAULTLINE_BENCH_MIN_OPS` (default 10000) and the
//! 90% ratio are asserted.

mod run_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_harness::run::store::Store;
use faultline_harness::run::{drive_workload, Cluster, RunConfig};
use faultline_workloads::{Outcome, ReadRouting, Request};
use run_support::env;
use tokio::time::Instant;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The bare loop: each client alternates the register mix (2 reads, 1
/// write, 1 cas) on 8 keys, one op in flight, until the deadline.
async fn bare_loop(
    cluster: &Cluster,
    routing: ReadRouting,
    clients: usize,
    secs: f64,
    timeout_ms: u64,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..clients {
        let home = &cluster.nodes[w % cluster.nodes.len()];
        let mut client = cluster.client(&format!("c{w}"), home, routing, w as u64, timeout_ms);
        let done = done.clone();
        tasks.spawn(async move {
            let mut i: i64 = 0;
            while Instant::now() < deadline {
                i += 1;
                let key = format!("b{}", (i as usize + w) % 8);
                let value = (w as i64 + 1) * 1_000_000_000 + i;
                let req = match i % 4 {
                    0 | 1 => Request::Read { key },
                    2 => Request::Write { key, value },
                    _ => Request::Cas {
                        key,
                        expected: Some(value - 1),
                        new: value,
                    },
                };
                let c = client.call(&req).await;
                if c.outcome == Outcome::Info {
                    client.new_session();
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (done.load(Ordering::Relaxed), start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn harness_overhead_against_a_bare_loop() {
    let secs: f64 = var("FAULTLINE_BENCH_SECS", 10.0);
    let clients: usize = var("FAULTLINE_BENCH_CLIENTS", 64);
    let min_ops: f64 = var("FAULTLINE_BENCH_MIN_OPS", 10_000.0);
    let direct = std::env::var("FAULTLINE_BENCH_DIRECT").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut cfg = RunConfig::new(1);
    cfg.test = "bench".into();
    cfg.concurrency = clients;
    cfg.rate = 0.0;
    cfg.time_limit_s = secs;
    cfg.nemesis = Vec::new();
    cfg.client_proxies = !direct;
    let store = Store::create(dir.path(), "bench").unwrap();
    let cluster = Cluster::start(&cfg, &env, &store, clients).await.unwrap();

    // Warm up connections and the leader, then measure each side once.
    bare_loop(&cluster, cfg.routing().unwrap(), clients, 1.0, cfg.op_timeout_ms).await;
    let (bare_ops, bare_time) = bare_loop(&cluster, cfg.routing().unwrap(), clients, secs, cfg.op_timeout_ms).await;
    let bare = bare_ops as f64 / bare_time.as_secs_f64();
    let phase = drive_workload(&cfg, &cluster, &store).await.unwrap();
    let harness = phase.ops_per_s();
    cluster.stop().unwrap();

    let ratio = harness / bare;
    println!(
        "overhead bench: {clients} clients, {secs} s each, {} clients: bare loop {bare:.0} ops/s, \
         faultline run {harness:.0} ops/s ({} ok), ratio {:.1}%",
        if direct { "direct" } else { "proxied" },
        phase.ok,
        ratio * 100.0
    );
    assert!(
        ratio >= 0.9,
        "the harness reaches only {:.1}% of the bare loop",
        ratio * 100.0
    );
    assert!(harness >= min_ops, "the harness reaches only {harness:.0} ops/s");
}

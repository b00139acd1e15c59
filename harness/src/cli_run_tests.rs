//! Tests of `faultline run`'s flags: the rerun command is the config
//! (printed from it, parsed back by the CLI, it gives the same config, for
//! configs of every shape), and an error names the flag.

use super::*;
use clap::Parser;
use faultline_harness::run::pg_options::{PgCommit, PgFailover, PgOptions, PgSync};
use faultline_harness::run::{NetKind, SshSettings};
use faultline_workloads::{KeyDist, PgIsolation, PgReads, ReadRouting, RedisReads, WorkloadConfig, WorkloadKind};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// Splits a line as a POSIX shell does the words `shell_quote` writes:
/// spaces apart, single-quoted runs, and `\'`.
fn shell_split(line: &str) -> Vec<String> {
    let (mut words, mut word, mut started) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' if started => {
                words.push(std::mem::take(&mut word));
                started = false;
            }
            ' ' => {}
            '\'' => {
                started = true;
                word.extend(chars.by_ref().take_while(|q| *q != '\''));
            }
            '\\' => {
                started = true;
                word.extend(chars.next());
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// `cfg`'s rerun command, through a shell's splitting, clap and the
/// CLI's conversion.
fn reparse(cfg: &RunConfig) -> RunConfig {
    let words = shell_split(&cfg.rerun_command());
    assert_eq!(words[..2], ["faultline", "run"]);
    let argv = std::iter::once("faultline".to_owned()).chain(words[2..].iter().cloned());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    config(&cli.run).unwrap_or_else(|e| panic!("{e}"))
}

fn arb_db() -> impl Strategy<Value = DbConfig> {
    let servers = vec![
        "",
        "ack=none",
        "ack=none,reads=follower,replay_delay_ms=50",
        "reads=sticky",
    ];
    let reads = vec![RedisReads::Primary, RedisReads::Replica, RedisReads::Home];
    prop_oneof![
        select(servers).prop_map(DbConfig::faultline),
        any::<bool>().prop_map(|serializable_reads| DbConfig::Etcd { serializable_reads }),
        (select(reads), 0u32..3, any::<bool>()).prop_map(|(reads, wait, failover_wait)| DbConfig::Redis {
            reads,
            wait,
            failover_wait
        }),
        arb_pg().prop_map(DbConfig::Postgres),
    ]
}

/// PostgreSQL's options, every value of each (a quorum of at most one
/// standby, which every cluster of two or more nodes has).
fn arb_pg() -> impl Strategy<Value = PgOptions> {
    let sync = vec![PgSync::Off, PgSync::Any(1), PgSync::First(1)];
    let commit = vec![
        PgCommit::Local,
        PgCommit::RemoteWrite,
        PgCommit::On,
        PgCommit::RemoteApply,
    ];
    let reads = vec![PgReads::Primary, PgReads::Standby, PgReads::Home];
    let isolation = vec![
        PgIsolation::ReadCommitted,
        PgIsolation::RepeatableRead,
        PgIsolation::Serializable,
    ];
    let failover = vec![PgFailover::Fenced, PgFailover::Unfenced];
    (
        select(sync),
        select(commit),
        select(reads),
        select(isolation),
        select(failover),
    )
        .prop_map(|(sync, commit, reads, isolation, failover)| PgOptions {
            sync,
            commit,
            reads,
            isolation,
            failover,
        })
}

fn arb_workload() -> impl Strategy<Value = WorkloadConfig> {
    let kinds = vec![
        WorkloadKind::Register,
        WorkloadKind::ListAppend,
        WorkloadKind::Session,
        WorkloadKind::MultiKey,
        WorkloadKind::TxnListAppend,
        WorkloadKind::TxnRwRegister,
    ];
    let weights = prop::collection::vec(1u32..5, 4);
    let txn = (1usize..5, 0usize..5, 1u64..100, 0.0f64..0.99);
    (
        select(kinds),
        2usize..20,
        prop::option::of(0.1f64..10.0),
        (0u64..100, 2usize..5),
        weights,
        txn,
    )
        .prop_map(|(kind, keys, zipf, (ops_per_key, multi), weights, txn)| {
            let mut w = WorkloadConfig::new(kind);
            w.key_count = keys;
            w.key_dist = zipf.map_or(KeyDist::Uniform, KeyDist::Zipf);
            if kind.is_txn() {
                (w.txn.min_length, w.txn.max_length) = (txn.0, txn.0 + txn.1);
                (w.txn.max_writes_per_key, w.txn.read_share) = (txn.2, txn.3);
                return w;
            }
            for (slot, weight) in w.mix.weights.iter_mut().zip(weights) {
                slot.1 = weight;
            }
            w.ops_per_key = ops_per_key;
            w.multi_read_keys = multi.min(keys);
            w
        })
}

/// Nodes on this machine (proxy or netns), or over SSH with hosts.
fn arb_place() -> impl Strategy<Value = (usize, NetKind, Vec<String>, SshSettings)> {
    let ssh = (
        "[a-z]{1,6}",
        1u16..,
        prop::option::of("/k/[a-z]{1,5}"),
        prop::option::of("/h/[a-z]{1,5}"),
        any::<bool>(),
        "/tmp/[a-z]{1,6}",
    )
        .prop_map(
            |(user, port, key, known_hosts, accept_unknown_hosts, dir)| SshSettings {
                user,
                port,
                key: key.map(Into::into),
                known_hosts: known_hosts.map(Into::into),
                accept_unknown_hosts,
                remote_dir: dir.into(),
            },
        );
    prop_oneof![
        (1usize..=9, select(vec![NetKind::Proxy, NetKind::Netns])).prop_map(|(n, net)| (
            n,
            net,
            Vec::new(),
            SshSettings::default()
        )),
        (1usize..=5, any::<bool>(), ssh).prop_map(|(n, ports, ssh)| {
            let host = |i: usize| if ports { format!("h{i}:220{i}") } else { format!("h{i}") };
            (n, NetKind::Ssh, (1..=n).map(host).collect(), ssh)
        }),
    ]
}

/// Faults the database and network can take, fitted into the time.
fn fit_faults(cfg: &mut RunConfig, mut kinds: Vec<FaultKind>, spare_s: f64) {
    let etcd = matches!(cfg.db, DbConfig::Etcd { .. });
    kinds.retain(|k| !(etcd && (k.needs_clock() || (cfg.net == NetKind::Proxy && k.cuts_links()))));
    kinds.retain(|k| *k != FaultKind::Failover || matches!(cfg.db, DbConfig::Redis { .. } | DbConfig::Postgres(_)));
    cfg.time_limit_s = cfg.nemesis_interval_s * 2.0 * kinds.len() as f64 + spare_s;
    cfg.nemesis = kinds;
}

fn arb_config() -> impl Strategy<Value = RunConfig> {
    let numbers = (
        1usize..64,
        0.0f64..2000.0,
        0.5f64..10.0,
        0.01f64..30.0,
        1u64..600_000,
        0u64..5000,
        any::<u64>(),
        0.1f64..100.0,
    );
    let routing = prop::option::of(select(vec![ReadRouting::Home, ReadRouting::Any, ReadRouting::Leader]));
    let checkers = subsequence(faultline_checkers::session::names(), 0..3);
    let choices = (
        subsequence(FaultKind::ALL.to_vec(), 0..4),
        routing,
        checkers,
        any::<bool>(),
        any::<bool>(),
        subsequence(faultline_txn::Model::ALL.to_vec(), 0..3),
    );
    let test = "[a-z][a-z0-9 '._-]{0,10}";
    (test, arb_db(), arb_workload(), arb_place(), numbers, choices).prop_map(|(test, db, workload, place, n, c)| {
        let mut cfg = RunConfig::new(n.6);
        (cfg.test, cfg.db, cfg.workload) = (test, db, workload);
        if cfg.workload.kind.is_txn() && !cfg.db.kind().runs_transactions() {
            cfg.db = DbConfig::safe();
        }
        (cfg.nodes, cfg.net, cfg.hosts, cfg.ssh) = place;
        if let DbConfig::Postgres(o) = &mut cfg.db {
            if cfg.nodes < 2 {
                o.sync = PgSync::Off;
            }
        }
        (cfg.concurrency, cfg.rate, cfg.nemesis_interval_s) = (n.0, n.1, n.2);
        (cfg.op_timeout_ms, cfg.quiet_ms, cfg.check_time_limit_s) = (n.4, n.5, n.7);
        fit_faults(&mut cfg, c.0, n.3);
        cfg.read_routing = c.1;
        cfg.checkers = c.2.into_iter().map(str::to_owned).collect();
        (cfg.client_proxies, cfg.diskfs) = (c.3, c.4);
        cfg.consistency_models = c.5;
        cfg
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_rerun_command_gives_back_the_config(cfg in arb_config()) {
        prop_assert_eq!(cfg.validate(), Ok(()));
        prop_assert_eq!(reparse(&cfg), cfg);
    }
}

#[test]
fn a_flag_error_names_the_flag() {
    let cli = Cli::try_parse_from(["faultline", "--time-limit", "0"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert!(e.starts_with("--time-limit: must be within"), "{e}");
    let cli = Cli::try_parse_from(["faultline", "--db", "etcd", "--redis-wait", "1"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert_eq!(e, "--redis-wait: means nothing to etcd");
    let cli = Cli::try_parse_from(["faultline", "--workload", "txn-list-append", "--db", "redis"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert!(
        e.starts_with("--workload: txn-list-append needs a database that runs transactions"),
        "{e}"
    );
    let cli = Cli::try_parse_from(["faultline", "--workload", "txn-rw-register", "--mix", "read=1"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert_eq!(e, "--mix: means nothing to the txn-rw-register workload");
    let cli = Cli::try_parse_from(["faultline", "--read-share", "0.3"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert_eq!(e, "--read-share: means nothing to the register workload");
    let cli = Cli::try_parse_from(["faultline", "--workload", "txn-list-append", "--read-share", "1"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert!(e.starts_with("--read-share: must be within [0, 1)"), "{e}");
    let cli = Cli::try_parse_from(["faultline", "--consistency-model", "serialisable"]).unwrap();
    let e = config(&cli.run).unwrap_err().to_string();
    assert!(e.starts_with("--consistency-model: unknown consistency model"), "{e}");
}

#[test]
fn consistency_models_reach_the_config_json_and_the_rerun_command() {
    let argv = [
        "faultline",
        "--consistency-model",
        "PL-SI",
        "--consistency-model",
        "serializable",
    ];
    let cfg = config(&Cli::try_parse_from(argv).unwrap().run).unwrap();
    use faultline_txn::Model::{Serializable, SnapshotIsolation};
    assert_eq!(cfg.consistency_models, [SnapshotIsolation, Serializable]);
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(
        json["consistency_models"],
        serde_json::json!(["snapshot-isolation", "serializable"])
    );
    assert_eq!(serde_json::from_value::<RunConfig>(json).unwrap(), cfg);
    let rerun = cfg.rerun_command();
    assert!(
        rerun.contains("--consistency-model snapshot-isolation --consistency-model serializable"),
        "{rerun}"
    );
    // A config.json written before the field existed still loads.
    let mut old = serde_json::to_value(RunConfig::new(1)).unwrap();
    old.as_object_mut().unwrap().remove("consistency_models");
    assert!(serde_json::from_value::<RunConfig>(old)
        .unwrap()
        .consistency_models
        .is_empty());
}

#[test]
fn a_test_name_that_reads_as_a_flag_survives_the_rerun() {
    let mut cfg = RunConfig::new(3);
    cfg.test = "-odd".into();
    assert_eq!(reparse(&cfg), cfg);
}

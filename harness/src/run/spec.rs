//! What a user wrote for one run, and how it becomes a [`RunConfig`].
//!
//! [`RunSpec`] is the raw layer (STYLE.md, 5): every key optional, values
//! as typed. A campaign's TOML deserializes into it with serde (its keys
//! are the TOML keys, unknown ones refused), and `faultline run`'s flags
//! are converted into it by one function of the binary. [`resolve`] then
//! parses each value once and validates the whole; its error names the
//! [`Field`] at fault, which [`ConfigError`] prints as the flag (`--time-limit`)
//! or as the test and TOML key (`test "a": time_limit_s`), depending on
//! where the spec came from ([`Origin`]).
//!
//! The way back is [`rerun_args`]: every field that affects the outcome,
//! as the flags that give the same config again (a property test in the
//! binary holds it to that).

use std::path::PathBuf;

use faultline_nemesis::FaultKind;
use faultline_txn::Model;
use faultline_workloads::{KeyDist, Mix, ReadRouting, RedisReads, TxnKnob, WorkloadConfig, WorkloadKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::{DbConfig, DbKind, NetKind, RunConfig, SshSettings};

/// One run as the user wrote it: a campaign test's keys, or `faultline
/// run`'s flags. `None` is "not given": the default applies.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub name: Option<String>,
    pub nodes: Option<usize>,
    pub hosts: Option<Vec<String>>,
    pub server: Option<String>,
    pub workload: Option<String>,
    pub keys: Option<usize>,
    pub key_dist: Option<String>,
    pub mix: Option<String>,
    pub ops_per_key: Option<u64>,
    pub multi_read_keys: Option<usize>,
    /// The transactional workloads' knobs (Elle's names).
    pub min_txn_length: Option<usize>,
    pub max_txn_length: Option<usize>,
    pub max_writes_per_key: Option<u64>,
    pub read_share: Option<f64>,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub time_limit_s: Option<f64>,
    pub nemesis: Option<String>,
    pub nemesis_interval_s: Option<f64>,
    pub seed: Option<u64>,
    pub op_timeout_ms: Option<u64>,
    pub quiet_ms: Option<u64>,
    pub checkers: Option<Vec<String>>,
    /// The consistency models the transactional checker judges (Elle's
    /// names); `consistency_model` is taken too.
    #[serde(alias = "consistency_model")]
    pub consistency_models: Option<Vec<String>>,
    pub check_time_limit_s: Option<f64>,
    pub direct_clients: Option<bool>,
    pub read_routing: Option<String>,
    /// `proxy`, `netns` or `ssh` (implied by `hosts`).
    pub net: Option<String>,
    /// `faultline`, `etcd` or `redis`.
    pub db: Option<String>,
    pub etcd_serializable_reads: Option<bool>,
    pub redis_reads: Option<String>,
    pub redis_wait: Option<u32>,
    pub redis_failover_wait: Option<bool>,
    /// PostgreSQL: `off`, `any:N` or `first:N`.
    pub pg_sync: Option<String>,
    /// PostgreSQL: `local`, `remote_write`, `on` or `remote_apply`.
    pub pg_commit: Option<String>,
    /// PostgreSQL: `primary`, `standby` or `home`.
    pub pg_reads: Option<String>,
    /// PostgreSQL: `read-committed`, `repeatable-read` or `serializable`.
    pub pg_isolation: Option<String>,
    /// PostgreSQL: `fenced` or `unfenced`.
    pub pg_failover: Option<String>,
    pub diskfs: Option<bool>,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub accept_unknown_hosts: Option<bool>,
    pub remote_dir: Option<PathBuf>,
}

/// A setting of a run, by which an error says what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Test,
    Nodes,
    Server,
    Workload,
    Keys,
    KeyDist,
    Mix,
    OpsPerKey,
    MultiReadKeys,
    MinTxnLength,
    MaxTxnLength,
    MaxWritesPerKey,
    ReadShare,
    Concurrency,
    Rate,
    TimeLimit,
    Nemesis,
    NemesisInterval,
    OpTimeout,
    Checkers,
    ConsistencyModels,
    CheckTimeLimit,
    ReadRouting,
    Net,
    Db,
    EtcdSerializableReads,
    RedisReads,
    RedisWait,
    RedisFailoverWait,
    PgSync,
    PgCommit,
    PgReads,
    PgIsolation,
    PgFailover,
}

/// Each field's TOML key and flag.
const NAMES: [(Field, &str, &str); 34] = [
    (Field::Test, "name", "--test"),
    (Field::Nodes, "nodes", "--nodes"),
    (Field::Server, "server", "--server"),
    (Field::Workload, "workload", "--workload"),
    (Field::Keys, "keys", "--keys"),
    (Field::KeyDist, "key_dist", "--key-dist"),
    (Field::Mix, "mix", "--mix"),
    (Field::OpsPerKey, "ops_per_key", "--ops-per-key"),
    (Field::MultiReadKeys, "multi_read_keys", "--multi-read-keys"),
    (Field::MinTxnLength, "min_txn_length", "--min-txn-length"),
    (Field::MaxTxnLength, "max_txn_length", "--max-txn-length"),
    (Field::MaxWritesPerKey, "max_writes_per_key", "--max-writes-per-key"),
    (Field::ReadShare, "read_share", "--read-share"),
    (Field::Concurrency, "concurrency", "--concurrency"),
    (Field::Rate, "rate", "--rate"),
    (Field::TimeLimit, "time_limit_s", "--time-limit"),
    (Field::Nemesis, "nemesis", "--nemesis"),
    (Field::NemesisInterval, "nemesis_interval_s", "--nemesis-interval"),
    (Field::OpTimeout, "op_timeout_ms", "--op-timeout-ms"),
    (Field::Checkers, "checkers", "--checkers"),
    (Field::ConsistencyModels, "consistency_models", "--consistency-model"),
    (Field::CheckTimeLimit, "check_time_limit_s", "--check-time-limit"),
    (Field::ReadRouting, "read_routing", "--read-routing"),
    (Field::Net, "net", "--net"),
    (Field::Db, "db", "--db"),
    (
        Field::EtcdSerializableReads,
        "etcd_serializable_reads",
        "--etcd-serializable-reads",
    ),
    (Field::RedisReads, "redis_reads", "--redis-reads"),
    (Field::RedisWait, "redis_wait", "--redis-wait"),
    (Field::RedisFailoverWait, "redis_failover_wait", "--redis-failover-wait"),
    (Field::PgSync, "pg_sync", "--pg-sync"),
    (Field::PgCommit, "pg_commit", "--pg-commit"),
    (Field::PgReads, "pg_reads", "--pg-reads"),
    (Field::PgIsolation, "pg_isolation", "--pg-isolation"),
    (Field::PgFailover, "pg_failover", "--pg-failover"),
];

impl Field {
    fn names(self) -> (&'static str, &'static str) {
        let (_, key, flag) = NAMES.iter().find(|(f, _, _)| *f == self).expect("every field is named");
        (key, flag)
    }

    /// The campaign TOML key.
    pub fn key(self) -> &'static str {
        self.names().0
    }

    /// The `faultline run` flag.
    pub fn flag(self) -> &'static str {
        self.names().1
    }
}

/// A setting that does not parse or does not fit, by field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("bad configuration: {}: {message}", field.key())]
pub struct Invalid {
    /// The field at fault.
    pub field: Field,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    /// `field` is wrong: `message`.
    pub fn new(field: Field, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }

    /// The error as the user who wrote the spec sees it.
    pub fn at(self, origin: Origin) -> ConfigError {
        ConfigError { origin, invalid: self }
    }
}

/// Where a spec came from, so an error names what the user wrote.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// `faultline run`'s flags.
    Cli,
    /// A campaign file's test of this name.
    Campaign { test: String },
}

/// A bad setting, named as its user wrote it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {}", self.place(), invalid.message)]
pub struct ConfigError {
    /// Where the spec came from.
    pub origin: Origin,
    /// The field and what is wrong.
    pub invalid: Invalid,
}

impl ConfigError {
    fn place(&self) -> String {
        match &self.origin {
            Origin::Cli => self.invalid.field.flag().to_owned(),
            Origin::Campaign { test } => format!("test {test:?}: {}", self.invalid.field.key()),
        }
    }
}

/// Parses an optional value of `field` with `parse`.
fn parsed<T, E: std::fmt::Display>(
    field: Field,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, Invalid> {
    value
        .map(|v| parse(v).map_err(|e| Invalid::new(field, e.to_string())))
        .transpose()
}

/// A word of a serde-named enum (`netns`, `redis`), or the words expected.
fn word<T: DeserializeOwned>(expected: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |s| {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("{s:?}: expected {expected}"))
    }
}

/// Parses and validates `spec`; `fallback_seed` is the seed when the spec
/// names none.
pub fn resolve(spec: &RunSpec, fallback_seed: u64) -> Result<RunConfig, Invalid> {
    let cfg = parse(spec, fallback_seed)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses `spec` without checking how its values go together (a campaign's
/// skipped test).
pub fn parse(spec: &RunSpec, fallback_seed: u64) -> Result<RunConfig, Invalid> {
    let kind =
        parsed(Field::Workload, spec.workload.as_deref(), WorkloadKind::parse)?.unwrap_or(WorkloadKind::Register);
    let db = db(spec)?;
    let mut cfg = RunConfig::new(spec.seed.unwrap_or(fallback_seed));
    cfg.test = spec.name.clone().unwrap_or_else(|| default_name(db.kind(), kind));
    cfg.workload = workload(spec, kind)?;
    cfg.db = db;
    place(spec, &mut cfg)?;
    if let Some(n) = parsed(Field::Nemesis, spec.nemesis.as_deref(), FaultKind::parse_list)? {
        cfg.nemesis = n;
    }
    cfg.read_routing = match spec.read_routing.as_deref() {
        None | Some("auto") => None,
        Some(r) => Some(ReadRouting::parse(r).map_err(|e| Invalid::new(Field::ReadRouting, e.to_string()))?),
    };
    cfg.checkers = match spec.checkers.as_deref() {
        None => Vec::new(),
        Some([auto]) if auto == crate::check::AUTO => Vec::new(),
        Some(names) => names.to_vec(),
    };
    cfg.consistency_models = consistency_models(spec)?;
    set_numbers(spec, &mut cfg);
    Ok(cfg)
}

/// The consistency models by name; none given is the checker's default.
fn consistency_models(spec: &RunSpec) -> Result<Vec<Model>, Invalid> {
    let names = spec.consistency_models.as_deref().unwrap_or_default();
    names
        .iter()
        .map(|n| {
            n.parse::<Model>()
                .map_err(|e| Invalid::new(Field::ConsistencyModels, e.to_string()))
        })
        .collect()
}

/// The workload's name, prefixed with the database's when it is not ours.
fn default_name(db: DbKind, kind: WorkloadKind) -> String {
    match db {
        DbKind::Faultline => kind.name().to_owned(),
        other => format!("{}-{}", other.name(), kind.name()),
    }
}

fn set_numbers(spec: &RunSpec, cfg: &mut RunConfig) {
    macro_rules! set {
        ($($f:ident => $g:ident),*) => { $(if let Some(v) = spec.$f { cfg.$g = v; })* };
    }
    set!(concurrency => concurrency, rate => rate, time_limit_s => time_limit_s,
         nemesis_interval_s => nemesis_interval_s, op_timeout_ms => op_timeout_ms, quiet_ms => quiet_ms,
         check_time_limit_s => check_time_limit_s, diskfs => diskfs);
    cfg.client_proxies = !spec.direct_clients.unwrap_or(false);
}

fn workload(spec: &RunSpec, kind: WorkloadKind) -> Result<WorkloadConfig, Invalid> {
    knobs_fit(spec, kind)?;
    let mut w = WorkloadConfig::new(kind);
    if let Some(d) = parsed(Field::KeyDist, spec.key_dist.as_deref(), KeyDist::parse)? {
        w.key_dist = d;
    }
    if let Some(m) = parsed(Field::Mix, spec.mix.as_deref(), Mix::parse)? {
        w.mix = m;
    }
    w.key_count = spec.keys.unwrap_or(w.key_count);
    w.ops_per_key = spec.ops_per_key.unwrap_or(w.ops_per_key);
    w.multi_read_keys = spec.multi_read_keys.unwrap_or(w.multi_read_keys);
    let t = &mut w.txn;
    t.min_length = spec.min_txn_length.unwrap_or(t.min_length);
    t.max_length = spec.max_txn_length.unwrap_or(t.max_length);
    t.max_writes_per_key = spec.max_writes_per_key.unwrap_or(t.max_writes_per_key);
    t.read_share = spec.read_share.unwrap_or(t.read_share);
    Ok(w)
}

/// Refuses a knob of the other family of workloads, which would silently
/// do nothing: the transactional workloads mix micro-operations by
/// `read_share` and retire keys by `max_writes_per_key`; the single-key
/// ones take a mix, `ops_per_key` and snapshot sizes.
fn knobs_fit(spec: &RunSpec, kind: WorkloadKind) -> Result<(), Invalid> {
    let single_key = [
        (Field::Mix, spec.mix.is_some()),
        (Field::OpsPerKey, spec.ops_per_key.is_some()),
        (Field::MultiReadKeys, spec.multi_read_keys.is_some()),
    ];
    let txn = [
        (Field::MinTxnLength, spec.min_txn_length.is_some()),
        (Field::MaxTxnLength, spec.max_txn_length.is_some()),
        (Field::MaxWritesPerKey, spec.max_writes_per_key.is_some()),
        (Field::ReadShare, spec.read_share.is_some()),
    ];
    let foreign = if kind.is_txn() {
        single_key.as_slice()
    } else {
        txn.as_slice()
    };
    match foreign.iter().find(|(_, given)| *given) {
        Some((field, _)) => Err(Invalid::new(
            *field,
            format!("means nothing to the {} workload", kind.name()),
        )),
        None => Ok(()),
    }
}

/// The field of a transactional workload's knob.
pub fn txn_field(knob: TxnKnob) -> Field {
    match knob {
        TxnKnob::MinLength => Field::MinTxnLength,
        TxnKnob::MaxLength => Field::MaxTxnLength,
        TxnKnob::MaxWritesPerKey => Field::MaxWritesPerKey,
        TxnKnob::ReadShare => Field::ReadShare,
    }
}

/// The database and its options; an option of another database is an
/// error, since it would silently do nothing.
fn db(spec: &RunSpec) -> Result<DbConfig, Invalid> {
    let kind = parsed(
        Field::Db,
        spec.db.as_deref(),
        word::<DbKind>("faultline, etcd, redis or postgres"),
    )?
    .unwrap_or(DbKind::Faultline);
    let foreign = |field: Field, given: bool| match given {
        true => Err(Invalid::new(field, format!("means nothing to {}", kind.name()))),
        false => Ok(()),
    };
    let server = spec.server.clone().unwrap_or_default();
    foreign(Field::Server, kind != DbKind::Faultline && !server.is_empty())?;
    foreign(
        Field::EtcdSerializableReads,
        kind != DbKind::Etcd && spec.etcd_serializable_reads.is_some(),
    )?;
    if kind != DbKind::Redis {
        foreign(Field::RedisReads, spec.redis_reads.is_some())?;
        foreign(Field::RedisWait, spec.redis_wait.is_some())?;
        foreign(Field::RedisFailoverWait, spec.redis_failover_wait.is_some())?;
    }
    if kind != DbKind::Postgres {
        for field in super::pg_options::given(spec) {
            foreign(field, true)?;
        }
    }
    Ok(match kind {
        DbKind::Faultline => DbConfig::Faultline { server },
        DbKind::Etcd => DbConfig::Etcd {
            serializable_reads: spec.etcd_serializable_reads.unwrap_or(false),
        },
        DbKind::Redis => DbConfig::Redis {
            reads: parsed(Field::RedisReads, spec.redis_reads.as_deref(), RedisReads::parse)?
                .unwrap_or(RedisReads::Primary),
            wait: spec.redis_wait.unwrap_or(0),
            failover_wait: spec.redis_failover_wait.unwrap_or(false),
        },
        DbKind::Postgres => DbConfig::Postgres(super::pg_options::parse(spec)?),
    })
}

/// Where the nodes run: a count on this machine, joined by `net`, or a
/// list of hosts over SSH (`net` then is `ssh`, or not given).
fn place(spec: &RunSpec, cfg: &mut RunConfig) -> Result<(), Invalid> {
    let net = parsed(Field::Net, spec.net.as_deref(), word::<NetKind>("proxy, netns or ssh"))?;
    let hosts = spec.hosts.clone().unwrap_or_default();
    if hosts.is_empty() {
        cfg.net = net.unwrap_or(NetKind::Proxy);
        cfg.nodes = spec.nodes.unwrap_or(cfg.nodes);
        return Ok(());
    }
    if net.is_some_and(|n| n != NetKind::Ssh) {
        return Err(Invalid::new(
            Field::Net,
            "runs on this machine; remote machines are cut with nftables over SSH",
        ));
    }
    cfg.net = NetKind::Ssh;
    cfg.nodes = spec.nodes.unwrap_or(hosts.len());
    cfg.hosts = hosts;
    let d = SshSettings::default();
    cfg.ssh = SshSettings {
        user: spec.ssh_user.clone().unwrap_or(d.user),
        port: spec.ssh_port.unwrap_or(d.port),
        key: spec.ssh_key.clone(),
        known_hosts: spec.known_hosts.clone(),
        accept_unknown_hosts: spec.accept_unknown_hosts.unwrap_or(false),
        remote_dir: spec.remote_dir.clone().unwrap_or(d.remote_dir),
    };
    Ok(())
}

/// The arguments of `faultline run` that give `cfg` back: every field that
/// affects the outcome, the seed and the checkers' time limit included.
pub fn rerun_args(cfg: &RunConfig) -> Vec<String> {
    let mut a = Args::default();
    a.opt("--test", &cfg.test);
    match cfg.hosts.is_empty() {
        true => a.opt("--nodes", cfg.nodes),
        false => a.opt("--nodes", cfg.hosts.join(",")),
    }
    workload_args(&mut a, &cfg.workload);
    a.opt("--concurrency", cfg.concurrency);
    a.opt("--rate", cfg.rate);
    a.opt("--time-limit", cfg.time_limit_s);
    a.opt("--nemesis", FaultKind::list_words(&cfg.nemesis));
    a.opt("--nemesis-interval", cfg.nemesis_interval_s);
    a.opt("--op-timeout-ms", cfg.op_timeout_ms);
    a.opt("--quiet-ms", cfg.quiet_ms);
    a.opt("--seed", cfg.seed);
    if !cfg.checkers.is_empty() {
        a.opt("--checkers", cfg.checkers.join(","));
    }
    for m in &cfg.consistency_models {
        a.opt("--consistency-model", m.name());
    }
    a.opt("--check-time-limit", cfg.check_time_limit_s);
    a.flag("--direct-clients", !cfg.client_proxies);
    if let Some(r) = cfg.read_routing {
        a.opt("--read-routing", serde_name(&r));
    }
    if cfg.net == NetKind::Netns {
        a.opt("--net", cfg.net.name());
    }
    db_args(&mut a, &cfg.db);
    a.flag("--diskfs", cfg.diskfs);
    if !cfg.hosts.is_empty() {
        ssh_args(&mut a, &cfg.ssh);
    }
    a.0
}

fn workload_args(a: &mut Args, w: &WorkloadConfig) {
    let mix: Vec<String> = w
        .mix
        .weights
        .iter()
        .map(|(op, n)| format!("{}={n}", serde_name(op)))
        .collect();
    let dist = match w.key_dist {
        KeyDist::Uniform => "uniform".to_owned(),
        KeyDist::Zipf(s) => format!("zipf:{s}"),
    };
    a.opt("--workload", w.kind.name());
    a.opt("--keys", w.key_count);
    a.opt("--key-dist", dist);
    if w.kind.is_txn() {
        a.opt("--min-txn-length", w.txn.min_length);
        a.opt("--max-txn-length", w.txn.max_length);
        a.opt("--max-writes-per-key", w.txn.max_writes_per_key);
        a.opt("--read-share", w.txn.read_share);
        return;
    }
    a.opt("--mix", mix.join(","));
    a.opt("--ops-per-key", w.ops_per_key);
    a.opt("--multi-read-keys", w.multi_read_keys);
}

fn db_args(a: &mut Args, db: &DbConfig) {
    if db.kind() != DbKind::Faultline {
        a.opt("--db", db.kind().name());
    }
    match db {
        DbConfig::Faultline { server } => a.opt("--server", server),
        DbConfig::Etcd { serializable_reads } => a.flag("--etcd-serializable-reads", *serializable_reads),
        DbConfig::Redis {
            reads,
            wait,
            failover_wait,
        } => {
            a.opt("--redis-reads", serde_name(reads));
            if *wait > 0 {
                a.opt("--redis-wait", wait);
            }
            a.flag("--redis-failover-wait", *failover_wait);
        }
        DbConfig::Postgres(o) => {
            for (flag, value) in super::pg_options::args(o) {
                a.opt(flag, value);
            }
        }
    }
}

fn ssh_args(a: &mut Args, ssh: &SshSettings) {
    a.opt("--ssh-user", &ssh.user);
    a.opt("--ssh-port", ssh.port);
    if let Some(k) = &ssh.key {
        a.opt("--ssh-key", k.display());
    }
    if let Some(k) = &ssh.known_hosts {
        a.opt("--known-hosts", k.display());
    }
    a.flag("--accept-unknown-hosts", ssh.accept_unknown_hosts);
    a.opt("--remote-dir", ssh.remote_dir.display());
}

/// A value's serde name (`any`, `cas`, `replica`).
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("a unit variant serializes as its name, got {other:?}"),
    }
}

/// Arguments being built.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    /// `--flag value`, or `--flag=value` for a value that would read as a
    /// flag.
    fn opt(&mut self, flag: &str, value: impl std::fmt::Display) {
        let value = value.to_string();
        if value.starts_with('-') {
            self.0.push(format!("{flag}={value}"));
        } else {
            self.0.extend([flag.to_owned(), value]);
        }
    }

    fn flag(&mut self, flag: &str, on: bool) {
        if on {
            self.0.push(flag.to_owned());
        }
    }
}

impl RunConfig {
    /// The command that reruns this test ([`rerun_command`]).
    pub fn rerun_command(&self) -> String {
        rerun_command(self)
    }
}

/// `faultline run ...` for `cfg`, quoted for a POSIX shell.
pub fn rerun_command(cfg: &RunConfig) -> String {
    let mut words = vec!["faultline".to_owned(), "run".to_owned()];
    words.extend(rerun_args(cfg).iter().map(|w| shell_quote(w)));
    words.join(" ")
}

/// `word` as one word of a POSIX shell: bare when it holds nothing the
/// shell reads, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_or_the_test_and_key() {
        let spec = RunSpec {
            time_limit_s: Some(-1.0),
            ..RunSpec::default()
        };
        let e = resolve(&spec, 1).unwrap_err();
        assert_eq!(e.field, Field::TimeLimit);
        let cli = e.clone().at(Origin::Cli).to_string();
        assert!(cli.starts_with("--time-limit: must be within"), "{cli}");
        let toml = e.at(Origin::Campaign { test: "a".into() }).to_string();
        assert!(toml.starts_with("test \"a\": time_limit_s: must be within"), "{toml}");
    }

    #[test]
    fn words_are_parsed_once_into_types() {
        let spec = RunSpec {
            db: Some("redis".into()),
            redis_reads: Some("replica".into()),
            nemesis: Some("failover, kill,none".into()),
            read_routing: Some("auto".into()),
            checkers: Some(vec!["auto".into()]),
            ..RunSpec::default()
        };
        let cfg = resolve(&spec, 9).unwrap();
        assert_eq!(cfg.test, "redis-register");
        assert_eq!(cfg.seed, 9);
        assert_eq!(cfg.nemesis, [FaultKind::Failover, FaultKind::Kill]);
        assert_eq!(cfg.read_routing, None);
        assert!(cfg.checkers.is_empty(), "auto alone is the default");
        assert!(matches!(
            cfg.db,
            DbConfig::Redis {
                reads: RedisReads::Replica,
                ..
            }
        ));
    }

    #[test]
    fn options_of_another_database_are_refused() {
        let spec = RunSpec {
            db: Some("etcd".into()),
            redis_wait: Some(1),
            ..RunSpec::default()
        };
        assert_eq!(resolve(&spec, 1).unwrap_err().field, Field::RedisWait);
        let spec = RunSpec {
            db: Some("etcd".into()),
            server: Some("ack=none".into()),
            ..RunSpec::default()
        };
        assert_eq!(resolve(&spec, 1).unwrap_err().field, Field::Server);
        let spec = RunSpec {
            db: Some("mongo".into()),
            ..RunSpec::default()
        };
        let e = resolve(&spec, 1).unwrap_err();
        assert_eq!(
            (e.field, e.message.as_str()),
            (Field::Db, "\"mongo\": expected faultline, etcd, redis or postgres")
        );
    }

    #[test]
    fn hosts_mean_ssh_and_name_themselves_in_the_rerun() {
        let spec = RunSpec {
            hosts: Some(vec!["a".into(), "b:2222".into(), "c".into()]),
            ssh_key: Some("/k/id".into()),
            ..RunSpec::default()
        };
        let cfg = resolve(&spec, 1).unwrap();
        assert_eq!((cfg.net, cfg.nodes), (NetKind::Ssh, 3));
        let cmd = rerun_command(&cfg);
        assert!(cmd.contains("--nodes a,b:2222,c "), "{cmd}");
        assert!(cmd.contains("--ssh-key /k/id"), "{cmd}");
        assert!(!cmd.contains("--net"), "{cmd}");
        let two = RunSpec {
            nodes: Some(3),
            hosts: Some(vec!["a".into(), "b".into()]),
            ..RunSpec::default()
        };
        assert_eq!(
            resolve(&two, 1).unwrap_err().field,
            Field::Nodes,
            "two hosts for three nodes"
        );
    }

    #[test]
    fn the_rerun_keeps_the_check_time_limit_and_quotes_what_the_shell_reads() {
        let mut cfg = RunConfig::new(5);
        cfg.check_time_limit_s = 7.5;
        cfg.test = "it's mine".into();
        let cmd = rerun_command(&cfg);
        assert!(cmd.contains("--check-time-limit 7.5"), "{cmd}");
        assert!(cmd.contains(r"--test 'it'\''s mine'"), "{cmd}");
        assert!(cmd.contains("--server ''"), "{cmd}");
        assert_eq!(shell_quote("zipf:1.5"), "zipf:1.5");
    }
}

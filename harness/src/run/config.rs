//! A run's configuration, typed: [`RunConfig`] holds what the user asked
//! for as enums and structs (the database with its options, the network,
//! the read routing, the fault kinds), parsed once at the edge by
//! [`super::spec`] from the CLI or a campaign's TOML, checked once by
//! [`RunConfig::validate`], and used without re-parsing. `config.json` is
//! its serde form, and [`super::spec::rerun_args`] prints the command that
//! gives it back.

use std::path::PathBuf;

use faultline_nemesis::{FaultKind, Plan};
use faultline_txn::Model;
use faultline_workloads::{ReadRouting, RedisReads, WorkloadConfig, WorkloadKind};
use serde::{Deserialize, Serialize};

use super::spec::{Field, Invalid};

/// Most nodes in a local cluster.
pub const MAX_NODES: usize = 9;
/// Most concurrent clients.
pub const MAX_CONCURRENCY: usize = 1024;
/// Longest test.
pub const MAX_TIME_LIMIT_S: f64 = 24.0 * 3600.0;
/// Longest operation timeout.
pub const MAX_OP_TIMEOUT_MS: u64 = 600_000;

/// Everything that defines a test, and nothing about where it runs:
/// `config.json` holds it, so a run can be repeated exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// The test's name (the store folder).
    pub test: String,
    /// Cluster size.
    pub nodes: usize,
    /// The system under test, with its own options.
    pub db: DbConfig,
    /// The workload.
    pub workload: WorkloadConfig,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Total operations per second; 0 is as fast as the clients go.
    pub rate: f64,
    /// Seconds of workload.
    pub time_limit_s: f64,
    /// Fault kinds; empty is no faults.
    pub nemesis: Vec<FaultKind>,
    /// Seconds between nemesis steps.
    pub nemesis_interval_s: f64,
    /// The seed of every random choice.
    pub seed: u64,
    /// How long an operation may take before it is info.
    pub op_timeout_ms: u64,
    /// Quiet period after healing, before the final reads.
    pub quiet_ms: u64,
    /// Checkers to run (names `faultline check` knows, checked when the
    /// config is made); empty is every checker that applies to the history
    /// (`auto` in the list stands for them too).
    pub checkers: Vec<String>,
    /// The consistency models the transactional checker judges; empty is
    /// its default (strict-serializable). Recorded in the history's header
    /// too, so re-checking the history judges the same models.
    #[serde(default)]
    pub consistency_models: Vec<Model>,
    /// Time budget of each linearizability search, in seconds.
    pub check_time_limit_s: f64,
    /// Route clients through proxies too (they can then be cut as well).
    pub client_proxies: bool,
    /// Where clients send reads; `None` is auto: home under
    /// `reads=sticky`, any replica otherwise.
    pub read_routing: Option<ReadRouting>,
    /// How nodes are joined.
    pub net: NetKind,
    /// Put every node's data directory on the disk-fault filesystem even
    /// when no disk fault is asked for (disk nemeses turn it on anyway).
    pub diskfs: bool,
    /// Machines to run the nodes on, over SSH (`host` or `host:port`, one
    /// per node, n1 first); empty runs them on this machine.
    pub hosts: Vec<String>,
    /// How to log in to `hosts` (the defaults when there are none).
    pub ssh: SshSettings,
}

/// The system under test and the options that only it has.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DbConfig {
    /// faultline-server, the project's own.
    Faultline {
        /// The server's settings (`ack=none,reads=follower,...`); empty is
        /// the safe setting.
        server: String,
    },
    /// etcd 3.4.
    Etcd {
        /// Serializable (possibly stale, member-local) reads instead of
        /// linearizable ones.
        serializable_reads: bool,
    },
    /// Redis 7, a primary and replicas.
    Redis {
        /// Where reads go.
        reads: RedisReads,
        /// `WAIT n` replicas after every write (0: no WAIT).
        wait: u32,
        /// The failover nemesis waits for every replica (`WAIT`) before it
        /// cuts the primary off and promotes one.
        failover_wait: bool,
    },
    /// PostgreSQL 15, a primary and streaming standbys.
    Postgres(super::pg_options::PgOptions),
}

impl DbConfig {
    /// faultline-server in the safe setting.
    pub fn safe() -> DbConfig {
        DbConfig::Faultline { server: String::new() }
    }

    /// faultline-server with these settings.
    pub fn faultline(server: &str) -> DbConfig {
        DbConfig::Faultline {
            server: server.to_owned(),
        }
    }

    /// Which database.
    pub fn kind(&self) -> DbKind {
        match self {
            DbConfig::Faultline { .. } => DbKind::Faultline,
            DbConfig::Etcd { .. } => DbKind::Etcd,
            DbConfig::Redis { .. } => DbKind::Redis,
            DbConfig::Postgres(_) => DbKind::Postgres,
        }
    }

    /// faultline-server's settings; empty for other databases.
    pub fn server(&self) -> &str {
        match self {
            DbConfig::Faultline { server } => server,
            _ => "",
        }
    }
}

/// Which system is under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// faultline-server, the project's own.
    #[serde(alias = "faultline-server")]
    Faultline,
    /// etcd 3.4.
    Etcd,
    /// Redis 7, a primary and replicas.
    Redis,
    /// PostgreSQL 15, a primary and streaming standbys.
    #[serde(alias = "postgresql")]
    Postgres,
}

impl DbKind {
    /// Whether its client runs multi-key transactions (the `txn-*`
    /// workloads).
    pub fn runs_transactions(self) -> bool {
        match self {
            DbKind::Faultline | DbKind::Postgres => true,
            DbKind::Etcd | DbKind::Redis => false,
        }
    }

    /// The name `--db` takes.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Faultline => "faultline",
            DbKind::Etcd => "etcd",
            DbKind::Redis => "redis",
            DbKind::Postgres => "postgres",
        }
    }
}

/// How the nodes of a cluster are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    /// Loopback, every link through a proxy of the harness.
    Proxy,
    /// A network namespace per node, joined by a bridge.
    Netns,
    /// Remote machines over SSH, cut with nftables on each.
    Ssh,
}

impl NetKind {
    /// The name `--net` takes.
    pub fn name(self) -> &'static str {
        match self {
            NetKind::Proxy => "proxy",
            NetKind::Netns => "netns",
            NetKind::Ssh => "ssh",
        }
    }
}

/// How to log in to remote machines. Paths only: no key material.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SshSettings {
    /// The user on every machine.
    pub user: String,
    /// The port, unless a host names its own.
    pub port: u16,
    /// A private key file; none uses the ssh-agent.
    pub key: Option<PathBuf>,
    /// The known_hosts file host keys are checked against (default
    /// `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Trust hosts that known_hosts does not list.
    pub accept_unknown_hosts: bool,
    /// The folder on each machine that holds the runs' binaries and data.
    pub remote_dir: PathBuf,
}

impl Default for SshSettings {
    fn default() -> SshSettings {
        SshSettings {
            user: "root".into(),
            port: 22,
            key: None,
            known_hosts: None,
            accept_unknown_hosts: false,
            remote_dir: PathBuf::from("/tmp/faultline"),
        }
    }
}

impl RunConfig {
    /// The default test: 3 nodes of the safe setting, the register workload,
    /// partitions and kills every 5 s, 30 s.
    pub fn new(seed: u64) -> RunConfig {
        RunConfig {
            test: "register".into(),
            nodes: 3,
            db: DbConfig::safe(),
            workload: WorkloadConfig::new(WorkloadKind::Register),
            concurrency: 10,
            rate: 500.0,
            time_limit_s: 30.0,
            nemesis: vec![FaultKind::Partition, FaultKind::Kill],
            nemesis_interval_s: 5.0,
            seed,
            op_timeout_ms: 4_000,
            quiet_ms: 2_000,
            checkers: Vec::new(),
            consistency_models: Vec::new(),
            check_time_limit_s: 60.0,
            client_proxies: true,
            read_routing: None,
            net: NetKind::Proxy,
            diskfs: false,
            hosts: Vec::new(),
            ssh: SshSettings::default(),
        }
    }

    /// The read routing in force.
    pub fn routing(&self) -> ReadRouting {
        if let Some(r) = self.read_routing {
            return r;
        }
        let sticky = self
            .db
            .server()
            .split(',')
            .any(|kv| kv.trim().replace(' ', "") == "reads=sticky");
        if sticky {
            ReadRouting::Home
        } else {
            ReadRouting::Any
        }
    }

    /// Checks every field and how they go together; the error names the
    /// field at fault.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_ranges()?;
        self.validate_workload()?;
        super::checks::validate_names(&self.checkers).map_err(|m| Invalid::new(Field::Checkers, m))?;
        if let DbConfig::Faultline { server } = &self.db {
            faultline_server_settings_look_sane(server)?;
        }
        if let DbConfig::Postgres(o) = &self.db {
            super::pg_options::validate(o, self.nodes)?;
        }
        check_faults_fit(&self.nemesis, self.db.kind(), self.net)?;
        Plan::check_fits(&self.nemesis, self.interval_ms(), self.duration_ms())
            .map_err(|e| Invalid::new(Field::TimeLimit, e.to_string()))?;
        self.validate_hosts()
    }

    fn validate_ranges(&self) -> Result<(), Invalid> {
        let bad = |field: Field, m: String| Err(Invalid::new(field, m));
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return bad(Field::Nodes, format!("must be within 1..={MAX_NODES}"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(Field::Concurrency, format!("must be within 1..={MAX_CONCURRENCY}"));
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return bad(Field::Rate, "must be a non-negative number".into());
        }
        if !(self.time_limit_s > 0.0 && self.time_limit_s <= MAX_TIME_LIMIT_S) {
            return bad(
                Field::TimeLimit,
                format!("must be within (0, {MAX_TIME_LIMIT_S}] seconds"),
            );
        }
        if !(self.nemesis_interval_s > 0.0 && self.nemesis_interval_s.is_finite()) {
            return bad(Field::NemesisInterval, "must be positive".into());
        }
        if !(self.check_time_limit_s > 0.0 && self.check_time_limit_s.is_finite()) {
            return bad(Field::CheckTimeLimit, "must be positive".into());
        }
        if self.op_timeout_ms == 0 || self.op_timeout_ms > MAX_OP_TIMEOUT_MS {
            return bad(Field::OpTimeout, format!("must be within 1..={MAX_OP_TIMEOUT_MS}"));
        }
        if self.test.is_empty() || self.test.contains(['/', '\\']) || self.test.starts_with('.') {
            return bad(Field::Test, format!("{:?} must be a plain folder name", self.test));
        }
        Ok(())
    }

    /// The workload's own check, blamed on the setting that breaks it:
    /// the key count alone, else the mix, else the snapshot size; for a
    /// transactional workload, the knob at fault, and a database that runs
    /// no transactions.
    fn validate_workload(&self) -> Result<(), Invalid> {
        if self.workload.kind.is_txn() {
            if !self.db.kind().runs_transactions() {
                return Err(Invalid::new(
                    Field::Workload,
                    format!(
                        "{} needs a database that runs transactions; {} does not",
                        self.workload.kind.name(),
                        self.db.kind().name()
                    ),
                ));
            }
            self.workload
                .txn
                .validate()
                .map_err(|(knob, m)| Invalid::new(super::spec::txn_field(knob), m))?;
        }
        let Err(e) = self.workload.validate() else {
            return Ok(());
        };
        let mut probe = WorkloadConfig::new(self.workload.kind);
        probe.key_count = self.workload.key_count;
        let field = if probe.validate().is_err() {
            Field::Keys
        } else {
            probe.mix = self.workload.mix.clone();
            if probe.validate().is_err() {
                Field::Mix
            } else {
                Field::MultiReadKeys
            }
        };
        Err(Invalid::new(field, e.to_string()))
    }

    fn validate_hosts(&self) -> Result<(), Invalid> {
        let bad = |m: String| Err(Invalid::new(Field::Net, m));
        if (self.net == NetKind::Ssh) == self.hosts.is_empty() {
            return bad("ssh goes with a list of hosts (--nodes h1,h2,h3), and a list of hosts with it".into());
        }
        if self.net == NetKind::Ssh && self.hosts.len() != self.nodes {
            return Err(Invalid::new(
                Field::Nodes,
                format!("{} hosts for {} nodes", self.hosts.len(), self.nodes),
            ));
        }
        for h in &self.hosts {
            parse_host(h, self.ssh.port).map_err(|m| Invalid::new(Field::Nodes, m))?;
        }
        Ok(())
    }

    /// The nemesis interval, in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        (self.nemesis_interval_s * 1000.0) as u64
    }

    /// The workload's length, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        (self.time_limit_s * 1000.0) as u64
    }

    /// Whether the run mounts the disk-fault filesystem under every node.
    pub fn uses_diskfs(&self) -> bool {
        self.diskfs || self.nemesis.iter().any(|k| k.needs_disk())
    }

    /// Whether the nodes run under libfaketime.
    pub fn uses_faketime(&self) -> bool {
        self.nemesis.iter().any(|k| k.needs_clock())
    }

    /// Node names: n1, n2, ...
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
}

/// `host` or `host:port` (`[v6]:port`), with `port` when none is given.
pub fn parse_host(s: &str, port: u16) -> Result<(String, u16), String> {
    let bad = || format!("host {s:?}: expected host or host:port");
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(bad)?;
        let p = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if p.is_empty() => port,
            None => return Err(bad()),
        };
        return Ok((h.to_owned(), p));
    }
    match s.split_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((h.to_owned(), p.parse().map_err(|_| bad())?)),
        None if !s.is_empty() && !s.contains(char::is_whitespace) => Ok((s.to_owned(), port)),
        _ => Err(bad()),
    }
}

/// Refuses faults the database or backend cannot really inject, so a fault
/// never silently does nothing.
fn check_faults_fit(kinds: &[FaultKind], db: DbKind, net: NetKind) -> Result<(), Invalid> {
    let bad = |m: &str| Err(Invalid::new(Field::Nemesis, m.to_owned()));
    let cuts = kinds.iter().any(|k| k.cuts_links());
    if db == DbKind::Etcd && net == NetKind::Proxy && cuts {
        return bad(
            "etcd members dial one advertised peer address each, which a proxy per link cannot sit behind: \
             partitions of etcd need --net netns",
        );
    }
    if kinds.contains(&FaultKind::Failover) && !matches!(db, DbKind::Redis | DbKind::Postgres) {
        return bad(
            "the failover nemesis promotes a Redis replica or a PostgreSQL standby; other databases elect their own leaders",
        );
    }
    if db == DbKind::Etcd && kinds.iter().any(|k| k.needs_clock()) {
        return bad("libfaketime cannot move a Go program's clock (etcd reads time without libc)");
    }
    Ok(())
}

/// A cheap check of the settings string's shape (`k=v,k=v`); the server
/// validates the meaning and a bad value stops the run at start.
fn faultline_server_settings_look_sane(s: &str) -> Result<(), Invalid> {
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if !item.contains('=') || item.contains(char::is_whitespace) {
            return Err(Invalid::new(Field::Server, format!("expected key=value, got {item:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_take_an_optional_port() {
        assert_eq!(parse_host("10.0.0.1", 22), Ok(("10.0.0.1".into(), 22)));
        assert_eq!(parse_host("vm2:2222", 22), Ok(("vm2".into(), 2222)));
        assert_eq!(parse_host("[fd00::1]:2200", 22), Ok(("fd00::1".into(), 2200)));
        assert_eq!(parse_host("[fd00::1]", 22), Ok(("fd00::1".into(), 22)));
        for bad in ["", ":22", "vm:port", "two words", "[fd00::1"] {
            assert!(parse_host(bad, 22).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn faults_that_cannot_fire_are_refused_naming_the_nemesis() {
        let mut cfg = RunConfig::new(1);
        cfg.db = DbConfig::Etcd {
            serializable_reads: false,
        };
        cfg.nemesis = vec![FaultKind::Partition];
        assert_eq!(
            cfg.validate().unwrap_err().field,
            Field::Nemesis,
            "etcd partitions behind proxies"
        );
        cfg.net = NetKind::Netns;
        cfg.validate().unwrap();
        cfg.nemesis = vec![FaultKind::Clock];
        assert!(cfg.validate().is_err(), "libfaketime cannot move Go's clock");
        cfg.db = DbConfig::safe();
        cfg.nemesis = vec![FaultKind::Failover];
        assert!(cfg.validate().is_err(), "failover is Redis's");
        cfg.db = DbConfig::Redis {
            reads: RedisReads::Primary,
            wait: 0,
            failover_wait: false,
        };
        cfg.validate().unwrap();
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let mut cfg = RunConfig::new(1);
        cfg.time_limit_s = 0.0;
        assert_eq!(cfg.validate().unwrap_err().field, Field::TimeLimit);
        cfg = RunConfig::new(1);
        cfg.workload.key_count = 0;
        assert_eq!(cfg.validate().unwrap_err().field, Field::Keys);
        cfg = RunConfig::new(1);
        cfg.workload.mix = faultline_workloads::Mix::parse("append=1").unwrap();
        assert_eq!(cfg.validate().unwrap_err().field, Field::Mix);
        cfg = RunConfig::new(1);
        cfg.checkers = vec!["nonsense".into()];
        assert_eq!(cfg.validate().unwrap_err().field, Field::Checkers);
        cfg = RunConfig::new(1);
        cfg.db = DbConfig::faultline("ack none");
        assert_eq!(cfg.validate().unwrap_err().field, Field::Server);
    }

    #[test]
    fn a_transactional_workload_needs_a_database_that_runs_transactions() {
        let mut cfg = RunConfig::new(1);
        cfg.workload = WorkloadConfig::new(WorkloadKind::TxnRwRegister);
        cfg.validate().unwrap();
        for db in [
            DbConfig::Etcd {
                serializable_reads: false,
            },
            DbConfig::Redis {
                reads: RedisReads::Primary,
                wait: 0,
                failover_wait: false,
            },
        ] {
            cfg.db = db;
            let e = cfg.validate().unwrap_err();
            assert_eq!(e.field, Field::Workload);
            assert!(e.message.contains("runs transactions"), "{}", e.message);
        }
        cfg.db = DbConfig::safe();
        cfg.workload.txn.read_share = 1.0;
        assert_eq!(cfg.validate().unwrap_err().field, Field::ReadShare);
        cfg.workload.txn.read_share = 0.5;
        cfg.workload.txn.max_length = 0;
        assert_eq!(cfg.validate().unwrap_err().field, Field::MaxTxnLength);
    }

    #[test]
    fn auto_routing_follows_sticky_reads() {
        let mut cfg = RunConfig::new(1);
        assert_eq!(cfg.routing(), ReadRouting::Any);
        cfg.db = DbConfig::faultline("ack=majority, reads=sticky");
        assert_eq!(cfg.routing(), ReadRouting::Home);
        cfg.read_routing = Some(ReadRouting::Leader);
        assert_eq!(cfg.routing(), ReadRouting::Leader);
    }
}

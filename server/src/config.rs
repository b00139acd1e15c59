//! Node configuration: identity, addresses and the replication settings.
//!
//! Promise: a [`Config`] is validated (quorums fit the cluster, limits are
//! positive, peers are named), so the rest of the server never checks again.
//! Settings come from one vocabulary, `key=value`, whether written as a
//! compact string (`ack=none,reads=follower,replay_delay_ms=50`), as flags or
//! as a TOML file, so the harness and a person type the same words.

use crate::wal::FsyncPolicy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting name we do not know.
    #[error("unknown setting {0:?}")]
    UnknownSetting(String),
    /// A value that does not parse for its setting.
    #[error("bad value {value:?} for {key}: {reason}")]
    BadValue {
        /// Setting.
        key: String,
        /// What was given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A `key=value` item without `=`.
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
    /// Settings that contradict each other or the cluster.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A TOML file that does not parse.
    #[error("config file: {0}")]
    File(String),
}

/// How the cluster replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One leader per shard ships its log to followers.
    SingleLeader,
    /// Dynamo-style n/w/r quorums, any node coordinates.
    Leaderless,
    /// Every node takes writes and replicates asynchronously; last write wins.
    MultiLeader,
}

/// When the leader acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Every node has it durable.
    All,
    /// A majority (leader included) has it durable.
    Majority,
    /// The leader and any N followers have it durable.
    Any(usize),
    /// The leader has it (as durable as its fsync policy makes it).
    None,
}

/// How a new leader is chosen when the old one is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Never: the configured leader stays leader.
    Off,
    /// Majority vote in a new epoch, up-to-date log required, lower epochs rejected.
    Fenced,
    /// A follower that misses heartbeats promotes itself without votes.
    Unfenced,
}

/// Where reads are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// At the leader after it confirms leadership with a majority.
    Leader,
    /// At whatever replica the client asked.
    Follower,
    /// At the replica the client sticks to (routing is the client's job).
    Sticky,
    /// At a replica that applied the session's last LSN (waits, else fails).
    Lsn,
}

/// How transactions are isolated (single leader; see server/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each read sees the latest committed version when it runs; no
    /// conflict checks (read skew and write skew can happen, dirty reads
    /// cannot).
    ReadCommitted,
    /// Reads from the snapshot at the transaction's start; of two
    /// concurrent writers of a key the first to commit wins.
    Snapshot,
    /// Whole transactions executed in log order; read-only ones may be
    /// served from a replica's applied state (stale but consistent).
    Serializable,
    /// Serializable, and every transaction goes through the leader, so
    /// real-time order holds too.
    StrictSerializable,
}

/// How a transaction spanning shards runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTxn {
    /// As independent per-shard pieces: not atomic across shards.
    None,
    /// Two-phase commit across the shards' groups: atomic, and
    /// serializable across shards (see server/README.md).
    TwoPc,
}

/// The replication settings (the knobs of the lab).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Replication mode.
    pub mode: Mode,
    /// Acknowledgement policy (single leader).
    pub ack: Ack,
    /// Failover policy (single leader).
    pub failover: Failover,
    /// Read policy (single leader).
    pub reads: ReadMode,
    /// Log sync policy.
    pub fsync: FsyncPolicy,
    /// Followers / replicas apply writes this much late.
    pub replay_delay_ms: u64,
    /// `ack=none`: the leader ships its durable log every this many ms.
    pub async_ship_ms: u64,
    /// Number of shards (single leader), each its own group.
    pub shards: usize,
    /// The node that leads at start (shard k: the k-th next node).
    pub leader: Option<String>,
    /// Leaderless replication factor (0 = cluster size).
    pub n: usize,
    /// Leaderless write quorum (0 = majority of n).
    pub w: usize,
    /// Leaderless read quorum (0 = majority of n).
    pub r: usize,
    /// Leaderless: write the newest value back to stale replicas on reads.
    pub read_repair: bool,
    /// Leaderless / multi-leader: keep writes for unreachable replicas and replay them.
    pub hinted_handoff: bool,
    /// Leaderless: count acks from stand-in nodes outside the preference list.
    pub sloppy_quorum: bool,
    /// This node's clock offset for write timestamps.
    pub clock_offset_ms: i64,
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Base election timeout (randomized up to twice that).
    pub election_timeout_ms: u64,
    /// How long a request may wait for replication before `unknown`.
    pub request_timeout_ms: u64,
    /// How long a `reads=lsn` read waits for the replica to catch up.
    pub read_wait_ms: u64,
    /// Compact the log into a snapshot every this many applied entries.
    pub snapshot_every_entries: u64,
    /// A follower this many entries behind gets a snapshot (0 = never).
    pub snapshot_lag_entries: u64,
    /// Most entries in one replication message.
    pub max_batch_entries: usize,
    /// Most connections at once. At the limit a new client still gets in:
    /// the client connection idle the longest is closed to make room (a
    /// full server of idle connections never locks clients out); only when
    /// every connection is busy is the new one refused.
    pub max_connections: usize,
    /// Most requests in flight on one client connection.
    pub max_inflight_per_conn: usize,
    /// A client connection with no request in flight that sends nothing
    /// for this long is closed; a frame must also arrive whole within it.
    pub idle_timeout_ms: u64,
    /// Bytes one client connection may hold in requests being served and
    /// replies not yet written; past it the node stops reading from it.
    pub conn_bytes_max: usize,
    /// Bytes all connections together may hold in large requests and
    /// replies (over 4 KiB each); a request that would pass it is refused.
    pub node_bytes_max: usize,
    /// Transactions' isolation level (single leader).
    pub isolation: Isolation,
    /// How a transaction spanning shards runs.
    pub shard_txn: ShardTxn,
    /// Read-committed and snapshot transactions run one micro-op per step
    /// of the leader; this many ms at least between two micro-ops of one
    /// transaction (0 = as fast as the leader steps), to widen the windows
    /// in which other transactions commit.
    pub txn_step_ms: u64,
    /// `shard_txn=2pc`: a piece prepared this long without being resolved
    /// is resolved by asking its decision's home, which aborts it if no
    /// decision was logged (0: `request_timeout_ms`, the coordinator's own
    /// bound on a phase: a piece older than that was most likely left by
    /// a coordinator that crashed or lost its resolves to a partition).
    pub txn_recovery_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::SingleLeader,
            ack: Ack::Majority,
            failover: Failover::Fenced,
            reads: ReadMode::Leader,
            fsync: FsyncPolicy::Always,
            replay_delay_ms: 0,
            async_ship_ms: 10,
            shards: 1,
            leader: None,
            n: 0,
            w: 0,
            r: 0,
            read_repair: false,
            hinted_handoff: false,
            sloppy_quorum: false,
            clock_offset_ms: 0,
            heartbeat_ms: 50,
            election_timeout_ms: 500,
            request_timeout_ms: 3000,
            read_wait_ms: 1000,
            snapshot_every_entries: 100_000,
            snapshot_lag_entries: 50_000,
            max_batch_entries: 512,
            max_connections: 1024,
            max_inflight_per_conn: 256,
            idle_timeout_ms: 300_000,
            conn_bytes_max: 4 << 20,
            node_bytes_max: 64 << 20,
            isolation: Isolation::StrictSerializable,
            shard_txn: ShardTxn::None,
            txn_step_ms: 0,
            txn_recovery_ms: 0,
        }
    }
}

fn bad(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| bad(key, value, "expected a number"))
}

fn flag(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(bad(key, value, "expected on or off")),
    }
}

impl Settings {
    /// Parses a compact `k=v,k=v` string on top of the defaults.
    pub fn parse(s: &str) -> Result<Settings, ConfigError> {
        let mut out = Settings::default();
        out.apply_str(s)?;
        Ok(out)
    }

    /// Applies every `k=v` item of a comma-separated string.
    pub fn apply_str(&mut self, s: &str) -> Result<(), ConfigError> {
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::NotKeyValue(item.into()))?;
            self.set(k.trim(), v.trim())?;
        }
        Ok(())
    }

    /// Sets one named setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "mode" => self.mode = parse_mode(value)?,
            "ack" => self.ack = parse_ack(value)?,
            "failover" => self.failover = parse_failover(value)?,
            "reads" => self.reads = parse_reads(value)?,
            "fsync" => self.fsync = parse_fsync(value)?,
            "replay_delay_ms" => self.replay_delay_ms = num(key, value)?,
            "async_ship_ms" => self.async_ship_ms = num(key, value)?,
            "shards" => self.shards = num(key, value)?,
            "leader" => self.leader = Some(value.to_string()),
            "n" => self.n = num(key, value)?,
            "w" => self.w = num(key, value)?,
            "r" => self.r = num(key, value)?,
            "read_repair" => self.read_repair = flag(key, value)?,
            "hinted_handoff" => self.hinted_handoff = flag(key, value)?,
            "sloppy_quorum" => self.sloppy_quorum = flag(key, value)?,
            "clock_offset_ms" => self.clock_offset_ms = num(key, value)?,
            "heartbeat_ms" => self.heartbeat_ms = num(key, value)?,
            "election_timeout_ms" => self.election_timeout_ms = num(key, value)?,
            "request_timeout_ms" => self.request_timeout_ms = num(key, value)?,
            "read_wait_ms" => self.read_wait_ms = num(key, value)?,
            "snapshot_every_entries" => self.snapshot_every_entries = num(key, value)?,
            "snapshot_lag_entries" => self.snapshot_lag_entries = num(key, value)?,
            "max_batch_entries" => self.max_batch_entries = num(key, value)?,
            "max_connections" => self.max_connections = num(key, value)?,
            "max_inflight_per_conn" => self.max_inflight_per_conn = num(key, value)?,
            "idle_timeout_ms" => self.idle_timeout_ms = num(key, value)?,
            "conn_bytes_max" => self.conn_bytes_max = num(key, value)?,
            "node_bytes_max" => self.node_bytes_max = num(key, value)?,
            "isolation" => self.isolation = parse_isolation(value)?,
            "shard_txn" => self.shard_txn = parse_shard_txn(value)?,
            "txn_step_ms" => self.txn_step_ms = num(key, value)?,
            "txn_recovery_ms" => self.txn_recovery_ms = num(key, value)?,
            _ => return Err(ConfigError::UnknownSetting(key.into())),
        }
        Ok(())
    }
}

fn parse_mode(v: &str) -> Result<Mode, ConfigError> {
    match v {
        "single_leader" | "single-leader" | "leader" => Ok(Mode::SingleLeader),
        "leaderless" => Ok(Mode::Leaderless),
        "multi_leader" | "multi-leader" | "multileader" => Ok(Mode::MultiLeader),
        _ => Err(bad("mode", v, "expected single_leader, leaderless or multi_leader")),
    }
}

fn parse_ack(v: &str) -> Result<Ack, ConfigError> {
    match v {
        "all" => Ok(Ack::All),
        "majority" => Ok(Ack::Majority),
        "none" => Ok(Ack::None),
        _ => match v.strip_prefix("any:") {
            Some(n) => Ok(Ack::Any(num("ack", n)?)),
            None => Err(bad("ack", v, "expected all, majority, any:N or none")),
        },
    }
}

fn parse_failover(v: &str) -> Result<Failover, ConfigError> {
    match v {
        "off" => Ok(Failover::Off),
        "fenced" => Ok(Failover::Fenced),
        "unfenced" => Ok(Failover::Unfenced),
        _ => Err(bad("failover", v, "expected off, fenced or unfenced")),
    }
}

fn parse_reads(v: &str) -> Result<ReadMode, ConfigError> {
    match v {
        "leader" => Ok(ReadMode::Leader),
        "follower" => Ok(ReadMode::Follower),
        "sticky" => Ok(ReadMode::Sticky),
        "lsn" => Ok(ReadMode::Lsn),
        _ => Err(bad("reads", v, "expected leader, follower, sticky or lsn")),
    }
}

fn parse_isolation(v: &str) -> Result<Isolation, ConfigError> {
    match v {
        "read-committed" | "read_committed" => Ok(Isolation::ReadCommitted),
        "snapshot" => Ok(Isolation::Snapshot),
        "serializable" => Ok(Isolation::Serializable),
        "strict-serializable" | "strict_serializable" => Ok(Isolation::StrictSerializable),
        _ => Err(bad(
            "isolation",
            v,
            "expected read-committed, snapshot, serializable or strict-serializable",
        )),
    }
}

fn parse_shard_txn(v: &str) -> Result<ShardTxn, ConfigError> {
    match v {
        "none" => Ok(ShardTxn::None),
        "2pc" => Ok(ShardTxn::TwoPc),
        _ => Err(bad("shard_txn", v, "expected none or 2pc")),
    }
}

fn parse_fsync(v: &str) -> Result<FsyncPolicy, ConfigError> {
    match v {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        "batch" => Ok(FsyncPolicy::Batch { interval_ms: 10 }),
        _ => match v.strip_prefix("batch:") {
            Some(ms) => Ok(FsyncPolicy::Batch {
                interval_ms: num("fsync", ms)?,
            }),
            None => Err(bad("fsync", v, "expected always, batch, batch:MS or never")),
        },
    }
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id.
    pub node_id: String,
    /// Where clients and peers connect.
    pub listen: SocketAddr,
    /// Where the log and snapshots live.
    pub data_dir: PathBuf,
    /// Every other node: id -> address to dial (may be a proxy).
    pub peers: BTreeMap<String, String>,
    /// Replication settings.
    pub settings: Settings,
}

impl Config {
    /// Checks the configuration and fills the derived defaults.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id.is_empty() || self.peers.contains_key(&self.node_id) {
            return invalid("node id must be non-empty and not among the peers".into());
        }
        let size = self.members().len();
        let s = &mut self.settings;
        if s.n == 0 {
            s.n = size;
        }
        if s.w == 0 {
            s.w = s.n / 2 + 1;
        }
        if s.r == 0 {
            s.r = s.n / 2 + 1;
        }
        if s.n > size || s.w > s.n || s.r > s.n || s.w == 0 || s.r == 0 {
            return invalid(format!(
                "need 1 <= w, r <= n <= cluster size {size}; got n={} w={} r={}",
                s.n, s.w, s.r
            ));
        }
        if let Ack::Any(k) = s.ack {
            if k == 0 || k >= size {
                return invalid(format!("ack=any:{k} needs 1 <= N <= {} followers", size - 1));
            }
        }
        if s.shards == 0 || s.shards > 64 {
            return invalid("shards must be between 1 and 64".into());
        }
        if s.shards > 1 && s.mode != Mode::SingleLeader {
            return invalid("shards apply to mode=single_leader only".into());
        }
        if s.shard_txn == ShardTxn::TwoPc
            && !matches!(s.isolation, Isolation::Serializable | Isolation::StrictSerializable)
        {
            // A piece runs at its PREPARE entry, in log order, and holds
            // its locks until the decision: serializable execution. The
            // weaker levels would need a snapshot across shards.
            return invalid("shard_txn=2pc needs isolation=serializable or strict-serializable".into());
        }
        if s.txn_recovery_ms == 0 {
            s.txn_recovery_ms = s.request_timeout_ms;
        }
        if s.heartbeat_ms == 0 || s.election_timeout_ms <= s.heartbeat_ms {
            return invalid("need 0 < heartbeat_ms < election_timeout_ms".into());
        }
        if s.max_connections == 0 || s.max_inflight_per_conn == 0 || s.max_batch_entries == 0 {
            return invalid("connection, in-flight and batch limits must be positive".into());
        }
        if s.idle_timeout_ms == 0 {
            return invalid("idle_timeout_ms must be positive".into());
        }
        // One largest reply must fit, or a read of a large value could
        // never be answered.
        let one_reply = crate::protocol::MAX_FRAME_BYTES + 4;
        if s.conn_bytes_max < one_reply || s.node_bytes_max < s.conn_bytes_max {
            return invalid(format!(
                "need {one_reply} <= conn_bytes_max <= node_bytes_max (one largest reply must fit)"
            ));
        }
        if let Some(l) = &s.leader {
            if !self.peers.contains_key(l) && l != &self.node_id {
                return invalid(format!("leader {l} is not a cluster member"));
            }
        }
        Ok(self)
    }

    /// All node ids, sorted (this node included).
    pub fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self.peers.keys().cloned().collect();
        m.push(self.node_id.clone());
        m.sort();
        m
    }

    /// The node that leads `shard` at start.
    pub fn initial_leader(&self, shard: usize) -> String {
        let members = self.members();
        let first = self
            .settings
            .leader
            .as_ref()
            .and_then(|l| members.iter().position(|m| m == l))
            .unwrap_or(0);
        members[(first + shard) % members.len()].clone()
    }

    /// Parses a TOML file: `node`, `listen`, `data_dir`, a `[peers]` table
    /// and a `[settings]` table of the same keys as the compact string.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let v: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File(e.to_string()))?;
        let field = |k: &str| -> Result<String, ConfigError> {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| ConfigError::File(format!("missing string field {k}")))
        };
        let listen = field("listen")?;
        let mut cfg = Config {
            node_id: field("node")?,
            listen: listen.parse().map_err(|_| bad("listen", &listen, "expected ip:port"))?,
            data_dir: PathBuf::from(field("data_dir")?),
            peers: BTreeMap::new(),
            settings: Settings::default(),
        };
        if let Some(peers) = v.get("peers").and_then(|p| p.as_table()) {
            for (id, addr) in peers {
                let addr = addr
                    .as_str()
                    .ok_or_else(|| ConfigError::File(format!("peer {id} needs a string")))?;
                cfg.peers.insert(id.clone(), addr.to_string());
            }
        }
        if let Some(settings) = v.get("settings").and_then(|s| s.as_table()) {
            for (k, val) in settings {
                let text = match val {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                cfg.settings.set(k, &text)?;
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(settings: &str) -> Result<Config, ConfigError> {
        Config {
            node_id: "n1".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: "/tmp/x".into(),
            peers: [("n2", "a"), ("n3", "b")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            settings: Settings::parse(settings)?,
        }
        .validate()
    }

    #[test]
    fn parses_compact_settings() {
        let c = cfg("ack=any:1,reads=lsn,replay_delay_ms=50,fsync=batch:5").unwrap();
        assert_eq!(c.settings.ack, Ack::Any(1));
        assert_eq!(c.settings.reads, ReadMode::Lsn);
        assert_eq!(c.settings.fsync, FsyncPolicy::Batch { interval_ms: 5 });
        assert_eq!((c.settings.n, c.settings.w, c.settings.r), (3, 2, 2));
        assert_eq!(c.initial_leader(1), "n2");
        assert_eq!(c.settings.isolation, Isolation::StrictSerializable, "the default");
        let c = cfg("isolation=read-committed,txn_step_ms=2").unwrap();
        assert_eq!(
            (c.settings.isolation, c.settings.txn_step_ms),
            (Isolation::ReadCommitted, 2)
        );
        assert!(matches!(cfg("isolation=chaos"), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn two_phase_commit_needs_a_serializable_isolation_and_derives_its_recovery_bound() {
        let c = cfg("shards=2,shard_txn=2pc,request_timeout_ms=1000").unwrap();
        assert_eq!(
            (c.settings.shard_txn, c.settings.txn_recovery_ms),
            (ShardTxn::TwoPc, 1000)
        );
        let c = cfg("shards=2,shard_txn=2pc,isolation=serializable,txn_recovery_ms=700").unwrap();
        assert_eq!(c.settings.txn_recovery_ms, 700);
        assert!(matches!(
            cfg("shards=2,shard_txn=2pc,isolation=snapshot"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(cfg("shard_txn=3pc"), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(matches!(cfg("ack=some"), Err(ConfigError::BadValue { .. })));
        assert!(matches!(cfg("colour=red"), Err(ConfigError::UnknownSetting(_))));
        assert!(matches!(cfg("ack=any:3"), Err(ConfigError::Invalid(_))));
        assert!(matches!(cfg("mode=leaderless,w=4"), Err(ConfigError::Invalid(_))));
        assert!(matches!(cfg("nokey"), Err(ConfigError::NotKeyValue(_))));
    }

    #[test]
    fn reads_toml() {
        let c = Config::from_toml(
            r#"
            node = "n1"
            listen = "127.0.0.1:7001"
            data_dir = "/tmp/n1"
            [peers]
            n2 = "127.0.0.1:7002"
            [settings]
            ack = "none"
            replay_delay_ms = 20
            read_repair = true
            "#,
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.settings.ack, Ack::None);
        assert_eq!(c.settings.replay_delay_ms, 20);
        assert!(c.settings.read_repair);
    }
}

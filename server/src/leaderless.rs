//! Leaderless (Dynamo-style) and multi-leader replication.
//!
//! Promises:
//! - Every write carries a last-write-wins [`Stamp`] taken from the
//!   coordinating node's clock plus its `clock_offset_ms`; every replica keeps
//!   the value with the newest stamp. Skewed clocks therefore silently drop
//!   writes, exactly as in the real systems.
//! - Leaderless: the coordinator sends a write to the key's `n` preferred
//!   replicas and answers `ok` after `w` durable acknowledgements (else
//!   `unknown`: some replicas may hold it); a read asks the `n` replicas,
//!   waits for `r` answers and returns the newest. `read_repair` writes the
//!   newest value back to stale responders; `hinted_handoff` keeps writes for
//!   replicas that did not acknowledge and replays them; `sloppy_quorum` lets
//!   nodes outside the preference list stand in (holding a hint) and count
//!   toward `w` and `r`.
//! - Multi-leader: each node applies a write locally, acknowledges after its
//!   own log has it, and ships it to every other node asynchronously (kept
//!   as a hint until delivered), so concurrent writes on two nodes conflict
//!   and last write wins.
//! - cas and append are read-modify-write at the coordinator, not atomic:
//!   that is what these systems offer without a consensus path.
//! - Each replica applies writes `replay_delay_ms` after it stored them.

use crate::config::{Config, Mode};
use crate::protocol::{
    json_len_capped, reply_too_large, Op, Outcome, Reply, ShardStatus, MAX_FRAME_BYTES, REPLY_OVERHEAD_BYTES,
};
use crate::state::{Command, Entry, Stamp, StateMachine};
use crate::transport::{PeerMsg, Transport};
use crate::wal::{self, Durable, Snapshot, WalCmd, WalError, WalHandle};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// Most hints kept for unreachable replicas; the oldest are dropped beyond.
pub const HINTS_MAX: usize = 100_000;
/// Most hints replayed per round.
const HINT_ROUND_MAX: usize = 1000;
/// Period of hint replay.
const HINT_PERIOD_MS: u64 = 200;
/// Most requests waiting in the replica's inbox.
const REPLICA_INBOX_MAX: usize = 16384;
/// Timer resolution of the replica actor.
const TICK_MS: u64 = 5;

/// FNV-1a: a stable hash, the same on every node and every build.
pub fn stable_hash(key: &str) -> u64 {
    key.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Where a replica's acknowledgement goes.
enum AckTo {
    Local(oneshot::Sender<()>),
    Remote { to: String, req_id: u64 },
    Nobody,
}

enum ReplicaMsg {
    Put {
        key: String,
        value: Value,
        stamp: Stamp,
        ack: AckTo,
    },
    Get {
        key: String,
        reply: oneshot::Sender<(Value, Option<Stamp>)>,
    },
    Status(oneshot::Sender<(u64, u64)>),
}

/// A peer's answer routed to the request waiting for it.
#[derive(Debug)]
enum Resp {
    PutAck {
        from: String,
    },
    Get {
        from: String,
        value: Value,
        stamp: Option<Stamp>,
    },
}

#[derive(Debug, Clone)]
struct Hint {
    target: String,
    key: String,
    value: Value,
    stamp: Stamp,
}

/// The leaderless / multi-leader engine of one node.
pub struct Leaderless {
    cfg: Arc<Config>,
    node: String,
    members: Vec<String>,
    transport: Arc<Transport>,
    replica: mpsc::Sender<ReplicaMsg>,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Resp>>>,
    next_req: AtomicU64,
    stamp_seq: AtomicU64,
    hints: Mutex<VecDeque<Hint>>,
}

/// Opens the local replica and starts the engine.
pub fn start(cfg: Arc<Config>, transport: Arc<Transport>) -> Result<Arc<Leaderless>, WalError> {
    let replica = Replica::open(&cfg, transport.clone())?;
    let members = cfg.members();
    let engine = Arc::new(Leaderless {
        node: cfg.node_id.clone(),
        members,
        transport,
        replica,
        pending: Mutex::new(HashMap::new()),
        next_req: AtomicU64::new(1),
        stamp_seq: AtomicU64::new(0),
        hints: Mutex::new(VecDeque::new()),
        cfg,
    });
    tokio::spawn(engine.clone().hint_loop());
    Ok(engine)
}

impl Leaderless {
    fn multi(&self) -> bool {
        self.cfg.settings.mode == Mode::MultiLeader
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.settings.request_timeout_ms)
    }

    /// The key's n preferred replicas, then the other nodes (stand-ins).
    fn ring(&self, key: &str) -> (Vec<String>, Vec<String>) {
        let len = self.members.len();
        let start = (stable_hash(key) % len as u64) as usize;
        let ordered: Vec<String> = (0..len).map(|i| self.members[(start + i) % len].clone()).collect();
        let n = self.cfg.settings.n;
        (ordered[..n].to_vec(), ordered[n..].to_vec())
    }

    fn new_stamp(&self) -> Stamp {
        let now_ms = chrono::Utc::now().timestamp_millis();
        Stamp {
            ms: now_ms + self.cfg.settings.clock_offset_ms,
            seq: self.stamp_seq.fetch_add(1, Ordering::Relaxed),
            node: self.node.clone(),
        }
    }

    fn register(&self) -> (u64, mpsc::UnboundedReceiver<Resp>) {
        let id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        (id, rx)
    }

    fn unregister(&self, id: u64) {
        self.pending.lock().expect("pending lock").remove(&id);
    }

    fn route(&self, req_id: u64, resp: Resp) {
        let tx = self.pending.lock().expect("pending lock").get(&req_id).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(resp);
        }
    }

    /// Handles a peer message for this mode.
    pub async fn on_peer(&self, from: String, msg: PeerMsg) {
        match msg {
            PeerMsg::Put {
                req_id,
                key,
                value,
                stamp,
                hint_for,
            } => self.on_put(from, req_id, key, value, stamp, hint_for).await,
            PeerMsg::PutAck { req_id } => self.route(req_id, Resp::PutAck { from }),
            PeerMsg::Get { req_id, key } => self.on_get(from, req_id, key).await,
            PeerMsg::GetResp { req_id, value, stamp } => self.route(req_id, Resp::Get { from, value, stamp }),
            other => {
                warn!(node = %self.node, peer = %from, msg = ?other, "message for another mode ignored")
            }
        }
    }

    async fn on_put(
        &self,
        from: String,
        req_id: u64,
        key: String,
        value: Value,
        stamp: Stamp,
        hint_for: Option<String>,
    ) {
        if let Some(target) = hint_for {
            // A stand-in keeps the write for its real owner and acknowledges.
            self.add_hint(Hint {
                target,
                key,
                value,
                stamp,
            });
            self.transport.send(&from, 0, PeerMsg::PutAck { req_id });
            return;
        }
        let ack = if req_id == 0 {
            AckTo::Nobody
        } else {
            AckTo::Remote { to: from, req_id }
        };
        let msg = ReplicaMsg::Put { key, value, stamp, ack };
        let _ = self.replica.send(msg).await;
    }

    async fn on_get(&self, from: String, req_id: u64, key: String) {
        let (value, stamp) = self.local_get(&key).await.unwrap_or((Value::Null, None));
        self.transport.send(&from, 0, PeerMsg::GetResp { req_id, value, stamp });
    }

    async fn local_get(&self, key: &str) -> Option<(Value, Option<Stamp>)> {
        let (tx, rx) = oneshot::channel();
        let msg = ReplicaMsg::Get {
            key: key.to_string(),
            reply: tx,
        };
        self.replica.try_send(msg).ok()?;
        tokio::time::timeout(self.timeout(), rx).await.ok()?.ok()
    }

    fn add_hint(&self, hint: Hint) {
        let mut hints = self.hints.lock().expect("hints lock");
        if hints.len() >= HINTS_MAX {
            hints.pop_front();
            warn!(node = %self.node, "hint store full; oldest hint dropped");
        }
        hints.push_back(hint);
    }

    /// Hands a write to this node's own replica; the receiver fires once it
    /// is durable. `None` when the replica's queue is full (nothing was
    /// sent, so the write certainly did not happen here).
    fn put_locally(&self, key: &str, value: &Value, stamp: &Stamp) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        let msg = ReplicaMsg::Put {
            key: key.to_string(),
            value: value.clone(),
            stamp: stamp.clone(),
            ack: AckTo::Local(tx),
        };
        self.replica.try_send(msg).ok().map(|()| rx)
    }

    /// Sends a write to `to` (or the local replica), answers arrive on the
    /// request's channel as `PutAck`.
    fn send_put(&self, to: &str, req_id: u64, key: &str, value: &Value, stamp: &Stamp, hint_for: Option<String>) {
        if to == self.node && hint_for.is_none() {
            if let Some(rx) = self.put_locally(key, value, stamp) {
                let route = self.pending.lock().expect("pending lock").get(&req_id).cloned();
                let node = self.node.clone();
                tokio::spawn(async move {
                    if let (Ok(()), Some(route)) = (rx.await, route) {
                        let _ = route.send(Resp::PutAck { from: node });
                    }
                });
            }
            return;
        }
        let msg = PeerMsg::Put {
            req_id,
            key: key.to_string(),
            value: value.clone(),
            stamp: stamp.clone(),
            hint_for,
        };
        self.transport.send(to, 0, msg);
    }

    fn send_get(&self, to: &str, req_id: u64, key: &str) {
        if to == self.node {
            let (tx, rx) = oneshot::channel();
            let msg = ReplicaMsg::Get {
                key: key.to_string(),
                reply: tx,
            };
            if self.replica.try_send(msg).is_ok() {
                let route = self.pending.lock().expect("pending lock").get(&req_id).cloned();
                let node = self.node.clone();
                tokio::spawn(async move {
                    if let (Ok((value, stamp)), Some(route)) = (rx.await, route) {
                        let _ = route.send(Resp::Get {
                            from: node,
                            value,
                            stamp,
                        });
                    }
                });
            }
            return;
        }
        self.transport.send(
            to,
            0,
            PeerMsg::Get {
                req_id,
                key: key.to_string(),
            },
        );
    }

    /// Serves one client operation.
    pub async fn handle(self: &Arc<Self>, id: u64, op: Op) -> Reply {
        let mut reply = match op {
            Op::Read { key } => match self.read(&key).await {
                Ok(v) => ok_value(id, v),
                Err(why) => Reply::fail(id, why),
            },
            Op::MultiRead { keys } => self.multi_read(id, keys).await,
            Op::Write { key, value } => self.write(id, &key, value).await,
            Op::Cas { key, expected, new } => self.cas(id, &key, expected, new).await,
            Op::Append { key, value } => self.append(id, &key, value).await,
            Op::Status => Reply::fail(id, "status is served by the node"),
            Op::Txn { .. } => Reply::fail(id, "leaderless mode does not execute transactions"),
        };
        reply.node = self.node.clone();
        reply
    }

    /// Reads each key in turn; stops with a `fail` as soon as the values
    /// read would not fit in one reply frame, so a `multi_read` naming a
    /// large value many times never builds a reply the client refuses.
    async fn multi_read(self: &Arc<Self>, id: u64, keys: Vec<String>) -> Reply {
        let room = MAX_FRAME_BYTES - REPLY_OVERHEAD_BYTES;
        let count = keys.len();
        let mut total = 0;
        let mut out = serde_json::Map::new();
        for key in keys {
            match self.read(&key).await {
                Ok(v) => {
                    total += key.len() + 4;
                    match json_len_capped(&v, room.saturating_sub(total)) {
                        Some(n) => total += n,
                        None => return Reply::fail(id, reply_too_large(&format!("reading {count} keys"))),
                    }
                    out.insert(key, v);
                }
                Err(why) => return Reply::fail(id, why),
            }
        }
        ok_value(id, Value::Object(out))
    }

    async fn cas(self: &Arc<Self>, id: u64, key: &str, expected: Value, new: Value) -> Reply {
        let current = match self.read(key).await {
            Ok(v) => v,
            Err(why) => return Reply::fail(id, why),
        };
        if current != expected {
            return Reply::fail(id, format!("cas mismatch: current value is {current}"));
        }
        self.write(id, key, new).await
    }

    async fn append(self: &Arc<Self>, id: u64, key: &str, value: Value) -> Reply {
        let current = match self.read(key).await {
            Ok(v) => v,
            Err(why) => return Reply::fail(id, why),
        };
        let list = match current {
            Value::Null => vec![value],
            Value::Array(mut l) => {
                l.push(value);
                l
            }
            other => return Reply::fail(id, format!("append to a non-list value {other}")),
        };
        self.write(id, key, Value::Array(list)).await
    }

    /// Reads the newest value of a key (multi-leader: the local one).
    async fn read(self: &Arc<Self>, key: &str) -> Result<Value, String> {
        if self.multi() {
            return self
                .local_get(key)
                .await
                .map(|(v, _)| v)
                .ok_or_else(|| "local replica busy".to_string());
        }
        self.quorum_read(key).await
    }

    async fn quorum_read(self: &Arc<Self>, key: &str) -> Result<Value, String> {
        let (prefs, fallbacks) = self.ring(key);
        let (req_id, mut rx) = self.register();
        for p in &prefs {
            self.send_get(p, req_id, key);
        }
        let need = self.cfg.settings.r;
        let mut answers: Vec<(String, Value, Option<Stamp>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + self.timeout();
        let mut sloppy_at = self.sloppy_deadline();
        while answers.len() < need {
            tokio::select! {
                resp = rx.recv() => match resp {
                    Some(Resp::Get { from, value, stamp }) => {
                        if !answers.iter().any(|(f, _, _)| *f == from) {
                            answers.push((from, value, stamp));
                        }
                    }
                    Some(Resp::PutAck { .. }) => {}
                    None => break,
                },
                _ = sleep_until_opt(sloppy_at) => {
                    sloppy_at = None;
                    for f in fallbacks.iter().take(need.saturating_sub(answers.len())) {
                        self.send_get(f, req_id, key);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.unregister(req_id);
        if answers.len() < need {
            return Err(format!("read quorum not reached: {} of {need}", answers.len()));
        }
        let newest = answers
            .iter()
            .max_by(|a, b| a.2.cmp(&b.2))
            .map(|(_, v, s)| (v.clone(), s.clone()))
            .unwrap_or((Value::Null, None));
        if self.cfg.settings.read_repair {
            self.repair(key, &newest, &answers);
        }
        Ok(newest.0)
    }

    fn sloppy_deadline(&self) -> Option<tokio::time::Instant> {
        if !self.cfg.settings.sloppy_quorum {
            return None;
        }
        let wait = Duration::from_millis(self.cfg.settings.request_timeout_ms / 4);
        Some(tokio::time::Instant::now() + wait)
    }

    /// Writes the newest value back to replicas that answered with older.
    fn repair(&self, key: &str, newest: &(Value, Option<Stamp>), answers: &[(String, Value, Option<Stamp>)]) {
        let Some(stamp) = &newest.1 else {
            return;
        };
        for (from, _, s) in answers {
            if s.as_ref() < Some(stamp) {
                debug!(node = %self.node, peer = %from, key, "read repair");
                self.send_put(from, 0, key, &newest.0, stamp, None);
            }
        }
    }

    async fn write(self: &Arc<Self>, id: u64, key: &str, value: Value) -> Reply {
        let stamp = self.new_stamp();
        if self.multi() {
            return self.multi_leader_write(id, key, value, stamp).await;
        }
        let (prefs, fallbacks) = self.ring(key);
        let (req_id, mut rx) = self.register();
        for p in &prefs {
            self.send_put(p, req_id, key, &value, &stamp, None);
        }
        let need = self.cfg.settings.w;
        let mut acked: BTreeSet<String> = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + self.timeout();
        let mut sloppy_at = self.sloppy_deadline();
        while acked.len() < need {
            tokio::select! {
                resp = rx.recv() => match resp {
                    Some(Resp::PutAck { from }) => { acked.insert(from); }
                    Some(Resp::Get { .. }) => {}
                    None => break,
                },
                _ = sleep_until_opt(sloppy_at) => {
                    sloppy_at = None;
                    let missing: Vec<String> = prefs.iter().filter(|p| !acked.contains(*p)).cloned().collect();
                    for (stand_in, owner) in fallbacks.iter().zip(missing) {
                        self.send_put(stand_in, req_id, key, &value, &stamp, Some(owner));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let got = acked.len();
        let ok = got >= need;
        self.finish_write(req_id, rx, acked, prefs, key, value, stamp, deadline);
        if ok {
            ok_value(id, Value::Null)
        } else {
            Reply::unknown(id, format!("write quorum not reached: {got} of {need}"))
        }
    }

    /// Keeps listening for the remaining acknowledgements until the deadline,
    /// then leaves hints for replicas that never acknowledged.
    #[allow(clippy::too_many_arguments)]
    fn finish_write(
        self: &Arc<Self>,
        req_id: u64,
        mut rx: mpsc::UnboundedReceiver<Resp>,
        mut acked: BTreeSet<String>,
        targets: Vec<String>,
        key: &str,
        value: Value,
        stamp: Stamp,
        deadline: tokio::time::Instant,
    ) {
        let this = self.clone();
        let key = key.to_string();
        let keep_hints = self.cfg.settings.hinted_handoff || self.multi();
        tokio::spawn(async move {
            while acked.len() < targets.len() {
                tokio::select! {
                    resp = rx.recv() => match resp {
                        Some(Resp::PutAck { from }) => { acked.insert(from); }
                        Some(_) => {}
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            this.unregister(req_id);
            if !keep_hints {
                return;
            }
            for t in targets.into_iter().filter(|t| !acked.contains(t)) {
                this.add_hint(Hint {
                    target: t,
                    key: key.clone(),
                    value: value.clone(),
                    stamp: stamp.clone(),
                });
            }
        });
    }

    async fn multi_leader_write(self: &Arc<Self>, id: u64, key: &str, value: Value, stamp: Stamp) -> Reply {
        let Some(rx) = self.put_locally(key, &value, &stamp) else {
            return Reply::fail(id, "local replica overloaded");
        };
        let durable = tokio::time::timeout(self.timeout(), rx).await;
        let peers: Vec<String> = self.members.iter().filter(|m| **m != self.node).cloned().collect();
        let (req_id, rx) = self.register();
        for p in &peers {
            self.send_put(p, req_id, key, &value, &stamp, None);
        }
        let deadline = tokio::time::Instant::now() + self.timeout();
        self.finish_write(req_id, rx, BTreeSet::new(), peers, key, value, stamp, deadline);
        match durable {
            Ok(Ok(())) => ok_value(id, Value::Null),
            _ => Reply::unknown(id, "local log did not confirm in time"),
        }
    }

    /// Replays hints to their owners until they acknowledge.
    async fn hint_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(HINT_PERIOD_MS));
        loop {
            tick.tick().await;
            let batch: Vec<Hint> = {
                let hints = self.hints.lock().expect("hints lock");
                hints.iter().take(HINT_ROUND_MAX).cloned().collect()
            };
            if batch.is_empty() {
                continue;
            }
            let delivered = self.deliver_hints(&batch).await;
            if delivered.is_empty() {
                continue;
            }
            let mut hints = self.hints.lock().expect("hints lock");
            hints.retain(|h| !delivered.contains(&(h.target.clone(), h.key.clone(), h.stamp.clone())));
            debug!(node = %self.node, delivered = delivered.len(), left = hints.len(), "hints delivered");
        }
    }

    async fn deliver_hints(&self, batch: &[Hint]) -> BTreeSet<(String, String, Stamp)> {
        let (req_base, mut rx) = self.register();
        let mut by_target: HashMap<String, Vec<&Hint>> = HashMap::new();
        for h in batch {
            by_target.entry(h.target.clone()).or_default().push(h);
        }
        // One request id per round; the ack tells us the sender, and we
        // count a target as caught up for every hint it acknowledged.
        let mut sent: HashMap<String, usize> = HashMap::new();
        for (target, hs) in &by_target {
            for h in hs {
                self.send_put(target, req_base, &h.key, &h.value, &h.stamp, None);
            }
            sent.insert(target.clone(), hs.len());
        }
        let mut acks: HashMap<String, usize> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(Resp::PutAck { from }) => *acks.entry(from).or_default() += 1,
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.unregister(req_base);
        by_target
            .into_iter()
            .filter(|(t, _)| acks.get(t) == sent.get(t))
            .flat_map(|(t, hs)| hs.into_iter().map(move |h| (t.clone(), h.key.clone(), h.stamp.clone())))
            .collect()
    }

    /// Status as a single pseudo-shard.
    pub async fn status(&self) -> ShardStatus {
        let (tx, rx) = oneshot::channel();
        let (last, applied) = match self.replica.try_send(ReplicaMsg::Status(tx)) {
            Ok(()) => tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or((0, 0)),
            Err(_) => (0, 0),
        };
        let mut peer_lag = BTreeMap::new();
        for h in self.hints.lock().expect("hints lock").iter() {
            *peer_lag.entry(h.target.clone()).or_insert(0) += 1;
        }
        ShardStatus {
            shard: 0,
            role: "replica".into(),
            epoch: 0,
            commit_lsn: last,
            applied_lsn: applied,
            last_lsn: last,
            leader: None,
            peer_lag,
        }
    }
}

fn ok_value(id: u64, value: Value) -> Reply {
    let mut r = Reply::new(id, Outcome::Ok);
    r.value = value;
    r
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The local store: log, state and delayed apply.
struct Replica {
    node: String,
    transport: Arc<Transport>,
    wal: WalHandle,
    sm: StateMachine,
    last_lsn: u64,
    applied_lsn: u64,
    durable_lsn: u64,
    base_lsn: u64,
    snapshot_every: u64,
    delay: Duration,
    /// Stored but not yet applied, with the time they become due.
    unapplied: VecDeque<(Entry, Instant)>,
    acks: BTreeMap<u64, Vec<AckTo>>,
    wal_buf: Vec<Entry>,
}

impl Replica {
    fn open(cfg: &Config, transport: Arc<Transport>) -> Result<mpsc::Sender<ReplicaMsg>, WalError> {
        let rec = wal::recover(&cfg.data_dir, cfg.settings.fsync)?;
        let (dtx, drx) = mpsc::unbounded_channel();
        let wal = wal::start_writer(&cfg.data_dir, &rec, cfg.settings.fsync, &cfg.node_id, dtx)?;
        let (base_lsn, mut sm) = match &rec.snapshot {
            Some(s) => (s.lsn, s.state.clone()),
            None => (0, StateMachine::new()),
        };
        for e in &rec.entries {
            sm.apply(&e.cmd);
        }
        let last = rec.entries.last().map_or(base_lsn, |e| e.lsn);
        info!(node = %cfg.node_id, epoch = 0, lsn = last, "replica recovered");
        let r = Replica {
            node: cfg.node_id.clone(),
            transport,
            wal,
            sm,
            last_lsn: last,
            applied_lsn: last,
            durable_lsn: last,
            base_lsn,
            snapshot_every: cfg.settings.snapshot_every_entries,
            delay: Duration::from_millis(cfg.settings.replay_delay_ms),
            unapplied: VecDeque::new(),
            acks: BTreeMap::new(),
            wal_buf: Vec::new(),
        };
        let (tx, rx) = mpsc::channel(REPLICA_INBOX_MAX);
        tokio::spawn(r.run(rx, drx));
        Ok(tx)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ReplicaMsg>, mut drx: mpsc::UnboundedReceiver<Durable>) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.handle(m),
                    None => return,
                },
                d = drx.recv() => match d {
                    Some(d) => self.on_durable(d),
                    None => {
                        error!(node = %self.node, epoch = 0, lsn = self.last_lsn, "log writer stopped; replica halts");
                        return;
                    }
                },
                _ = tick.tick() => {}
            }
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
                if self.wal_buf.len() >= 4096 {
                    break;
                }
            }
            if !self.wal_buf.is_empty() {
                self.wal.send(WalCmd::Append(std::mem::take(&mut self.wal_buf)));
            }
            self.apply_due();
        }
    }

    fn handle(&mut self, m: ReplicaMsg) {
        match m {
            ReplicaMsg::Put { key, value, stamp, ack } => {
                self.last_lsn += 1;
                let entry = Entry {
                    lsn: self.last_lsn,
                    epoch: 0,
                    cmd: Command::Put { key, value, stamp },
                };
                self.wal_buf.push(entry.clone());
                let due = match &ack {
                    AckTo::Local(_) => Instant::now(),
                    _ => Instant::now() + self.delay,
                };
                self.unapplied.push_back((entry, due));
                self.acks.entry(self.last_lsn).or_default().push(ack);
            }
            ReplicaMsg::Get { key, reply } => {
                let _ = reply.send(self.sm.get_stamped(&key));
            }
            ReplicaMsg::Status(tx) => {
                let _ = tx.send((self.last_lsn, self.applied_lsn));
            }
        }
    }

    fn on_durable(&mut self, d: Durable) {
        self.durable_lsn = d.lsn;
        let done: Vec<u64> = self.acks.range(..=d.lsn).map(|(l, _)| *l).collect();
        for lsn in done {
            for ack in self.acks.remove(&lsn).unwrap_or_default() {
                match ack {
                    AckTo::Local(tx) => {
                        let _ = tx.send(());
                    }
                    AckTo::Remote { to, req_id } => {
                        self.transport.send(&to, 0, PeerMsg::PutAck { req_id });
                    }
                    AckTo::Nobody => {}
                }
            }
        }
    }

    /// Applies stored writes once durable and due: a write this node
    /// coordinated is due at once, a write from another coordinator
    /// `replay_delay_ms` after it arrived (so replicas really differ, as
    /// they do when writes reach them at different times). Last-write-wins
    /// puts commute, so applying out of arrival order is safe; `applied_lsn`
    /// stays the highest LSN below which everything is applied.
    fn apply_due(&mut self) {
        let now = Instant::now();
        let durable = self.durable_lsn;
        let mut waiting = VecDeque::with_capacity(self.unapplied.len());
        for (e, due) in std::mem::take(&mut self.unapplied) {
            if e.lsn <= durable && due <= now {
                self.sm.apply(&e.cmd);
            } else {
                waiting.push_back((e, due));
            }
        }
        self.unapplied = waiting;
        self.applied_lsn = match self.unapplied.front() {
            Some((e, _)) => e.lsn - 1,
            None => durable.min(self.last_lsn),
        };
        if self.applied_lsn >= self.base_lsn + self.snapshot_every {
            self.base_lsn = self.applied_lsn;
            let snap = Snapshot {
                lsn: self.applied_lsn,
                epoch: 0,
                state: self.sm.clone(),
            };
            self.wal.send(WalCmd::Compact(Box::new(snap)));
        }
    }
}

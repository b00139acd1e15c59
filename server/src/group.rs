//! One single-leader replication group (one shard): log shipping, the
//! acknowledgement policies, the read policies, and failover.
//!
//! Promises (each one is a knob of the lab, see REPLICATION_LAB.md):
//! - The group is an actor: one task owns all its state and handles client
//!   requests, peer messages, log-writer reports and timer ticks in order, so
//!   there are no locks to reason about.
//! - Log matching as in Raft: an entry is identified by (lsn, epoch); a
//!   follower accepts entries only after the leader's previous entry matches,
//!   and replaces a conflicting uncommitted suffix (which is how a deposed
//!   leader's unreplicated writes disappear when it rejoins).
//! - A follower reports an entry as matched only once its own log writer says
//!   it is durable, so `ack=majority,fsync=always` means "on the disk of a
//!   majority".
//! - The commit LSN follows `ack` (all, majority, any:N, none) and only ever
//!   counts entries of the leader's own epoch (Raft's rule), so `majority`
//!   with `failover=fenced` never loses an acknowledged write.
//! - `failover=fenced`: Raft election (vote persisted before answering, log
//!   up-to-date check, lower epochs rejected, leader steps down without a
//!   majority). `unfenced`: a follower that misses heartbeats promotes itself
//!   without votes (into an epoch dealt to it alone) and an isolated leader
//!   never steps down (split brain).
//!   `off`: the configured leader leads forever.
//! - Reads: `leader` waits for a majority to confirm the leader's epoch after
//!   the read arrived (read index); `follower`/`sticky` answer from local
//!   state; `lsn` waits, bounded, until the session's LSN is applied.
//! - Followers apply committed entries `replay_delay_ms` late.

use crate::config::{Ack, Config, Failover, ReadMode};
use crate::limits::{Budgets, Held, Hold, Outgoing};
use crate::protocol::{
    encode_frame, encode_reply, json_len_capped, reply_too_large, Op, RawRequest, Reply, Session, ShardStatus,
    MAX_FRAME_BYTES, REPLY_OVERHEAD_BYTES,
};
use crate::state::{Applied, Command, Entry, StateMachine};
use crate::transport::{PeerMsg, Transport};
use crate::wal::{self, Durable, HardState, Snapshot, WalCmd, WalError, WalHandle};
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::{debug, error, info, warn};

/// Most client requests waiting in one group's inbox.
pub const GROUP_INBOX_MAX: usize = 16384;
/// Most writes waiting for commit at once; more are refused (certainly not applied).
pub const PENDING_WRITES_MAX: usize = 65536;
/// Most reads waiting (leader confirmation or LSN catch-up).
pub const PENDING_READS_MAX: usize = 65536;
/// Most messages handled before the actor flushes replication.
const DRAIN_MAX: usize = 1024;
/// Timer resolution.
const TICK_MS: u64 = 5;

/// What the group is asked to do by the node.
pub enum GroupMsg {
    /// A client request routed to this shard.
    Client {
        /// The request (read or write kind, already validated).
        req: ClientReq,
        /// Where the answer goes.
        reply: ClientReply,
    },
    /// A message from a peer's group for this shard.
    Peer {
        /// Sender.
        from: String,
        /// Message.
        msg: PeerMsg,
    },
    /// A status query.
    Status(oneshot::Sender<ShardStatus>),
}

/// A client request as the group sees it.
#[derive(Debug, Clone)]
pub struct ClientReq {
    /// Client's request id.
    pub id: u64,
    /// The operation (read, write, cas, append, multi_read).
    pub op: Op,
    /// Session guarantees.
    pub session: Session,
    /// Whether another node already forwarded it (never forward twice).
    pub forwarded: bool,
}

impl ClientReq {
    fn to_raw(&self) -> RawRequest {
        let mut raw = RawRequest {
            id: self.id,
            session: Some(self.session.clone()),
            ..Default::default()
        };
        match &self.op {
            Op::Read { key } => {
                raw.op = "read".into();
                raw.key = Some(key.clone());
            }
            Op::Write { key, value } => {
                raw.op = "write".into();
                raw.key = Some(key.clone());
                raw.value = Some(value.clone());
            }
            Op::Cas { key, expected, new } => {
                raw.op = "cas".into();
                raw.key = Some(key.clone());
                raw.expected = Some(expected.clone());
                raw.new = Some(new.clone());
            }
            Op::Append { key, value } => {
                raw.op = "append".into();
                raw.key = Some(key.clone());
                raw.value = Some(value.clone());
            }
            Op::MultiRead { keys } => {
                raw.op = "multi_read".into();
                raw.keys = Some(keys.clone());
            }
            Op::Status => raw.op = "status".into(),
        }
        raw
    }
}

/// Where the answer to a client request goes.
pub enum ClientReply {
    /// To a task waiting on [`GroupHandle::call`].
    Wait(oneshot::Sender<Reply>),
    /// Encoded, straight onto the client's connection (see [`ConnReply`]).
    Conn(ConnReply),
}

/// The answer slot of one request read from a client connection: the group
/// encodes its reply into the connection's outgoing queue itself, so a
/// request costs no task of its own, no timer and no extra wake-up between
/// the group and the writer (the common path of every read and write).
///
/// Promise: the client hears exactly once. A slot dropped unanswered (the
/// group stopped, say) answers `unknown` on drop. The connection's
/// in-flight slot travels with the reply frame and is released once the
/// frame is written; a large reply takes its bytes from the connection's
/// and the node's budgets, or is answered `fail` when they are spent.
pub struct ConnReply {
    out: mpsc::Sender<Outgoing>,
    id: u64,
    budgets: Arc<Budgets>,
    slot: Option<OwnedSemaphorePermit>,
    /// The request's own bytes, held until it is answered.
    _request: Held,
}

impl ConnReply {
    /// A slot for request `id`, answering on `out`, holding the in-flight
    /// `slot` and the request's bytes.
    pub fn new(
        out: mpsc::Sender<Outgoing>,
        id: u64,
        slot: OwnedSemaphorePermit,
        budgets: Arc<Budgets>,
        request: Held,
    ) -> ConnReply {
        ConnReply {
            out,
            id,
            budgets,
            slot: Some(slot),
            _request: request,
        }
    }

    /// Queues `reply` for the client.
    pub fn send(mut self, reply: &Reply) {
        self.answer(reply);
    }

    fn answer(&mut self, reply: &Reply) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut frame = encode_reply(reply);
        let bytes = match self.budgets.try_take(frame.len()) {
            Ok(held) => held,
            Err(why) => {
                let mut fail = Reply::fail(reply.id, why.to_string());
                fail.node = reply.node.clone();
                frame = encode_frame(&fail);
                Held::default()
            }
        };
        let hold = Hold {
            slot: Some(slot),
            bytes,
        };
        self.push(Outgoing { frame, hold });
    }

    fn push(&self, out: Outgoing) {
        // The queue holds as many frames as the connection has slots, so
        // it is full only while error replies of bad frames wait in it.
        if let Err(mpsc::error::TrySendError::Full(out)) = self.out.try_send(out) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = self.out.clone();
                rt.spawn(async move {
                    let _ = tx.send(out).await;
                });
            }
        }
    }
}

impl Drop for ConnReply {
    fn drop(&mut self) {
        if self.slot.is_some() {
            let id = self.id;
            self.answer(&Reply::unknown(id, "the server dropped the request"));
        }
    }
}

/// Handle the node uses to talk to a group.
#[derive(Clone)]
pub struct GroupHandle {
    tx: mpsc::Sender<GroupMsg>,
}

impl GroupHandle {
    /// Sends a client request and waits (bounded) for its answer.
    pub async fn call(&self, req: ClientReq, timeout: Duration) -> Reply {
        let id = req.id;
        let is_write = req.op.is_write();
        let (tx, rx) = oneshot::channel();
        let reply = ClientReply::Wait(tx);
        if self.tx.try_send(GroupMsg::Client { req, reply }).is_err() {
            return Reply::fail(id, "server overloaded");
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ if is_write => Reply::unknown(id, "timed out waiting for replication"),
            _ => Reply::unknown(id, "timed out"),
        }
    }

    /// Hands a request to the group with its answer slot; gives the slot
    /// back when the group's inbox is full (the caller answers).
    pub fn submit(&self, req: ClientReq, slot: ConnReply) -> Result<(), ConnReply> {
        let msg = GroupMsg::Client {
            req,
            reply: ClientReply::Conn(slot),
        };
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => match m {
                GroupMsg::Client {
                    reply: ClientReply::Conn(slot),
                    ..
                } => Err(slot),
                _ => unreachable!("the message sent is the one returned"),
            },
        }
    }

    /// Delivers a peer message (awaits inbox space: back-pressure on the link).
    pub async fn deliver(&self, from: String, msg: PeerMsg) {
        let _ = self.tx.send(GroupMsg::Peer { from, msg }).await;
    }

    /// The group's replication state.
    pub async fn status(&self) -> Option<ShardStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(GroupMsg::Status(tx)).ok()?;
        tokio::time::timeout(Duration::from_secs(2), rx).await.ok()?.ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    Leader,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Where an answer goes: a local client or a node that forwarded.
enum Replier {
    Local(oneshot::Sender<Reply>),
    Conn(ConnReply),
    Remote { to: String, fwd_id: u64 },
}

impl From<ClientReply> for Replier {
    fn from(reply: ClientReply) -> Replier {
        match reply {
            ClientReply::Wait(tx) => Replier::Local(tx),
            ClientReply::Conn(slot) => Replier::Conn(slot),
        }
    }
}

impl Replier {
    /// Hands `reply` over unchanged; a forwarding node's answer goes back
    /// to the node it came from.
    fn deliver(self, reply: Reply, transport: &Transport, shard: u32) {
        match self {
            Replier::Local(tx) => {
                let _ = tx.send(reply);
            }
            Replier::Conn(slot) => slot.send(&reply),
            Replier::Remote { to, fwd_id } => {
                transport.send(&to, shard, PeerMsg::ForwardResp { fwd_id, reply });
            }
        }
    }
}

struct PendingWrite {
    epoch: u64,
    id: u64,
    replier: Replier,
    deadline: Instant,
}

struct PendingRead {
    req: ClientReq,
    replier: Replier,
    /// Leader reads: heartbeat round that must be acknowledged by a majority.
    seq: u64,
    /// Leader reads: commit LSN when the read arrived. LSN reads: session LSN.
    lsn: u64,
    deadline: Instant,
}

struct Progress {
    next_lsn: u64,
    match_lsn: u64,
    acked_seq: u64,
    last_ack: Instant,
    snapshot_sent: Option<Instant>,
}

struct Forward {
    id: u64,
    replier: Replier,
    deadline: Instant,
}

/// The group actor's state.
pub struct Group {
    node: String,
    shard: u32,
    cfg: Arc<Config>,
    members: Vec<String>,
    peers: Vec<String>,
    transport: Arc<Transport>,
    dir: PathBuf,
    wal: WalHandle,
    hard: HardState,
    role: Role,
    leader: Option<String>,
    /// Snapshot point: entries up to here live in `sm`/`snapshot` only.
    base_lsn: u64,
    base_epoch: u64,
    log: VecDeque<Entry>,
    commit_lsn: u64,
    applied_lsn: u64,
    durable_lsn: u64,
    gen: u64,
    sm: StateMachine,
    snapshot: Option<Arc<Snapshot>>,
    wal_buf: Vec<Entry>,
    pending_writes: BTreeMap<u64, PendingWrite>,
    leader_reads: Vec<PendingRead>,
    lsn_reads: Vec<PendingRead>,
    forwards: BTreeMap<u64, Forward>,
    next_fwd_id: u64,
    progress: BTreeMap<String, Progress>,
    hb_seq: u64,
    hb_sent_seq: u64,
    last_heartbeat: Instant,
    last_ship: Instant,
    leader_since: Instant,
    votes: Vec<String>,
    prevotes: Vec<String>,
    prevote_epoch: u64,
    last_leader_contact: Option<Instant>,
    last_forced_snapshot: Option<Instant>,
    election_deadline: Instant,
    /// Follower: highest LSN known to match the current leader's log.
    verified_lsn: u64,
    reported_match: u64,
    /// Follower: commit LSNs learned and when (replay delay).
    replay_queue: VecDeque<(u64, Instant)>,
    last_seq_seen: u64,
}

/// Opens the group's storage, starts its actor and returns its handle.
pub fn start(cfg: Arc<Config>, shard: u32, transport: Arc<Transport>) -> Result<GroupHandle, WalError> {
    let dir = if cfg.settings.shards > 1 {
        cfg.data_dir.join(format!("shard-{shard}"))
    } else {
        cfg.data_dir.clone()
    };
    let rec = wal::recover(&dir, cfg.settings.fsync)?;
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    let wal = wal::start_writer(&dir, &rec, cfg.settings.fsync, &cfg.node_id, durable_tx)?;
    let members = cfg.members();
    let node = cfg.node_id.clone();
    let peers = members.iter().filter(|m| **m != node).cloned().collect();
    let (base_lsn, base_epoch, sm, snapshot) = match rec.snapshot {
        Some(s) => (s.lsn, s.epoch, s.state.clone(), Some(Arc::new(s))),
        None => (0, 0, StateMachine::new(), None),
    };
    let now = Instant::now();
    let mut g = Group {
        node,
        shard,
        cfg,
        members,
        peers,
        transport,
        dir,
        wal,
        hard: rec.hard,
        role: Role::Follower,
        leader: None,
        base_lsn,
        base_epoch,
        log: rec.entries.into(),
        commit_lsn: base_lsn,
        applied_lsn: base_lsn,
        durable_lsn: 0,
        gen: 0,
        sm,
        snapshot,
        wal_buf: Vec::new(),
        pending_writes: BTreeMap::new(),
        leader_reads: Vec::new(),
        lsn_reads: Vec::new(),
        forwards: BTreeMap::new(),
        next_fwd_id: 0,
        progress: BTreeMap::new(),
        hb_seq: 0,
        hb_sent_seq: 0,
        last_heartbeat: now,
        last_ship: now,
        leader_since: now,
        votes: Vec::new(),
        prevotes: Vec::new(),
        prevote_epoch: 0,
        last_leader_contact: None,
        last_forced_snapshot: None,
        election_deadline: now,
        verified_lsn: 0,
        reported_match: 0,
        replay_queue: VecDeque::new(),
        last_seq_seen: 0,
    };
    g.durable_lsn = g.last_lsn();
    info!(node = %g.node, shard, epoch = g.hard.epoch, lsn = g.last_lsn(), base_lsn, "group recovered");
    let (tx, rx) = mpsc::channel(GROUP_INBOX_MAX);
    tokio::spawn(g.run(rx, durable_rx));
    Ok(GroupHandle { tx })
}

impl Group {
    // ----- log helpers -------------------------------------------------

    fn last_lsn(&self) -> u64 {
        self.base_lsn + self.log.len() as u64
    }

    fn last_epoch(&self) -> u64 {
        self.log.back().map_or(self.base_epoch, |e| e.epoch)
    }

    /// Epoch of the entry at `lsn`; None if compacted away or beyond the log.
    fn epoch_at(&self, lsn: u64) -> Option<u64> {
        if lsn == self.base_lsn {
            return Some(self.base_epoch);
        }
        if lsn < self.base_lsn {
            return None;
        }
        self.log.get((lsn - self.base_lsn - 1) as usize).map(|e| e.epoch)
    }

    fn entry(&self, lsn: u64) -> Option<&Entry> {
        if lsn <= self.base_lsn {
            return None;
        }
        self.log.get((lsn - self.base_lsn - 1) as usize)
    }

    fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    fn settings(&self) -> &crate::config::Settings {
        &self.cfg.settings
    }

    fn reset_election_timer(&mut self) {
        let base = self.settings().election_timeout_ms;
        let ms = rand::thread_rng().gen_range(base..=base * 2);
        self.election_deadline = Instant::now() + Duration::from_millis(ms);
    }

    fn persist_hard_state(&mut self) {
        let sync = self.settings().fsync != wal::FsyncPolicy::Never;
        if let Err(e) = wal::save_hard_state(&self.dir, &self.hard, sync) {
            // Without a durable vote we could vote twice in one epoch after a
            // crash; stopping is the only safe reaction.
            error!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, error = %e, "cannot persist epoch and vote; exiting");
            std::process::exit(70);
        }
    }

    // ----- main loop ----------------------------------------------------

    async fn run(mut self, mut rx: mpsc::Receiver<GroupMsg>, mut durable_rx: mpsc::UnboundedReceiver<Durable>) {
        self.on_start();
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => return,
                },
                d = durable_rx.recv() => match d {
                    Some(d) => self.on_durable(d),
                    None => {
                        error!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, "log writer stopped; group halts");
                        return;
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
            for _ in 0..DRAIN_MAX {
                if let Ok(d) = durable_rx.try_recv() {
                    self.on_durable(d);
                }
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.flush();
        }
    }

    fn on_start(&mut self) {
        self.reset_election_timer();
        let first_leader = self.cfg.initial_leader(self.shard as usize) == self.node;
        match self.settings().failover {
            Failover::Off if first_leader => self.become_leader(self.hard.epoch + 1),
            Failover::Unfenced if first_leader && self.hard.epoch == 0 => self.become_leader(self.own_epoch_after(0)),
            Failover::Fenced if first_leader && self.hard.epoch == 0 => self.start_election(),
            _ => {}
        }
    }

    fn handle(&mut self, msg: GroupMsg) {
        match msg {
            GroupMsg::Client { req, reply } => self.on_client(req, reply.into()),
            GroupMsg::Peer { from, msg } => self.on_peer(from, msg),
            GroupMsg::Status(tx) => {
                let _ = tx.send(self.status());
            }
        }
    }

    /// End of a batch: ship the log, commit, apply, answer.
    fn flush(&mut self) {
        self.flush_wal_buf();
        if self.role == Role::Leader {
            // Synchronous policies ship at once (the ack waits for it);
            // asynchronous shipping happens on its own cadence (leader_tick),
            // except for the heartbeat rounds leader reads are waiting on.
            if !self.async_shipping() || self.reads_need_round() {
                self.replicate(false);
            }
            self.advance_commit();
        }
        self.apply_ready();
        self.serve_reads();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        match self.role {
            Role::Leader => self.leader_tick(now),
            Role::Follower | Role::Candidate => {
                if now >= self.election_deadline {
                    self.on_election_timeout();
                }
            }
        }
        self.expire(now);
    }

    fn leader_tick(&mut self, now: Instant) {
        let hb = Duration::from_millis(self.settings().heartbeat_ms);
        let ship = Duration::from_millis(self.settings().async_ship_ms);
        if now.duration_since(self.last_heartbeat) >= hb {
            self.replicate(true);
        } else if self.async_shipping() && now.duration_since(self.last_ship) >= ship {
            self.replicate(false);
        }
        if self.settings().failover == Failover::Fenced {
            self.check_quorum(now);
        }
        self.snapshot_lagging_followers();
    }

    /// A fenced leader that has not heard from a majority for an election
    /// timeout steps down, so it stops serving reads and taking writes.
    fn check_quorum(&mut self, now: Instant) {
        let window = Duration::from_millis(self.settings().election_timeout_ms);
        if now.duration_since(self.leader_since) < window {
            return;
        }
        let recent = self
            .progress
            .values()
            .filter(|p| now.duration_since(p.last_ack) < window)
            .count();
        if recent + 1 < self.majority() {
            warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.last_lsn(), "lost contact with a majority; stepping down");
            self.step_down(self.hard.epoch, None);
        }
    }

    fn on_election_timeout(&mut self) {
        match self.settings().failover {
            Failover::Off => self.reset_election_timer(),
            Failover::Fenced => self.start_prevote(),
            Failover::Unfenced => {
                warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.last_lsn(), "missed heartbeats; promoting myself without votes (unfenced)");
                self.become_leader(self.own_epoch_after(self.hard.epoch));
            }
        }
    }

    fn own_epoch_after(&self, epoch: u64) -> u64 {
        own_epoch_after(&self.members, &self.node, epoch)
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .pending_writes
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(l, _)| *l)
            .collect();
        for lsn in expired {
            if let Some(w) = self.pending_writes.remove(&lsn) {
                let mut r = Reply::unknown(w.id, "timed out waiting for replication");
                r.lsn = Some(lsn);
                self.answer(w.replier, r);
            }
        }
        let fwd: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in fwd {
            if let Some(f) = self.forwards.remove(&k) {
                self.answer(f.replier, Reply::unknown(f.id, "forward to leader timed out"));
            }
        }
        self.expire_reads(now);
    }

    fn expire_reads(&mut self, now: Instant) {
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leader_reads)
            .into_iter()
            .partition(|r| r.deadline <= now);
        self.leader_reads = live;
        for r in dead {
            let id = r.req.id;
            self.answer(r.replier, Reply::unknown(id, "leadership not confirmed in time"));
        }
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lsn_reads)
            .into_iter()
            .partition(|r| r.deadline <= now);
        self.lsn_reads = live;
        for r in dead {
            let mut reply = Reply::fail(r.req.id, "replica has not applied the session's LSN");
            reply.leader_hint = self.leader.clone();
            self.answer(r.replier, reply);
        }
    }

    // ----- answering --------------------------------------------------

    fn answer(&self, replier: Replier, mut reply: Reply) {
        reply.node = self.node.clone();
        reply.shard = Some(self.shard);
        if reply.leader_hint.is_none() && self.role != Role::Leader {
            reply.leader_hint = self.leader.clone();
        }
        replier.deliver(reply, &self.transport, self.shard);
    }

    // ----- client requests ---------------------------------------------

    fn on_client(&mut self, req: ClientReq, replier: Replier) {
        if req.op.is_write() {
            return self.on_client_write(req, replier);
        }
        match self.settings().reads {
            ReadMode::Leader => self.on_leader_read(req, replier),
            ReadMode::Follower | ReadMode::Sticky => {
                let reply = self.local_read(&req);
                self.answer(replier, reply);
            }
            ReadMode::Lsn => self.on_lsn_read(req, replier),
        }
    }

    fn on_client_write(&mut self, req: ClientReq, replier: Replier) {
        if self.role != Role::Leader {
            return self.forward_or_fail(req, replier);
        }
        if self.pending_writes.len() >= PENDING_WRITES_MAX {
            return self.answer(replier, Reply::fail(req.id, "too many writes in flight"));
        }
        let cmd = match req.op {
            Op::Write { key, value } => Command::Write { key, value },
            Op::Cas { key, expected, new } => Command::Cas { key, expected, new },
            Op::Append { key, value } => Command::Append { key, value },
            _ => unreachable!("is_write checked"),
        };
        let lsn = self.append_local(cmd);
        let deadline = Instant::now() + Duration::from_millis(self.settings().request_timeout_ms);
        self.pending_writes.insert(
            lsn,
            PendingWrite {
                epoch: self.hard.epoch,
                id: req.id,
                replier,
                deadline,
            },
        );
    }

    /// Leader: appends a new entry of the current epoch to the log.
    fn append_local(&mut self, cmd: Command) -> u64 {
        let entry = Entry {
            lsn: self.last_lsn() + 1,
            epoch: self.hard.epoch,
            cmd,
        };
        let lsn = entry.lsn;
        self.wal_buf.push(entry.clone());
        self.log.push_back(entry);
        lsn
    }

    fn forward_or_fail(&mut self, req: ClientReq, replier: Replier) {
        let leader = match &self.leader {
            Some(l) if !req.forwarded && l != &self.node => l.clone(),
            _ => {
                let mut r = Reply::fail(req.id, "not the leader");
                r.leader_hint = self.leader.clone();
                return self.answer(replier, r);
            }
        };
        self.next_fwd_id += 1;
        let fwd_id = self.next_fwd_id;
        let sent = self.transport.send(
            &leader,
            self.shard,
            PeerMsg::Forward {
                fwd_id,
                request: req.to_raw(),
            },
        );
        if !sent {
            let mut r = Reply::fail(req.id, "leader unreachable");
            r.leader_hint = Some(leader);
            return self.answer(replier, r);
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings().request_timeout_ms);
        self.forwards.insert(
            fwd_id,
            Forward {
                id: req.id,
                replier,
                deadline,
            },
        );
    }

    fn local_read(&self, req: &ClientReq) -> Reply {
        let mut r = Reply::new(req.id, crate::protocol::Outcome::Ok);
        let value = match &req.op {
            Op::Read { key } => self.sized_read(std::slice::from_ref(key)).map(|mut v| v.remove(0).1),
            Op::MultiRead { keys } => self.sized_read(keys).map(|v| Value::Object(v.into_iter().collect())),
            _ => Ok(Value::Null),
        };
        match value {
            Ok(v) => r.value = v,
            Err(why) => return Reply::fail(req.id, why),
        }
        r.lsn = Some(self.applied_lsn);
        r
    }

    /// The values at `keys`, each measured before it is copied: a read
    /// whose reply would not fit in a frame is refused having copied at
    /// most a frame's worth (a `multi_read` naming a large value many
    /// times would otherwise build a reply of hundreds of megabytes for a
    /// request of a few dozen bytes).
    fn sized_read(&self, keys: &[String]) -> Result<Vec<(String, Value)>, String> {
        let room = MAX_FRAME_BYTES - REPLY_OVERHEAD_BYTES;
        let too_large = || reply_too_large(&format!("reading {} keys", keys.len()));
        let mut total = 0;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Quotes, colon and comma around each key.
            total += key.len() + 4;
            let value = self.sm.map().get(key);
            total += match value {
                None => 4,
                Some(v) => json_len_capped(v, room.saturating_sub(total)).ok_or_else(too_large)?,
            };
            if total > room {
                return Err(too_large());
            }
            out.push((key.clone(), value.cloned().unwrap_or(Value::Null)));
        }
        Ok(out)
    }

    fn on_leader_read(&mut self, req: ClientReq, replier: Replier) {
        if self.role != Role::Leader {
            return self.forward_or_fail(req, replier);
        }
        if self.leader_reads.len() >= PENDING_READS_MAX {
            return self.answer(replier, Reply::fail(req.id, "too many reads in flight"));
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings().request_timeout_ms);
        self.leader_reads.push(PendingRead {
            req,
            replier,
            seq: self.hb_seq + 1,
            lsn: self.commit_lsn,
            deadline,
        });
    }

    fn on_lsn_read(&mut self, req: ClientReq, replier: Replier) {
        let min_lsn = req.session.min_lsn_for(self.shard as usize);
        if self.applied_lsn >= min_lsn {
            let reply = self.local_read(&req);
            return self.answer(replier, reply);
        }
        if self.lsn_reads.len() >= PENDING_READS_MAX {
            return self.answer(replier, Reply::fail(req.id, "too many reads in flight"));
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings().read_wait_ms);
        self.lsn_reads.push(PendingRead {
            req,
            replier,
            seq: 0,
            lsn: min_lsn,
            deadline,
        });
    }

    /// Answers the reads whose conditions now hold.
    fn serve_reads(&mut self) {
        if !self.lsn_reads.is_empty() {
            let applied = self.applied_lsn;
            let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lsn_reads)
                .into_iter()
                .partition(|r| applied >= r.lsn);
            self.lsn_reads = wait;
            for r in ready {
                let reply = self.local_read(&r.req);
                self.answer(r.replier, reply);
            }
        }
        if self.role != Role::Leader || self.leader_reads.is_empty() {
            return;
        }
        // The leader must have committed an entry of its own epoch, so its
        // commit LSN covers every write acknowledged by earlier leaders.
        if self.epoch_at(self.commit_lsn) != Some(self.hard.epoch) {
            return;
        }
        let confirmed = self.confirmed_seq();
        let applied = self.applied_lsn;
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leader_reads)
            .into_iter()
            .partition(|r| r.seq <= confirmed && applied >= r.lsn);
        self.leader_reads = wait;
        for r in ready {
            let reply = self.local_read(&r.req);
            self.answer(r.replier, reply);
        }
    }

    /// Highest heartbeat round acknowledged by a majority (self included).
    fn confirmed_seq(&self) -> u64 {
        let mut seqs: Vec<u64> = self.progress.values().map(|p| p.acked_seq).collect();
        seqs.push(self.hb_seq);
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs[self.majority() - 1]
    }

    // ----- replication (leader) ---------------------------------------

    /// Sends entries (or heartbeats) to every follower.
    fn replicate(&mut self, heartbeat: bool) {
        let heartbeat = heartbeat || self.reads_need_round();
        self.last_ship = Instant::now();
        if heartbeat {
            self.hb_seq += 1;
            self.hb_sent_seq = self.hb_seq;
            self.last_heartbeat = Instant::now();
        }
        for peer in self.peers.clone() {
            self.replicate_to(&peer, heartbeat);
        }
    }

    /// `ack=none` is asynchronous replication as PostgreSQL's WAL sender or
    /// MySQL's binlog dump does it: only the part of the log that is already
    /// durable on the leader is shipped, by a sender that wakes up every
    /// `async_ship_ms`, after the client has been answered. That gap is the
    /// replication lag an asynchronous leader's crash loses.
    fn async_shipping(&self) -> bool {
        self.settings().ack == Ack::None
    }

    fn reads_need_round(&self) -> bool {
        self.leader_reads.iter().any(|r| r.seq > self.hb_sent_seq)
    }

    fn replicate_to(&mut self, peer: &str, heartbeat: bool) {
        let max_batch = self.settings().max_batch_entries as u64;
        let inflight_max = max_batch * 8;
        let last = if self.async_shipping() {
            self.last_lsn().min(self.durable_lsn)
        } else {
            self.last_lsn()
        };
        let Some(p) = self.progress.get(peer) else {
            return;
        };
        let (next, matched) = (p.next_lsn, p.match_lsn);
        if next <= self.base_lsn {
            return self.send_snapshot(peer);
        }
        let room = (matched + inflight_max).saturating_sub(next - 1);
        let upto = last.min(next - 1 + max_batch.min(room));
        if upto < next && !heartbeat {
            return;
        }
        let entries: Vec<Entry> = (next..=upto).filter_map(|l| self.entry(l).cloned()).collect();
        let prev_lsn = next - 1;
        let msg = PeerMsg::Append {
            epoch: self.hard.epoch,
            prev_lsn,
            prev_epoch: self.epoch_at(prev_lsn).unwrap_or(0),
            commit_lsn: self.commit_lsn,
            seq: self.hb_seq,
            entries,
        };
        self.transport.send(peer, self.shard, msg);
        if let Some(p) = self.progress.get_mut(peer) {
            p.next_lsn = upto.max(prev_lsn) + 1;
        }
    }

    fn send_snapshot(&mut self, peer: &str) {
        let timeout = Duration::from_millis(self.settings().election_timeout_ms);
        let Some(snap) = self.snapshot.clone() else {
            return;
        };
        let Some(p) = self.progress.get_mut(peer) else {
            return;
        };
        if p.snapshot_sent.is_some_and(|t| t.elapsed() < timeout) {
            return;
        }
        p.snapshot_sent = Some(Instant::now());
        info!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = snap.lsn, peer, "sending snapshot to lagging follower");
        self.transport.send(
            peer,
            self.shard,
            PeerMsg::Snapshot {
                epoch: self.hard.epoch,
                snapshot: Box::new((*snap).clone()),
                seq: self.hb_seq,
            },
        );
    }

    fn on_append_resp(&mut self, from: &str, epoch: u64, success: bool, match_lsn: u64, last_lsn: u64, seq: u64) {
        if epoch > self.hard.epoch {
            return self.step_down(epoch, None);
        }
        if epoch < self.hard.epoch || self.role != Role::Leader {
            return;
        }
        let base = self.base_lsn;
        let Some(p) = self.progress.get_mut(from) else {
            return;
        };
        p.acked_seq = p.acked_seq.max(seq);
        p.last_ack = Instant::now();
        if success {
            if match_lsn > p.match_lsn {
                p.match_lsn = match_lsn;
                p.snapshot_sent = None;
            }
            p.next_lsn = p.next_lsn.max(p.match_lsn + 1);
        } else {
            // Back up to where the follower's log may match; below the
            // snapshot point this turns into a snapshot transfer.
            p.next_lsn = (p.match_lsn + 1).max(p.next_lsn.min(last_lsn + 1));
            if p.next_lsn <= base {
                p.snapshot_sent = None;
            }
        }
    }

    /// Moves the commit LSN as far as the `ack` policy allows.
    fn advance_commit(&mut self) {
        let candidate = self.ack_point();
        if candidate <= self.commit_lsn {
            return;
        }
        // Raft's rule: count replicas only for entries of our own epoch.
        if self.epoch_at(candidate) != Some(self.hard.epoch) {
            return;
        }
        debug!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = candidate, "commit advanced");
        self.commit_lsn = candidate;
    }

    fn ack_point(&self) -> u64 {
        let own = self.durable_lsn.min(self.last_lsn());
        let mut followers: Vec<u64> = self.progress.values().map(|p| p.match_lsn).collect();
        followers.sort_unstable_by(|a, b| b.cmp(a));
        match self.settings().ack {
            Ack::None => own,
            Ack::All => followers.iter().copied().fold(own, u64::min),
            Ack::Any(k) => own.min(followers.get(k - 1).copied().unwrap_or(0)),
            Ack::Majority => {
                let mut all = followers;
                all.push(own);
                all.sort_unstable_by(|a, b| b.cmp(a));
                all[self.majority() - 1]
            }
        }
    }

    // ----- applying ------------------------------------------------------

    /// Applies committed entries: at once on the leader, `replay_delay_ms`
    /// after learning the commit on a follower.
    fn apply_ready(&mut self) {
        let target = if self.role == Role::Leader || self.settings().replay_delay_ms == 0 {
            self.replay_queue.clear();
            self.commit_lsn
        } else {
            self.delayed_apply_target()
        };
        self.apply_to(target.min(self.commit_lsn));
    }

    fn delayed_apply_target(&mut self) -> u64 {
        let delay = Duration::from_millis(self.settings().replay_delay_ms);
        let mut target = self.applied_lsn;
        while let Some((lsn, at)) = self.replay_queue.front() {
            if at.elapsed() < delay {
                break;
            }
            target = target.max(*lsn);
            self.replay_queue.pop_front();
        }
        target
    }

    fn apply_to(&mut self, target: u64) {
        while self.applied_lsn < target {
            let lsn = self.applied_lsn + 1;
            let Some(entry) = self.entry(lsn).cloned() else {
                break;
            };
            let result = self.sm.apply(&entry.cmd);
            self.applied_lsn = lsn;
            self.reply_applied(&entry, result);
        }
        self.maybe_compact();
    }

    fn reply_applied(&mut self, entry: &Entry, result: Applied) {
        let Some(w) = self.pending_writes.remove(&entry.lsn) else {
            return;
        };
        if w.epoch != entry.epoch {
            // Our entry was replaced by another leader's: outcome unknown to us.
            let r = Reply::unknown(w.id, "entry replaced by another leader");
            return self.answer(w.replier, r);
        }
        let mut r = match result {
            Applied::Ok => Reply::new(w.id, crate::protocol::Outcome::Ok),
            Applied::Rejected(why) => Reply::fail(w.id, why),
        };
        r.lsn = Some(entry.lsn);
        self.answer(w.replier, r);
    }

    fn maybe_compact(&mut self) {
        let every = self.settings().snapshot_every_entries;
        if self.applied_lsn >= self.base_lsn + every {
            self.compact();
        }
    }

    /// Leader: a follower more than `snapshot_lag_entries` behind is
    /// rebuilt from a snapshot instead of the log (at most one forced
    /// snapshot per election timeout), like a full resync once a
    /// replication backlog is exceeded.
    fn snapshot_lagging_followers(&mut self) {
        let max_lag = self.settings().snapshot_lag_entries;
        if max_lag == 0 || self.applied_lsn <= self.base_lsn {
            return;
        }
        let window = Duration::from_millis(self.settings().election_timeout_ms);
        if self.last_forced_snapshot.is_some_and(|t| t.elapsed() < window) {
            return;
        }
        let last = self.last_lsn();
        let lagging = self
            .progress
            .iter()
            .find(|(_, p)| last.saturating_sub(p.match_lsn) > max_lag && p.next_lsn > self.base_lsn)
            .map(|(peer, p)| (peer.clone(), p.match_lsn));
        let Some((peer, match_lsn)) = lagging else {
            return;
        };
        info!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = last, peer = %peer, match_lsn, "follower too far behind; snapshot instead of log");
        self.last_forced_snapshot = Some(Instant::now());
        self.compact();
        if let Some(p) = self.progress.get_mut(&peer) {
            p.next_lsn = p.next_lsn.min(p.match_lsn + 1);
        }
    }

    /// Snapshots the state machine at the applied LSN and drops the log
    /// before it (memory and disk).
    fn compact(&mut self) {
        let lsn = self.applied_lsn;
        let epoch = self.epoch_at(lsn).unwrap_or(self.base_epoch);
        let snap = Arc::new(Snapshot {
            lsn,
            epoch,
            state: self.sm.clone(),
        });
        let drop_n = (lsn - self.base_lsn) as usize;
        self.log.drain(..drop_n);
        self.base_lsn = lsn;
        self.base_epoch = epoch;
        self.snapshot = Some(snap.clone());
        self.wal.send(WalCmd::Compact(Box::new((*snap).clone())));
        info!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn, "snapshot taken");
    }

    // ----- durability reports ------------------------------------------

    fn on_durable(&mut self, d: Durable) {
        if d.gen != self.gen {
            return;
        }
        self.durable_lsn = d.lsn.min(self.last_lsn());
        if self.role != Role::Leader {
            self.report_match(false);
        }
    }

    /// Follower: tells the leader how far its log is durable and matching.
    fn report_match(&mut self, force: bool) {
        let Some(leader) = self.leader.clone() else {
            return;
        };
        let m = self.durable_lsn.min(self.verified_lsn);
        if !force && m <= self.reported_match {
            return;
        }
        self.reported_match = self.reported_match.max(m);
        let msg = PeerMsg::AppendResp {
            epoch: self.hard.epoch,
            success: true,
            match_lsn: m,
            last_lsn: self.last_lsn(),
            seq: self.last_seq_seen,
        };
        self.transport.send(&leader, self.shard, msg);
    }

    // ----- peer messages ----------------------------------------------

    fn on_peer(&mut self, from: String, msg: PeerMsg) {
        match msg {
            PeerMsg::Append {
                epoch,
                prev_lsn,
                prev_epoch,
                entries,
                commit_lsn,
                seq,
            } => self.on_append(&from, epoch, prev_lsn, prev_epoch, entries, commit_lsn, seq),
            PeerMsg::AppendResp {
                epoch,
                success,
                match_lsn,
                last_lsn,
                seq,
            } => self.on_append_resp(&from, epoch, success, match_lsn, last_lsn, seq),
            PeerMsg::Vote {
                epoch,
                last_lsn,
                last_epoch,
            } => self.on_vote(&from, epoch, last_lsn, last_epoch),
            PeerMsg::VoteResp { epoch, granted } => self.on_vote_resp(&from, epoch, granted),
            PeerMsg::PreVote {
                epoch,
                last_lsn,
                last_epoch,
            } => self.on_prevote(&from, epoch, last_lsn, last_epoch),
            PeerMsg::PreVoteResp {
                epoch,
                granted,
                voter_epoch,
            } => self.on_prevote_resp(&from, epoch, granted, voter_epoch),
            PeerMsg::Snapshot { epoch, snapshot, seq } => self.on_snapshot(&from, epoch, *snapshot, seq),
            PeerMsg::Forward { fwd_id, request } => self.on_forward(from, fwd_id, request),
            PeerMsg::ForwardResp { fwd_id, reply } => self.on_forward_resp(fwd_id, reply),
            other => {
                warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, peer = %from, msg = ?other, "message for another mode ignored");
            }
        }
    }

    fn on_forward(&mut self, from: String, fwd_id: u64, request: RawRequest) {
        let replier = Replier::Remote { to: from, fwd_id };
        match crate::protocol::validate(request) {
            Ok(req) => self.on_client(
                ClientReq {
                    id: req.id,
                    op: req.op,
                    session: req.session,
                    forwarded: true,
                },
                replier,
            ),
            Err(e) => self.answer(replier, Reply::fail(0, e.to_string())),
        }
    }

    fn on_forward_resp(&mut self, fwd_id: u64, mut reply: Reply) {
        if let Some(f) = self.forwards.remove(&fwd_id) {
            reply.id = f.id;
            if !matches!(f.replier, Replier::Remote { .. }) {
                f.replier.deliver(reply, &self.transport, self.shard);
            }
        }
    }

    /// Accepts a message from a leader of `epoch`; false if it is stale.
    fn accept_leader(&mut self, from: &str, epoch: u64) -> bool {
        if epoch < self.hard.epoch {
            return false;
        }
        if self.role == Role::Leader && epoch == self.hard.epoch {
            // Never expected: fenced elections have one winner per epoch
            // and unfenced promotions take epochs of their own. Should it
            // happen, the higher id keeps the role.
            if from < self.node.as_str() {
                return false;
            }
            warn!(node = %self.node, shard = self.shard, epoch, peer = from, "another leader in my epoch; yielding");
        }
        if epoch > self.hard.epoch || self.role != Role::Follower {
            self.step_down(epoch, Some(from.to_string()));
        }
        if self.leader.as_deref() != Some(from) {
            info!(node = %self.node, shard = self.shard, epoch, leader = from, "following new leader");
            self.leader = Some(from.to_string());
            self.verified_lsn = 0;
            self.reported_match = 0;
        }
        self.last_leader_contact = Some(Instant::now());
        self.reset_election_timer();
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        from: &str,
        epoch: u64,
        prev_lsn: u64,
        prev_epoch: u64,
        entries: Vec<Entry>,
        commit_lsn: u64,
        seq: u64,
    ) {
        if !self.accept_leader(from, epoch) {
            return self.reject(from, seq);
        }
        self.last_seq_seen = self.last_seq_seen.max(seq);
        if prev_lsn > self.last_lsn() {
            return self.reject(from, seq);
        }
        if prev_lsn >= self.base_lsn && self.epoch_at(prev_lsn) != Some(prev_epoch) {
            return self.reject_at(from, seq, prev_lsn.saturating_sub(1));
        }
        let last_new = prev_lsn + entries.len() as u64;
        if !self.merge_entries(entries) {
            // Rewound to an empty state: start again from the beginning.
            return self.reject_at(from, seq, 0);
        }
        self.verified_lsn = self.verified_lsn.max(last_new.max(self.base_lsn));
        let new_commit = commit_lsn.min(last_new.max(self.base_lsn));
        if new_commit > self.commit_lsn {
            self.commit_lsn = new_commit;
            self.replay_queue.push_back((new_commit, Instant::now()));
        }
        self.report_match(true);
    }

    /// Appends what is new and replaces a conflicting suffix. False when
    /// the node had to rewind instead (nothing merged).
    fn merge_entries(&mut self, entries: Vec<Entry>) -> bool {
        let mut fresh = Vec::new();
        for e in entries {
            if e.lsn <= self.base_lsn {
                continue;
            }
            if !fresh.is_empty() || e.lsn > self.last_lsn() {
                fresh.push(e);
                continue;
            }
            if self.epoch_at(e.lsn) != Some(e.epoch) {
                if !self.truncate_from(e.lsn) {
                    // We rewound to an empty state; the leader resends.
                    return false;
                }
                fresh.push(e);
            }
        }
        for e in &fresh {
            self.log.push_back(e.clone());
        }
        self.wal_buf.extend(fresh);
        true
    }

    /// Drops entries from `lsn` on. Returns false when they were already
    /// applied and the node had to rewind to an empty state instead.
    fn truncate_from(&mut self, lsn: u64) -> bool {
        let dropped = self.last_lsn() + 1 - lsn;
        if lsn <= self.commit_lsn {
            // Only possible without fencing (or with ack policies weaker than
            // a majority): the new leader's history lacks writes this node
            // committed. They are lost, as in the real systems.
            let fenced_majority =
                self.settings().failover == Failover::Fenced && matches!(self.settings().ack, Ack::Majority | Ack::All);
            if fenced_majority {
                error!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn, commit_lsn = self.commit_lsn, "leader's log conflicts with committed entries");
            } else {
                warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn, commit_lsn = self.commit_lsn, dropped, "discarding committed entries the new leader never had");
            }
        }
        self.flush_wal_buf();
        if lsn <= self.applied_lsn {
            self.rewind();
            return false;
        }
        warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn, dropped, "truncating suffix that conflicts with the leader");
        self.log.truncate((lsn - self.base_lsn - 1) as usize);
        self.commit_lsn = self.commit_lsn.min(lsn - 1);
        self.replay_queue.retain(|(l, _)| *l < lsn);
        self.gen += 1;
        self.durable_lsn = self.durable_lsn.min(lsn - 1);
        self.verified_lsn = self.verified_lsn.min(lsn - 1);
        self.wal.send(WalCmd::Truncate {
            from_lsn: lsn,
            gen: self.gen,
        });
        let gone: Vec<u64> = self.pending_writes.range(lsn..).map(|(l, _)| *l).collect();
        for l in gone {
            if let Some(w) = self.pending_writes.remove(&l) {
                self.answer(w.replier, Reply::unknown(w.id, "entry truncated"));
            }
        }
        true
    }

    fn flush_wal_buf(&mut self) {
        if !self.wal_buf.is_empty() {
            let batch = std::mem::take(&mut self.wal_buf);
            self.wal.send(WalCmd::Append(batch));
        }
    }

    /// Forgets everything (state, log, snapshot) so the leader rebuilds this
    /// replica from its log or a snapshot: the only way to undo writes that
    /// were applied but are not in the new leader's history.
    fn rewind(&mut self) {
        warn!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.applied_lsn, "rewinding to an empty state to follow the new leader");
        let empty = Snapshot {
            lsn: 0,
            epoch: 0,
            state: StateMachine::new(),
        };
        self.install_state(empty);
        self.verified_lsn = 0;
    }

    /// Replaces log and state by a snapshot (durably, through the writer).
    fn install_state(&mut self, snap: Snapshot) {
        self.wal_buf.clear();
        self.log.clear();
        self.base_lsn = snap.lsn;
        self.base_epoch = snap.epoch;
        self.commit_lsn = snap.lsn;
        self.applied_lsn = snap.lsn;
        self.verified_lsn = snap.lsn;
        self.replay_queue.clear();
        self.sm = snap.state.clone();
        self.gen += 1;
        self.durable_lsn = 0;
        let snap = Arc::new(snap);
        self.snapshot = if snap.lsn > 0 { Some(snap.clone()) } else { None };
        self.wal.send(WalCmd::Install {
            snapshot: Box::new((*snap).clone()),
            gen: self.gen,
        });
    }

    fn reject(&mut self, from: &str, seq: u64) {
        self.reject_at(from, seq, self.last_lsn());
    }

    fn reject_at(&mut self, from: &str, seq: u64, hint: u64) {
        let msg = PeerMsg::AppendResp {
            epoch: self.hard.epoch,
            success: false,
            match_lsn: 0,
            last_lsn: hint.min(self.last_lsn()),
            seq,
        };
        self.transport.send(from, self.shard, msg);
    }

    fn on_snapshot(&mut self, from: &str, epoch: u64, snap: Snapshot, seq: u64) {
        if !self.accept_leader(from, epoch) {
            return self.reject(from, seq);
        }
        self.last_seq_seen = self.last_seq_seen.max(seq);
        if snap.lsn <= self.commit_lsn {
            self.verified_lsn = self.verified_lsn.max(snap.lsn);
            return self.report_match(true);
        }
        info!(node = %self.node, shard = self.shard, epoch, lsn = snap.lsn, "installing snapshot from leader");
        self.install_state(snap);
    }

    // ----- elections --------------------------------------------------

    /// Asks whether a majority would vote for us before taking a new epoch.
    fn start_prevote(&mut self) {
        self.prevote_epoch = self.hard.epoch + 1;
        self.prevotes = vec![self.node.clone()];
        self.reset_election_timer();
        if self.prevotes.len() >= self.majority() {
            return self.start_election();
        }
        debug!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.last_lsn(), "pre-vote");
        let msg = PeerMsg::PreVote {
            epoch: self.prevote_epoch,
            last_lsn: self.last_lsn(),
            last_epoch: self.last_epoch(),
        };
        for p in &self.peers {
            self.transport.send(p, self.shard, msg.clone());
        }
    }

    /// Grants a pre-vote when a real vote would be granted and we have not
    /// heard from a live leader within an election timeout (leader
    /// stickiness). Changes no state.
    fn on_prevote(&mut self, from: &str, epoch: u64, last_lsn: u64, last_epoch: u64) {
        if self.settings().failover != Failover::Fenced {
            return;
        }
        let window = Duration::from_millis(self.settings().election_timeout_ms);
        let leader_alive = self.role == Role::Leader
            || self
                .last_leader_contact
                .is_some_and(|t| t.elapsed() < window && self.leader.is_some());
        let up_to_date = (last_epoch, last_lsn) >= (self.last_epoch(), self.last_lsn());
        let granted = epoch > self.hard.epoch && up_to_date && !leader_alive;
        let msg = PeerMsg::PreVoteResp {
            epoch,
            granted,
            voter_epoch: self.hard.epoch,
        };
        self.transport.send(from, self.shard, msg);
    }

    fn on_prevote_resp(&mut self, from: &str, epoch: u64, granted: bool, voter_epoch: u64) {
        if !granted && voter_epoch > self.hard.epoch {
            // The voter is in a later epoch than ours: take it (as for any
            // higher epoch), so our next pre-vote asks for one past it. Its
            // vote may then follow our log, should ours be the better one.
            return self.step_down(voter_epoch, None);
        }
        if self.role == Role::Leader || !granted || epoch != self.prevote_epoch {
            return;
        }
        if epoch != self.hard.epoch + 1 {
            return;
        }
        if !self.prevotes.iter().any(|v| v == from) {
            self.prevotes.push(from.to_string());
        }
        if self.prevotes.len() >= self.majority() {
            self.prevotes.clear();
            self.start_election();
        }
    }

    fn start_election(&mut self) {
        self.hard.epoch += 1;
        self.hard.voted_for = Some(self.node.clone());
        self.persist_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes = vec![self.node.clone()];
        self.reset_election_timer();
        info!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.last_lsn(), "starting election");
        if self.votes.len() >= self.majority() {
            return self.become_leader(self.hard.epoch);
        }
        let msg = PeerMsg::Vote {
            epoch: self.hard.epoch,
            last_lsn: self.last_lsn(),
            last_epoch: self.last_epoch(),
        };
        for p in &self.peers {
            self.transport.send(p, self.shard, msg.clone());
        }
    }

    fn on_vote(&mut self, from: &str, epoch: u64, last_lsn: u64, last_epoch: u64) {
        if self.settings().failover != Failover::Fenced {
            return;
        }
        if epoch > self.hard.epoch {
            self.step_down(epoch, None);
        }
        let up_to_date = (last_epoch, last_lsn) >= (self.last_epoch(), self.last_lsn());
        let free = self.hard.voted_for.is_none() || self.hard.voted_for.as_deref() == Some(from);
        let granted = epoch == self.hard.epoch && free && up_to_date;
        if granted {
            self.hard.voted_for = Some(from.to_string());
            // Persist the vote before it leaves this node.
            self.persist_hard_state();
            self.reset_election_timer();
        }
        debug!(node = %self.node, shard = self.shard, epoch = self.hard.epoch, lsn = self.last_lsn(), candidate = from, granted, "vote requested");
        let msg = PeerMsg::VoteResp {
            epoch: self.hard.epoch,
            granted,
        };
        self.transport.send(from, self.shard, msg);
    }

    fn on_vote_resp(&mut self, from: &str, epoch: u64, granted: bool) {
        if epoch > self.hard.epoch {
            return self.step_down(epoch, None);
        }
        if self.role != Role::Candidate || epoch != self.hard.epoch || !granted {
            return;
        }
        if !self.votes.iter().any(|v| v == from) {
            self.votes.push(from.to_string());
        }
        if self.votes.len() >= self.majority() {
            self.become_leader(self.hard.epoch);
        }
    }

    fn become_leader(&mut self, epoch: u64) {
        if epoch != self.hard.epoch {
            self.hard.epoch = epoch;
            self.hard.voted_for = Some(self.node.clone());
            self.persist_hard_state();
        }
        self.role = Role::Leader;
        self.leader = Some(self.node.clone());
        let now = Instant::now();
        self.leader_since = now;
        let next = self.last_lsn() + 1;
        self.progress = self
            .peers
            .iter()
            .map(|p| {
                let prog = Progress {
                    next_lsn: next,
                    match_lsn: 0,
                    acked_seq: 0,
                    last_ack: now,
                    snapshot_sent: None,
                };
                (p.clone(), prog)
            })
            .collect();
        // Everything committed so far must become visible before we serve.
        self.replay_queue.clear();
        let commit = self.commit_lsn;
        self.apply_to(commit);
        let lsn = self.append_local(Command::Noop);
        info!(node = %self.node, shard = self.shard, epoch, lsn, "became leader");
        self.replicate(true);
    }

    /// Leaves the leader or candidate role (or adopts a higher epoch).
    fn step_down(&mut self, epoch: u64, leader: Option<String>) {
        if epoch > self.hard.epoch {
            self.hard.epoch = epoch;
            self.hard.voted_for = None;
            self.persist_hard_state();
        }
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.leader = leader;
        self.verified_lsn = 0;
        self.reported_match = 0;
        self.reset_election_timer();
        if was_leader {
            info!(node = %self.node, shard = self.shard, epoch, lsn = self.last_lsn(), "stepped down");
            self.abandon_pending();
        }
    }

    /// A leader that stops leading cannot know the fate of its pending
    /// writes (a new leader may still commit them): they become unknown.
    fn abandon_pending(&mut self) {
        for (_, w) in std::mem::take(&mut self.pending_writes) {
            self.answer(w.replier, Reply::unknown(w.id, "leadership lost"));
        }
        for r in std::mem::take(&mut self.leader_reads) {
            let id = r.req.id;
            self.answer(r.replier, Reply::fail(id, "leadership lost before the read"));
        }
        self.progress.clear();
    }

    fn status(&self) -> ShardStatus {
        let last = self.last_lsn();
        let peer_lag = if self.role == Role::Leader {
            self.progress
                .iter()
                .map(|(p, pr)| (p.clone(), last.saturating_sub(pr.match_lsn)))
                .collect()
        } else {
            BTreeMap::new()
        };
        ShardStatus {
            shard: self.shard,
            role: self.role.name().into(),
            epoch: self.hard.epoch,
            commit_lsn: self.commit_lsn,
            applied_lsn: self.applied_lsn,
            last_lsn: last,
            leader: self.leader.clone(),
            peer_lag,
        }
    }
}

/// The next epoch this node may promote itself into without votes.
/// Epochs are dealt round-robin to the members, so two followers that
/// promote themselves at the same moment never share one, and
/// (lsn, epoch) still names a single entry even in split brain: the
/// follower of the higher epoch truncates the other's suffix by plain
/// log matching. (Sharing an epoch, the loser kept writes the winner
/// never had, and the replicas never converged.)
fn own_epoch_after(members: &[String], node: &str, epoch: u64) -> u64 {
    let n = members.len().max(1) as u64;
    let me = members.iter().position(|m| m == node).unwrap_or(0) as u64;
    let next = epoch + 1;
    next + (me + n - next % n) % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::read_frame;
    use crate::transport::{Envelope, PEER_MAX_FRAME_BYTES};
    use tokio::net::TcpListener;

    /// One group ("n3") with two peers played by the test: every message
    /// the group sends arrives on `sent` as (peer, message), and the test
    /// answers through `group.deliver`.
    struct Harness {
        group: GroupHandle,
        sent: mpsc::UnboundedReceiver<(String, PeerMsg)>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        async fn start() -> Harness {
            let (tx, sent) = mpsc::unbounded_channel();
            let mut peers = BTreeMap::new();
            for id in ["n1", "n2"] {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                peers.insert(id.to_string(), listener.local_addr().unwrap().to_string());
                tokio::spawn(play_peer(id, listener, tx.clone()));
            }
            let dir = tempfile::tempdir().unwrap();
            let cfg = Config {
                node_id: "n3".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().to_path_buf(),
                settings: crate::config::Settings::parse(
                    "ack=majority,failover=fenced,fsync=never,heartbeat_ms=20,election_timeout_ms=100",
                )
                .unwrap(),
                peers,
            }
            .validate()
            .unwrap();
            let transport = Transport::start("n3", &cfg.peers);
            let group = start(Arc::new(cfg), 0, transport).unwrap();
            Harness { group, sent, _dir: dir }
        }

        /// The next message the group sends that `want` accepts (bounded).
        async fn expect<T>(&mut self, what: &str, mut want: impl FnMut(&str, &PeerMsg) -> Option<T>) -> T {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                match tokio::time::timeout_at(deadline, self.sent.recv()).await {
                    Ok(Some((to, msg))) => {
                        if let Some(found) = want(&to, &msg) {
                            return found;
                        }
                    }
                    _ => panic!("the group never sent {what}"),
                }
            }
        }

        /// Makes "n3" a follower of epoch 3 whose log ends at (lsn 3, epoch 3).
        async fn follow_epoch_3(&mut self) {
            let entries = [(1, 1), (2, 3), (3, 3)]
                .map(|(lsn, epoch)| Entry {
                    lsn,
                    epoch,
                    cmd: crate::state::Command::Noop,
                })
                .to_vec();
            let append = PeerMsg::Append {
                epoch: 3,
                prev_lsn: 0,
                prev_epoch: 0,
                entries,
                commit_lsn: 0,
                seq: 1,
            };
            self.group.deliver("n1".into(), append).await;
            self.expect("an append answer", |_, m| match m {
                PeerMsg::AppendResp { match_lsn: 3, .. } => Some(()),
                _ => None,
            })
            .await;
        }
    }

    /// Accepts the group's link to `id` and reports every envelope on it.
    async fn play_peer(id: &'static str, listener: TcpListener, tx: mpsc::UnboundedSender<(String, PeerMsg)>) {
        while let Ok((stream, _)) = listener.accept().await {
            let mut rd = tokio::io::BufReader::new(stream);
            let _hello = read_frame(&mut rd, PEER_MAX_FRAME_BYTES).await;
            while let Ok(Some(frame)) = read_frame(&mut rd, PEER_MAX_FRAME_BYTES).await {
                let env: Envelope = serde_json::from_slice(&frame).unwrap();
                if tx.send((id.to_string(), env.msg)).is_err() {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_connection_slot_answers_once_and_unknown_when_dropped() {
        let slots = Arc::new(tokio::sync::Semaphore::new(2));
        let budgets = Arc::new(Budgets::new(2 << 20, &crate::limits::NodeBudget::new(2 << 20)));
        let (out, mut frames) = mpsc::channel(2);
        let slot = || slots.clone().try_acquire_owned().unwrap();
        let answered = ConnReply::new(out.clone(), 7, slot(), budgets.clone(), Held::default());
        let dropped = ConnReply::new(out, 8, slot(), budgets, Held::default());
        answered.send(&Reply::new(7, crate::protocol::Outcome::Ok));
        drop(dropped);
        let mut replies = Vec::new();
        let mut queued = Vec::new();
        while let Ok(o) = frames.try_recv() {
            let reply: Reply = serde_json::from_slice(&o.frame[4..]).unwrap();
            replies.push((reply.id, reply.result));
            queued.push(o);
        }
        use crate::protocol::Outcome;
        assert_eq!(replies, [(7, Outcome::Ok), (8, Outcome::Unknown)]);
        assert_eq!(slots.available_permits(), 0, "a queued frame holds its slot");
        drop(queued);
        assert_eq!(slots.available_permits(), 2, "written frames give their slots back");
    }

    #[tokio::test]
    async fn a_refused_pre_vote_from_a_later_epoch_moves_the_candidate_past_it() {
        // n3 has the better log (3, epoch 3); n2 has seen epoch 4 but holds
        // an older log, and n1 is gone. n3 must end up asking for epoch 5,
        // which n2 can grant; asking for 4 forever left the group leaderless.
        let mut h = Harness::start().await;
        h.follow_epoch_3().await;
        h.expect("a pre-vote for epoch 4", |_, m| match m {
            PeerMsg::PreVote {
                epoch: 4, last_lsn: 3, ..
            } => Some(()),
            _ => None,
        })
        .await;
        let refusal = PeerMsg::PreVoteResp {
            epoch: 4,
            granted: false,
            voter_epoch: 4,
        };
        h.group.deliver("n2".into(), refusal).await;
        h.expect("a pre-vote for epoch 5", |_, m| match m {
            PeerMsg::PreVote { epoch: 5, .. } => Some(()),
            _ => None,
        })
        .await;
        let grant = PeerMsg::PreVoteResp {
            epoch: 5,
            granted: true,
            voter_epoch: 4,
        };
        h.group.deliver("n2".into(), grant).await;
        h.expect("a vote request for epoch 5", |_, m| match m {
            PeerMsg::Vote { epoch: 5, .. } => Some(()),
            _ => None,
        })
        .await;
        let vote = PeerMsg::VoteResp {
            epoch: 5,
            granted: true,
        };
        h.group.deliver("n2".into(), vote).await;
        let status = h.group.status().await.unwrap();
        assert_eq!((status.role.as_str(), status.epoch), ("leader", 5), "{status:?}");
    }

    #[tokio::test]
    async fn a_pre_vote_refusal_names_the_voters_epoch() {
        let mut h = Harness::start().await;
        h.follow_epoch_3().await;
        let stale = PeerMsg::PreVote {
            epoch: 2,
            last_lsn: 9,
            last_epoch: 1,
        };
        h.group.deliver("n2".into(), stale).await;
        let (granted, voter_epoch) = h
            .expect("an answer to n2's pre-vote", |to, m| match m {
                PeerMsg::PreVoteResp {
                    epoch: 2,
                    granted,
                    voter_epoch,
                } if to == "n2" => Some((*granted, *voter_epoch)),
                _ => None,
            })
            .await;
        assert_eq!((granted, voter_epoch), (false, 3));
    }

    #[test]
    fn self_promotions_take_the_next_epoch_dealt_to_the_node_and_no_other() {
        let members: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        for epoch in 0..20 {
            let picked: Vec<u64> = members.iter().map(|m| own_epoch_after(&members, m, epoch)).collect();
            for (i, e) in picked.iter().enumerate() {
                assert!(*e > epoch && *e <= epoch + 3, "{e} after {epoch}");
                assert_eq!(e % 3, i as u64, "{} took {e}", members[i]);
            }
            let mut distinct = picked.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{picked:?} after {epoch}");
        }
        assert_eq!(own_epoch_after(&["solo".to_string()], "solo", 4), 5);
    }
}

//! Plays a [`Plan`] against a cluster and records every fault start and stop
//! as a nemesis event.
//!
//! A fault is recorded as an `info` event only once it took effect; one that
//! could not be applied or healed is a `fail` event carrying the error, and
//! it ends the plan: [`NemesisRunner::run`] heals what it can and returns
//! the error, so a test never passes under faults that did not happen.
//! Every start and stop is also an `info` tracing event (fields `fault`,
//! `nodes`), and a failure a `warn` one.
//!
//! The runner keeps the set of faults in force (a partition, killed nodes,
//! paused nodes). Whatever ends the test (the plan running out, a shutdown
//! request on Ctrl-C, a checker error, or a panic that drops the runner),
//! [`NemesisRunner::heal_all`] undoes them in a safe order (links healed,
//! paused nodes resumed, killed nodes restarted) and records each undo.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{NemesisError, NodeOpsError, SurroundingsError};
use crate::fault::{FaultEvent, FaultFamily, FaultKind};
use crate::net::Net;
use crate::partition::{self, Shape};
use crate::schedule::{Fault, Plan, StepAction, Target};

/// A future returned by a trait method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the nemesis can do to a node's process. The harness's `Db`
/// implements it through `Control`.
pub trait NodeOps: Send + Sync {
    /// SIGKILLs the node; returns the pid that died.
    fn kill(&self, node: &str) -> Result<u32, NodeOpsError>;
    /// Starts a node that is down; returns its new pid.
    fn start(&self, node: &str) -> Result<u32, NodeOpsError>;
    /// SIGSTOPs the node.
    fn pause(&self, node: &str) -> Result<u32, NodeOpsError>;
    /// SIGCONTs the node.
    fn resume(&self, node: &str) -> Result<u32, NodeOpsError>;
    /// The node that currently leads, if the system has one and it answers.
    fn leader(&self) -> BoxFuture<'_, Option<String>>;
    /// Whether the node's process runs (it may have exited on its own, as
    /// a database does when its disk fails).
    fn running(&self, node: &str) -> bool {
        let _ = node;
        true
    }
    /// Promotes a replica in place of the primary `old` and re-points the
    /// other replicas (not `old`) at it; returns the event's value. Only
    /// databases with operator failover (Redis) have it.
    fn promote(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let _ = old;
        Box::pin(async { Err(NodeOpsError::NoFailover) })
    }
    /// What a careful operator does before a failover (Redis: `WAIT` for
    /// the replicas to catch up with the primary `old`); returns what it
    /// found, for the event. Nothing by default.
    fn before_failover(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let _ = old;
        Box::pin(async { Ok(Value::Null) })
    }
    /// Makes `node` (a former primary) a replica of the current primary.
    fn rejoin(&self, node: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let _ = node;
        Box::pin(async { Err(NodeOpsError::NoFailover) })
    }
}

/// A disk fault, as the disk-fault filesystem takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskCommand {
    /// Every filesystem operation blocks for this long.
    Stall { ms: u64 },
    /// Every fsync takes this much longer.
    SlowFsync { ms: u64 },
    /// Writes and fsyncs fail with EIO.
    Errors,
    /// Every write not yet fsynced is lost (as in a power loss).
    DropUnsynced,
    /// Ends every disk fault.
    Heal,
}

/// What the nemesis can do to a node's surroundings rather than its
/// process: its disk (the disk-fault filesystem) and its clock
/// (libfaketime). The harness implements it through `Control`, so it works
/// on local nodes, namespaces and remote machines alike.
pub trait Surroundings: Send + Sync {
    /// Applies a disk fault to `node`'s data directory; returns what the
    /// filesystem said (as the event's detail).
    fn disk(&self, node: &str, cmd: DiskCommand) -> Result<Value, SurroundingsError>;
    /// Sets `node`'s clock this far from the true one.
    fn set_clock(&self, node: &str, offset_ms: i64) -> Result<(), SurroundingsError>;
    /// Reads `node`'s clock as the database on it sees it and checks that
    /// it is `offset_ms` off the true one; returns the offset measured, or
    /// `None` where the database offers no way to read its clock (then the
    /// offset file's write is the only evidence).
    fn check_clock(&self, _node: &str, _offset_ms: i64) -> Result<Option<i64>, SurroundingsError> {
        Ok(None)
    }
    /// Whether the nodes' data is on the disk-fault filesystem, so a kill
    /// also loses what the node had not fsynced.
    fn has_disks(&self) -> bool {
        false
    }
}

/// Surroundings that can do nothing: a run without the disk-fault
/// filesystem or libfaketime. Every call says which flag turns it on.
pub struct NoSurroundings;

impl Surroundings for NoSurroundings {
    fn disk(&self, _node: &str, _cmd: DiskCommand) -> Result<Value, SurroundingsError> {
        Err(SurroundingsError::NoDisks)
    }

    fn set_clock(&self, _node: &str, _offset_ms: i64) -> Result<(), SurroundingsError> {
        Err(SurroundingsError::NoClocks)
    }
}

/// Where nemesis events go: the harness stamps them with the history's
/// index and time and appends them to `history.jsonl`.
pub trait Recorder: Send + Sync {
    /// Records one nemesis event that took effect (type `info`).
    fn record(&self, event: FaultEvent, value: Value);
    /// Records that the fault or heal `event` did not take effect: a
    /// nemesis event of type `fail` with `error`.
    fn record_failure(&self, event: FaultEvent, value: Value, error: &NemesisError);
}

/// The faults in force.
#[derive(Default, Debug)]
struct Active {
    partition: Option<Value>,
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
    /// A failover in force: the old primary, and the event value.
    failover: Option<(String, Value)>,
    /// Nodes with a disk fault, and its family.
    disk: BTreeMap<String, FaultFamily>,
    /// A power loss in force (its nodes are also in `killed`).
    power_loss: Option<Value>,
    /// Nodes whose clock is off.
    clocks: BTreeSet<String>,
    /// The strobe task, cancelled when the clocks are reset.
    strobe: Option<watch::Sender<bool>>,
    /// Links were (perhaps partly) cut since the last heal, so the next heal
    /// must replace them; a heal with nothing cut does not touch the net.
    links_touched: bool,
}

impl Active {
    fn count(&self) -> usize {
        usize::from(self.partition.is_some())
            + self.killed.len()
            + self.paused.len()
            + usize::from(self.failover.is_some())
            + self.disk.len()
            + usize::from(!self.clocks.is_empty())
    }
}

/// What a blocking nemesis step works with.
struct Handles {
    ops: Arc<dyn NodeOps>,
    around: Arc<dyn Surroundings>,
    net: Arc<dyn Net>,
}

/// Plays fault plans and undoes them.
pub struct NemesisRunner {
    net: Arc<dyn Net>,
    ops: Arc<dyn NodeOps>,
    around: Arc<dyn Surroundings>,
    recorder: Arc<dyn Recorder>,
    nodes: Vec<String>,
    active: Mutex<Active>,
    active_count: Arc<AtomicUsize>,
    rng: Mutex<ChaCha8Rng>,
    /// How many faults of each kind took effect (`Fault::kind`).
    started: Mutex<BTreeMap<FaultKind, usize>>,
}

impl NemesisRunner {
    /// A runner over `nodes`; `seed` resolves run-time choices (a node to
    /// hit when a leader-targeted fault finds no leader).
    pub fn new(
        net: Arc<dyn Net>,
        ops: Arc<dyn NodeOps>,
        recorder: Arc<dyn Recorder>,
        nodes: Vec<String>,
        seed: u64,
    ) -> NemesisRunner {
        NemesisRunner {
            net,
            ops,
            around: Arc::new(NoSurroundings),
            recorder,
            nodes,
            active: Mutex::new(Active::default()),
            active_count: Arc::new(AtomicUsize::new(0)),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973)),
            started: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same runner, with disk and clock faults acting through `around`.
    pub fn with_surroundings(mut self, around: Arc<dyn Surroundings>) -> NemesisRunner {
        self.around = around;
        self
    }

    /// How many faults are in force (for the progress line).
    pub fn active_faults(&self) -> Arc<AtomicUsize> {
        self.active_count.clone()
    }

    /// How many faults of each kind took effect so far, by
    /// [`Fault::kind`] (`partition-halves`, `kill`, ...).
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, usize> {
        self.started.lock().expect("fault counts").clone()
    }

    /// Plays `plan` from `start` until it ends (`plan.end_ms`) or `stop`
    /// turns true, then heals everything. A step that fails (a fault not
    /// applied, or not healed) is recorded as a `fail` event and ends the
    /// plan there: the rest is healed and the error returned, since a test
    /// that goes on without its faults would judge a run nobody asked for.
    pub async fn run(&self, plan: &Plan, start: Instant, mut stop: watch::Receiver<bool>) -> Result<(), NemesisError> {
        let mut first_err = None;
        for step in &plan.steps {
            let at = start + Duration::from_millis(step.at_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let r = match &step.action {
                StepAction::Start(fault) => self.start_fault(fault).await,
                StepAction::Stop => self.heal_all().await,
            };
            if let Err(e) = r {
                first_err = Some(e);
                break;
            }
        }
        // A fault started by the last step stays in force until the plan ends.
        if first_err.is_none() && !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep_until(start + Duration::from_millis(plan.end_ms)) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        let healed = self.heal_all().await;
        match first_err {
            Some(e) => Err(e),
            None => healed,
        }
    }

    /// Records a fault event that took effect, and logs it at `info` with
    /// the fault and the nodes it concerns.
    fn note(&self, f: FaultEvent, nodes: &[String], value: Value) {
        if f.opens() {
            tracing::info!(fault = f.name(), nodes = ?nodes, detail = %value, "fault started");
        } else {
            tracing::info!(fault = f.name(), nodes = ?nodes, detail = %value, "fault healed");
        }
        self.recorder.record(f, value);
    }

    /// Records a fault or heal that did not take effect (a `fail` event
    /// with the error), and logs it at `warn`.
    fn note_failure(&self, f: FaultEvent, nodes: &[String], value: Value, error: &NemesisError) {
        tracing::warn!(fault = f.name(), nodes = ?nodes, detail = %value, error = %error, "fault did not take effect");
        self.recorder.record_failure(f, value, error);
    }

    async fn resolve(&self, target: &Target) -> Vec<String> {
        match target {
            Target::Node(n) => vec![n.clone()],
            Target::All => self.nodes.clone(),
            Target::Leader => vec![self.leader_or_random().await],
        }
    }

    async fn leader_or_random(&self) -> String {
        match self.ops.leader().await {
            Some(l) => l,
            None => {
                let mut rng = self.rng.lock().expect("nemesis rng");
                self.nodes.choose(&mut *rng).expect("nodes").clone()
            }
        }
    }

    /// Runs `f` on a blocking thread with the runner's handles: a kill waits
    /// for its process to be reaped, and in namespaces or over SSH every
    /// fault is a command; none of it may hold up the runtime's workers,
    /// which drive the clients.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Handles) -> T + Send + 'static) -> T {
        let h = Handles {
            ops: self.ops.clone(),
            around: self.around.clone(),
            net: self.net.clone(),
        };
        tokio::task::spawn_blocking(move || f(&h))
            .await
            .expect("a nemesis step panicked")
    }

    /// Starts one fault and records it: `info` events for what took
    /// effect, and a `fail` event with the error when it did not.
    pub async fn start_fault(&self, fault: &Fault) -> Result<(), NemesisError> {
        match self.apply_fault(fault).await {
            Ok(()) => {
                *self
                    .started
                    .lock()
                    .expect("fault counts")
                    .entry(fault.kind())
                    .or_default() += 1;
                Ok(())
            }
            Err(e) => {
                let nodes = match &e {
                    NemesisError::Node { node, .. } | NemesisError::Surroundings { node, .. } => vec![node.clone()],
                    _ => fault.named_nodes(),
                };
                let value = json!({"fault": fault.kind(), "planned": fault.describe()});
                self.note_failure(fault.start_event(), &nodes, value, &e);
                Err(e)
            }
        }
    }

    async fn apply_fault(&self, fault: &Fault) -> Result<(), NemesisError> {
        match fault {
            Fault::Partition(p) => self.partition(&p.cuts, p.event_value()).await,
            Fault::PartitionLeader => {
                let leader = self.leader_or_random().await;
                let p = partition::isolate(&self.nodes, &leader, Shape::IsolateLeader);
                self.partition(&p.cuts, p.event_value()).await
            }
            Fault::Kill(t) => {
                for node in self.resolve(t).await {
                    self.kill(&node).await?;
                }
                Ok(())
            }
            Fault::Pause(t) => {
                for node in self.resolve(t).await {
                    self.pause(&node).await?;
                }
                Ok(())
            }
            Fault::Failover => self.failover().await,
            Fault::DiskStall(t) => {
                for node in self.resolve(t).await {
                    self.disk_fault(
                        &node,
                        FaultKind::DiskStall,
                        DiskCommand::Stall { ms: DISK_STALL_MAX_MS },
                    )
                    .await?;
                }
                Ok(())
            }
            Fault::DiskError(t) => {
                for node in self.resolve(t).await {
                    self.disk_fault(&node, FaultKind::DiskError, DiskCommand::Errors)
                        .await?;
                }
                Ok(())
            }
            Fault::DiskSlow { target, fsync_ms } => {
                for node in self.resolve(target).await {
                    self.disk_fault(&node, FaultKind::DiskSlow, DiskCommand::SlowFsync { ms: *fsync_ms })
                        .await?;
                }
                Ok(())
            }
            Fault::LoseUnsynced => self.power_loss().await,
            Fault::Clock(offsets) => self.clock(offsets).await,
            Fault::ClockStrobe {
                node,
                offset_ms,
                period_ms,
            } => self.clock_strobe(node, *offset_ms, *period_ms).await,
        }
    }

    /// Cuts the primary off from everyone, promotes a replica, and leaves
    /// the old primary serving whoever still reaches it until healed.
    async fn failover(&self) -> Result<(), NemesisError> {
        let old = self.leader_or_random().await;
        let before = self
            .ops
            .before_failover(&old)
            .await
            .map_err(|e| Self::node_err("prepare the failover of", &old, e))?;
        let cut = partition::isolate(&self.nodes, &old, Shape::IsolateLeader);
        let cuts = cut.cuts.clone();
        self.update(|a| a.links_touched = true);
        self.blocking(move |h| h.net.partition(&cuts)).await?;
        let mut value = match self.ops.promote(&old).await {
            Ok(v) => v,
            Err(e) => {
                // The cut is undone by the heal that follows the error.
                return Err(Self::node_err("promote a replica of", &old, e));
            }
        };
        value["partition"] = cut.event_value();
        if !before.is_null() {
            value["before"] = before;
        }
        self.note(FaultEvent::StartFailover, std::slice::from_ref(&old), value.clone());
        self.update(|a| a.failover = Some((old, value)));
        Ok(())
    }

    async fn disk_fault(&self, node: &str, kind: FaultKind, cmd: DiskCommand) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let detail = self
            .blocking(move |h| h.around.disk(&target, cmd))
            .await
            .map_err(|e| Self::around_err(kind.name(), node, e))?;
        self.note(
            FaultEvent::start(kind.family()),
            &[node.to_owned()],
            json!({"node": node, "detail": detail}),
        );
        self.update(|a| {
            a.disk.insert(node.to_owned(), kind.family());
        });
        Ok(())
    }

    /// Every node killed at the same moment, then every write they had not
    /// fsynced dropped, as when the power goes. Healing restarts them.
    async fn power_loss(&self) -> Result<(), NemesisError> {
        let nodes = self.nodes.clone();
        let (pids, dropped, first) = self
            .blocking(move |h| {
                let mut pids = BTreeMap::new();
                let mut first = None;
                for node in &nodes {
                    match h.ops.kill(node) {
                        Ok(pid) => {
                            pids.insert(node.clone(), pid);
                        }
                        Err(e) => {
                            first.get_or_insert(Self::node_err("kill", node, e));
                        }
                    }
                }
                let mut dropped = BTreeMap::new();
                for node in pids.keys() {
                    match h.around.disk(node, DiskCommand::DropUnsynced) {
                        Ok(d) => {
                            dropped.insert(node.clone(), d);
                        }
                        Err(e) => {
                            first.get_or_insert(Self::around_err("drop unsynced writes of", node, e));
                        }
                    }
                }
                (pids, dropped, first)
            })
            .await;
        let value = json!({"pids": pids, "dropped": dropped});
        let killed: Vec<String> = pids.keys().cloned().collect();
        self.note(FaultEvent::StartPowerLoss, &killed, value.clone());
        self.update(|a| {
            a.power_loss = Some(value);
            a.killed.extend(pids.keys().cloned());
        });
        first.map_or(Ok(()), Err)
    }

    async fn clock(&self, offsets: &BTreeMap<String, i64>) -> Result<(), NemesisError> {
        let mut measured = BTreeMap::new();
        for (node, off) in offsets {
            let (target, off) = (node.clone(), *off);
            self.blocking(move |h| h.around.set_clock(&target, off))
                .await
                .map_err(|e| Self::around_err("set the clock of", node, e))?;
            // Known off from here on, so a failed check still gets healed.
            self.update(|a| {
                a.clocks.insert(node.clone());
            });
            if let Some(seen) = self.checked_clock(node, off).await? {
                measured.insert(node.clone(), seen);
            }
        }
        let nodes: Vec<String> = offsets.keys().cloned().collect();
        let mut value = json!({"offsets_ms": offsets});
        if !measured.is_empty() {
            value["measured_ms"] = json!(measured);
        }
        self.note(FaultEvent::StartClock, &nodes, value);
        Ok(())
    }

    /// Asks the database on `node` for its clock and checks it is
    /// `offset_ms` off (see [`Surroundings::check_clock`]).
    async fn checked_clock(&self, node: &str, offset_ms: i64) -> Result<Option<i64>, NemesisError> {
        let target = node.to_owned();
        self.blocking(move |h| h.around.check_clock(&target, offset_ms))
            .await
            .map_err(|e| Self::around_err("read the clock of", node, e))
    }

    /// Starts a task that flips `node`'s clock until the clocks are reset.
    async fn clock_strobe(&self, node: &str, offset_ms: i64, period_ms: u64) -> Result<(), NemesisError> {
        let target = node.to_owned();
        self.blocking(move |h| h.around.set_clock(&target, offset_ms))
            .await
            .map_err(|e| Self::around_err("set the clock of", node, e))?;
        self.update(|a| {
            a.clocks.insert(node.to_owned());
        });
        let measured = self.checked_clock(node, offset_ms).await?;
        let (tx, mut rx) = watch::channel(false);
        let around = self.around.clone();
        let target = node.to_owned();
        // The task's last act, once cancelled, is to set true time, so no
        // step still in flight can leave the clock off after healing.
        tokio::spawn(async move {
            let mut off = true;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(period_ms)) => {}
                    _ = rx.wait_for(|stop| *stop) => break,
                }
                off = !off;
                let value = if off { offset_ms } else { 0 };
                if let Err(e) = set_clock_off_runtime(&around, &target, value).await {
                    tracing::warn!(node = %target, error = %e, "a clock strobe step failed");
                }
            }
            if let Err(e) = set_clock_off_runtime(&around, &target, 0).await {
                tracing::warn!(node = %target, error = %e, "resetting a strobed clock failed");
            }
        });
        let mut strobe = json!({"node": node, "offset_ms": offset_ms, "period_ms": period_ms});
        if let Some(seen) = measured {
            strobe["measured_ms"] = json!(seen);
        }
        self.note(FaultEvent::StartClock, &[node.to_owned()], json!({ "strobe": strobe }));
        self.update(|a| {
            a.clocks.insert(node.to_owned());
            a.strobe = Some(tx);
        });
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut Active)) {
        let mut a = self.active.lock().expect("active faults");
        f(&mut a);
        self.active_count.store(a.count(), Ordering::Relaxed);
    }

    async fn partition(&self, cuts: &BTreeSet<crate::net::Link>, value: Value) -> Result<(), NemesisError> {
        let nodes: BTreeSet<String> = cuts.iter().flat_map(|l| [l.from.clone(), l.to.clone()]).collect();
        let cuts = cuts.clone();
        self.update(|a| a.links_touched = true);
        self.blocking(move |h| h.net.partition(&cuts)).await?;
        let nodes: Vec<String> = nodes.into_iter().collect();
        self.note(FaultEvent::StartPartition, &nodes, value.clone());
        self.update(|a| a.partition = Some(value));
        Ok(())
    }

    fn node_err(action: &'static str, node: &str, source: NodeOpsError) -> NemesisError {
        NemesisError::Node {
            action,
            node: node.to_owned(),
            source,
        }
    }

    fn around_err(action: &'static str, node: &str, source: SurroundingsError) -> NemesisError {
        NemesisError::Surroundings {
            action,
            node: node.to_owned(),
            source,
        }
    }

    /// SIGKILL; on the disk-fault filesystem the node's unsynced writes go
    /// with it, as when a machine crashes (what Jepsen's LazyFS does on a
    /// kill), and the event says how many bytes were dropped.
    async fn kill(&self, node: &str) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let (pid, dropped) = self
            .blocking(move |h| {
                let pid = h.ops.kill(&target).map_err(|e| Self::node_err("kill", &target, e))?;
                let dropped = match h.around.has_disks() {
                    true => Some(
                        h.around
                            .disk(&target, DiskCommand::DropUnsynced)
                            .map_err(|e| Self::around_err("drop unsynced writes of", &target, e))?,
                    ),
                    false => None,
                };
                Ok::<_, NemesisError>((pid, dropped))
            })
            .await?;
        let mut value = json!({"node": node, "pid": pid});
        if let Some(d) = dropped {
            value["dropped"] = d;
        }
        self.note(FaultEvent::Kill, &[node.to_owned()], value);
        self.update(|a| {
            a.paused.remove(node);
            a.killed.insert(node.to_owned());
        });
        Ok(())
    }

    async fn pause(&self, node: &str) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let pid = self
            .blocking(move |h| h.ops.pause(&target))
            .await
            .map_err(|e| Self::node_err("pause", node, e))?;
        self.note(FaultEvent::Pause, &[node.to_owned()], json!({"node": node, "pid": pid}));
        self.update(|a| {
            a.paused.insert(node.to_owned());
        });
        Ok(())
    }

    /// Starts `node` again if its process exited on its own while its disk
    /// was faulty (a database that exits on a failed fsync), as a
    /// supervisor would once the disk is fixed; records the start.
    async fn restart_if_exited(&self, node: &str) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let started = self
            .blocking(move |h| match h.ops.running(&target) {
                true => Ok(None),
                false => h.ops.start(&target).map(Some),
            })
            .await
            .map_err(|e| Self::node_err("restart", node, e))?;
        if let Some(pid) = started {
            self.note(
                FaultEvent::Start,
                &[node.to_owned()],
                json!({"node": node, "pid": pid, "after": "its disk failed"}),
            );
        }
        Ok(())
    }

    /// Undoes every fault in force, recording each undo: links first, then
    /// disks, clocks, paused nodes, then killed ones. Tries every undo even
    /// when one fails (recording the failure as a `fail` event), and returns
    /// the first error.
    pub async fn heal_all(&self) -> Result<(), NemesisError> {
        let mut first_err = None;
        let mut keep = |r: Result<(), NemesisError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        keep(self.heal_links().await);
        keep(self.heal_failover().await);
        // Disks before processes: a node resumed onto a stalled disk would
        // still hang.
        keep(self.heal_disks().await);
        keep(self.heal_clocks().await);
        keep(self.resume_paused().await);
        keep(self.restart_killed().await);
        first_err.map_or(Ok(()), Err)
    }

    /// Heals every link once something was cut (a recorded partition, or a
    /// cut that failed halfway: a rule it left must not outlive the test).
    async fn heal_links(&self) -> Result<(), NemesisError> {
        let (touched, partition) = {
            let a = self.active.lock().expect("active faults");
            (a.links_touched, a.partition.clone())
        };
        if !touched {
            return Ok(());
        }
        let nodes = self.nodes.clone();
        match self.blocking(|h| h.net.heal_all()).await {
            Ok(()) => {
                if let Some(v) = partition {
                    self.note(FaultEvent::StopPartition, &nodes, v);
                }
                self.update(|a| {
                    a.partition = None;
                    a.links_touched = false;
                });
                Ok(())
            }
            Err(e) => {
                let e = NemesisError::from(e);
                self.note_failure(FaultEvent::StopPartition, &nodes, partition.unwrap_or(Value::Null), &e);
                Err(e)
            }
        }
    }

    async fn heal_failover(&self) -> Result<(), NemesisError> {
        let failover = self.active.lock().expect("active faults").failover.clone();
        let Some((old, v)) = failover else { return Ok(()) };
        self.update(|a| a.failover = None);
        let nodes = [old.clone()];
        match self.ops.rejoin(&old).await {
            Ok(r) => {
                self.note(FaultEvent::StopFailover, &nodes, json!({"started": v, "rejoined": r}));
                Ok(())
            }
            Err(e) => {
                let e = Self::node_err("rejoin", &old, e);
                self.note_failure(FaultEvent::StopFailover, &nodes, json!({"started": v}), &e);
                Err(e)
            }
        }
    }

    async fn heal_disks(&self) -> Result<(), NemesisError> {
        let disk = self.active.lock().expect("active faults").disk.clone();
        let mut first_err = None;
        for (node, family) in disk {
            let target = node.clone();
            let nodes = [node.clone()];
            let stop = FaultEvent::stop(family);
            match self.blocking(move |h| h.around.disk(&target, DiskCommand::Heal)).await {
                Ok(_) => self.note(stop, &nodes, json!({"node": node})),
                Err(e) => {
                    let e = Self::around_err("heal the disk of", &node, e);
                    self.note_failure(stop, &nodes, json!({"node": node}), &e);
                    first_err.get_or_insert(e);
                }
            }
            if let Err(e) = self.restart_if_exited(&node).await {
                self.note_failure(
                    FaultEvent::Start,
                    &nodes,
                    json!({"node": node, "after": "its disk failed"}),
                    &e,
                );
                first_err.get_or_insert(e);
            }
            self.update(|a| {
                a.disk.remove(&node);
            });
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn heal_clocks(&self) -> Result<(), NemesisError> {
        let (clocks, strobe) = {
            let mut a = self.active.lock().expect("active faults");
            (a.clocks.clone(), a.strobe.take())
        };
        if let Some(tx) = strobe {
            let _ = tx.send(true);
        }
        if clocks.is_empty() {
            return Ok(());
        }
        let mut first_err = None;
        let mut measured = BTreeMap::new();
        for node in &clocks {
            let target = node.clone();
            if let Err(e) = self.blocking(move |h| h.around.set_clock(&target, 0)).await {
                first_err.get_or_insert(Self::around_err("reset the clock of", node, e));
                continue;
            }
            match self.checked_clock(node, 0).await {
                Ok(seen) => measured.extend(seen.map(|s| (node.clone(), s))),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let nodes: Vec<String> = clocks.iter().cloned().collect();
        self.update(|a| a.clocks.clear());
        match first_err {
            None => {
                let mut value = json!({"nodes": clocks});
                if !measured.is_empty() {
                    value["measured_ms"] = json!(measured);
                }
                self.note(FaultEvent::StopClock, &nodes, value);
                Ok(())
            }
            Some(e) => {
                self.note_failure(FaultEvent::StopClock, &nodes, json!({"nodes": clocks}), &e);
                Err(e)
            }
        }
    }

    async fn resume_paused(&self) -> Result<(), NemesisError> {
        let paused = self.active.lock().expect("active faults").paused.clone();
        let mut first_err = None;
        for node in paused {
            let target = node.clone();
            let nodes = [node.clone()];
            match self.blocking(move |h| h.ops.resume(&target)).await {
                Ok(pid) => self.note(FaultEvent::Resume, &nodes, json!({"node": node, "pid": pid})),
                Err(e) => {
                    let e = Self::node_err("resume", &node, e);
                    self.note_failure(FaultEvent::Resume, &nodes, json!({"node": node}), &e);
                    first_err.get_or_insert(e);
                }
            }
            self.update(|a| {
                a.paused.remove(&node);
            });
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Restarts killed nodes; a node that will not start stays listed as
    /// killed, so a later heal tries again.
    async fn restart_killed(&self) -> Result<(), NemesisError> {
        let (killed, power_loss) = {
            let mut a = self.active.lock().expect("active faults");
            (a.killed.clone(), a.power_loss.take())
        };
        let mut first_err = None;
        let mut restarted = BTreeMap::new();
        for node in killed {
            let target = node.clone();
            let nodes = [node.clone()];
            match self.blocking(move |h| h.ops.start(&target)).await {
                Ok(pid) => {
                    self.note(FaultEvent::Start, &nodes, json!({"node": node, "pid": pid}));
                    restarted.insert(node.clone(), pid);
                    self.update(|a| {
                        a.killed.remove(&node);
                    });
                }
                Err(e) => {
                    let e = Self::node_err("start", &node, e);
                    self.note_failure(FaultEvent::Start, &nodes, json!({"node": node}), &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(v) = power_loss {
            let nodes: Vec<String> = restarted.keys().cloned().collect();
            self.note(
                FaultEvent::StopPowerLoss,
                &nodes,
                json!({"started": v, "restarted": restarted}),
            );
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `set_clock` on a blocking thread (it may run a command on a node).
async fn set_clock_off_runtime(
    around: &Arc<dyn Surroundings>,
    node: &str,
    offset_ms: i64,
) -> Result<(), SurroundingsError> {
    let (around, target) = (around.clone(), node.to_owned());
    match tokio::task::spawn_blocking(move || around.set_clock(&target, offset_ms)).await {
        Ok(r) => r,
        Err(e) => Err(SurroundingsError::Refused {
            node: node.to_owned(),
            command: "set the clock".into(),
            detail: format!("the clock task died: {e}"),
        }),
    }
}

/// How long a disk stall may last: past the longest sensible fault, so the
/// stall ends when the nemesis heals it, not on its own.
pub const DISK_STALL_MAX_MS: u64 = 600_000;

impl Drop for NemesisRunner {
    /// The last line of defence (a panic, an early return): heal the links
    /// and resume paused nodes so nothing stays frozen. Killed nodes are not
    /// restarted here; whoever owns the cluster is tearing it down.
    fn drop(&mut self) {
        if let Err(e) = self.net.heal_all() {
            tracing::error!(error = %e, "could not heal the links");
        }
        let (disks, clocks, strobe) = self
            .active
            .lock()
            .map(|mut a| {
                (
                    std::mem::take(&mut a.disk),
                    std::mem::take(&mut a.clocks),
                    a.strobe.take(),
                )
            })
            .unwrap_or_default();
        if let Some(tx) = strobe {
            let _ = tx.send(true);
        }
        for node in disks.keys() {
            if let Err(e) = self.around.disk(node, DiskCommand::Heal) {
                tracing::error!(node, error = %e, "could not heal a disk");
            }
        }
        for node in &clocks {
            if let Err(e) = self.around.set_clock(node, 0) {
                tracing::error!(node, error = %e, "could not reset a clock");
            }
        }
        let paused = std::mem::take(
            &mut self
                .active
                .lock()
                .map(|mut a| std::mem::take(&mut a.paused))
                .unwrap_or_default(),
        );
        for node in paused {
            if let Err(e) = self.ops.resume(&node) {
                tracing::error!(node, error = %e, "could not resume a paused node");
            }
        }
    }
}

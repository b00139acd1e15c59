//! Plays a [`Plan`] against a cluster and records every fault start and stop
//! as a nemesis event.
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

use crate::error::NemesisError;
use crate::net::Net;
use crate::partition::{self, Shape};
use crate::schedule::{Fault, Plan, StepAction, Target};

/// A future returned by a trait method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the nemesis can do to a node's process. The harness's `Db`
/// implements it through `Control`.
pub trait NodeOps: Send + Sync {
    /// SIGKILLs the node; returns the pid that died.
    fn kill(&self, node: &str) -> Result<u32, String>;
    /// Starts a node that is down; returns its new pid.
    fn start(&self, node: &str) -> Result<u32, String>;
    /// SIGSTOPs the node.
    fn pause(&self, node: &str) -> Result<u32, String>;
    /// SIGCONTs the node.
    fn resume(&self, node: &str) -> Result<u32, String>;
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
    fn promote(&self, old: &str) -> BoxFuture<'_, Result<Value, String>> {
        let _ = old;
        Box::pin(async { Err("this database has no failover to drive".to_owned()) })
    }
    /// What a careful operator does before a failover (Redis: `WAIT` for
    /// the replicas to catch up with the primary `old`); returns what it
    /// found, for the event. Nothing by default.
    fn before_failover(&self, old: &str) -> BoxFuture<'_, Result<Value, String>> {
        let _ = old;
        Box::pin(async { Ok(Value::Null) })
    }
    /// Makes `node` (a former primary) a replica of the current primary.
    fn rejoin(&self, node: &str) -> BoxFuture<'_, Result<Value, String>> {
        let _ = node;
        Box::pin(async { Err("this database has no failover to drive".to_owned()) })
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
    fn disk(&self, node: &str, cmd: DiskCommand) -> Result<Value, String>;
    /// Sets `node`'s clock this far from the true one.
    fn set_clock(&self, node: &str, offset_ms: i64) -> Result<(), String>;
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
    fn disk(&self, _node: &str, _cmd: DiskCommand) -> Result<Value, String> {
        Err("disk faults need the disk-fault filesystem (a disk nemesis turns it on)".into())
    }

    fn set_clock(&self, _node: &str, _offset_ms: i64) -> Result<(), String> {
        Err("clock faults need libfaketime (a clock nemesis turns it on)".into())
    }
}

/// Where nemesis events go: the harness stamps them with the history's
/// index and time and appends them to `history.jsonl`.
pub trait Recorder: Send + Sync {
    /// Records one nemesis event (`f` as HISTORY_FORMAT.md names it).
    fn record(&self, f: &str, value: Value);
}

/// The faults in force.
#[derive(Default, Debug)]
struct Active {
    partition: Option<Value>,
    killed: BTreeSet<String>,
    paused: BTreeSet<String>,
    /// A failover in force: the old primary, and the event value.
    failover: Option<(String, Value)>,
    /// Nodes with a disk fault, and its name.
    disk: BTreeMap<String, &'static str>,
    /// A power loss in force (its nodes are also in `killed`).
    power_loss: Option<Value>,
    /// Nodes whose clock is off.
    clocks: BTreeSet<String>,
    /// The strobe task, cancelled when the clocks are reset.
    strobe: Option<watch::Sender<bool>>,
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

    /// Plays `plan` from `start` until it ends (`plan.end_ms`) or `stop`
    /// turns true, then heals everything. Errors of single steps are logged and recorded, and
    /// the plan goes on; the first one is returned at the end.
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
                tracing::warn!(error = %e, "nemesis step failed");
                first_err.get_or_insert(e);
            }
        }
        // A fault started by the last step stays in force until the plan ends.
        if !*stop.borrow() {
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

    /// Starts one fault and records it.
    pub async fn start_fault(&self, fault: &Fault) -> Result<(), NemesisError> {
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
                    self.disk_fault(&node, "disk-stall", DiskCommand::Stall { ms: DISK_STALL_MAX_MS })
                        .await?;
                }
                Ok(())
            }
            Fault::DiskError(t) => {
                for node in self.resolve(t).await {
                    self.disk_fault(&node, "disk-error", DiskCommand::Errors).await?;
                }
                Ok(())
            }
            Fault::DiskSlow { target, fsync_ms } => {
                for node in self.resolve(target).await {
                    self.disk_fault(&node, "disk-slow", DiskCommand::SlowFsync { ms: *fsync_ms })
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
            .map_err(|m| Self::node_err("prepare the failover of", &old, m))?;
        let cut = partition::isolate(&self.nodes, &old, Shape::IsolateLeader);
        let cuts = cut.cuts.clone();
        self.blocking(move |h| h.net.partition(&cuts)).await?;
        let mut value = match self.ops.promote(&old).await {
            Ok(v) => v,
            Err(m) => {
                self.blocking(|h| h.net.heal_all()).await;
                return Err(Self::node_err("promote a replica of", &old, m));
            }
        };
        value["partition"] = cut.event_value();
        if !before.is_null() {
            value["before"] = before;
        }
        self.recorder.record("start-failover", value.clone());
        self.update(|a| a.failover = Some((old, value)));
        Ok(())
    }

    async fn disk_fault(&self, node: &str, name: &'static str, cmd: DiskCommand) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let detail = self
            .blocking(move |h| h.around.disk(&target, cmd))
            .await
            .map_err(|m| Self::node_err(name, node, m))?;
        self.recorder
            .record(&format!("start-{name}"), json!({"node": node, "detail": detail}));
        self.update(|a| {
            a.disk.insert(node.to_owned(), name);
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
                        Err(m) => {
                            first.get_or_insert(Self::node_err("kill", node, m));
                        }
                    }
                }
                let mut dropped = BTreeMap::new();
                for node in pids.keys() {
                    match h.around.disk(node, DiskCommand::DropUnsynced) {
                        Ok(d) => {
                            dropped.insert(node.clone(), d);
                        }
                        Err(m) => {
                            first.get_or_insert(Self::node_err("drop unsynced writes of", node, m));
                        }
                    }
                }
                (pids, dropped, first)
            })
            .await;
        let value = json!({"pids": pids, "dropped": dropped});
        self.recorder.record("start-power-loss", value.clone());
        self.update(|a| {
            a.power_loss = Some(value);
            a.killed.extend(pids.keys().cloned());
        });
        first.map_or(Ok(()), Err)
    }

    async fn clock(&self, offsets: &BTreeMap<String, i64>) -> Result<(), NemesisError> {
        for (node, off) in offsets {
            let (target, off) = (node.clone(), *off);
            self.blocking(move |h| h.around.set_clock(&target, off))
                .await
                .map_err(|m| Self::node_err("set the clock of", node, m))?;
            self.update(|a| {
                a.clocks.insert(node.clone());
            });
        }
        self.recorder.record("start-clock", json!({"offsets_ms": offsets}));
        Ok(())
    }

    /// Starts a task that flips `node`'s clock until the clocks are reset.
    async fn clock_strobe(&self, node: &str, offset_ms: i64, period_ms: u64) -> Result<(), NemesisError> {
        let target = node.to_owned();
        self.blocking(move |h| h.around.set_clock(&target, offset_ms))
            .await
            .map_err(|m| Self::node_err("set the clock of", node, m))?;
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
        self.recorder.record(
            "start-clock",
            json!({"strobe": {"node": node, "offset_ms": offset_ms, "period_ms": period_ms}}),
        );
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
        let cuts = cuts.clone();
        self.blocking(move |h| h.net.partition(&cuts)).await?;
        self.recorder.record("start-partition", value.clone());
        self.update(|a| a.partition = Some(value));
        Ok(())
    }

    fn node_err(action: &'static str, node: &str, message: String) -> NemesisError {
        NemesisError::Node {
            action,
            node: node.to_owned(),
            message,
        }
    }

    /// SIGKILL; on the disk-fault filesystem the node's unsynced writes go
    /// with it, as when a machine crashes (what Jepsen's LazyFS does on a
    /// kill), and the event says how many bytes were dropped.
    async fn kill(&self, node: &str) -> Result<(), NemesisError> {
        let target = node.to_owned();
        let (pid, dropped) = self
            .blocking(move |h| {
                let pid = h.ops.kill(&target)?;
                let dropped = match h.around.has_disks() {
                    true => Some(h.around.disk(&target, DiskCommand::DropUnsynced)?),
                    false => None,
                };
                Ok::<_, String>((pid, dropped))
            })
            .await
            .map_err(|m| Self::node_err("kill", node, m))?;
        let mut value = json!({"node": node, "pid": pid});
        if let Some(d) = dropped {
            value["dropped"] = d;
        }
        self.recorder.record("kill", value);
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
            .map_err(|m| Self::node_err("pause", node, m))?;
        self.recorder.record("pause", json!({"node": node, "pid": pid}));
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
            .map_err(|m| Self::node_err("restart", node, m))?;
        if let Some(pid) = started {
            self.recorder
                .record("start", json!({"node": node, "pid": pid, "after": "its disk failed"}));
        }
        Ok(())
    }

    /// Undoes every fault in force, recording each undo: links first, then
    /// paused nodes, then killed ones. Tries every undo even when one fails,
    /// and returns the first error.
    pub async fn heal_all(&self) -> Result<(), NemesisError> {
        let (partition, paused, killed, failover, disk, power_loss, clocks, strobe) = {
            let mut a = self.active.lock().expect("active faults");
            (
                a.partition.clone(),
                a.paused.clone(),
                a.killed.clone(),
                a.failover.clone(),
                a.disk.clone(),
                a.power_loss.take(),
                a.clocks.clone(),
                a.strobe.take(),
            )
        };
        let mut first_err = None;
        // The links are healed even when no partition is recorded: a cut set
        // by hand, or half-applied, must not outlive the test either.
        self.blocking(|h| h.net.heal_all()).await;
        if let Some(v) = partition {
            self.recorder.record("stop-partition", v);
            self.update(|a| a.partition = None);
        }
        if let Some((old, v)) = failover {
            match self.ops.rejoin(&old).await {
                Ok(r) => self
                    .recorder
                    .record("stop-failover", json!({"started": v, "rejoined": r})),
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("rejoin", &old, m));
                }
            }
            self.update(|a| a.failover = None);
        }
        // Disks before processes: a node resumed onto a stalled disk would
        // still hang.
        for (node, name) in disk {
            let target = node.clone();
            match self.blocking(move |h| h.around.disk(&target, DiskCommand::Heal)).await {
                Ok(_) => self.recorder.record(&format!("stop-{name}"), json!({"node": node})),
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("heal the disk of", &node, m));
                }
            }
            if let Err(e) = self.restart_if_exited(&node).await {
                first_err.get_or_insert(e);
            }
            self.update(|a| {
                a.disk.remove(&node);
            });
        }
        if let Some(tx) = strobe {
            let _ = tx.send(true);
        }
        if !clocks.is_empty() {
            for node in &clocks {
                let target = node.clone();
                if let Err(m) = self.blocking(move |h| h.around.set_clock(&target, 0)).await {
                    first_err.get_or_insert(Self::node_err("reset the clock of", node, m));
                }
            }
            self.recorder.record("stop-clock", json!({"nodes": clocks}));
            self.update(|a| a.clocks.clear());
        }
        for node in paused {
            let target = node.clone();
            match self.blocking(move |h| h.ops.resume(&target)).await {
                Ok(pid) => self.recorder.record("resume", json!({"node": node, "pid": pid})),
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("resume", &node, m));
                }
            }
            self.update(|a| {
                a.paused.remove(&node);
            });
        }
        let mut restarted = BTreeMap::new();
        for node in killed {
            let target = node.clone();
            match self.blocking(move |h| h.ops.start(&target)).await {
                Ok(pid) => {
                    self.recorder.record("start", json!({"node": node, "pid": pid}));
                    restarted.insert(node.clone(), pid);
                    self.update(|a| {
                        a.killed.remove(&node);
                    });
                }
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("start", &node, m));
                }
            }
        }
        if let Some(v) = power_loss {
            self.recorder
                .record("stop-power-loss", json!({"started": v, "restarted": restarted}));
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `set_clock` on a blocking thread (it may run a command on a node).
async fn set_clock_off_runtime(around: &Arc<dyn Surroundings>, node: &str, offset_ms: i64) -> Result<(), String> {
    let (around, node) = (around.clone(), node.to_owned());
    match tokio::task::spawn_blocking(move || around.set_clock(&node, offset_ms)).await {
        Ok(r) => r,
        Err(e) => Err(format!("the clock task died: {e}")),
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
        self.net.heal_all();
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
            if let Err(m) = self.around.disk(node, DiskCommand::Heal) {
                tracing::error!(node, error = m, "could not heal a disk");
            }
        }
        for node in &clocks {
            if let Err(m) = self.around.set_clock(node, 0) {
                tracing::error!(node, error = m, "could not reset a clock");
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
            if let Err(m) = self.ops.resume(&node) {
                tracing::error!(node, error = m, "could not resume a paused node");
            }
        }
    }
}

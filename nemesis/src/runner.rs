//! Plays a [`Plan`] against a cluster and records every fault start and stop
//! as a nemesis event.
//!
//! The runner keeps the set of faults in force (a partition, killed nodes,
//! paused nodes). Whatever ends the test (the plan running out, a shutdown
//! request on Ctrl-C, a checker error, or a panic that drops the runner),
//! [`NemesisRunner::heal_all`] undoes them in a safe order (links healed,
//! paused nodes resumed, killed nodes restarted) and records each undo.

use std::collections::BTreeSet;
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
}

impl Active {
    fn count(&self) -> usize {
        usize::from(self.partition.is_some()) + self.killed.len() + self.paused.len()
    }
}

/// Plays fault plans and undoes them.
pub struct NemesisRunner {
    net: Arc<dyn Net>,
    ops: Arc<dyn NodeOps>,
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
            recorder,
            nodes,
            active: Mutex::new(Active::default()),
            active_count: Arc::new(AtomicUsize::new(0)),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973)),
        }
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
                StepAction::Stop => self.heal_all(),
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
        let healed = self.heal_all();
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

    /// Starts one fault and records it.
    pub async fn start_fault(&self, fault: &Fault) -> Result<(), NemesisError> {
        match fault {
            Fault::Partition(p) => self.partition(&p.cuts, p.event_value()),
            Fault::PartitionLeader => {
                let leader = self.leader_or_random().await;
                let p = partition::isolate(&self.nodes, &leader, Shape::IsolateLeader);
                self.partition(&p.cuts, p.event_value())
            }
            Fault::Kill(t) => {
                for node in self.resolve(t).await {
                    self.kill(&node)?;
                }
                Ok(())
            }
            Fault::Pause(t) => {
                for node in self.resolve(t).await {
                    self.pause(&node)?;
                }
                Ok(())
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut Active)) {
        let mut a = self.active.lock().expect("active faults");
        f(&mut a);
        self.active_count.store(a.count(), Ordering::Relaxed);
    }

    fn partition(&self, cuts: &BTreeSet<crate::net::Link>, value: Value) -> Result<(), NemesisError> {
        self.net.partition(cuts)?;
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

    fn kill(&self, node: &str) -> Result<(), NemesisError> {
        let pid = self.ops.kill(node).map_err(|m| Self::node_err("kill", node, m))?;
        self.recorder.record("kill", json!({"node": node, "pid": pid}));
        self.update(|a| {
            a.paused.remove(node);
            a.killed.insert(node.to_owned());
        });
        Ok(())
    }

    fn pause(&self, node: &str) -> Result<(), NemesisError> {
        let pid = self.ops.pause(node).map_err(|m| Self::node_err("pause", node, m))?;
        self.recorder.record("pause", json!({"node": node, "pid": pid}));
        self.update(|a| {
            a.paused.insert(node.to_owned());
        });
        Ok(())
    }

    /// Undoes every fault in force, recording each undo: links first, then
    /// paused nodes, then killed ones. Tries every undo even when one fails,
    /// and returns the first error.
    pub fn heal_all(&self) -> Result<(), NemesisError> {
        let (partition, paused, killed) = {
            let a = self.active.lock().expect("active faults");
            (a.partition.clone(), a.paused.clone(), a.killed.clone())
        };
        let mut first_err = None;
        // The links are healed even when no partition is recorded: a cut set
        // by hand, or half-applied, must not outlive the test either.
        self.net.heal_all();
        if let Some(v) = partition {
            self.recorder.record("stop-partition", v);
            self.update(|a| a.partition = None);
        }
        for node in paused {
            match self.ops.resume(&node) {
                Ok(pid) => self.recorder.record("resume", json!({"node": node, "pid": pid})),
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("resume", &node, m));
                }
            }
            self.update(|a| {
                a.paused.remove(&node);
            });
        }
        for node in killed {
            match self.ops.start(&node) {
                Ok(pid) => {
                    self.recorder.record("start", json!({"node": node, "pid": pid}));
                    self.update(|a| {
                        a.killed.remove(&node);
                    });
                }
                Err(m) => {
                    first_err.get_or_insert(Self::node_err("start", &node, m));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NemesisRunner {
    /// The last line of defence (a panic, an early return): heal the links
    /// and resume paused nodes so nothing stays frozen. Killed nodes are not
    /// restarted here; whoever owns the cluster is tearing it down.
    fn drop(&mut self) {
        self.net.heal_all();
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

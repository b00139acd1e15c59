//! Fault truth: the runner records a fault as `info` only when it took
//! effect, records a `fail` event with the error when it did not (kill,
//! pause, a partition the proxy mesh cannot make, a heal that fails), and
//! such a failure ends the plan with the error instead of a silent pass.
//! The kill and pause paths use node operations that fail on demand; the
//! partition path a real proxy mesh on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_nemesis::partition::{self, Partition, Shape};
use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{
    ControlError, Fault, FaultEvent, FaultKind, Link, LinkFault, NemesisError, NemesisRunner, Net, NetError, NodeOps,
    NodeOpsError, Plan, ProxyMesh, Recorder, Step, StepAction, Target,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// One recorded nemesis event: `(type, f, error)`.
type Recorded = (&'static str, String, Option<String>);

#[derive(Default)]
struct Events(Mutex<Vec<Recorded>>);

impl Recorder for Events {
    fn record(&self, f: FaultEvent, _value: Value) {
        self.0.lock().unwrap().push(("info", f.name().to_owned(), None));
    }

    fn record_failure(&self, f: FaultEvent, _value: Value, error: &NemesisError) {
        self.0
            .lock()
            .unwrap()
            .push(("fail", f.name().to_owned(), Some(error.to_string())));
    }
}

impl Events {
    fn list(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

/// Node operations that succeed, or fail when told to.
#[derive(Default)]
struct Ops {
    kill_fails: AtomicBool,
    pause_fails: AtomicBool,
}

impl NodeOps for Ops {
    fn kill(&self, _node: &str) -> Result<u32, NodeOpsError> {
        match self.kill_fails.load(Ordering::SeqCst) {
            true => Err(signal_failed("SIGKILL", libc_errno::ESRCH)),
            false => Ok(100),
        }
    }

    fn start(&self, _node: &str) -> Result<u32, NodeOpsError> {
        Ok(101)
    }

    fn pause(&self, _node: &str) -> Result<u32, NodeOpsError> {
        match self.pause_fails.load(Ordering::SeqCst) {
            true => Err(signal_failed("SIGSTOP", libc_errno::EPERM)),
            false => Ok(100),
        }
    }

    fn resume(&self, _node: &str) -> Result<u32, NodeOpsError> {
        Ok(100)
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
}

/// The errno values the failing operations report.
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ESRCH: i32 = 3;
}

/// A signal to pid 100 that the OS refused with `errno`.
fn signal_failed(signal: &'static str, errno: i32) -> NodeOpsError {
    NodeOpsError::Control(ControlError::Signal {
        signal,
        pid: 100,
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// A net whose cuts work and whose heal fails, as nftables does when a
/// node's `nft` stops answering mid-test.
#[derive(Default)]
struct HealFails;

impl Net for HealFails {
    fn set(&self, _link: &Link, _fault: LinkFault) -> Result<(), NetError> {
        Ok(())
    }

    fn partition(&self, _cuts: &BTreeSet<Link>) -> Result<(), NetError> {
        Ok(())
    }

    fn heal_all(&self) -> Result<(), NetError> {
        Err(NetError::Apply {
            node: "n2".into(),
            detail: "nft: exit status 1".into(),
        })
    }

    fn faulty(&self) -> Vec<(Link, LinkFault)> {
        Vec::new()
    }
}

fn nodes(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

/// A proxy mesh over n1..n3 (the targets need not listen: no byte flows).
async fn mesh() -> Arc<ProxyMesh> {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let targets: Vec<(String, SocketAddr)> = nodes(3).into_iter().map(|n| (n, addr)).collect();
    Arc::new(ProxyMesh::start(&targets, &[], 1).await.unwrap())
}

/// Starts and stops every 50 ms; the plan itself would last a minute, so a
/// run that returns early was ended by the failure.
fn plan(faults: Vec<Fault>) -> Plan {
    let mut steps = Vec::new();
    for (i, f) in faults.into_iter().enumerate() {
        let at_ms = 100 * i as u64;
        steps.push(Step {
            at_ms,
            action: StepAction::Start(f),
        });
        steps.push(Step {
            at_ms: at_ms + 50,
            action: StepAction::Stop,
        });
    }
    Plan { steps, end_ms: 60_000 }
}

/// Plays `plan`; the error, and how long it took.
async fn play(runner: &NemesisRunner, plan: &Plan) -> (Result<(), NemesisError>, Duration) {
    let (_tx, stop) = watch::channel(false);
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), runner.run(plan, start, stop))
        .await
        .expect("the runner ended within 20 s");
    (r, start.elapsed())
}

fn runner(net: Arc<dyn Net>, ops: Arc<Ops>, events: Arc<Events>, n: usize) -> NemesisRunner {
    NemesisRunner::new(net, ops, events, nodes(n), 7)
}

fn halves() -> Fault {
    let cuts: BTreeSet<Link> = [Link::new("n1", "n2"), Link::new("n2", "n1")].into();
    Fault::Partition(Partition {
        shape: Shape::Halves,
        cuts,
        detail: Value::Null,
    })
}

#[tokio::test]
async fn a_kill_that_fails_is_a_fail_event_and_ends_the_plan() {
    let (events, ops) = (Arc::new(Events::default()), Arc::new(Ops::default()));
    ops.kill_fails.store(true, Ordering::SeqCst);
    let r = runner(mesh().await, ops, events.clone(), 3);
    let (res, took) = play(&r, &plan(vec![Fault::Kill(Target::Node("n1".into())), halves()])).await;
    let err = res.unwrap_err();
    assert!(
        matches!(&err, NemesisError::Node { action: "kill", node, source: NodeOpsError::Control(ControlError::Signal { .. }) } if node == "n1"),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("kill n1: signal SIGKILL to pid 100"), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "the plan ended at the failure, took {took:?}"
    );
    let list = events.list();
    assert_eq!(list.len(), 1, "only the failure, no partition after it: {list:?}");
    assert_eq!((list[0].0, list[0].1.as_str()), ("fail", "kill"));
    assert_eq!(list[0].2.as_deref(), Some(err.as_str()), "the event carries the error");
    assert!(r.fault_counts().is_empty(), "a failed fault is not counted");
}

#[tokio::test]
async fn a_pause_that_fails_after_a_kill_that_worked_is_recorded_as_such() {
    let (events, ops) = (Arc::new(Events::default()), Arc::new(Ops::default()));
    ops.pause_fails.store(true, Ordering::SeqCst);
    let r = runner(mesh().await, ops, events.clone(), 3);
    let faults = vec![
        Fault::Kill(Target::Node("n1".into())),
        Fault::Pause(Target::Node("n2".into())),
    ];
    let (res, _) = play(&r, &plan(faults)).await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("pause n2: signal SIGSTOP"), "{err}");
    let kinds: Vec<(&str, String)> = events.list().into_iter().map(|(t, f, _)| (t, f)).collect();
    assert_eq!(
        kinds,
        vec![
            ("info", "kill".to_owned()),
            ("info", "start".to_owned()),
            ("fail", "pause".to_owned())
        ]
    );
    assert_eq!(r.fault_counts(), BTreeMap::from([(FaultKind::Kill, 1)]));
}

#[tokio::test]
async fn a_partition_the_proxy_mesh_cannot_make_is_a_fail_event() {
    let (events, ops) = (Arc::new(Events::default()), Arc::new(Ops::default()));
    // The runner knows a fourth node the mesh has no proxy for.
    let r = runner(mesh().await, ops, events.clone(), 4);
    let isolated = partition::isolate(&nodes(4), "n4", Shape::IsolateOne);
    let (res, _) = play(&r, &plan(vec![Fault::Partition(isolated)])).await;
    let err = res.unwrap_err().to_string();
    assert!(err.contains("no link"), "{err}");
    let list = events.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].0, list[0].1.as_str()), ("fail", "start-partition"));
    assert!(r.fault_counts().is_empty());
}

#[tokio::test]
async fn a_heal_that_fails_is_a_fail_event_and_an_error() {
    let (events, ops) = (Arc::new(Events::default()), Arc::new(Ops::default()));
    let r = runner(Arc::new(HealFails), ops, events.clone(), 3);
    let (res, took) = play(&r, &plan(vec![halves(), Fault::Kill(Target::Node("n1".into()))])).await;
    assert!(res.unwrap_err().to_string().contains("nft: exit status 1"));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let kinds: Vec<(&str, String)> = events.list().into_iter().map(|(t, f, _)| (t, f)).collect();
    assert_eq!(kinds[0], ("info", "start-partition".to_owned()));
    assert_eq!(kinds[1], ("fail", "stop-partition".to_owned()));
    assert!(
        !kinds.iter().any(|(_, f)| f == "kill"),
        "no fault after a failed heal: {kinds:?}"
    );
}

#[tokio::test]
async fn faults_that_took_effect_are_counted_by_kind() {
    let (events, ops) = (Arc::new(Events::default()), Arc::new(Ops::default()));
    let r = runner(mesh().await, ops, events.clone(), 3);
    let faults = vec![halves(), Fault::Kill(Target::Node("n1".into())), halves()];
    let mut p = plan(faults);
    p.end_ms = 400;
    let (res, _) = play(&r, &p).await;
    res.unwrap();
    assert_eq!(
        r.fault_counts(),
        BTreeMap::from([(FaultKind::Kill, 1), (FaultKind::PartitionHalves, 2)])
    );
    assert!(events.list().iter().all(|(t, _, _)| *t == "info"));
}

//! The processes of a cluster, one daemon per node, as every `Db` keeps
//! them: started through `Control`, signalled, killed and reaped (bounded),
//! paused and resumed, all stopped at the end (paused ones resumed first).
//! faultline-server, etcd and Redis differ in how a node is started and
//! asked for its state, not in this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_nemesis::{Control, ControlError, Daemon, DaemonSpec, NodeOpsError, Signal};

use super::db::{DbError, HeldPorts};

/// How long a killed node may take to be reaped.
const KILL_REAP_MS: u64 = 5_000;

/// One daemon per node.
pub struct ProcessSet {
    control: Arc<dyn Control>,
    /// Variables added to every node's environment (the clock nemesis's
    /// libfaketime), by node.
    env: BTreeMap<String, Vec<(String, String)>>,
    /// The nodes' ports, let go as each node starts.
    held: HeldPorts,
    daemons: Mutex<BTreeMap<String, Box<dyn Daemon>>>,
    paused: Mutex<BTreeSet<String>>,
    logs: Mutex<BTreeMap<String, PathBuf>>,
}

impl ProcessSet {
    /// No process yet; they start through `control`, each node with the
    /// extra environment `env` gives it, on the ports `held` keeps for it.
    pub fn new(control: Arc<dyn Control>, env: BTreeMap<String, Vec<(String, String)>>, held: HeldPorts) -> ProcessSet {
        ProcessSet {
            control,
            env,
            held,
            daemons: Mutex::new(BTreeMap::new()),
            paused: Mutex::new(BTreeSet::new()),
            logs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The `Control` the processes run under.
    pub fn control(&self) -> &Arc<dyn Control> {
        &self.control
    }

    /// Starts `node` with `spec` unless it runs; returns its pid.
    pub fn start(&self, node: &str, spec: &DaemonSpec) -> Result<u32, DbError> {
        let mut daemons = self.daemons.lock().expect("daemons");
        if let Some(d) = daemons.get_mut(node) {
            if d.is_running() {
                return Ok(d.pid());
            }
        }
        let mut spec = spec.clone();
        spec.env.extend(self.env.get(node).into_iter().flatten().cloned());
        self.held.release(node);
        let d = self.control.start(node, &spec).map_err(|source| DbError::Control {
            node: node.to_owned(),
            source,
        })?;
        let pid = d.pid();
        daemons.insert(node.to_owned(), d);
        self.logs
            .lock()
            .expect("logs")
            .insert(node.to_owned(), spec.log_file.clone());
        Ok(pid)
    }

    /// Sends `sig` to a running node; returns its pid.
    pub fn signal(&self, node: &str, sig: Signal) -> Result<u32, NodeOpsError> {
        let not_running = || NodeOpsError::NotRunning { node: node.to_owned() };
        let mut daemons = self.daemons.lock().expect("daemons");
        let d = daemons.get_mut(node).filter(|d| d.pid() > 0).ok_or_else(not_running)?;
        if !d.is_running() {
            return Err(not_running());
        }
        d.signal(sig)?;
        Ok(d.pid())
    }

    /// SIGKILLs a node (resumed first, so it dies at once) and waits,
    /// bounded, until it is reaped.
    pub fn kill(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.signal(node, Signal::Cont)?;
        self.signal(node, Signal::Kill)?;
        self.paused.lock().expect("paused").remove(node);
        let deadline = std::time::Instant::now() + Duration::from_millis(KILL_REAP_MS);
        let mut daemons = self.daemons.lock().expect("daemons");
        if let Some(d) = daemons.get_mut(node) {
            while d.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            // A kill is recorded only once the node is gone.
            if d.is_running() {
                return Err(NodeOpsError::Control(ControlError::WouldNotDie {
                    pid,
                    timeout_ms: KILL_REAP_MS,
                }));
            }
        }
        Ok(pid)
    }

    /// SIGSTOPs a node.
    pub fn pause(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.signal(node, Signal::Stop)?;
        self.paused.lock().expect("paused").insert(node.to_owned());
        Ok(pid)
    }

    /// SIGCONTs a node.
    pub fn resume(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.signal(node, Signal::Cont)?;
        self.paused.lock().expect("paused").remove(node);
        Ok(pid)
    }

    /// Whether `node` runs.
    pub fn is_running(&self, node: &str) -> bool {
        let mut daemons = self.daemons.lock().expect("daemons");
        daemons.get_mut(node).is_some_and(|d| d.is_running())
    }

    /// A node that was started and has exited on its own, with its log.
    pub fn exited(&self) -> Option<(String, PathBuf)> {
        let mut daemons = self.daemons.lock().expect("daemons");
        let node = daemons
            .iter_mut()
            .find_map(|(n, d)| (!d.is_running()).then(|| n.clone()))?;
        let log = self.logs.lock().expect("logs").get(&node).cloned().unwrap_or_default();
        Some((node, log))
    }

    /// Stops every node (resuming paused ones first) and waits until each
    /// is gone; tries them all and returns the first error.
    pub fn stop_all(&self) -> Result<(), DbError> {
        let mut daemons = std::mem::take(&mut *self.daemons.lock().expect("daemons"));
        self.paused.lock().expect("paused").clear();
        let mut first_err = None;
        for (node, d) in daemons.iter_mut() {
            if let Err(source) = d.stop() {
                first_err.get_or_insert(DbError::Control {
                    node: node.clone(),
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Pids of the running nodes.
    pub fn pids(&self) -> BTreeMap<String, u32> {
        let mut daemons = self.daemons.lock().expect("daemons");
        daemons
            .iter_mut()
            .filter_map(|(n, d)| d.is_running().then(|| (n.clone(), d.pid())))
            .collect()
    }
}

impl Drop for ProcessSet {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            tracing::error!(error = %e, "stopping the cluster");
        }
    }
}

/// Creates `dir` (a node's folder) on `node`: here when the node shares
/// this machine's filesystem, else with `mkdir -p` run there; or says which
/// node could not have it.
pub fn make_dir(control: &dyn Control, node: &str, dir: &Path) -> Result<(), DbError> {
    let err = |source| DbError::Control {
        node: node.to_owned(),
        source,
    };
    if control.shares_filesystem() {
        return std::fs::create_dir_all(dir).map_err(|source| {
            err(ControlError::Io {
                path: dir.to_owned(),
                source,
            })
        });
    }
    let path = dir.display().to_string();
    let cmd = faultline_nemesis::CommandSpec::new("mkdir", &["-p", &path], Duration::from_secs(30));
    let out = control.run(node, &cmd).map_err(err)?;
    if out.status.success() {
        return Ok(());
    }
    Err(err(ControlError::Io {
        path: dir.to_owned(),
        source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }))
}

/// The last non-empty line of a log (at most its last 4 KiB are read).
pub fn last_line(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return "no log".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut tail = String::new();
    let _ = f.read_to_string(&mut tail);
    tail.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("empty log")
        .to_owned()
}

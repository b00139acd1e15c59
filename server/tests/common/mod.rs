//! Test support: real clusters of `faultline-server` processes on loopback
//! ports, with an in-test TCP proxy on every directed peer link so a test
//! can cut links (partitions) without root.
//!
//! Promises: every process started here is killed by PID when its guard is
//! dropped (also when the test panics); every wait is bounded; all traffic
//! stays on 127.0.0.1.

#![allow(dead_code)]

use faultline_server::protocol::{Outcome, Reply};
use faultline_server::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Timing settings that make failover quick in tests.
pub const FAST: &str = "heartbeat_ms=30,election_timeout_ms=300,request_timeout_ms=2000";

/// A one-way cuttable TCP proxy (one per directed peer link).
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy whose target is set later (once the node said its address).
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let flag = cut.clone();
        let to = target.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let dest = *to.lock().unwrap();
                match dest {
                    Some(dest) if !flag.load(Ordering::SeqCst) => {
                        tokio::spawn(pipe(inbound, dest, flag.clone()));
                    }
                    _ => drop(inbound),
                }
            }
        });
        Proxy {
            addr,
            cut,
            target,
            task,
        }
    }

    pub fn set_target(&self, addr: SocketAddr) {
        *self.target.lock().unwrap() = Some(addr);
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes both ways until either side closes or the link is cut.
async fn pipe(inbound: TcpStream, target: SocketAddr, cut: Arc<AtomicBool>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut ri, mut wi) = inbound.into_split();
    let (mut ro, mut wo) = outbound.into_split();
    let a = tokio::io::copy(&mut ri, &mut wo);
    let b = tokio::io::copy(&mut ro, &mut wi);
    let watch = async {
        while !cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = a => {}
        _ = b => {}
        _ = watch => {}
    }
}

/// One node process; killed on drop.
pub struct NodeProc {
    pub id: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    /// Starts the process listening on `listen` (port 0: any free port) and
    /// waits (bounded) for it to announce its address. False if it did not.
    fn spawn_on(&mut self, listen: &str) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-server"))
            .args(["--listen", listen])
            .args(&self.args)
            // FAULTLINE_NODE_LOG=debug shows elections and votes when
            // chasing a failure.
            .env(
                "RUST_LOG",
                std::env::var("FAULTLINE_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start faultline-server");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) else {
            self.kill();
            return false;
        };
        match line.rsplit(' ').next().and_then(|a| a.parse().ok()) {
            Some(addr) => {
                self.addr = addr;
                true
            }
            None => {
                self.kill();
                false
            }
        }
    }

    /// Restarts on the same port when it is still free, else on a new one.
    fn spawn(&mut self) {
        let same = self.addr.to_string();
        if !self.spawn_on(&same) {
            assert!(
                self.spawn_on("127.0.0.1:0"),
                "node {} did not start:\n{}",
                self.id,
                self.log_tail()
            );
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// The last 40 distinct lines of the node's log (`FAULTLINE_LOG_TAIL`
    /// sets how many): a run of lines that
    /// differ only in their timestamp (a dead peer's redials) is one line
    /// with a count, so it cannot push the lines that explain out of view.
    pub fn log_tail(&self) -> String {
        let path = self.dir.with_extension("log");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => return format!("(cannot read {}: {e})", path.display()),
        };
        let text = String::from_utf8_lossy(&bytes);
        // (first line of the run, its text after the timestamp, count)
        let mut runs: Vec<(&str, &str, usize)> = Vec::new();
        for line in text.lines() {
            let message = line.split_once(' ').map_or(line, |(_, rest)| rest);
            match runs.last_mut() {
                Some((_, last, n)) if *last == message => *n += 1,
                _ => runs.push((line, message, 1)),
            }
        }
        let keep = std::env::var("FAULTLINE_LOG_TAIL")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(40);
        let shown = &runs[runs.len().saturating_sub(keep)..];
        let lines: Vec<String> = shown
            .iter()
            .map(|(line, _, n)| match n {
                1 => line.to_string(),
                n => format!("{line}  (and {} more like it)", n - 1),
            })
            .collect();
        format!("({} bytes)\n{}", bytes.len(), lines.join("\n"))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A paused node must be resumed to die promptly.
            unsafe {
                libc::kill(pid as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}

/// A cluster of real processes with a proxy on every directed link.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    /// (from, to) -> proxy that `from` dials to reach `to`.
    pub links: BTreeMap<(String, String), Proxy>,
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(n: usize, settings: &str) -> Cluster {
        Cluster::start_with(n, settings, |_| String::new()).await
    }

    /// Like `start`, with extra settings for node i (0-based) appended.
    pub async fn start_with(n: usize, settings: &str, extra: impl Fn(usize) -> String) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let mut links = BTreeMap::new();
        for from in &ids {
            for to in &ids {
                if from != to {
                    links.insert((from.clone(), to.clone()), Proxy::start().await);
                }
            }
        }
        let mut nodes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let dir = tmp.path().join(id);
            let mut args = vec![
                "--node".to_string(),
                id.clone(),
                "--data-dir".into(),
                dir.display().to_string(),
                "--settings".into(),
                format!("{settings},{}", extra(i)),
            ];
            for to in ids.iter().filter(|t| *t != id) {
                args.push("--peer".into());
                args.push(format!("{to}={}", links[&(id.clone(), to.clone())].addr));
            }
            let mut node = NodeProc {
                id: id.clone(),
                addr: "127.0.0.1:0".parse().unwrap(),
                dir,
                args,
                child: None,
            };
            assert!(
                node.spawn_on("127.0.0.1:0"),
                "node {id} did not start:\n{}",
                node.log_tail()
            );
            nodes.push(node);
        }
        let c = Cluster { nodes, links, tmp };
        for i in 0..n {
            c.retarget(i);
            c.wait_serving(i).await;
        }
        c
    }

    /// Points every proxy in front of node i at its current address.
    fn retarget(&self, i: usize) {
        let n = &self.nodes[i];
        for ((_, to), p) in &self.links {
            if *to == n.id {
                p.set_target(n.addr);
            }
        }
    }

    pub fn idx(&self, id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap()
    }

    pub fn addr(&self, id: &str) -> String {
        self.nodes[self.idx(id)].addr.to_string()
    }

    /// Waits until the node answers status.
    pub async fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut c) = Client::connect(&self.nodes[i].addr.to_string(), Duration::from_millis(500)).await {
                if c.status().await.result == Outcome::Ok {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {} did not start:\n{}", self.nodes[i].id, self.nodes[i].log_tail());
    }

    pub async fn client(&self, id: &str) -> Client {
        Client::connect(&self.addr(id), Duration::from_secs(5))
            .await
            .expect("connect")
    }

    pub async fn status(&self, id: &str) -> Option<Reply> {
        let mut c = Client::connect(&self.addr(id), Duration::from_millis(500)).await.ok()?;
        let r = c.status().await;
        (r.result == Outcome::Ok).then_some(r)
    }

    /// Waits for a leader of shard 0 among `among` and returns its id.
    pub async fn wait_leader(&self, among: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            for id in among {
                if let Some(r) = self.status(id).await {
                    let s = r.status.unwrap();
                    if s.main.role == "leader" {
                        return id.to_string();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader among {among:?}\n{}", self.logs());
    }

    /// Cuts (or heals) every link to and from `id`.
    pub fn isolate(&self, id: &str, cut: bool) {
        for ((from, to), p) in &self.links {
            if from == id || to == id {
                p.set_cut(cut);
            }
        }
    }

    /// Cuts (or heals) the links from `id` to everyone else.
    pub fn cut_outbound(&self, id: &str, cut: bool) {
        for ((from, _), p) in &self.links {
            if from == id {
                p.set_cut(cut);
            }
        }
    }

    pub fn kill(&mut self, id: &str) {
        let i = self.idx(id);
        self.nodes[i].kill();
    }

    pub async fn restart(&mut self, id: &str) {
        let i = self.idx(id);
        self.nodes[i].kill();
        self.nodes[i].spawn();
        self.retarget(i);
        self.wait_serving(i).await;
    }

    /// Writes through every node until each answers ok once, so that all
    /// peer links are up before a test starts measuring (bounded).
    pub async fn warm_up(&self) {
        for n in &self.nodes {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let mut c = Client::connect(&n.addr.to_string(), Duration::from_secs(2))
                    .await
                    .expect("connect");
                if c.write("warmup", Value::from(1)).await.result == Outcome::Ok {
                    break;
                }
                assert!(Instant::now() < deadline, "{} never served a write", n.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Retries `f` until its reply is ok, bounded by `timeout`.
pub async fn until_ok<F, Fut>(timeout: Duration, mut f: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let r = f().await;
        if r.result == Outcome::Ok || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The resident memory of process `pid` in KiB, from /proc/<pid>/status
/// (the abuse and soak tests bound a node's by it).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

pub fn int(v: i64) -> Value {
    Value::from(v)
}

//! `faultline run` against machines reached over SSH, for real: each node
//! is a network namespace running its own sshd, the harness logs in with a
//! key and checks host keys against a known_hosts file, uploads
//! faultline-server, starts the nodes as daemons, partitions them with
//! nftables and kills them through SSH commands, and downloads their logs.
//! A host missing from known_hosts is refused.
//!
//! Needs root, `ip netns`, `nft`, sshd and ssh-keygen: elsewhere the tests
//! say why and skip; with `CI=true` they fail instead.

mod run_support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_nemesis::netns::{self, NetnsCluster};
use faultline_nemesis::{Control, Daemon, DaemonSpec};
use run_support::{
    cannot, have, have_postgres, netns_capable, processes_mentioning, run_json, server_bin, FAILOVERS, PG_SYNC,
};

const SSHD: &str = "/usr/sbin/sshd";

fn capable() -> bool {
    if !netns_capable() {
        return false;
    }
    if !Path::new(SSHD).is_file() {
        return cannot("sshd is missing (Debian: openssh-server)");
    }
    have("ssh-keygen", "openssh-client")
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen");
}

/// Three namespaced machines, each with sshd on port 22 of its address.
struct Machines {
    _sshds: Vec<Box<dyn Daemon>>,
    cluster: NetnsCluster,
    dir: PathBuf,
    hosts: Vec<String>,
}

impl Machines {
    fn start(dir: &Path) -> Machines {
        std::fs::create_dir_all("/run/sshd").unwrap();
        keygen(&dir.join("client"));
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
        let nodes: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let cluster = NetnsCluster::create(&netns::new_run_id(), &nodes).unwrap();
        let control = cluster.control();
        let mut known = String::new();
        let mut sshds = Vec::new();
        let mut hosts = Vec::new();
        for n in &nodes {
            let ip = cluster.node(n).unwrap().ip;
            let key = dir.join(format!("host_{n}"));
            keygen(&key);
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            known += &format!("{ip} {public}");
            let config = dir.join(format!("sshd_{n}.conf"));
            std::fs::write(&config, sshd_config(ip.to_string(), &key, dir, n)).unwrap();
            let spec = DaemonSpec {
                program: SSHD.into(),
                args: vec!["-D".into(), "-e".into(), "-f".into(), config.display().to_string()],
                env: vec![],
                log_file: dir.join(format!("sshd_{n}.log")),
            };
            sshds.push(control.start(n, &spec).unwrap());
            hosts.push(ip.to_string());
        }
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        for h in &hosts {
            wait_for_port(SocketAddr::new(h.parse().unwrap(), 22));
        }
        Machines {
            _sshds: sshds,
            cluster,
            dir: dir.to_owned(),
            hosts,
        }
    }

    /// A known_hosts file that lists none of the machines.
    fn empty_known_hosts(&self) -> PathBuf {
        let empty = self.dir.join("empty_known_hosts");
        std::fs::write(&empty, "").unwrap();
        empty
    }

    fn faultline(&self, known_hosts: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
        cmd.args([
            "run",
            "--nodes",
            &self.hosts.join(","),
            "--ssh-user",
            "root",
            "--ssh-key",
        ])
        .arg(self.dir.join("client"))
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--remote-dir")
        .arg(self.dir.join("remote"))
        .arg("--store")
        .arg(self.dir.join("store"))
        .arg("--server-bin")
        .arg(server_bin())
        .args(["--no-progress"])
        .args(extra);
        cmd
    }

    /// `faultline run extra... --json` on the machines, their host keys
    /// known; its exit code and results.
    fn run(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let known_hosts = self.dir.join("known_hosts");
        run_json(&mut self.faultline(&known_hosts, &[extra, &["--json"]].concat()))
    }

    /// The nftables tables left in each machine's namespace.
    fn tables(&self) -> String {
        let control = self.cluster.control();
        let cmd = faultline_nemesis::CommandSpec::new("nft", &["list", "tables"], Duration::from_secs(5));
        (1..=3)
            .map(|i| String::from_utf8_lossy(&control.run(&format!("n{i}"), &cmd).unwrap().stdout).into_owned())
            .collect()
    }
}

fn sshd_config(ip: String, host_key: &Path, dir: &Path, node: &str) -> String {
    format!(
        "Port 22\nListenAddress {ip}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
         StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n",
        host_key.display(),
        dir.join("authorized_keys").display(),
        dir.join(format!("sshd_{node}.pid")).display(),
    )
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "sshd at {addr} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_run_over_ssh_from_upload_to_log_download() {
    if !capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let (code, results) = m.run(&[
        "--time-limit",
        "10",
        "--nemesis",
        "partition-halves,kill",
        "--nemesis-interval",
        "2",
        "--seed",
        "9",
    ]);
    assert_eq!(code, 0, "{results:#}");
    assert_eq!(results["valid"], true);
    let faults = &results["nemesis"];
    assert!(
        faults["start-partition"].as_u64().unwrap_or(0) + faults["kill"].as_u64().unwrap_or(0) >= 2,
        "the nemesis fired: {faults}"
    );
    // Uploaded, run from the remote folder, logs downloaded into the store.
    let run = std::fs::canonicalize(m.dir.join("store/latest")).unwrap();
    let stamp = run.file_name().unwrap();
    assert!(m.dir.join("remote").join(stamp).join("bin/faultline-server").is_file());
    for n in ["n1", "n2", "n3"] {
        let log = std::fs::read_to_string(run.join("nodes").join(n).join("node.log")).unwrap();
        assert!(log.contains(n), "{n}'s downloaded log names it:\n{log}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert!(config["rerun"].as_str().unwrap().contains(&m.hosts.join(",")));
    // Nothing left: no node process, no nftables table.
    let procs = processes_mentioning(&m.dir.join("remote").display().to_string());
    assert!(procs.is_empty(), "node processes left behind: {procs:?}");
    assert!(!m.tables().contains("faultline"), "tables left behind: {}", m.tables());
}

#[test]
fn an_unknown_host_is_refused_before_anything_runs() {
    if !capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let empty = m.empty_known_hosts();
    let out = m
        .faultline(&empty, &["--nemesis", "none", "--time-limit", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("ssh-keyscan"),
        "the error says how to add the host: {stderr}"
    );
    assert!(!m.dir.join("remote").exists(), "nothing was uploaded");
}

#[test]
fn redis_runs_over_ssh_from_the_machines_own_package() {
    if !capable() || !have("redis-server", "redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let redis = ["--db", "redis", "--workload", "list-append", "--seed", "4"];
    let (code, results) = m.run(&[&redis[..], &FAILOVERS[..]].concat());
    assert_eq!(code, 1, "{results:#}");
    assert_eq!(results["checkers"]["lost-writes"]["valid"], false, "{results:#}");
    let run = std::fs::canonicalize(m.dir.join("store/latest")).unwrap();
    let log = std::fs::read_to_string(run.join("nodes/n2/node.log")).unwrap();
    assert!(
        log.contains("MASTER") || log.contains("master"),
        "n2's Redis log was downloaded:\n{log}"
    );
    let procs = processes_mentioning(&m.dir.join("remote").display().to_string());
    assert!(procs.is_empty(), "redis left behind: {procs:?}");
}

/// `any:1` with `remote_apply` and a fenced failover, over SSH: every
/// failover's old primary is killed before a standby is promoted and
/// rejoins (pg_rewind) when the fault ends, and the history through the
/// primary stays linearizable with no acknowledged write lost.
#[test]
fn postgres_runs_over_ssh_with_a_synchronous_standby_and_a_fenced_failover() {
    if !capable() || !have_postgres() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let postgres = ["--db", "postgres", "--pg-failover", "fenced", "--workload", "register"];
    let load = ["--rate", "200", "--seed", "4"];
    let (code, results) = m.run(&[&postgres[..], &PG_SYNC[..], &FAILOVERS[..], &load[..]].concat());
    assert_eq!(code, 0, "{results:#}");
    assert_eq!(results["fault_errors"], serde_json::json!([]), "{results:#}");
    assert_eq!(results["checkers"]["linearizable"]["valid"], true, "{results:#}");
    assert_eq!(results["checkers"]["lost-writes"]["valid"], true, "{results:#}");
    let nemesis = &results["nemesis"];
    let started = nemesis["start-failover"].as_u64().unwrap_or(0);
    assert!(started >= 1, "{results:#}");
    assert_eq!(
        nemesis["stop-failover"].as_u64(),
        Some(started),
        "every old primary rejoined: {results:#}"
    );
    let run = std::fs::canonicalize(m.dir.join("store/latest")).unwrap();
    let log = std::fs::read_to_string(run.join("nodes/n1/node.log")).unwrap();
    assert!(
        log.contains("database system is ready"),
        "n1's PostgreSQL log was downloaded:\n{log}"
    );
    let procs = processes_mentioning(&m.dir.join("remote").display().to_string());
    assert!(procs.is_empty(), "postgres left behind: {procs:?}");
    assert!(!m.tables().contains("faultline"), "tables left behind: {}", m.tables());
}

/// What `faultline clean`, run from `/`, said. Its exit code is not
/// asserted: it is 3 when any run on this machine could not be cleaned,
/// which another test running at the same time may cause on purpose.
fn clean_said() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .current_dir("/")
        .arg("clean")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Machines {
    /// Whether `clean` said it could not clean one of these machines.
    fn unreachable_in(&self, said: &str) -> bool {
        said.lines()
            .any(|l| l.contains("could not clean") && self.hosts.iter().any(|h| l.contains(&format!("({h}:22)"))))
    }
}

/// The machines' `faultline` command run from their folder with relative
/// paths (store, key, known_hosts): the registration must hold absolute
/// ones, since `faultline clean` runs from anywhere.
fn relative_run(m: &Machines, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.current_dir(&m.dir)
        .args(["run", "--nodes", &m.hosts.join(","), "--ssh-key", "client"])
        .args(["--known-hosts", "known_hosts", "--remote-dir"])
        .arg(m.dir.join("remote"))
        .args(["--store", "store", "--server-bin"])
        .arg(server_bin())
        .arg("--diskfs-bin")
        .arg(run_support::diskfs_bin())
        .arg("--no-progress")
        .args(extra);
    cmd
}

#[test]
fn clean_stops_what_a_killed_ssh_run_left_on_its_machines() {
    if !capable() || !run_support::fuse_capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let _clean = run_support::CleanOnDrop;
    let child = relative_run(
        &m,
        &[
            "--time-limit",
            "120",
            "--nemesis",
            "partition-halves",
            "--nemesis-interval",
            "2",
        ],
    )
    .args(["--diskfs", "--seed", "3"])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut child = Killed(child);
    let history = m.dir.join("store/latest/history.jsonl");
    run_support::wait_for_event(&mut child.0, &history, "start-partition", Duration::from_secs(60));
    // kill -9: the harness cannot clean up, and remote daemons outlive it.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let remote = m.dir.join("remote");
    let needle = remote.display().to_string();
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "remote daemons outlive a killed harness"
    );
    assert!(m.tables().contains("faultline"), "and the partition's tables stay");
    assert_eq!(run_support::mounts_under(&remote).len(), 3, "and the remote mounts");

    let said = clean_said();
    assert!(!m.unreachable_in(&said), "{said}");
    assert!(said.contains("stopped faultline-server"), "{said}");
    let procs = processes_mentioning(&needle);
    assert!(procs.is_empty(), "clean left remote processes: {procs:?}\n{said}");
    assert!(
        !m.tables().contains("faultline"),
        "clean left tables: {}\n{said}",
        m.tables()
    );
    let mounts = run_support::mounts_under(&remote);
    assert!(mounts.is_empty(), "clean left mounts: {mounts:?}\n{said}");
}

#[test]
fn clean_names_a_machine_it_cannot_reach_and_keeps_the_run() {
    if !capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let _clean = run_support::CleanOnDrop;
    let child = relative_run(&m, &["--time-limit", "120", "--nemesis", "none", "--seed", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let history = m.dir.join("store/latest/history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !history.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Hide the key clean would log in with: every machine is unreachable.
    std::fs::rename(m.dir.join("client"), m.dir.join("client.away")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .current_dir("/")
        .arg("clean")
        .output()
        .unwrap();
    // The key back at once, so a failing assert leaves a run clean can clean.
    std::fs::rename(m.dir.join("client.away"), m.dir.join("client")).unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("could not clean n1 ({}:22)", m.hosts[0])),
        "{said}"
    );
    assert!(
        !processes_mentioning(&m.dir.join("remote").display().to_string()).is_empty(),
        "the daemons still run, and the run stays registered"
    );
    // With the key back, the next clean stops the daemons.
    let said = clean_said();
    assert!(!m.unreachable_in(&said), "{said}");
    let procs = processes_mentioning(&m.dir.join("remote").display().to_string());
    assert!(procs.is_empty(), "clean left remote processes: {procs:?}\n{said}");
}

/// A harness that is killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hosts_accepted_without_known_hosts_are_logged_and_kept_with_the_run() {
    if !capable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Machines::start(tmp.path());
    let empty = m.empty_known_hosts();
    let out = m
        .faultline(
            &empty,
            &["--accept-unknown-hosts", "--nemesis", "none", "--time-limit", "3"],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("accepting a host key") && stderr.contains("SHA256:"),
        "the fingerprint is logged at warn: {stderr}"
    );
    let run = std::fs::canonicalize(m.dir.join("store/latest")).unwrap();
    let kept = std::fs::read_to_string(run.join("accepted-host-keys.txt")).unwrap();
    for node in ["n1", "n2", "n3"] {
        assert!(kept.contains(&format!("# {node} ")), "{node} in {kept}");
    }
    assert_eq!(kept.matches("SHA256:").count(), 3, "one entry a host: {kept}");
    let log = std::fs::read_to_string(run.join("faultline.log")).unwrap();
    assert!(log.contains("accepting a host key"), "{log}");
}

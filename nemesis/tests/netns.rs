//! Network namespaces and nftables cuts, for real: packets between
//! namespaces vanish on the receiver's input, one way or both, a cut never
//! makes `send` fail, healing restores traffic, and `clean` removes a dead
//! run's namespaces while leaving a live one alone.
//!
//! These need root and `ip netns`. Elsewhere they say why and skip; with
//! `CI=true` a missing capability fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::netns::{self, NetnsCluster, Registration};
use faultline_nemesis::{Control, Link, LinkFault, Net, NftNet};

fn capable() -> bool {
    let why = match netns::available() {
        Ok(()) if which("nft") => return true,
        Ok(()) => "the nft command is missing (Debian: nftables)".to_owned(),
        Err(e) => e,
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
    eprintln!("skipping: {why}");
    false
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn nodes(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

/// Runs `f` on a thread that has entered `ns`'s network namespace; sockets
/// it makes stay in that namespace wherever they are used later.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let fd = File::open(&path).unwrap();
        // SAFETY: setns(2) on this thread only, with a namespace fd we own.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

struct Pair {
    cluster: NetnsCluster,
    net: NftNet,
    a: SocketAddr,
    b: SocketAddr,
}

fn pair() -> Pair {
    let cluster = NetnsCluster::create(&netns::new_run_id(), &nodes(2)).unwrap();
    let ips = cluster.addrs();
    let control: Arc<dyn Control> = Arc::new(cluster.control());
    let net = NftNet::new(control, ips.iter().map(|(n, ip)| (n.clone(), (*ip).into())).collect());
    Pair {
        a: SocketAddr::new(ips["n1"].into(), 9000),
        b: SocketAddr::new(ips["n2"].into(), 9000),
        net,
        cluster,
    }
}

impl Pair {
    fn ns(&self, node: &str) -> String {
        self.cluster.node(node).unwrap().namespace.clone()
    }

    /// Sends one datagram from n1 to n2 and from n2 to n1; returns which
    /// arrived, and asserts that no send failed.
    fn udp_both_ways(&self) -> (bool, bool) {
        let (a, b) = (self.a, self.b);
        let sa = in_ns(&self.ns("n1"), move || UdpSocket::bind(a).unwrap());
        let sb = in_ns(&self.ns("n2"), move || UdpSocket::bind(b).unwrap());
        for s in [&sa, &sb] {
            s.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
        }
        sa.send_to(b"ab", b).expect("a cut never makes send fail");
        sb.send_to(b"ba", a).expect("a cut never makes send fail");
        let mut buf = [0u8; 8];
        (sb.recv_from(&mut buf).is_ok(), sa.recv_from(&mut buf).is_ok())
    }

    fn tcp_connects(&self) -> bool {
        let b = self.b;
        let listener = in_ns(&self.ns("n2"), move || TcpListener::bind(b).unwrap());
        let a_ns = self.ns("n1");
        let ok = in_ns(&a_ns, move || {
            TcpStream::connect_timeout(&b, Duration::from_millis(500)).is_ok()
        });
        drop(listener);
        ok
    }
}

#[test]
fn cuts_drop_on_the_receivers_input_one_way_or_both_and_heal() {
    if !capable() {
        return;
    }
    let p = pair();
    assert_eq!(p.udp_both_ways(), (true, true), "a healthy link carries both ways");
    assert!(p.tcp_connects());

    p.net.set(&Link::new("n1", "n2"), LinkFault::CUT).unwrap();
    assert_eq!(p.udp_both_ways(), (false, true), "n1 -> n2 cut, n2 -> n1 flows");
    assert!(!p.tcp_connects(), "a SYN into a cut vanishes");
    let rules = run_nft_list(&p, "n2");
    assert!(rules.contains("drop"), "the drop sits on the receiver: {rules}");
    assert!(!run_nft_list(&p, "n1").contains("drop"), "and not on the sender");

    let both: BTreeSet<Link> = [Link::new("n1", "n2"), Link::new("n2", "n1")].into();
    p.net.partition(&both).unwrap();
    assert_eq!(p.udp_both_ways(), (false, false));

    p.net.heal_all().unwrap();
    assert_eq!(p.udp_both_ways(), (true, true), "healed");
    assert!(p.tcp_connects());
    assert!(p.net.faulty().is_empty());

    let delay = LinkFault {
        delay_ms: 10,
        ..LinkFault::default()
    };
    assert!(
        p.net.set(&Link::new("n1", "n2"), delay).is_err(),
        "delay is the proxy's job"
    );
}

fn run_nft_list(p: &Pair, node: &str) -> String {
    let control = p.cluster.control();
    let cmd = faultline_nemesis::CommandSpec::new("nft", &["list", "ruleset"], Duration::from_secs(5));
    String::from_utf8_lossy(&control.run(node, &cmd).unwrap().stdout).into_owned()
}

#[test]
fn teardown_removes_namespaces_bridge_and_registration() {
    if !capable() {
        return;
    }
    let id = netns::new_run_id();
    let cluster = NetnsCluster::create(&id, &nodes(3)).unwrap();
    let names: Vec<String> = (1..=3)
        .map(|i| cluster.node(&format!("n{i}")).unwrap().namespace.clone())
        .collect();
    for n in &names {
        assert!(Path::new("/run/netns").join(n).exists());
    }
    // A process inside a namespace is killed with it, even when paused.
    let mut sleeper = cluster
        .control()
        .start(
            "n1",
            &faultline_nemesis::DaemonSpec {
                program: "sleep".into(),
                args: vec!["60".into()],
                env: vec![],
                log_file: std::env::temp_dir().join(format!("fl-netns-test-{id}.log")),
            },
        )
        .unwrap();
    sleeper.signal(faultline_nemesis::Signal::Stop).unwrap();
    drop(cluster);
    for n in &names {
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} left behind");
    }
    assert!(!Path::new("/sys/class/net").join(format!("fl-{id}")).exists());
    assert!(!Path::new(netns::REGISTRY_DIR).join(format!("{id}.json")).exists());
    assert!(!sleeper.is_running());
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("fl-netns-test-{id}.log")));
}

#[test]
fn clean_removes_a_dead_runs_leftovers_and_spares_a_live_one() {
    if !capable() {
        return;
    }
    let live = NetnsCluster::create(&netns::new_run_id(), &nodes(1)).unwrap();
    let dead_id = netns::new_run_id();
    let dead = NetnsCluster::create(&dead_id, &nodes(2)).unwrap();
    // The run "dies": its guard never runs and its harness pid is gone.
    std::mem::forget(dead);
    let reg_path = Path::new(netns::REGISTRY_DIR).join(format!("{dead_id}.json"));
    let mut reg: Registration = serde_json::from_slice(&std::fs::read(&reg_path).unwrap()).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    reg.pid = gone.id();
    std::fs::write(&reg_path, serde_json::to_vec(&reg).unwrap()).unwrap();

    let report = netns::clean_leftovers();
    assert!(report.removed.contains(&dead_id), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    let namespaces: BTreeMap<String, String> = reg.namespaces;
    for ns in namespaces.values() {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} left behind");
    }
    assert!(!Path::new("/sys/class/net").join(&reg.bridge).exists());
    let live_ns = &live.node("n1").unwrap().namespace;
    assert!(Path::new("/run/netns").join(live_ns).exists(), "a live run was touched");
}

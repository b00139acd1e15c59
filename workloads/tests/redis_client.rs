//! The Redis client against real redis-server processes: a primary and two
//! replicas per test, for the operations, replica reads, WAIT, failover
//! (a READONLY from a demoted primary, a dead primary) and the honesty of
//! failures (a refusal, a paused primary), through the `redis` crate. Without `redis-server` and `redis-cli` the tests say why and
//! pass, except under `CI=true`, where they fail.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use faultline_workloads::{Client, Completion, Outcome, RedisClient, RedisClientConfig, RedisReads, Request};
use serde_json::{json, Value};
use support::{free_port, have_binaries, log_tail, Deadline, Procs};
use tempfile::TempDir;

const BINARIES: [&str; 2] = ["redis-server", "redis-cli"];

/// n1 the primary, n2 and n3 its replicas; killed on drop.
struct Redis {
    procs: Procs,
    ports: BTreeMap<String, u16>,
    dir: TempDir,
}

impl Redis {
    async fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut redis = Redis {
            procs: Procs::default(),
            ports: ["n1", "n2", "n3"]
                .iter()
                .map(|n| ((*n).to_owned(), free_port()))
                .collect(),
            dir,
        };
        let primary_port = redis.ports["n1"];
        for (name, port) in redis.ports.clone() {
            let node_dir = redis.dir.path().join(&name);
            std::fs::create_dir(&node_dir).expect("node dir");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir);
            if name != "n1" {
                cmd.args(["--replicaof", "127.0.0.1", &primary_port.to_string()]);
            }
            redis.procs.spawn(&name, cmd, &redis.log(&name));
        }
        for name in ["n1", "n2", "n3"] {
            redis.wait_info(name, "", "answers").await;
        }
        redis
            .wait_info("n1", "connected_slaves:2", "n1 has both replicas")
            .await;
        redis
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn routes(&self) -> BTreeMap<String, SocketAddr> {
        self.ports
            .iter()
            .map(|(n, p)| (n.clone(), SocketAddr::from(([127, 0, 0, 1], *p))))
            .collect()
    }

    fn config(&self, primary: &str, home: &str, reads: RedisReads) -> RedisClientConfig {
        let mut cfg = RedisClientConfig::new(self.routes(), primary, home);
        cfg.reads = reads;
        cfg.timeout_ms = 1_000;
        cfg.connect_timeout_ms = 500;
        cfg
    }

    fn client(&self, primary: &str, home: &str, reads: RedisReads) -> RedisClient {
        RedisClient::new(self.config(primary, home, reads)).expect("valid config")
    }

    /// redis-cli against a node that is running (a paused one would hang it).
    fn cli(&self, node: &str, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.ports[node].to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until `INFO replication` of `node` answers and contains `want`.
    async fn wait_info(&self, node: &str, want: &str, what: &str) {
        let deadline = Deadline::after(Duration::from_secs(20), what);
        loop {
            let info = self.cli(node, &["INFO", "replication"]);
            if info.contains("role:") && info.contains(want) {
                return;
            }
            if deadline.expired() {
                panic!("gave up waiting: {what}: {info}\n{}", log_tail(&self.log(node), 20));
            }
            deadline.wait().await;
        }
    }

    /// What a nemesis does: promote `node`, point every other live node at it.
    async fn fail_over_to(&self, node: &str, others: &[&str]) {
        assert_eq!(self.cli(node, &["REPLICAOF", "NO", "ONE"]), "OK");
        let port = self.ports[node].to_string();
        for o in others {
            assert_eq!(self.cli(o, &["REPLICAOF", "127.0.0.1", &port]), "OK");
        }
        let want = format!("connected_slaves:{}", others.len());
        self.wait_info(node, &want, "the new primary has its replicas").await;
    }
}

fn read(key: &str) -> Request {
    Request::Read { key: key.into() }
}

fn write(key: &str, value: i64) -> Request {
    Request::Write { key: key.into(), value }
}

fn cas(key: &str, expected: Option<i64>, new: i64) -> Request {
    Request::Cas {
        key: key.into(),
        expected,
        new,
    }
}

fn append(key: &str, value: i64) -> Request {
    Request::Append { key: key.into(), value }
}

#[track_caller]
fn assert_ok(c: &Completion, value: Value) {
    assert_eq!((c.outcome, &c.value), (Outcome::Ok, &value), "{c:?}");
}

#[track_caller]
fn assert_ok_on(c: &Completion, value: Value, node: &str) {
    assert_ok(c, value);
    assert_eq!(c.node.as_deref(), Some(node), "{c:?}");
}

#[tokio::test]
async fn operations_on_the_primary_have_the_history_shapes() {
    if !have_binaries("redis_client", &BINARIES) {
        return;
    }
    let redis = Redis::start().await;
    let mut c = redis.client("n1", "n1", RedisReads::Primary);

    assert_ok_on(&c.call(&write("a", 1)).await, json!(1), "n1");
    assert_ok(&c.call(&read("a")).await, json!(1));
    assert_ok(&c.call(&read("absent")).await, Value::Null);

    assert_ok(&c.call(&cas("a", Some(1), 2)).await, json!([1, 2]));
    for mismatch in [cas("a", Some(1), 3), cas("a", None, 4), cas("never", Some(1), 5)] {
        let r = c.call(&mismatch).await;
        assert_eq!(
            (r.outcome, r.error.as_deref()),
            (Outcome::Fail, Some("cas-mismatch")),
            "{r:?}"
        );
    }
    assert_ok(&c.call(&read("a")).await, json!(2));
    assert_ok(&c.call(&read("never")).await, Value::Null);
    assert_ok(&c.call(&cas("b", None, 6)).await, json!([null, 6]));

    // Large values keep every digit through the append script.
    let big = 64_000_000_017_i64;
    for v in [10, 11, big] {
        assert_ok(&c.call(&append("l", v)).await, json!(v));
    }
    assert_ok(&c.call(&read("l")).await, json!([10, 11, big]));
    let not_a_list = c.call(&append("a", 13)).await;
    assert_eq!(not_a_list.outcome, Outcome::Fail, "{not_a_list:?}");
    assert_ok(&c.call(&read("a")).await, json!(2));

    let m = Request::MultiRead {
        keys: vec!["a".into(), "l".into(), "zz".into()],
    };
    assert_ok(
        &c.call(&m).await,
        json!([["r", "a", 2], ["r", "l", [10, 11, big]], ["r", "zz", null]]),
    );

    // WAIT for both replicas; an impossible WAIT (three) still leaves the
    // write ok: the primary applied it.
    for want in [2, 3] {
        let mut cfg = redis.config("n1", "n1", RedisReads::Primary);
        cfg.wait_replicas = Some((want, 300));
        let mut w = RedisClient::new(cfg).unwrap();
        assert_ok(&w.call(&write("w", i64::from(want))).await, json!(want));
        assert_ok(&w.call(&cas("w", Some(i64::from(want)), 9)).await, json!([want, 9]));
    }

    // A primary that wants more replicas than it has refuses every write
    // before executing it: a definite fail, and nothing changes.
    assert_eq!(redis.cli("n1", &["CONFIG", "SET", "min-replicas-to-write", "3"]), "OK");
    for w in [write("a", 20), cas("a", Some(2), 21), append("l", 22)] {
        let r = c.call(&w).await;
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
        assert!(r.error.as_deref().unwrap_or("").starts_with("NOREPLICAS"), "{r:?}");
    }
    assert_ok(&c.call(&read("a")).await, json!(2));
    assert_ok(&c.call(&read("l")).await, json!([10, 11, big]));
}

#[tokio::test]
async fn replica_reads_go_to_the_home_replica_and_see_the_write_eventually() {
    if !have_binaries("redis_client", &BINARIES) {
        return;
    }
    let redis = Redis::start().await;
    let mut writer = redis.client("n1", "n1", RedisReads::Primary);
    let mut reader = redis.client("n1", "n3", RedisReads::Home);
    assert_ok(&writer.call(&write("k", 1)).await, json!(1));
    assert_ok(&writer.call(&append("l", 1)).await, json!(1));
    let deadline = Deadline::after(Duration::from_secs(10), "n3 sees the write");
    loop {
        let r = reader.call(&read("k")).await;
        assert_eq!((r.outcome, r.node.as_deref()), (Outcome::Ok, Some("n3")), "{r:?}");
        if r.value == json!(1) {
            break;
        }
        assert_eq!(r.value, Value::Null, "a value never written");
        deadline.wait().await;
    }
    let m = Request::MultiRead {
        keys: vec!["k".into(), "l".into()],
    };
    let deadline = Deadline::after(Duration::from_secs(10), "n3 sees the append");
    while reader.call(&m).await.value != json!([["r", "k", 1], ["r", "l", [1]]]) {
        deadline.wait().await;
    }
    // Balanced replica reads go to replicas only, and to more than one.
    let mut balanced = redis.client("n1", "n1", RedisReads::Replica);
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = balanced.call(&read("k")).await;
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        answered.insert(r.node.unwrap());
    }
    assert_eq!(
        answered,
        ["n2".to_owned(), "n3".to_owned()].into(),
        "reads spread over the replicas"
    );
    // A replica refuses writes before executing them: a definite fail.
    // (A fresh client each time: a READONLY sends the next operation to the
    // real primary.)
    for w in [write("k", 2), cas("k", Some(1), 3), append("l", 4)] {
        let r = redis.client("n3", "n3", RedisReads::Primary).call(&w).await;
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
        assert!(r.error.as_deref().unwrap_or("").starts_with("READONLY"), "{r:?}");
    }
    assert_ok(&writer.call(&read("k")).await, json!(1));
}

#[tokio::test]
async fn after_a_promotion_a_readonly_write_fails_and_the_next_finds_the_new_primary() {
    if !have_binaries("redis_client", &BINARIES) {
        return;
    }
    let redis = Redis::start().await;
    let mut c = redis.client("n1", "n1", RedisReads::Primary);
    assert_ok_on(&c.call(&write("k", 1)).await, json!(1), "n1");

    redis.fail_over_to("n2", &["n1", "n3"]).await;
    let r = c.call(&write("k", 2)).await;
    assert_eq!(r.outcome, Outcome::Fail, "the demoted primary refuses: {r:?}");
    assert!(r.error.as_deref().unwrap_or("").starts_with("READONLY"), "{r:?}");
    assert_eq!(c.primary(), "n1", "rediscovery waits for the next operation");

    assert_ok_on(&c.call(&write("k", 3)).await, json!(3), "n2");
    assert_eq!(c.primary(), "n2");
    assert_ok_on(&c.call(&read("k")).await, json!(3), "n2");
    assert_ok_on(&c.call(&cas("k", Some(3), 4)).await, json!([3, 4]), "n2");
}

#[tokio::test]
async fn after_the_primary_dies_the_client_finds_the_new_one() {
    if !have_binaries("redis_client", &BINARIES) {
        return;
    }
    let mut redis = Redis::start().await;
    let mut c = redis.client("n1", "n1", RedisReads::Primary);
    assert_ok_on(&c.call(&write("k", 1)).await, json!(1), "n1");

    redis.procs.kill("n1");
    redis.fail_over_to("n3", &["n2"]).await;
    // The kept connection to n1 has seen its close, so a fresh one is
    // dialled and refused: nothing was sent.
    let r = c.call(&write("k", 2)).await;
    assert_eq!(r.outcome, Outcome::Fail, "the dead primary cannot apply: {r:?}");
    assert!(r.error.as_deref().unwrap_or("").starts_with("connect"), "{r:?}");
    assert_eq!(r.node.as_deref(), Some("n1"));

    let w = c.call(&write("k", 3)).await;
    assert_ok_on(&w, json!(3), "n3");
    assert_ok_on(&c.call(&read("k")).await, json!(3), "n3");
}

#[tokio::test]
async fn a_paused_primary_gives_info_for_a_sent_write_and_fail_for_the_rest() {
    if !have_binaries("redis_client", &BINARIES) {
        return;
    }
    let mut redis = Redis::start().await;
    let mut c = redis.client("n1", "n1", RedisReads::Primary);
    assert_ok(&c.call(&write("k", 1)).await, json!(1));

    redis.procs.pause("n1");
    let w = c.call(&write("k", 2)).await;
    assert_eq!(
        w.outcome,
        Outcome::Info,
        "sent on the kept connection, no answer: {w:?}"
    );
    // Rediscovery finds no other master, so the client stays with n1; the
    // fresh connection's PING gets no answer: nothing of these was sent.
    let r = c.call(&read("k")).await;
    assert_eq!((r.outcome, r.node.as_deref()), (Outcome::Fail, Some("n1")), "{r:?}");
    let w = c.call(&write("k", 3)).await;
    assert_eq!(w.outcome, Outcome::Fail, "{w:?}");
    assert_eq!(c.primary(), "n1");

    redis.procs.resume("n1");
    let deadline = Deadline::after(Duration::from_secs(10), "n1 answers after SIGCONT");
    let seen = loop {
        let r = c.call(&read("k")).await;
        if r.outcome == Outcome::Ok {
            break r.value;
        }
        deadline.wait().await;
    };
    assert!(seen == json!(1) || seen == json!(2), "{seen}");
}

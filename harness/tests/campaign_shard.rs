//! `faultline campaign FILE --shard I/N`: the N shards together run every
//! test of the campaign exactly once, each with the seed it has in the
//! whole campaign; each test's store folder is printed as it runs; each
//! shard leaves its own folder (`campaign.json`, `junit.xml`) in the store,
//! and `faultline serve` lists it beside the runs.

mod run_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Seven tests listed by name; none is run by `--list`.
const SEVEN: &str = r#"
[defaults]
nodes = 3
time_limit_s = 3
nemesis = "none"
[[test]]
name = "t0"
[[test]]
name = "t1"
workload = "session"
[[test]]
name = "t2"
needs = "something this machine lacks"
[[test]]
name = "t3"
[[test]]
name = "t4"
seed = 99
[[test]]
name = "t5"
[[test]]
name = "t6"
"#;

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("running faultline")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `(position, name, seed)` of every test `--list --json` gives.
fn listed(file: &Path, shard: Option<&str>) -> Vec<(u64, String, u64)> {
    let mut args = vec!["campaign", file.to_str().unwrap(), "--seed", "1000", "--list", "--json"];
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let out = faultline(&args);
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["position"].as_u64().unwrap(),
                r["name"].as_str().unwrap().to_owned(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_shards_list_every_test_exactly_once_with_its_whole_campaign_seed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seven.toml");
    std::fs::write(&file, SEVEN).unwrap();
    let whole = listed(&file, None);
    assert_eq!(whole.len(), 7);
    assert_eq!(whole[4].2, 99, "a test's own seed");
    assert_eq!(whole[5].2, 1005, "the campaign's seed plus the position");
    for n in 1..=8 {
        let mut seen: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        for i in 1..=n {
            for (pos, name, seed) in listed(&file, Some(&format!("{i}/{n}"))) {
                assert_eq!(pos % n, i - 1, "shard {i}/{n} took test {pos}");
                assert!(
                    seen.insert(pos, (name, seed)).is_none(),
                    "test {pos} in two shards of {n}"
                );
            }
        }
        let all: Vec<(u64, String, u64)> = seen.into_iter().map(|(p, (n, s))| (p, n, s)).collect();
        assert_eq!(all, whole, "{n} shards");
    }
    let out = faultline(&["campaign", file.to_str().unwrap(), "--list", "--shard", "2/3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("shard 2/3: 2 of 7 tests"), "{}", text(&out));
    assert!(
        stdout.contains("1\tt1\t") && stdout.contains("4\tt4\tseed 99\trun"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_shard_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seven.toml");
    std::fs::write(&file, SEVEN).unwrap();
    for bad in ["0/2", "3/2", "1/0", "two/3", "1"] {
        let out = faultline(&["campaign", file.to_str().unwrap(), "--list", "--shard", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--shard"),
            "{}",
            text(&out)
        );
    }
}

/// Two short runs of the safe setting and a skipped test.
const THREE: &str = r#"
[defaults]
nodes = 3
concurrency = 4
rate = 200
time_limit_s = 3
nemesis = "none"
quiet_ms = 500
[[test]]
name = "first"
expect = { linearizable = "pass" }
[[test]]
name = "second"
needs = "a test that only lists"
[[test]]
name = "third"
expect = { linearizable = "pass" }
"#;

fn run_shard(file: &Path, store: &Path, shard: &str) -> Output {
    faultline(&[
        "campaign",
        file.to_str().unwrap(),
        "--seed",
        "5",
        "--shard",
        shard,
        "--store",
        store.to_str().unwrap(),
        "--server-bin",
        run_support::server_bin().to_str().unwrap(),
        "--no-progress",
        "--json",
    ])
}

/// The one campaign folder in `store`, and its document.
fn campaign_doc(store: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let folders: Vec<_> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("campaign-"))
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let stamps: Vec<_> = std::fs::read_dir(&folders[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stamps.len(), 1);
    let doc = serde_json::from_slice(&std::fs::read(stamps[0].join("campaign.json")).unwrap()).unwrap();
    (stamps[0].clone(), doc)
}

#[test]
fn two_shards_run_every_test_once_and_say_where_each_store_folder_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.toml");
    std::fs::write(&file, THREE).unwrap();
    let mut ran: Vec<String> = Vec::new();
    for (shard, store) in [("1/2", "store-1"), ("2/2", "store-2")] {
        let store = dir.path().join(store);
        let out = run_shard(&file, &store, shard);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut tests: Vec<String> = Vec::new();
        for r in rows.as_array().unwrap() {
            let test = r["test"].as_str().unwrap().to_owned();
            if !tests.contains(&test) {
                tests.push(test.clone());
            }
            if let Some(folder) = r["store"].as_str() {
                assert!(Path::new(folder).join("history.jsonl").is_file(), "{folder}");
                assert!(stderr.contains(&format!("{test} store: {folder}")), "{stderr}");
                assert!(stderr.contains(&format!("store folder under {}", store.join(&test).display())));
            }
        }
        let (folder, doc) = campaign_doc(&store);
        assert_eq!(doc["shard"], shard);
        assert!(doc["finished_at"].is_string());
        assert_eq!(doc["rows"].as_array().unwrap().len(), rows.as_array().unwrap().len());
        assert!(folder.join("junit.xml").is_file());
        if shard == "1/2" {
            assert_eq!(tests, vec!["first".to_owned(), "third".to_owned()]);
            assert_served(&store, &file, &tests);
        }
        ran.extend(tests);
    }
    ran.sort();
    assert_eq!(ran, vec!["first", "second", "third"], "every test exactly once");
}

/// `faultline serve` lists the shard's campaign with a link to each run.
fn assert_served(store: &Path, file: &Path, tests: &[String]) {
    let mut server = Server::start(store);
    let index = server.get("/");
    assert!(index.contains("<h2>Campaigns</h2>"), "{index}");
    assert!(
        index.contains(&format!("<td>{}</td><td>1/2</td><td>5</td>", file.display())),
        "{index}"
    );
    assert!(index.contains("class=\"campaign valid\""), "{index}");
    for t in tests {
        assert!(index.contains(&format!("href=\"/{t}/")), "a link to {t}'s run: {index}");
    }
    assert_eq!(
        index.matches("class=\"run ").count(),
        2,
        "the campaign's folder is not a run: {index}"
    );
    server.stop();
}

/// A `faultline serve` process, killed and reaped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(store: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["serve", "--store", store.to_str().unwrap(), "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or("")
            .to_owned();
        Server { child, addr }
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

//! `faultline serve` on a port the system picks: the index lists every run
//! newest first with its verdict and links, files inside the store are
//! served, and every way out of the store (`..`, encoded `..`, absolute
//! paths, symlinks to files or folders outside) is answered 404 without a
//! byte of what lies outside.

mod report_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use report_support::{faultline, run_folder};

/// The server process; killed when the test ends, however it ends.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(store: &std::path::Path) -> Server {
    let mut child = faultline()
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
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, addr }
}

/// Sends a raw request line (no client-side path normalisation); returns
/// the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario: each request in turn against the same served store, read top to bottom"
)]
#[test]
fn serves_the_store_and_nothing_outside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "TOP-SECRET").unwrap();
    let old = run_folder(&store, "register", "20261122T050000Z");
    std::fs::write(
        old.join("results.json"),
        r#"{"valid":false,"checkers":{"linearizable":{"valid":false}}}"#,
    )
    .unwrap();
    std::fs::write(old.join("report.html"), "<p>the old report</p>").unwrap();
    let new = run_folder(&store, "register", "20261122T060000Z");
    std::fs::write(
        new.join("results.json"),
        r#"{"valid":true,"checkers":{"linearizable":{"valid":true}}}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), new.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, store.join("register/evil")).unwrap();
    std::os::unix::fs::symlink("register/20261122T060000Z", store.join("latest")).unwrap();
    let server = serve(&store);
    let addr = server.addr.as_str();

    let (code, index) = get(addr, "/");
    assert_eq!(code, 200);
    let (new_at, old_at) = (
        index.find("20261122T060000Z").unwrap(),
        index.find("20261122T050000Z").unwrap(),
    );
    assert!(new_at < old_at, "newest first");
    assert!(index.contains("class=\"run invalid\"") && index.contains("class=\"run valid\""));
    assert!(index.contains("href=\"/register/20261122T050000Z/report.html\""));
    assert!(
        index.contains("href=\"/register/20261122T050000Z/nodes/n1/\""),
        "log folder link"
    );
    assert!(!index.contains("secret"), "links out of the store are not listed");

    assert_eq!(
        get(addr, "/register/20261122T050000Z/report.html"),
        (200, "<p>the old report</p>".into())
    );
    assert_eq!(get(addr, "/register/20261122T050000Z/nodes/n1/node.log").0, 200);
    assert_eq!(
        get(addr, "/latest/config.json").0,
        200,
        "a link inside the store is followed"
    );
    assert!(get(addr, "/register/20261122T050000Z/nodes/n1/").1.contains("node.log"));

    let secret = outside.join("secret.txt");
    for path in [
        "/../outside/secret.txt",
        "/register/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/register/%2E%2E%2F%2E%2E%2Foutside%2Fsecret.txt",
        "/register/20261122T060000Z/escape.txt",
        "/register/evil/secret.txt",
        &format!("/{}", secret.display()),
        &format!("/{}", secret.display().to_string().replace('/', "%2F")),
        "//etc/passwd",
        "/etc/passwd",
        "/register/20261122T050000Z/missing.txt",
    ] {
        let (code, body) = get(addr, path);
        assert_eq!(code, 404, "{path}");
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    let (code, _) = {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "POST / HTTP/1.1\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        (r.split(' ').nth(1).unwrap_or("").to_owned(), r)
    };
    assert_eq!(code, "405");
}

#[test]
fn binds_to_loopback_unless_told_otherwise() {
    let out = faultline().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("127.0.0.1:8080"), "{help}");
    let missing = faultline()
        .args(["serve", "--store", "/nonexistent/store"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}

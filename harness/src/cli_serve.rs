//! `faultline serve`: a small web server over the store, so a person can
//! browse every campaign (its file, shard, how many expectations held, and
//! a link to each test's run) and every run (newest first, coloured by
//! verdict) and open its report, history and logs. A folder holding
//! `campaign.json` is a campaign's (see `run::campaign::record`), any
//! other `<test>/<timestamp>` folder a run's.
//!
//! What it promises, and why it is plain `std`:
//!
//! - It serves only files inside the store. A request path is
//!   percent-decoded, any `.` or `..` segment is refused, and the file is
//!   resolved with `canonicalize` (which follows symlinks) and must still
//!   lie under the store's canonical root; anything else is 404, the same
//!   answer as a missing file, so the server says nothing about what exists
//!   outside.
//! - It binds to loopback by default: a store holds logs and configs, and
//!   publishing them is a choice the user makes with `--bind`.
//! - Everything is bounded: request heads ([`HEAD_BYTES_MAX`]),
//!   connections in flight ([`CONNECTIONS_MAX`], past it 503), read and
//!   write timeouts, runs listed ([`RUNS_LISTED_MAX`]).
//!
//! Only GET and HEAD are answered, one request per connection. That is all
//! a browser needs to read static files, and it keeps the server a page of
//! code with no async runtime or HTTP crate to audit.

mod campaigns;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use faultline_harness::run::campaign::record::CAMPAIGN_JSON;
use faultline_report::escape::html;
use serde_json::Value;

/// Largest request line plus headers.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Connections handled at once.
pub const CONNECTIONS_MAX: usize = 64;
/// Runs on the index page.
pub const RUNS_LISTED_MAX: usize = 2_000;
/// Largest `results.json` the index reads for a run's verdict.
const RESULTS_BYTES_MAX: u64 = 32 << 20;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to accept a chunk of the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The store's root folder.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// Address to listen on (port 0: one the system picks). Loopback by default.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

/// Runs the server until the process is stopped.
pub fn run(args: ServeArgs) -> anyhow::Result<u8> {
    let root = std::fs::canonicalize(&args.store)
        .with_context(|| format!("the store {} is not a folder", args.store.display()))?;
    anyhow::ensure!(root.is_dir(), "the store {} is not a folder", root.display());
    let listener = TcpListener::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    outln!("faultline serve: http://{addr}/ (store {})", root.display());
    std::io::stdout().flush()?;
    let root = Arc::new(root);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // Count first, then check, so the bound holds however fast clients come.
        if active.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS_MAX {
            active.fetch_sub(1, Ordering::AcqRel);
            let mut s = stream;
            let _ = respond(&mut s, 503, "text/plain; charset=utf-8", b"busy\n", false);
            continue;
        }
        let (root, active) = (root.clone(), active.clone());
        std::thread::spawn(move || {
            let mut s = stream;
            if let Err(e) = handle(&mut s, &root) {
                tracing::debug!(error = %e, "connection ended early");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(0)
}

/// A parsed request line.
struct Request {
    head_only: bool,
    path: String,
}

fn handle(stream: &mut TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let req = match read_request(stream)? {
        Ok(r) => r,
        Err((code, msg)) => return respond(stream, code, "text/plain; charset=utf-8", msg.as_bytes(), false),
    };
    if req.path == "/" {
        let page = index_page(root);
        return respond(stream, 200, "text/html; charset=utf-8", page.as_bytes(), req.head_only);
    }
    match resolve(root, &req.path) {
        Some(p) if p.is_file() => send_file(stream, &p, req.head_only),
        Some(p) if p.is_dir() => {
            let page = dir_page(root, &p);
            respond(stream, 200, "text/html; charset=utf-8", page.as_bytes(), req.head_only)
        }
        _ => respond(stream, 404, "text/plain; charset=utf-8", b"not found\n", req.head_only),
    }
}

/// Reads the request head; `Err((status, message))` for a request refused.
fn read_request(stream: &mut TcpStream) -> std::io::Result<Result<Request, (u16, &'static str)>> {
    let mut reader = BufReader::new(stream.take(HEAD_BYTES_MAX as u64));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Drain the headers, bounded by `take`, so the client sees an answer
    // rather than a reset.
    let mut header = String::new();
    loop {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(Err((400, "bad request\n")));
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ok(Err((405, "only GET and HEAD\n"))),
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Ok(Err((400, "bad request\n")));
    }
    Ok(Ok(Request {
        head_only,
        path: path.to_owned(),
    }))
}

/// Percent-decodes a path; `None` when it is not UTF-8 or malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file a request path names, if it lies inside the store. See the
/// module doc for the rules; every refusal is `None`.
pub fn resolve(root: &Path, raw_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(raw_path)?;
    let mut path = root.to_path_buf();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." || seg.contains(['\\', '\0']) {
            return None;
        }
        // One normal component each: nothing absolute, nothing that climbs.
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) => path.push(seg),
            _ => return None,
        }
    }
    let real = std::fs::canonicalize(&path).ok()?;
    real.starts_with(root).then_some(real)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "jsonl" | "log" | "txt" | "out" | "edn" | "toml" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn head(stream: &mut TcpStream, code: u16, ctype: &str, len: u64) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\
         X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        status_text(code)
    )
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    head(stream, code, ctype, body.len() as u64)?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn send_file(stream: &mut TcpStream, path: &Path, head_only: bool) -> std::io::Result<()> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return respond(stream, 404, "text/plain; charset=utf-8", b"not found\n", head_only),
    };
    let len = file.metadata()?.len();
    head(stream, 200, content_type(path), len)?;
    if !head_only {
        std::io::copy(&mut (&mut file).take(len), stream)?;
    }
    stream.flush()
}

/// Percent-encodes one path segment for a link.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A link to a path inside the store, relative to the root.
fn href(rel: &Path) -> String {
    let segs: Vec<String> = rel
        .components()
        .map(|c| encode_segment(&c.as_os_str().to_string_lossy()))
        .collect();
    format!("/{}", segs.join("/"))
}

/// One run folder found in the store.
struct Run {
    test: String,
    name: String,
    dir: PathBuf,
    verdict: Option<Value>,
}

/// Sort key of a run folder `YYYYMMDDTHHMMSSZ[-n]`: the stamp, then `n`.
fn run_key(name: &str) -> (String, u64) {
    match name.split_once('-') {
        Some((stamp, n)) => (stamp.to_owned(), n.parse().unwrap_or(0)),
        None => (name.to_owned(), 0),
    }
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        // Real folders only: `latest` is a link to a run listed anyway, and
        // a link could lead out of the store.
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

fn is_campaign(dir: &Path) -> bool {
    dir.join(CAMPAIGN_JSON).is_file()
}

fn runs(root: &Path) -> Vec<Run> {
    let mut out = Vec::new();
    for (test, tdir) in subdirs(root) {
        for (name, dir) in subdirs(&tdir) {
            if is_campaign(&dir) {
                continue;
            }
            let verdict = read_verdict(&dir);
            out.push(Run {
                test: test.clone(),
                name,
                dir,
                verdict,
            });
        }
    }
    out.sort_by(|a, b| run_key(&b.name).cmp(&run_key(&a.name)).then(a.test.cmp(&b.test)));
    out.truncate(RUNS_LISTED_MAX);
    out
}

fn read_verdict(dir: &Path) -> Option<Value> {
    read_json(&dir.join("results.json"))
}

/// A JSON file of at most [`RESULTS_BYTES_MAX`] bytes.
fn read_json(path: &Path) -> Option<Value> {
    let len = std::fs::metadata(path).ok()?.len();
    if len > RESULTS_BYTES_MAX {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn verdict_class(results: Option<&Value>) -> (&'static str, String) {
    match results.and_then(|r| r.get("valid")) {
        Some(Value::Bool(true)) => ("valid", "valid".into()),
        Some(Value::Bool(false)) => ("invalid", "INVALID".into()),
        Some(Value::String(s)) if s == "unknown" => ("unknown", "unknown".into()),
        _ => ("none", "no verdict".into()),
    }
}

fn checker_summary(results: Option<&Value>) -> String {
    let Some(checkers) = results.and_then(|r| r.get("checkers")).and_then(Value::as_object) else {
        return String::new();
    };
    checkers
        .iter()
        .map(|(name, v)| {
            let word = match v.get("valid") {
                Some(Value::Bool(true)) => "valid",
                Some(Value::Bool(false)) => "INVALID",
                _ => "unknown",
            };
            format!("{}: {word}", html(name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_links(root: &Path, run: &Run) -> String {
    let rel = run.dir.strip_prefix(root).unwrap_or(&run.dir);
    let files = [
        ("report.html", "report"),
        ("history.jsonl", "history"),
        ("results.json", "results"),
        ("junit.xml", "junit"),
        ("config.json", "config"),
    ];
    let mut links = vec![file_links(root, &run.dir, &files)];
    for (node, _) in subdirs(&run.dir.join("nodes")).into_iter().take(16) {
        let rel_node = rel.join("nodes").join(&node);
        links.push(format!(
            "<a href=\"{}/\">{} logs</a>",
            html(&href(&rel_node)),
            html(&node)
        ));
    }
    links.retain(|l| !l.is_empty());
    links.join(" · ")
}

const PAGE_CSS: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d1d1f}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}\
tr.valid td.v{background:#d8f3de}tr.invalid td.v{background:#fbd5da;font-weight:700}\
tr.unknown td.v{background:#fff0c2}tr.none td.v{background:#eee}";

fn index_page(root: &Path) -> String {
    let runs = runs(root);
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>faultline store</title>\
         <style>{PAGE_CSS}</style></head><body><h1>faultline store</h1>{}<h2>Runs</h2><p>{} runs in {}, newest first.</p>\
         <table><tr><th>run</th><th>test</th><th>verdict</th><th>checkers</th><th>files</th></tr>",
        campaigns::section(root),
        runs.len(),
        html(&root.display().to_string())
    );
    for run in &runs {
        let (class, word) = verdict_class(run.verdict.as_ref());
        let _ = write!(
            out,
            "<tr class=\"run {class}\"><td>{}</td><td>{}</td><td class=\"v\">{word}</td><td>{}</td><td>{}</td></tr>",
            html(&run.name),
            html(&run.test),
            checker_summary(run.verdict.as_ref()),
            run_links(root, run)
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

/// Links to those of `files` that exist in `dir`.
fn file_links(root: &Path, dir: &Path, files: &[(&str, &str)]) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    files
        .iter()
        .filter(|(f, _)| dir.join(f).is_file())
        .map(|(f, label)| format!("<a href=\"{}\">{label}</a>", html(&href(&rel.join(f)))))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn dir_page(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .take(RUNS_LISTED_MAX)
                .map(|e| {
                    let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                    (e.file_name().to_string_lossy().into_owned(), is_dir)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{PAGE_CSS}</style></head>\
         <body><p><a href=\"/\">all runs</a></p><h1>{}</h1><ul>",
        html(&rel.display().to_string()),
        html(&rel.display().to_string())
    );
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        let _ = write!(
            out,
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
            html(&href(&rel.join(&name))),
            html(&name)
        );
    }
    out.push_str("</ul></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_resolving_refuse_every_way_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        std::fs::create_dir_all(root.join("t/r")).unwrap();
        std::fs::write(root.join("t/r/a b.txt"), "x").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(resolve(&root, "/t/r/a%20b.txt").is_some());
        for bad in [
            "/../secret",
            "/t/../../secret",
            "/%2e%2e/secret",
            "/t/r/..%2f..%2f..%2fsecret",
            "/%ff",
            "/%2",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
        assert_eq!(encode_segment("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(run_key("20261122T050000Z-12"), ("20261122T050000Z".into(), 12));
    }
}

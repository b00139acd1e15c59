//! PostgreSQL as a `Db`: Debian's PostgreSQL 15, n1 the primary and every
//! other node a physical streaming standby, started by the harness with
//! `initdb`, `pg_basebackup` and `postgres` in the run's store (no system
//! service), on the addresses the backend gives.
//!
//! Every setting that must hold whichever node leads (WAL kept for
//! rewinds, `wal_log_hints`, the synchronous standby list over every node,
//! `synchronous_commit`) lives in `postgresql.conf`, which base backups
//! and rewinds copy; a node's own address is on its command line. Standbys
//! dial the primary through `Layout::dial` (a proxy under the proxy mesh,
//! so partitions cut replication) as `application_name=<node>`, which the
//! `ANY N (n1,..)` list names. Every connection is trusted: the cluster
//! lives for one run.
//!
//! As root, PostgreSQL (which refuses to run as root) runs as the
//! `postgres` user Debian's package makes (`setpriv`): the harness hands
//! it each node's folder and lets others traverse (o+x) the folders above.
//!
//! A node's process group is the postmaster and its backends: kill, pause
//! and resume signal the whole group, as a machine's crash or freeze
//! would, and teardown stops it with `pg_ctl stop -m immediate` before the
//! group is killed.
//!
//! Failover (the nemesis's `failover`, see [`PgFailover`]): the old
//! primary is fenced (killed) first or left running, the standby with the
//! most WAL is promoted (`pg_promote()`, checked with
//! `pg_is_in_recovery()`), the other standbys are re-pointed at it
//! (`ALTER SYSTEM SET primary_conninfo` and a reload), and the primary
//! pointer that clients' new write connections follow moves. When the
//! fault ends the old primary is stopped, rewound (`pg_rewind`, which
//! throws away what only it had) and started as a standby.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{CommandSpec, DaemonSpec, NodeOpsError};
use faultline_workloads::postgres_client::{admin, PG_USER, SCHEMA};
use faultline_workloads::{PgClient, PgClientConfig};
use serde_json::Value;

use super::db::{make_dir, ClientSpec, Daemons, Db, DbError, Layout, READY_POLL_MS};
use super::pg_options::{PgFailover, PgOptions};

/// How long one admin query may take.
const ADMIN_TIMEOUT_MS: u64 = 2_000;
/// How long a quick command on a node (a file edit, a signal) may take:
/// over SSH on a loaded machine a channel and a fork alone have taken
/// past 2 s, and a setup step that times out fails the whole run.
const NODE_COMMAND_TIMEOUT_MS: u64 = 30_000;
/// How long `initdb`, a base backup or a rewind may take.
const SETUP_TIMEOUT_MS: u64 = 120_000;
/// How long a primary may take to accept connections after it starts.
const ACCEPT_TIMEOUT_MS: u64 = 60_000;
/// How long `pg_promote` waits for the promotion to finish.
const PROMOTE_WAIT_S: u64 = 30;
/// Where Debian's package puts the programs.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The settings every node shares, appended to `postgresql.conf`.
fn shared_settings(o: &PgOptions, nodes: &[String]) -> String {
    let sync = o.sync.standby_names(nodes);
    let commit = serde_json::to_value(o.commit).expect("a unit variant");
    let commit = commit.as_str().expect("a name");
    format!(
        "\n# faultline\nwal_level = replica\nhot_standby = on\nwal_log_hints = on\n\
         max_wal_senders = 16\nwal_keep_size = '512MB'\nmax_connections = 300\n\
         shared_buffers = '32MB'\nunix_socket_directories = ''\n\
         wal_sender_timeout = '5s'\nwal_receiver_timeout = '5s'\n\
         wal_retrieve_retry_interval = '500ms'\nlog_line_prefix = '%m [%p] '\n\
         synchronous_standby_names = '{sync}'\nsynchronous_commit = '{commit}'\n"
    )
}

/// Lines of `pg_hba.conf`: every connection trusted (see the module doc).
const HBA: &str = "host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n";

/// A PostgreSQL primary and its streaming standbys.
pub struct PostgresDb {
    bin_dir: PathBuf,
    daemons: Daemons,
    opts: PgOptions,
    /// The primary now: where new write connections go.
    primary: Arc<RwLock<String>>,
    /// Whether the nodes' programs run as the `postgres` user (the
    /// harness's user on the nodes is root).
    as_postgres: OnceLock<bool>,
    /// Each postmaster's extra environment (libfaketime, for clock
    /// faults), set once it runs as the database user: see
    /// [`PostgresDb::postmaster`].
    node_env: BTreeMap<String, Vec<(String, String)>>,
}

impl PostgresDb {
    /// Nodes laid out as `layout`, the first the primary; not started yet.
    pub fn new(bin_dir: PathBuf, mut layout: Layout, opts: PgOptions) -> PostgresDb {
        let node_env = std::mem::take(&mut layout.env);
        PostgresDb {
            bin_dir,
            primary: Arc::new(RwLock::new(layout.nodes[0].clone())),
            daemons: Daemons::new(layout),
            opts,
            as_postgres: OnceLock::new(),
            node_env,
        }
    }

    fn layout(&self) -> &Layout {
        &self.daemons.layout
    }

    fn primary(&self) -> String {
        self.primary.read().expect("primary").clone()
    }

    fn pgdata(&self, node: &str) -> String {
        self.data_dir(node).display().to_string()
    }

    fn as_postgres(&self) -> bool {
        *self.as_postgres.get().unwrap_or(&false)
    }

    /// `program args` as the nodes' database user: wrapped in `setpriv`
    /// when the harness is root there.
    fn as_db_user(&self, program: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>) {
        if !self.as_postgres() {
            return (program, args);
        }
        // `--pdeathsig keep`: changing the user clears the parent-death
        // signal the harness gave its child, so without it a postmaster
        // outlived a `kill -9` of the harness (and `faultline clean`,
        // which looks for registered runs, did not know it).
        let mut wrapped: Vec<String> = [
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--pdeathsig=keep",
            "--",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        wrapped.push(program.display().to_string());
        wrapped.extend(args);
        (PathBuf::from("setpriv"), wrapped)
    }

    /// The postmaster of `node` with `args`, as the database user and
    /// under the node's extra environment, which `env` sets after
    /// `setpriv` has dropped to that user: libfaketime loaded into a root
    /// process makes a semaphore only root may open and hands its name
    /// down, and a postmaster no longer root then cannot start. Loaded
    /// first by the postmaster, it makes one the backends share.
    fn postmaster(&self, node: &str, args: Vec<String>) -> (PathBuf, Vec<String>) {
        let program = self.bin_dir.join("postgres");
        let Some(vars) = self.node_env.get(node).filter(|v| !v.is_empty()) else {
            return self.as_db_user(program, args);
        };
        let mut with_env: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        with_env.push(program.display().to_string());
        with_env.extend(args);
        self.as_db_user(PathBuf::from("env"), with_env)
    }

    /// Runs a PostgreSQL program on `node` as the database user; an exit
    /// other than 0 is an error carrying its stderr.
    fn pg_run(&self, node: &str, program: &str, args: Vec<String>, timeout_ms: u64) -> Result<String, DbError> {
        let (program, args) = self.as_db_user(self.bin_dir.join(program), args);
        self.run_raw(node, program, args, timeout_ms)
    }

    fn run_raw(&self, node: &str, program: PathBuf, args: Vec<String>, timeout_ms: u64) -> Result<String, DbError> {
        let spec = CommandSpec {
            program,
            args,
            stdin: Vec::new(),
            timeout: Duration::from_millis(timeout_ms),
        };
        let control = self.layout().control.clone();
        let out = control.run(node, &spec).map_err(|source| DbError::Control {
            node: node.to_owned(),
            source,
        })?;
        if !out.status.success() {
            return Err(DbError::Command {
                node: node.to_owned(),
                command: spec.display(),
                detail: stderr_text(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sh -c script args` as the database user (file edits in the data
    /// folder, which only it may write).
    fn sh(&self, node: &str, script: &str, args: &[&str]) -> Result<String, DbError> {
        let mut a = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
        a.extend(args.iter().map(|s| (*s).to_owned()));
        let (program, args) = self.as_db_user(PathBuf::from("sh"), a);
        self.run_raw(node, program, args, NODE_COMMAND_TIMEOUT_MS)
    }

    /// Makes `node`'s folder, gives it to the database user, and lets that
    /// user reach it (o+x on the folders above: search, never listing).
    fn prepare_dir(&self, node: &str) -> Result<(), DbError> {
        let dir = self.layout().dir(node).to_owned();
        make_dir(self.layout().control.as_ref(), node, &dir)?;
        let is_root = self.run_raw(node, "id".into(), vec!["-u".into()], NODE_COMMAND_TIMEOUT_MS)?;
        let root = *self.as_postgres.get_or_init(|| is_root.trim() == "0");
        if !root {
            return Ok(());
        }
        let d = dir.display().to_string();
        // `data/` exists already when it is a disk-fault filesystem's mount.
        // PostgreSQL wants its data folder 0700, and a base backup does
        // not fix an existing folder's mode as initdb does.
        let give = r#"chown "$1" "$2" && { [ ! -d "$3" ] || { chown "$1" "$3" && chmod 700 "$3"; }; }"#;
        let owner = format!("{PG_USER}:{PG_USER}");
        let args = vec![
            "-c".into(),
            give.into(),
            "sh".into(),
            owner,
            d.clone(),
            self.pgdata(node),
        ];
        self.run_raw(node, "sh".into(), args, NODE_COMMAND_TIMEOUT_MS)?;
        // From the folder's absolute path (a store given as a relative
        // path, like the default `store`, would otherwise walk up to `.`
        // and never reach `/`), every folder above it up to the root.
        let walk = r#"d=$(cd "$(dirname "$1")" && pwd -P) || exit 1; while [ "$d" != / ]; do chmod o+x "$d" || exit 1; d=$(dirname "$d"); done"#;
        let args = vec!["-c".into(), walk.into(), "sh".into(), d];
        self.run_raw(node, "sh".into(), args, NODE_COMMAND_TIMEOUT_MS)
            .map(|_| ())
    }

    fn initialized(&self, node: &str) -> bool {
        let version = format!("{}/PG_VERSION", self.pgdata(node));
        self.run_raw(node, "test".into(), vec!["-f".into(), version], NODE_COMMAND_TIMEOUT_MS)
            .is_ok()
    }

    /// `initdb` with data checksums, then the shared settings and trust.
    fn init_primary(&self, node: &str) -> Result<(), DbError> {
        let data = self.pgdata(node);
        let args = [
            "-D",
            &data,
            "-U",
            PG_USER,
            "--auth=trust",
            "--data-checksums",
            "-E",
            "UTF8",
            "--no-sync",
        ];
        self.pg_run(
            node,
            "initdb",
            args.iter().map(|s| (*s).to_owned()).collect(),
            SETUP_TIMEOUT_MS,
        )?;
        let conf = shared_settings(&self.opts, &self.layout().nodes);
        let append = r#"printf '%s' "$1" >> "$2" && printf '%s' "$3" >> "$4""#;
        let (c, h) = (format!("{data}/postgresql.conf"), format!("{data}/pg_hba.conf"));
        self.sh(node, append, &[&conf, &c, HBA, &h]).map(|_| ())
    }

    /// The `primary_conninfo` of `node` following `primary`.
    fn conninfo(&self, node: &str, primary: &str) -> String {
        let to = self.layout().dial(node, primary);
        format!(
            "host={} port={} user={PG_USER} application_name={node}",
            to.ip(),
            to.port()
        )
    }

    /// Makes `node` a standby of `primary`: a base backup from it.
    fn init_standby(&self, node: &str, primary: &str) -> Result<(), DbError> {
        let data = self.pgdata(node);
        let conninfo = self.conninfo(node, primary);
        let args = ["-D", &data, "-d", &conninfo, "-X", "stream", "-R", "-c", "fast", "-N"];
        self.pg_run(
            node,
            "pg_basebackup",
            args.iter().map(|s| (*s).to_owned()).collect(),
            SETUP_TIMEOUT_MS,
        )?;
        self.set_standby_files(node, primary)
    }

    /// `standby.signal` and a `primary_conninfo` naming `primary` (a later
    /// line of `postgresql.auto.conf` wins over an earlier one).
    fn set_standby_files(&self, node: &str, primary: &str) -> Result<(), DbError> {
        let data = self.pgdata(node);
        let line = format!("primary_conninfo = '{}'\n", self.conninfo(node, primary));
        let script = r#"touch "$1/standby.signal" && printf '%s' "$2" >> "$1/postgresql.auto.conf""#;
        self.sh(node, script, &[&data, &line]).map(|_| ())
    }

    /// Waits (bounded) until `node` accepts connections, failing early when
    /// its process has exited.
    fn wait_accepting(&self, node: &str) -> Result<(), DbError> {
        let addr = self.layout().listen[node];
        let deadline = Instant::now() + Duration::from_millis(ACCEPT_TIMEOUT_MS);
        let args = |_: ()| {
            vec![
                "-h".into(),
                addr.ip().to_string(),
                "-p".into(),
                addr.port().to_string(),
                "-t".into(),
                "1".into(),
            ]
        };
        loop {
            let probe = self.run_raw(node, self.bin_dir.join("pg_isready"), args(()), NODE_COMMAND_TIMEOUT_MS);
            if probe.is_ok() {
                return Ok(());
            }
            if let Some((node, log)) = self.daemons.procs.exited() {
                let last_words = super::db::last_line(&log);
                return Err(DbError::Exited { node, log, last_words });
            }
            if Instant::now() > deadline {
                return Err(DbError::NotReady {
                    timeout_ms: ACCEPT_TIMEOUT_MS,
                    detail: format!("{node} does not accept connections"),
                });
            }
            std::thread::sleep(Duration::from_millis(READY_POLL_MS * 4));
        }
    }

    /// Sends `signal` (a `kill -s` name) to `node`'s whole process group,
    /// by the postmaster's pid; a group already gone is fine.
    fn signal_group(&self, node: &str, pid: u32, signal: &str) {
        let args = vec!["-s".into(), signal.into(), "--".into(), format!("-{pid}")];
        if let Err(e) = self.run_raw(node, "kill".into(), args, NODE_COMMAND_TIMEOUT_MS) {
            tracing::debug!(node, pid, signal, error = %e, "group signal");
        }
    }

    fn pid(&self, node: &str) -> Option<u32> {
        self.daemons.procs.pids().get(node).copied()
    }

    async fn ask(&self, node: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, NodeOpsError> {
        admin(self.layout().listen[node], sql, ADMIN_TIMEOUT_MS)
            .await
            .map_err(|detail| NodeOpsError::Admin {
                node: node.to_owned(),
                command: sql.to_owned(),
                detail,
            })
    }

    /// Ready when the primary is out of recovery and every standby streams
    /// from it; then the workload tables are made.
    async fn check_ready(&self) -> Result<(), String> {
        let primary = self.primary();
        let sql = "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')";
        let rows = self.ask(&primary, sql).await.map_err(|e| e.to_string())?;
        let row = rows.first().ok_or("no answer")?;
        let want = (self.layout().nodes.len() - 1).to_string();
        if row.first().cloned().flatten().as_deref() != Some("f") {
            return Err(format!("{primary} is still in recovery"));
        }
        if row.get(1).cloned().flatten() != Some(want.clone()) {
            return Err(format!("{:?} of {want} standbys stream from {primary}", row.get(1)));
        }
        self.ask(&primary, SCHEMA).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[path = "postgres_ops.rs"]
mod ops;

/// How much of a failed command's stderr an error keeps (its end).
const STDERR_KEPT_MAX: usize = 4_096;

/// What a failed command wrote on stderr, for an error message: all of
/// it, up to its last [`STDERR_KEPT_MAX`] bytes. pg_rewind's last line
/// only names the step that failed (`Command was: postgres --single
/// ...`); the lines above say why, the single-user server's own among
/// them.
fn stderr_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut cut = text.len().saturating_sub(STDERR_KEPT_MAX);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    if cut == 0 {
        text.to_owned()
    } else {
        format!("...{}", &text[cut..])
    }
}

/// A node's WAL position as a number (`X/Y` is two 32-bit halves).
fn lsn(s: Option<&str>) -> Option<u64> {
    let (hi, lo) = s?.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl Db for PostgresDb {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn client(&self, spec: ClientSpec) -> Box<dyn faultline_workloads::Client> {
        let cfg = PgClientConfig {
            routes: spec.routes,
            primary: self.primary.clone(),
            home: spec.home,
            reads: self.opts.reads,
            isolation: self.opts.isolation,
            seed: spec.seed,
            timeout_ms: spec.timeout_ms,
            connect_timeout_ms: spec.timeout_ms.min(1_000),
        };
        Box::new(PgClient::new(cfg).expect("the harness gives every client a route to every node"))
    }

    fn statuses(&self) -> BoxFuture<'_, BTreeMap<String, Option<Value>>> {
        Box::pin(self.statuses_now())
    }

    fn daemons(&self) -> &Daemons {
        &self.daemons
    }

    fn daemon_spec(&self, node: &str) -> DaemonSpec {
        let listen = self.layout().listen[node];
        let args: Vec<String> = [
            "-D".to_owned(),
            self.pgdata(node),
            "-c".to_owned(),
            format!("listen_addresses={}", listen.ip()),
            "-c".to_owned(),
            format!("port={}", listen.port()),
            "-c".to_owned(),
            format!("cluster_name={node}"),
        ]
        .into();
        let (program, args) = self.postmaster(node, args);
        DaemonSpec {
            program,
            args,
            env: Vec::new(),
            log_file: self.layout().dir(node).join("node.log"),
        }
    }

    /// The primary first (made with `initdb` the first time), then each
    /// standby (a base backup from it the first time).
    fn start_all(&self) -> Result<(), DbError> {
        let primary = self.primary();
        for n in &self.layout().nodes {
            self.prepare_dir(n)?;
        }
        if !self.initialized(&primary) {
            self.init_primary(&primary)?;
        }
        self.daemons.procs.start(&primary, &self.daemon_spec(&primary))?;
        self.wait_accepting(&primary)?;
        for n in self.layout().nodes.iter().filter(|n| **n != primary) {
            if !self.initialized(n) {
                self.init_standby(n, &primary)?;
            }
            self.daemons.procs.start(n, &self.daemon_spec(n))?;
        }
        Ok(())
    }

    /// `pg_ctl stop -m immediate` on each node, then its process group
    /// killed and the postmaster reaped.
    fn stop_all(&self) -> Result<(), DbError> {
        for (node, pid) in self.daemons.procs.pids() {
            self.signal_group(&node, pid, "CONT");
            let args = vec![
                "stop".into(),
                "-D".into(),
                self.pgdata(&node),
                "-m".into(),
                "immediate".into(),
                "-t".into(),
                "10".into(),
            ];
            if let Err(e) = self.pg_run(&node, "pg_ctl", args, 15_000) {
                tracing::debug!(node = %node, error = %e, "pg_ctl stop");
            }
            self.signal_group(&node, pid, "KILL");
        }
        self.daemons.procs.stop_all()
    }

    fn ready_once(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check_ready())
    }

    fn clock_probe(&self, node: &str) -> Option<CommandSpec> {
        Some(self.clock_query(node))
    }
}

/// Kills the PostgreSQL processes on this machine whose postmaster is
/// gone (a backend, `postgres: ...` in its title, whose parent is init):
/// what a killed run leaves when it had paused a node, since a stopped
/// backend never notices its postmaster died. A live cluster's backends
/// are children of their postmaster and are never touched. Returns what
/// it killed, as `pid title`.
pub fn clean_orphans() -> Vec<String> {
    let mut killed = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let title = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if !title.starts_with("postgres: ") || parent_of(&stat) != Some(1) {
            continue;
        }
        for signal in ["CONT", "KILL"] {
            let _ = std::process::Command::new("kill")
                .args(["-s", signal, &pid.to_string()])
                .output();
        }
        killed.push(format!("{pid} {}", title.trim()));
    }
    killed
}

/// The parent pid in a `/proc/<pid>/stat` line (the field after the
/// parenthesised command name, which may hold spaces, and the state).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::pg_options::{PgCommit, PgSync};

    #[test]
    fn the_parent_is_read_past_a_command_name_with_spaces() {
        assert_eq!(parent_of("42 (postgres: n1: walwriter ) T 1 42 42 0"), Some(1));
        assert_eq!(parent_of("7 (sh) S 6 7"), Some(6));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_failed_commands_stderr_is_kept_whole_up_to_its_end() {
        let said = "pg_rewind: error: postgres single-user mode in target cluster failed\n\
                    pg_rewind: detail: Command was: postgres --single\n";
        assert_eq!(stderr_text(said.as_bytes()), said.trim());
        // The cut falls inside the 'é' (two bytes): it moves past it.
        let long = format!("é{}the reason", "x".repeat(STDERR_KEPT_MAX - 11));
        let kept = stderr_text(long.as_bytes());
        assert_eq!(kept, format!("...{}", &long[2..]));
    }

    #[test]
    fn lsns_read_as_numbers_in_order() {
        assert_eq!(lsn(Some("0/3018088")), Some(0x0301_8088));
        assert_eq!(lsn(Some("1/0")), Some(1 << 32));
        assert!(lsn(Some("1/0")) > lsn(Some("0/FFFFFFFF")));
        assert_eq!(lsn(None), None);
        assert_eq!(lsn(Some("x")), None);
    }

    #[test]
    fn the_shared_settings_name_every_node_and_the_commit_level() {
        let o = PgOptions {
            sync: PgSync::Any(1),
            commit: PgCommit::RemoteApply,
            ..PgOptions::default()
        };
        let nodes = ["n1".to_owned(), "n2".to_owned(), "n3".to_owned()];
        let s = shared_settings(&o, &nodes);
        assert!(s.contains("synchronous_standby_names = 'ANY 1 (n1,n2,n3)'"), "{s}");
        assert!(s.contains("synchronous_commit = 'remote_apply'"), "{s}");
        assert!(s.contains("wal_log_hints = on"), "{s}");
    }
}

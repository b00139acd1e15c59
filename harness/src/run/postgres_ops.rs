//! What the nemesis does to a PostgreSQL cluster: process faults on whole
//! process groups, and the failover steps (fence, promote, re-point,
//! rewind), each recorded only once it took effect; and the query that
//! shows a clock fault took effect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use faultline_nemesis::runner::BoxFuture;
use faultline_nemesis::{CommandSpec, NodeOps, NodeOpsError};
use faultline_workloads::postgres_client::{admin, PG_USER};
use serde_json::{json, Value};

use super::{lsn, PgFailover, PostgresDb, PROMOTE_WAIT_S};
use crate::run::db::{start_error, Db};

/// A standby's position: the WAL it has received or replayed, the most
/// of the two (promotion replays all it received).
const POSITION_SQL: &str = "SELECT pg_is_in_recovery(), \
     greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())";
/// How long a fenced failover waits, with the old primary cut off,
/// before it fences it: a failover manager's detection time.
const DETECT_MS: u64 = 1_000;
const STATUS_SQL: &str = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     (SELECT timeline_id FROM pg_control_checkpoint())";

/// psql's script for [`PostgresDb::clock_query`]: the machine's true time
/// (psql runs a shell, outside libfaketime), the server's own, and the true
/// time again, in milliseconds, on one connection already open so the
/// window is the query's round trip.
const CLOCK_SQL: &str = "\\! date +%s%3N\n\
     SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;\n\
     \\! date +%s%3N\n";
/// Where the primary's WAL ends and its timeline (current once it has
/// checkpointed since its promotion).
const PRIMARY_AT_SQL: &str = "SELECT pg_current_wal_lsn(), \
     (SELECT timeline_id FROM pg_control_checkpoint())";
/// The timeline a standby streams on, and how far it has replayed.
const FOLLOWING_SQL: &str = "SELECT (SELECT received_tli FROM pg_stat_wal_receiver \
     WHERE status = 'streaming'), pg_last_wal_replay_lsn()";
/// How long a failover waits for enough standbys to answer.
const QUORUM_WAIT_MS: u64 = 15_000;
/// How long a rewound standby may take to follow the primary.
const FOLLOW_TIMEOUT_MS: u64 = 60_000;
/// How long the primary's checkpoint before a rewind may take.
const CHECKPOINT_TIMEOUT_MS: u64 = 60_000;
/// How long one clock query (connection included) may take.
const CLOCK_QUERY_TIMEOUT_MS: u64 = 5_000;
/// How long a killed node's processes may take to be gone.
const GROUP_GONE_MS: u64 = 30_000;

/// Run as `sh -c SCRIPT sh PGID SECONDS` on a node whose postmaster `PGID`
/// (its process group's leader) was killed: exits 0 once no process of
/// that group runs (zombies aside) and the postmaster's own pid is free,
/// SIGKILLing the group again meanwhile; after SECONDS, exits 1 naming
/// what is left.
///
/// Both matter to what starts next in the same data folder. A backend
/// still alive holds the old shared memory ("pre-existing shared memory
/// block is still in use"). And PostgreSQL (a postmaster, or pg_rewind's
/// single-user recovery) refuses to start while the pid in
/// `postmaster.pid` exists, which a zombie's does: over SSH the killed
/// postmaster is an orphan that only the machine's init reaps, in its
/// own time (about 2 s on CI's init), so a rewind right after a fence
/// failed with `lock file "postmaster.pid" already exists`. Locally the
/// harness reaps its own child at once.
const GROUP_GONE_SCRIPT: &str = r#"pg=$1; end=$(( $(date +%s) + $2 ))
live() { cat /proc/[0-9]*/stat 2>/dev/null | while read -r l; do set -- ${l##*\) }; [ "$3" = "$pg" ] && [ "$1" != Z ] && echo "${l%% *}"; done; }
while :; do
  left=$(live)
  [ -z "$left" ] && [ ! -e "/proc/$pg" ] && exit 0
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "after $2 s, alive in group $pg: [$(echo $left)]; postmaster $pg: $(cut -d' ' -f3 /proc/$pg/stat 2>/dev/null || echo gone)" >&2
    exit 1
  fi
  [ -z "$left" ] || kill -s KILL -- "-$pg" 2>/dev/null
  sleep 0.05
done"#;

impl PostgresDb {
    /// The command that asks `node`'s server for its clock (see
    /// `Db::clock_probe`): psql, run on the node, which the server's
    /// `clock_timestamp()` answers through libfaketime.
    pub(super) fn clock_query(&self, node: &str) -> CommandSpec {
        let addr = self.layout().listen[node];
        let conninfo = format!(
            "host={} port={} user={PG_USER} dbname=postgres connect_timeout=2",
            addr.ip(),
            addr.port()
        );
        let args = [
            conninfo.as_str(),
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ];
        let timeout = Duration::from_millis(CLOCK_QUERY_TIMEOUT_MS);
        CommandSpec::new(self.bin_dir.join("psql"), &args, timeout).with_stdin(CLOCK_SQL)
    }

    /// Every node's state in faultline-server's terms, for `status.jsonl`.
    pub(super) async fn statuses_now(&self) -> BTreeMap<String, Option<Value>> {
        let mut out = BTreeMap::new();
        for n in &self.layout().nodes {
            let row = self.ask(n, STATUS_SQL).await.ok().and_then(|r| r.into_iter().next());
            let status = row.map(|r| {
                let role = if r.first().cloned().flatten().as_deref() == Some("f") {
                    "leader"
                } else {
                    "follower"
                };
                let at = lsn(r.get(1).and_then(|c| c.as_deref()));
                let epoch = r.get(2).and_then(|c| c.as_deref()).and_then(|t| t.parse::<u64>().ok());
                json!({"role": role, "epoch": epoch, "commit_lsn": at, "applied_lsn": at})
            });
            out.insert(n.clone(), status);
        }
        out
    }

    /// The standby (not `old`) with the most WAL, then the first by name,
    /// among enough answering standbys that one of them holds every
    /// acknowledged commit: a commit waits for `k` of the `m` standbys, so
    /// any `m - k + 1` of them include one that has it (one, under
    /// asynchronous replication, which promises nothing). Asks again
    /// (bounded) while fewer answer; `None` if they never do.
    async fn most_advanced_standby(&self, old: &str) -> Option<(String, u64)> {
        let standbys: Vec<&String> = self.layout().nodes.iter().filter(|n| *n != old).collect();
        let needed = match self.opts.sync.count() as usize {
            0 => 1,
            k => (standbys.len() + 1).saturating_sub(k).max(1),
        };
        let deadline = Instant::now() + Duration::from_millis(QUORUM_WAIT_MS);
        loop {
            let mut answers = Vec::new();
            for n in &standbys {
                if let Some(at) = self.standby_position(n).await {
                    answers.push(((*n).clone(), at));
                }
            }
            if answers.len() >= needed {
                // The most WAL; among equals the first by name.
                return answers.into_iter().rev().max_by_key(|(_, at)| *at);
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    answers = answers.len(),
                    needed,
                    "too few standbys answer to promote one safely"
                );
                return None;
            }
            tokio::time::sleep(Duration::from_millis(super::READY_POLL_MS * 4)).await;
        }
    }

    /// How much WAL the standby `node` has, if it answers and is a standby.
    async fn standby_position(&self, node: &str) -> Option<u64> {
        let rows = self.ask(node, POSITION_SQL).await.ok()?;
        let row = rows.first()?;
        if row.first().cloned().flatten().as_deref() != Some("t") {
            return None;
        }
        Some(lsn(row.get(1).and_then(|c| c.as_deref())).unwrap_or(0))
    }

    /// `pg_promote()` on `node`, and proof that it left recovery.
    async fn promote_one(&self, node: &str) -> Result<(), NodeOpsError> {
        let sql = format!("SELECT pg_promote(true, {PROMOTE_WAIT_S})");
        let limit = (PROMOTE_WAIT_S + 5) * 1_000;
        let addr = self.layout().listen[node];
        let promoted = faultline_workloads::postgres_client::admin(addr, &sql, limit).await;
        let refused = |detail: String| NodeOpsError::Admin {
            node: node.to_owned(),
            command: sql.clone(),
            detail,
        };
        let rows = promoted.map_err(refused)?;
        let recovery = self.ask(node, "SELECT pg_is_in_recovery()").await?;
        let out_of_recovery = recovery.first().and_then(|r| r.first().cloned().flatten()).as_deref() == Some("f");
        if !out_of_recovery {
            return Err(refused(format!(
                "still in recovery after promotion (pg_promote said {rows:?})"
            )));
        }
        Ok(())
    }

    /// Points the standby `node` at `primary` and reloads its settings.
    async fn repoint(&self, node: &str, primary: &str) -> Result<(), NodeOpsError> {
        let conninfo = self.conninfo(node, primary).replace('\'', "''");
        self.ask(node, &format!("ALTER SYSTEM SET primary_conninfo = '{conninfo}'"))
            .await?;
        self.ask(node, "SELECT pg_reload_conf()").await.map(|_| ())
    }

    /// A fenced failover's first steps, once the old primary is cut off
    /// from its standbys (the runner's partition): the time a failover
    /// manager takes to notice, then the old primary killed. Under
    /// asynchronous replication it acknowledges writes its standbys never
    /// get in that window; under synchronous replication it cannot. An
    /// unfenced failover skips both: the old primary keeps serving.
    async fn fence(&self, old: &str) -> Result<Value, NodeOpsError> {
        if self.opts.failover == PgFailover::Unfenced {
            return Ok(json!(false));
        }
        tokio::time::sleep(std::time::Duration::from_millis(DETECT_MS)).await;
        match self.kill_group(old) {
            Ok(pid) => Ok(json!({"killed_pid": pid, "after_ms": DETECT_MS})),
            Err(NodeOpsError::NotRunning { .. }) => Ok(json!({"already_down": true})),
            Err(e) => Err(e),
        }
    }

    /// Stops `node` at once: its postmaster killed and reaped, then the
    /// rest of its process group; done once the old cluster is gone (see
    /// [`GROUP_GONE_SCRIPT`]).
    fn kill_group(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.daemons.procs.kill(node)?;
        self.signal_group(node, pid, "KILL");
        self.await_group_gone(node, pid)?;
        Ok(pid)
    }

    /// Waits on `node`, at most [`GROUP_GONE_MS`], until the postmaster
    /// `pid` and every live process of its group are gone.
    fn await_group_gone(&self, node: &str, pid: u32) -> Result<(), NodeOpsError> {
        let args = vec![
            "-c".to_owned(),
            GROUP_GONE_SCRIPT.to_owned(),
            "sh".to_owned(),
            pid.to_string(),
            GROUP_GONE_MS.div_ceil(1_000).to_string(),
        ];
        // The script gives up first and says what is left.
        let timeout_ms = GROUP_GONE_MS + super::NODE_COMMAND_TIMEOUT_MS;
        self.run_raw(node, "sh".into(), args, timeout_ms)
            .map(|_| ())
            .map_err(|e| NodeOpsError::Admin {
                node: node.to_owned(),
                command: format!("waiting for process group {pid} to be gone"),
                detail: e.to_string(),
            })
    }

    /// Waits (bounded) until the standby `node` streams from `primary` on
    /// the primary's timeline and has replayed what the primary had
    /// written when asked; says where it got.
    async fn await_following(&self, node: &str, primary: &str) -> Result<Value, NodeOpsError> {
        let rows = self.ask(primary, PRIMARY_AT_SQL).await?;
        let row = rows.first().cloned().unwrap_or_default();
        let target = lsn(row.first().cloned().flatten().as_deref()).unwrap_or(0);
        let timeline = row.get(1).cloned().flatten().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_millis(FOLLOW_TIMEOUT_MS);
        loop {
            let seen = self.ask(node, FOLLOWING_SQL).await;
            if let Ok(rows) = &seen {
                let row = rows.first().cloned().unwrap_or_default();
                let tli = row.first().cloned().flatten();
                let at = lsn(row.get(1).cloned().flatten().as_deref()).unwrap_or(0);
                if tli.as_deref() == Some(timeline.as_str()) && at >= target {
                    return Ok(json!({"timeline": timeline, "replayed_lsn": at, "target_lsn": target}));
                }
            }
            if Instant::now() > deadline {
                return Err(NodeOpsError::Admin {
                    node: node.to_owned(),
                    command: FOLLOWING_SQL.to_owned(),
                    detail: format!(
                        "does not follow {primary} on timeline {timeline} up to {target} within \
                         {FOLLOW_TIMEOUT_MS} ms (last: {seen:?})"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(super::READY_POLL_MS * 4)).await;
        }
    }

    /// Stops the former primary `node`, rewinds it onto the current
    /// primary's history and starts it as a standby.
    fn rewind(&self, node: &str, primary: &str) -> Result<Value, NodeOpsError> {
        let admin_err = |command: &str, e: crate::run::db::DbError| NodeOpsError::Admin {
            node: node.to_owned(),
            command: command.to_owned(),
            detail: e.to_string(),
        };
        let pid = match self.kill_group(node) {
            Ok(pid) => Some(pid),
            Err(NodeOpsError::NotRunning { .. }) => None,
            Err(e) => return Err(e),
        };
        let to = self.layout().dial(node, primary);
        let source = format!(
            "--source-server=host={} port={} user=postgres dbname=postgres",
            to.ip(),
            to.port()
        );
        let args = vec!["-D".to_owned(), self.pgdata(node), source];
        let said = self
            .pg_run(node, "pg_rewind", args, super::SETUP_TIMEOUT_MS)
            .map_err(|e| admin_err("pg_rewind", e))?;
        self.set_standby_files(node, primary)
            .map_err(|e| admin_err("standby.signal", e))?;
        let started = self
            .daemons
            .procs
            .start(node, &self.daemon_spec(node))
            .map_err(|e| start_error(node, e))?;
        Ok(json!({"node": node, "primary": primary, "stopped_pid": pid, "pid": started, "pg_rewind": said.trim()}))
    }
}

impl NodeOps for PostgresDb {
    fn kill(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.kill_group(node)
    }

    fn start(&self, node: &str) -> Result<u32, NodeOpsError> {
        self.daemons.start(node, || self.daemon_spec(node))
    }

    /// SIGSTOP of the postmaster and every backend: sessions freeze too.
    fn pause(&self, node: &str) -> Result<u32, NodeOpsError> {
        let pid = self.daemons.procs.pause(node)?;
        self.signal_group(node, pid, "STOP");
        Ok(pid)
    }

    fn resume(&self, node: &str) -> Result<u32, NodeOpsError> {
        if let Some(pid) = self.pid(node) {
            self.signal_group(node, pid, "CONT");
        }
        self.daemons.procs.resume(node)
    }

    fn running(&self, node: &str) -> bool {
        self.daemons.procs.is_running(node)
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { Some(self.primary()) })
    }

    fn promote(&self, old: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let old = old.to_owned();
        Box::pin(async move {
            let fenced = self.fence(&old).await?;
            let (new, at) = self.most_advanced_standby(&old).await.ok_or(NodeOpsError::NoReplica)?;
            self.promote_one(&new).await?;
            *self.primary.write().expect("primary") = new.clone();
            let mut repointed = Vec::new();
            for n in self.layout().nodes.iter().filter(|n| **n != old && **n != new) {
                match self.repoint(n, &new).await {
                    Ok(()) => repointed.push(n.clone()),
                    Err(e) => tracing::warn!(node = %n, error = %e, "not re-pointed"),
                }
            }
            Ok(json!({"old": old, "new": new, "new_lsn": at, "repointed": repointed, "fenced": fenced}))
        })
    }

    /// The old primary rewound and started as a standby, recorded only
    /// once it follows the primary on the primary's timeline.
    fn rejoin(&self, node: &str) -> BoxFuture<'_, Result<Value, NodeOpsError>> {
        let node = node.to_owned();
        Box::pin(async move {
            let primary = self.primary();
            if node == primary {
                return Ok(json!({"node": node, "primary": primary}));
            }
            // pg_rewind reads the source's timeline from its control file,
            // which a just-promoted primary updates at its next checkpoint
            // only. Without one pg_rewind finds both on the same timeline
            // and rewinds nothing; the old primary, its WAL past the fork,
            // then never follows, and a later failover to it loses what
            // the others acknowledged (seen under `any:1`).
            let addr = self.layout().listen[&primary];
            admin(addr, "CHECKPOINT", CHECKPOINT_TIMEOUT_MS)
                .await
                .map_err(|detail| NodeOpsError::Admin {
                    node: primary.clone(),
                    command: "CHECKPOINT".into(),
                    detail,
                })?;
            let mut done = tokio::task::block_in_place(|| self.rewind(&node, &primary))?;
            done["following"] = self.await_following(&node, &primary).await?;
            Ok(done)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::GROUP_GONE_SCRIPT;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Output};

    /// [`GROUP_GONE_SCRIPT`] on the group `pgid`, given `seconds`.
    fn await_gone(pgid: u32, seconds: u32) -> Child {
        Command::new("sh")
            .args(["-c", GROUP_GONE_SCRIPT, "sh", &pgid.to_string(), &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn said(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn a_killed_leader_not_yet_reaped_is_not_gone() {
        let mut leader = Command::new("sleep").arg("100").process_group(0).spawn().unwrap();
        let pid = leader.id();
        leader.kill().unwrap();
        // A zombie until reaped: PostgreSQL's lock-file check sees its pid.
        let out = await_gone(pid, 1).wait_with_output().unwrap();
        assert!(!out.status.success(), "{}", said(&out));
        assert!(said(&out).contains(&format!("postmaster {pid}: Z")), "{}", said(&out));
        leader.wait().unwrap();
        let out = await_gone(pid, 1).wait_with_output().unwrap();
        assert!(out.status.success(), "{}", said(&out));
    }

    #[test]
    fn live_members_of_the_group_are_killed_and_awaited() {
        // A leader whose children share its group and outlive it.
        let mut leader = Command::new("sh")
            .args(["-c", "sleep 100 & sleep 100 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = leader.id();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let waiting = await_gone(pid, 60);
        // The script kills the leader too; reaping it is ours to do.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while leader.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = leader.try_wait().unwrap().is_some();
        if !killed {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
            leader.wait().unwrap();
        }
        let out = waiting.wait_with_output().unwrap();
        assert!(killed, "the leader was not killed: {}", said(&out));
        assert!(out.status.success(), "{}", said(&out));
        assert_eq!(running_in_group(pid), Vec::<String>::new());
    }

    /// The pids of processes of group `pgid` that run (zombies aside).
    fn running_in_group(pgid: u32) -> Vec<String> {
        let stats = std::fs::read_dir("/proc").unwrap().flatten();
        let stats = stats.filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok());
        stats
            .filter(|stat| {
                let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z")
            })
            .map(|stat| stat.split(' ').next().unwrap_or("").to_owned())
            .collect()
    }
}

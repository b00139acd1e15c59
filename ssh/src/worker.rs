//! One worker thread per node, owning that node's SSH session.
//!
//! ssh2 blocks, so no SSH work runs on the caller's thread (which may be an
//! async runtime's). A call queues a job on its node's bounded queue and
//! waits, in two bounded steps: for the worker to take the job (earlier calls
//! on the node may still run), then for its answer. The hand-over is a
//! rendezvous: a caller that gave up waiting in the queue has dropped its end,
//! the worker sees that and skips the job, so a late `kill` never fires after
//! its caller reported failure.
//!
//! The thread ends when the last handle to it (the control, or a daemon
//! started through it) is dropped.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{NodeAddr, SshConfig};
use crate::connection::Connection;
use crate::error::SshError;

/// Calls that may wait for one node at once.
pub(crate) const QUEUE_MAX: usize = 64;
/// Slack on top of a job's own bounds before its caller stops waiting: the
/// job enforces its limits itself, this only catches a worker that does not.
const REPLY_SLACK_MS: u64 = 2_000;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

struct Job {
    /// Rendezvous with the caller; the send fails if it stopped waiting.
    taken: SyncSender<()>,
    work: Work,
}

/// The handle to a node's worker.
pub(crate) struct NodeWorker {
    node: String,
    queue: SyncSender<Job>,
    /// How long a call waits for the worker to take it.
    queue_wait: Duration,
    /// Reaching the node, reconnection included.
    connect_bound: Duration,
}

impl NodeWorker {
    /// Starts the worker thread of `node`; it connects on its first job.
    pub(crate) fn spawn(node: &str, addr: NodeAddr, config: Arc<SshConfig>) -> Result<Arc<NodeWorker>, SshError> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_MAX);
        let worker = NodeWorker {
            node: node.to_owned(),
            queue,
            queue_wait: config.connect_timeout + config.command_timeout,
            // `Connection::open` may connect twice: once for the kept session's
            // failure, once afresh.
            connect_bound: config.connect_timeout * 2,
        };
        let conn = Connection::new(node.to_owned(), addr, config);
        std::thread::Builder::new()
            .name(format!("ssh-{node}"))
            .spawn(move || serve(conn, jobs))
            .map_err(|source| SshError::Thread {
                node: node.to_owned(),
                source,
            })?;
        Ok(Arc::new(worker))
    }

    /// The node's name.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Runs `work` on the node's worker and returns its result. `work_bound`
    /// is the limit `work` enforces on itself once connected.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        work_bound: Duration,
        work: impl FnOnce(&mut Connection) -> Result<T, SshError> + Send + 'static,
    ) -> Result<T, SshError> {
        let (taken_tx, taken_rx) = mpsc::sync_channel(0);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let job = Job {
            taken: taken_tx,
            work: Box::new(move |conn: &mut Connection| {
                let result = work(conn);
                if matches!(&result, Err(e) if e.breaks_session()) {
                    conn.reset();
                }
                let _ = done_tx.send(result);
            }),
        };
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SshError::Busy {
                node: self.node.clone(),
                queued_max: QUEUE_MAX,
            },
            TrySendError::Disconnected(_) => self.gone(),
        })?;
        self.wait(&taken_rx, self.queue_wait, |waited_ms| SshError::QueueTimeout {
            node: self.node.clone(),
            waited_ms,
        })?;
        let reply_wait = self.connect_bound + work_bound + Duration::from_millis(REPLY_SLACK_MS);
        self.wait(&done_rx, reply_wait, |waited_ms| SshError::ReplyTimeout {
            node: self.node.clone(),
            waited_ms,
        })?
    }

    fn wait<M>(&self, rx: &Receiver<M>, bound: Duration, late: impl FnOnce(u64) -> SshError) -> Result<M, SshError> {
        rx.recv_timeout(bound).map_err(|e| match e {
            RecvTimeoutError::Timeout => late(bound.as_millis() as u64),
            RecvTimeoutError::Disconnected => self.gone(),
        })
    }

    fn gone(&self) -> SshError {
        SshError::WorkerGone {
            node: self.node.clone(),
        }
    }
}

/// The worker's loop: one job at a time until every handle is gone.
fn serve(mut conn: Connection, jobs: Receiver<Job>) {
    let span = tracing::info_span!("ssh", node = %conn.node());
    let _entered = span.enter();
    for job in jobs {
        if job.taken.send(()).is_err() {
            tracing::debug!("a caller gave up while queued; skipping its job");
            continue;
        }
        (job.work)(&mut conn);
    }
    tracing::debug!("no handles left; ssh worker exits");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A worker for a node nobody connects to: the jobs below never touch
    /// the connection. Queue wait: 100 ms.
    fn worker() -> Arc<NodeWorker> {
        let mut config = SshConfig::new("root").with_node("n1", "127.0.0.1", 1);
        config.connect_timeout = Duration::from_millis(50);
        config.command_timeout = Duration::from_millis(50);
        NodeWorker::spawn("n1", NodeAddr::new("127.0.0.1", 1), Arc::new(config)).unwrap()
    }

    #[test]
    fn a_job_whose_caller_gave_up_in_the_queue_never_runs() {
        let w = worker();
        let busy = Arc::clone(&w);
        let first = std::thread::spawn(move || {
            busy.call(Duration::from_millis(500), |_| {
                std::thread::sleep(Duration::from_millis(400));
                Ok(1)
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let err = w
            .call(Duration::from_millis(50), move |_| {
                flag.store(true, Ordering::SeqCst);
                Ok(2)
            })
            .unwrap_err();
        assert!(matches!(err, SshError::QueueTimeout { waited_ms: 100, .. }), "{err}");
        assert_eq!(first.join().unwrap().unwrap(), 1);
        // The worker has moved past the abandoned job without running it.
        assert_eq!(w.call(Duration::from_millis(50), |_| Ok(3)).unwrap(), 3);
        assert!(!ran.load(Ordering::SeqCst), "a job ran after its caller had given up");
    }

    #[test]
    fn a_panicking_job_is_reported_not_hung_on() {
        let w = worker();
        let err = w
            .call(Duration::from_millis(50), |_| -> Result<(), SshError> {
                panic!("bug in a job")
            })
            .unwrap_err();
        assert!(matches!(err, SshError::WorkerGone { .. }), "{err}");
        let err = w.call(Duration::from_millis(50), |_| Ok(())).unwrap_err();
        assert!(matches!(err, SshError::WorkerGone { .. }), "{err}");
    }
}

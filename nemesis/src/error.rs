//! Errors of the nemesis: a link that does not exist, a process that would
//! not start or stop, a fault specification that does not parse.

/// Why a network fault could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The link names an endpoint the mesh does not know.
    #[error("no link from {from} to {to}")]
    UnknownLink {
        /// Endpoint the bytes come from.
        from: String,
        /// Endpoint the bytes go to.
        to: String,
    },
    /// A fault setting outside its range.
    #[error("bad link fault: {0}")]
    BadFault(String),
    /// This backend cannot apply that kind of fault.
    #[error("{0}")]
    Unsupported(String),
    /// Firewall rules could not be applied on a node.
    #[error("applying firewall rules on {node}: {detail}")]
    Apply {
        /// The node.
        node: String,
        /// What the command said.
        detail: String,
    },
    /// A network namespace, bridge or veth could not be set up.
    #[error("setting up {what}: {detail}")]
    Setup {
        /// What was being made (`namespace fl-ab12cd-n1`, ...).
        what: String,
        /// What the command said.
        detail: String,
    },
    /// A proxy could not bind its listening socket.
    #[error("binding a proxy for {from}->{to}: {source}")]
    Bind {
        /// Endpoint the bytes come from.
        from: String,
        /// Endpoint the bytes go to.
        to: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

pub use faultline_control::ControlError;

/// Why a fault schedule could not be built or played.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// A `--nemesis` word we do not know.
    #[error("unknown fault {0:?} (known: none, {known})", known = known_faults())]
    UnknownFault(String),
    /// A schedule parameter out of range.
    #[error("bad schedule: {0}")]
    BadSchedule(String),
    /// The time limit cannot hold one of each requested fault.
    #[error(
        "the time limit of {} s cannot hold one of each of the {faults} requested faults at an interval of {} s \
         (each needs an interval of quiet, then an interval in force): use a time limit of at least {} s, \
         or an interval of at most {} s",
        secs(*duration_ms), secs(*interval_ms), secs(*needed_ms), secs(*interval_max_ms)
    )]
    ScheduleTooShort {
        /// How many distinct kinds of fault were asked for.
        faults: usize,
        /// The interval between steps.
        interval_ms: u64,
        /// The workload's length.
        duration_ms: u64,
        /// The shortest workload that fits them.
        needed_ms: u64,
        /// The longest interval that fits them into `duration_ms`.
        interval_max_ms: u64,
    },
    /// A network fault failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A process fault failed.
    #[error("{action} {node}: {source}")]
    Node {
        /// What was attempted (kill, start, pause, resume).
        action: &'static str,
        /// Target node.
        node: String,
        /// What went wrong.
        #[source]
        source: NodeOpsError,
    },
    /// A disk or clock fault failed.
    #[error("{action} {node}: {source}")]
    Surroundings {
        /// What was attempted (set the clock of, heal the disk of, ...).
        action: &'static str,
        /// Target node.
        node: String,
        /// What went wrong.
        #[source]
        source: SurroundingsError,
    },
}

/// Why an operation on a node's process (`NodeOps`) did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum NodeOpsError {
    /// The cluster has no node of that name.
    #[error("no node named {node}")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
    /// The node has no running process to act on.
    #[error("{node} is not running")]
    NotRunning {
        /// The node.
        node: String,
    },
    /// A signal, a spawn or a wait failed (`Control`'s error).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The node's process could not be started.
    #[error("starting {node}: {source}")]
    Start {
        /// The node.
        node: String,
        /// The database's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This database has no operator failover to drive.
    #[error("this database has no failover to drive")]
    NoFailover,
    /// No replica answered, so there is none to promote.
    #[error("no replica answers; nothing to promote")]
    NoReplica,
    /// The database refused an administrative command or did not answer.
    #[error("{command} on {node}: {detail}")]
    Admin {
        /// The node asked.
        node: String,
        /// The command (`REPLICAOF NO ONE`, `WAIT 2 5000`).
        command: String,
        /// What it answered, or why it did not.
        detail: String,
    },
}

/// Why a disk or clock operation (`Surroundings`) did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum SurroundingsError {
    /// The run did not mount the disk-fault filesystem.
    #[error("disk faults need the disk-fault filesystem, which this run did not mount (a disk nemesis or --diskfs mounts it)")]
    NoDisks,
    /// The run did not load libfaketime.
    #[error("clock faults need libfaketime, which this run did not load (a clock nemesis loads it)")]
    NoClocks,
    /// The node has no disk-fault filesystem or no clock file.
    #[error("{node} has no {what}")]
    UnknownNode {
        /// The node.
        node: String,
        /// `disk-fault filesystem` or `clock`.
        what: &'static str,
    },
    /// The command on the node could not run (`Control`'s error).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The database on the node reads a clock other than the one set, for
    /// as long as the check may take.
    #[error(
        "{node}'s database reads its clock {seen_ms} ms off true time (± {error_ms} ms), not the {want_ms} ms set"
    )]
    ClockNotMoved {
        /// The node.
        node: String,
        /// The offset set.
        want_ms: i64,
        /// The offset last measured.
        seen_ms: i64,
        /// How far that measurement may be off (half its window).
        error_ms: i64,
    },
    /// The command ran and said no.
    #[error("{command} on {node} failed: {detail}")]
    Refused {
        /// The node.
        node: String,
        /// What was run (`faultline-diskfs ctl stall`, `set the clock`).
        command: String,
        /// What it printed.
        detail: String,
    },
}

/// The words `--nemesis` takes, for the unknown-fault message.
fn known_faults() -> String {
    crate::fault::FaultKind::ALL.map(|k| k.name()).join(", ")
}

/// Milliseconds as seconds for a message: `8`, `2.5`, `0.125`.
fn secs(ms: u64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

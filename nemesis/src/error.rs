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
    #[error("unknown fault {0:?} (known: {known})", known = crate::schedule::FaultKind::NAMES.join(", "))]
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
    #[error("{action} {node}: {message}")]
    Node {
        /// What was attempted (kill, start, pause, resume).
        action: &'static str,
        /// Target node.
        node: String,
        /// What went wrong.
        message: String,
    },
}

/// Milliseconds as seconds for a message: `8`, `2.5`, `0.125`.
fn secs(ms: u64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

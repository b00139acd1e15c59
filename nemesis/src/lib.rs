//! faultline's nemesis: the faults a test injects and the machinery that
//! injects them, always in pairs (cut / heal, kill / start, pause / resume).
//!
//! - [`net`]: the `Net` boundary (cut, slow and heal links) and [`proxy`], its
//!   default implementation: a userspace TCP proxy on every directed link, so
//!   partitions need no root.
//! - [`control`]: the `Control` boundary (run a daemon on a node, signal it,
//!   run a command, fetch files) and its local-process implementation,
//!   re-exported from `faultline-control` (where a backend such as SSH can
//!   implement it without depending on the faults).
//! - [`nft`]: a `Net` of nftables rules on the nodes themselves (drops on
//!   the receiver's input), run through `Control`, for nodes with addresses
//!   of their own; [`netns`] gives local nodes such addresses (a network
//!   namespace each, on a bridge) and `faultline clean` its leftovers.
//! - [`partition`]: partition shapes as pure functions of a node list and a
//!   seeded RNG (random halves, isolate one, majorities ring, bridge, one-way).
//! - [`fault`]: the one vocabulary of faults: the kinds a user asks for,
//!   their families, and the nemesis events of the history (serde names as
//!   HISTORY_FORMAT.md spells them), shared with the harness and the report.
//! - [`schedule`]: a fault schedule drawn from the seed, and [`runner`], which
//!   plays it against a cluster and records every start and stop as a
//!   nemesis event of the history. Every fault it starts it also stops: at the
//!   end of the schedule, on shutdown, and when dropped.
//!
//! Depends on `faultline-histories` (for the events) and `faultline-control`.

pub use faultline_control as control;
pub mod error;
pub mod fault;
pub mod net;
pub mod netns;
pub mod nft;
pub mod partition;
pub mod proxy;
pub mod runner;
pub mod schedule;

pub use control::{CommandSpec, Control, Daemon, DaemonSpec, LocalControl, Signal};
pub use error::{ControlError, NemesisError, NetError, NodeOpsError, SurroundingsError};
pub use fault::{FaultEvent, FaultFamily, FaultKind};
pub use net::{Link, LinkFault, Net};
pub use netns::{NetnsCluster, NetnsControl};
pub use nft::NftNet;
pub use partition::{Partition, Shape};
pub use proxy::ProxyMesh;
pub use runner::{DiskCommand, NemesisRunner, NoSurroundings, NodeOps, Recorder, Surroundings};
pub use schedule::{Fault, Plan, Step, StepAction, Target};

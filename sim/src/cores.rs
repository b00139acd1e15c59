//! The replication cores the world drives, behind one small trait: the
//! single-leader core ([`faultline_server::core::Core`]) and the leaderless
//! and multi-leader core ([`LeaderlessCore`]).
//!
//! Promise: the world drives every core the same way (boot it from its
//! disk, hand it a tick, a peer message, a client request or a disk
//! completion, then carry out its outputs in order), so the event loop,
//! the links, the disks, the agenda and the faults exist once
//! ([`crate::world`]); what differs between the cores is said here: how a
//! core is built, which clock it reads, what its outputs mean, who leads,
//! and how long the world waits for it ([`Pace`]).

use faultline_server::config::{ReadMode, Settings};
use faultline_server::core::{self as single, Answer, Core, CoreConfig, Recovered, Request, Role};
use faultline_server::leaderless::core::{self as quorum, Clock, LeaderlessCore, QuorumConfig};
use faultline_server::wal::{Durable, HardState, WalCmd};
use rand::rngs::StdRng;
use rand::Rng;

/// Most bytes of values one read may return (the server's frame bound is
/// never near in a simulated schedule).
const READ_BYTES_MAX: usize = 1 << 20;

/// Who one core is: its node, its group's members, its shard.
pub struct Boot<'a> {
    pub node: &'a str,
    pub members: &'a [String],
    pub shard: u32,
    /// The node that leads the shard at first (single-leader only).
    pub initial_leader: &'a str,
    pub settings: &'a Settings,
}

/// How the world paces the runs of one kind of core.
pub struct Pace {
    /// Whether the core reads its node's wall clock (a clock skew fault
    /// acts on it: last write wins follows it).
    pub wall_clock: bool,
    /// Quiet time after the faults heal, before the final reads (ms).
    pub settle_ms: u64,
    /// A client gives up on an answer after this long (ms).
    pub client_timeout_ms: u64,
    /// Where the register clients send reads (None: where `reads=` says).
    pub reads: Option<ReadMode>,
}

/// The single-leader core: timers only, no last-write-wins stamps; clients
/// wait longer than the core's own `request_timeout_ms`, as the harness's
/// client does.
pub const SINGLE_LEADER: Pace = Pace {
    wall_clock: false,
    settle_ms: 500,
    client_timeout_ms: 600,
    reads: None,
};

/// The leaderless and multi-leader core: settling long enough for a hint
/// replay round (every 200 ms, waiting 500 ms) to hand over what a
/// partition kept apart; clients wait the core's own `request_timeout_ms`
/// twice (a cas is a read, then a write); any node serves reads (there is
/// no leader to ask).
pub const QUORUM: Pace = Pace {
    wall_clock: true,
    settle_ms: 1_000,
    client_timeout_ms: 1_000,
    reads: Some(ReadMode::Follower),
};

/// What a core's output asks of the world, whichever core it came from.
pub enum Effect<M> {
    /// Send `msg` to the node named `to` (same shard).
    Send { to: String, msg: M },
    /// Hand a command to the node's log writer.
    Wal(WalCmd),
    /// Persist epoch and vote before any later output.
    SaveHardState(HardState),
    /// Answer the request named `token`.
    Answer { token: u64, answer: Answer },
    /// Not the leader: `req` belongs to `leader`.
    Forward { req: Request, leader: String },
}

/// What happens to a core, whichever core it is.
pub enum In<M> {
    /// Time passed.
    Tick,
    /// A message from the core of `from` (same shard).
    Peer { from: String, msg: M },
    /// A client's request (or a node's, for a piece or a forward).
    Client(Request),
    /// The log writer made entries durable.
    Durable(Durable),
}

/// The core's own input for an [`In`] (both cores name their inputs
/// alike): `own_input!(input, single::Input)`.
macro_rules! own_input {
    ($input:expr, $($own:ident)::+) => {
        match $input {
            In::Tick => $($own)::+::Tick,
            In::Peer { from, msg } => $($own)::+::Peer { from, msg },
            In::Client(req) => $($own)::+::Client(req),
            In::Durable(d) => $($own)::+::Durable(d),
        }
    };
}

/// A replication core as the simulated world drives it. Each input is
/// handled and ends its batch (`step` then `flush`), as the server's
/// drivers do for one event.
pub trait Driven: Sized {
    /// The messages between cores of one group.
    type Msg: std::fmt::Debug;
    /// The core's own output type ([`Driven::effect`] reads it).
    type Output;
    /// A core started over what its disk recovered (drawing from `rng`
    /// whatever the core's own randomness needs).
    fn boot(boot: &Boot<'_>, rec: Recovered, rng: &mut StdRng, clock: Clock) -> Self;
    /// Handles `input` at `clock` and ends the batch.
    fn input(&mut self, clock: Clock, input: In<Self::Msg>);
    /// Moves the outputs produced so far onto `into`, oldest first.
    fn drain(&mut self, into: &mut Vec<Self::Output>);
    fn effect(output: Self::Output) -> Effect<Self::Msg>;
    /// The epoch this core leads, if it leads.
    fn leading_epoch(&self) -> Option<u64>;
    /// Runs the transactions' next micro-ops if one is due; whether it did.
    fn step_txns(&mut self, clock: Clock) -> bool;
}

impl Driven for Core {
    type Msg = single::Message;
    type Output = single::Output;

    fn boot(boot: &Boot<'_>, rec: Recovered, rng: &mut StdRng, clock: Clock) -> Core {
        let cfg = CoreConfig {
            node: boot.node.to_string(),
            shard: boot.shard,
            members: boot.members.to_vec(),
            initial_leader: boot.initial_leader.to_string(),
            settings: boot.settings.clone(),
            read_bytes_max: READ_BYTES_MAX,
        };
        let mut core = Core::new(cfg, rec, rng.gen(), clock.now_ms);
        core.start(clock.now_ms);
        core
    }

    fn input(&mut self, clock: Clock, input: In<single::Message>) {
        self.step(clock.now_ms, own_input!(input, single::Input));
        self.flush(clock.now_ms);
    }

    fn drain(&mut self, into: &mut Vec<single::Output>) {
        self.drain_outputs_into(into);
    }

    fn effect(output: single::Output) -> Effect<single::Message> {
        match output {
            single::Output::Send { to, msg } => Effect::Send { to, msg },
            single::Output::Wal(cmd) => Effect::Wal(cmd),
            single::Output::SaveHardState(hard) => Effect::SaveHardState(hard),
            single::Output::Answer { token, answer } => Effect::Answer { token, answer },
            single::Output::Forward { req, leader } => Effect::Forward { req, leader },
        }
    }

    fn leading_epoch(&self) -> Option<u64> {
        (self.role() == Role::Leader).then(|| self.epoch())
    }

    fn step_txns(&mut self, clock: Clock) -> bool {
        let due = self.txn_step_due();
        if due {
            self.flush(clock.now_ms);
        }
        due
    }
}

impl Driven for LeaderlessCore {
    type Msg = quorum::Message;
    type Output = quorum::Output;

    fn boot(boot: &Boot<'_>, rec: Recovered, _rng: &mut StdRng, clock: Clock) -> LeaderlessCore {
        let cfg = QuorumConfig {
            node: boot.node.to_string(),
            members: boot.members.to_vec(),
            settings: boot.settings.clone(),
            read_bytes_max: READ_BYTES_MAX,
        };
        LeaderlessCore::new(cfg, rec, clock)
    }

    fn input(&mut self, clock: Clock, input: In<quorum::Message>) {
        self.step(clock, own_input!(input, quorum::Input));
        self.flush(clock);
    }

    fn drain(&mut self, into: &mut Vec<quorum::Output>) {
        self.drain_outputs_into(into);
    }

    fn effect(output: quorum::Output) -> Effect<quorum::Message> {
        match output {
            quorum::Output::Send { to, msg } => Effect::Send { to, msg },
            quorum::Output::Wal(cmd) => Effect::Wal(cmd),
            quorum::Output::Answer { token, answer } => Effect::Answer { token, answer },
        }
    }

    /// Nobody leads here.
    fn leading_epoch(&self) -> Option<u64> {
        None
    }

    /// No transactions in these modes.
    fn step_txns(&mut self, _clock: Clock) -> bool {
        false
    }
}

//! The simulated world: the nodes' cores (any core behind
//! [`Driven`]: the single-leader one, or the leaderless and multi-leader
//! one), their disks, their wall clocks, the network between them, the
//! clients and the fault schedule, all driven by one event queue in
//! simulated milliseconds and one seeded RNG.
//!
//! Promise: a world is a function of its scenario and seed. Nothing reads
//! a clock or iterates a hash map; every choice (message delay and loss,
//! disk latency, client operations, fault times, clock skews, the cores'
//! own seeds) comes from the seed's RNG in the order the events happen.
//! Each node's wall clock is the simulated time plus its skew (a
//! [`FaultKind::SkewClock`] sets it, the fault's end clears it), which only
//! a core that reads one ([`Pace::wall_clock`]) sees. Every wait is
//! bounded: the run stops at a fixed simulated time, and the event count
//! is capped.
//!
//! A node runs one core per shard (`shards=K` in the settings: K groups,
//! each over every node, as the server runs them); the node layer that
//! splits a request across shards is [`shards`].
//!
//! [`FaultKind::SkewClock`]: crate::scenario::FaultKind::SkewClock

mod shards;

use crate::agenda::Agenda;
use crate::clients::Clients;
use crate::cores::{Boot, Driven, Effect, In, Pace, QUORUM, SINGLE_LEADER};
use crate::disk::Disk;
use crate::links::Links;
use crate::nemesis::{Cluster, Fault, Plan};
use crate::scenario::Scenario;
use crate::txn_clients::TxnClients;
use crate::workload::Workload;
use faultline_server::config::{Failover, Isolation, Mode, Settings};
use faultline_server::core::{Answer, Core, Op, Request};
use faultline_server::leaderless::core::{Clock, LeaderlessCore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// How long clients issue operations, in simulated milliseconds.
pub const RUN_MS: u64 = 1_000;
/// How long the final reads may take.
pub const FINAL_MS: u64 = 1_500;
/// The cores' timer resolution: coarser than the server's 5 ms, which
/// halves the events of a run; every timeout is still many ticks long.
const TICK_MS: u64 = 10;
/// Most events one world handles (a bound no normal run comes near).
const EVENTS_MAX: u64 = 2_000_000;
/// Working clients and keys of the register workload.
const CLIENTS: usize = 4;
const KEYS: usize = 2;
/// The wall clocks' common origin (a date in 2023, in Unix milliseconds):
/// stamps look like the server's.
const WALL_EPOCH_MS: i64 = 1_700_000_000_000;

/// Runs the world `scenario`'s mode calls for under `seed`.
pub(crate) fn run_world(scenario: &Scenario, seed: u64) -> Finished {
    let settings = Settings::parse(&scenario.settings).expect("scenario settings parse");
    match settings.mode {
        Mode::SingleLeader => World::<Core>::new(scenario, settings, seed, SINGLE_LEADER).run(),
        Mode::Leaderless | Mode::MultiLeader => World::<LeaderlessCore>::new(scenario, settings, seed, QUORUM).run(),
    }
}

/// Something that happens at a simulated instant.
#[derive(Debug)]
enum Event<M> {
    Tick {
        node: usize,
        shard: usize,
        incarnation: u64,
    },
    /// `from` is the sender's name, for the receiver's core.
    Deliver {
        to: usize,
        shard: usize,
        from: String,
        msg: M,
    },
    DiskDone {
        node: usize,
        shard: usize,
        incarnation: u64,
    },
    /// A client's request reaches a node.
    Request {
        node: usize,
        req: Request,
    },
    ClientWake(usize),
    ClientTimeout {
        client: usize,
        token: u64,
    },
    Fault(Fault),
    FinalReads,
    /// A leader's transactions may take their next micro-op (the server's
    /// driver flushes again at once while one is due).
    TxnStep {
        node: usize,
        shard: usize,
        incarnation: u64,
    },
    /// The node layer's own traffic between nodes ([`shards`]); boxed, as
    /// it is rare and large: an event of at most 128 bytes is moved
    /// inline, a larger one by a call to `memcpy` on each move (a tenth of
    /// a schedule's instructions when every event paid it).
    Shards(Box<shards::Hop>),
}

/// One shard's group member on a node: its core while the node runs, its
/// disk always.
struct Member<C> {
    core: Option<C>,
    disk: Disk,
    /// A [`Event::TxnStep`] is scheduled for this incarnation.
    txn_stepping: bool,
}

/// One node: a member per shard, and its clock.
struct Node<C> {
    members: Vec<Member<C>>,
    /// Bumped at each crash, so the dead process's timers and disk
    /// completions are ignored.
    incarnation: u64,
    /// Wall clock minus simulated time.
    skew_ms: i64,
}

/// What a finished world hands back.
pub struct Finished {
    /// The clients' history.
    pub events: Vec<faultline_histories::Event>,
    /// Faults that took effect.
    pub faults: usize,
    /// Events the world handled.
    pub handled: u64,
    /// Two leaders in one epoch, if a fenced scenario ever had them.
    pub split_epoch: Option<String>,
}

/// The simulated cluster.
pub struct World<C: Driven> {
    now: u64,
    /// Pending events, by time, then in the order scheduled.
    agenda: Agenda<Event<C::Msg>>,
    rng: StdRng,
    names: Vec<String>,
    nodes: Vec<Node<C>>,
    settings: Settings,
    pace: Pace,
    /// Each shard's first leader.
    initial_leaders: Vec<String>,
    net: Links,
    clients: Box<dyn Workload>,
    /// Requests the node layer split or forwarded, in flight.
    layer: shards::Layer,
    faults: usize,
    /// Fenced scenarios: the leader of each (shard, epoch) seen.
    leaders: Option<BTreeMap<(usize, u64), usize>>,
    /// The cores' outputs being carried out (kept to reuse its memory).
    scratch: Vec<C::Output>,
    split_epoch: Option<String>,
}

impl<C: Driven> World<C> {
    /// A world for `scenario` (whose settings are `settings`) driven by
    /// `seed`, at `pace`.
    pub fn new(scenario: &Scenario, settings: Settings, seed: u64, pace: Pace) -> World<C> {
        let n = scenario.nodes;
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let shard_count = settings.shards.max(1);
        let member = |_| Member {
            core: None,
            disk: Disk::new(settings.fsync),
            txn_stepping: false,
        };
        let node = |_| Node {
            members: (0..shard_count).map(member).collect(),
            incarnation: 0,
            skew_ms: 0,
        };
        // One leader per epoch is what fencing promises, as long as votes
        // survive crashes (a power loss forgets unsynced ones).
        let fenced =
            settings.failover == Failover::Fenced && settings.fsync == faultline_server::wal::FsyncPolicy::Always;
        let reads = pace.reads.unwrap_or(settings.reads);
        let mut w = World {
            now: 0,
            agenda: Agenda::new(RUN_MS + pace.settle_ms + FINAL_MS),
            rng: StdRng::seed_from_u64(seed),
            nodes: (0..n).map(node).collect(),
            clients: match scenario.txn {
                Some(_) => Box::new(TxnClients::new(n, reads)),
                None if scenario.multi_key => Box::new(Clients::multi_key(CLIENTS, KEYS, n, reads)),
                None => Box::new(Clients::new(CLIENTS, KEYS, n, reads)),
            },
            initial_leaders: shards::initial_leaders(&names, &settings),
            names,
            layer: shards::Layer::new(&settings),
            pace,
            settings,
            net: Links::new(n),
            faults: 0,
            leaders: fenced.then(BTreeMap::new),
            split_epoch: None,
            scratch: Vec::new(),
        };
        let plan = Plan::draw(&scenario.faults, RUN_MS, &mut w.rng);
        for (at, fault) in plan.steps {
            w.schedule(at, Event::Fault(fault));
        }
        w
    }

    /// Runs the world to its end.
    pub fn run(mut self) -> Finished {
        for node in 0..self.nodes.len() {
            self.boot(node);
        }
        for c in self.clients.workers() {
            let at = self.rng.gen_range(0..10);
            self.schedule(at, Event::ClientWake(c));
        }
        let finals_at = RUN_MS + self.pace.settle_ms;
        self.schedule(finals_at, Event::FinalReads);
        let mut handled = 0;
        // The agenda hands out nothing due after the run's last instant.
        while let Some((at, event)) = self.agenda.pop() {
            if handled >= EVENTS_MAX || (at > finals_at && self.clients.finals_done()) {
                break;
            }
            self.now = at;
            handled += 1;
            self.handle(event);
        }
        Finished {
            events: self.clients.into_events(),
            faults: self.faults,
            handled,
            split_epoch: self.split_epoch,
        }
    }

    fn schedule(&mut self, at: u64, event: Event<C::Msg>) {
        self.agenda.push(at, event);
    }

    fn handle(&mut self, event: Event<C::Msg>) {
        match event {
            Event::Tick {
                node,
                shard,
                incarnation,
            } => {
                if self.running(node, incarnation) {
                    self.feed(node, shard, In::Tick);
                    let tick = Event::Tick {
                        node,
                        shard,
                        incarnation,
                    };
                    self.schedule(self.now + TICK_MS, tick);
                }
            }
            Event::Deliver { to, shard, from, msg } => self.feed(to, shard, In::Peer { from, msg }),
            Event::DiskDone {
                node,
                shard,
                incarnation,
            } => self.disk_done(node, shard, incarnation),
            Event::Request { node, req } => self.client_request(node, req),
            Event::ClientWake(c) => self.client_wake(c),
            Event::ClientTimeout { client, token } => {
                if self.clients.waiting_on(token) == Some(client) {
                    self.clients.time_out(client, self.now);
                    self.client_after(client, 0);
                }
            }
            Event::Fault(fault) => {
                if crate::nemesis::apply(self, &fault) {
                    self.faults += 1;
                }
            }
            Event::FinalReads => {
                for c in self.clients.final_readers() {
                    self.schedule(self.now, Event::ClientWake(c));
                }
            }
            Event::TxnStep {
                node,
                shard,
                incarnation,
            } => self.txn_step(node, shard, incarnation),
            Event::Shards(hop) => self.hop_arrives(*hop),
        }
    }

    // ----- nodes ----------------------------------------------------------

    fn running(&self, node: usize, incarnation: u64) -> bool {
        let n = &self.nodes[node];
        n.incarnation == incarnation && n.members[0].core.is_some()
    }

    fn is_up(&self, node: usize) -> bool {
        self.nodes[node].members[0].core.is_some()
    }

    fn clock(&self, node: usize) -> Clock {
        Clock {
            now_ms: self.now,
            wall_ms: WALL_EPOCH_MS + self.now as i64 + self.nodes[node].skew_ms,
        }
    }

    /// Starts (or restarts) `node`'s members from what their disks hold.
    fn boot(&mut self, node: usize) {
        for shard in 0..self.nodes[node].members.len() {
            let rec = self.nodes[node].members[shard].disk.recover();
            let clock = self.clock(node);
            let boot = Boot {
                node: &self.names[node],
                members: &self.names,
                shard: shard as u32,
                initial_leader: &self.initial_leaders[shard],
                settings: &self.settings,
            };
            let core = C::boot(&boot, rec, &mut self.rng, clock);
            let n = &mut self.nodes[node];
            n.members[shard].core = Some(core);
            n.members[shard].txn_stepping = false;
            let incarnation = n.incarnation;
            let first_tick = self.now + self.rng.gen_range(1..=TICK_MS);
            let tick = Event::Tick {
                node,
                shard,
                incarnation,
            };
            self.schedule(first_tick, tick);
            self.carry_out(node, shard);
        }
    }

    /// The running node that leads shard 0 in the highest epoch, if any.
    fn leader(&self) -> Option<usize> {
        let leading = |(i, n): (usize, &Node<C>)| Some((n.members[0].core.as_ref()?.leading_epoch()?, i));
        self.nodes.iter().enumerate().filter_map(leading).max().map(|(_, i)| i)
    }

    /// Runs `input` on `node`'s core of `shard` (if it runs) and carries
    /// out its outputs.
    fn feed(&mut self, node: usize, shard: usize, input: In<C::Msg>) {
        let clock = self.clock(node);
        let Some(core) = self.nodes[node].members[shard].core.as_mut() else {
            return;
        };
        core.input(clock, input);
        self.carry_out(node, shard);
        self.observe(node, shard);
    }

    /// Fenced scenarios: one leader per shard and epoch, ever.
    fn observe(&mut self, node: usize, shard: usize) {
        let (Some(leaders), Some(core)) = (self.leaders.as_mut(), self.nodes[node].members[shard].core.as_ref()) else {
            return;
        };
        let Some(epoch) = core.leading_epoch() else {
            return;
        };
        let first = *leaders.entry((shard, epoch)).or_insert(node);
        if first != node && self.split_epoch.is_none() {
            let of_shard = if self.nodes[node].members.len() > 1 {
                format!(" of shard {shard}")
            } else {
                String::new()
            };
            self.split_epoch = Some(format!(
                "{} and {} both led epoch {epoch}{of_shard}",
                self.names[first], self.names[node]
            ));
        }
    }

    fn carry_out(&mut self, node: usize, shard: usize) {
        let Some(core) = self.nodes[node].members[shard].core.as_mut() else {
            return;
        };
        let mut outputs = std::mem::take(&mut self.scratch);
        core.drain(&mut outputs);
        for output in outputs.drain(..) {
            match C::effect(output) {
                Effect::Send { to, msg } => self.send(node, shard, to, msg),
                Effect::Wal(cmd) => {
                    self.nodes[node].members[shard].disk.take(cmd);
                    self.disk_kick(node, shard);
                }
                Effect::SaveHardState(hard) => self.nodes[node].members[shard].disk.save_hard_state(hard),
                Effect::Answer { token, answer } => self.answered(node, token, &answer),
                Effect::Forward { req, leader } => self.forward(node, shard, req, leader),
            }
        }
        self.scratch = outputs;
    }

    /// Carries `msg` from node `from` to the node named `to_name`.
    fn send(&mut self, from: usize, shard: usize, to_name: String, msg: C::Msg) {
        if let Some((to, from, delay)) = self.net.route(&self.names, from, to_name, &mut self.rng) {
            self.schedule(self.now + delay, Event::Deliver { to, shard, from, msg });
        }
    }

    fn disk_kick(&mut self, node: usize, shard: usize) {
        let incarnation = self.nodes[node].incarnation;
        if let Some(latency) = self.nodes[node].members[shard].disk.start_write(&mut self.rng) {
            let done = Event::DiskDone {
                node,
                shard,
                incarnation,
            };
            self.schedule(self.now + latency, done);
        }
    }

    fn disk_done(&mut self, node: usize, shard: usize, incarnation: u64) {
        if !self.running(node, incarnation) {
            return;
        }
        let durable = self.nodes[node].members[shard].disk.complete();
        self.feed(node, shard, In::Durable(durable));
        self.disk_kick(node, shard);
    }

    // ----- clients --------------------------------------------------------

    /// `node` answered request `token`: the node layer takes the answer to
    /// a piece or a forwarded request; a client's, its client records and
    /// goes on.
    fn answered(&mut self, node: usize, token: u64, answer: &Answer) {
        if self.layer.owns(token) {
            return self.layer_answered(node, token, answer);
        }
        if let Some(c) = self.clients.waiting_on(token) {
            let free = self
                .clients
                .complete(c, self.now, &self.names[node], answer, &self.names);
            if free {
                let think = self.rng.gen_range(0..=10);
                self.client_after(c, think);
            }
        }
    }

    fn client_wake(&mut self, c: usize) {
        let send = self.clients.next_op(c, self.now, &mut self.rng);
        let token = send.req.token;
        let request = Event::Request {
            node: send.node,
            req: send.req,
        };
        self.schedule(self.now + 1, request);
        let timeout = Event::ClientTimeout { client: c, token };
        self.schedule(self.now + self.pace.client_timeout_ms, timeout);
    }

    /// Client `c` goes on after `think_ms`: workers until the run ends,
    /// final readers until they have read.
    fn client_after(&mut self, c: usize, think_ms: u64) {
        if let Some(at) = self.clients.wake_at(c, self.now, think_ms, RUN_MS) {
            self.schedule(at, Event::ClientWake(c));
        }
    }

    /// Hands `req` to `node`'s core of `shard`; a node that is down
    /// refuses the connection.
    fn serve_at(&mut self, node: usize, shard: usize, req: Request) {
        if !self.is_up(node) {
            let answer = Answer::fail(req.id, "connection refused");
            return self.answered(node, req.token, &answer);
        }
        let txn = matches!(req.op, Op::Txn { .. });
        self.feed(node, shard, In::Client(req));
        if txn {
            self.keep_stepping(node, shard);
        }
    }

    /// Read-committed and snapshot transactions run one micro-op per step
    /// of the leader: while a client waits at `node`, it is stepped every
    /// `txn_step_ms` (1 ms at least), as the server's driver does.
    fn keep_stepping(&mut self, node: usize, shard: usize) {
        let stepwise = matches!(self.settings.isolation, Isolation::ReadCommitted | Isolation::Snapshot);
        let incarnation = self.nodes[node].incarnation;
        let m = &mut self.nodes[node].members[shard];
        if !stepwise || m.txn_stepping || m.core.is_none() {
            return;
        }
        m.txn_stepping = true;
        let at = self.now + self.settings.txn_step_ms.max(1);
        let step = Event::TxnStep {
            node,
            shard,
            incarnation,
        };
        self.schedule(at, step);
    }

    fn txn_step(&mut self, node: usize, shard: usize, incarnation: u64) {
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        let clock = self.clock(node);
        let m = &mut self.nodes[node].members[shard];
        m.txn_stepping = false;
        let Some(core) = m.core.as_mut() else {
            return;
        };
        if core.step_txns(clock) {
            self.carry_out(node, shard);
            self.observe(node, shard);
        }
        if self.clients.waits_at(node) || self.layer.waits_at(node) {
            self.keep_stepping(node, shard);
        }
    }
}

impl<C: Driven> Cluster for World<C> {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn leader(&self) -> Option<usize> {
        World::leader(self)
    }

    fn partition(&mut self, side: &[usize]) {
        self.net.partition(side);
    }

    /// Kills `node`; with `power_loss` its unsynced writes are lost too.
    fn crash(&mut self, node: usize, power_loss: bool) {
        if !self.is_up(node) {
            return;
        }
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        for m in &mut n.members {
            m.core = None;
            m.disk.crash(power_loss);
        }
        self.layer.crashed(node);
    }

    fn restart(&mut self, node: usize) {
        if !self.is_up(node) {
            self.boot(node);
        }
    }

    fn set_lossy(&mut self, drop_percent: u32, delay_max_ms: u64) {
        self.net.set_lossy(drop_percent, delay_max_ms);
    }

    /// Only a core that reads a wall clock notices a skew.
    fn skew_clock(&mut self, skew: Option<(usize, i64)>) -> bool {
        if !self.pace.wall_clock {
            return false;
        }
        for n in &mut self.nodes {
            n.skew_ms = 0;
        }
        if let Some((node, offset_ms)) = skew {
            self.nodes[node].skew_ms = offset_ms;
        }
        skew.is_some()
    }
}
#[cfg(test)]
mod tests {
    /// Events are moved into the agenda and out of it all the time: past
    /// 128 bytes each move is a call to `memcpy`.
    #[test]
    fn an_event_stays_small_enough_to_move_inline() {
        let size = std::mem::size_of::<super::Event<faultline_server::core::Message>>();
        assert!(size <= 128, "an event of {size} bytes");
    }
}

//! The simulated world of the leaderless and multi-leader modes: the
//! nodes' [`LeaderlessCore`]s, their disks, their wall clocks, the network
//! between them, the clients and the fault schedule, driven by one event
//! queue in simulated milliseconds and one seeded RNG, as the
//! single-leader [`World`](crate::world::World) drives its cores.
//!
//! Promise: a world is a function of its scenario and seed. Nothing reads
//! a clock or iterates a hash map; every choice (message delay and loss,
//! disk latency, client operations, fault times, clock skews) comes from
//! the seed's RNG in the order the events happen. Each node's wall clock
//! is the simulated time plus its skew (a [`FaultKind::SkewClock`] sets it,
//! the fault's end clears it), which is all last write wins sees. Every
//! wait is bounded: the run stops at a fixed simulated time, and the event
//! count is capped.
//!
//! The clients are the single-leader world's: writes and compare-and-sets
//! go to the node a client picked (any node coordinates), reads to any
//! node, so a session meets the replicas' differences as a client of a
//! Dynamo-style store does.
//!
//! [`FaultKind::SkewClock`]: crate::scenario::FaultKind::SkewClock

use crate::agenda::Agenda;
use crate::clients::Clients;
use crate::disk::Disk;
use crate::links::Links;
use crate::nemesis::{Cluster, Fault, Plan};
use crate::scenario::Scenario;
use crate::workload::Workload;
use crate::world::{Finished, World};
use faultline_server::config::{Mode, ReadMode, Settings};
use faultline_server::core::{Answer, Request};
use faultline_server::leaderless::core::{Clock, Input, LeaderlessCore, Message, Output, QuorumConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long clients issue operations, in simulated milliseconds.
const RUN_MS: u64 = 1_000;
/// Quiet time after the faults heal, before the final reads: long enough
/// for a hint replay round (every 200 ms, waiting 500 ms) to hand over
/// what a partition kept apart.
const SETTLE_MS: u64 = 1_000;
/// How long the final reads may take.
const FINAL_MS: u64 = 1_500;
const END_MS: u64 = RUN_MS + SETTLE_MS + FINAL_MS;
/// The cores' timer resolution (the server's is 5 ms).
const TICK_MS: u64 = 10;
/// A client gives up on an answer after this long (more than the core's
/// own `request_timeout_ms`, twice: a cas is a read, then a write).
const CLIENT_TIMEOUT_MS: u64 = 1_000;
/// Most events one world handles (a bound no normal run comes near).
const EVENTS_MAX: u64 = 2_000_000;
/// Working clients and keys.
const CLIENTS: usize = 4;
const KEYS: usize = 2;
/// The wall clocks' common origin (a date in 2023, in Unix milliseconds):
/// stamps look like the server's.
const WALL_EPOCH_MS: i64 = 1_700_000_000_000;

/// Runs the world `scenario`'s mode calls for under `seed`.
pub(crate) fn run_world(scenario: &Scenario, seed: u64) -> Finished {
    let settings = Settings::parse(&scenario.settings).expect("scenario settings parse");
    match settings.mode {
        Mode::SingleLeader => World::new(scenario, seed).run(),
        Mode::Leaderless | Mode::MultiLeader => QuorumWorld::new(scenario, settings, seed).run(),
    }
}

/// Something that happens at a simulated instant.
#[derive(Debug)]
enum Event {
    Tick { node: usize, incarnation: u64 },
    Deliver { to: usize, from: String, msg: Message },
    DiskDone { node: usize, incarnation: u64 },
    Request { node: usize, req: Request },
    ClientWake(usize),
    ClientTimeout { client: usize, token: u64 },
    Fault(Fault),
    FinalReads,
}

/// One node: its core while it runs, its disk and clock always.
struct Node {
    core: Option<LeaderlessCore>,
    disk: Disk,
    /// Bumped at each crash, so the dead process's timers and disk
    /// completions are ignored.
    incarnation: u64,
    /// Wall clock minus simulated time.
    skew_ms: i64,
}

/// The simulated leaderless cluster.
struct QuorumWorld {
    now: u64,
    agenda: Agenda<Event>,
    rng: StdRng,
    names: Vec<String>,
    nodes: Vec<Node>,
    settings: Settings,
    net: Links,
    clients: Clients,
    faults: usize,
    /// The cores' outputs being carried out (kept to reuse its memory).
    scratch: Vec<Output>,
}

impl QuorumWorld {
    fn new(scenario: &Scenario, settings: Settings, seed: u64) -> QuorumWorld {
        let n = scenario.nodes;
        let node = |_| Node {
            core: None,
            disk: Disk::new(settings.fsync),
            incarnation: 0,
            skew_ms: 0,
        };
        let mut w = QuorumWorld {
            now: 0,
            agenda: Agenda::new(END_MS),
            rng: StdRng::seed_from_u64(seed),
            names: (1..=n).map(|i| format!("n{i}")).collect(),
            nodes: (0..n).map(node).collect(),
            clients: Clients::new(CLIENTS, KEYS, n, ReadMode::Follower),
            settings,
            net: Links::new(n),
            faults: 0,
            scratch: Vec::new(),
        };
        let plan = Plan::draw(&scenario.faults, RUN_MS, &mut w.rng);
        for (at, fault) in plan.steps {
            w.agenda.push(at, Event::Fault(fault));
        }
        w
    }

    fn run(mut self) -> Finished {
        for node in 0..self.nodes.len() {
            self.boot(node);
        }
        for c in self.clients.workers() {
            let at = self.rng.gen_range(0..10);
            self.agenda.push(at, Event::ClientWake(c));
        }
        self.agenda.push(RUN_MS + SETTLE_MS, Event::FinalReads);
        let mut handled = 0;
        while let Some((at, event)) = self.agenda.pop() {
            if handled >= EVENTS_MAX || (at > RUN_MS + SETTLE_MS && self.clients.finals_done()) {
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
            split_epoch: None,
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                if self.running(node, incarnation) {
                    self.feed(node, Input::Tick);
                    self.agenda.push(self.now + TICK_MS, Event::Tick { node, incarnation });
                }
            }
            Event::Deliver { to, from, msg } => self.feed(to, Input::Peer { from, msg }),
            Event::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            Event::Request { node, req } => self.request(node, req),
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
                    self.agenda.push(self.now, Event::ClientWake(c));
                }
            }
        }
    }

    fn running(&self, node: usize, incarnation: u64) -> bool {
        self.nodes[node].incarnation == incarnation && self.nodes[node].core.is_some()
    }

    fn clock(&self, node: usize) -> Clock {
        Clock {
            now_ms: self.now,
            wall_ms: WALL_EPOCH_MS + self.now as i64 + self.nodes[node].skew_ms,
        }
    }

    /// Starts (or restarts) `node` from what its disk holds.
    fn boot(&mut self, node: usize) {
        let cfg = QuorumConfig {
            node: self.names[node].clone(),
            members: self.names.clone(),
            settings: self.settings.clone(),
            read_bytes_max: 1 << 20,
        };
        let rec = self.nodes[node].disk.recover();
        let core = LeaderlessCore::new(cfg, rec, self.clock(node));
        let n = &mut self.nodes[node];
        n.core = Some(core);
        let incarnation = n.incarnation;
        let first_tick = self.now + self.rng.gen_range(1..=TICK_MS);
        self.agenda.push(first_tick, Event::Tick { node, incarnation });
    }

    /// Hands `input` to `node`'s core (if it runs) and carries out its outputs.
    fn feed(&mut self, node: usize, input: Input) {
        let clock = self.clock(node);
        let Some(core) = self.nodes[node].core.as_mut() else {
            return;
        };
        core.step(clock, input);
        core.flush(clock);
        let mut outputs = std::mem::take(&mut self.scratch);
        core.drain_outputs_into(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Send { to, msg } => self.send(node, to, msg),
                Output::Wal(cmd) => {
                    self.nodes[node].disk.take(cmd);
                    self.disk_kick(node);
                }
                Output::Answer { token, answer } => self.answered(node, token, &answer),
            }
        }
        self.scratch = outputs;
    }

    /// Carries `msg` from node `from` to the node named `to_name`.
    fn send(&mut self, from: usize, to_name: String, msg: Message) {
        if let Some((to, from, delay)) = self.net.route(&self.names, from, to_name, &mut self.rng) {
            self.agenda.push(self.now + delay, Event::Deliver { to, from, msg });
        }
    }

    fn disk_kick(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if let Some(latency) = n.disk.start_write(&mut self.rng) {
            let incarnation = n.incarnation;
            self.agenda
                .push(self.now + latency, Event::DiskDone { node, incarnation });
        }
    }

    fn disk_done(&mut self, node: usize, incarnation: u64) {
        if !self.running(node, incarnation) {
            return;
        }
        let durable = self.nodes[node].disk.complete();
        self.feed(node, Input::Durable(durable));
        self.disk_kick(node);
    }

    // ----- clients --------------------------------------------------------

    /// `node` answered request `token`: its client records it and goes on.
    fn answered(&mut self, node: usize, token: u64, answer: &Answer) {
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
        self.agenda.push(self.now + 1, request);
        let timeout = Event::ClientTimeout { client: c, token };
        self.agenda.push(self.now + CLIENT_TIMEOUT_MS, timeout);
    }

    /// Client `c` goes on after `think_ms`: workers until the run ends,
    /// final readers until they have read.
    fn client_after(&mut self, c: usize, think_ms: u64) {
        if let Some(at) = self.clients.wake_at(c, self.now, think_ms, RUN_MS) {
            self.agenda.push(at, Event::ClientWake(c));
        }
    }

    fn request(&mut self, node: usize, req: Request) {
        if self.nodes[node].core.is_some() {
            return self.feed(node, Input::Client(req));
        }
        let answer = Answer::fail(req.id, "connection refused");
        self.answered(node, req.token, &answer);
    }
}

impl Cluster for QuorumWorld {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Nobody leads here.
    fn leader(&self) -> Option<usize> {
        None
    }

    fn partition(&mut self, side: &[usize]) {
        self.net.partition(side);
    }

    fn crash(&mut self, node: usize, power_loss: bool) {
        let n = &mut self.nodes[node];
        if n.core.take().is_some() {
            n.incarnation += 1;
            n.disk.crash(power_loss);
        }
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].core.is_none() {
            self.boot(node);
        }
    }

    fn set_lossy(&mut self, drop_percent: u32, delay_max_ms: u64) {
        self.net.set_lossy(drop_percent, delay_max_ms);
    }

    fn skew_clock(&mut self, skew: Option<(usize, i64)>) -> bool {
        for n in &mut self.nodes {
            n.skew_ms = 0;
        }
        if let Some((node, offset_ms)) = skew {
            self.nodes[node].skew_ms = offset_ms;
        }
        skew.is_some()
    }
}

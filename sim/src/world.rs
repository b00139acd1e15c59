//! The simulated world: the nodes' cores, their disks, the network between
//! them, the clients and the fault schedule, all driven by one event queue
//! in simulated milliseconds and one seeded RNG.
//!
//! Promise: a world is a function of its scenario and seed. Nothing reads
//! a clock or iterates a hash map; every choice (message delay and loss,
//! disk latency, client operations, fault times, the cores' own seeds)
//! comes from the seed's RNG in the order the events happen. Every wait is
//! bounded: the run stops at a fixed simulated time, and the event count
//! is capped.

use crate::agenda::Agenda;
use crate::clients::Clients;
use crate::disk::Disk;
use crate::links::Links;
use crate::nemesis::{Fault, Plan};
use crate::scenario::Scenario;
use crate::txn_clients::TxnClients;
use crate::workload::Workload;
use faultline_server::config::Isolation;
use faultline_server::config::Settings;
use faultline_server::core::{Core, CoreConfig, Input, Message, Op, Output, Request, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// How long clients issue operations, in simulated milliseconds.
pub const RUN_MS: u64 = 1_000;
/// Quiet time after the faults heal, before the final reads.
pub const SETTLE_MS: u64 = 500;
/// How long the final reads may take.
pub const FINAL_MS: u64 = 1_500;
/// The run's last instant.
const END_MS: u64 = RUN_MS + SETTLE_MS + FINAL_MS;
/// The cores' timer resolution: coarser than the server's 5 ms, which
/// halves the events of a run; every timeout is still many ticks long.
const TICK_MS: u64 = 10;
/// A client gives up on an answer after this long (more than the core's
/// own `request_timeout_ms`, as the harness's client does).
const CLIENT_TIMEOUT_MS: u64 = 600;
/// Most events one world handles (a bound no normal run comes near).
const EVENTS_MAX: u64 = 2_000_000;
/// Working clients and keys.
const CLIENTS: usize = 4;
const KEYS: usize = 2;

/// Something that happens at a simulated instant.
#[derive(Debug)]
enum Event {
    Tick {
        node: usize,
        incarnation: u64,
    },
    /// `from` is the sender's name, for the receiver's core.
    Deliver {
        to: usize,
        from: String,
        msg: Message,
    },
    DiskDone {
        node: usize,
        incarnation: u64,
    },
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
        incarnation: u64,
    },
}

/// One node: its core while it runs, its disk always.
struct Node {
    core: Option<Core>,
    disk: Disk,
    /// Bumped at each crash, so the dead process's timers and disk
    /// completions are ignored.
    incarnation: u64,
    /// A [`Event::TxnStep`] is scheduled for this incarnation.
    txn_stepping: bool,
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
pub struct World {
    now: u64,
    /// Pending events, by time, then in the order scheduled.
    agenda: Agenda<Event>,
    rng: StdRng,
    names: Vec<String>,
    nodes: Vec<Node>,
    settings: Settings,
    net: Links,
    clients: Box<dyn Workload>,
    faults: usize,
    /// Fenced scenarios: the leader of each epoch seen.
    leaders: Option<BTreeMap<u64, usize>>,
    /// The cores' outputs being carried out (kept to reuse its memory).
    scratch: Vec<Output>,
    split_epoch: Option<String>,
}

impl World {
    /// A world for `scenario` driven by `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> World {
        let settings = Settings::parse(&scenario.settings).expect("scenario settings parse");
        let n = scenario.nodes;
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let nodes = (0..n)
            .map(|_| Node {
                core: None,
                disk: Disk::new(settings.fsync),
                incarnation: 0,
                txn_stepping: false,
            })
            .collect();
        // One leader per epoch is what fencing promises, as long as votes
        // survive crashes (a power loss forgets unsynced ones).
        let fenced = settings.failover == faultline_server::config::Failover::Fenced
            && settings.fsync == faultline_server::wal::FsyncPolicy::Always;
        let mut w = World {
            now: 0,
            agenda: Agenda::new(END_MS),
            rng: StdRng::seed_from_u64(seed),
            names,
            nodes,
            clients: match scenario.txn {
                Some(_) => Box::new(TxnClients::new(n, settings.reads)),
                None => Box::new(Clients::new(CLIENTS, KEYS, n, settings.reads)),
            },
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
        self.schedule(RUN_MS + SETTLE_MS, Event::FinalReads);
        let mut handled = 0;
        // The agenda hands out nothing due after END_MS.
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
            split_epoch: self.split_epoch,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.agenda.push(at, event);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].core.is_some() {
                    self.feed(node, Input::Tick);
                    self.schedule(self.now + TICK_MS, Event::Tick { node, incarnation });
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
            Event::Fault(fault) => self.fault(fault),
            Event::FinalReads => {
                for c in self.clients.final_readers() {
                    self.schedule(self.now, Event::ClientWake(c));
                }
            }
            Event::TxnStep { node, incarnation } => self.txn_step(node, incarnation),
        }
    }

    // ----- nodes ----------------------------------------------------------

    fn core_config(&self, node: usize) -> CoreConfig {
        CoreConfig {
            node: self.names[node].clone(),
            shard: 0,
            members: self.names.clone(),
            initial_leader: self.names[0].clone(),
            settings: self.settings.clone(),
            read_bytes_max: 1 << 20,
        }
    }

    /// Starts (or restarts) `node` from what its disk holds.
    fn boot(&mut self, node: usize) {
        let rec = self.nodes[node].disk.recover();
        let mut core = Core::new(self.core_config(node), rec, self.rng.gen(), self.now);
        core.start(self.now);
        let n = &mut self.nodes[node];
        n.core = Some(core);
        n.txn_stepping = false;
        let incarnation = n.incarnation;
        let first_tick = self.now + self.rng.gen_range(1..=TICK_MS);
        self.schedule(first_tick, Event::Tick { node, incarnation });
        self.carry_out(node);
    }

    /// Kills `node`; with `power_loss` its unsynced writes are lost too.
    pub(crate) fn crash(&mut self, node: usize, power_loss: bool) {
        let n = &mut self.nodes[node];
        if n.core.take().is_some() {
            n.incarnation += 1;
            n.disk.crash(power_loss);
        }
    }

    pub(crate) fn restart(&mut self, node: usize) {
        if self.nodes[node].core.is_none() {
            self.boot(node);
        }
    }

    /// The running node that leads in the highest epoch, if any.
    pub(crate) fn leader(&self) -> Option<usize> {
        let leading = |(i, n): (usize, &Node)| {
            let c = n.core.as_ref()?;
            (c.role() == Role::Leader).then_some((c.epoch(), i))
        };
        self.nodes.iter().enumerate().filter_map(leading).max().map(|(_, i)| i)
    }

    /// Hands `input` to `node`'s core (if it runs) and carries out its outputs.
    fn feed(&mut self, node: usize, input: Input) {
        let now = self.now;
        let Some(core) = self.nodes[node].core.as_mut() else {
            return;
        };
        core.step(now, input);
        core.flush(now);
        self.carry_out(node);
        self.observe(node);
    }

    /// Fenced scenarios: one leader per epoch, ever.
    fn observe(&mut self, node: usize) {
        let (Some(leaders), Some(core)) = (self.leaders.as_mut(), self.nodes[node].core.as_ref()) else {
            return;
        };
        if core.role() != Role::Leader {
            return;
        }
        let epoch = core.epoch();
        let first = *leaders.entry(epoch).or_insert(node);
        if first != node && self.split_epoch.is_none() {
            self.split_epoch = Some(format!(
                "{} and {} both led epoch {epoch}",
                self.names[first], self.names[node]
            ));
        }
    }

    fn carry_out(&mut self, node: usize) {
        let Some(core) = self.nodes[node].core.as_mut() else {
            return;
        };
        let mut outputs = std::mem::take(&mut self.scratch);
        core.drain_outputs_into(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Send { to, msg } => self.send(node, to, msg),
                Output::Wal(cmd) => {
                    self.nodes[node].disk.take(cmd);
                    self.disk_kick(node);
                }
                Output::SaveHardState(hard) => self.nodes[node].disk.save_hard_state(hard),
                Output::Answer { token, answer } => {
                    if let Some(c) = self.clients.waiting_on(token) {
                        let free = self
                            .clients
                            .complete(c, self.now, &self.names[node], &answer, &self.names);
                        if free {
                            let think = self.rng.gen_range(0..=10);
                            self.client_after(c, think);
                        }
                    }
                }
                Output::Forward { req, leader } => {
                    // The simulated clients call the leader themselves: a
                    // forward is a certain failure with the leader named.
                    let mut answer = faultline_server::core::Answer::fail(req.id, "not the leader");
                    answer.leader_hint = Some(leader);
                    if let Some(c) = self.clients.waiting_on(req.token) {
                        self.clients
                            .complete(c, self.now, &self.names[node], &answer, &self.names);
                        let think = self.rng.gen_range(0..=10);
                        self.client_after(c, think);
                    }
                }
            }
        }
        self.scratch = outputs;
    }

    /// Carries `msg` from node `from` to the node named `to_name`.
    fn send(&mut self, from: usize, to_name: String, msg: Message) {
        if let Some((to, from, delay)) = self.net.route(&self.names, from, to_name, &mut self.rng) {
            self.schedule(self.now + delay, Event::Deliver { to, from, msg });
        }
    }

    fn disk_kick(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if let Some(latency) = n.disk.start_write(&mut self.rng) {
            let incarnation = n.incarnation;
            self.schedule(self.now + latency, Event::DiskDone { node, incarnation });
        }
    }

    fn disk_done(&mut self, node: usize, incarnation: u64) {
        let n = &mut self.nodes[node];
        if n.incarnation != incarnation || n.core.is_none() {
            return;
        }
        let durable = n.disk.complete();
        self.feed(node, Input::Durable(durable));
        self.disk_kick(node);
    }

    // ----- clients --------------------------------------------------------

    fn client_wake(&mut self, c: usize) {
        let send = self.clients.next_op(c, self.now, &mut self.rng);
        let token = send.req.token;
        self.schedule(
            self.now + 1,
            Event::Request {
                node: send.node,
                req: send.req,
            },
        );
        self.schedule(self.now + CLIENT_TIMEOUT_MS, Event::ClientTimeout { client: c, token });
    }

    /// Client `c` goes on after `think_ms`: workers until the run ends,
    /// final readers until they have read.
    fn client_after(&mut self, c: usize, think_ms: u64) {
        if let Some(at) = self.clients.wake_at(c, self.now, think_ms, RUN_MS) {
            self.schedule(at, Event::ClientWake(c));
        }
    }

    fn request(&mut self, node: usize, req: Request) {
        if self.nodes[node].core.is_some() {
            let txn = matches!(req.op, Op::Txn { .. });
            self.feed(node, Input::Client(req));
            if txn {
                self.keep_stepping(node);
            }
            return;
        }
        let answer = faultline_server::core::Answer::fail(req.id, "connection refused");
        if let Some(c) = self.clients.waiting_on(req.token) {
            self.clients
                .complete(c, self.now, &self.names[node], &answer, &self.names);
            let think = self.rng.gen_range(0..=10);
            self.client_after(c, think);
        }
    }

    /// Read-committed and snapshot transactions run one micro-op per step
    /// of the leader: while a client waits at `node`, it is stepped every
    /// `txn_step_ms` (1 ms at least), as the server's driver does.
    fn keep_stepping(&mut self, node: usize) {
        let stepwise = matches!(self.settings.isolation, Isolation::ReadCommitted | Isolation::Snapshot);
        let n = &mut self.nodes[node];
        if !stepwise || n.txn_stepping || n.core.is_none() {
            return;
        }
        n.txn_stepping = true;
        let incarnation = n.incarnation;
        let at = self.now + self.settings.txn_step_ms.max(1);
        self.schedule(at, Event::TxnStep { node, incarnation });
    }

    fn txn_step(&mut self, node: usize, incarnation: u64) {
        let now = self.now;
        let n = &mut self.nodes[node];
        if n.incarnation != incarnation {
            return;
        }
        n.txn_stepping = false;
        let Some(core) = n.core.as_mut() else {
            return;
        };
        if core.txn_step_due() {
            core.flush(now);
            self.carry_out(node);
            self.observe(node);
        }
        if self.clients.waits_at(node) {
            self.keep_stepping(node);
        }
    }

    // ----- faults ---------------------------------------------------------

    fn fault(&mut self, fault: Fault) {
        if crate::nemesis::apply(self, &fault) {
            self.faults += 1;
        }
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Cuts every link between `side` and the other nodes.
    pub(crate) fn partition(&mut self, side: &[usize]) {
        self.net.partition(side);
    }

    pub(crate) fn set_lossy(&mut self, drop_percent: u32, delay_max_ms: u64) {
        self.net.set_lossy(drop_percent, delay_max_ms);
    }
}

//! The one driver shape shared by the server's deterministic cores (the
//! single-leader [`Core`](crate::core::Core) and the leaderless
//! [`LeaderlessCore`](crate::leaderless::core::LeaderlessCore)): an actor
//! task that feeds its core inputs from an inbox, the log writer and a
//! timer, and carries out the core's outputs.
//!
//! Promises:
//! - One task owns the actor: client requests, peer messages, log-writer
//!   reports and timer ticks are handled one at a time, in the order they
//!   come, so no protocol state needs a lock.
//! - After each wake-up the actor drains what is already waiting (at most
//!   [`Actor::DRAIN_MAX`] inbox messages) before it flushes the core once:
//!   a burst of requests shares one batch end (one log append, one round
//!   of replication messages).
//! - Outputs are carried out in the order the core gave them: a vote is on
//!   disk before any message that depends on it leaves.
//! - The actor halts when its inbox closes (the node stopped) or its log
//!   writer stops (nothing more can be made durable); it says which.

use crate::wal::Durable;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Timer resolution of every driver.
pub(crate) const TICK_MS: u64 = 5;

/// What a driver does around its core; [`run`] supplies the loop and
/// carries out the core's outputs after each event it hands the actor.
pub(crate) trait Actor: Send + 'static {
    /// What the actor's inbox carries (requests, peer messages, queries).
    type Msg: Send + 'static;
    /// What the core asks to be carried out.
    type Output: Send;
    /// Most inbox messages handled before the core is flushed.
    const DRAIN_MAX: usize;

    /// Lets the core begin (timers, a first election); before any input.
    fn start(&mut self) {}
    /// Handles one inbox message (what it makes the core ask is carried
    /// out right after).
    fn handle(&mut self, msg: Self::Msg);
    /// Feeds the core the log writer's report that `d` is on disk.
    fn durable(&mut self, d: Durable);
    /// One timer tick.
    fn tick(&mut self);
    /// Ends the core's batch (it appends and replicates what it gathered).
    fn flush_core(&mut self);
    /// Whether the core has work to do now, without any new input (a
    /// transaction waiting for its next micro-op).
    fn step_due(&self) -> bool {
        false
    }
    /// Says that the log writer stopped (the actor halts next).
    fn writer_stopped(&self);
    /// Moves the core's pending outputs into `into`.
    fn drain_core_outputs(&mut self, into: &mut Vec<Self::Output>);
    /// Carries out one output of the core.
    fn carry_out_one(&mut self, output: Self::Output);

    /// Carries out everything the core asked, in its order; `outputs` is
    /// the driver's buffer, empty between calls and kept to reuse its
    /// memory.
    fn carry_out(&mut self, outputs: &mut Vec<Self::Output>) {
        self.drain_core_outputs(outputs);
        for output in outputs.drain(..) {
            self.carry_out_one(output);
        }
    }
}

/// Drives `actor` until its inbox `rx` closes or its log writer (whose
/// reports arrive on `durable_rx`) stops.
pub(crate) async fn run<A: Actor>(
    mut actor: A,
    mut rx: mpsc::Receiver<A::Msg>,
    mut durable_rx: mpsc::UnboundedReceiver<Durable>,
) {
    let mut outputs = Vec::new();
    actor.start();
    actor.carry_out(&mut outputs);
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A core with work due makes the loop go round again at once (the
        // other branches still get their turn: `select!` picks among the
        // ready ones at random).
        let step_due = actor.step_due();
        tokio::select! {
            () = std::future::ready(()), if step_due => {}
            msg = rx.recv() => match msg {
                Some(m) => actor.handle(m),
                None => return,
            },
            d = durable_rx.recv() => match d {
                Some(d) => actor.durable(d),
                None => return actor.writer_stopped(),
            },
            _ = tick.tick() => actor.tick(),
        }
        actor.carry_out(&mut outputs);
        drain(&mut actor, &mut outputs, &mut rx, &mut durable_rx);
        actor.flush_core();
        actor.carry_out(&mut outputs);
    }
}

/// Handles what is already waiting, log-writer reports first, at most
/// `A::DRAIN_MAX` inbox messages, carrying out the core's outputs after
/// each.
fn drain<A: Actor>(
    actor: &mut A,
    outputs: &mut Vec<A::Output>,
    rx: &mut mpsc::Receiver<A::Msg>,
    durable_rx: &mut mpsc::UnboundedReceiver<Durable>,
) {
    for _ in 0..A::DRAIN_MAX {
        if let Ok(d) = durable_rx.try_recv() {
            actor.durable(d);
            actor.carry_out(outputs);
        }
        match rx.try_recv() {
            Ok(m) => actor.handle(m),
            Err(_) => break,
        }
        actor.carry_out(outputs);
    }
}

/// The answer slots of the requests a core holds, by the token the driver
/// gave each (the core answers by token, knowing nothing of slots).
pub(crate) struct Repliers<R> {
    slots: HashMap<u64, R>,
    last_token: u64,
}

impl<R> Default for Repliers<R> {
    fn default() -> Self {
        Repliers {
            slots: HashMap::new(),
            last_token: 0,
        }
    }
}

impl<R> Repliers<R> {
    /// Keeps `slot` and returns its token (never one given before).
    pub(crate) fn hold(&mut self, slot: R) -> u64 {
        self.last_token += 1;
        self.slots.insert(self.last_token, slot);
        self.last_token
    }

    /// The slot of `token`, taken out (`None` once answered or passed on).
    pub(crate) fn take(&mut self, token: u64) -> Option<R> {
        self.slots.remove(&token)
    }
}

#[cfg(test)]
mod tests {
    use super::{run, Actor, Repliers};
    use crate::wal::Durable;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::mpsc;

    #[test]
    fn each_slot_is_taken_once_by_its_own_token() {
        let mut r = Repliers::default();
        let a = r.hold("a");
        let b = r.hold("b");
        assert_ne!(a, b);
        assert_eq!(r.take(b), Some("b"));
        assert_eq!(r.take(b), None);
        assert_eq!(r.take(a), Some("a"));
    }

    /// An actor whose "core" asks to echo every event; what it carried
    /// out, in order, is shared with the test.
    #[derive(Default)]
    struct Echo {
        pending: Vec<String>,
        done: Arc<Mutex<Vec<String>>>,
    }

    impl Actor for Echo {
        type Msg = u32;
        type Output = String;
        const DRAIN_MAX: usize = 2;

        fn start(&mut self) {
            self.pending.push("start".into());
        }
        fn handle(&mut self, msg: u32) {
            self.pending.push(format!("msg {msg}"));
        }
        fn durable(&mut self, d: Durable) {
            self.pending.push(format!("durable {}", d.lsn));
        }
        fn tick(&mut self) {}
        fn flush_core(&mut self) {
            self.pending.push("flush".into());
        }
        fn writer_stopped(&self) {
            self.done.lock().unwrap().push("writer stopped".into());
        }
        fn drain_core_outputs(&mut self, into: &mut Vec<String>) {
            into.append(&mut self.pending);
        }
        fn carry_out_one(&mut self, output: String) {
            self.done.lock().unwrap().push(output);
        }
    }

    /// Runs an `Echo` over `msgs` and `lsns` (all queued before it starts)
    /// until `close_inbox` closes its inbox or the log writer stops; what it carried out.
    async fn echo(msgs: &[u32], lsns: &[u64], close_inbox: bool) -> Vec<String> {
        let actor = Echo::default();
        let done = actor.done.clone();
        let (tx, rx) = mpsc::channel(16);
        let (dtx, drx) = mpsc::unbounded_channel();
        for m in msgs {
            tx.try_send(*m).unwrap();
        }
        for lsn in lsns {
            dtx.send(Durable { gen: 0, lsn: *lsn }).unwrap();
        }
        // Whichever sender is kept lives until the driver has halted.
        let _kept = if close_inbox {
            drop(tx);
            (None, Some(dtx))
        } else {
            drop(dtx);
            (Some(tx), None)
        };
        tokio::time::timeout(Duration::from_secs(30), run(actor, rx, drx))
            .await
            .expect("the driver halts once its inbox or its writer is gone");
        let out = done.lock().unwrap().clone();
        out
    }

    #[tokio::test]
    async fn outputs_are_carried_out_in_order_and_a_burst_shares_one_flush() {
        let done = echo(&[1, 2, 3], &[], true).await;
        let events: Vec<&str> = done.iter().map(String::as_str).filter(|e| *e != "flush").collect();
        assert_eq!(events, ["start", "msg 1", "msg 2", "msg 3"], "{done:?}");
        // Whether the first wake-up is a message or the timer's first
        // tick, the first two messages are handled in one round (one
        // from the drain at least), with no flush between them.
        let at = done.iter().position(|e| e == "msg 1").unwrap();
        assert_eq!(done[at + 1], "msg 2", "{done:?}");
        assert_eq!(done.last().map(String::as_str), Some("flush"), "{done:?}");
    }

    #[tokio::test]
    async fn a_stopped_log_writer_halts_the_driver_and_says_so() {
        let done = echo(&[], &[7], false).await;
        assert_eq!(done[..2], ["start", "durable 7"].map(String::from), "{done:?}");
        assert_eq!(done.last().map(String::as_str), Some("writer stopped"), "{done:?}");
    }
}

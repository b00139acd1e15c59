//! The leaderless core driven by hand: a few cores wired together in
//! memory, messages and disk completions delivered when the test says, so
//! each promise is shown at the step where it must hold.

use super::*;
use crate::core::{Op, Outcome, Request};
use crate::wal::Durable;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Cores on a hand-driven network and disk.
struct Net {
    names: Vec<String>,
    cores: Vec<LeaderlessCore>,
    now_ms: u64,
    /// Per node: wall clock minus `now_ms`.
    skew_ms: Vec<i64>,
    /// Messages sent, not yet delivered: (from, to, message).
    wire: VecDeque<(usize, usize, Message)>,
    /// Per node: the last LSN handed to its log writer, not yet durable.
    unsynced: Vec<Option<u64>>,
    cut: BTreeSet<usize>,
    answers: Vec<(u64, Answer)>,
    next_token: u64,
}

impl Net {
    fn new(nodes: usize, settings: &str) -> Net {
        let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
        let settings = Settings::parse(&format!("{settings},request_timeout_ms=400")).expect("settings");
        let core = |name: &String| {
            let cfg = QuorumConfig {
                node: name.clone(),
                members: names.clone(),
                settings: settings.clone(),
                read_bytes_max: 1 << 20,
            };
            LeaderlessCore::new(cfg, Recovered::default(), Clock { now_ms: 0, wall_ms: 0 })
        };
        Net {
            cores: names.iter().map(core).collect(),
            skew_ms: vec![0; nodes],
            wire: VecDeque::new(),
            unsynced: vec![None; nodes],
            cut: BTreeSet::new(),
            answers: Vec::new(),
            next_token: 0,
            now_ms: 0,
            names,
        }
    }

    fn clock(&self, node: usize) -> Clock {
        Clock {
            now_ms: self.now_ms,
            wall_ms: self.now_ms as i64 + self.skew_ms[node],
        }
    }

    fn feed(&mut self, node: usize, input: Input) {
        let clock = self.clock(node);
        self.cores[node].step(clock, input);
        self.cores[node].flush(clock);
        let mut outs = Vec::new();
        self.cores[node].drain_outputs_into(&mut outs);
        for out in outs {
            match out {
                Output::Send { to, msg } => {
                    let to = self.names.iter().position(|n| *n == to).expect("a member");
                    if !self.cut.contains(&node) && !self.cut.contains(&to) {
                        self.wire.push_back((node, to, msg));
                    }
                }
                Output::Wal(WalCmd::Append(batch)) => self.unsynced[node] = batch.last().map(|e| e.lsn),
                Output::Wal(_) => {}
                Output::Answer { token, answer } => self.answers.push((token, answer)),
            }
        }
    }

    fn request(&mut self, node: usize, op: Op) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.feed(node, Input::Client(Request::new(token, token, op)));
        token
    }

    /// Makes `node`'s log durable.
    fn sync(&mut self, node: usize) {
        if let Some(lsn) = self.unsynced[node].take() {
            self.feed(node, Input::Durable(Durable { gen: 0, lsn }));
        }
    }

    /// Delivers messages and syncs disks until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if let Some((from, to, msg)) = self.wire.pop_front() {
                let from = self.names[from].clone();
                self.feed(to, Input::Peer { from, msg });
            } else if let Some(node) = self.unsynced.iter().position(Option::is_some) {
                self.sync(node);
            } else {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Lets `ms` pass, ticking every node every 5 ms and settling between.
    fn pass(&mut self, ms: u64) {
        for _ in 0..ms / 5 {
            self.now_ms += 5;
            for node in 0..self.cores.len() {
                self.feed(node, Input::Tick);
            }
            self.settle();
        }
    }

    fn answer(&self, token: u64) -> Option<&Answer> {
        self.answers.iter().find(|(t, _)| *t == token).map(|(_, a)| a)
    }

    fn read(&mut self, node: usize, key: &str) -> Value {
        let t = self.request(node, Op::Read { key: key.into() });
        self.settle();
        let a = self.answer(t).expect("a read is answered once the network settles");
        assert_eq!(a.outcome, Outcome::Ok, "{a:?}");
        a.value.clone()
    }

    fn write(&mut self, node: usize, key: &str, value: Value) -> Outcome {
        let t = self.request(node, Op::Write { key: key.into(), value });
        self.settle();
        self.answer(t).map(|a| a.outcome).expect("answered")
    }
}

#[test]
fn a_write_is_ok_only_after_w_durable_acknowledgements() {
    let mut net = Net::new(3, "mode=leaderless,n=3,w=2,r=2");
    let t = net.request(
        0,
        Op::Write {
            key: "k".into(),
            value: json!(1),
        },
    );
    net.sync(0);
    assert!(net.answer(t).is_none(), "one durable copy is not w=2");
    // The puts reach the replicas, which store but have not synced.
    while let Some((from, to, msg)) = net.wire.pop_front() {
        let from = net.names[from].clone();
        net.feed(to, Input::Peer { from, msg });
    }
    assert!(
        net.wire.is_empty(),
        "no acknowledgement before the replicas' disks report"
    );
    net.sync(1);
    net.settle();
    assert_eq!(net.answer(t).map(|a| a.outcome), Some(Outcome::Ok));
    assert_eq!(net.read(2, "k"), json!(1));
}

#[test]
fn a_write_below_its_quorum_is_unknown_and_a_read_below_it_fails() {
    let mut net = Net::new(3, "mode=leaderless,n=3,w=2,r=2");
    net.cut.extend([1, 2]);
    let t = net.request(
        0,
        Op::Write {
            key: "k".into(),
            value: json!(1),
        },
    );
    let r = net.request(0, Op::Read { key: "k".into() });
    net.pass(300);
    assert!(net.answer(t).is_none(), "answered before the request timeout");
    net.pass(200);
    let w = net.answer(t).expect("answered at the timeout");
    assert_eq!(
        (w.outcome, w.error.as_deref()),
        (Outcome::Unknown, Some("write quorum not reached: 1 of 2"))
    );
    let r = net.answer(r).expect("answered");
    assert_eq!(
        (r.outcome, r.error.as_deref()),
        (Outcome::Fail, Some("read quorum not reached: 1 of 2"))
    );
}

#[test]
fn a_clock_behind_makes_last_write_wins_drop_a_later_acknowledged_write() {
    let mut net = Net::new(3, "mode=leaderless,n=3,w=2,r=2");
    net.skew_ms[0] = -60_000;
    net.pass(10);
    assert_eq!(net.write(1, "x", json!(1)), Outcome::Ok);
    assert_eq!(net.write(0, "x", json!(2)), Outcome::Ok, "acknowledged...");
    assert_eq!(net.read(0, "x"), json!(1), "...and lost");
    assert_eq!(net.read(2, "x"), json!(1));
}

#[test]
fn reads_return_the_newest_stamp_and_repair_stale_replicas() {
    let mut net = Net::new(3, "mode=leaderless,n=3,w=1,r=3,read_repair=on");
    net.cut.insert(2);
    assert_eq!(net.write(0, "k", json!(7)), Outcome::Ok);
    net.pass(500);
    net.cut.clear();
    assert_eq!(net.cores[2].state().get("k"), Value::Null, "n3 missed the write");
    assert_eq!(net.read(1, "k"), json!(7), "the newest of the three answers");
    net.pass(10);
    assert_eq!(net.cores[2].state().get("k"), json!(7), "read repair wrote it back");
}

#[test]
fn replicas_apply_other_coordinators_writes_after_the_replay_delay() {
    let mut net = Net::new(3, "mode=leaderless,n=3,w=1,r=1,replay_delay_ms=50");
    assert_eq!(net.write(0, "s", json!(1)), Outcome::Ok);
    assert_eq!(
        net.cores[0].state().get("s"),
        json!(1),
        "the coordinator applies at once"
    );
    assert_eq!(net.cores[1].state().get("s"), Value::Null, "the others wait");
    net.pass(60);
    assert_eq!(net.cores[1].state().get("s"), json!(1));
}

#[test]
fn sloppy_quorum_stand_in_holds_a_hint_and_hands_it_off() {
    let mut net = Net::new(3, "mode=leaderless,n=2,w=2,r=1,sloppy_quorum=on,hinted_handoff=on");
    let key = "h";
    let (prefs, rest) = net.cores[0].ring(key);
    let index = |name: &str| net.names.iter().position(|n| n == name).unwrap();
    let (coordinator, down, stand_in) = (index(&prefs[0]), index(&prefs[1]), index(&rest[0]));
    net.cut.insert(down);
    let t = net.request(
        coordinator,
        Op::Write {
            key: key.into(),
            value: json!(5),
        },
    );
    net.pass(150);
    assert_eq!(
        net.answer(t).map(|a| a.outcome),
        Some(Outcome::Ok),
        "the stand-in counted"
    );
    assert_eq!(net.cores[stand_in].status().hints.get(&prefs[1]), Some(&1));
    net.cut.clear();
    net.pass(1_000);
    assert!(net.cores[stand_in].status().hints.is_empty(), "hint delivered");
    assert_eq!(net.cores[down].state().get(key), json!(5));
}

#[test]
fn multi_leader_partition_both_sides_accept_then_last_write_wins() {
    let mut net = Net::new(3, "mode=multi_leader");
    net.cut.insert(0);
    net.pass(10);
    assert_eq!(
        net.write(0, "k", json!(1)),
        Outcome::Ok,
        "the cut-off node still accepts"
    );
    net.pass(10);
    assert_eq!(net.write(1, "k", json!(2)), Outcome::Ok);
    assert_eq!(
        (net.read(0, "k"), net.read(1, "k")),
        (json!(1), json!(2)),
        "each side its own"
    );
    net.pass(500);
    assert_eq!(
        net.cores[0].status().hints.len(),
        2,
        "n1 keeps its write for both peers"
    );
    net.cut.clear();
    net.pass(1_000);
    for node in 0..3 {
        assert_eq!(
            net.cores[node].state().get("k"),
            json!(2),
            "n{}: the later stamp wins",
            node + 1
        );
    }
}

#[test]
fn cas_and_append_read_then_write() {
    let mut net = Net::new(3, "mode=leaderless");
    let cas = |net: &mut Net, expected: Value, new: i64| {
        let t = net.request(
            1,
            Op::Cas {
                key: "c".into(),
                expected,
                new: json!(new),
            },
        );
        net.settle();
        net.answer(t).cloned().expect("answered")
    };
    assert_eq!(cas(&mut net, Value::Null, 1).outcome, Outcome::Ok);
    let miss = cas(&mut net, json!(5), 2);
    assert_eq!(
        (miss.outcome, miss.error.as_deref()),
        (Outcome::Fail, Some("cas mismatch: current value is 1"))
    );
    for v in [1, 2] {
        let t = net.request(
            2,
            Op::Append {
                key: "l".into(),
                value: json!(v),
            },
        );
        net.settle();
        assert_eq!(net.answer(t).map(|a| a.outcome), Some(Outcome::Ok));
    }
    let t = net.request(
        0,
        Op::MultiRead {
            keys: vec!["c".into(), "l".into()],
        },
    );
    net.settle();
    assert_eq!(
        net.answer(t).map(|a| a.value.clone()),
        Some(json!({"c": 1, "l": [1, 2]}))
    );
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut net = Net::new(3, "mode=leaderless,n=3,w=2,r=2,hinted_handoff=on");
        net.cut.insert(2);
        for i in 0..20 {
            net.request(
                i % 2,
                Op::Write {
                    key: format!("k{}", i % 3),
                    value: json!(i),
                },
            );
            net.pass(20);
        }
        net.cut.clear();
        net.pass(1_000);
        let states: Vec<String> = net.cores.iter().map(|c| format!("{:?}", c.state())).collect();
        (format!("{:?}", net.answers), states)
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.1.windows(2).all(|w| w[0] == w[1]), "hints made the replicas converge");
}

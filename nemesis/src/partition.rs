//! Partition shapes: pure functions from a node list (and a seeded RNG, or
//! the node to isolate) to the set of directed links to cut.
//!
//! A [`Partition`] is the cut set plus a description that goes into the
//! history's `start-partition` event, so a report can say who could talk to
//! whom. Shapes, after Jepsen's:
//! - halves: a random split into a minority and a majority, cut both ways;
//! - isolate one (a random node, or the leader): one node cut off both ways;
//! - majorities ring: every node hears a majority, no two the same majority;
//! - bridge: two halves that can only talk through one node in the middle;
//! - one-way: a random minority's bytes no longer reach the rest, while the
//!   rest's bytes still reach it.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use crate::net::Link;

/// The kind of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    Halves,
    IsolateOne,
    IsolateLeader,
    MajoritiesRing,
    Bridge,
    OneWay,
}

impl Shape {
    /// The shape's name in schedules and events.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::IsolateOne => "isolate-one",
            Shape::IsolateLeader => "isolate-leader",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::OneWay => "one-way",
        }
    }
}

/// Links to cut, and what they mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// The shape that produced it.
    pub shape: Shape,
    /// Directed links whose bytes are held.
    pub cuts: BTreeSet<Link>,
    /// For the history: the groups, or each node's view.
    pub detail: Value,
}

impl Partition {
    /// The nemesis event value: shape, detail and cut links.
    pub fn event_value(&self) -> Value {
        let cuts: Vec<[&str; 2]> = self.cuts.iter().map(|l| [l.from.as_str(), l.to.as_str()]).collect();
        json!({"shape": self.shape.name(), "detail": self.detail, "cuts": cuts})
    }
}

/// Cuts every link between `a` and `b`, both ways.
fn cut_between(a: &[String], b: &[String]) -> BTreeSet<Link> {
    let mut cuts = BTreeSet::new();
    for x in a {
        for y in b {
            cuts.insert(Link::new(x, y));
            cuts.insert(Link::new(y, x));
        }
    }
    cuts
}

fn shuffled<R: Rng>(nodes: &[String], rng: &mut R) -> Vec<String> {
    let mut v = nodes.to_vec();
    v.shuffle(rng);
    v
}

/// A random minority (`n / 2` nodes) and majority, cut from each other.
pub fn halves<R: Rng>(nodes: &[String], rng: &mut R) -> Partition {
    let v = shuffled(nodes, rng);
    let (minority, majority) = v.split_at(v.len() / 2);
    let (mut a, mut b) = (minority.to_vec(), majority.to_vec());
    a.sort();
    b.sort();
    Partition {
        shape: Shape::Halves,
        cuts: cut_between(&a, &b),
        detail: json!({"groups": [a, b]}),
    }
}

/// `node` cut off from every other node, both ways.
pub fn isolate(nodes: &[String], node: &str, shape: Shape) -> Partition {
    let rest: Vec<String> = nodes.iter().filter(|n| *n != node).cloned().collect();
    let alone = vec![node.to_owned()];
    Partition {
        shape,
        cuts: cut_between(&alone, &rest),
        detail: json!({"groups": [alone, rest]}),
    }
}

/// A random node cut off from every other node.
pub fn isolate_one<R: Rng>(nodes: &[String], rng: &mut R) -> Partition {
    let node = nodes.choose(rng).expect("a partition needs nodes");
    isolate(nodes, node, Shape::IsolateOne)
}

/// On a random ring, node i hears only from itself and the next `m - 1`
/// nodes, where `m` is a majority: every node hears a majority, and no two
/// nodes hear the same one.
pub fn majorities_ring<R: Rng>(nodes: &[String], rng: &mut R) -> Partition {
    let ring = shuffled(nodes, rng);
    let n = ring.len();
    let m = n / 2 + 1;
    let mut cuts = BTreeSet::new();
    let mut views = BTreeMap::new();
    for (i, me) in ring.iter().enumerate() {
        let mut view: Vec<String> = (0..m).map(|d| ring[(i + d) % n].clone()).collect();
        for other in &ring {
            if !view.contains(other) {
                cuts.insert(Link::new(other, me));
            }
        }
        view.sort();
        views.insert(me.clone(), view);
    }
    Partition {
        shape: Shape::MajoritiesRing,
        cuts,
        detail: json!({"hears": views}),
    }
}

/// Two halves cut from each other, except one bridge node that talks to both.
pub fn bridge<R: Rng>(nodes: &[String], rng: &mut R) -> Partition {
    let v = shuffled(nodes, rng);
    let mid = v.len() / 2;
    let bridge = v[mid].clone();
    let mut a = v[..mid].to_vec();
    let mut b = v[mid + 1..].to_vec();
    a.sort();
    b.sort();
    Partition {
        shape: Shape::Bridge,
        cuts: cut_between(&a, &b),
        detail: json!({"groups": [a, b], "bridge": bridge}),
    }
}

/// A random minority's bytes stop reaching the others; theirs still arrive.
pub fn one_way<R: Rng>(nodes: &[String], rng: &mut R) -> Partition {
    let v = shuffled(nodes, rng);
    let k = (v.len() / 2).max(1);
    let (mut mute, mut rest) = (v[..k].to_vec(), v[k..].to_vec());
    mute.sort();
    rest.sort();
    let mut cuts = BTreeSet::new();
    for x in &mute {
        for y in &rest {
            cuts.insert(Link::new(x, y));
        }
    }
    Partition {
        shape: Shape::OneWay,
        cuts,
        detail: json!({"unheard": mute, "deaf_to_them": rest}),
    }
}

/// Draws a partition of `shape` (`IsolateLeader` needs the leader: use
/// [`isolate`] for it).
pub fn draw<R: Rng>(shape: Shape, nodes: &[String], rng: &mut R) -> Partition {
    match shape {
        Shape::Halves => halves(nodes, rng),
        Shape::IsolateOne | Shape::IsolateLeader => isolate_one(nodes, rng),
        Shape::MajoritiesRing => majorities_ring(nodes, rng),
        Shape::Bridge => bridge(nodes, rng),
        Shape::OneWay => one_way(nodes, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Who `me` hears from (itself included) under `p`.
    fn hears(p: &Partition, all: &[String], me: &str) -> BTreeSet<String> {
        all.iter()
            .filter(|o| !p.cuts.contains(&Link::new(o.as_str(), me)))
            .cloned()
            .collect()
    }

    #[test]
    fn halves_split_into_a_minority_and_a_majority_cut_both_ways() {
        for n in [3, 4, 5] {
            let all = nodes(n);
            let p = halves(&all, &mut faultline_testkit::rng(n as u64));
            let sizes: BTreeSet<usize> = all.iter().map(|me| hears(&p, &all, me).len()).collect();
            assert_eq!(sizes, [n / 2, n - n / 2].into_iter().collect(), "n={n}");
            for l in &p.cuts {
                assert!(p.cuts.contains(&Link::new(l.to.as_str(), l.from.as_str())));
            }
        }
    }

    #[test]
    fn isolate_cuts_one_node_from_everyone() {
        let all = nodes(5);
        let p = isolate(&all, "n3", Shape::IsolateLeader);
        assert_eq!(hears(&p, &all, "n3").len(), 1);
        assert_eq!(hears(&p, &all, "n1").len(), 4);
        assert_eq!(p.cuts.len(), 8);
    }

    #[test]
    fn majorities_ring_gives_each_node_its_own_majority() {
        for n in [3, 5, 7] {
            let all = nodes(n);
            let p = majorities_ring(&all, &mut faultline_testkit::rng(7));
            let views: Vec<BTreeSet<String>> = all.iter().map(|me| hears(&p, &all, me)).collect();
            for (v, me) in views.iter().zip(&all) {
                assert_eq!(v.len(), n / 2 + 1, "{me} hears {v:?}");
                assert!(v.contains(me));
            }
            let distinct: BTreeSet<_> = views.iter().collect();
            assert_eq!(distinct.len(), n);
        }
    }

    #[test]
    fn bridge_node_hears_everyone_and_halves_do_not_hear_each_other() {
        let all = nodes(5);
        let p = bridge(&all, &mut faultline_testkit::rng(3));
        let b = p.detail["bridge"].as_str().unwrap();
        assert_eq!(hears(&p, &all, b).len(), 5);
        let others: Vec<usize> = all
            .iter()
            .filter(|n| *n != b)
            .map(|me| hears(&p, &all, me).len())
            .collect();
        assert_eq!(others, vec![3, 3, 3, 3]);
    }

    #[test]
    fn one_way_cuts_only_one_direction() {
        let all = nodes(3);
        let p = one_way(&all, &mut faultline_testkit::rng(9));
        assert!(!p.cuts.is_empty());
        for l in &p.cuts {
            assert!(!p.cuts.contains(&Link::new(l.to.as_str(), l.from.as_str())));
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_partition() {
        let all = nodes(5);
        for shape in [
            Shape::Halves,
            Shape::MajoritiesRing,
            Shape::Bridge,
            Shape::OneWay,
            Shape::IsolateOne,
        ] {
            let a = draw(shape, &all, &mut faultline_testkit::rng(11));
            let b = draw(shape, &all, &mut faultline_testkit::rng(11));
            assert_eq!(a, b);
        }
    }
}

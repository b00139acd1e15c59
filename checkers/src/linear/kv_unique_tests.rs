//! The key-value string model's translation to a register with unique
//! values (`models::kv_unique`) against the search on the string model
//! itself, on random small histories of unique pieces with crashed and
//! optional (relaxed) puts and appends and reads that are right, stale,
//! out of order or garbage: the verdicts agree exactly, every
//! linearization it returns is one of the strings, and every proof it
//! names (shrunk as users see it) is confirmed by the search with
//! everything else relaxed.

use std::time::{Duration, Instant};

use faultline_histories::{History, F};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::json;

use super::part::Encoded;
use super::poly::shrink;
use super::search::{Found, SearchOp};
use super::unique::Unique;
use super::unique_tests::{is_linearization, only, searched};
use crate::model::{Model, Role};
use crate::models::{ok_op, Kv};

/// One random operation: kind, value pick, start, length, outcome.
type Spec = (u8, u8, u8, u8, u8);

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..10, 0u8..32, 0u8..16, 1u8..8, 0u8..10)
}

/// What a read returns: mostly the string so far, else an older one, the
/// pieces so far in reverse (an order no append made), or a piece nobody
/// wrote.
fn read_value(pick: u8, pieces: &[String], seen: &[String]) -> String {
    match pick % 8 {
        0 => "x99y".to_owned(),
        1 | 2 => seen[usize::from(pick / 8) % seen.len()].clone(),
        3 => pieces.iter().rev().cloned().collect(),
        _ => pieces.concat(),
    }
}

/// A history of unique pieces (`x1y`, `x2y`, ...: of two lengths, none a
/// suffix of another) encoded by `kv`, in the order the ops were made.
fn build(kv: &mut Kv, specs: &[Spec]) -> Vec<SearchOp<crate::models::KvOp>> {
    let h = History::default();
    let (mut pieces, mut seen): (Vec<String>, Vec<String>) = (Vec::new(), vec![String::new()]);
    let mut ops = Vec::new();
    for (i, &(kind, pick, start, len, outcome)) in specs.iter().enumerate() {
        let piece = format!("x{}y", i + 1);
        let op = match kind {
            0..=3 => ok_op(F::Read, json!(null), json!(read_value(pick, &pieces, &seen))),
            4..=5 => {
                pieces = vec![piece.clone()];
                ok_op(F::Write, json!(piece), json!(piece))
            }
            _ => {
                pieces.push(piece.clone());
                ok_op(F::Append, json!(piece), json!(piece))
            }
        };
        seen.push(pieces.concat());
        let Ok(Role::Determinate(encoded)) = kv.encode(&h, &op) else {
            panic!("an ok op encodes as determinate")
        };
        let call = u64::from(start) * 32 + i as u64;
        let ret = call + u64::from(len) * 32 + 16;
        let (ret, optional) = match outcome {
            _ if op.f == F::Read => (Some(ret), false),
            0 | 1 => (None, false),
            2 => (Some(ret), true),
            _ => (Some(ret), false),
        };
        ops.push(SearchOp {
            op: encoded,
            call,
            ret,
            optional,
        });
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_translation_agrees_with_the_search_on_strings(specs in proptest::collection::vec(spec(), 1..9)) {
        let mut kv = Kv::default();
        let ops = build(&mut kv, &specs);
        let fast = kv.as_register(&ops).and_then(|t| t.decide());
        prop_assert!(fast.is_some(), "unique pieces must translate: {:?}", ops);
        match (searched(&kv, &ops), fast.unwrap_or(Unique::Linearizable { order: Vec::new() })) {
            (Found::Linearizable { .. }, Unique::Linearizable { order }) => {
                prop_assert!(is_linearization(&kv, &ops, &order), "{:?} {:?}", ops, order);
            }
            (Found::NotLinearizable { .. }, Unique::NotLinearizable { proof, .. }) => {
                let n = ops.len();
                let enc = Encoded { model: kv, ops, origin: (0..n).collect(), considered: n };
                let shrunk = shrink(&enc, &proof, Instant::now() + Duration::from_secs(20));
                let alone = only(&enc.model, &enc.ops, &shrunk);
                let confirmed = matches!(searched(&enc.model, &alone), Found::NotLinearizable { .. });
                prop_assert!(!shrunk.is_empty() && confirmed, "proof {:?} of {:?}", shrunk, enc.ops);
            }
            (slow, fast) => prop_assert!(false, "search {:?}, translation {:?} on {:?}", slow, fast, ops),
        }
    }
}

#[test]
fn the_generator_makes_both_verdicts_and_every_shape() {
    // Not vacuous: over a fixed sweep, both answers, conflicting reads,
    // compare-and-sets (seen appends), crashed and optional updates occur.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut invalid, mut conflicts, mut cas, mut crashed, mut optional) = (0, 0, 0, 0, 0, 0);
    for _ in 0..2_000 {
        let specs = proptest::collection::vec(spec(), 1..9)
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        let mut kv = Kv::default();
        let ops = build(&mut kv, &specs);
        crashed += ops.iter().filter(|o| o.ret.is_none()).count();
        optional += ops.iter().filter(|o| o.optional).count();
        let t = kv.as_register(&ops).expect("unique pieces translate");
        conflicts += usize::from(t.conflict.is_some());
        cas += t
            .ops
            .iter()
            .filter(|o| matches!(o.op, crate::models::RegisterOp::Cas(..)))
            .count();
        match t.decide() {
            Some(Unique::Linearizable { .. }) => valid += 1,
            Some(Unique::NotLinearizable { .. }) => invalid += 1,
            None => panic!("the check applies to unique pieces"),
        }
    }
    assert!(valid > 200 && invalid > 200, "valid {valid}, invalid {invalid}");
    assert!(conflicts > 10 && cas > 100 && crashed > 0 && optional > 0);
}

#[test]
fn repeated_empty_or_suffix_pieces_go_to_the_search() {
    let h = History::default();
    let translate = |values: &[(F, &str)]| {
        let mut kv = Kv::default();
        let ops: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, (f, v))| {
                let Ok(Role::Determinate(op)) = kv.encode(&h, &ok_op(f.clone(), json!(v), json!(v))) else {
                    panic!("encodes")
                };
                SearchOp {
                    op,
                    call: 2 * i as u64,
                    ret: Some(2 * i as u64 + 1),
                    optional: false,
                }
            })
            .collect();
        kv.as_register(&ops).is_some()
    };
    assert!(translate(&[(F::Append, "x1y"), (F::Write, "x2y"), (F::Read, "x2y")]));
    assert!(!translate(&[(F::Append, "x1y"), (F::Append, "x1y")]));
    assert!(!translate(&[(F::Append, "x1y"), (F::Write, "x1y")]));
    assert!(!translate(&[(F::Append, "")]));
    assert!(!translate(&[(F::Append, "ab"), (F::Append, "b")]));
}

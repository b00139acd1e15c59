//! The polynomial check of unique values against the search, on random
//! small histories with crashed writes, compare-and-sets and optional
//! (relaxed) updates: the verdicts agree exactly, every linearization it
//! returns is one (real time and the register's rules), and every proof it
//! names is confirmed by the search with everything else relaxed.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::part::Encoded;
use super::poly::shrink;
use super::search::{search, Budget, Found, SearchOp};
use super::table::Memory;
use super::unique::{applies, check, Unique};
use crate::model::Model;
use crate::models::{Register, RegisterOp};

/// A register whose value ids 0..=12 all exist (0 the initial null).
fn register() -> Register {
    let mut r = Register::cas(&serde_json::Value::Null);
    let h = faultline_histories::History::default();
    for v in 1..=12 {
        let op = crate::models::ok_op(
            faultline_histories::F::Write,
            serde_json::json!(v),
            serde_json::json!(v),
        );
        r.encode(&h, &op).expect("a write encodes");
    }
    r
}

/// One random operation: kind, value pick, start, length, outcome.
type Spec = (u8, u8, u8, u8, u8);

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..10, 0u8..16, 0u8..16, 1u8..8, 0u8..10)
}

/// Builds a history whose written values are unique: writes and
/// compare-and-sets write fresh values 1, 2, ...; reads and compare-and-set
/// sources pick among the values written so far, the initial 0 and one
/// never written (12).
fn build(specs: &[Spec]) -> Vec<SearchOp<RegisterOp>> {
    let mut fresh = 0u32;
    let mut ops = Vec::new();
    for (i, &(kind, pick, start, len, outcome)) in specs.iter().enumerate() {
        let known = fresh + 1;
        let seen = |p: u8| if p == 15 { 12 } else { u32::from(p) % known };
        let op = match kind {
            0..=3 => RegisterOp::Read(seen(pick)),
            4..=6 => {
                fresh += 1;
                RegisterOp::Write(fresh)
            }
            _ => {
                fresh += 1;
                RegisterOp::Cas(seen(pick), fresh)
            }
        };
        let call = u64::from(start) * 32 + i as u64;
        let ret = call + u64::from(len) * 32 + 16;
        let is_read = matches!(op, RegisterOp::Read(_));
        let (ret, optional) = match outcome {
            0 | 1 if !is_read => (None, false),
            2 if !is_read => (Some(ret), true),
            _ => (Some(ret), false),
        };
        ops.push(SearchOp {
            op,
            call,
            ret,
            optional,
        });
    }
    ops
}

pub(super) fn searched<M: Model>(model: &M, ops: &[SearchOp<M::Op>]) -> Found<M::State> {
    let memory = Memory::new(1 << 26);
    let budget = Budget {
        deadline: Instant::now() + Duration::from_secs(20),
        soft: None,
        memory: &memory,
        max_steps: u64::MAX,
    };
    search(model, ops, budget).0
}

/// Whether `order` is a linearization of `ops`: every mandatory op once,
/// optional ones at most once, real time respected, the register's rules.
pub(super) fn is_linearization<M: Model>(model: &M, ops: &[SearchOp<M::Op>], order: &[u32]) -> bool {
    let mut used = vec![false; ops.len()];
    let mut state = model.init();
    for (k, &i) in order.iter().enumerate() {
        let op = &ops[i as usize];
        if std::mem::replace(&mut used[i as usize], true) {
            return false;
        }
        // Nothing placed after it may have returned before it was called.
        if order[k + 1..]
            .iter()
            .any(|&j| ops[j as usize].ret.is_some_and(|r| r < op.call))
        {
            return false;
        }
        match model.step(&state, &op.op) {
            Some(next) => state = next,
            None => return false,
        }
    }
    // A mandatory op left out, or an op placed before an op left out that
    // returned... left-out ops are optional and then impose nothing.
    ops.iter().zip(&used).all(|(o, &u)| u || !o.mandatory())
}

/// `ops` with only `proof` determinate, everything else relaxed.
pub(super) fn only<M: Model>(model: &M, ops: &[SearchOp<M::Op>], proof: &[u32]) -> Vec<SearchOp<M::Op>> {
    ops.iter()
        .enumerate()
        .filter_map(
            |(i, o)| match (proof.contains(&(i as u32)) || !o.mandatory(), model.relax(&o.op)) {
                (true, _) => Some(o.clone()),
                (false, None) => None,
                (false, Some(op)) => Some(SearchOp {
                    op,
                    optional: true,
                    ..o.clone()
                }),
            },
        )
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn unique_values_check_agrees_with_the_search(specs in proptest::collection::vec(spec(), 1..9)) {
        let model = register();
        let ops = build(&specs);
        prop_assert!(applies(&ops, 0));
        let fast = check(&ops, 0);
        match (searched(&model, &ops), &fast) {
            (Found::Linearizable { .. }, Unique::Linearizable { order }) => {
                prop_assert!(is_linearization(&model, &ops, order), "{:?} {:?}", ops, order);
            }
            (Found::NotLinearizable { .. }, Unique::NotLinearizable { proof, .. }) => {
                // The proof users see: the candidate, shrunk (or the
                // determinate operations, halved, should it fail).
                let enc = Encoded { model: register(), ops: ops.clone(), origin: (0..ops.len()).collect(), considered: ops.len() };
                let shrunk = shrink(&enc, proof, Instant::now() + Duration::from_secs(20));
                let alone = only(&model, &ops, &shrunk);
                let confirmed = matches!(searched(&model, &alone), Found::NotLinearizable { .. });
                prop_assert!(!shrunk.is_empty() && confirmed, "proof {:?} of {:?}", shrunk, ops);
            }
            (slow, fast) => prop_assert!(false, "search {:?}, unique {:?} on {:?}", slow, fast, ops),
        }
    }
}

#[test]
fn the_generator_makes_both_verdicts_and_every_shape() {
    // Not vacuous: over a fixed sweep of small histories, both answers and
    // crashed, optional and compare-and-set operations all occur.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut invalid, mut crashed, mut optional, mut cas) = (0, 0, 0, 0, 0);
    for _ in 0..2_000 {
        let specs = proptest::collection::vec(spec(), 1..9)
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        let ops = build(&specs);
        crashed += ops.iter().filter(|o| o.ret.is_none()).count();
        optional += ops.iter().filter(|o| o.optional).count();
        cas += ops.iter().filter(|o| matches!(o.op, RegisterOp::Cas(..))).count();
        match check(&ops, 0) {
            Unique::Linearizable { .. } => valid += 1,
            Unique::NotLinearizable { .. } => invalid += 1,
        }
    }
    assert!(valid > 200 && invalid > 200, "valid {valid}, invalid {invalid}");
    assert!(crashed > 0 && optional > 0 && cas > 0);
}

#[test]
fn repeated_values_and_failed_comparisons_go_to_the_search() {
    let op = |op| SearchOp {
        op,
        call: 0,
        ret: Some(1),
        optional: false,
    };
    assert!(!applies(&[op(RegisterOp::Write(1)), op(RegisterOp::Write(1))], 0));
    assert!(!applies(&[op(RegisterOp::Write(0))], 0));
    assert!(!applies(&[op(RegisterOp::Cas(0, 1)), op(RegisterOp::Write(1))], 0));
    assert!(!applies(&[op(RegisterOp::CasMismatch(1))], 0));
    assert!(applies(
        &[
            op(RegisterOp::Cas(0, 1)),
            op(RegisterOp::Cas(1, 2)),
            op(RegisterOp::Read(2))
        ],
        0
    ));
}

//! The server client's transactions: `fail` only when the server aborted
//! one, `info` for every other doubt (read-only or not), and an `ok` reply
//! whose micro-ops are not those sent refused.

use serde_json::{json, Value};

use super::tests::{client, node};
use super::*;

fn txn(ops: Vec<TxnOp>) -> Request {
    Request::Txn { ops }
}

/// A node that answers a txn by its first key: `ok` fills reads in,
/// `fail` aborts, `unknown` does not know, `bad` returns another
/// shape, `silent` never answers.
fn txn_node(req: Value) -> Option<Value> {
    if req["op"] == "status" {
        return Some(json!({"id": req["id"], "result": "ok"}));
    }
    let ops = req["txn"].as_array()?;
    let result = match ops[0][1].as_str()? {
        "silent" => return None,
        "ok" | "bad" => "ok",
        "fail" => "fail",
        _ => "unknown",
    };
    let filled: Vec<Value> = ops
        .iter()
        .map(|m| match m[0].as_str() {
            Some("r") => json!(["r", m[1], [7]]),
            _ => m.clone(),
        })
        .collect();
    let value = match ops[0][1].as_str()? {
        "bad" => json!(filled[..1]),
        _ => json!(filled),
    };
    Some(json!({"id": req["id"], "result": result, "value": value, "node": "n1", "error": "aborted"}))
}

#[tokio::test]
async fn a_transaction_is_fail_only_when_the_server_says_so() {
    let addr = node(txn_node).await;
    let mut c = client(addr);
    let read = |k: &str| TxnOp::Read { key: k.into() };
    let append = |k: &str| TxnOp::Append {
        key: k.into(),
        value: 3,
    };
    let ok = c.call(&txn(vec![append("ok"), read("ok")])).await;
    assert_eq!(ok.outcome, Outcome::Ok);
    assert_eq!(ok.value, json!([["append", "ok", 3], ["r", "ok", [7]]]));
    let aborted = c.call(&txn(vec![append("fail")])).await;
    assert_eq!(
        (aborted.outcome, aborted.error.as_deref()),
        (Outcome::Fail, Some("aborted"))
    );
    // Read-only or not, a transaction the server did not judge, or
    // whose reply never came, is unknown: the server may have run it.
    for ops in [vec![read("unknown")], vec![read("silent")], vec![append("silent")]] {
        let r = c.call(&txn(ops.clone())).await;
        assert_eq!(r.outcome, Outcome::Info, "{ops:?}: {r:?}");
    }
    let bad = c.call(&txn(vec![read("bad"), read("x")])).await;
    assert_eq!(bad.outcome, Outcome::Info, "{bad:?}");
    assert!(bad.error.unwrap().contains("1 micro-ops for the 2 sent"));
}

#[test]
fn a_reply_that_changes_a_write_does_not_fit() {
    let t = txn(vec![TxnOp::Write {
        key: "x".into(),
        value: 1,
    }]);
    assert!(txn_reply_fits(&t, &json!([["w", "x", 1]])).is_ok());
    assert!(txn_reply_fits(&t, &json!([["w", "x", 2]])).is_err());
    assert!(txn_reply_fits(&t, &json!([["append", "x", 1]])).is_err());
    assert!(txn_reply_fits(&t, &json!({"x": 1})).is_err());
}

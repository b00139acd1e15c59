//! Decoding and validation: each op, each rejection, random bytes, and
//! the round trip a client relies on (typed request, raw, bytes, back).

use super::*;
use crate::frame::{read_frame, MAX_FRAME_BYTES};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn decodes_each_op() {
    let r = decode_request(br#"{"id":1,"op":"write","key":"a","value":3}"#).unwrap();
    assert_eq!(
        r.op,
        Op::Write {
            key: "a".into(),
            value: 3.into()
        }
    );
    let r = decode_request(br#"{"id":2,"op":"cas","key":"a","new":4}"#).unwrap();
    assert!(matches!(
        r.op,
        Op::Cas {
            expected: Value::Null,
            ..
        }
    ));
    let r = decode_request(br#"{"id":3,"op":"multi_read","keys":["a","b"],"session":{"min_lsn":7}}"#).unwrap();
    assert_eq!(r.session.min_lsn_for(0), 7);
    assert!(decode_request(br#"{"id":3,"op":"status"}"#).is_ok());
}

#[test]
fn rejects_bad_input() {
    assert!(matches!(decode_request(b"\xff\x00"), Err(ProtocolError::Malformed(_))));
    assert!(matches!(
        decode_request(br#"{"id":1,"op":"drop_table"}"#),
        Err(ProtocolError::UnknownOp(_))
    ));
    assert!(matches!(
        decode_request(br#"{"id":1,"op":"write","key":"a"}"#),
        Err(ProtocolError::MissingField { .. })
    ));
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let body = format!(r#"{{"id":1,"op":"read","key":"{long}"}}"#);
    assert!(matches!(decode_request(body.as_bytes()), Err(ProtocolError::Limit(_))));
}

/// The bytes the untyped client sent (a sorted `json!` map), which a
/// typed request must reproduce exactly.
#[test]
fn typed_requests_encode_to_the_bytes_of_the_untyped_client() {
    let session = Session {
        min_lsn: Some(4),
        shard_lsns: vec![4, 9],
    };
    let cases = [
        (Op::Read { key: "k".into() }, json!({"op": "read", "key": "k"})),
        (
            Op::Write {
                key: "k".into(),
                value: json!(1),
            },
            json!({"op": "write", "key": "k", "value": 1}),
        ),
        (
            Op::Cas {
                key: "k".into(),
                expected: Value::Null,
                new: json!(2),
            },
            json!({"op": "cas", "key": "k", "expected": null, "new": 2}),
        ),
        (
            Op::Append {
                key: "k".into(),
                value: json!(3),
            },
            json!({"op": "append", "key": "k", "value": 3}),
        ),
        (
            Op::MultiRead {
                keys: vec!["a".into(), "b".into()],
            },
            json!({"op": "multi_read", "keys": ["a", "b"]}),
        ),
        (Op::Status, json!({"op": "status"})),
    ];
    for (op, mut old) in cases {
        old["id"] = json!(7);
        let bare = Request {
            id: 7,
            op: op.clone(),
            session: Session::default(),
        };
        assert_eq!(
            serde_json::to_vec(&bare.to_raw()).unwrap(),
            serde_json::to_vec(&old).unwrap()
        );
        old["session"] = json!({"min_lsn": 4, "shard_lsns": [4, 9]});
        let with_session = Request {
            session: session.clone(),
            ..bare
        };
        assert_eq!(
            serde_json::to_vec(&with_session.to_raw()).unwrap(),
            serde_json::to_vec(&old).unwrap()
        );
    }
}

/// A value a write may carry: the wire cannot tell a `null` value from a
/// missing one, so writes of null are refused and not drawn here.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![any::<i64>().prop_map(Value::from), "[a-z]{0,6}".prop_map(Value::from)]
}

/// An expected value of a cas, where null means absent.
fn any_expected() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), any_value()]
}

fn any_op() -> impl Strategy<Value = Op> {
    let key = "[a-z0-9]{0,8}";
    prop_oneof![
        key.prop_map(|key| Op::Read { key }),
        (key, any_value()).prop_map(|(key, value)| Op::Write { key, value }),
        (key, any_expected(), any_value()).prop_map(|(key, expected, new)| Op::Cas { key, expected, new }),
        (key, any_value()).prop_map(|(key, value)| Op::Append { key, value }),
        proptest::collection::vec(key, 0..4).prop_map(|keys| Op::MultiRead { keys }),
        proptest::collection::vec(any_micro_op(), 1..5).prop_map(|ops| Op::Txn { ops }),
        Just(Op::Status),
    ]
}

fn any_micro_op() -> impl Strategy<Value = crate::txn::MicroOp> {
    use crate::txn::MicroOp;
    let key = "[a-z0-9]{0,8}";
    prop_oneof![
        (key, any_value()).prop_map(|(key, value)| MicroOp::Append { key, value }),
        key.prop_map(|key| MicroOp::Read { key }),
        (key, any_value()).prop_map(|(key, value)| MicroOp::Write { key, value }),
    ]
}

proptest! {
    /// The same property as the cargo-fuzz target, on every `cargo test`:
    /// arbitrary bytes never panic the decoder or the frame reader.
    #[test]
    fn decoder_survives_random_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_request(&data);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut rd: &[u8] = &data;
            for _ in 0..64 {
                match read_frame(&mut rd, MAX_FRAME_BYTES).await {
                    Ok(Some(body)) => { let _ = decode_request(&body); }
                    _ => break,
                }
            }
        });
    }

    /// Structured garbage: JSON objects with random ops and fields.
    #[test]
    fn decoder_survives_random_json(op in "[a-z_]{0,12}", key in proptest::option::of(".{0,20}"), id in proptest::num::u64::ANY) {
        let body = serde_json::json!({"id": id, "op": op, "key": key, "keys": [key]});
        if let Ok(req) = decode_request(body.to_string().as_bytes()) {
            prop_assert_eq!(req.id, id);
        }
    }

    /// What a client encodes, the server decodes to the same request.
    #[test]
    fn a_typed_request_survives_the_wire(
        id in any::<u64>(),
        op in any_op(),
        min_lsn in proptest::option::of(any::<u64>()),
        shard_lsns in proptest::collection::vec(any::<u64>(), 0..3),
    ) {
        let req = Request { id, op, session: Session { min_lsn, shard_lsns } };
        let bytes = serde_json::to_vec(&req.to_raw()).unwrap();
        prop_assert_eq!(decode_request(&bytes).unwrap(), req);
    }
}

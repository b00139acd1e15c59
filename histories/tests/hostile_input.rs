//! No input makes a reader panic: random bytes, and random text made of the
//! characters EDN and JSON give meaning to (brackets, `#_`, quotes, escapes,
//! digits), after a valid history or alone, end in a history or an error,
//! in every format.

use std::io::Cursor;
use std::path::Path;

use faultline_histories::import::edn::{parse_jepsen_edn, EdnOptions};
use faultline_histories::import::porcupine::{parse_etcd_log, parse_kv_log};
use faultline_histories::read_history;
use proptest::prelude::*;

const VALID_EDN: &str = "{:type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0, :time 1}\n\
                         {:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [2]]], :process 0, :time 2}\n";

const VALID_JSONL: &str = "{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":1}\n";

/// Feeds `bytes` to every reader; a panic fails the test.
fn read_everywhere(bytes: &[u8]) {
    let path = Path::new("hostile");
    let _ = parse_jepsen_edn(Cursor::new(bytes), path, &EdnOptions::default());
    let _ = read_history(bytes, path);
    let _ = parse_etcd_log(bytes, path);
    let _ = parse_kv_log(bytes, path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        read_everywhere(&bytes);
    }

    #[test]
    fn random_syntax_never_panics(
        text in "[\\[\\](){}#_:\"\\\\ ,;\n0-9a-zN.+/^-]{0,200}",
        after_valid in any::<bool>(),
    ) {
        let prefix = if after_valid { VALID_EDN } else { "" };
        read_everywhere(format!("{prefix}{text}").as_bytes());
        let prefix = if after_valid { VALID_JSONL } else { "" };
        read_everywhere(format!("{prefix}{text}").as_bytes());
    }

    #[test]
    fn big_numbers_in_json_never_panic(digits in "-?[0-9]{17,40}(\\.[0-9]{0,3})?(e-?[0-9]{1,3})?") {
        let line = format!(
            "{{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":[{digits},\"{digits}\"]}}\n"
        );
        read_everywhere(line.as_bytes());
    }
}

//! Unit tests of the PostgreSQL client's outcome rules: which troubles
//! are fail and which are info, and the configuration checks. The client
//! against a live cluster is tested by the harness (`run_postgres.rs`).

use super::*;

fn committing(refused: bool, commit_sent: bool) -> Committing {
    Committing {
        error: "e".into(),
        refused,
        commit_sent,
        drop_connection: true,
    }
}

fn is_info(t: Trouble) -> bool {
    matches!(t, Trouble::Info(_))
}

#[test]
fn a_refused_statement_is_fail_even_at_commit() {
    // 40001 at COMMIT of a serializable transaction: rolled back.
    assert!(!is_info(classify(true, &committing(true, true))));
    assert!(!is_info(classify(true, &committing(true, false))));
}

#[test]
fn a_commit_without_an_answer_is_info_and_anything_before_it_fail() {
    assert!(is_info(classify(true, &committing(false, true))));
    assert!(!is_info(classify(true, &committing(false, false))));
    let late = Committing::timed_out(Duration::from_millis(5), true);
    assert!(is_info(classify(true, &late)));
    let early = Committing::timed_out(Duration::from_millis(5), false);
    assert!(
        !is_info(classify(true, &early)),
        "a transaction dropped before COMMIT rolls back"
    );
}

#[test]
fn a_read_is_fail_whatever_happened() {
    assert!(!is_info(classify(false, &committing(false, true))));
    let lost = Committing::timed_out(Duration::from_millis(5), true);
    assert!(!is_info(classify(false, &lost)));
}

#[test]
fn a_cas_mismatch_keeps_the_connection() {
    let m = Committing::mismatch();
    assert!(!m.drop_connection);
    assert!(matches!(classify(true, &m), Trouble::Fail(e) if e == CAS_MISMATCH));
}

#[test]
fn isolation_words_are_sql() {
    assert_eq!(PgIsolation::RepeatableRead.sql(), "REPEATABLE READ");
    let words: Vec<String> = [PgIsolation::ReadCommitted, PgIsolation::Serializable]
        .iter()
        .map(|i| serde_json::to_value(i).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(words, ["read-committed", "serializable"]);
}

#[test]
fn a_config_needs_routes_to_its_primary_and_home() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = PgClientConfig {
        routes: [("n1".to_owned(), addr)].into(),
        primary: Arc::new(RwLock::new("n1".into())),
        home: "n2".into(),
        reads: PgReads::Home,
        isolation: PgIsolation::ReadCommitted,
        seed: 1,
        timeout_ms: 100,
        connect_timeout_ms: 100,
    };
    assert!(PgClient::new(cfg.clone()).is_err());
    let ok = PgClientConfig {
        home: "n1".into(),
        ..cfg
    };
    assert!(PgClient::new(ok).is_ok());
}

#[tokio::test]
async fn an_operation_with_no_server_fails_and_is_never_ok() {
    // A port nobody listens on: the connection cannot be had, so nothing
    // was sent, and even a write is certainly not applied.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = PgClientConfig {
        routes: [("n1".to_owned(), port)].into(),
        primary: Arc::new(RwLock::new("n1".into())),
        home: "n1".into(),
        reads: PgReads::Primary,
        isolation: PgIsolation::Serializable,
        seed: 1,
        timeout_ms: 500,
        connect_timeout_ms: 500,
    };
    let mut c = PgClient::new(cfg).unwrap();
    let w = c
        .call(&Request::Write {
            key: "k".into(),
            value: 1,
        })
        .await;
    assert_eq!(w.outcome, Outcome::Fail, "{w:?}");
}

//! The `Client` boundary: send one operation to the system under test and
//! say honestly how it ended.
//!
//! - ok: it took effect; the value is its result, shaped for the history.
//! - fail: it certainly did not take effect (the server said so before doing
//!   anything, or the connection could not even be opened).
//! - info: we do not know. A timeout, a connection lost after the request
//!   may have left, a server that answers `unknown`: all are info, never
//!   fail, because a checker can only be as honest as its history.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::request::Request;

/// A future returned by a trait method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect.
    Ok,
    /// It certainly did not.
    Fail,
    /// Unknown.
    Info,
}

/// The end of one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// ok, fail or info.
    pub outcome: Outcome,
    /// On ok, the history's ok value; otherwise null.
    pub value: Value,
    /// The node that answered, if one did.
    pub node: Option<String>,
    /// Why it failed or is unknown.
    pub error: Option<String>,
}

impl Completion {
    /// An info completion with its reason.
    pub fn info(node: Option<String>, error: impl Into<String>) -> Completion {
        Completion {
            outcome: Outcome::Info,
            value: Value::Null,
            node,
            error: Some(error.into()),
        }
    }

    /// A fail completion with its reason.
    pub fn fail(node: Option<String>, error: impl Into<String>) -> Completion {
        Completion {
            outcome: Outcome::Fail,
            value: Value::Null,
            node,
            error: Some(error.into()),
        }
    }
}

/// One logical client's connection(s) to the cluster. One operation is in
/// flight at a time.
pub trait Client: Send {
    /// Sends `req` and waits (bounded by the client's timeout) for its end.
    fn call<'a>(&'a mut self, req: &'a Request) -> BoxFuture<'a, Completion>;

    /// Starts a new session: forget what the old one saw (a retired process
    /// ends its session).
    fn new_session(&mut self);
}

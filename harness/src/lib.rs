//! The faultline controller as a library: checking recorded histories and
//! running tests against a cluster. The `faultline` binary is a thin
//! command-line layer over this crate.
pub mod check;
pub mod check_txn;
pub mod models;
pub mod run;

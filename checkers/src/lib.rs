//! faultline's checkers: plain functions from a [`History`] to a [`Verdict`].
//!
//! Every checker here looks at every operation it claims to judge, and says
//! one of three things: valid; invalid, with the operations that prove it and
//! a sentence that explains it; or unknown, with the reason (a search past its
//! budget, a history that cannot decide). None of them guesses.
//!
//! Each verdict also says which operations the checker looked at (its
//! [`Coverage`]). A checker's "valid" vouches for those operations only:
//! the caller (the harness's file verdict) calls a history valid only when
//! every completed operation is covered by some checker.
//!
//! [`History`]: faultline_histories::History

pub mod linear;
pub mod model;
pub mod models;
pub mod session;
pub mod verdict;

pub use verdict::{Anomaly, Checker, Coverage, OpRef, Validity, Verdict};

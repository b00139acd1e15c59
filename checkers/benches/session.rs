//! Benchmark of the session checkers (being written).
fn main() {}

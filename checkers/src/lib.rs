//! Placeholder until the checkers land.

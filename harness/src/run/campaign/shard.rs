//! `faultline campaign FILE --shard I/N`: one of N runners' share of a
//! campaign, so a long campaign runs on N machines at once (a CI matrix).
//!
//! Numbering: the tests are numbered from 0 in the order the file lists
//! them, and shard `I` of `N` (I from 1 to N) takes every test whose number
//! modulo N is I-1: `--shard 1/3` runs tests 0, 3, 6, ...; `--shard 3/3`
//! runs 2, 5, 8, .... The shards together run every test exactly once.
//! Every test keeps the seed it has in the whole campaign (the campaign's
//! seed plus its number, unless it names its own), so a shard with the
//! campaign's seed reruns exactly those tests of the whole campaign.
//!
//! Taking every N-th test rather than N contiguous blocks spreads the
//! campaign's groups of similar tests (a row of the lab is often two tests
//! side by side, one long and one short) over the runners.

use std::fmt;
use std::str::FromStr;

/// Most shards a campaign may be split into; a campaign holds at most
/// [`super::MAX_TESTS`] tests, so more shards would be empty.
pub const MAX_SHARDS: usize = super::MAX_TESTS;

/// Why `--shard` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// Not of the form `I/N` with two whole numbers.
    #[error("--shard takes I/N (shard I of N, I from 1 to N), got {0:?}")]
    Malformed(String),
    /// I is 0 or past N, or N is 0 or past the bound.
    #[error("--shard {index}/{count}: I must be from 1 to N, and N from 1 to {MAX_SHARDS}")]
    OutOfRange {
        /// The I typed.
        index: usize,
        /// The N typed.
        count: usize,
    },
}

/// Shard `index` of `count`, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// I: which shard, from 1 to `count`.
    pub index: usize,
    /// N: how many shards the campaign is split into.
    pub count: usize,
}

impl Shard {
    /// The whole campaign: shard 1 of 1.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Whether this shard runs the test at `position` (from 0, in file order).
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The items this shard takes, each with its position in the whole list.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<(usize, T)> {
        items.into_iter().enumerate().filter(|(i, _)| self.takes(*i)).collect()
    }

    /// Whether this is the whole campaign.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed(s.to_owned());
        let (i, n) = s.trim().split_once('/').ok_or_else(malformed)?;
        let index: usize = i.trim().parse().map_err(|_| malformed())?;
        let count: usize = n.trim().parse().map_err(|_| malformed())?;
        if count == 0 || count > MAX_SHARDS || index == 0 || index > count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_together_take_every_position_exactly_once() {
        for total in [0, 1, 2, 5, 7, 30] {
            for count in 1..=8 {
                let mut seen = vec![0; total];
                for index in 1..=count {
                    let shard = Shard { index, count };
                    for (pos, item) in shard.select((0..total).collect()) {
                        assert_eq!(pos, item, "positions are the whole list's");
                        seen[pos] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{total} tests, {count} shards: {seen:?}");
            }
        }
    }

    #[test]
    fn shard_one_of_three_takes_every_third_test_from_the_first() {
        let s: Shard = "1/3".parse().unwrap();
        let taken: Vec<usize> = s.select((0..8).collect()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(taken, vec![0, 3, 6]);
        let s: Shard = "3/3".parse().unwrap();
        let taken: Vec<usize> = s.select((0..8).collect()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(taken, vec![2, 5]);
        assert_eq!(s.to_string(), "3/3");
    }

    #[test]
    fn malformed_and_out_of_range_shards_are_refused() {
        for bad in ["", "1", "1/", "/2", "a/b", "1/2/3", "-1/2"] {
            assert!(matches!(bad.parse::<Shard>(), Err(ShardError::Malformed(_))), "{bad}");
        }
        for bad in ["0/2", "3/2", "1/0", "0/0", "1/1001"] {
            assert!(
                matches!(bad.parse::<Shard>(), Err(ShardError::OutOfRange { .. })),
                "{bad}"
            );
        }
        assert_eq!("2/2".parse::<Shard>(), Ok(Shard { index: 2, count: 2 }));
        assert!(Shard::WHOLE.is_whole());
    }
}

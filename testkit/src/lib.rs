//! Test helpers shared by every crate's tests and benches; a
//! dev-dependency only, never linked into a shipped binary.
//!
//! One seed drives all randomness: [`rng`] is the one way a test or bench
//! builds a seeded generator, so a failure printed with its seed replays
//! the same draws on any machine (ChaCha8 is portable and stable across
//! `rand` releases, unlike `StdRng`). [`Below`] adds the one draw most
//! tests want, a number under a bound.

use rand::{Rng, SeedableRng};

/// The generator tests and benches use.
pub type TestRng = rand_chacha::ChaCha8Rng;

/// A generator seeded with `seed`: the same seed, the same draws.
pub fn rng(seed: u64) -> TestRng {
    TestRng::seed_from_u64(seed)
}

/// A uniform draw below a bound, on any generator.
pub trait Below {
    /// A number in `0..n`; `n` must be positive.
    fn below(&mut self, n: u64) -> u64;
}

impl<R: Rng + ?Sized> Below for R {
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to draw");
        self.gen_range(0..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_draws_and_seeds_differ() {
        let draws = |seed| (0..16).map(|_| rng(seed).below(1_000)).collect::<Vec<_>>();
        let mut a = rng(7);
        let mut b = rng(7);
        let from_a: Vec<u64> = (0..16).map(|_| a.below(1_000)).collect();
        let from_b: Vec<u64> = (0..16).map(|_| b.below(1_000)).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a, (0..16).map(|_| rng(8).below(1_000)).collect::<Vec<_>>());
        assert!(from_a.iter().all(|&x| x < 1_000));
        assert!(draws(7).iter().all(|&x| x == draws(7)[0]), "a fresh rng starts over");
    }
}

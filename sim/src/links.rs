//! The simulated network's links, shared by both worlds: which are cut,
//! how lossy and how slow the rest are.
//!
//! Promise: whether a message arrives and how late is drawn from the
//! world's RNG, in the same order for every message (the cut is checked
//! first and draws nothing, then the loss, then the delay), so a seed
//! replays.

use rand::rngs::StdRng;
use rand::Rng;

/// The links between `n` nodes.
pub(crate) struct Links {
    cut: Vec<Vec<bool>>,
    drop_percent: u32,
    delay_max_ms: u64,
}

impl Links {
    /// Every link up, nothing lost, messages 1 to 3 ms late.
    pub(crate) fn new(n: usize) -> Links {
        Links {
            cut: vec![vec![false; n]; n],
            drop_percent: 0,
            delay_max_ms: 3,
        }
    }

    /// Cuts every link between `side` and the other nodes (empty: heal).
    pub(crate) fn partition(&mut self, side: &[usize]) {
        let n = self.cut.len();
        for a in 0..n {
            for b in 0..n {
                self.cut[a][b] = side.contains(&a) != side.contains(&b);
            }
        }
    }

    pub(crate) fn set_lossy(&mut self, drop_percent: u32, delay_max_ms: u64) {
        self.drop_percent = drop_percent;
        self.delay_max_ms = delay_max_ms;
    }

    /// Where and how late a message from `from` to the node named
    /// `to_name` arrives (the index of `to_name` among `names`, the
    /// sender's name for the receiver, the delay), or None when it is
    /// lost. The receiver's name becomes the sender's: one string per
    /// message.
    pub(crate) fn route(
        &self,
        names: &[String],
        from: usize,
        mut to_name: String,
        rng: &mut StdRng,
    ) -> Option<(usize, String, u64)> {
        let to = names.iter().position(|n| *n == to_name)?;
        let delay = self.delay(from, to, rng)?;
        to_name.clear();
        to_name.push_str(&names[from]);
        Some((to, to_name, delay))
    }

    /// Whether the link from `from` to `to` is cut.
    pub(crate) fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut[from][to]
    }

    /// How late a message from `from` reaches `to`, or None when it is
    /// lost. Random delays reorder messages on a link.
    pub(crate) fn delay(&self, from: usize, to: usize, rng: &mut StdRng) -> Option<u64> {
        if self.cut[from][to] || rng.gen_range(0..100) < self.drop_percent {
            return None;
        }
        Some(rng.gen_range(1..=self.delay_max_ms))
    }
}

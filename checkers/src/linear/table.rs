//! The search's memory: [`StateTable`] interns model states to `u32` ids and
//! memoizes transitions; [`VisitedSet`] remembers every (set of linearized
//! operations, state) pair already explored (Lowe's cache).
//!
//! Both charge what they allocate to a [`Memory`] budget shared by all the
//! searches of one check, and refuse to grow past it, so a search that
//! would run out of memory stops with an answer of "unknown" instead of
//! being killed. The charge counts table capacity (what is really
//! allocated), not just occupancy.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::Model;

/// A fast non-cryptographic hasher (the Fx hash of rustc), for tables
/// keyed by integers and states that no adversary chooses.
#[derive(Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        for b in chunks.remainder() {
            self.add(u64::from(*b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    /// Fx leaves the low bits depending on the low bits of the input only;
    /// hash tables index by the low bits, so fold the high bits down.
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.hash)
    }
}

/// `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A memory budget in bytes, shared by the searches of one check.
#[derive(Debug)]
pub struct Memory {
    used: AtomicUsize,
    limit: usize,
}

/// The budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

impl Memory {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Memory {
        Memory {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` from the budget, or refuses if that would pass it.
    pub fn charge(&self, bytes: usize) -> Result<(), OutOfMemory> {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(OutOfMemory);
        }
        Ok(())
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Charges a budget and gives everything back when dropped. Takes from the
/// shared budget in chunks, so that two searches on two threads do not
/// fight over one atomic counter at every allocation.
pub struct Charge<'a> {
    memory: &'a Memory,
    /// Bytes in use by the owner.
    bytes: usize,
    /// Bytes taken from the shared budget (at least `bytes`).
    reserved: usize,
}

/// The smallest chunk taken from the shared budget at once.
const CHUNK: usize = 256 << 10;

impl<'a> Charge<'a> {
    pub fn new(memory: &'a Memory) -> Charge<'a> {
        Charge {
            memory,
            bytes: 0,
            reserved: 0,
        }
    }

    /// Takes `bytes`, or refuses if the shared budget cannot cover them.
    #[inline]
    pub fn add(&mut self, bytes: usize) -> Result<(), OutOfMemory> {
        if self.bytes + bytes > self.reserved {
            let need = self.bytes + bytes - self.reserved;
            let chunk = need
                .max(CHUNK)
                .min(self.memory.limit.saturating_sub(self.reserved).max(need));
            self.memory.charge(chunk)?;
            self.reserved += chunk;
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back `bytes` the owner freed.
    pub fn sub(&mut self, bytes: usize) {
        self.bytes -= bytes.min(self.bytes);
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.memory.release(self.reserved);
    }
}

/// No state: the transition is not allowed.
const NONE: u32 = u32::MAX;
/// Bytes per interned state or memo entry beyond the state itself, a
/// conservative estimate of hash-table overhead.
const ENTRY_OVERHEAD: usize = 32;

/// States (and four times as many transitions) a new [`StateTable`] has
/// room for before it first grows.
const INITIAL_STATES: usize = 16;

/// Interns the states of model `M` and memoizes `step` on ids (for
/// models with small states, see [`Model::small_state`], an array instead
/// of the hash table and no memo).
pub struct StateTable<'m, M: Model> {
    model: &'m M,
    states: Vec<M::State>,
    ids: FxMap<M::State, u32>,
    /// The id of each small state by its number, [`NONE`] where unseen.
    small: Vec<u32>,
    memo: FxMap<u64, u32>,
}

impl<'m, M: Model> StateTable<'m, M> {
    /// A table holding the model's initial state as id 0.
    pub fn new(model: &'m M, charge: &mut Charge) -> Result<StateTable<'m, M>, OutOfMemory> {
        // Sized for a small search up front: growing a hash table from
        // empty rehashes it several times, which was a tenth of the time of
        // the shrinker's many small re-checks. Small states need neither
        // hash table (nor their allocations, at every re-check).
        let init = model.init();
        let hashed = if model.small_state(&init).is_some() {
            0
        } else {
            INITIAL_STATES
        };
        let mut t = StateTable {
            model,
            states: Vec::with_capacity(INITIAL_STATES),
            ids: FxMap::with_capacity_and_hasher(hashed, Default::default()),
            small: Vec::with_capacity(INITIAL_STATES),
            memo: FxMap::with_capacity_and_hasher(hashed * 4, Default::default()),
        };
        t.intern(init, charge)?;
        Ok(t)
    }

    fn intern(&mut self, s: M::State, charge: &mut Charge) -> Result<u32, OutOfMemory> {
        let small = self.model.small_state(&s);
        let known = match small {
            Some(n) => self.small.get(n as usize).copied().filter(|&id| id != NONE),
            None => self.ids.get(&s).copied(),
        };
        if let Some(id) = known {
            return Ok(id);
        }
        charge.add(2 * std::mem::size_of::<M::State>() + ENTRY_OVERHEAD + self.model.state_heap_bytes(&s))?;
        let id = self.states.len() as u32;
        self.states.push(s.clone());
        match small {
            Some(n) => self.set_small(n as usize, id, charge)?,
            None => {
                self.ids.insert(s, id);
            }
        }
        Ok(id)
    }

    /// Records `id` as the id of small state number `n`, growing the array
    /// (at least doubling it) when `n` is past its end.
    fn set_small(&mut self, n: usize, id: u32, charge: &mut Charge) -> Result<(), OutOfMemory> {
        if n >= self.small.len() {
            let len = (n + 1).max(self.small.len() * 2).max(INITIAL_STATES);
            charge.add((len - self.small.len()) * std::mem::size_of::<u32>())?;
            self.small.resize(len, NONE);
        }
        self.small[n] = id;
        Ok(())
    }

    /// The state after operation number `op` (encoded as `encoded`) from
    /// state `from`, or `None`.
    #[inline]
    pub fn step(
        &mut self,
        from: u32,
        op: u32,
        encoded: &M::Op,
        charge: &mut Charge,
    ) -> Result<Option<u32>, OutOfMemory> {
        if self.model.small_state(&self.states[from as usize]).is_some() {
            return match self.model.step(&self.states[from as usize], encoded) {
                Some(s) => self.intern(s, charge).map(Some),
                None => Ok(None),
            };
        }
        let key = (u64::from(from) << 32) | u64::from(op);
        if let Some(&to) = self.memo.get(&key) {
            return Ok((to != NONE).then_some(to));
        }
        let to = match self.model.step(&self.states[from as usize], encoded) {
            Some(s) => self.intern(s, charge)?,
            None => NONE,
        };
        charge.add(ENTRY_OVERHEAD)?;
        self.memo.insert(key, to);
        Ok((to != NONE).then_some(to))
    }

    /// The state an id names.
    pub fn state(&self, id: u32) -> &M::State {
        &self.states[id as usize]
    }

    /// How many distinct states were reached.
    pub fn len(&self) -> usize {
        self.states.len()
    }
}

/// A set of (bitset of `words` words, state id) pairs. The table holds
/// 16-byte slots (the pair's hash; state + 1 and the entry's place in the
/// arena, 0 marking an empty slot), and the bitsets live in an arena in
/// insertion order, so probing touches little memory and growing rehashes
/// only the slots. The caller supplies the hash of the bitset (the search
/// keeps it up to date incrementally), so an insert costs one probe
/// sequence and, on a hash match, one comparison.
pub struct VisitedSet {
    words: usize,
    slots: Vec<[u64; 2]>,
    arena: Vec<u64>,
    len: usize,
    mask: usize,
}

/// The finalizer of MurmurHash3: every output bit depends on every input bit.
#[inline]
fn fold(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// A pseudo-random 64-bit key for item `i` (splitmix64), for Zobrist
/// hashing of sets: the hash of a set is the xor of its items' keys.
pub fn zobrist(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl VisitedSet {
    const INITIAL_SLOTS: usize = 64;

    /// An empty set for bitsets of `words` words.
    pub fn new(words: usize, charge: &mut Charge) -> Result<VisitedSet, OutOfMemory> {
        charge.add(Self::INITIAL_SLOTS * 16)?;
        Ok(VisitedSet {
            words,
            slots: vec![[0; 2]; Self::INITIAL_SLOTS],
            arena: Vec::new(),
            len: 0,
            mask: Self::INITIAL_SLOTS - 1,
        })
    }

    /// How many pairs it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds the pair (`bits_hash` being the Zobrist hash of `bits`); true
    /// if it was not there before.
    #[inline]
    pub fn insert(
        &mut self,
        bits: &[u64],
        bits_hash: u64,
        state: u32,
        charge: &mut Charge,
    ) -> Result<bool, OutOfMemory> {
        debug_assert_eq!(bits.len(), self.words);
        if (self.len + 1) * 4 > (self.mask + 1) * 3 {
            self.grow(charge)?;
        }
        let tag = u64::from(state) + 1;
        let h = fold(bits_hash ^ tag.wrapping_mul(SEED));
        let mut i = h as usize & self.mask;
        loop {
            let [slot_hash, packed] = self.slots[i];
            if packed == 0 {
                return self.put(i, h, tag, bits, charge).map(|()| true);
            }
            if slot_hash == h && packed >> 32 == tag {
                let at = (packed & 0xffff_ffff) as usize * self.words;
                if &self.arena[at..at + self.words] == bits {
                    return Ok(false);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Fills the empty slot `i`.
    fn put(&mut self, i: usize, h: u64, tag: u64, bits: &[u64], charge: &mut Charge) -> Result<(), OutOfMemory> {
        let before = self.arena.capacity();
        if self.arena.len() + bits.len() > before {
            let grown = (before * 2).max(bits.len() * 64);
            charge.add((grown - before) * 8)?;
            self.arena.reserve_exact(grown - self.arena.len());
        }
        let index = (self.arena.len() / self.words.max(1)) as u64;
        self.arena.extend_from_slice(bits);
        self.slots[i] = [h, tag << 32 | index];
        self.len += 1;
        Ok(())
    }

    fn grow(&mut self, charge: &mut Charge) -> Result<(), OutOfMemory> {
        let n = (self.mask + 1) * 2;
        charge.add(n * 16)?;
        let old = std::mem::replace(&mut self.slots, vec![[0; 2]; n]);
        self.mask = n - 1;
        for slot in old.iter().filter(|s| s[1] != 0) {
            let mut i = slot[0] as usize & self.mask;
            while self.slots[i][1] != 0 {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = *slot;
        }
        // The old table is freed now; give its bytes back.
        charge.sub(old.len() * 16);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_set_finds_what_it_holds_across_growth() {
        let mem = Memory::new(1 << 30);
        let mut charge = Charge::new(&mem);
        let mut set = VisitedSet::new(2, &mut charge).unwrap();
        for i in 0..1000u64 {
            assert!(set
                .insert(&[i, i * 7], zobrist(i), (i % 5) as u32, &mut charge)
                .unwrap());
        }
        for i in 0..1000u64 {
            assert!(!set
                .insert(&[i, i * 7], zobrist(i), (i % 5) as u32, &mut charge)
                .unwrap());
        }
        assert!(set.insert(&[1, 7], zobrist(1), 2, &mut charge).unwrap());
        assert_eq!(set.len(), 1001);
        assert!(charge.bytes > 0 && charge.reserved >= charge.bytes);
        drop(charge);
        assert_eq!(mem.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn memory_refuses_past_its_limit() {
        let mem = Memory::new(4000);
        let mut charge = Charge::new(&mem);
        let mut set = VisitedSet::new(1, &mut charge).unwrap();
        let refused = (0..1000u64).any(|i| set.insert(&[i], zobrist(i), 0, &mut charge).is_err());
        assert!(refused);
        assert!(mem.used.load(Ordering::Relaxed) <= 4000);
    }
}

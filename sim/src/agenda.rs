//! The world's event queue: a calendar of one bucket per simulated
//! millisecond, up to the run's last instant.
//!
//! Promise: events come out ordered by time, and events due at the same
//! millisecond in the order they were scheduled (the order a binary heap
//! keyed on (time, sequence number) gives, which is what keeps a seed's
//! history the same). An event due after the horizon is never handed out:
//! the run ends first. Scheduling and taking the next event cost the same
//! whatever the queue holds (a heap's pop was a tenth of a schedule's cost:
//! every client operation leaves a timeout behind in it).

/// Events queued at once in a usual run (a few hundred: each client's
/// pending timeout, messages in flight, ticks).
const SLOTS_EXPECTED: usize = 1024;

/// No slot: the end of a bucket's list.
const NONE: u32 = u32::MAX;

/// A queued event and the next one due at the same millisecond.
struct Slot<E> {
    event: Option<E>,
    next: u32,
}

/// Events by due time, for times `0..=horizon_ms`.
pub struct Agenda<E> {
    /// Per millisecond: the first and the last event due then (slots
    /// chained by `next`), `NONE` when there is none.
    buckets: Vec<(u32, u32)>,
    /// Every event's place; freed slots are reused, so a run allocates
    /// only while its queue grows.
    slots: Vec<Slot<E>>,
    free: Vec<u32>,
    /// The bucket being drained: nothing is due before it.
    now_ms: u64,
}

impl<E> Agenda<E> {
    /// An empty agenda for events due up to `horizon_ms` (inclusive).
    pub fn new(horizon_ms: u64) -> Agenda<E> {
        Agenda {
            buckets: vec![(NONE, NONE); horizon_ms as usize + 1],
            // Room for the queue of a usual run, grown past it.
            slots: Vec::with_capacity(SLOTS_EXPECTED),
            free: Vec::new(),
            now_ms: 0,
        }
    }

    /// Schedules `event` at `at_ms`; one due after the horizon is dropped
    /// (the run is over by then).
    pub fn push(&mut self, at_ms: u64, event: E) {
        assert!(
            at_ms >= self.now_ms,
            "an event scheduled in the past: {at_ms} < {}",
            self.now_ms
        );
        if at_ms as usize >= self.buckets.len() {
            return;
        }
        let slot = Slot {
            event: Some(event),
            next: NONE,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                assert!(self.slots.len() < NONE as usize, "too many events queued");
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let bucket = &mut self.buckets[at_ms as usize];
        match bucket.1 {
            NONE => *bucket = (i, i),
            tail => {
                self.slots[tail as usize].next = i;
                bucket.1 = i;
            }
        }
    }

    /// The next event and its time, or None when none is due up to the
    /// horizon.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        loop {
            let bucket = self.buckets.get_mut(self.now_ms as usize)?;
            if bucket.0 == NONE {
                self.now_ms += 1;
                continue;
            }
            let i = bucket.0;
            let slot = &mut self.slots[i as usize];
            *bucket = match slot.next {
                NONE => (NONE, NONE),
                next => (next, bucket.1),
            };
            let event = slot.event.take().expect("a queued slot holds its event");
            self.free.push(i);
            return Some((self.now_ms, event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Agenda;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// The agenda hands events out in the order of a heap keyed on (time,
    /// sequence number), while events are added as others come out.
    #[test]
    fn same_order_as_a_heap_on_time_then_sequence() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut agenda = Agenda::new(500);
        let mut heap = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |agenda: &mut Agenda<u64>, heap: &mut BinaryHeap<_>, at: u64| {
            seq += 1;
            agenda.push(at, seq);
            if at <= 500 {
                heap.push(Reverse((at, seq)));
            }
        };
        for _ in 0..50 {
            push(&mut agenda, &mut heap, rng.gen_range(0..600));
        }
        let mut popped = 0;
        while let Some((at, event)) = agenda.pop() {
            let Reverse((want_at, want)) = heap.pop().expect("the heap has one too");
            assert_eq!((at, event), (want_at, want));
            popped += 1;
            if popped < 2_000 {
                for _ in 0..rng.gen_range(0..3) {
                    push(&mut agenda, &mut heap, at + rng.gen_range(0..20));
                }
            }
        }
        assert!(heap.is_empty(), "the agenda ended early");
        assert!(popped > 1_000, "the test drained the queue too soon: {popped}");
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_in_the_past_is_refused() {
        let mut agenda = Agenda::new(10);
        agenda.push(5, ());
        agenda.pop();
        agenda.push(4, ());
    }
}

//! The node's open connections, for the connection limit and idle reaping.
//!
//! Promise: a full node still admits a new client. At `max_connections`
//! the client connection that has been idle the longest (no request in
//! flight, no reply waiting to be written) is told to close and the new
//! one is admitted at once; only when every connection is busy (or a peer
//! link) is the new one refused. So idle connections, however many, never
//! lock clients out, and a busy client is never cut off mid-request.
//! Separately, each connection closes itself after `idle_timeout_ms` of
//! idleness (see `node`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, Semaphore};

/// One open connection as the table sees it.
pub struct ConnState {
    id: u64,
    epoch: Instant,
    last_active_ms: AtomicU64,
    peer: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
    inflight: Arc<Semaphore>,
    inflight_max: usize,
}

impl ConnState {
    /// Records activity (a frame arrived).
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn quiet_for(&self) -> std::time::Duration {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now_ms.saturating_sub(self.idle_since_ms()))
    }

    /// No request in flight and no reply waiting to be written.
    pub fn is_idle(&self) -> bool {
        self.inflight.available_permits() == self.inflight_max
    }

    /// The connection's in-flight slots (one per request being served or
    /// reply not yet written).
    pub fn inflight(&self) -> &Arc<Semaphore> {
        &self.inflight
    }

    /// Marks the connection as a peer link: never evicted for a client.
    pub fn set_peer(&self) {
        self.peer.store(true, Ordering::Relaxed);
    }

    /// Whether the table asked this connection to close.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Completes when the table asks this connection to close.
    pub async fn evicted(&self) {
        if self.is_evicted() {
            return;
        }
        self.evict.notified().await;
    }

    fn idle_since_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }
}

/// What the table decided about a new connection.
pub enum Admission {
    /// Admitted; the connection is registered until the guard drops.
    Admitted(ConnGuard),
    /// Admitted in place of the connection idle the longest, now closing.
    Replaced {
        /// The new connection.
        guard: ConnGuard,
        /// How long the closed one had been idle, in milliseconds.
        idle_ms: u64,
    },
    /// Every connection is busy.
    Refused,
}

/// The open connections.
pub struct ConnTable {
    max: usize,
    inflight_max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// Keeps a connection registered; unregisters it on drop.
pub struct ConnGuard {
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl ConnGuard {
    /// The connection's state.
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.state.id);
    }
}

impl ConnTable {
    /// A table admitting `max` connections of `inflight_max` requests each.
    pub fn new(max: usize, inflight_max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            inflight_max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // The map stays consistent even if a holder panicked: every
        // critical section is a single insert, remove or scan.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a new connection, closing the longest idle one when full.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut conns = self.lock();
        let mut idle_ms = None;
        if conns.len() >= self.max {
            let Some(victim) = longest_idle(&conns) else {
                return Admission::Refused;
            };
            victim.evicted.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
            let now_ms = self.epoch.elapsed().as_millis() as u64;
            idle_ms = Some(now_ms.saturating_sub(victim.idle_since_ms()));
            // The victim leaves the table now: it counts no more, and is
            // not picked twice while it closes.
            let id = victim.id;
            conns.remove(&id);
        }
        let state = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            last_active_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            peer: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            inflight: Arc::new(Semaphore::new(self.inflight_max)),
            inflight_max: self.inflight_max,
        });
        conns.insert(state.id, state.clone());
        let guard = ConnGuard {
            table: self.clone(),
            state,
        };
        match idle_ms {
            Some(idle_ms) => Admission::Replaced { guard, idle_ms },
            None => Admission::Admitted(guard),
        }
    }
}

/// The idle client connection with the oldest activity.
fn longest_idle(conns: &HashMap<u64, Arc<ConnState>>) -> Option<Arc<ConnState>> {
    conns
        .values()
        .filter(|c| !c.peer.load(Ordering::Relaxed) && c.is_idle())
        .min_by_key(|c| (c.idle_since_ms(), c.id))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> ConnGuard {
        match a {
            Admission::Admitted(g) | Admission::Replaced { guard: g, .. } => g,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_full_table_replaces_the_longest_idle_client() {
        let table = ConnTable::new(3, 2);
        let a = admitted(table.admit());
        let b = admitted(table.admit());
        let c = admitted(table.admit());
        // a is busy, b is a peer link, c is idle but was active last.
        let _slot = a.state().inflight().clone().try_acquire_owned().unwrap();
        b.state().set_peer();
        std::thread::sleep(std::time::Duration::from_millis(5));
        c.state().touch();
        let d = match table.admit() {
            Admission::Replaced { guard, .. } => guard,
            _ => panic!("expected c to make room"),
        };
        assert!(c.state().is_evicted());
        assert!(!a.state().is_evicted() && !b.state().is_evicted());
        assert_eq!(table.len(), 3);
        // Now a is busy, b a peer and d idle: d goes next, then nobody.
        let _e = admitted(table.admit());
        assert!(d.state().is_evicted());
        let _slot_e = _e.state().inflight().clone().try_acquire_owned().unwrap();
        assert!(matches!(table.admit(), Admission::Refused));
        drop(c);
        assert_eq!(table.len(), 3, "an evicted connection no longer counts");
    }
}

//! Bytes in flight: what one connection, and the node as a whole, may hold
//! in requests being served and replies not yet written.
//!
//! Promises:
//! - A frame waiting in a connection's outgoing queue carries what it holds
//!   ([`Outgoing`]): its in-flight slot and its bytes are released only once
//!   the frame is written, so a client that stops reading its replies stops
//!   being read from, instead of piling replies up in the node.
//! - Large items (over [`SMALL_BYTES`]) count against the connection's
//!   budget (`conn_bytes_max`) and the node's (`node_bytes_max`); small
//!   ones are bounded by count (`max_inflight_per_conn`), which keeps the
//!   common path of small reads and writes free of any accounting.
//! - A reply that may be large (a `multi_read`) is counted at its largest
//!   possible size before it is built, so the node never builds a reply it
//!   could not hold.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Items up to this size are bounded by count alone.
pub const SMALL_BYTES: usize = 4096;

/// Why bytes could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The connection holds too much: its client is not reading replies.
    #[error("this connection already holds close to {max_bytes} bytes of requests and unread replies; read the replies first")]
    Connection {
        /// The connection's limit.
        max_bytes: usize,
    },
    /// The node as a whole holds too much.
    #[error("server busy: all connections together hold close to {max_bytes} bytes of large requests and replies")]
    Node {
        /// The node's limit.
        max_bytes: usize,
    },
    /// More than a whole budget was asked for.
    #[error("{bytes} bytes exceed the limit of {max_bytes} in flight")]
    TooLarge {
        /// Bytes asked for.
        bytes: usize,
        /// The smaller limit.
        max_bytes: usize,
    },
}

/// A byte budget of one kind: a semaphore whose permits are bytes.
#[derive(Clone)]
struct Pool {
    sem: Arc<Semaphore>,
    max_bytes: usize,
}

impl Pool {
    fn new(max_bytes: usize) -> Pool {
        Pool {
            sem: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        }
    }

    fn permits(bytes: usize) -> u32 {
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The node-wide budget, shared by every connection.
#[derive(Clone)]
pub struct NodeBudget(Pool);

impl NodeBudget {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: usize) -> NodeBudget {
        NodeBudget(Pool::new(max_bytes))
    }
}

/// One connection's budgets: its own, and the node's.
#[derive(Clone)]
pub struct Budgets {
    conn: Pool,
    node: Pool,
}

/// Bytes taken from both budgets; given back on drop.
#[derive(Default)]
pub struct Held {
    conn: Option<OwnedSemaphorePermit>,
    node: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.conn.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Gives back everything above `bytes` (a reply counted at its largest
    /// possible size, once its real size is known).
    pub fn shrink_to(&mut self, bytes: usize) {
        for permit in [&mut self.conn, &mut self.node].into_iter().flatten() {
            let excess = permit.num_permits().saturating_sub(bytes);
            if excess > 0 {
                drop(permit.split(excess));
            }
        }
    }
}

impl Budgets {
    /// A fresh connection's budget of `conn_max_bytes`, within `node`.
    pub fn new(conn_max_bytes: usize, node: &NodeBudget) -> Budgets {
        Budgets {
            conn: Pool::new(conn_max_bytes),
            node: node.0.clone(),
        }
    }

    fn check_size(&self, bytes: usize) -> Result<(), BudgetError> {
        let max_bytes = self.conn.max_bytes.min(self.node.max_bytes);
        if bytes > max_bytes {
            return Err(BudgetError::TooLarge { bytes, max_bytes });
        }
        Ok(())
    }

    /// Takes `bytes` now or not at all (small items take nothing).
    pub fn try_take(&self, bytes: usize) -> Result<Held, BudgetError> {
        if bytes <= SMALL_BYTES {
            return Ok(Held::default());
        }
        self.check_size(bytes)?;
        let n = Pool::permits(bytes);
        let conn = self
            .conn
            .sem
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BudgetError::Connection {
                max_bytes: self.conn.max_bytes,
            })?;
        self.with_node(conn, n)
    }

    /// Takes `bytes`, waiting at most `wait` for the connection's own
    /// replies to drain (back-pressure on a client that pipelines faster
    /// than it reads), but never for other connections: when the node's
    /// budget is spent the request is refused at once, so one abusive
    /// client cannot make a well-behaved one wait.
    pub async fn take(&self, bytes: usize, wait: Duration) -> Result<Held, BudgetError> {
        if bytes <= SMALL_BYTES {
            return Ok(Held::default());
        }
        self.check_size(bytes)?;
        let n = Pool::permits(bytes);
        let acquire = self.conn.sem.clone().acquire_many_owned(n);
        let conn = match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(BudgetError::Connection {
                    max_bytes: self.conn.max_bytes,
                })
            }
        };
        self.with_node(conn, n)
    }

    /// The node's share of `n` permits beside the connection's, never
    /// waited for: a spent node budget refuses the request at once.
    fn with_node(&self, conn: OwnedSemaphorePermit, n: u32) -> Result<Held, BudgetError> {
        let node = self
            .node
            .sem
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BudgetError::Node {
                max_bytes: self.node.max_bytes,
            })?;
        Ok(Held {
            conn: Some(conn),
            node: Some(node),
        })
    }
}

/// What a queued frame holds until it is written.
#[derive(Default)]
pub struct Hold {
    /// The request's in-flight slot on its connection.
    pub slot: Option<OwnedSemaphorePermit>,
    /// The reply's bytes.
    pub bytes: Held,
}

/// One frame for a connection's writer.
pub struct Outgoing {
    /// Length prefix and body.
    pub frame: Vec<u8>,
    /// Released once the frame is written.
    pub hold: Hold,
}

impl Outgoing {
    /// A frame that holds nothing (an error about a broken frame).
    pub fn bare(frame: Vec<u8>) -> Outgoing {
        Outgoing {
            frame,
            hold: Hold::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_items_are_free_and_large_ones_are_bounded() {
        let node = NodeBudget::new(8 * SMALL_BYTES);
        let a = Budgets::new(4 * SMALL_BYTES, &node);
        let b = Budgets::new(4 * SMALL_BYTES, &node);
        assert_eq!(a.try_take(SMALL_BYTES).unwrap().bytes(), 0);
        let a1 = a.try_take(3 * SMALL_BYTES).unwrap();
        assert!(matches!(
            a.try_take(2 * SMALL_BYTES),
            Err(BudgetError::Connection { .. })
        ));
        let b1 = b.try_take(4 * SMALL_BYTES).unwrap();
        // a has room of its own, but the node is spent: 7 of 8 units taken.
        let c = Budgets::new(4 * SMALL_BYTES, &node);
        assert!(matches!(c.try_take(2 * SMALL_BYTES), Err(BudgetError::Node { .. })));
        drop((a1, b1));
        assert!(c.try_take(4 * SMALL_BYTES).is_ok());
        assert!(matches!(c.try_take(5 * SMALL_BYTES), Err(BudgetError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn shrinking_gives_the_excess_back_and_waits_are_bounded() {
        let node = NodeBudget::new(8 * SMALL_BYTES);
        let a = Budgets::new(4 * SMALL_BYTES, &node);
        let mut held = a.take(4 * SMALL_BYTES, Duration::from_millis(10)).await.unwrap();
        let waited = a.take(2 * SMALL_BYTES, Duration::from_millis(50)).await;
        assert!(matches!(waited, Err(BudgetError::Connection { .. })));
        held.shrink_to(2 * SMALL_BYTES);
        assert_eq!(held.bytes(), 2 * SMALL_BYTES);
        assert!(a.take(2 * SMALL_BYTES, Duration::from_millis(50)).await.is_ok());
    }
}

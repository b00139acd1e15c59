//! The `Net` boundary: cut, slow and heal the links between endpoints.
//!
//! An endpoint is a node (`n1`) or a client (`c0`). A [`Link`] is directed:
//! it names the bytes that flow *from* one endpoint *to* another, whichever
//! side opened the connection. Cutting `n1 -> n2` therefore stops what n1
//! sends to n2 on every connection between them while n2's bytes still reach
//! n1, which is exactly a one-way partition. A cut holds bytes back the way a
//! real partition does (TCP retransmits, the peer sees silence and times
//! out); it never resets a connection. Healing restores flow.
//!
//! Implementations: [`crate::proxy::ProxyMesh`] (userspace proxies, no root);
//! iptables rules on each node come with namespaces and VMs.

use std::collections::BTreeSet;

use crate::error::NetError;

/// Bytes flowing from one endpoint to another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Link {
    /// Endpoint that sends.
    pub from: String,
    /// Endpoint that receives.
    pub to: String,
}

impl Link {
    /// The link carrying bytes from `from` to `to`.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Link {
        Link {
            from: from.into(),
            to: to.into(),
        }
    }
}

/// The most delay a link may be given: past it a link is as good as cut, so
/// say cut.
pub const MAX_DELAY_MS: u64 = 60_000;

/// What is wrong with one direction of a link. The default is a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LinkFault {
    /// Bytes are held until the link heals.
    pub cut: bool,
    /// Every byte arrives this much late.
    pub delay_ms: u64,
    /// The fraction of segments lost (0..=1). TCP retransmits a lost
    /// segment, so a loss costs a retransmission timeout rather than bytes.
    pub loss: f64,
}

impl LinkFault {
    /// A cut link.
    pub const CUT: LinkFault = LinkFault {
        cut: true,
        delay_ms: 0,
        loss: 0.0,
    };

    /// Whether the link is healthy.
    pub fn is_healthy(&self) -> bool {
        !self.cut && self.delay_ms == 0 && self.loss == 0.0
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), NetError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(NetError::BadFault(format!("loss {} is not within 0..=1", self.loss)));
        }
        if self.delay_ms > MAX_DELAY_MS {
            return Err(NetError::BadFault(format!(
                "delay {} ms exceeds {MAX_DELAY_MS} ms",
                self.delay_ms
            )));
        }
        Ok(())
    }
}

/// Cuts, slows and heals links between endpoints.
pub trait Net: Send + Sync {
    /// Sets the fault of one directed link, replacing what it had.
    fn set(&self, link: &Link, fault: LinkFault) -> Result<(), NetError>;

    /// Cuts exactly the given links and heals every other cut (delays and
    /// losses on other links are kept).
    fn partition(&self, cuts: &BTreeSet<Link>) -> Result<(), NetError>;

    /// Restores every link to health; an error says a node may still hold
    /// a fault (its rules could not be replaced).
    fn heal_all(&self) -> Result<(), NetError>;

    /// The links that currently have a fault.
    fn faulty(&self) -> Vec<(Link, LinkFault)>;
}

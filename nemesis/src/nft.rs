//! A `Net` made of nftables rules on the nodes themselves, for nodes that
//! have an address of their own: network namespaces on this machine, or
//! remote machines over SSH. The rules go through `Control`, so one
//! implementation drives both.
//!
//! A cut link `a -> b` is a DROP rule on `b`'s input for packets whose
//! source is `a`'s address. Dropping on the receiver's input is what a real
//! partition does: the packet leaves, vanishes, and the sender's TCP
//! retransmits into silence. (A drop on the sender's output would instead
//! make `send` fail at once with EPERM, which no real network does.) A
//! one-way cut is a rule on one side only. Packet loss is a random-drop rule
//! (`numgen random`); delay is not something nftables can do without netem,
//! so it is refused here and stays the proxy mesh's job.
//!
//! Each node carries one table, `inet faultline`, rewritten whole in one
//! `nft -f -` transaction on every change (it is created and deleted in the
//! same transaction, so the swap is atomic whether or not it existed).
//! [`NftNet::remove`] deletes the table from every node; dropping the
//! `NftNet` does the same.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::{CommandSpec, Control};
use crate::error::NetError;
use crate::net::{Link, LinkFault, Net};

/// The table every rule lives in, on every node.
pub const TABLE: &str = "faultline";
/// How long one `nft` invocation may take.
const NFT_TIMEOUT_MS: u64 = 10_000;
/// Random-drop rules compare against this modulus.
const LOSS_MODULUS: u32 = 10_000;

/// nftables rules on each node, applied through `Control`.
pub struct NftNet {
    control: Arc<dyn Control>,
    /// Node name to the address its peers see its packets come from.
    addrs: BTreeMap<String, IpAddr>,
    /// The `nft` program on the nodes.
    nft: String,
    faults: Mutex<BTreeMap<Link, LinkFault>>,
    removed: AtomicBool,
}

impl NftNet {
    /// Rules for `addrs` (node name to address), applied with `nft` through
    /// `control`. Nothing is applied until the first fault.
    pub fn new(control: Arc<dyn Control>, addrs: BTreeMap<String, IpAddr>) -> NftNet {
        NftNet {
            control,
            addrs,
            nft: "nft".into(),
            faults: Mutex::new(BTreeMap::new()),
            removed: AtomicBool::new(false),
        }
    }

    fn check_link(&self, link: &Link) -> Result<(), NetError> {
        if self.addrs.contains_key(&link.from) && self.addrs.contains_key(&link.to) && link.from != link.to {
            return Ok(());
        }
        Err(NetError::UnknownLink {
            from: link.from.clone(),
            to: link.to.clone(),
        })
    }

    /// The table for `node`: a drop rule for every cut link into it and a
    /// random-drop rule for every lossy one.
    pub fn ruleset(&self, node: &str) -> String {
        let faults = self.faults.lock().expect("nft faults");
        render(node, &self.addrs, &faults)
    }

    fn apply(&self, node: &str) -> Result<(), NetError> {
        let rules = self.ruleset(node);
        self.removed.store(false, Ordering::SeqCst);
        self.nft(node, rules)
    }

    fn nft(&self, node: &str, script: String) -> Result<(), NetError> {
        let cmd = CommandSpec::new(&self.nft, &["-f", "-"], Duration::from_millis(NFT_TIMEOUT_MS)).with_stdin(script);
        let out = self.control.run(node, &cmd).map_err(|e| NetError::Apply {
            node: node.to_owned(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(NetError::Apply {
                node: node.to_owned(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    fn apply_all(&self, nodes: impl IntoIterator<Item = String>) -> Result<(), NetError> {
        let mut first = None;
        for node in nodes {
            if let Err(e) = self.apply(&node) {
                tracing::warn!(node, error = %e, "nftables rules not applied");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Deletes the table from every node (best effort, each failure
    /// logged). Once is enough: later calls, and the drop, do nothing.
    pub fn remove(&self) {
        self.faults.lock().expect("nft faults").clear();
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        for node in self.addrs.keys() {
            let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
            if let Err(e) = self.nft(node, script) {
                tracing::warn!(node, error = %e, "could not delete the nftables table");
            }
        }
    }
}

/// The whole table for `node` as an `nft -f` script.
fn render(node: &str, addrs: &BTreeMap<String, IpAddr>, faults: &BTreeMap<Link, LinkFault>) -> String {
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    s += "  chain input {\n    type filter hook input priority -10; policy accept;\n";
    for (link, fault) in faults.iter().filter(|(l, _)| l.to == node) {
        let Some(from) = addrs.get(&link.from) else { continue };
        let family = if from.is_ipv4() { "ip" } else { "ip6" };
        if fault.cut {
            let _ = writeln!(s, "    {family} saddr {from} drop");
        } else if fault.loss > 0.0 {
            let below = (fault.loss * f64::from(LOSS_MODULUS)).round() as u32;
            let _ = writeln!(
                s,
                "    {family} saddr {from} numgen random mod {LOSS_MODULUS} < {below} drop"
            );
        }
    }
    s += "  }\n}\n";
    s
}

impl Net for NftNet {
    fn set(&self, link: &Link, fault: LinkFault) -> Result<(), NetError> {
        self.check_link(link)?;
        fault.validate()?;
        if fault.delay_ms > 0 {
            return Err(NetError::Unsupported(
                "delaying a link needs the proxy mesh (--net proxy); nftables can only cut or drop".into(),
            ));
        }
        {
            let mut faults = self.faults.lock().expect("nft faults");
            if fault.is_healthy() {
                faults.remove(link);
            } else {
                faults.insert(link.clone(), fault);
            }
        }
        self.apply(&link.to)
    }

    fn partition(&self, cuts: &BTreeSet<Link>) -> Result<(), NetError> {
        for link in cuts {
            self.check_link(link)?;
        }
        let touched: BTreeSet<String> = {
            let mut faults = self.faults.lock().expect("nft faults");
            let mut touched: BTreeSet<String> = faults.keys().map(|l| l.to.clone()).collect();
            faults.retain(|l, f| {
                f.cut = cuts.contains(l);
                !f.is_healthy()
            });
            for link in cuts {
                faults.entry(link.clone()).or_default().cut = true;
            }
            touched.extend(cuts.iter().map(|l| l.to.clone()));
            touched
        };
        self.apply_all(touched)
    }

    fn heal_all(&self) -> Result<(), NetError> {
        self.faults.lock().expect("nft faults").clear();
        // Every node, not only those with recorded faults: a rule left by a
        // half-applied change must not outlive the test either.
        self.apply_all(self.addrs.keys().cloned())
    }

    fn faulty(&self) -> Vec<(Link, LinkFault)> {
        let faults = self.faults.lock().expect("nft faults");
        faults.iter().map(|(l, f)| (l.clone(), *f)).collect()
    }
}

impl Drop for NftNet {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> BTreeMap<String, IpAddr> {
        [("n1", "10.1.0.2"), ("n2", "10.1.0.3"), ("n3", "10.1.0.4")]
            .into_iter()
            .map(|(n, a)| (n.to_owned(), a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_cut_is_a_drop_on_the_receivers_input_only() {
        let mut faults = BTreeMap::new();
        faults.insert(Link::new("n1", "n2"), LinkFault::CUT);
        let n2 = render("n2", &addrs(), &faults);
        assert!(n2.contains("ip saddr 10.1.0.2 drop"), "{n2}");
        assert!(n2.contains("hook input"), "{n2}");
        let n1 = render("n1", &addrs(), &faults);
        assert!(!n1.contains("drop"), "the sender keeps no rule: {n1}");
    }

    #[test]
    fn loss_is_a_random_drop_and_the_script_replaces_the_table_atomically() {
        let mut faults = BTreeMap::new();
        faults.insert(
            Link::new("n3", "n1"),
            LinkFault {
                loss: 0.25,
                ..LinkFault::default()
            },
        );
        let s = render("n1", &addrs(), &faults);
        assert!(
            s.contains("ip saddr 10.1.0.4 numgen random mod 10000 < 2500 drop"),
            "{s}"
        );
        assert!(
            s.starts_with("table inet faultline\ndelete table inet faultline\n"),
            "{s}"
        );
    }
}

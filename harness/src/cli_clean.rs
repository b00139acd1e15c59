//! `faultline clean`: removes what runs that died left behind.
//!
//! A run registers its namespaces, bridge, disk-fault mounts (absolute
//! paths) and remote machines under `/run/faultline/` before it creates or
//! starts anything, with the pid of its harness. `clean` removes every
//! registered run whose harness is gone: its dead FUSE mounts (lazily),
//! namespaces and bridge, and over SSH the daemons it started, the mounts
//! under its folders and the `inet faultline` table on each machine (a
//! machine it cannot reach is named, and the run stays registered). Any
//! `fl-XXXXXX` namespace or bridge that no registration claims goes too,
//! and so do PostgreSQL backends whose postmaster is gone (a paused node's);
//! runs that are still alive are left alone and listed.

use clap::Args;

/// Flags of `faultline clean`.
#[derive(Args, Debug)]
pub struct CleanArgs {}

/// `faultline clean`: 0 when everything found was removed, 3 otherwise.
pub fn run(_args: CleanArgs) -> anyhow::Result<u8> {
    let report = faultline_nemesis::netns::clean_leftovers_with(&mut faultline_harness::run::remote::clean_remote);
    for id in &report.removed {
        outln!("removed run {id}");
    }
    for line in &report.remote {
        println!("{line}");
    }
    for name in &report.strays {
        outln!("removed unregistered {name}");
    }
    let orphans = faultline_harness::run::postgres::clean_orphans();
    for p in &orphans {
        outln!("removed orphaned PostgreSQL process {p}");
    }
    for id in &report.alive {
        outln!("left run {id} alone: its harness is still running");
    }
    for e in &report.errors {
        eprintln!("faultline: could not remove {e}");
    }
    if report.removed.is_empty() && report.strays.is_empty() && report.errors.is_empty() && orphans.is_empty() {
        outln!("nothing to clean");
    }
    Ok(if report.errors.is_empty() { 0 } else { 3 })
}

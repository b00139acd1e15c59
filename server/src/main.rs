//! The `faultline-server` binary: parses flags or a TOML file into a
//! validated [`Config`], sets up structured logging, and runs one node until
//! it is killed. Errors print their chain and exit with code 2 (bad
//! configuration) or 1 (runtime failure).

use anyhow::Context;
use clap::Parser;
use faultline_server::config::{Config, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One node of the faultline replicated key-value server.
#[derive(Parser, Debug)]
#[command(name = "faultline-server", version)]
struct Args {
    /// TOML config file (flags given too override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id, e.g. n1.
    #[arg(long)]
    node: Option<String>,
    /// Address to listen on for clients and peers, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: Option<String>,
    /// Directory for the log and snapshots.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A peer as id=host:port (repeat for each peer); may point at a proxy.
    #[arg(long = "peer", value_name = "ID=ADDR")]
    peers: Vec<String>,
    /// Settings as k=v,k=v (e.g. ack=none,reads=follower,replay_delay_ms=50).
    #[arg(long, default_value = "")]
    settings: String,
}

fn build_config(args: Args) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text)?
        }
        None => Config {
            node_id: args.node.clone().context("--node is required")?,
            listen: args
                .listen
                .as_deref()
                .context("--listen is required")?
                .parse()
                .context("--listen must be ip:port")?,
            data_dir: args.data_dir.clone().context("--data-dir is required")?,
            peers: BTreeMap::new(),
            settings: Settings::default(),
        },
    };
    if let Some(n) = args.node {
        cfg.node_id = n;
    }
    if let Some(l) = args.listen {
        cfg.listen = l.parse().context("--listen must be ip:port")?;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    for p in &args.peers {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("--peer {p:?} must be id=host:port"))?;
        cfg.peers.insert(id.to_string(), addr.to_string());
    }
    cfg.settings.apply_str(&args.settings)?;
    Ok(cfg.validate()?)
}

/// Descriptors the node needs besides its connections: the log, the
/// listener, peer links, and margin.
const FD_RESERVE: u64 = 64;

/// Raises the soft limit on open files to the hard one: the default soft
/// limit (often 1024) is below `max_connections`, and a node out of
/// descriptors cannot accept even the client that would replace an idle
/// one. Says so when the hard limit is still too low.
fn raise_fd_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    let needed = max_connections as u64 + FD_RESERVE;
    if lim.rlim_cur < needed {
        eprintln!(
            "faultline-server: warning: {} open files allowed, max_connections={max_connections} needs {needed}",
            lim.rlim_cur
        );
    }
}

fn main() {
    let args = Args::parse();
    let cfg = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline-server: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    raise_fd_limit(cfg.settings.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline-server: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    // One machine-readable line on stdout, so a harness that asked for port
    // 0 learns the address without racing for a free port.
    let announce = |addr| println!("faultline-server listening on {addr}");
    if let Err(e) = runtime.block_on(faultline_server::node::run(cfg, announce)) {
        eprintln!("faultline-server: {e:#}");
        std::process::exit(1);
    }
}

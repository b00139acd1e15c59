//! A running cluster: where its nodes live (the backend), what joins them,
//! and the database on them.
//!
//! Backends, each a [`Placement`]: the userspace proxy mesh on loopback
//! (no root), a network namespace per node on a bridge (root; partitions
//! are nftables drops), or remote machines over SSH (nftables on each, the
//! binaries uploaded, the logs downloaded at the end). The database is a
//! [`Db`]: faultline-server, etcd or Redis. Disks and clocks, where the
//! nemesis asks for them, come from [`super::surroundings`].
//!
//! [`Cluster::stop`] stops the nodes, unmounts their disks, downloads
//! remote logs, and removes what joined them; every piece also cleans up
//! when dropped, so a panic leaves nothing behind either.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::{LocalControl, Net, NetnsCluster, NftNet, ProxyMesh, Surroundings};
use faultline_workloads::{Client, ReadRouting};
use serde_json::{json, Value};

use super::db::{self, ClientSpec, Db, DbError, Layout, ServerDb};
use super::store::Store;
use super::{
    etcd, postgres, redis, surroundings, DbConfig, DbKind, NetKind, RunConfig, RunEnv, RunError, READY_TIMEOUT_MS,
};

/// The ports nodes listen on inside their own namespaces (each namespace
/// has a port space of its own, so no two runs or nodes collide): the main
/// one, and the second one etcd uses for its peers.
pub const NETNS_PORTS: [u16; 2] = [7000, 7001];

/// A running cluster: nodes, the links between them, and how clients reach
/// each node.
pub struct Cluster {
    /// The links (`Net`): the proxy mesh, or nftables in each namespace.
    pub net: Arc<dyn Net>,
    /// The nodes (`Db`).
    pub db: Arc<dyn Db>,
    /// Node names.
    pub nodes: Vec<String>,
    /// Disks and clocks, for the nemesis.
    pub surroundings: Arc<dyn Surroundings>,
    // Dropped after `db` (declaration order): the nodes stop before their
    // disks are unmounted and their namespaces removed.
    disks: Option<surroundings::Disks>,
    control: Arc<dyn faultline_nemesis::Control>,
    /// Remote nodes: (node, its folder there, its folder in the store),
    /// whose logs are downloaded when the cluster stops.
    downloads: Option<Vec<(String, PathBuf, PathBuf)>>,
    links: Links,
}

/// What joins the nodes, kept so it can be torn down.
enum Links {
    Proxy { mesh: Arc<ProxyMesh>, client_proxies: bool },
    Netns { ns: Arc<NetnsCluster>, nft: Arc<NftNet> },
    Ssh { nft: Arc<NftNet> },
}

impl Cluster {
    /// Starts `cfg.nodes` nodes of `cfg.db` with their folders under
    /// `store`, joined as `cfg.net` says, and waits until the cluster is
    /// ready. Under the proxy mesh clients `c0..c{clients}` and `final` get
    /// proxies; in namespaces they reach each node's address directly.
    pub async fn start(cfg: &RunConfig, env: &RunEnv, store: &Store, clients: usize) -> Result<Cluster, RunError> {
        let nodes = cfg.node_names();
        let placed = match cfg.net {
            NetKind::Proxy => proxied(cfg, &nodes, store, clients).await?,
            NetKind::Netns => namespaced(&nodes, store)?,
            NetKind::Ssh => over_ssh(cfg, &nodes, store)?,
        };
        let bins = node_bins(cfg, env, &placed)?;
        let disks = match &bins.diskfs {
            Some(bin) => Some(surroundings::Disks::mount(placed.control.clone(), bin, &placed.dirs).await?),
            None => None,
        };
        let clocks = if cfg.uses_faketime() {
            let lib = env.bins.faketime.as_deref();
            Some(surroundings::Clocks::new(placed.control.clone(), &placed.dirs, lib)?)
        } else {
            None
        };
        let layout = Layout {
            nodes: nodes.clone(),
            listen: placed.listen,
            aux: placed.aux,
            dial: placed.dial,
            dirs: placed.dirs.clone(),
            control: placed.control.clone(),
            env: clocks.as_ref().map(surroundings::Clocks::env).unwrap_or_default(),
            held: placed.held,
        };
        let db = make_db(cfg, &bins, layout, store)?;
        let surroundings: Arc<dyn Surroundings> = Arc::new(surroundings::NodeSurroundings::new(
            placed.control.clone(),
            disks.as_ref().map(surroundings::Disks::sockets),
            clocks.map(|c| c.probed_by(|n| db.clock_probe(n))),
        ));
        let downloads = (!placed.control.shares_filesystem()).then(|| {
            nodes
                .iter()
                .map(|n| (n.clone(), placed.dirs[n].clone(), store.node_dir(n)))
                .collect()
        });
        let cluster = Cluster {
            net: placed.net,
            db,
            nodes,
            surroundings,
            disks,
            control: placed.control,
            downloads,
            links: placed.links,
        };
        cluster.db.start_all()?;
        cluster.db.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).await?;
        Ok(cluster)
    }

    /// The address client endpoint `me` uses to reach `node`.
    pub fn route(&self, me: &str, node: &str) -> Option<SocketAddr> {
        match &self.links {
            Links::Proxy {
                mesh,
                client_proxies: true,
            } => mesh.addr(me, node),
            Links::Proxy { .. } | Links::Netns { .. } | Links::Ssh { .. } => self.db.client_addr(node),
        }
    }

    /// Routes for client endpoint `me`: through its proxies, or direct.
    pub fn routes(&self, me: &str) -> BTreeMap<String, SocketAddr> {
        self.nodes
            .iter()
            .map(|n| {
                let addr = self.route(me, n);
                (n.clone(), addr.expect("every client has a route to every node"))
            })
            .collect()
    }

    /// A client for endpoint `me`, homed on `home`, reading as `routing`
    /// says (replica draws seeded by `seed`).
    pub fn client(&self, me: &str, home: &str, routing: ReadRouting, seed: u64, timeout_ms: u64) -> Box<dyn Client> {
        self.db.client(ClientSpec {
            routes: self.routes(me),
            home: home.to_owned(),
            routing,
            seed,
            timeout_ms,
        })
    }

    /// Stops the nodes, then unmounts their disks and removes what joined
    /// them (proxies, or rules, namespaces and the bridge). Tries every
    /// step; returns the first error.
    pub fn stop(&self) -> Result<(), RunError> {
        let stopped = self.db.stop_all().map_err(RunError::from);
        let unmounted = self
            .disks
            .as_ref()
            .map_or(Ok(()), |d| d.unmount_all().map_err(RunError::from));
        self.download_logs();
        // The nemesis healed and recorded its faults already; this is the
        // backstop before the links go, so a failure here is only logged.
        if let Err(e) = self.net.heal_all() {
            tracing::warn!(error = %e, "healing the links at teardown");
        }
        let torn = match &self.links {
            Links::Proxy { mesh, .. } => {
                mesh.shutdown();
                Ok(())
            }
            Links::Netns { ns, nft } => {
                nft.remove();
                ns.teardown().map_err(RunError::from)
            }
            Links::Ssh { nft } => {
                nft.remove();
                Ok(())
            }
        };
        stopped.and(unmounted).and(torn)
    }

    /// Copies every remote node's logs into its store folder (each failure
    /// logged; the run goes on without that log).
    fn download_logs(&self) {
        for (node, remote, local) in self.downloads.iter().flatten() {
            let mut names = vec!["node.log"];
            if self.disks.is_some() {
                names.push("diskfs.log");
            }
            for name in names {
                let (from, to) = (remote.join(name), local.join(name));
                if let Err(e) = self.control.fetch(node, &from, &to) {
                    tracing::warn!(node = %node, file = %from.display(), error = %e, "log not downloaded");
                }
            }
        }
    }
}

/// What a backend gives a cluster.
struct Placement {
    links: Links,
    net: Arc<dyn Net>,
    control: Arc<dyn faultline_nemesis::Control>,
    /// Each node's main address.
    listen: BTreeMap<String, SocketAddr>,
    /// Each node's second address.
    aux: BTreeMap<String, SocketAddr>,
    /// What each node dials for each peer.
    dial: BTreeMap<(String, String), SocketAddr>,
    /// Each node's folder, as the node sees it.
    dirs: BTreeMap<String, PathBuf>,
    /// Where uploaded programs go on the nodes (remote machines only).
    bin_dir: Option<PathBuf>,
    /// The ports the OS picked for the nodes, held until each starts.
    held: db::HeldPorts,
}

/// Every node dials every other at its main address (no proxy between).
fn direct_dial(nodes: &[String], listen: &BTreeMap<String, SocketAddr>) -> BTreeMap<(String, String), SocketAddr> {
    let mut dial = BTreeMap::new();
    for a in nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            dial.insert((a.clone(), b.clone()), listen[b]);
        }
    }
    dial
}

fn store_dirs(nodes: &[String], store: &Store) -> BTreeMap<String, PathBuf> {
    nodes.iter().map(|n| (n.clone(), store.node_dir(n))).collect()
}

/// Loopback: ports the OS picks, every node-to-node and client-to-node link
/// through a proxy.
async fn proxied(cfg: &RunConfig, nodes: &[String], store: &Store, clients: usize) -> Result<Placement, RunError> {
    let reserved = db::reserve_ports(2 * nodes.len())?;
    let addr = |i: usize| reserved[i].local_addr().map_err(DbError::Port);
    let mut listen = BTreeMap::new();
    let mut aux = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        listen.insert(n.clone(), addr(2 * i)?);
        aux.insert(n.clone(), addr(2 * i + 1)?);
    }
    let client_names: Vec<String> = (0..clients)
        .map(|i| format!("c{i}"))
        .chain(["final".to_owned()])
        .collect();
    let pairs: Vec<(String, SocketAddr)> = listen.iter().map(|(n, a)| (n.clone(), *a)).collect();
    let mesh = Arc::new(ProxyMesh::start(&pairs, &client_names, cfg.seed).await?);
    let mut dial = BTreeMap::new();
    for a in nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            let via = mesh.addr(a, b).expect("every node pair has a proxy");
            dial.insert((a.clone(), b.clone()), via);
        }
    }
    // Each node binds its two ports when it starts; the proxies hold
    // theirs already.
    let mut reserved = reserved.into_iter();
    let held = nodes
        .iter()
        .map(|n| (n.clone(), reserved.by_ref().take(2).collect()))
        .collect();
    Ok(Placement {
        links: Links::Proxy {
            mesh: mesh.clone(),
            client_proxies: cfg.client_proxies,
        },
        net: mesh,
        control: Arc::new(LocalControl),
        listen,
        aux,
        dial,
        dirs: store_dirs(nodes, store),
        bin_dir: None,
        held: db::HeldPorts::new(held),
    })
}

/// A network namespace per node on a bridge; nodes dial each other's
/// addresses and nftables rules in each namespace cut links.
fn namespaced(nodes: &[String], store: &Store) -> Result<Placement, RunError> {
    faultline_nemesis::netns::available().map_err(RunError::Config)?;
    let ns = Arc::new(NetnsCluster::create(&faultline_nemesis::netns::new_run_id(), nodes)?);
    let ips = ns.addrs();
    let at = |n: &str, port: u16| SocketAddr::new(ips[n].into(), port);
    let listen: BTreeMap<String, SocketAddr> = nodes.iter().map(|n| (n.clone(), at(n, NETNS_PORTS[0]))).collect();
    let aux = nodes.iter().map(|n| (n.clone(), at(n, NETNS_PORTS[1]))).collect();
    let control: Arc<dyn faultline_nemesis::Control> = Arc::new(ns.control());
    let nft = Arc::new(NftNet::new(
        control.clone(),
        ips.iter().map(|(n, ip)| (n.clone(), (*ip).into())).collect(),
    ));
    tracing::info!(run = ns.id(), bridge_ip = %ns.bridge_ip(), "namespaces up");
    store.write_json("netns.json", &netns_record(&ns, nodes))?;
    Ok(Placement {
        links: Links::Netns { ns, nft: nft.clone() },
        net: nft,
        control,
        dial: direct_dial(nodes, &listen),
        listen,
        aux,
        dirs: store_dirs(nodes, store),
        bin_dir: None,
        held: db::HeldPorts::default(),
    })
}

/// Remote machines: one per node, logged in to over SSH (host keys
/// checked), each node listening on its machine's address, links cut by
/// nftables on the machines. Each run gets a folder of its own under the
/// remote folder (named like its store folder), with the binaries in `bin/`.
fn over_ssh(cfg: &RunConfig, nodes: &[String], store: &Store) -> Result<Placement, RunError> {
    let settings = &cfg.ssh;
    let mut ssh = faultline_ssh::SshConfig::new(&settings.user);
    ssh.key = settings.key.clone();
    if let Some(k) = &settings.known_hosts {
        ssh.known_hosts = k.clone();
    }
    ssh.accept_unknown_hosts = settings.accept_unknown_hosts;
    // Every key trusted without known_hosts is kept with the run, so what
    // was trusted can be checked (and added to known_hosts) afterwards.
    ssh.accepted_host_keys = Some(store.dir.join("accepted-host-keys.txt"));
    let mut ips = BTreeMap::new();
    for (node, host) in nodes.iter().zip(&cfg.hosts) {
        let (name, port) = super::parse_host(host, settings.port).map_err(RunError::Config)?;
        ssh = ssh.with_node(node, &name, port);
        ips.insert(node.clone(), resolve(&name)?);
    }
    let control = Arc::new(faultline_ssh::SshControl::new(ssh).map_err(|e| RunError::Config(e.to_string()))?);
    let stamp = store.dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let run_dir = settings.remote_dir.join(stamp.unwrap_or_else(|| "run".into()));
    // Registered before anything is uploaded or started, for `faultline clean`.
    let record = register_remote(cfg, nodes, &run_dir)?;
    for (node, host) in nodes.iter().zip(&cfg.hosts) {
        control
            .connect(node)
            .map_err(|e| RunError::Config(format!("{node} ({host}): {e}")))?;
    }
    let at = |n: &str, port: u16| SocketAddr::new(ips[n], port);
    let listen: BTreeMap<String, SocketAddr> = nodes.iter().map(|n| (n.clone(), at(n, NETNS_PORTS[0]))).collect();
    let aux = nodes.iter().map(|n| (n.clone(), at(n, NETNS_PORTS[1]))).collect();
    let control: Arc<dyn faultline_nemesis::Control> = Arc::new(super::remote::RecordedControl::new(control, record));
    let nft = Arc::new(NftNet::new(control.clone(), ips.clone()));
    Ok(Placement {
        links: Links::Ssh { nft: nft.clone() },
        net: nft,
        control,
        dial: direct_dial(nodes, &listen),
        listen,
        aux,
        dirs: nodes.iter().map(|n| (n.clone(), run_dir.join(n))).collect(),
        bin_dir: Some(run_dir.join("bin")),
        held: db::HeldPorts::default(),
    })
}

/// Registers the run's machines, how to log in to them and each node's
/// folder there.
fn register_remote(
    cfg: &RunConfig,
    nodes: &[String],
    run_dir: &std::path::Path,
) -> Result<faultline_nemesis::netns::RemoteRecord, RunError> {
    use faultline_nemesis::netns::{RemoteNode, RemoteRecord, RemoteRun};
    let mut run = RemoteRun {
        user: cfg.ssh.user.clone(),
        key: cfg.ssh.key.clone(),
        known_hosts: cfg.ssh.known_hosts.clone(),
        accept_unknown_hosts: cfg.ssh.accept_unknown_hosts,
        nodes: BTreeMap::new(),
    };
    for (node, host) in nodes.iter().zip(&cfg.hosts) {
        let (host, port) = super::parse_host(host, cfg.ssh.port).map_err(RunError::Config)?;
        let at = RemoteNode {
            host,
            port,
            dir: run_dir.join(node),
            daemons: Vec::new(),
        };
        run.nodes.insert(node.clone(), at);
    }
    Ok(RemoteRecord::create(run)?)
}

/// A host name's first address, as this machine resolves it (the node must
/// own that address: it listens on it and its peers dial it).
fn resolve(host: &str) -> Result<std::net::IpAddr, RunError> {
    use std::net::ToSocketAddrs;
    let mut addrs = (host, 0)
        .to_socket_addrs()
        .map_err(|e| RunError::Config(format!("resolving {host}: {e}")))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| RunError::Config(format!("{host} resolves to no address")))
}

/// Where the programs the nodes run are, as the nodes see them.
struct NodeBins {
    server: PathBuf,
    etcd: PathBuf,
    redis: PathBuf,
    /// PostgreSQL's programs' folder.
    postgres: PathBuf,
    diskfs: Option<PathBuf>,
}

/// Finds (locally) or uploads (to remote machines) what the run needs:
/// faultline-server and the disk-fault filesystem go to every remote
/// machine; etcd and Redis are the machines' own packages there.
fn node_bins(cfg: &RunConfig, env: &RunEnv, placed: &Placement) -> Result<NodeBins, RunError> {
    let kind = cfg.db.kind();
    let local_diskfs = || db::find_bin("faultline-diskfs", env.bins.diskfs.as_deref(), "FAULTLINE_DISKFS_BIN");
    let Some(bin_dir) = &placed.bin_dir else {
        let find = |name: &str, given: &Option<PathBuf>, var: &str, needed: bool| -> Result<PathBuf, DbError> {
            if needed {
                db::find_bin(name, given.as_deref(), var)
            } else {
                Ok(PathBuf::from(name))
            }
        };
        return Ok(NodeBins {
            server: env.server_bin.clone(),
            etcd: find("etcd", &env.bins.etcd, "FAULTLINE_ETCD_BIN", kind == DbKind::Etcd)?,
            redis: find(
                "redis-server",
                &env.bins.redis,
                "FAULTLINE_REDIS_BIN",
                kind == DbKind::Redis,
            )?,
            postgres: pg_bin_dir(env, kind == DbKind::Postgres)?,
            diskfs: cfg.uses_diskfs().then(local_diskfs).transpose()?,
        });
    };
    let upload = |local: &std::path::Path, name: &str| -> Result<PathBuf, RunError> {
        let remote = bin_dir.join(name);
        for node in placed.dirs.keys() {
            placed
                .control
                .put(node, local, &remote, 0o755)
                .map_err(|source| DbError::Control {
                    node: node.clone(),
                    source,
                })?;
        }
        Ok(remote)
    };
    let server = if kind == DbKind::Faultline {
        upload(&env.server_bin, "faultline-server")?
    } else {
        env.server_bin.clone()
    };
    let diskfs = match cfg.uses_diskfs() {
        true => Some(upload(&local_diskfs()?, "faultline-diskfs")?),
        false => None,
    };
    Ok(NodeBins {
        server,
        etcd: env.bins.etcd.clone().unwrap_or_else(|| "etcd".into()),
        redis: env.bins.redis.clone().unwrap_or_else(|| "redis-server".into()),
        postgres: env
            .bins
            .postgres
            .clone()
            .unwrap_or_else(|| postgres::DEFAULT_BIN_DIR.into()),
        diskfs,
    })
}

/// PostgreSQL's programs' folder on this machine: the one given, else
/// Debian's; checked only when the run needs it.
fn pg_bin_dir(env: &RunEnv, needed: bool) -> Result<PathBuf, DbError> {
    let dir = env
        .bins
        .postgres
        .clone()
        .unwrap_or_else(|| postgres::DEFAULT_BIN_DIR.into());
    if needed && !dir.join("postgres").is_file() {
        return Err(DbError::NoBinary {
            name: "postgres".into(),
            looked: dir.join("postgres").display().to_string(),
        });
    }
    Ok(dir)
}

/// `netns.json`: where each node of a namespaced run lives.
fn netns_record(ns: &NetnsCluster, nodes: &[String]) -> Value {
    let placed: serde_json::Map<String, Value> = nodes
        .iter()
        .map(|n| {
            let x = ns.node(n).expect("every node has a namespace");
            let at = json!({"namespace": x.namespace, "ip": x.ip.to_string(), "ports": NETNS_PORTS});
            (n.clone(), at)
        })
        .collect();
    json!({
        "run_id": ns.id(),
        "bridge": format!("fl-{}", ns.id()),
        "bridge_ip": ns.bridge_ip().to_string(),
        "nodes": placed,
    })
}

/// The `Db` that `cfg.db` names, laid out as `layout`.
fn make_db(cfg: &RunConfig, bins: &NodeBins, layout: Layout, store: &Store) -> Result<Arc<dyn Db>, RunError> {
    Ok(match &cfg.db {
        DbConfig::Faultline { server } => Arc::new(ServerDb::new(bins.server.clone(), server.clone(), layout)),
        DbConfig::Etcd { serializable_reads } => {
            let token = format!("faultline-{}-{}", cfg.seed, store.dir.display().to_string().len());
            Arc::new(etcd::EtcdDb::new(bins.etcd.clone(), layout, *serializable_reads, token))
        }
        DbConfig::Redis {
            reads,
            wait,
            failover_wait,
        } => {
            let wait = (*wait > 0).then_some((*wait, cfg.op_timeout_ms.min(1_000)));
            Arc::new(redis::RedisDb::new(
                bins.redis.clone(),
                layout,
                redis::RedisOptions {
                    reads: *reads,
                    wait_replicas: wait,
                    failover_wait: *failover_wait,
                },
            ))
        }
        DbConfig::Postgres(o) => Arc::new(postgres::PostgresDb::new(bins.postgres.clone(), layout, *o)),
    })
}

//! What the SSH backend needs to know: where each node is, whom to log in as,
//! how to prove it, which host keys to trust, and how long to wait.
//!
//! [`SshConfig`] is the plain struct a caller fills in (from a test config,
//! flags, a TOML file); [`SshConfig::validate`] checks it once, and
//! [`SshControl::new`](crate::SshControl::new) refuses a config that does not
//! pass, so the rest of the crate can rely on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::SshError;

/// Default limit on reaching a node: TCP connect, handshake, authentication.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Default limit on the crate's own work on a node: starting and signalling
/// daemons, creating folders, one file transfer.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 60_000;
/// Upper bound on either timeout: past an hour a wait is a hang.
pub const TIMEOUT_MAX_MS: u64 = 3_600_000;

/// Where one node's SSH server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port of sshd.
    pub port: u16,
}

impl NodeAddr {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// The name OpenSSH records this address under in known_hosts: the bare
    /// host on port 22, `[host]:port` on any other port.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl NodeAddr {
    /// The command that fetches this host's keys in known_hosts format
    /// (ssh-keyscan writes `[host]:port` itself off port 22).
    pub fn keyscan_command(&self) -> String {
        if self.port == 22 {
            format!("ssh-keyscan {}", self.host)
        } else {
            format!("ssh-keyscan -p {} {}", self.port, self.host)
        }
    }
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach and trust the nodes of a cluster over SSH.
///
/// It holds paths, never key material: the private key stays in its file
/// (or in the ssh-agent) and is read by libssh2 only.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// Per node name, where its sshd listens.
    pub nodes: BTreeMap<String, NodeAddr>,
    /// Remote user to log in as, on every node.
    pub user: String,
    /// Private key file to authenticate with (unencrypted: a key with a
    /// passphrase belongs in the ssh-agent). `None` uses the ssh-agent at
    /// `SSH_AUTH_SOCK`.
    pub key: Option<PathBuf>,
    /// OpenSSH known_hosts file the host keys are checked against. A missing
    /// file holds no keys.
    pub known_hosts: PathBuf,
    /// Trust a host that known_hosts does not list (its fingerprint is
    /// logged). A host listed with another key is refused regardless.
    pub accept_unknown_hosts: bool,
    /// A file each host key accepted under `accept_unknown_hosts` is
    /// appended to: a comment with the node and fingerprint, then the
    /// known_hosts line that would trust it (a run's store keeps one).
    pub accepted_host_keys: Option<PathBuf>,
    /// Limit on reaching a node (TCP connect, handshake, authentication).
    pub connect_timeout: Duration,
    /// Limit on the crate's own work on a node: daemon start and signals,
    /// folder creation, one whole file transfer. Commands given to
    /// [`Control::run`](faultline_control::Control::run) carry their own.
    pub command_timeout: Duration,
}

impl SshConfig {
    /// A config with no nodes yet that logs in as `user` with the ssh-agent,
    /// checks `~/.ssh/known_hosts`, refuses unknown hosts and uses the
    /// default timeouts.
    pub fn new(user: impl Into<String>) -> SshConfig {
        SshConfig {
            nodes: BTreeMap::new(),
            user: user.into(),
            key: None,
            known_hosts: default_known_hosts(),
            accept_unknown_hosts: false,
            accepted_host_keys: None,
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            command_timeout: Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MS),
        }
    }

    /// The same config with node `name` at `host:port` added (or replaced).
    pub fn with_node(mut self, name: impl Into<String>, host: impl Into<String>, port: u16) -> SshConfig {
        self.nodes.insert(name.into(), NodeAddr::new(host, port));
        self
    }

    /// Checks every field; the first problem found is the error.
    pub fn validate(&self) -> Result<(), SshError> {
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "no nodes configured"));
        }
        for (name, addr) in &self.nodes {
            validate_node(name, addr)?;
        }
        validate_word("user", &self.user)?;
        if let Some(key) = &self.key {
            validate_key(key)?;
        }
        validate_known_hosts(&self.known_hosts)?;
        validate_timeout("connect_timeout", self.connect_timeout)?;
        validate_timeout("command_timeout", self.command_timeout)
    }
}

/// `$HOME/.ssh/known_hosts`, as OpenSSH reads it (relative to the current
/// folder when `HOME` is unset).
fn default_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".ssh/known_hosts")
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SshError {
    SshError::Config {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A name that goes into commands, logs and known_hosts lookups: non-empty,
/// no whitespace or control characters.
fn validate_word(field: &str, value: &str) -> Result<(), SshError> {
    if value.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            format!("{value:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
}

fn validate_node(name: &str, addr: &NodeAddr) -> Result<(), SshError> {
    validate_word("nodes", name)?;
    let field = format!("nodes.{name}.host");
    validate_word(&field, &addr.host)?;
    if addr.host.contains(['[', ']']) {
        return Err(invalid(field, "give an IPv6 address without brackets"));
    }
    if addr.port == 0 {
        return Err(invalid(format!("nodes.{name}.port"), "port 0 is not a port"));
    }
    Ok(())
}

/// The key must be a readable file now, so a typo fails at setup and not at
/// the first fault. Only its metadata is read here.
fn validate_key(key: &Path) -> Result<(), SshError> {
    match std::fs::metadata(key) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(invalid("key", format!("{} is not a file", key.display()))),
        Err(e) => Err(invalid("key", format!("{}: {e}", key.display()))),
    }
}

/// A missing known_hosts file holds no keys (as for OpenSSH); anything else
/// at that path must be a file.
fn validate_known_hosts(path: &Path) -> Result<(), SshError> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(invalid("known_hosts", format!("{} is not a file", path.display()))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(invalid("known_hosts", format!("{}: {e}", path.display()))),
    }
}

fn validate_timeout(field: &str, timeout: Duration) -> Result<(), SshError> {
    if timeout.is_zero() {
        return Err(invalid(field, "must be positive"));
    }
    if timeout > Duration::from_millis(TIMEOUT_MAX_MS) {
        return Err(invalid(
            field,
            format!("{timeout:?} is over the {TIMEOUT_MAX_MS} ms bound"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SshConfig {
        let mut c = SshConfig::new("root").with_node("n1", "10.0.0.1", 22);
        c.known_hosts = PathBuf::from("/nonexistent/known_hosts");
        c
    }

    #[test]
    fn a_plain_config_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn known_hosts_names_follow_openssh() {
        assert_eq!(NodeAddr::new("h", 22).known_hosts_name(), "h");
        assert_eq!(NodeAddr::new("127.0.0.1", 2222).known_hosts_name(), "[127.0.0.1]:2222");
        assert_eq!(NodeAddr::new("::1", 2222).to_string(), "[::1]:2222");
        assert_eq!(NodeAddr::new("db1", 22).keyscan_command(), "ssh-keyscan db1");
        assert_eq!(
            NodeAddr::new("127.0.0.1", 2222).keyscan_command(),
            "ssh-keyscan -p 2222 127.0.0.1"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |c: SshConfig| match c.validate() {
            Err(SshError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        let mut c = config();
        c.nodes.clear();
        assert_eq!(field(c), "nodes");
        assert_eq!(field(config().with_node("n2", "h", 0)), "nodes.n2.port");
        assert_eq!(field(config().with_node("n2", "", 22)), "nodes.n2.host");
        let mut c = config();
        c.user = "a b".into();
        assert_eq!(field(c), "user");
        let mut c = config();
        c.key = Some("/nonexistent/id_ed25519".into());
        assert_eq!(field(c), "key");
        let mut c = config();
        c.known_hosts = "/".into();
        assert_eq!(field(c), "known_hosts");
        let mut c = config();
        c.connect_timeout = Duration::ZERO;
        assert_eq!(field(c), "connect_timeout");
        let mut c = config();
        c.command_timeout = Duration::from_millis(TIMEOUT_MAX_MS + 1);
        assert_eq!(field(c), "command_timeout");
    }
}

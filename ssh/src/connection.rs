//! One node's SSH session: reaching it (TCP, handshake, host key check,
//! authentication) within the connect timeout, and reconnecting once when the
//! session kept from an earlier call turns out to be broken.
//!
//! A [`Connection`] lives on its node's worker thread and nowhere else, so
//! the session is never used by two calls at once.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::{Channel, Session, Sftp};

use crate::config::{NodeAddr, SshConfig};
use crate::error::SshError;
use crate::hostkey;

/// At most this many resolved addresses are tried, each within what is left
/// of the connect timeout.
const ADDRS_MAX: usize = 4;
/// At most this many ssh-agent identities are offered (sshd's MaxAuthTries
/// defaults to 6, and each refused key counts).
const AGENT_KEYS_MAX: usize = 6;

/// Bound on each blocking libssh2 call made while giving up on a session
/// or channel (freeing it sends a close and would wait for the reply): a
/// dead peer must not hold us for another full timeout.
const ABANDON_TIMEOUT_MS: u32 = 500;

/// libssh2's codes for the errors we make ourselves (ssh2 re-exports the
/// error type but not the constants, and libssh2-sys is not a dependency).
pub(crate) const LIBSSH2_ERROR_HOSTKEY_INIT: i32 = -10;
/// See [`LIBSSH2_ERROR_HOSTKEY_INIT`].
pub(crate) const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
/// "Would block": retry once the socket is ready (non-blocking mode only).
pub(crate) const LIBSSH2_ERROR_EAGAIN: i32 = -37;

/// A node's session, opened on first use.
pub(crate) struct Connection {
    node: String,
    addr: NodeAddr,
    config: Arc<SshConfig>,
    session: Option<Session>,
}

impl Connection {
    /// Not connected yet: the first call connects.
    pub(crate) fn new(node: String, addr: NodeAddr, config: Arc<SshConfig>) -> Connection {
        Connection {
            node,
            addr,
            config,
            session: None,
        }
    }

    /// The node's name.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Connects now unless a session is already open.
    pub(crate) fn ensure(&mut self) -> Result<(), SshError> {
        if self.session.is_none() {
            self.session = Some(establish(&self.node, &self.addr, &self.config)?);
        }
        Ok(())
    }

    /// A new session channel, in blocking mode, with the session's timeout
    /// set to the connect timeout.
    pub(crate) fn channel(&mut self) -> Result<(Session, Channel), SshError> {
        self.open("opening a channel", Session::channel_session)
    }

    /// A new SFTP subsystem, in blocking mode.
    pub(crate) fn sftp(&mut self) -> Result<(Session, Sftp), SshError> {
        self.open("starting sftp", Session::sftp)
    }

    /// Drops the session, so the next call connects afresh. Called after any
    /// error mid-operation: the session may hold a half-read packet or a
    /// channel whose command we abandoned, and closing it is what tells sshd
    /// to let go of it.
    pub(crate) fn reset(&mut self) {
        if let Some(session) = self.session.take() {
            abandon(&session);
            tracing::debug!(node = %self.node, "dropped the ssh session");
        }
    }

    /// Runs `open` on the kept session; if that fails (the peer restarted, the
    /// connection died), reconnects once and tries again.
    fn open<T>(
        &mut self,
        action: &'static str,
        open: impl Fn(&Session) -> Result<T, ssh2::Error>,
    ) -> Result<(Session, T), SshError> {
        if let Some(session) = self.session.take() {
            prepare(&session, self.config.connect_timeout);
            match open(&session) {
                Ok(opened) => {
                    self.session = Some(session.clone());
                    return Ok((session, opened));
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "the ssh session broke; reconnecting once");
                    abandon(&session);
                }
            }
        }
        let session = establish(&self.node, &self.addr, &self.config)?;
        prepare(&session, self.config.connect_timeout);
        let opened = open(&session).map_err(|source| SshError::Ssh {
            node: self.node.clone(),
            action: action.to_owned(),
            source,
        })?;
        self.session = Some(session.clone());
        Ok((session, opened))
    }
}

/// Shortens the bound on blocking calls before `session` (or a channel or
/// file of it) is dropped after an error.
pub(crate) fn abandon(session: &Session) {
    session.set_blocking(true);
    session.set_timeout(ABANDON_TIMEOUT_MS);
}

/// Blocking mode with a bound on each blocking libssh2 call.
pub(crate) fn prepare(session: &Session, timeout: Duration) {
    session.set_blocking(true);
    session.set_timeout(timeout_ms(timeout));
}

/// libssh2's timeout in ms, never 0 (which would mean "wait forever").
pub(crate) fn timeout_ms(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Connects, checks the host key and authenticates, all within the connect
/// timeout.
fn establish(node: &str, addr: &NodeAddr, config: &SshConfig) -> Result<Session, SshError> {
    let deadline = Instant::now() + config.connect_timeout;
    let tcp = tcp_connect(node, addr, deadline)?;
    let handshake_err = |source| SshError::Handshake {
        node: node.to_owned(),
        addr: addr.to_string(),
        source,
    };
    let mut session = Session::new().map_err(handshake_err)?;
    session.set_tcp_stream(tcp);
    prepare(&session, remaining(deadline));
    session.handshake().map_err(handshake_err)?;
    hostkey::verify(&session, node, addr, config)?;
    prepare(&session, remaining(deadline));
    authenticate(&session, node, config)?;
    tracing::debug!(node, %addr, user = %config.user, "ssh session established");
    Ok(session)
}

/// What is left until `deadline`, at least 1 ms so a late step fails on its
/// own timeout rather than waiting forever.
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn tcp_connect(node: &str, addr: &NodeAddr, deadline: Instant) -> Result<TcpStream, SshError> {
    let connect_err = |source| SshError::Connect {
        node: node.to_owned(),
        addr: addr.to_string(),
        source,
    };
    // The system resolver applies its own timeouts; std offers no bound here.
    let addrs: Vec<SocketAddr> = (addr.host.as_str(), addr.port)
        .to_socket_addrs()
        .map_err(|source| SshError::Resolve {
            node: node.to_owned(),
            addr: addr.to_string(),
            source,
        })?
        .take(ADDRS_MAX)
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for socket_addr in addrs {
        match TcpStream::connect_timeout(&socket_addr, remaining(deadline)) {
            Ok(tcp) => {
                // Commands are small request/response exchanges: do not let
                // Nagle hold back the last packet of each.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_err(last))
}

fn authenticate(session: &Session, node: &str, config: &SshConfig) -> Result<(), SshError> {
    let (method, hint, result) = match &config.key {
        Some(key) => (
            format!("key file {}", key.display()),
            " (is its public key in the user's ~/.ssh/authorized_keys on the node? \
             a key with a passphrase must go through the ssh-agent)",
            session.userauth_pubkey_file(&config.user, None, key, None),
        ),
        None => (
            "the ssh-agent".to_owned(),
            " (is SSH_AUTH_SOCK set, and does `ssh-add -l` list a key the node accepts? or configure a key file)",
            agent_auth(session, &config.user),
        ),
    };
    let result = result.and_then(|()| {
        if session.authenticated() {
            Ok(())
        } else {
            Err(ssh2::Error::new(
                ssh2::ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED),
                "the server did not confirm authentication",
            ))
        }
    });
    result.map_err(|source| SshError::Auth {
        node: node.to_owned(),
        user: config.user.clone(),
        method,
        source,
        hint,
    })
}

/// Offers the agent's keys in turn until the server takes one
/// (`Session::userauth_agent` offers only the first).
fn agent_auth(session: &Session, user: &str) -> Result<(), ssh2::Error> {
    let mut agent = session.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    let identities = agent.identities()?;
    let mut last = ssh2::Error::new(
        ssh2::ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED),
        "the ssh-agent holds no keys",
    );
    for identity in identities.iter().take(AGENT_KEYS_MAX) {
        match agent.userauth(user, identity) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    let _ = agent.disconnect();
    Err(last)
}

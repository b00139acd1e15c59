//! Host key verification against an OpenSSH known_hosts file.
//!
//! libssh2 does the matching (plain and hashed host names, `[host]:port`
//! entries). We feed it the file one line at a time rather than with
//! `read_file`, because libssh2 gives up on the whole file at the first line
//! it cannot parse (a `@cert-authority` marker, a security-key type), and a
//! user's `~/.ssh/known_hosts` often has one. Skipped lines can only turn a
//! match into "unknown", which is refused unless unknown hosts are accepted.
//!
//! Two differences from OpenSSH, both stricter: off port 22 a plain `host`
//! entry is consulted after the `[host]:port` ones, and a recorded key of
//! another type than the one the server offers counts as a mismatch.

use std::path::Path;

use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, Session};

use crate::config::{NodeAddr, SshConfig};
use crate::connection::LIBSSH2_ERROR_HOSTKEY_INIT;
use crate::error::SshError;

/// Upper bound on the known_hosts file we read into memory.
const KNOWN_HOSTS_MAX_BYTES: u64 = 16 << 20;

/// Checks `session`'s host key for `node` at `addr` against the configured
/// known_hosts: `Ok` on a match, or on an unknown host when the config says
/// to accept those (after logging its fingerprint).
pub(crate) fn verify(session: &Session, node: &str, addr: &NodeAddr, config: &SshConfig) -> Result<(), SshError> {
    let (key, kind) = session.host_key().ok_or_else(|| SshError::Handshake {
        node: node.to_owned(),
        addr: addr.to_string(),
        source: ssh2::Error::new(
            ssh2::ErrorCode::Session(LIBSSH2_ERROR_HOSTKEY_INIT),
            "the server sent no host key",
        ),
    })?;
    let key_type = key_type_name(kind);
    let fingerprint = fingerprint(session);
    let name = addr.known_hosts_name();
    let known = load(session, &config.known_hosts)?;
    match known.check_port(&addr.host, addr.port, key) {
        CheckResult::Match => {
            tracing::debug!(node, host = %name, key_type, %fingerprint, "host key matches known_hosts");
            Ok(())
        }
        CheckResult::NotFound if config.accept_unknown_hosts => {
            tracing::warn!(node, host = %name, key_type, %fingerprint, "accepting a host key known_hosts does not list");
            if let Some(path) = &config.accepted_host_keys {
                let entry = accepted_entry(node, &name, key_type, &fingerprint, key);
                if let Err(e) = append_once(path, &entry) {
                    tracing::warn!(path = %path.display(), error = %e, "could not write down an accepted host key");
                }
            }
            Ok(())
        }
        CheckResult::NotFound => Err(SshError::UnknownHost {
            node: node.to_owned(),
            addr: addr.clone(),
            key_type,
            fingerprint,
            known_hosts: config.known_hosts.clone(),
        }),
        CheckResult::Mismatch => Err(SshError::HostKeyMismatch {
            node: node.to_owned(),
            addr: addr.clone(),
            key_type,
            fingerprint,
            known_hosts: config.known_hosts.clone(),
        }),
        CheckResult::Failure => Err(SshError::KnownHosts {
            path: config.known_hosts.clone(),
            reason: format!("libssh2 could not check the key of {name}"),
        }),
    }
}

/// The known_hosts entries libssh2 can parse; a missing file has none.
fn load(session: &Session, path: &Path) -> Result<ssh2::KnownHosts, SshError> {
    let known_err = |reason: String| SshError::KnownHosts {
        path: path.to_owned(),
        reason,
    };
    let mut known = session.known_hosts().map_err(|e| known_err(e.to_string()))?;
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(known),
        Err(e) => return Err(known_err(e.to_string())),
    };
    let mut skipped = 0usize;
    for line in text.lines() {
        if known.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
            skipped += 1;
        }
    }
    if skipped > 0 {
        tracing::debug!(path = %path.display(), skipped, "known_hosts lines libssh2 cannot parse were skipped");
    }
    Ok(known)
}

/// What the record of an accepted key holds: who and which fingerprint, as
/// a comment, then the known_hosts line that trusts the key next time.
fn accepted_entry(node: &str, name: &str, key_type: &str, fingerprint: &str, key: &[u8]) -> String {
    format!(
        "# {node} {name} {key_type} {fingerprint}\n{name} {key_type} {}\n",
        base64_padded(key)
    )
}

/// Appends `entry` to `path` unless it is there already (a node reconnects
/// after a broken session and is checked again).
fn append_once(path: &Path, entry: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    match read_bounded(path) {
        Ok(text) if text.contains(entry) => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(entry.as_bytes())
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    let file = std::fs::File::open(path)?;
    file.take(KNOWN_HOSTS_MAX_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// The key's algorithm name, as known_hosts spells it.
fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown-key-type",
    }
}

/// `SHA256:<base64 without padding>`, the form `ssh-keygen -lf` and the
/// OpenSSH client print, so a user can compare it with the server's.
fn fingerprint(session: &Session) -> String {
    match session.host_key_hash(HashType::Sha256) {
        Some(hash) => format!("SHA256:{}", base64_unpadded(hash)),
        None => "SHA256:(unavailable)".to_owned(),
    }
}

/// Standard base64 without `=` padding (a dependency for eight lines would
/// not pay for itself).
fn base64_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Standard base64 with `=` padding, as known_hosts keys are written.
fn base64_padded(bytes: &[u8]) -> String {
    let mut out = base64_unpadded(bytes);
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_without_padding() {
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_unpadded(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A");
        assert_eq!(base64_padded(b"fo"), "Zm8=");
        assert_eq!(base64_padded(b"f"), "Zg==");
    }

    #[test]
    fn an_accepted_key_is_written_down_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accepted-host-keys.txt");
        let entry = accepted_entry("n1", "[10.0.0.1]:2222", "ssh-ed25519", "SHA256:abc", b"key");
        assert_eq!(
            entry,
            "# n1 [10.0.0.1]:2222 ssh-ed25519 SHA256:abc\n[10.0.0.1]:2222 ssh-ed25519 a2V5\n"
        );
        append_once(&path, &entry).unwrap();
        append_once(&path, &entry).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), entry);
    }
}

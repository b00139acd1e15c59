//! Copying files to and from a node with SFTP, each transfer within one time
//! limit.
//!
//! An upload goes to a hidden sibling of the target, gets its mode, and is
//! then renamed over the target with `mv -f` (one rename(2), so a reader
//! never sees half a file, and replacing the binary of a running daemon does
//! not fail with "text file busy"). OpenSSH's sftp-server cannot rename over
//! an existing file, hence the shell for that step.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ssh2::{FileStat, OpenFlags, OpenType, Session};

use crate::connection::{abandon, timeout_ms, Connection};
use crate::error::SshError;
use crate::exec::{helper, Bound};
use crate::shell;

/// Bytes per SFTP read or write.
const CHUNK_BYTES: usize = 64 << 10;

/// Copies local file `local` to `remote` on the node, parent folders
/// created, with permission bits `mode`.
pub(crate) fn put(
    conn: &mut Connection,
    local: &Path,
    remote: &Path,
    mode: u32,
    bound: &Bound,
) -> Result<(), SshError> {
    let mut source = std::fs::File::open(local).map_err(local_err(local))?;
    if let Some(dir) = remote.parent().filter(|d| !d.as_os_str().is_empty()) {
        helper(conn, &shell::mkdir(dir)?, bound)?;
    }
    let tmp = staging_path(remote)?;
    let (session, sftp) = conn.sftp()?;
    let node = conn.node().to_owned();
    let remote_err = |action: &str, source: ssh2::Error| {
        let err = SshError::Ssh {
            node: node.clone(),
            action: format!("{action} {}", tmp.display()),
            source,
        };
        bound.or_expired(&node, err)
    };
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    // Private until complete: a half-written executable must not be runnable.
    let mut target = sftp
        .open_mode(&tmp, flags, 0o600, OpenType::File)
        .map_err(|e| remote_err("creating", e))?;
    copy(
        &session,
        &node,
        bound,
        &mut source,
        &mut target,
        local_err(local),
        |e| remote_io_err(&node, "writing", &tmp, e),
    )?;
    target.close().map_err(|e| remote_err("closing", e))?;
    let stat = FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode),
        atime: None,
        mtime: None,
    };
    sftp.setstat(&tmp, stat)
        .map_err(|e| remote_err("setting the mode of", e))?;
    drop(sftp);
    helper(conn, &shell::install(&tmp, remote)?, bound)?;
    Ok(())
}

/// Copies `remote` on the node to local file `local` (parent folders
/// created).
pub(crate) fn fetch(conn: &mut Connection, remote: &Path, local: &Path, bound: &Bound) -> Result<(), SshError> {
    if let Some(dir) = local.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(local_err(dir))?;
    }
    let (session, sftp) = conn.sftp()?;
    let node = conn.node().to_owned();
    let mut source = sftp.open(remote).map_err(|source| {
        let err = SshError::Ssh {
            node: node.clone(),
            action: format!("opening {}", remote.display()),
            source,
        };
        bound.or_expired(&node, err)
    })?;
    let mut target = std::fs::File::create(local).map_err(local_err(local))?;
    let copied = copy(
        &session,
        &node,
        bound,
        &mut source,
        &mut target,
        |e| remote_io_err(&node, "reading", remote, e),
        local_err(local),
    );
    if copied.is_err() {
        // A partial copy must not pass for the file.
        let _ = std::fs::remove_file(local);
    }
    copied.map(|_| ())
}

/// `.<name>.faultline-put` next to `remote`.
fn staging_path(remote: &Path) -> Result<PathBuf, SshError> {
    let name = remote.file_name().ok_or_else(|| SshError::InvalidSpec {
        what: format!("put {}", remote.display()),
        reason: "the remote path has no file name".into(),
    })?;
    let mut staged = std::ffi::OsString::from(".");
    staged.push(name);
    staged.push(".faultline-put");
    Ok(remote.with_file_name(staged))
}

/// Copies `from` to `to` in chunks, giving each blocking libssh2 call only
/// what is left of the transfer's time.
fn copy(
    session: &Session,
    node: &str,
    bound: &Bound,
    from: &mut impl Read,
    to: &mut impl Write,
    read_err: impl Fn(std::io::Error) -> SshError,
    write_err: impl Fn(std::io::Error) -> SshError,
) -> Result<u64, SshError> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let moved = match bound.left() {
            Some(left) => {
                session.set_timeout(timeout_ms(left));
                from.read(&mut chunk).map_err(&read_err).and_then(|n| {
                    to.write_all(&chunk[..n]).map_err(&write_err)?;
                    Ok(n)
                })
            }
            None => Err(bound.expired(node)),
        };
        match moved {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) => {
                // The SFTP handles are closed on the way out.
                abandon(session);
                return Err(bound.or_expired(node, e));
            }
        }
    }
}

fn local_err(path: &Path) -> impl Fn(std::io::Error) -> SshError + '_ {
    move |source| SshError::Local {
        path: path.to_owned(),
        source,
    }
}

fn remote_io_err(node: &str, action: &str, path: &Path, source: std::io::Error) -> SshError {
    SshError::Io {
        node: node.to_owned(),
        action: format!("{action} {}", path.display()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_staged_next_to_their_target() {
        assert_eq!(
            staging_path(Path::new("/opt/n1/server")).unwrap(),
            Path::new("/opt/n1/.server.faultline-put")
        );
        assert_eq!(
            staging_path(Path::new("server")).unwrap(),
            Path::new(".server.faultline-put")
        );
        assert!(staging_path(Path::new("/")).is_err());
    }
}

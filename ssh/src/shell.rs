//! The shell commands we send to nodes, and the quoting that keeps every
//! argument one word.
//!
//! sshd hands an exec request to the user's login shell as `sh -c STRING`,
//! so everything we send is a shell string: each word goes inside single
//! quotes (a quote in a word becomes `'\''`), which no shell expands. Words
//! with a NUL byte or paths that are not UTF-8 cannot be sent and are
//! refused.
//!
//! A daemon is identified by its pid and, where `/proc` exists, by its start
//! time (field 22 of `/proc/PID/stat`): the scripts that signal or probe it
//! first check both, so a pid reused by another process after the daemon
//! died is never signalled, and a zombie counts as gone.

use std::path::Path;
use std::time::Duration;

use faultline_control::{DaemonSpec, Signal};

use crate::error::SshError;

/// `word` as one shell word.
pub(crate) fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn word(what: &str, value: &str) -> Result<String, SshError> {
    if value.contains('\0') {
        return Err(SshError::InvalidSpec {
            what: what.to_owned(),
            reason: format!("{value:?} contains a NUL byte"),
        });
    }
    Ok(quote(value))
}

fn path_str<'a>(what: &str, path: &'a Path) -> Result<&'a str, SshError> {
    path.to_str().ok_or_else(|| SshError::InvalidSpec {
        what: what.to_owned(),
        reason: format!("{} is not UTF-8", path.display()),
    })
}

/// `path` as one shell word.
pub(crate) fn path_word(what: &str, path: &Path) -> Result<String, SshError> {
    word(what, path_str(what, path)?)
}

/// `program args...`, each quoted.
pub(crate) fn command_words(program: &Path, args: &[String]) -> Result<String, SshError> {
    let what = program.display().to_string();
    let mut words = vec![path_word(&what, program)?];
    for arg in args {
        words.push(word(&what, arg)?);
    }
    Ok(words.join(" "))
}

/// Runs `words` (from [`command_words`]) under `timeout -s KILL`, which puts
/// the command in its own process group and kills the whole group at the
/// limit, so nothing it spawned outlives it either.
pub(crate) fn under_timeout(words: &str, timeout: Duration) -> String {
    // `timeout 0` would mean no limit at all.
    let ms = timeout.as_millis().max(1);
    format!("exec timeout -s KILL {}.{:03} {words}", ms / 1000, ms % 1000)
}

/// What [`start_daemon`] prints when the program is not there to run.
pub(crate) const MISSING: &str = "missing";

/// Starts `spec` detached from the SSH session (`setsid`: a new session, so
/// no hangup reaches it when the channel closes; `nohup` as well, should it
/// land in a process group that gets one), appending to its log, in the log's
/// folder (the node's own folder, rather than the SSH user's home). Prints
/// `PID START`, START empty without `/proc`, and writes PID to `<log>.pid`;
/// prints [`MISSING`] instead if the program cannot be found or executed (as
/// a local spawn would fail, rather than leave a daemon that dies at once).
///
/// `$!` is the daemon itself: `nohup`, `setsid` and `env` each exec the next
/// program, and `setsid` need not fork because a background job of a
/// non-interactive shell is not a process group leader.
pub(crate) fn start_daemon(spec: &DaemonSpec) -> Result<String, SshError> {
    let what = spec.program.display().to_string();
    let log = spec.log_file.as_path();
    let name = log.file_name().ok_or_else(|| SshError::InvalidSpec {
        what: what.clone(),
        reason: format!("log file {} has no file name", log.display()),
    })?;
    let name = path_str(&what, Path::new(name))?;
    let dir = match log.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => path_word(&what, dir)?,
        _ => quote("."),
    };
    let env = env_words(&what, spec)?;
    let (log_word, pid_word) = (word(&what, name)?, word(&what, &format!("{name}.pid"))?);
    let command = command_words(&spec.program, &spec.args)?;
    let program = path_word(&what, &spec.program)?;
    Ok(format!(
        "mkdir -p -- {dir} && cd -- {dir} && {{ \
         case {program} in */*) [ -f {program} ] && [ -x {program} ] ;; *) command -v {program} >/dev/null 2>&1 ;; esac \
         || {{ echo {MISSING}; exit 0; }}; \
         nohup setsid {env}{command} >> {log_word} 2>&1 < /dev/null & \
         pid=$!; echo \"$pid\" > {pid_word}; st=; \
         s=$(cat /proc/$pid/stat 2>/dev/null) && {{ set -- ${{s##*\\) }}; st=${{20}}; }}; echo \"$pid $st\"; }}"
    ))
}

/// `env 'K=V' ... ` (with its trailing space), or nothing without variables.
fn env_words(what: &str, spec: &DaemonSpec) -> Result<String, SshError> {
    if spec.env.is_empty() {
        return Ok(String::new());
    }
    let bad = |reason: String| SshError::InvalidSpec {
        what: what.to_owned(),
        reason,
    };
    // env would take a program path with `=` for one more variable.
    if path_str(what, &spec.program)?.contains('=') {
        return Err(bad(
            "a program path with '=' cannot be started with environment variables".into(),
        ));
    }
    let mut words = vec!["env".to_owned()];
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') {
            return Err(bad(format!(
                "environment variable name {key:?} is empty or contains '='"
            )));
        }
        words.push(word(what, &format!("{key}={value}"))?);
    }
    Ok(words.join(" ") + " ")
}

/// Parses what [`start_daemon`] printed: the pid and, if known, the start
/// time in clock ticks.
pub(crate) fn parse_started(stdout: &str) -> Option<(u32, Option<u64>)> {
    let mut fields = stdout.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start = match fields.next() {
        Some(ticks) => Some(ticks.parse().ok()?),
        None => None,
    };
    Some((pid, start))
}

/// A shell function `alive` that succeeds while the daemon runs: pid alive,
/// not a zombie, same start time.
fn alive_function(pid: u32, start: Option<u64>) -> String {
    let start = quote(&start.map(|s| s.to_string()).unwrap_or_default());
    format!(
        "alive() {{ s=$(cat /proc/{pid}/stat 2>/dev/null) || {{ kill -0 {pid} 2>/dev/null; return; }}; \
         set -- ${{s##*\\) }}; [ \"$1\" != Z ] && {{ [ -z {start} ] || [ \"${{20}}\" = {start} ]; }}; }}; "
    )
}

/// Prints `running` or `gone`.
pub(crate) fn probe(pid: u32, start: Option<u64>) -> String {
    format!(
        "{}if alive; then echo running; else echo gone; fi",
        alive_function(pid, start)
    )
}

/// Signals the daemon if it still runs; prints `sent` or `gone`.
pub(crate) fn signal(pid: u32, start: Option<u64>, signal: Signal) -> String {
    let name = signal.name().trim_start_matches("SIG");
    format!(
        "{}if alive; then kill -s {name} {pid} && echo sent; else echo gone; fi",
        alive_function(pid, start)
    )
}

/// Creates `dir` and its parents.
pub(crate) fn mkdir(dir: &Path) -> Result<String, SshError> {
    Ok(format!("mkdir -p -- {}", path_word("mkdir", dir)?))
}

/// Moves an uploaded file into place in one rename.
pub(crate) fn install(tmp: &Path, target: &Path) -> Result<String, SshError> {
    Ok(format!(
        "mv -f -- {} {}",
        path_word("install", tmp)?,
        path_word("install", target)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh` makes of `script`: its words, one a line.
    fn words_seen(script: &str) -> Vec<String> {
        let out = Command::new("sh")
            .args(["-c", &format!("for w in {script}; do printf '%s\\n' \"$w\"; done")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn quoting_keeps_every_word_whole_and_unexpanded() {
        let nasty = [
            "plain",
            "two words",
            "it's",
            "$HOME",
            "`id`",
            "a\"b",
            "*",
            "\\n",
            "'",
            "",
        ];
        let script = nasty.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        assert_eq!(words_seen(&script), nasty);
    }

    #[test]
    fn nul_bytes_and_bad_env_names_are_refused() {
        assert!(command_words(Path::new("echo"), &["a\0b".into()]).is_err());
        let mut spec = DaemonSpec {
            program: "sleep".into(),
            args: vec!["1".into()],
            env: vec![("A=B".into(), "c".into())],
            log_file: "/tmp/x/node.log".into(),
        };
        assert!(matches!(start_daemon(&spec), Err(SshError::InvalidSpec { .. })));
        spec.env = vec![("RUST_LOG".into(), "debug it's".into())];
        let script = start_daemon(&spec).unwrap();
        assert!(
            script.contains(r"env 'RUST_LOG=debug it'\''s' 'sleep' '1' >> 'node.log'"),
            "{script}"
        );
        spec.log_file = "/".into();
        assert!(start_daemon(&spec).is_err());
    }

    #[test]
    fn run_commands_carry_their_limit_in_seconds() {
        let words = command_words(Path::new("/bin/echo"), &["hi".into()]).unwrap();
        let cmd = under_timeout(&words, Duration::from_millis(1500));
        assert_eq!(cmd, "exec timeout -s KILL 1.500 '/bin/echo' 'hi'");
        assert!(under_timeout("'true'", Duration::ZERO).contains(" 0.001 "));
    }

    #[test]
    fn start_output_parses_with_and_without_proc() {
        assert_eq!(parse_started("123 456\n"), Some((123, Some(456))));
        assert_eq!(parse_started("123 \n"), Some((123, None)));
        assert_eq!(parse_started("nohup: oops\n"), None);
        assert_eq!(parse_started(""), None);
    }

    #[test]
    fn probe_sees_a_live_process_and_not_a_wrong_start_time() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let run = |script: String| {
            let out = Command::new("sh").args(["-c", &script]).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert_eq!(run(probe(pid, None)), "running");
        assert_eq!(run(probe(pid, Some(1))), "gone", "a reused pid must not look alive");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(run(probe(pid, None)), "gone");
    }
}

//! `SshControl` against a real sshd on 127.0.0.1: commands, daemons, files,
//! and the refusals (unknown host, changed host key, wrong client key).
//!
//! The "remote" machine is this one, so each test checks the effect of what
//! it did over SSH directly in `/proc` and the filesystem.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use faultline_control::{CommandSpec, Control, ControlError, DaemonSpec, Signal};
use faultline_ssh::{ssh_error_of, SshControl, SshError};
use support::{alive, eventually, processes_running, state, Sshd};

const WAIT: Duration = Duration::from_secs(5);

fn cmd(program: &str, args: &[&str]) -> CommandSpec {
    CommandSpec::new(program, args, Duration::from_secs(10))
}

fn run(control: &SshControl, program: &str, args: &[&str]) -> std::process::Output {
    control.run("n1", &cmd(program, args)).expect("run over ssh")
}

#[test]
fn run_returns_stdout_stderr_status_and_reads_stdin() {
    let Some(sshd) = Sshd::start("run_returns_stdout_stderr_status_and_reads_stdin") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    let out = run(&control, "echo", &["hi"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hi\n");
    let out = run(&control, "sh", &["-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stderr, b"oops\n");
    assert!(out.stdout.is_empty());
    // Every argument arrives as one word, unexpanded.
    let nasty = "it's $HOME `id` \"q\" *";
    assert_eq!(
        run(&control, "printf", &["%s|%s", nasty, ""]).stdout,
        format!("{nasty}|").as_bytes()
    );
    let fed = control.run("n1", &cmd("cat", &[]).with_stdin("fed\nlines")).unwrap();
    assert_eq!(fed.stdout, b"fed\nlines");
    // More than one window of input and output, both ways at once.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = control.run("n1", &cmd("cat", &[]).with_stdin(big.clone())).unwrap();
    assert_eq!(echoed.stdout.len(), big.len());
    assert!(echoed.stdout == big, "cat changed the bytes");
    // The status comes when the program exits, not when it closes its output.
    let started = Instant::now();
    let quiet = run(&control, "sh", &["-c", "exec >&- 2>&-; sleep 0.5; exit 7"]);
    assert_eq!(quiet.status.code(), Some(7));
    assert!(started.elapsed() >= Duration::from_millis(500));
    let killed = run(&control, "sh", &["-c", "kill -TERM $$"]);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(15));
    match control.run("n1", &cmd("/nonexistent/program", &[])) {
        Err(ControlError::Spawn { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("a missing program must fail to spawn, got {other:?}"),
    }
    assert!(!control.shares_filesystem());
}

#[test]
fn a_command_past_its_timeout_fails_and_leaves_no_process() {
    let Some(sshd) = Sshd::start("a_command_past_its_timeout_fails_and_leaves_no_process") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    control.connect("n1").unwrap();
    // A duration no other test uses, to find exactly this process.
    let marker = format!("77.{}", sshd.port);
    let started = Instant::now();
    let spec = CommandSpec::new("sleep", &[&marker], Duration::from_millis(300));
    let err = control.run("n1", &spec).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ControlError::Timeout { timeout_ms: 300, .. }), "{err}");
    assert!(took < Duration::from_secs(3), "the timeout took {took:?}");
    assert!(
        eventually(WAIT, || processes_running(&["sleep", &marker]).is_empty()),
        "sleep {marker} outlived its timeout"
    );
    // The node is still usable afterwards (the session was replaced).
    assert_eq!(run(&control, "echo", &["after"]).stdout, b"after\n");
}

#[test]
fn a_broken_session_is_replaced() {
    let Some(sshd) = Sshd::start("a_broken_session_is_replaced") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    assert_eq!(run(&control, "echo", &["one"]).stdout, b"one\n");
    sshd.drop_connections();
    assert_eq!(run(&control, "echo", &["two"]).stdout, b"two\n");
    let logins = || sshd.log().matches("Accepted publickey for root").count();
    assert_eq!(logins(), 2, "no reconnection happened: {}", sshd.log());
    // A daemon outlives the session that started it, and can still be
    // stopped over the next one.
    let mut daemon = control.start("n1", &sleeper(&sshd)).unwrap();
    sshd.drop_connections();
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(daemon.pid()), "the daemon died with its ssh session");
    daemon.stop().unwrap();
    assert!(!alive(daemon.pid()));
    assert_eq!(logins(), 3);
}

fn sleeper(sshd: &Sshd) -> DaemonSpec {
    DaemonSpec {
        program: "sh".into(),
        args: vec!["-c".into(), "echo started $GREETING; exec sleep 30".into()],
        env: vec![("GREETING".into(), "hello there".into())],
        log_file: sshd.path("nodes/n1/node.log"),
    }
}

#[test]
fn a_daemon_can_be_paused_resumed_and_killed() {
    let Some(sshd) = Sshd::start("a_daemon_can_be_paused_resumed_and_killed") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    let spec = sleeper(&sshd);
    let mut daemon = control.start("n1", &spec).unwrap();
    let pid = daemon.pid();
    // The pid is the daemon itself, not a wrapper: it execs into sleep.
    let cmdline = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        eventually(WAIT, || cmdline() == b"sleep\x0030\x00"),
        "pid {pid} is {:?}",
        cmdline()
    );
    assert!(daemon.is_running());
    let pid_file = std::fs::read_to_string(sshd.path("nodes/n1/node.log.pid")).unwrap();
    assert_eq!(pid_file.trim(), pid.to_string());
    let log = || std::fs::read_to_string(&spec.log_file).unwrap_or_default();
    assert!(
        eventually(WAIT, || log().contains("started hello there")),
        "log: {:?}",
        log()
    );

    daemon.signal(Signal::Stop).unwrap();
    assert!(
        eventually(WAIT, || state(pid).starts_with('T')),
        "after SIGSTOP: {}",
        state(pid)
    );
    assert!(daemon.is_running(), "a paused daemon still runs");
    daemon.signal(Signal::Cont).unwrap();
    assert!(
        eventually(WAIT, || !state(pid).starts_with('T')),
        "after SIGCONT: {}",
        state(pid)
    );

    daemon.signal(Signal::Kill).unwrap();
    assert!(eventually(WAIT, || !daemon.is_running()), "still running after SIGKILL");
    assert!(!alive(pid), "pid {pid} survived SIGKILL");
    // Signals to a daemon that is gone are no error (as for a local one).
    daemon.signal(Signal::Term).unwrap();
    daemon.stop().unwrap();

    let missing = DaemonSpec {
        program: "/nonexistent/server".into(),
        ..sleeper(&sshd)
    };
    match control.start("n1", &missing) {
        Err(ControlError::Spawn { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        Err(other) => panic!("a missing program must fail to spawn, got {other}"),
        Ok(d) => panic!("started a missing program as pid {}", d.pid()),
    }
}

#[test]
fn a_dropped_daemon_leaves_no_process_even_when_paused() {
    let Some(sshd) = Sshd::start("a_dropped_daemon_leaves_no_process_even_when_paused") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    let mut daemon = control.start("n1", &sleeper(&sshd)).unwrap();
    let pid = daemon.pid();
    assert!(alive(pid));
    daemon.signal(Signal::Stop).unwrap();
    assert!(eventually(WAIT, || state(pid).starts_with('T')));
    drop(daemon);
    assert!(!alive(pid), "pid {pid} survived its handle: {}", state(pid));
    // And the handle works without the control that made it.
    let daemon = control.start("n1", &sleeper(&sshd)).unwrap();
    let pid = daemon.pid();
    drop(control);
    drop(daemon);
    assert!(!alive(pid), "pid {pid} survived once the control was gone");
}

#[test]
fn put_then_fetch_round_trips_bytes_and_mode() {
    let Some(sshd) = Sshd::start("put_then_fetch_round_trips_bytes_and_mode") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let local = sshd.path("local.bin");
    std::fs::write(&local, &bytes).unwrap();
    let remote = sshd.path("remote/deep/er/server.bin");
    control.put("n1", &local, &remote, 0o751).unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), bytes);
    let mode = std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o751, "mode {mode:o}");

    let back = sshd.path("fetched/again/server.bin");
    control.fetch("n1", &remote, &back).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    // Replacing an existing file (a running binary, say) works, mode and all.
    std::fs::write(&local, b"v2").unwrap();
    control.put("n1", &local, &remote, 0o600).unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), b"v2");
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(remote.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "staging files left behind: {leftovers:?}");

    let err = control.fetch("n1", &sshd.path("no/such/file"), &back).unwrap_err();
    assert!(matches!(err, ControlError::Io { .. }), "{err}");
}

#[test]
fn an_unknown_host_is_refused_unless_accepted() {
    let Some(sshd) = Sshd::start("an_unknown_host_is_refused_unless_accepted") else {
        return;
    };
    let empty = sshd.path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut config = sshd.config();
    config.known_hosts = empty;
    let control = SshControl::new(config.clone()).unwrap();
    let err = control.connect("n1").unwrap_err();
    assert!(matches!(err, SshError::UnknownHost { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)),
        "{message}"
    );
    assert!(message.contains("accept_unknown_hosts"), "{message}");
    assert!(
        message.contains(&sshd.host_fingerprint()),
        "not OpenSSH's fingerprint: {message}"
    );
    // Through the Control trait the same error is still there to read.
    let err = control.run("n1", &cmd("true", &[])).unwrap_err();
    assert!(
        matches!(ssh_error_of(&err), Some(SshError::UnknownHost { .. })),
        "{err}"
    );

    config.accept_unknown_hosts = true;
    let accepted = sshd.path("accepted-host-keys.txt");
    config.accepted_host_keys = Some(accepted.clone());
    let control = SshControl::new(config).unwrap();
    assert_eq!(run(&control, "echo", &["trusted"]).stdout, b"trusted\n");
    let record = std::fs::read_to_string(&accepted).unwrap();
    assert!(
        record.contains(&sshd.host_fingerprint())
            && record.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "the accepted key is written down with its fingerprint: {record}"
    );
}

#[test]
fn a_changed_host_key_is_refused_even_when_unknown_hosts_are_accepted() {
    let Some(sshd) = Sshd::start("a_changed_host_key_is_refused_even_when_unknown_hosts_are_accepted") else {
        return;
    };
    let impostor = sshd.other_key("impostor_host_key");
    let known_hosts = sshd.path("changed_known_hosts");
    let entry = format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.public_key_of(&impostor));
    std::fs::write(&known_hosts, entry).unwrap();
    let mut config = sshd.config();
    config.known_hosts = known_hosts;
    config.accept_unknown_hosts = true;
    let control = SshControl::new(config).unwrap();
    let err = control.connect("n1").unwrap_err();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = control.run("n1", &cmd("true", &[])).unwrap_err();
    assert!(
        matches!(ssh_error_of(&err), Some(SshError::HostKeyMismatch { .. })),
        "{err}"
    );
}

#[test]
fn hashed_entries_match_and_lines_libssh2_cannot_parse_are_skipped() {
    let Some(sshd) = Sshd::start("hashed_entries_match_and_lines_libssh2_cannot_parse_are_skipped") else {
        return;
    };
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&sshd.known_hosts)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let hashed = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(
        !hashed.contains("127.0.0.1") && hashed.contains("|1|"),
        "not hashed: {hashed}"
    );
    let known_hosts = sshd.path("messy_known_hosts");
    let text = format!("# comment\n@cert-authority *.example ssh-ed25519 AAAAnotakey\ngarbage\n{hashed}");
    std::fs::write(&known_hosts, text).unwrap();
    // Not vacuous: libssh2 itself rejects this file as a whole.
    let session = ssh2::Session::new().unwrap();
    let mut libssh2_view = session.known_hosts().unwrap();
    assert!(libssh2_view
        .read_file(&known_hosts, ssh2::KnownHostFileKind::OpenSSH)
        .is_err());

    let mut config = sshd.config();
    config.known_hosts = known_hosts;
    let control = SshControl::new(config).unwrap();
    control.connect("n1").unwrap();
    assert_eq!(run(&control, "echo", &["hashed"]).stdout, b"hashed\n");
}

#[test]
fn a_wrong_client_key_is_refused_with_a_clear_error() {
    let Some(sshd) = Sshd::start("a_wrong_client_key_is_refused_with_a_clear_error") else {
        return;
    };
    let stranger = sshd.other_key("stranger_key");
    let mut config = sshd.config();
    config.key = Some(stranger.clone());
    let control = SshControl::new(config).unwrap();
    let err = control.connect("n1").unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("as root") && message.contains(&stranger.display().to_string()),
        "{message}"
    );
    assert!(message.contains("authorized_keys"), "{message}");
    let err = control.run("n1", &cmd("true", &[])).unwrap_err();
    assert!(matches!(ssh_error_of(&err), Some(SshError::Auth { .. })), "{err}");
}

#[test]
fn unknown_nodes_and_bad_configs_are_errors() {
    let Some(sshd) = Sshd::start("unknown_nodes_and_bad_configs_are_errors") else {
        return;
    };
    let control = SshControl::new(sshd.config()).unwrap();
    let err = control.run("n9", &cmd("true", &[])).unwrap_err();
    assert!(
        matches!(ssh_error_of(&err), Some(SshError::UnknownNode { .. })),
        "{err}"
    );
    let mut config = sshd.config();
    config.key = Some(sshd.path("missing_key"));
    assert!(matches!(SshControl::new(config), Err(SshError::Config { .. })));
}

#[test]
fn a_silent_node_fails_within_the_connect_timeout() {
    // The port accepts TCP (the kernel's backlog) but nobody speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("unused_key");
    std::fs::write(&key, "").unwrap();
    let mut config = faultline_ssh::SshConfig::new("root").with_node("n1", "127.0.0.1", port);
    config.key = Some(key);
    config.known_hosts = dir.path().join("known_hosts");
    config.connect_timeout = Duration::from_millis(500);
    let control = SshControl::new(config).unwrap();
    let started = Instant::now();
    let err = control.connect("n1").unwrap_err();
    assert!(matches!(err, SshError::Handshake { .. }), "{err}");
    let err = control.run("n1", &cmd("true", &[])).unwrap_err();
    assert!(matches!(ssh_error_of(&err), Some(SshError::Handshake { .. })), "{err}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "two 500 ms connects took {took:?}");
}

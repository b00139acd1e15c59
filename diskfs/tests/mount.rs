//! The filesystem mounted for real, one daemon and tempdir per test: what a
//! database keeping a log, snapshots and renames relies on, and each fault
//! firing (and being healed) as the harness drives it through `ctl`.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::thread;
use std::time::{Duration, Instant};

use common::{ctl_at, fuse_available, is_mounted, Mounted};

fn u64_of(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing from {v}"))
}

#[test]
fn fsynced_write_survives_drop_unsynced() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("data");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        fs::read(m.backing.join("data")).unwrap(),
        b"durable",
        "fsync reached the backing file"
    );
    let dropped = m.ok(&["drop-unsynced"]);
    assert_eq!((u64_of(&dropped, "dropped_bytes"), u64_of(&dropped, "files")), (0, 0));
    assert_eq!(fs::read(&path).unwrap(), b"durable");
}

#[test]
fn unsynced_write_is_lost_after_drop_unsynced() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("data");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"version-1").unwrap();
    f.sync_data().unwrap();
    drop(f);
    fs::write(&path, b"version-2, longer").unwrap(); // O_TRUNC, then a write: no fsync
    fs::write(m.mnt.join("fresh"), b"never synced").unwrap();

    // Not vacuous: the new bytes are visible and held, the backing has the old.
    assert_eq!(fs::read(&path).unwrap(), b"version-2, longer");
    assert_eq!(fs::metadata(&path).unwrap().len(), 17);
    let status = m.status();
    assert_eq!(u64_of(&status, "dirty_files"), 2);
    assert_eq!(
        fs::read(m.backing.join("data")).unwrap(),
        b"",
        "O_TRUNC went straight to the backing"
    );

    let dropped = m.ok(&["drop-unsynced"]);
    assert_eq!(u64_of(&dropped, "dropped_bytes"), 17 + 12);
    assert_eq!(u64_of(&dropped, "files"), 2);
    // Truncation on open is metadata, kept; the data after it is gone.
    assert_eq!(fs::read(&path).unwrap(), b"");
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(fs::read(m.mnt.join("fresh")).unwrap(), b"", "the name survives, empty");
}

#[test]
fn overwrite_in_place_without_fsync_reads_back_as_before_after_drop() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("page");
    fs::write(&path, b"AAAAAAAAAA").unwrap();
    File::open(&path).unwrap().sync_all().unwrap();
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(b"BBBB").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"BBBBAAAAAA");
    m.ok(&["drop-unsynced"]);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"AAAAAAAAAA",
        "the file reads back as before the write"
    );
}

#[test]
fn wal_pattern_keeps_only_the_synced_record() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("wal.log");
    let mut wal = OpenOptions::new().create(true).append(true).open(&path).unwrap();
    wal.write_all(b"record-1\n").unwrap();
    wal.sync_data().unwrap();
    wal.write_all(b"record-2\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"record-1\nrecord-2\n");

    let dropped = m.ok(&["drop-unsynced"]);
    assert_eq!(u64_of(&dropped, "dropped_bytes"), 9);
    assert_eq!(fs::read(&path).unwrap(), b"record-1\n");
    // Appending goes on from the durable end, not from the lost one.
    wal.write_all(b"record-3\n").unwrap();
    wal.sync_data().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"record-1\nrecord-3\n");
    assert_eq!(fs::read(m.backing.join("wal.log")).unwrap(), b"record-1\nrecord-3\n");
}

#[test]
fn dirty_data_follows_a_rename_and_an_fsync_after_it_makes_it_durable() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let (tmp, snap) = (m.mnt.join("snap.tmp"), m.mnt.join("snap"));
    fs::write(&snap, b"old snapshot").unwrap();
    File::open(&snap).unwrap().sync_all().unwrap();
    fs::write(&tmp, b"new snapshot!").unwrap();
    fs::rename(&tmp, &snap).unwrap();
    assert_eq!(fs::read(&snap).unwrap(), b"new snapshot!");
    assert_eq!(
        u64_of(&m.status(), "dirty_files"),
        1,
        "the renamed-over inode's state is gone"
    );

    // A fresh, read-only handle on the new name syncs the data written
    // through the old one.
    File::open(&snap).unwrap().sync_all().unwrap();
    File::open(&m.mnt).unwrap().sync_all().unwrap(); // fsyncdir, as a careful database does
    let dropped = m.ok(&["drop-unsynced"]);
    assert_eq!(u64_of(&dropped, "dropped_bytes"), 0);
    assert_eq!(fs::read(&snap).unwrap(), b"new snapshot!");
    assert!(!m.backing.join("snap.tmp").exists());
}

#[test]
fn a_rename_without_fsync_keeps_the_name_but_loses_the_data() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let (tmp, snap) = (m.mnt.join("snap.tmp"), m.mnt.join("snap"));
    fs::write(&tmp, b"unsynced snapshot").unwrap();
    fs::rename(&tmp, &snap).unwrap();
    let dropped = m.ok(&["drop-unsynced"]);
    assert_eq!(u64_of(&dropped, "dropped_bytes"), 17);
    assert_eq!(
        fs::read(&snap).unwrap(),
        b"",
        "rename is metadata and survives; the data does not"
    );
    assert!(!tmp.exists());
}

#[test]
fn unlinking_a_dirty_file_discards_its_data_once_the_last_handle_closes() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("gone");
    let mut f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all(b"still readable").unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(
        u64_of(&m.status(), "dirty_files"),
        1,
        "an open, unlinked inode keeps its data"
    );
    let mut back = String::new();
    let mut reader = f.try_clone().unwrap();
    std::io::Seek::rewind(&mut reader).unwrap();
    reader.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still readable");
    assert_eq!(
        f.metadata().unwrap().len(),
        14,
        "fstat of the unlinked file sees the dirty size"
    );
    drop((f, reader));
    assert_eq!(u64_of(&m.status(), "dirty_files"), 0);
}

#[test]
fn two_handles_of_one_file_share_its_dirty_data() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("shared");
    let mut writer = File::create(&path).unwrap();
    let mut reader = File::open(&path).unwrap();
    writer.write_all(b"from the writer").unwrap();
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "from the writer");
    reader.sync_all().unwrap(); // fsync through either handle syncs the inode
    assert_eq!(fs::read(m.backing.join("shared")).unwrap(), b"from the writer");
}

#[test]
fn std_fs_operations_work_through_the_mount() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let deep = m.mnt.join("a/b/c");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), b"1").unwrap();
    fs::write(m.mnt.join("a/g"), b"older").unwrap();
    let names: Vec<_> = fs::read_dir(&deep).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["f"]);
    fs::rename(deep.join("f"), m.mnt.join("a/g")).unwrap();
    assert_eq!(fs::read(m.mnt.join("a/g")).unwrap(), b"1");

    // ftruncate is data: held; O_TRUNC is metadata: applied at once.
    let f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.mnt.join("a/g"))
        .unwrap();
    assert_eq!(fs::metadata(m.backing.join("a/g")).unwrap().len(), 0);
    f.set_len(10).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 10);
    assert_eq!(
        fs::metadata(m.backing.join("a/g")).unwrap().len(),
        0,
        "the extension is pending"
    );
    f.sync_data().unwrap();
    assert_eq!(fs::read(m.backing.join("a/g")).unwrap(), vec![0u8; 10]);
    drop(f);

    fs::set_permissions(m.mnt.join("a/g"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(m.backing.join("a/g")).unwrap().mode() & 0o777, 0o640);
    std::os::unix::fs::symlink("g", m.mnt.join("a/link")).unwrap();
    assert_eq!(fs::read_link(m.mnt.join("a/link")).unwrap().to_str(), Some("g"));
    fs::hard_link(m.mnt.join("a/g"), m.mnt.join("a/h")).unwrap();
    assert_eq!(fs::metadata(m.mnt.join("a/h")).unwrap().nlink(), 2);
    fs::remove_file(m.mnt.join("a/g")).unwrap();
    assert_eq!(fs::read(m.mnt.join("a/h")).unwrap(), vec![0u8; 10]);
    fs::remove_dir_all(m.mnt.join("a")).unwrap();
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&m.backing).unwrap().count(), 0);
}

#[test]
fn a_stall_blocks_a_write_for_its_duration_while_control_answers() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let mut f = File::create(m.mnt.join("stalled")).unwrap();
    let stall = Duration::from_millis(1500);
    let stall_started = Instant::now();
    m.ok(&["stall", "1500"]);
    let writer = thread::spawn(move || {
        let began = Instant::now();
        f.write_all(b"late").unwrap();
        (began, Instant::now())
    });
    thread::sleep(Duration::from_millis(300));
    // Asked in-process, not through a `ctl` child: a child forked now would
    // inherit the open file, and its exec closes it, which sends FUSE a
    // flush that the stall holds too.
    let asked = Instant::now();
    let reply = faultline_diskfs::send_command(&m.sock, "status", Duration::from_secs(5)).unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "status took {:?} during the stall",
        asked.elapsed()
    );
    let faultline_diskfs::Reply::OkJson(status) = reply else {
        panic!("status replied {reply:?}")
    };
    assert!(u64_of(&status, "stall_remaining_ms") > 0, "{status}");
    assert!(!writer.is_finished(), "the write went through during the stall");
    let (began, done) = writer.join().unwrap();
    assert!(
        done - stall_started >= stall,
        "the write finished {:?} into a {stall:?} stall",
        done - stall_started
    );
    assert!(
        done - began >= Duration::from_millis(1000),
        "the write waited only {:?}",
        done - began
    );
    assert!(u64_of(&m.status()["counters"], "stalled_ops") >= 1);
    assert_eq!(fs::read(m.mnt.join("stalled")).unwrap(), b"late");
}

#[test]
fn stall_zero_ends_a_stall_at_once() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    m.ok(&["stall", "600000"]);
    let path = m.mnt.join("x");
    let reader = thread::spawn(move || {
        let began = Instant::now();
        let _ = fs::metadata(&path);
        began.elapsed()
    });
    thread::sleep(Duration::from_millis(300));
    assert!(!reader.is_finished());
    m.ok(&["stall", "0"]);
    let waited = reader.join().unwrap();
    assert!(waited < Duration::from_secs(5), "held {waited:?} after the stall ended");
    assert_eq!(u64_of(&m.status(), "stall_remaining_ms"), 0);
}

#[test]
fn fail_fsync_gives_eio_until_heal() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("f");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"precious").unwrap();
    m.ok(&["fail-fsync", "on"]);
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        fs::read(m.backing.join("f")).unwrap(),
        b"",
        "a failed fsync wrote nothing back"
    );
    assert!(m.status()["fail_fsync"].as_bool().unwrap());
    m.ok(&["heal"]);
    f.sync_all().unwrap();
    assert_eq!(u64_of(&m.ok(&["drop-unsynced"]), "dropped_bytes"), 0);
    assert_eq!(fs::read(&path).unwrap(), b"precious");
    assert_eq!(u64_of(&m.status()["counters"], "failed_fsyncs"), 1);
}

#[test]
fn fail_writes_gives_eio_until_heal() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let path = m.mnt.join("f");
    let mut f = File::create(&path).unwrap();
    m.ok(&["fail-writes", "on"]);
    let err = f.write_all(b"refused").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    m.ok(&["fail-writes", "off"]);
    f.write_all(b"accepted").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"accepted");
    assert!(u64_of(&m.status()["counters"], "failed_writes") >= 1);
}

#[test]
fn fsync_delay_slows_every_fsync_until_turned_off() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let mut f = File::create(m.mnt.join("f")).unwrap();
    f.write_all(b"x").unwrap();
    m.ok(&["fsync-delay", "400"]);
    let began = Instant::now();
    f.sync_data().unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(400),
        "fsync took {:?}",
        began.elapsed()
    );
    m.ok(&["fsync-delay", "0"]);
    let began = Instant::now();
    f.sync_data().unwrap();
    assert!(
        began.elapsed() < Duration::from_millis(400),
        "fsync still slow: {:?}",
        began.elapsed()
    );
}

#[test]
fn the_dirty_limit_writes_back_the_oldest_file() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start_with(&["--dirty-limit-mib", "1"]);
    let kib = 1024;
    fs::write(m.mnt.join("older"), vec![1u8; 600 * kib]).unwrap();
    assert_eq!(
        fs::metadata(m.backing.join("older")).unwrap().len(),
        0,
        "600 KiB fit under the limit"
    );
    fs::write(m.mnt.join("newer"), vec![2u8; 600 * kib]).unwrap();
    assert_eq!(
        fs::read(m.backing.join("older")).unwrap(),
        vec![1u8; 600 * kib],
        "the oldest file went out"
    );
    let status = m.status();
    assert_eq!(u64_of(&status, "dirty_files"), 1);
    assert!(u64_of(&status, "dirty_bytes") <= 1 << 20);
    m.ok(&["drop-unsynced"]);
    assert_eq!(fs::read(m.mnt.join("older")).unwrap().len(), 600 * kib);
    assert_eq!(fs::read(m.mnt.join("newer")).unwrap().len(), 0);
}

#[test]
fn sync_writes_every_dirty_file_back() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    fs::write(m.mnt.join("a"), b"aa").unwrap();
    fs::write(m.mnt.join("b"), b"bbb").unwrap();
    let synced = m.ok(&["sync"]);
    assert_eq!((u64_of(&synced, "written_bytes"), u64_of(&synced, "files")), (5, 2));
    assert_eq!(u64_of(&m.ok(&["drop-unsynced"]), "dropped_bytes"), 0);
    assert_eq!(fs::read(m.mnt.join("b")).unwrap(), b"bbb");
}

#[test]
fn sigterm_during_a_stall_unmounts_writes_back_and_exits_zero() {
    if !fuse_available() {
        return;
    }
    let mut m = Mounted::start();
    fs::write(m.mnt.join("f"), b"written back on exit").unwrap();
    m.ok(&["stall", "600000"]);
    let began = Instant::now();
    let status = m.stop().expect("the daemon exited after SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", m.log_text());
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        began.elapsed()
    );
    assert!(!is_mounted(&m.mnt));
    assert_eq!(fs::read(m.backing.join("f")).unwrap(), b"written back on exit");
    assert!(!m.sock.exists(), "the control socket is removed");
}

#[test]
fn an_outside_unmount_ends_the_daemon_cleanly() {
    if !fuse_available() {
        return;
    }
    let mut m = Mounted::start();
    fs::write(m.mnt.join("f"), b"flushed").unwrap();
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "fusermount3 -u: {out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.sock.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !m.sock.exists(),
        "the daemon did not notice the unmount:\n{}",
        m.log_text()
    );
    let status = m.stop().expect("exited");
    assert!(status.success(), "{status}");
    assert_eq!(fs::read(m.backing.join("f")).unwrap(), b"flushed");
}

#[test]
fn ctl_exits_0_on_ok_and_1_on_err() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::start();
    let out = m.ctl(&["status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("ok {"), "{out:?}");
    for bad in [
        &["bogus"][..],
        &["stall", "600001"],
        &["fail-writes", "maybe"],
        &["heal", "now"],
    ] {
        let out = m.ctl(bad);
        assert_eq!(out.code, 1, "{bad:?}: {out:?}");
        assert!(out.stdout.starts_with("err "), "{bad:?}: {out:?}");
    }
}

/// Needs no FUSE: nobody answers.
#[test]
fn ctl_exits_3_when_no_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let out = ctl_at(&missing, &["status"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("missing.sock"), "{out:?}");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert_eq!(ctl_at(&stale, &["status"]).code, 3);
}

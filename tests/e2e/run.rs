//! `madmail run`: readiness, signals, reload, log files.

use std::os::unix::net::UnixDatagram;

use crate::{Server, WAIT, madmail, tempdir, write};

/// Relative directories are taken relative to the configuration file.
const BASE: &str = "hostname mx.example.org\nstate_dir state\nruntime_dir run\n";

#[test]
fn starts_notifies_readiness_and_stops_on_sigterm() {
    let dir = tempdir();
    let conf = write(dir.path(), "madmail.conf", BASE);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap_or_else(|e| panic!("{e}"));
    notify
        .set_read_timeout(Some(WAIT))
        .unwrap_or_else(|e| panic!("{e}"));

    let mut cmd = madmail();
    cmd.env("NOTIFY_SOCKET", &notify_path)
        .arg("--config")
        .arg(&conf)
        .arg("run");
    let mut server = Server::start(cmd);
    server.wait_for("server started");
    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}"));
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    server.signal("TERM");
    server.wait_for("server stopped");
    assert_eq!(server.wait_exit(), Some(0));

    use std::os::unix::fs::PermissionsExt;
    for sub in ["state", "run"] {
        let meta = std::fs::metadata(dir.path().join(sub)).unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
    }
}

#[test]
fn sigint_stops_too() {
    let dir = tempdir();
    let conf = write(dir.path(), "madmail.conf", BASE);
    let mut cmd = madmail();
    cmd.arg("--config").arg(&conf).arg("run");
    let mut server = Server::start(cmd);
    server.wait_for("server started");
    server.signal("INT");
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn run_refuses_a_broken_config() {
    let dir = tempdir();
    let conf = write(dir.path(), "madmail.conf", &format!("{BASE}frobnicate\n"));
    let out = madmail()
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("madmail.conf:4:1: unknown directive frobnicate")
    );
}

#[test]
fn sigusr2_reload_keeps_running_config_when_the_new_one_is_bad() {
    let dir = tempdir();
    let conf = write(dir.path(), "madmail.conf", BASE);
    let mut cmd = madmail();
    cmd.arg("--config").arg(&conf).arg("run");
    let mut server = Server::start(cmd);
    server.wait_for("server started");

    write(dir.path(), "madmail.conf", &format!("{BASE}hostnam typo\n"));
    server.signal("USR2");
    let line = server.wait_for("keeping the running one");
    assert!(
        line.contains("madmail.conf:4:1: unknown directive hostnam"),
        "{line}"
    );

    // Still alive and able to take a good configuration, including a switch to debug logging.
    write(dir.path(), "madmail.conf", &format!("{BASE}debug\n"));
    server.signal("USR2");
    server.wait_for("configuration reloaded");
    server.signal("TERM");
    // Debug level now: the lifecycle's debug messages appear.
    server.wait_for("server stopped");
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
fn sigusr1_reopens_log_files() {
    let dir = tempdir();
    let log = dir.path().join("madmail.log");
    let conf = write(
        dir.path(),
        "madmail.conf",
        &format!("{BASE}log {} stderr\n", log.display()),
    );
    let mut cmd = madmail();
    cmd.arg("--config").arg(&conf).arg("run");
    let mut server = Server::start(cmd);
    server.wait_for("server started");

    let rotated = dir.path().join("madmail.log.1");
    std::fs::rename(&log, &rotated).unwrap_or_else(|e| panic!("{e}"));
    server.signal("USR1");
    server.wait_for("log files reopened");
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));

    let old = std::fs::read_to_string(&rotated).unwrap_or_else(|e| panic!("{e}"));
    let new = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        old.contains("server started") && !old.contains("server stopped"),
        "old log:\n{old}"
    );
    assert!(
        new.contains("log files reopened") && new.contains("server stopped"),
        "new log:\n{new}"
    );
    // Files get timestamps (RFC 3339), stderr does not.
    assert!(new.lines().all(|l| l.starts_with("20")), "new log:\n{new}");
}

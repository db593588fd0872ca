//! `madmail run`: readiness, signals, reload, log files.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::{madmail, tempdir, write};

/// Relative directories are taken relative to the configuration file.
const BASE: &str = "hostname mx.example.org\nstate_dir state\nruntime_dir run\n";

/// Generous: these are bounds on waiting for something that normally takes milliseconds.
const WAIT: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        cmd.stderr(Stdio::piped())
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn madmail: {e}"));
        let (tx, rx) = channel();
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("madmail did not exit; saw:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

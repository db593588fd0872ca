//! The real `madmail` binary as a child process, for what only a process can show (kill -9 in
//! the middle of an order, real endpoints).
//!
//! The binary belongs to another package, so Cargo does not hand its path to these tests.
//! It is found as `MADMAIL_BIN`, else next to this test's own executable
//! (`target/debug/madmail`) when it is newer than every source file of the workspace, else
//! built with `cargo build -p madmail` (the first run in a fresh target directory pays for
//! that build).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The newest modification time among the workspace's sources and manifests.
fn newest_source() -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "tests" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, newest);
            } else if (name.ends_with(".rs") || name == "Cargo.toml")
                && let Ok(modified) = meta.modified()
            {
                *newest = (*newest).max(modified);
            }
        }
    }
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    walk(&root.join("crates"), &mut newest);
    for file in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(modified) = std::fs::metadata(root.join(file)).and_then(|m| m.modified()) {
            newest = newest.max(modified);
        }
    }
    newest
}

/// The path of an up-to-date `madmail` binary (built once per test process when needed).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("MADMAIL_BIN") {
            return PathBuf::from(path);
        }
        let sibling = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("madmail")));
        if let Some(path) = &sibling
            && let Ok(built) = std::fs::metadata(path).and_then(|m| m.modified())
            && built >= newest_source()
        {
            return path.clone();
        }
        build()
    })
}

fn build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the madmail binary for this test (cargo build -p madmail)");
    let output = Command::new(&cargo)
        .args([
            "build",
            "-p",
            "madmail",
            "--bin",
            "madmail",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(output.status.success(), "cargo build -p madmail failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "madmail")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no madmail executable")
}

/// A running `madmail --config CONFIG run`, its stderr (the log) going to a file.
pub struct Server {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts the server and waits (bounded) until it says it started.
    pub fn start(config: &Path, log: &Path) -> Server {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("MADMAIL_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        let mut server = Server {
            child,
            config: config.to_owned(),
            log: log.to_owned(),
        };
        let started = server.log_len();
        server.wait_for_log("server started", started);
        server
    }

    fn log_len(&self) -> usize {
        self.log().len()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log written after byte `from` contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, from: usize) {
        for _ in 0..300 {
            if self.log().get(from..).is_some_and(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("madmail exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("madmail did not log {needle:?}:\n{}", self.log());
    }

    /// `kill -9`: no cleanup of any kind happens in the process.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `madmail --config CONFIG cert ARGS...` (talks to this server over its socket).
    pub fn cert(&self, args: &[&str]) -> Output {
        cert(&self.config, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `madmail --config CONFIG cert ARGS...`.
pub fn cert(config: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("--config")
        .arg(config)
        .arg("cert")
        .args(args)
        .env_remove("MADMAIL_CONFIG")
        .output()
        .unwrap()
}

/// `cert info --json` as JSON.
pub fn cert_info(config: &Path) -> serde_json::Value {
    let out = cert(config, &["info", "--json"]);
    assert!(
        out.status.success(),
        "cert info: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

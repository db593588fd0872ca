//! A madmail instance for one benchmark scenario: its own state directory, an MX endpoint on
//! a loopback port with a self-signed certificate, every message for `bench.test` delivered
//! into a Maildir.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cleanup;
use super::probe;
use super::process::ServerProcess;
use super::{DOMAIN, RECIPIENT};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Madmail {
    process: ServerProcess,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Madmail {
    /// Writes the configuration into `dir`, starts `bin` and waits for `server started`.
    pub fn start(bin: &Path, dir: &Path, sessions: usize) -> Result<Madmail, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = probe::free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.join("madmail.conf");
        std::fs::write(&config, config_text(dir, port, sessions))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        // A file, not a pipe: nothing has to drain it while the load runs.
        let log_path = dir.join("madmail.log");
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("MADMAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut server = Madmail {
            process: ServerProcess::new(child, "madmail"),
            dir: dir.to_owned(),
            addr,
        };
        server.wait_started()?;
        Ok(server)
    }

    fn wait_started(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            cleanup::check()?;
            let log = self.log();
            if log.contains("server started") {
                return Ok(());
            }
            if let Some(status) = self.process.exited() {
                return Err(format!("madmail exited at start ({status}):\n{log}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "madmail did not log `server started` within {}s:\n{log}",
                    START_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What madmail has logged so far (for error messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("madmail.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `new/` of the mailbox every benchmark message goes to.
    pub fn mailbox_new(&self) -> PathBuf {
        self.dir.join("state/maildir").join(RECIPIENT).join("new")
    }

    pub fn peak_rss(&self) -> Result<u64, String> {
        self.process.peak_rss()
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) -> Result<(), String> {
        self.process.stop()
    }
}

/// No rate limits and no per-session message cap: the benchmark measures the server, not
/// its throttling. Everything else is the default an operator gets.
fn config_text(dir: &Path, port: u16, sessions: usize) -> String {
    let state = dir.join("state");
    let state = state.display();
    let connections = sessions + 10;
    format!(
        "# Written by `cargo xtask bench smtp`.\n\
         hostname mx.{DOMAIN}\n\
         state_dir {state}\n\
         runtime_dir {state}/run\n\
         log stderr\n\
         tls self_signed mx.{DOMAIN}\n\
         \n\
         storage.maildir bench_mailboxes {{\n    \
             root maildir\n\
         }}\n\
         \n\
         smtp tcp://127.0.0.1:{port} {{\n    \
             max_connections {connections}\n    \
             max_connections_per_ip {connections}\n    \
             max_transactions 0\n    \
             destination {DOMAIN} {{\n        \
                 deliver_to &bench_mailboxes\n    \
             }}\n    \
             default_destination {{\n        \
                 reject 550 5.7.1 \"not a benchmark domain\"\n    \
             }}\n\
         }}\n"
    )
}

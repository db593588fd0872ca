//! A madmail instance for one ACME benchmark scenario: an empty state directory, one
//! `tls.loader.acme` block ordering from this scenario's Pebble over http-01, and an SMTP
//! endpoint on a loopback port that serves the loader's certificates after STARTTLS.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::pebble::Pebble;
use super::probe;
use super::process::ServerProcess;

const CERT_INFO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AcmeMadmail {
    bin: PathBuf,
    process: ServerProcess,
    dir: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    /// Just before the process was spawned.
    started: Instant,
}

/// One certificate as `madmail cert info --json` shows it (the fields the benchmark reads).
#[derive(Debug, Deserialize)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub status: String,
    pub last_error: Option<String>,
}

impl AcmeMadmail {
    /// Writes the configuration into `dir` (`names[0]` is `hostname`, the rest `extra_names`)
    /// and starts `bin`, without waiting for anything: the clock starts here.
    pub fn start(
        bin: &Path,
        dir: &Path,
        pebble: &Pebble,
        names: &[String],
    ) -> Result<AcmeMadmail, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut port = probe::free_port()?;
        while pebble.validates_on(port) {
            port = probe::free_port()?;
        }
        let config = dir.join("madmail.conf");
        std::fs::write(&config, config_text(dir, pebble, port, names)?)
            .map_err(|e| format!("{}: {e}", config.display()))?;
        // A file, not a pipe: nothing has to drain it while the scenario runs.
        let log_path = dir.join("madmail.log");
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let started = Instant::now();
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
        Ok(AcmeMadmail {
            bin: bin.to_owned(),
            process: ServerProcess::new(child, "madmail"),
            dir: dir.to_owned(),
            config,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            started,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Why the server can no longer deliver (it exited), if it did.
    pub fn gone(&mut self) -> Option<String> {
        let status = self.process.exited()?;
        Some(format!(
            "madmail exited ({status}); its log ends with:\n{}",
            self.log_tail(30)
        ))
    }

    /// The end of what madmail has logged (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("madmail.log")).unwrap_or_default()
    }

    /// `madmail cert info --json`, which asks the running server over its control socket.
    pub fn cert_info(&self) -> Result<Vec<CertInfo>, String> {
        // Files, not pipes: a hundred certificates print more than a pipe holds, and the
        // child would block writing while we wait for it to exit.
        let out_path = self.dir.join("cert-info.json");
        let err_path = self.dir.join("cert-info.err");
        let file = |path: &Path| File::create(path).map_err(|e| format!("{}: {e}", path.display()));
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["cert", "info", "--json"])
            .env_remove("MADMAIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(file(&out_path)?)
            .stderr(file(&err_path)?)
            .spawn()
            .map_err(|e| format!("cannot run madmail cert info: {e}"))?;
        // Bounded: a hung control socket must not hang the benchmark.
        let deadline = Instant::now() + CERT_INFO_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "madmail cert info did not answer within {}s",
                        CERT_INFO_TIMEOUT.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return Err(format!("waiting for madmail cert info: {e}")),
            }
        };
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        if !status.success() {
            return Err(format!(
                "madmail cert info failed ({status}): {}",
                String::from_utf8_lossy(&read(&err_path)?).trim()
            ));
        }
        let out = read(&out_path)?;
        serde_json::from_slice(&out).map_err(|e| {
            format!(
                "madmail cert info --json printed something else than certificates ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    pub fn peak_rss(&self) -> Result<u64, String> {
        self.process.peak_rss()
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) -> Result<(), String> {
        self.process.stop()
    }
}

/// The configuration an operator would write for Pebble: every default kept except what
/// pointing at a private CA needs (`ca`, `trusted_roots`, a loopback `http_listen`).
fn config_text(dir: &Path, pebble: &Pebble, port: u16, names: &[String]) -> Result<String, String> {
    let Some((hostname, extra)) = names.split_first() else {
        return Err("no names to order".into());
    };
    let state = dir.join("state");
    let state = state.display();
    let extra_names = if extra.is_empty() {
        String::new()
    } else {
        format!("    extra_names {}\n", extra.join(" "))
    };
    Ok(format!(
        "# Written by `cargo xtask bench acme`.\n\
         hostname {hostname}\n\
         state_dir {state}\n\
         runtime_dir {state}/run\n\
         log stderr\n\
         \n\
         tls.loader.acme local_tls {{\n    \
             email x@example.test\n    \
             agreed\n    \
             ca {ca}\n    \
             trusted_roots {roots}\n    \
             challenge http-01\n    \
             http_listen tcp://127.0.0.1:{http}\n\
         {extra_names}\
         }}\n\
         \n\
         smtp tcp://127.0.0.1:{port} {{\n    \
             tls &local_tls\n    \
             default_destination {{\n        \
                 reject 550 5.7.1 \"benchmark: no mail accepted\"\n    \
             }}\n\
         }}\n",
        ca = pebble.directory_url(),
        roots = pebble.api_ca_file().display(),
        http = pebble.http_port(),
    ))
}

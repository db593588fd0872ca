//! Debian's `lego` (4.9) as the reference ACME client: `lego run` with http-01 and a new
//! account each time, against the same kind of fresh Pebble as madmail.
//!
//! One certificate: lego's own http-01 server on Pebble's validation port. Many
//! certificates: one lego process per name, all at once; they cannot all bind the
//! validation port, so each writes its token into a shared `--http.webroot` that
//! [`Webroot`] serves on that port.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cleanup;
use super::pebble::{Pebble, ScenarioError, Watchdog};
use super::probe;

/// Where lego keeps a certificate under `--path`.
pub fn certificate_file(path: &Path, name: &str) -> PathBuf {
    path.join("certificates").join(format!("{name}.crt"))
}

/// A finished lego run.
pub struct LegoRun {
    /// From spawning the first process until the last one exited.
    pub elapsed: Duration,
    /// The highest `VmHWM` seen of any one process (sampled while it ran).
    pub peak_rss_max: u64,
    /// The sum over processes of each one's highest sampled `VmHWM`.
    pub peak_rss_sum: u64,
}

/// How lego answers http-01.
#[derive(Clone, Copy)]
enum Http01<'a> {
    /// Its own server on this address.
    Listen(SocketAddr),
    /// Token files written under this directory.
    Webroot(&'a Path),
}

struct Lego {
    child: Child,
    name: String,
    path: PathBuf,
    log: PathBuf,
    peak_rss: u64,
    status: Option<ExitStatus>,
}

impl Lego {
    fn spawn(pebble: &Pebble, dir: &Path, name: &str, http: Http01<'_>) -> Result<Lego, String> {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = dir.join(format!("{name}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new("lego");
        command.arg("--server").arg(pebble.directory_url()).args([
            "--email",
            "x@example.test",
            "--accept-tos",
            "--http",
        ]);
        match http {
            Http01::Listen(addr) => command.arg("--http.port").arg(addr.to_string()),
            Http01::Webroot(root) => command.arg("--http.webroot").arg(root),
        };
        let child = command
            .args(["--domains", name])
            .arg("--path")
            .arg(&path)
            .arg("run")
            // Trust Pebble's API certificate (in addition to the system's roots).
            .env("LEGO_CA_CERTIFICATES", pebble.api_ca_file())
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| format!("{}: {e}", log.display()))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot run lego: {e}"))?;
        Ok(Lego {
            child,
            name: name.to_owned(),
            path,
            log,
            peak_rss: 0,
            status: None,
        })
    }

    /// Samples its memory; returns whether it has exited.
    fn poll(&mut self) -> Result<bool, String> {
        if self.status.is_some() {
            return Ok(true);
        }
        if let Ok(pid) = i32::try_from(self.child.id())
            && let Ok(rss) = probe::peak_rss(pid)
        {
            self.peak_rss = self.peak_rss.max(rss);
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(format!("waiting for lego: {e}")),
        }
    }

    /// lego exited successfully and wrote a certificate that verifies for its name.
    fn check(&self, pebble: &Pebble) -> Result<(), String> {
        let log = || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(15)..].join("\n")
        };
        match self.status {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(format!(
                    "lego for {} failed ({status}):\n{}",
                    self.name,
                    log()
                ));
            }
            None => return Err(format!("lego for {} has not finished", self.name)),
        }
        super::acme_client::verify_chain_file(
            &certificate_file(&self.path, &self.name),
            &self.name,
            pebble.issuing_root(),
        )
        .map_err(|e| format!("lego's certificate for {}: {e}\n{}", self.name, log()))
    }
}

impl Drop for Lego {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one lego per name at once (just one for a single name, with its own http-01
/// server); returns once all have exited, each with a verified certificate.
pub fn run(
    pebble: &Pebble,
    watchdog: &Watchdog,
    dir: &Path,
    names: &[String],
    within: Duration,
) -> Result<LegoRun, ScenarioError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let validation = SocketAddr::from(([127, 0, 0, 1], pebble.http_port()));
    let webroot = dir.join("webroot");
    let server = if names.len() > 1 {
        Some(Webroot::start(validation, &webroot)?)
    } else {
        None
    };
    let http = match server {
        Some(_) => Http01::Webroot(&webroot),
        None => Http01::Listen(validation),
    };
    let start = Instant::now();
    let mut legos = names
        .iter()
        .map(|name| Lego::spawn(pebble, dir, name, http))
        .collect::<Result<Vec<_>, _>>()?;
    // Tight for one process (its exit is the measurement); a round over a hundred
    // processes' /proc files is cheap but not free.
    let interval = if legos.len() > 1 {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(2)
    };
    let elapsed = loop {
        cleanup::check()?;
        watchdog.check()?;
        let mut running = 0;
        for lego in &mut legos {
            if !lego.poll()? {
                running += 1;
            }
        }
        if running == 0 {
            break start.elapsed();
        }
        if start.elapsed() >= within {
            return Err(watchdog.blame(format!(
                "{running} of {} lego processes did not finish within {}s",
                legos.len(),
                within.as_secs()
            )));
        }
        std::thread::sleep(interval);
    };
    drop(server);
    for lego in &legos {
        lego.check(pebble).map_err(|e| watchdog.blame(e))?;
    }
    Ok(LegoRun {
        elapsed,
        peak_rss_max: legos.iter().map(|l| l.peak_rss).max().unwrap_or(0),
        peak_rss_sum: legos.iter().map(|l| l.peak_rss).sum(),
    })
}

/// Serves `GET /.well-known/acme-challenge/TOKEN` from the files lego writes under a
/// webroot, for Pebble's validator. Hand-written (a thread per connection, one request
/// each): the validator is the only client, and a real web server would add a dependency
/// and a process to manage for a dozen lines of protocol.
struct Webroot {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webroot {
    fn start(addr: SocketAddr, root: &Path) -> Result<Webroot, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let challenges = root.join(".well-known/acme-challenge");
        std::fs::create_dir_all(&challenges)
            .map_err(|e| format!("{}: {e}", challenges.display()))?;
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let challenges = challenges.clone();
                            std::thread::spawn(move || answer(stream, &challenges));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Ok(Webroot {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Webroot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, challenges: &Path) {
    let timeout = Some(Duration::from_secs(5));
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The headers are not needed, but are read so that closing does not reset the
    // connection under a client still sending them.
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let token = request_line
        .strip_prefix("GET /.well-known/acme-challenge/")
        .and_then(|rest| rest.split_whitespace().next())
        // Tokens are base64url; anything else could name another file.
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let body = token.and_then(|t| std::fs::read(challenges.join(t)).ok());
    let response = match &body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let mut stream = &stream;
    let _ = stream.write_all(response.as_bytes());
    if let Some(body) = body {
        let _ = stream.write_all(&body);
    }
}

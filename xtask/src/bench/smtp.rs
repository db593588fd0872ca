//! `cargo xtask bench smtp`: madmail and Postfix receiving the same load into one Maildir,
//! each scenario on a freshly started instance with an empty mailbox.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cleanup;
use super::client;
use super::madmail::Madmail;
use super::postfix::{Certificate, Postfix};
use super::probe;
use super::report::{self, Goal, Latency, MailboxRates, Row};
use super::{RECIPIENT, SENDER, sbin};
use crate::deps::{self, Package};

const PACKAGES: &[Package] = &[
    Package {
        name: "postfix",
        command: "test -x /usr/sbin/postfix && test -x /usr/sbin/smtp-source",
    },
    Package {
        name: "openssl",
        command: "command -v openssl",
    },
];

/// The goals for madmail.
const RSS_LIMIT_BYTES: u64 = 50_000_000;
const MIN_LAST_FIRST_RATIO: f64 = 0.9;

pub struct Options {
    pub messages: usize,
    pub sessions: usize,
    pub size: usize,
}

impl Options {
    pub fn parse(args: &[&str]) -> Result<Options, String> {
        let mut options = Options {
            messages: 10_000,
            sessions: 20,
            size: 10_240,
        };
        let mut rest = args.iter();
        while let Some(&flag) = rest.next() {
            let slot = match flag {
                "--messages" => &mut options.messages,
                "--sessions" => &mut options.sessions,
                "--size" => &mut options.size,
                _ => {
                    return Err(format!(
                        "unknown option {flag:?}; usage: cargo xtask {}",
                        super::USAGE
                    ));
                }
            };
            let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
            *slot = value
                .parse()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        }
        if options.messages < 10 {
            return Err("--messages must be at least 10".into());
        }
        if options.sessions == 0 || options.sessions > options.messages {
            return Err("--sessions must be between 1 and --messages".into());
        }
        if options.size < 2 {
            return Err("--size must be at least 2 bytes".into());
        }
        Ok(options)
    }

    /// Messages per first/last window: 1 000, or a tenth of a smaller run.
    fn window(&self) -> usize {
        (self.messages / 10).min(1000)
    }

    /// A bound on one load, generous enough for a slow machine (50 messages/s).
    fn timeout(&self) -> Duration {
        Duration::from_secs(120)
            + Duration::from_millis(20) * u32::try_from(self.messages).unwrap_or(u32::MAX)
    }
}

#[derive(Clone, Copy)]
enum Load {
    /// Postfix's smtp-source, no TLS.
    Plain,
    /// Our client, STARTTLS, with latencies.
    StartTls,
}

impl Load {
    fn scenario(self) -> &'static str {
        match self {
            Load::Plain => "plain SMTP",
            Load::StartTls => "STARTTLS",
        }
    }

    fn client(self) -> &'static str {
        match self {
            Load::Plain => "smtp-source",
            Load::StartTls => "xtask",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Load::Plain => "plain",
            Load::StartTls => "starttls",
        }
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    let result = run_all(options);
    // Whatever failed after an interrupt failed because of it.
    match cleanup::check() {
        Err(_) => Err("interrupted; servers stopped, temporary files removed".into()),
        Ok(()) => result,
    }
}

fn run_all(options: &Options) -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            "the SMTP benchmark needs root: it installs Postfix when missing and runs a \
             private Postfix instance, whose daemons start as root; run it as root"
                .into(),
        );
    }
    deps::ensure(PACKAGES)?;
    cleanup::install_interrupt_handler()?;
    crate::cargo(&["build", "--release", "-p", "madmail"])?;
    let madmail = target_dir().join("release/madmail");
    let work = WorkDir::new()?;
    let certificate = Certificate::generate(work.path())?;

    let load_before = probe::load_average();
    eprintln!(
        "xtask: {} messages of {} bytes over {} sessions, into one mailbox",
        options.messages, options.size, options.sessions
    );
    let mut rows = Vec::new();
    for load in [Load::Plain, Load::StartTls] {
        let dir = work.path().join(format!("madmail-{}", load.dir_name()));
        eprintln!("xtask: madmail, {}", load.scenario());
        rows.push(bench_madmail(&madmail, &dir, options, load)?);
        let dir = work.path().join(format!("postfix-{}", load.dir_name()));
        eprintln!("xtask: postfix, {}", load.scenario());
        rows.push(bench_postfix(&dir, &certificate, options, load)?);
    }
    let goals = goals(&rows);
    let report = report::Report {
        messages: options.messages,
        sessions: options.sessions,
        size: options.size,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average_before: load_before,
        rows: &rows,
        goals: &goals,
    };
    report::print(&report, options.window());
    let json = target_dir().join("bench/smtp.json");
    report::write_json(&json, &report)?;
    println!("\nfigures written to {}", json.display());
    work.remove()
}

fn bench_madmail(bin: &Path, dir: &Path, options: &Options, load: Load) -> Result<Row, String> {
    let server = Madmail::start(bin, dir, options.sessions)?;
    let (elapsed, latency) = drive(load, server.addr(), options, dir).map_err(|e| {
        format!(
            "madmail, {}: {e}\nmadmail's log ends with:\n{}",
            load.scenario(),
            tail(&server.log(), 20)
        )
    })?;
    let new = server.mailbox_new();
    // Every 250 promised a stored message: they must all be there now.
    let stored = probe::count_files(&new)?;
    if stored != options.messages {
        return Err(format!(
            "madmail accepted {} messages but {} holds {stored}",
            options.messages,
            new.display()
        ));
    }
    let peak_rss = server.peak_rss()?;
    server.stop()?;
    row(
        "madmail",
        load,
        options,
        elapsed,
        latency,
        (peak_rss, 1),
        &new,
    )
}

fn bench_postfix(
    dir: &Path,
    certificate: &Certificate,
    options: &Options,
    load: Load,
) -> Result<Row, String> {
    let server = Postfix::start(dir, certificate)?;
    let start = Instant::now();
    let (_, latency) = drive(load, server.addr(), options, dir).map_err(|e| {
        format!(
            "Postfix, {}: {e}\nits log ends with:\n{}",
            load.scenario(),
            server.log_tail(20)
        )
    })?;
    // Postfix answers 250 once the message is queued; it counts until delivered.
    let done = server.wait_delivered(options.messages, options.timeout())?;
    let new = server.mailbox_new();
    let stored = probe::count_files(&new)?;
    if stored != options.messages {
        return Err(format!(
            "Postfix delivered {stored} messages into {} instead of {}",
            new.display(),
            options.messages
        ));
    }
    let peak_rss = server.peak_rss_sum()?;
    server.stop()?;
    row(
        "postfix",
        load,
        options,
        done - start,
        latency,
        peak_rss,
        &new,
    )
}

fn row(
    server: &'static str,
    load: Load,
    options: &Options,
    elapsed: Duration,
    latency: Option<Latency>,
    (peak_rss_bytes, peak_rss_processes): (u64, usize),
    new: &Path,
) -> Result<Row, String> {
    let (times, smallest) = probe::mailbox_times(new)?;
    // Loose: Maildir files may store CRLF as LF; a truncated body is far shorter.
    if (smallest as usize) < options.size / 10 * 9 {
        return Err(format!(
            "{server}: a stored message has {smallest} bytes, far less than the {} sent",
            options.size
        ));
    }
    let seconds = elapsed.as_secs_f64();
    Ok(Row {
        server,
        scenario: load.scenario(),
        client: load.client(),
        messages: options.messages,
        seconds,
        messages_per_second: options.messages as f64 / seconds,
        latency_ms: latency,
        peak_rss_bytes,
        peak_rss_processes,
        mailbox: MailboxRates::from_times(&times, options.window())?,
    })
}

/// Runs the load against `addr`; returns how long the client took and, for our client, the
/// latencies.
fn drive(
    load: Load,
    addr: SocketAddr,
    options: &Options,
    dir: &Path,
) -> Result<(Duration, Option<Latency>), String> {
    match load {
        Load::Plain => Ok((smtp_source(addr, options, dir)?, None)),
        Load::StartTls => {
            let outcome = client::run(
                &client::Load {
                    addr,
                    sessions: options.sessions,
                    messages: options.messages,
                    size: options.size,
                },
                options.timeout(),
            )?;
            let ms = |micros: u64| micros as f64 / 1000.0;
            let latency = Latency {
                p50: ms(outcome.latency.value_at_quantile(0.50)),
                p99: ms(outcome.latency.value_at_quantile(0.99)),
                max: ms(outcome.latency.max()),
            };
            Ok((outcome.elapsed, Some(latency)))
        }
    }
}

/// `smtp-source -d`: each session sends its messages over one connection, as our client.
fn smtp_source(addr: SocketAddr, options: &Options, dir: &Path) -> Result<Duration, String> {
    let log_path = dir.join("smtp-source.log");
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let start = Instant::now();
    let mut child = KillOnDrop(
        Command::new(sbin("smtp-source"))
            .args(["-d", "-M", "load.test", "-f", SENDER, "-t", RECIPIENT])
            .arg("-s")
            .arg(options.sessions.to_string())
            .arg("-m")
            .arg(options.messages.to_string())
            .arg("-l")
            .arg(options.size.to_string())
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run smtp-source: {e}"))?,
    );
    let deadline = start + options.timeout();
    let status = loop {
        cleanup::check()?;
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "smtp-source did not finish within {}s",
                    options.timeout().as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for smtp-source: {e}")),
        }
    };
    let elapsed = start.elapsed();
    if !status.success() {
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(format!("smtp-source failed ({status}): {}", output.trim()));
    }
    Ok(elapsed)
}

/// A client process that must not outlive an error or an interrupt.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn goals(rows: &[Row]) -> Vec<Goal> {
    let find = |server: &str, load: Load| {
        rows.iter()
            .find(|r| r.server == server && r.scenario == load.scenario())
    };
    let mut goals = Vec::new();
    for load in [Load::Plain, Load::StartTls] {
        if let (Some(m), Some(p)) = (find("madmail", load), find("postfix", load)) {
            goals.push(Goal {
                goal: format!("throughput at least Postfix's ({})", load.scenario()),
                met: m.messages_per_second >= p.messages_per_second,
                detail: format!(
                    "madmail {:.0} msg/s, Postfix {:.0} msg/s ({:.2}x)",
                    m.messages_per_second,
                    p.messages_per_second,
                    m.messages_per_second / p.messages_per_second
                ),
            });
        }
    }
    let madmail: Vec<&Row> = rows.iter().filter(|r| r.server == "madmail").collect();
    let peak = madmail.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
    goals.push(Goal {
        goal: "peak RSS under 50 MB".into(),
        met: peak < RSS_LIMIT_BYTES,
        detail: format!("highest VmHWM {:.1} MB", peak as f64 / 1e6),
    });
    let worst = madmail
        .iter()
        .map(|r| r.mailbox.ratio)
        .fold(f64::INFINITY, f64::min);
    goals.push(Goal {
        goal: "the last messages of a mailbox stored as fast as the first (last/first >= 0.9)"
            .into(),
        met: worst >= MIN_LAST_FIRST_RATIO,
        detail: format!("lowest last/first ratio {worst:.2}"),
    });
    goals
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where Cargo puts build output (and we put the JSON): `CARGO_TARGET_DIR` or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => crate::workspace_root().join(dir),
        None => crate::workspace_root().join("target"),
    }
}

/// The run's temporary directory, removed at the end, on error and on interrupt.
struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    fn new() -> Result<WorkDir, String> {
        let dir = tempfile::Builder::new()
            .prefix("madmail-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        Ok(WorkDir { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remove(self) -> Result<(), String> {
        let path = self.dir.path().to_owned();
        self.dir
            .close()
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    #[test]
    fn options() {
        let defaults = Options::parse(&[]).unwrap();
        assert_eq!(
            (defaults.messages, defaults.sessions, defaults.size),
            (10_000, 20, 10_240)
        );
        assert_eq!(defaults.window(), 1000);
        let quick = Options::parse(&["--messages", "1000", "--size", "100"]).unwrap();
        assert_eq!(
            (quick.messages, quick.size, quick.window()),
            (1000, 100, 100)
        );
        assert!(Options::parse(&["--messages"]).is_err());
        assert!(Options::parse(&["--messages", "x"]).is_err());
        assert!(Options::parse(&["--sessions", "0"]).is_err());
        assert!(Options::parse(&["--bogus", "1"]).is_err());
    }
}

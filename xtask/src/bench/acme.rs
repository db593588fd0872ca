//! `cargo xtask bench acme`: how fast madmail gets certificates from an ACME CA, side by side
//! with Debian's `lego` in the same run, each scenario against a fresh Pebble.
//!
//! - first certificate: process start with an empty store (account registration included)
//!   until a certificate that verifies against Pebble's issuing root is served after
//!   STARTTLS; for lego, until `lego run` exits with the certificate written. Repeated
//!   `--runs` times, madmail and lego alternating.
//! - many certificates: `--names` names, each its own certificate, issued concurrently by
//!   one madmail loader (until `madmail cert info` shows all of them valid, then checked
//!   with a verified STARTTLS handshake per name), and by as many lego processes at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use super::acme_client;
use super::acme_madmail::AcmeMadmail;
use super::cleanup;
use super::lego;
use super::pebble::{Pebble, ScenarioError, Watchdog};
use super::probe;
use crate::deps::{self, Package};

const PACKAGES: &[Package] = &[
    Package {
        name: "pebble",
        command: "command -v pebble && command -v pebble-challtestsrv",
    },
    Package {
        name: "lego",
        command: "command -v lego",
    },
];

/// The name of the first-certificate scenario.
const NAME: &str = "mx.bench.test";
/// The goals for madmail.
const MIN_SPEEDUP: f64 = 10.0;
const MANY_LIMIT: Duration = Duration::from_secs(10);
/// Bounds on one scenario, generous for a busy machine.
const FIRST_TIMEOUT: Duration = Duration::from_secs(120);
/// Between two `madmail cert info` while waiting for many certificates. Each is a process
/// reading the configuration, so not as tight as the STARTTLS probe.
const INFO_INTERVAL: Duration = Duration::from_millis(50);

pub struct Options {
    pub names: usize,
    pub runs: usize,
}

impl Options {
    pub fn parse(args: &[&str]) -> Result<Options, String> {
        let mut options = Options {
            names: 100,
            runs: 5,
        };
        let mut rest = args.iter();
        while let Some(&flag) = rest.next() {
            let slot = match flag {
                "--names" => &mut options.names,
                "--runs" => &mut options.runs,
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
        if !(2..=1000).contains(&options.names) {
            return Err("--names must be between 2 and 1000".into());
        }
        if !(1..=100).contains(&options.runs) {
            return Err("--runs must be between 1 and 100".into());
        }
        Ok(options)
    }

    /// The names of the many-certificates scenario: `n000.bench.test`, ...
    fn many_names(&self) -> Vec<String> {
        let width = (self.names - 1).to_string().len();
        (0..self.names)
            .map(|i| format!("n{i:0width$}.bench.test"))
            .collect()
    }

    /// A bound on one many-certificates scenario, generous for a slow machine.
    fn many_timeout(&self) -> Duration {
        Duration::from_secs(120)
            + Duration::from_secs(2) * u32::try_from(self.names).unwrap_or(u32::MAX)
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
    deps::ensure(PACKAGES)?;
    cleanup::install_interrupt_handler()?;
    crate::cargo(&["build", "--release", "-p", "madmail"])?;
    let madmail = target_dir().join("release/madmail");
    let work = tempfile::Builder::new()
        .prefix("madmail-bench-acme-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    // One runtime for the probing client; the scenarios themselves are driven from here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client's runtime: {e}"))?;

    let load_before = probe::load_average();
    let mut madmail_first = Vec::new();
    let mut lego_first = Vec::new();
    let mut restarts = Restarts::default();
    for run in 1..=options.runs {
        let dir = work.path().join(format!("first-{run}"));
        eprintln!("xtask: first certificate, run {run}/{}", options.runs);
        let (m, r) = with_pebble(
            &dir.join("madmail"),
            "madmail, first certificate",
            |p, w, d| first_madmail(&runtime, &madmail, p, w, d),
        )?;
        restarts.madmail_first += r;
        let (l, r) = with_pebble(&dir.join("lego"), "lego, first certificate", first_lego)?;
        restarts.lego_first += r;
        eprintln!(
            "xtask:   madmail {:.3} s, lego {:.3} s",
            m.seconds,
            l.elapsed.as_secs_f64()
        );
        madmail_first.push(m);
        lego_first.push(l);
    }
    let names = options.many_names();
    let within = options.many_timeout();
    eprintln!("xtask: {} certificates, madmail", names.len());
    let (madmail_many, r) = with_pebble(
        &work.path().join("many-madmail"),
        "madmail, many certificates",
        |p, w, d| many_madmail(&runtime, &madmail, &names, within, (p, w, d)),
    )?;
    restarts.madmail_many = r;
    eprintln!(
        "xtask:   {:.3} s; {} lego processes at once",
        madmail_many.seconds,
        names.len()
    );
    let (lego_many, r) = with_pebble(
        &work.path().join("many-lego"),
        "lego, many certificates",
        |p, w, d| many_lego(&names, within, (p, w, d)),
    )?;
    restarts.lego_many = r;
    eprintln!("xtask:   {:.3} s", lego_many.elapsed.as_secs_f64());
    let load_after = probe::load_average();

    let rows = rows(
        options,
        (&madmail_first, &lego_first),
        (&madmail_many, &lego_many),
        &restarts,
    );
    let goals = goals(options, &madmail_first, &lego_first, &madmail_many);
    let report = Report {
        names: options.names,
        runs: options.runs,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average_before: load_before,
        load_average_after: load_after,
        versions: Versions {
            pebble: package_version("pebble"),
            lego: package_version("lego"),
        },
        pebble_environment: PEBBLE_ENVIRONMENT.iter().copied().collect(),
        rows: &rows,
        goals: &goals,
    };
    print(&report);
    let json = target_dir().join("bench/acme.json");
    write_json(&json, &report)?;
    println!("\nfigures written to {}", json.display());
    let path = work.path().to_owned();
    work.close()
        .map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

/// How many fresh Pebbles a scenario may need when one deadlocks (see
/// [`ScenarioError::PebbleStuck`]; about half of the hundred-names runs do).
const PEBBLE_ATTEMPTS: usize = 5;

/// Runs `scenario` against a fresh Pebble in a fresh directory under `dir`, again with a new
/// Pebble when it deadlocked; returns the result and how many Pebbles were given up on.
fn with_pebble<T>(
    dir: &Path,
    what: &str,
    mut scenario: impl FnMut(&Pebble, &Watchdog, &Path) -> Result<T, ScenarioError>,
) -> Result<(T, usize), String> {
    let mut attempt = 1;
    loop {
        let dir = dir.join(format!("attempt-{attempt}"));
        let pebble_dir = dir.join("pebble");
        std::fs::create_dir_all(&pebble_dir)
            .map_err(|e| format!("{}: {e}", pebble_dir.display()))?;
        let pebble = Pebble::start(&pebble_dir)?;
        let watchdog = Watchdog::start(&pebble);
        match scenario(&pebble, &watchdog, &dir) {
            Ok(value) => return Ok((value, attempt - 1)),
            Err(ScenarioError::PebbleStuck(why)) if attempt < PEBBLE_ATTEMPTS => {
                eprintln!("xtask: {what}: {why}; again with a fresh Pebble");
                attempt += 1;
            }
            Err(ScenarioError::PebbleStuck(why)) => {
                return Err(format!(
                    "{what}: {why}; Pebble deadlocked in all {PEBBLE_ATTEMPTS} attempts"
                ));
            }
            Err(ScenarioError::Failed(e)) => return Err(format!("{what}: {e}")),
        }
    }
}

/// One madmail first-certificate run.
struct MadmailFirst {
    seconds: f64,
    /// When the endpoint first answered STARTTLS (with the placeholder).
    endpoint_up: Option<f64>,
    peak_rss: u64,
}

fn first_madmail(
    runtime: &tokio::runtime::Runtime,
    bin: &Path,
    pebble: &Pebble,
    watchdog: &Watchdog,
    dir: &Path,
) -> Result<MadmailFirst, ScenarioError> {
    let tls = acme_client::connector(pebble.issuing_root())?;
    let mut server = AcmeMadmail::start(bin, &dir.join("madmail"), pebble, &[NAME.to_owned()])?;
    let (addr, started) = (server.addr(), server.started());
    let first = runtime
        .block_on(acme_client::wait_first_certificate(
            addr,
            NAME,
            &tls,
            started,
            FIRST_TIMEOUT,
            || server.gone().or_else(|| watchdog.stuck()),
        ))
        .map_err(|e| watchdog.blame(with_logs(&e, &server, pebble)))?;
    let peak_rss = server.peak_rss()?;
    server.stop()?;
    Ok(MadmailFirst {
        seconds: first.verified.as_secs_f64(),
        endpoint_up: first.endpoint_up.map(|d| d.as_secs_f64()),
        peak_rss,
    })
}

fn first_lego(
    pebble: &Pebble,
    watchdog: &Watchdog,
    dir: &Path,
) -> Result<lego::LegoRun, ScenarioError> {
    lego::run(
        pebble,
        watchdog,
        &dir.join("lego"),
        &[NAME.to_owned()],
        FIRST_TIMEOUT,
    )
    .map_err(|e| match e {
        ScenarioError::Failed(e) => ScenarioError::Failed(format!(
            "{e}\nPebble's log ends with:\n{}",
            pebble.log_tail(15)
        )),
        stuck => stuck,
    })
}

/// The madmail many-certificates run.
struct MadmailMany {
    seconds: f64,
    /// When the first and the median certificate were seen valid.
    first: f64,
    median: f64,
    peak_rss: u64,
    info_polls: usize,
}

fn many_madmail(
    runtime: &tokio::runtime::Runtime,
    bin: &Path,
    names: &[String],
    within: Duration,
    (pebble, watchdog, dir): (&Pebble, &Watchdog, &Path),
) -> Result<MadmailMany, ScenarioError> {
    let tls = acme_client::connector(pebble.issuing_root())?;
    let mut server = AcmeMadmail::start(bin, &dir.join("madmail"), pebble, names)?;
    let fail = |e: String, server: &AcmeMadmail| watchdog.blame(with_logs(&e, server, pebble));
    let mut valid_at: Vec<(String, f64)> = Vec::new();
    let mut polls = 0;
    let mut last_problem;
    let seconds = loop {
        cleanup::check()?;
        watchdog.check()?;
        if let Some(why) = server.gone() {
            return Err(fail(why, &server));
        }
        polls += 1;
        match server.cert_info() {
            Ok(infos) => {
                let at = server.started().elapsed().as_secs_f64();
                if let Some(failing) = infos.iter().find(|c| c.status == "failing") {
                    return Err(fail(
                        format!(
                            "the order for {:?} failed: {}",
                            failing.names,
                            failing
                                .last_error
                                .as_deref()
                                .unwrap_or("(no error recorded)")
                        ),
                        &server,
                    ));
                }
                if infos.len() != names.len() {
                    return Err(fail(
                        format!(
                            "madmail manages {} certificates for {} names; expected one each",
                            infos.len(),
                            names.len()
                        ),
                        &server,
                    ));
                }
                for info in infos.iter().filter(|c| c.status == "valid") {
                    let name = info.names.join(",");
                    if !valid_at.iter().any(|(n, _)| *n == name) {
                        valid_at.push((name, at));
                    }
                }
                if valid_at.len() == names.len() {
                    break at;
                }
                last_problem = format!("{} of {} valid", valid_at.len(), names.len());
            }
            Err(e) => last_problem = e,
        }
        if server.started().elapsed() >= within {
            return Err(fail(
                format!(
                    "not every certificate was valid within {}s ({last_problem})",
                    within.as_secs()
                ),
                &server,
            ));
        }
        std::thread::sleep(INFO_INTERVAL);
    };
    // `cert info` says valid; check that what is served verifies, name by name.
    let unverified = runtime.block_on(acme_client::unverified_names(server.addr(), names, &tls));
    if let Some((name, why)) = unverified.first() {
        return Err(fail(
            format!(
                "{} of {} names are not served a verified certificate, e.g. {name}: {why}",
                unverified.len(),
                names.len()
            ),
            &server,
        ));
    }
    let peak_rss = server.peak_rss()?;
    server.stop()?;
    let mut times: Vec<f64> = valid_at.iter().map(|(_, t)| *t).collect();
    times.sort_by(f64::total_cmp);
    Ok(MadmailMany {
        seconds,
        first: times.first().copied().unwrap_or(seconds),
        median: median(&times),
        peak_rss,
        info_polls: polls,
    })
}

fn many_lego(
    names: &[String],
    within: Duration,
    (pebble, watchdog, dir): (&Pebble, &Watchdog, &Path),
) -> Result<lego::LegoRun, ScenarioError> {
    lego::run(pebble, watchdog, &dir.join("lego"), names, within).map_err(|e| match e {
        ScenarioError::Failed(e) => ScenarioError::Failed(format!(
            "{e}\nPebble's log ends with:\n{}",
            pebble.log_tail(15)
        )),
        stuck => stuck,
    })
}

fn with_logs(error: &str, server: &AcmeMadmail, pebble: &Pebble) -> String {
    format!(
        "{error}\nmadmail's log ends with:\n{}\nPebble's log ends with:\n{}",
        server.log_tail(20),
        pebble.log_tail(10)
    )
}

/// The environment every Pebble of the run gets.
const PEBBLE_ENVIRONMENT: &[(&str, &str)] = &[
    ("PEBBLE_VA_NOSLEEP", "1"),
    ("PEBBLE_WFE_NONCEREJECT", "0"),
    ("PEBBLE_AUTHZREUSE", "0"),
];

#[derive(Debug, Serialize)]
struct Report<'a> {
    names: usize,
    runs: usize,
    cpus: usize,
    /// The machine's 1-minute load average before and after the run: other work on the
    /// machine slows every client down and scatters the figures.
    load_average_before: Option<f64>,
    load_average_after: Option<f64>,
    versions: Versions,
    pebble_environment: BTreeMap<&'static str, &'static str>,
    rows: &'a [Row],
    goals: &'a [Goal],
}

#[derive(Debug, Serialize)]
struct Versions {
    pebble: Option<String>,
    lego: Option<String>,
}

/// One client in one scenario.
#[derive(Debug, Serialize)]
struct Row {
    client: &'static str,
    scenario: String,
    /// How the client was run.
    method: String,
    runs: usize,
    /// Certificates per run.
    certificates: usize,
    /// Per run, in the order they ran.
    seconds: Vec<f64>,
    median_seconds: f64,
    min_seconds: f64,
    max_seconds: f64,
    /// madmail: its VmHWM at the end of the scenario (the highest over the runs). lego: the
    /// highest VmHWM sampled while it ran; with several processes, `peak_rss_sum_bytes`
    /// adds each one's.
    peak_rss_bytes: u64,
    peak_rss_sum_bytes: Option<u64>,
    /// Fresh Pebbles started because one deadlocked (the figures come from runs that
    /// completed; see [`ScenarioError::PebbleStuck`]).
    pebble_restarts: usize,
    /// What else the run showed (human-readable, also in the table).
    note: String,
}

#[derive(Debug, Serialize)]
struct Goal {
    goal: String,
    met: bool,
    detail: String,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn row(
    client: &'static str,
    scenario: String,
    method: String,
    certificates: usize,
    seconds: Vec<f64>,
    (peak_rss_bytes, peak_rss_sum_bytes): (u64, Option<u64>),
    note: String,
) -> Row {
    Row {
        client,
        scenario,
        method,
        runs: seconds.len(),
        certificates,
        median_seconds: median(&seconds),
        min_seconds: seconds.iter().copied().fold(f64::INFINITY, f64::min),
        max_seconds: seconds.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        seconds,
        peak_rss_bytes,
        peak_rss_sum_bytes,
        pebble_restarts: 0,
        note,
    }
}

/// Pebbles given up on after they deadlocked, per row.
#[derive(Default)]
struct Restarts {
    madmail_first: usize,
    lego_first: usize,
    madmail_many: usize,
    lego_many: usize,
}

fn rows(
    options: &Options,
    (madmail_first, lego_first): (&[MadmailFirst], &[lego::LegoRun]),
    (madmail_many, lego_many): (&MadmailMany, &lego::LegoRun),
    restarts: &Restarts,
) -> Vec<Row> {
    let up: Vec<f64> = madmail_first.iter().filter_map(|m| m.endpoint_up).collect();
    let n = options.names;
    let mut rows = vec![
        row(
            "madmail",
            "first certificate".into(),
            "start with an empty store until a verified certificate is served after STARTTLS"
                .into(),
            1,
            madmail_first.iter().map(|m| m.seconds).collect(),
            (
                madmail_first.iter().map(|m| m.peak_rss).max().unwrap_or(0),
                None,
            ),
            if up.is_empty() {
                String::new()
            } else {
                format!("STARTTLS up (placeholder) after {:.3} s", median(&up))
            },
        ),
        row(
            "lego",
            "first certificate".into(),
            "`lego run`, own http-01 server, new account, until it exits".into(),
            1,
            lego_first.iter().map(|l| l.elapsed.as_secs_f64()).collect(),
            (
                lego_first.iter().map(|l| l.peak_rss_max).max().unwrap_or(0),
                None,
            ),
            String::new(),
        ),
        row(
            "madmail",
            format!("{n} certificates"),
            format!(
                "one process, one loader: hostname + {} extra_names, a certificate each, \
                 until `cert info` shows all valid",
                n - 1
            ),
            n,
            vec![madmail_many.seconds],
            (madmail_many.peak_rss, None),
            format!(
                "first valid {:.2} s, half {:.2} s; {} cert info polls",
                madmail_many.first, madmail_many.median, madmail_many.info_polls
            ),
        ),
        row(
            "lego",
            format!("{n} certificates"),
            format!("{n} `lego run` processes at once, one name each, shared --http.webroot"),
            n,
            vec![lego_many.elapsed.as_secs_f64()],
            (lego_many.peak_rss_max, Some(lego_many.peak_rss_sum)),
            format!(
                "RSS: highest process; all {n} together {:.0} MB",
                mb(lego_many.peak_rss_sum)
            ),
        ),
    ];
    let counts = [
        restarts.madmail_first,
        restarts.lego_first,
        restarts.madmail_many,
        restarts.lego_many,
    ];
    for (row, restarts) in rows.iter_mut().zip(counts) {
        row.pebble_restarts = restarts;
        if restarts > 0 {
            let sep = if row.note.is_empty() { "" } else { "; " };
            row.note += &format!("{sep}Pebble deadlocked {restarts}x, run again");
        }
    }
    rows
}

fn goals(
    options: &Options,
    madmail_first: &[MadmailFirst],
    lego_first: &[lego::LegoRun],
    madmail_many: &MadmailMany,
) -> Vec<Goal> {
    let m = median(&madmail_first.iter().map(|r| r.seconds).collect::<Vec<_>>());
    let l = median(
        &lego_first
            .iter()
            .map(|r| r.elapsed.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    let speedup = l / m;
    let first_rss = madmail_first.iter().map(|r| r.peak_rss).max().unwrap_or(0);
    vec![
        Goal {
            goal: format!("first certificate at least {MIN_SPEEDUP:.0}x faster than lego"),
            met: speedup >= MIN_SPEEDUP,
            detail: format!("medians: madmail {m:.3} s, lego {l:.3} s ({speedup:.1}x)"),
        },
        Goal {
            goal: format!(
                "{} certificates in under {} s",
                options.names,
                MANY_LIMIT.as_secs()
            ),
            met: madmail_many.seconds < MANY_LIMIT.as_secs_f64(),
            detail: format!("{:.2} s", madmail_many.seconds),
        },
        Goal {
            goal: "memory reported".into(),
            met: first_rss > 0 && madmail_many.peak_rss > 0,
            detail: format!(
                "peak RSS {:.1} MB (first certificate, highest run), {:.1} MB ({} certificates)",
                mb(first_rss),
                mb(madmail_many.peak_rss),
                options.names
            ),
        },
    ]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn print(report: &Report<'_>) {
    let header = [
        "client",
        "scenario",
        "runs",
        "median s",
        "min s",
        "max s",
        "peak RSS MB",
        "notes",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in report.rows {
        table.push(vec![
            row.client.to_owned(),
            row.scenario.clone(),
            row.runs.to_string(),
            format!("{:.3}", row.median_seconds),
            format!("{:.3}", row.min_seconds),
            format!("{:.3}", row.max_seconds),
            format!("{:.1}", mb(row.peak_rss_bytes)),
            row.note.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in table.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                // Text columns left-aligned, figures right-aligned.
                if c < 2 || c == header.len() - 1 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
        if i == 0 {
            println!(
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
    println!();
    for row in report.rows {
        println!("{} / {}: {}", row.client, row.scenario, row.method);
    }
    let load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    println!(
        "\nPebble {} ({}), lego {}; every scenario against a fresh Pebble",
        version(&report.versions.pebble),
        report
            .pebble_environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        version(&report.versions.lego),
    );
    println!(
        "{} CPUs, shared by Pebble, the clients and the probes; load average before {}, after {}",
        report.cpus,
        load(report.load_average_before),
        load(report.load_average_after),
    );
    println!();
    println!("madmail goals:");
    for goal in report.goals {
        let verdict = if goal.met { "met" } else { "missed" };
        println!("  [{verdict}] {}: {}", goal.goal, goal.detail);
    }
}

fn write_json(path: &Path, report: &Report<'_>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json =
        serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode JSON: {e}"))?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// The installed Debian version of `package` (lego's own `--version` says `dev`).
fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// Where Cargo puts build output (and we put the JSON): `CARGO_TARGET_DIR` or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => crate::workspace_root().join(dir),
        None => crate::workspace_root().join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Options, median};

    #[test]
    fn options() {
        let defaults = Options::parse(&[]).unwrap();
        assert_eq!((defaults.names, defaults.runs), (100, 5));
        let names = defaults.many_names();
        assert_eq!(names.len(), 100);
        assert_eq!(names[0], "n00.bench.test");
        assert_eq!(names[99], "n99.bench.test");
        let quick = Options::parse(&["--names", "10", "--runs", "1"]).unwrap();
        assert_eq!((quick.names, quick.runs), (10, 1));
        assert_eq!(quick.many_names()[9], "n9.bench.test");
        assert!(Options::parse(&["--names"]).is_err());
        assert!(Options::parse(&["--names", "x"]).is_err());
        assert!(Options::parse(&["--names", "1"]).is_err());
        assert!(Options::parse(&["--runs", "0"]).is_err());
        assert!(Options::parse(&["--bogus", "1"]).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}

//! The results: a table on stdout and the same figures as JSON.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One server under one load.
#[derive(Debug, Serialize)]
pub struct Row {
    pub server: &'static str,
    pub scenario: &'static str,
    pub client: &'static str,
    pub messages: usize,
    /// Until every message was stored: madmail, the last 250 (it fsyncs before replying);
    /// Postfix, its queue empty and every message in the Maildir.
    pub seconds: f64,
    pub messages_per_second: f64,
    /// Latency from MAIL FROM to the 250 after the content (our client only).
    pub latency_ms: Option<Latency>,
    /// madmail: the process's VmHWM. Postfix: the sum of VmHWM over its processes.
    pub peak_rss_bytes: u64,
    pub peak_rss_processes: usize,
    pub mailbox: MailboxRates,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Delivery rate at the start and at the end of filling one mailbox, from the delivery times
/// in the names of the files in `new/`: `window` messages over the span of the first
/// `window` intervals between deliveries, and over the span of the last `window`.
#[derive(Debug, Serialize)]
pub struct MailboxRates {
    pub window: usize,
    pub first_per_second: f64,
    pub last_per_second: f64,
    /// last / first: 1.0 means the mailbox's size did not slow delivery down.
    pub ratio: f64,
}

impl MailboxRates {
    /// `times` sorted; needs more than `window` of them.
    pub fn from_times(times: &[SystemTime], window: usize) -> Result<MailboxRates, String> {
        let n = times.len();
        if window == 0 || n <= window {
            return Err(format!("{n} messages are too few for a window of {window}"));
        }
        let span = |from: SystemTime, to: SystemTime| {
            to.duration_since(from)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        };
        let rate = |secs: f64| {
            if secs > 0.0 {
                window as f64 / secs
            } else {
                f64::INFINITY
            }
        };
        let first = rate(span(times[0], times[window]));
        let last = rate(span(times[n - 1 - window], times[n - 1]));
        Ok(MailboxRates {
            window,
            first_per_second: first,
            last_per_second: last,
            ratio: last / first,
        })
    }
}

/// Whether madmail met the goals in this run.
#[derive(Debug, Serialize)]
pub struct Goal {
    pub goal: String,
    pub met: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub messages: usize,
    pub sessions: usize,
    pub size: usize,
    pub cpus: usize,
    /// The machine's 1-minute load average before the run: figures taken on a busy machine
    /// are not comparable with figures from an idle one. (Not after: the benchmark's own
    /// threads waiting on fsync raise it.)
    pub load_average_before: Option<f64>,
    pub rows: &'a [Row],
    pub goals: &'a [Goal],
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn rate(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.0}")
    } else {
        "inf".into()
    }
}

pub fn print(report: &Report<'_>, window: usize) {
    let rows = report.rows;
    let header = [
        "server".to_owned(),
        "scenario".to_owned(),
        "messages".to_owned(),
        "seconds".to_owned(),
        "msg/s".to_owned(),
        "p50 ms".to_owned(),
        "p99 ms".to_owned(),
        "max ms".to_owned(),
        "peak RSS MB".to_owned(),
        format!("first {window} msg/s"),
        format!("last {window} msg/s"),
        "last/first".to_owned(),
    ];
    let mut table = vec![header.to_vec()];
    for row in rows {
        let latency = |f: fn(&Latency) -> f64| {
            row.latency_ms
                .as_ref()
                .map_or_else(|| "-".to_owned(), |l| format!("{:.1}", f(l)))
        };
        let rss = if row.peak_rss_processes > 1 {
            format!(
                "{:.1} (sum of {})",
                mb(row.peak_rss_bytes),
                row.peak_rss_processes
            )
        } else {
            format!("{:.1}", mb(row.peak_rss_bytes))
        };
        table.push(vec![
            row.server.to_owned(),
            row.scenario.to_owned(),
            row.messages.to_string(),
            format!("{:.2}", row.seconds),
            format!("{:.0}", row.messages_per_second),
            latency(|l| l.p50),
            latency(|l| l.p99),
            latency(|l| l.max),
            rss,
            rate(row.mailbox.first_per_second),
            rate(row.mailbox.last_per_second),
            format!("{:.2}", row.mailbox.ratio),
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
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
                if c < 2 {
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
                "-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1))
            );
        }
    }
    let load = report
        .load_average_before
        .map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    println!(
        "\n{} CPUs, shared by the servers and the clients; load average before the run {load}",
        report.cpus,
    );
    println!();
    println!("madmail goals:");
    for goal in report.goals {
        let verdict = if goal.met { "met" } else { "NOT met" };
        println!("  [{verdict}] {}: {}", goal.goal, goal.detail);
    }
}

pub fn write_json(path: &Path, report: &Report<'_>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let json =
        serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode JSON: {e}"))?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

//! `cargo xtask bench`: benchmarks against real peers. See docs/benchmarks.md.
//!
//! - `bench smtp [--messages N] [--sessions N] [--size BYTES]`: madmail's MX endpoint and a
//!   private Postfix instance side by side, receiving and durably storing mail into one
//!   Maildir, over plain SMTP (Postfix's smtp-source as the client) and over STARTTLS (our
//!   own client, with latency percentiles).
//! - `bench acme [--names N] [--runs N]`: time to a first ACME certificate and to many
//!   certificates at once, madmail and lego side by side against a fresh Pebble each.

mod acme;
mod acme_client;
mod acme_madmail;
mod cleanup;
mod client;
mod lego;
mod madmail;
mod pebble;
mod postfix;
mod probe;
mod process;
mod report;
mod smtp;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// The domain both servers accept mail for.
const DOMAIN: &str = "bench.test";
/// The one mailbox every message goes to.
const RECIPIENT: &str = "u@bench.test";
const SENDER: &str = "a@load.test";

pub const USAGE: &str = "bench smtp [--messages N] [--sessions N] [--size BYTES]\n                        \
     madmail vs Postfix: msg/s, latency, peak RSS (root; installs postfix)\n  \
     bench acme [--names N] [--runs N]\n                        \
     madmail vs lego against Pebble: first certificate, N at once, peak RSS";

enum Bench {
    Smtp(smtp::Options),
    Acme(acme::Options),
}

pub fn run(args: &[&str]) -> Result<(), String> {
    let bench = match args {
        ["smtp", options @ ..] => Bench::Smtp(smtp::Options::parse(options)?),
        ["acme", options @ ..] => Bench::Acme(acme::Options::parse(options)?),
        _ => return Err(format!("usage: cargo xtask {USAGE}")),
    };
    // The load client shares the CPUs with the servers: unoptimised, its TLS and bookkeeping
    // would slow them down. `cargo xtask` builds a debug binary, so hand over to a release
    // build, by `exec` so that Ctrl-C or SIGTERM reaches the process that has servers to
    // stop (`cargo run` execs the binary in turn).
    if cfg!(debug_assertions) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("xtask: running the benchmark from a release build");
        let error = Command::new(&cargo)
            .args(["run", "--release", "--quiet", "-p", "xtask", "--", "bench"])
            .args(args)
            .current_dir(crate::workspace_root())
            .exec();
        return Err(format!("cannot run {cargo}: {error}"));
    }
    match bench {
        Bench::Smtp(options) => smtp::run(&options),
        Bench::Acme(options) => acme::run(&options),
    }
}

/// A Postfix program: Debian keeps them in /usr/sbin, which a non-login shell's PATH may lack.
fn sbin(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/sbin").join(name);
    if path.exists() { path } else { name.into() }
}

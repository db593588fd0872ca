//! `cargo xtask`: the project's automation, in Rust rather than shell scripts.
//!
//! - `cargo xtask test`: everything CI runs: formatting, clippy, and every test in the
//!   workspace (unit, property, conformance and end-to-end tests).
//! - `cargo xtask conformance config`: the maddy configuration corpus alone, verbosely.
//! - `cargo xtask bench smtp`: madmail against Postfix, receiving mail into a Maildir
//!   (docs/benchmarks.md).
//!
//! Later issues add `conformance acme` and `demo` here.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod deps;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["test"] => test(),
        ["conformance", "config"] => conformance_config(),
        ["bench", rest @ ..] => bench::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test                  formatting, clippy and the whole test suite (what CI runs)\n  \
                 conformance config    the maddy 0.9.4 configuration corpus\n  \
                 {}",
                bench::USAGE
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

fn test() -> Result<(), String> {
    deps::ensure(deps::TEST_PACKAGES)?;
    deps::ensure_python(deps::TEST_PYTHON_PACKAGES)?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets", "--all-features"])?;
    // Doc tests are not covered by --all-targets.
    cargo(&["test", "--workspace", "--doc", "--all-features"])
}

fn conformance_config() -> Result<(), String> {
    cargo(&[
        "test",
        "-p",
        "madmail-config",
        "--test",
        "conformance",
        "--",
        "--nocapture",
    ])
}

//! `cargo xtask`: the project's automation, in Rust rather than shell scripts.
//!
//! - `cargo xtask test`: everything CI runs: formatting, clippy, and every test in the
//!   workspace (unit, property, conformance and end-to-end tests).
//! - `cargo xtask conformance config`: the maddy configuration corpus alone, verbosely.
//! - `cargo xtask conformance acme`: `tls.loader.acme` against Pebble, BIND 9 and the binary
//!   alone, verbosely (docs/reference/tls-acme.md, "Conformance").
//! - `cargo xtask bench smtp`: madmail against Postfix, receiving mail into a Maildir
//!   (docs/benchmarks.md).
//! - `cargo xtask bench acme`: madmail against lego, obtaining certificates from Pebble
//!   (docs/benchmarks.md).
//!
//! Later issues add `demo` here.

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
        ["conformance", "acme"] => conformance_acme(),
        ["bench", rest @ ..] => bench::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test                  formatting, clippy and the whole test suite (what CI runs)\n  \
                 conformance config    the maddy 0.9.4 configuration corpus\n  \
                 conformance acme      tls.loader.acme against Pebble, BIND 9 and the binary\n  \
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
    cargo_with_env::<&str>(args, &[])
}

fn cargo_with_env<V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    env: &[(&str, V)],
) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_ref())))
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
    deps::ensure(deps::ACME_PACKAGES)?;
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
    // The ACME conformance tests run the binary this same build makes.
    cargo_with_env(
        &["test", "--workspace", "--all-targets", "--all-features"],
        &[("MADMAIL_BIN", &madmail_binary())],
    )?;
    // Doc tests are not covered by --all-targets.
    cargo(&["test", "--workspace", "--doc", "--all-features"])?;
    // The API documentation builds without broken links.
    cargo_with_env(
        &["doc", "--no-deps", "--workspace", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
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

/// `target/debug/madmail` (or under `CARGO_TARGET_DIR`).
fn madmail_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("debug")
        .join("madmail")
}

/// The ACME conformance suite: crates/acme's tests against Pebble (conformance scenarios,
/// http-01, tls-alpn-01, dns-01, the in-process double), and the DNS layer they rest on
/// (propagation against in-process nameservers, RFC 2136 against BIND 9).
fn conformance_acme() -> Result<(), String> {
    deps::ensure(deps::ACME_PACKAGES)?;
    cargo(&["build", "-p", "madmail"])?;
    let suites: [(&str, &[&str]); 3] = [
        (
            "madmail-acme",
            &["conformance", "pebble", "dns01", "double"],
        ),
        ("madmail-dns", &["propagation"]),
        ("madmail-libdns-rfc2136", &["bind"]),
    ];
    for (package, targets) in suites {
        let mut args = vec!["test", "-p", package];
        for target in targets {
            args.extend(["--test", target]);
        }
        args.extend(["--", "--nocapture", "--test-threads=2"]);
        cargo_with_env(&args, &[("MADMAIL_BIN", &madmail_binary())])?;
    }
    Ok(())
}

//! System packages the test suite needs (real peers: swaks, openssl, Dovecot...), installed
//! from Debian when missing. CI runs as root on a fresh machine; a developer without root gets
//! the exact command to run instead.

use std::process::{Command, Stdio};

/// A Debian package and a shell command that succeeds when it is installed.
pub struct Package {
    pub name: &'static str,
    pub command: &'static str,
}

/// Needed by `cargo xtask test` (with [`ACME_PACKAGES`]).
pub const TEST_PACKAGES: &[Package] = &[
    Package {
        name: "swaks",
        command: "command -v swaks",
    },
    Package {
        name: "libio-socket-ssl-perl",
        command: "perl -MIO::Socket::SSL -e 1",
    },
    Package {
        name: "openssl",
        command: "command -v openssl",
    },
    Package {
        name: "dovecot-imapd",
        command: "test -x /usr/lib/dovecot/imap",
    },
    Package {
        name: "python3",
        command: "command -v python3",
    },
    Package {
        name: "python3-pip",
        command: "python3 -m pip --version",
    },
];

/// Needed by the ACME tests (`cargo xtask conformance acme`, and `test`): Pebble 2.4 with
/// pebble-challtestsrv, and BIND 9 for RFC 2136.
pub const ACME_PACKAGES: &[Package] = &[
    Package {
        name: "pebble",
        command: "command -v pebble && command -v pebble-challtestsrv",
    },
    Package {
        name: "bind9",
        command: "test -x /usr/sbin/named || command -v named",
    },
];

/// Python packages (from PyPI) the tests use as real peers.
/// (pip requirement, module that imports once it is installed).
pub const TEST_PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("aiosmtpd", "aiosmtpd"),
    // moto's stand-in AWS server (`moto_server`), for libdns.route53.
    ("moto[server]", "moto.server"),
];

fn have(check: &str) -> bool {
    Command::new("sh")
        .args(["-c", check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the packages whose command is missing.
pub fn ensure(packages: &[Package]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|p| !have(p.command))
        .map(|p| p.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "the tests need Debian packages that are missing; run as root:\n  apt-get update && {install}"
        ));
    }
    eprintln!("xtask: installing {}", missing.join(", "));
    run_sh("apt-get update -qq")?;
    run_sh(&format!("DEBIAN_FRONTEND=noninteractive {install}"))
}

fn run_sh(script: &str) -> Result<(), String> {
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .map_err(|e| format!("{script}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{script}: {status}"))
    }
}

/// Installs the Python packages whose module does not import.
pub fn ensure_python(packages: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, module)| !have(&format!("python3 -c 'import {module}'")))
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: pip installing {}", missing.join(", "));
    // Quoted: `moto[server]` is a glob to the shell.
    let args: Vec<String> = missing.iter().map(|p| format!("'{p}'")).collect();
    // Debian's python marks its site-packages as externally managed; the flag is harmless
    // where it is not.
    run_sh(&format!(
        "python3 -m pip install --quiet {0} || python3 -m pip install --quiet --break-system-packages {0}",
        args.join(" ")
    ))
}

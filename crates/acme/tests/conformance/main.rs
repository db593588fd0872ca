//! `cargo xtask conformance acme`: `tls.loader.acme` against real software (Pebble 2.4, BIND 9,
//! the `madmail` binary) in the situations the issue lists: dns-01 through RFC 2136 (with a
//! delegation, and a propagation timeout), a CA rejecting nonces or reusing authorizations,
//! short lifetimes, kill -9 in the middle of an order, a torn store, a CA that refuses, never
//! answers or forgot the account, renewal under a load of handshakes, tls-alpn-01 on an
//! endpoint shared with mail, and two loaders sharing a store. docs/reference/tls-acme.md
//! ("Conformance") lists them with what each asserts.
//!
//! Needs `pebble` and `bind9` (Debian packages; `cargo xtask test` installs them). Every wait
//! is bounded; nothing asserts how long something took.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod dns01_bind;
mod load;
mod outages;
mod pebble_behaviour;
mod shared_store;
mod store_crash;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::pebble::Pebble;
use madmail_acme::CertStatus;

/// A configuration with one loader `acme` for `mail.example.test` (the global hostname) at
/// `ca`, trusting Pebble's API certificate, used by a `test_tls` endpoint; `body` adds the
/// loader's other directives (one per line).
pub fn config_for(dir: &Path, ca: &str, roots: &Path, body: &str) -> String {
    format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mail.example.test\n\
         tls.loader.acme acme {{\n    email admin@example.test\n    agreed\n    ca {ca}\n    trusted_roots {roots}\n    {body}\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n    tls &acme\n}}\n",
        state = dir.join("state").display(),
        run = dir.join("run").display(),
        roots = roots.display(),
    )
}

/// [`config_for`] with Pebble as the CA.
pub fn config(dir: &Path, pebble: &Pebble, body: &str) -> String {
    config_for(dir, &pebble.directory_url, &pebble.api_ca_file(), body)
}

/// The status of the certificate holding `name`.
pub fn status_of<'a>(statuses: &'a [CertStatus], name: &str) -> &'a CertStatus {
    statuses
        .iter()
        .find(|s| s.names.iter().any(|n| n == name))
        .unwrap_or_else(|| panic!("no certificate for {name}: {statuses:#?}"))
}

pub fn time(rfc3339: &str) -> SystemTime {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .into()
}

/// Whether `a` and `b` are at most `slack` apart.
pub fn close(a: SystemTime, b: SystemTime, slack: Duration) -> bool {
    let gap = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap();
    gap <= slack
}

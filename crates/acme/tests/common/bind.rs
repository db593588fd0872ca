//! A real BIND 9 (`named`) for dns-01 through `libdns.rfc2136`, started per test in a
//! temporary directory on a random loopback port by `madmail_libdns_rfc2136::testing` (the
//! harness crates/libdns-rfc2136/tests/bind.rs uses too). Needs BIND 9 (`apt-get install
//! bind9`; `cargo xtask test` installs it).
//!
//! Two zones, each open to TSIG-signed updates by its own key only:
//! - `example.test.` (key [`EXAMPLE_KEY`]), where `_acme-challenge.smtp.example.test.` is a
//!   CNAME to `smtp.delegated.test.` (a dns-01 delegation, `override_domain`);
//! - `delegated.test.` (key [`DELEGATED_KEY`]).
//!
//! Pebble is pointed at it with `-dnsserver`, so the CA reads the TXT records from BIND9. It
//! answers recursive queries from loopback: a recursive answer follows the delegation's CNAME
//! into the other zone, as the CA's resolver would (a purely authoritative answer stops at the
//! CNAME, the target being in another zone). No query ever leaves it: every name asked is in
//! its zones.

#![allow(dead_code)]

use std::ops::Deref;

use madmail_libdns_rfc2136::testing::{self, Setup, Zone};

pub use madmail_libdns_rfc2136::testing::Key;

pub const EXAMPLE_KEY: Key = (
    "acme.",
    "hmac-sha256",
    "b4P4lwfRoDk/pB/C63HhYgKu1mlc/eXXx18b0uDfhm4=",
);
pub const DELEGATED_KEY: Key = (
    "delegate.",
    "hmac-sha512",
    "BcbbPHRodOTa307TICtCOIOakFMymOD0YflIQkqjhdDoJwcjz/cZstmHLb6F7zYpSyjOp4sPoPQDi7toNqSSqA==",
);

const EXAMPLE_ZONE: &str = "$TTL 60
@       IN SOA  ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@       IN NS   ns1.example.test.
@       IN A    127.0.0.1
ns1     IN A    127.0.0.1
mail    IN A    127.0.0.1
smtp    IN A    127.0.0.1
_acme-challenge.smtp IN CNAME smtp.delegated.test.
";

const DELEGATED_ZONE: &str = "$TTL 60
@       IN SOA  ns1.delegated.test. hostmaster.delegated.test. 1 3600 600 86400 60
@       IN NS   ns1.delegated.test.
ns1     IN A    127.0.0.1
";

const SETUP: Setup = Setup {
    zones: &[
        Zone {
            name: "example.test.",
            file: EXAMPLE_ZONE,
            update_keys: &[EXAMPLE_KEY],
        },
        Zone {
            name: "delegated.test.",
            file: DELEGATED_ZONE,
            update_keys: &[DELEGATED_KEY],
        },
    ],
    recursion: true,
};

/// The shared [`testing::Named`] serving the two zones above: `addr()`, `port`, `log()`,
/// `txt(name)`, `rfc2136_block(key)`... come from it.
pub struct Named(testing::Named);

impl Named {
    pub async fn start() -> Named {
        Named(testing::Named::start(&SETUP).await)
    }
}

impl Deref for Named {
    type Target = testing::Named;

    fn deref(&self) -> &testing::Named {
        &self.0
    }
}

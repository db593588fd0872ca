//! A real BIND 9 (`named`) for dns-01 through `libdns.rfc2136`, started per test in a
//! temporary directory on a random loopback port (as crates/libdns-rfc2136/tests/bind.rs
//! does). Needs BIND 9 (`apt-get install bind9`; `cargo xtask test` installs it).
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

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use madmail_dns::wire;

/// A TSIG key: (name, algorithm, secret as `tsig-keygen` prints it).
pub type Key = (&'static str, &'static str, &'static str);

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

/// A running `named`, stopped (and its directory removed) when dropped.
pub struct Named {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("named"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "BIND 9 is needed for these tests and `named` was not found: install it with \
                 `apt-get install bind9` (`cargo xtask test` does)"
            )
        })
}

/// A port free for both TCP and UDP on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

fn zone_statement(d: &str, zone: &str, key: Key) -> String {
    format!(
        "zone \"{zone}.\" {{\n    type primary;\n    file \"{d}/{zone}.zone\";\n    allow-update {{ key \"{}\"; }};\n}};\n",
        key.0
    )
}

impl Named {
    pub async fn start() -> Named {
        let binary = named_binary();
        let mut failures = Vec::new();
        // A port taken by someone else between choosing and binding makes named exit: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let d = dir.path().display().to_string();
            let keys: String = [EXAMPLE_KEY, DELEGATED_KEY]
                .iter()
                .map(|(name, alg, secret)| {
                    format!("key \"{name}\" {{ algorithm {alg}; secret \"{secret}\"; }};\n")
                })
                .collect();
            let conf = format!(
                r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-recursion {{ 127.0.0.1; }};
    allow-query-cache {{ 127.0.0.1; }};
    notify no;
    dnssec-validation no;
}};
controls {{ }};
{keys}
{example}
{delegated}
"#,
                example = zone_statement(&d, "example.test", EXAMPLE_KEY),
                delegated = zone_statement(&d, "delegated.test", DELEGATED_KEY),
            );
            std::fs::write(dir.path().join("named.conf"), conf).unwrap();
            std::fs::write(dir.path().join("example.test.zone"), EXAMPLE_ZONE).unwrap();
            std::fs::write(dir.path().join("delegated.test.zone"), DELEGATED_ZONE).unwrap();
            let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
            let mut child = Command::new(&binary)
                .args(["-g", "-n", "1", "-c"])
                .arg(dir.path().join("named.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            for _ in 0..200 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if soa_answered(port).await {
                    return Named { child, port, dir };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            failures
                .push(std::fs::read_to_string(dir.path().join("named.log")).unwrap_or_default());
        }
        panic!("named did not start:\n{}", failures.join("\n---\n"));
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// named's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// A `dns rfc2136 { ... }` block for this server, one directive per line.
    pub fn rfc2136_block(&self, key: Key) -> String {
        let (name, alg, secret) = key;
        format!(
            "dns rfc2136 {{\n        server 127.0.0.1:{}\n        key_name {name}\n        key \"{secret}\"\n        key_alg {alg}\n    }}",
            self.port
        )
    }

    /// The TXT values of `name` (and the answer's records of other types, as `TYPE name`),
    /// asked directly, without recursion.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let response = wire::exchange(
            self.addr(),
            question(name, RecordType::TXT),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let mut values: Vec<String> = response
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::TXT(txt) => txt
                    .txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
                other => format!("{} {}", other.record_type(), r.name),
            })
            .collect();
        values.sort();
        values
    }
}

fn question(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message.metadata.recursion_desired = false;
    message
}

async fn soa_answered(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for zone in ["example.test.", "delegated.test."] {
        let answered = matches!(
            wire::exchange(addr, question(zone, RecordType::SOA), Duration::from_millis(200)).await,
            Ok(r) if r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty()
        );
        if !answered {
            return false;
        }
    }
    true
}

//! `libdns.rfc2136` against a real BIND 9 (`named`), started per test in a temporary directory
//! on a random local port with the zone `example.test.` open to updates signed with the test
//! keys. Needs BIND 9 installed (`apt-get install bind9`; `cargo xtask test` installs it): the
//! tests fail, not skip, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::rfc2136;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use madmail_dns::{
    DnsError, DnsProvider, PropagationOptions, Resolvers, TxtRecord, wait_until_visible, wire,
};

/// The keys named accepts updates from: (name, algorithm, secret), made with `tsig-keygen`.
const KEYS: [(&str, &str, &str); 3] = [
    (
        "acme.",
        "hmac-sha256",
        "b4P4lwfRoDk/pB/C63HhYgKu1mlc/eXXx18b0uDfhm4=",
    ),
    (
        "acme384.",
        "hmac-sha384",
        "Vh8A0/V0uzyZN64ug1A7S2ioL4O5GuXqTZQ71u6rUyeKy5ko7ib/I1SXty73y7p/",
    ),
    (
        "acme512.",
        "hmac-sha512",
        "BcbbPHRodOTa307TICtCOIOakFMymOD0YflIQkqjhdDoJwcjz/cZstmHLb6F7zYpSyjOp4sPoPQDi7toNqSSqA==",
    ),
];

const ZONE: &str = "$TTL 60
@       IN SOA  ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@       IN NS   ns1.example.test.
ns1     IN A    127.0.0.1
mail    IN A    127.0.0.1
";

const NAME: &str = "_acme-challenge.mail.example.test.";

/// A running `named`, stopped (and its directory removed) when dropped.
struct Named {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
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

impl Named {
    async fn start() -> Named {
        let binary = named_binary();
        let mut failures = Vec::new();
        // A port taken by someone else between choosing and binding makes named exit: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let d = dir.path().display();
            let keys: String = KEYS
                .iter()
                .map(|(name, alg, secret)| {
                    format!("key \"{name}\" {{ algorithm {alg}; secret \"{secret}\"; }};\n")
                })
                .collect();
            let allowed: String = KEYS
                .iter()
                .map(|(name, _, _)| format!("key \"{name}\"; "))
                .collect();
            let conf = format!(
                r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
}};
controls {{ }};
{keys}
zone "example.test." {{
    type primary;
    file "{d}/example.test.zone";
    allow-update {{ {allowed}}};
}};
"#
            );
            std::fs::write(dir.path().join("named.conf"), conf).unwrap();
            std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
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
                    return Named {
                        child,
                        port,
                        _dir: dir,
                    };
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

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `dns rfc2136 { ... }` for this server with one of [`KEYS`], or `extra` lines only.
    fn provider(&self, key: Option<usize>, extra: &str) -> Arc<dyn DnsProvider> {
        let mut block = format!(
            "        server 127.0.0.1:{}\n        timeout 2s\n",
            self.port
        );
        if let Some(i) = key {
            let (name, alg, secret) = KEYS[i];
            block.push_str(&format!(
                "        key_name {name}\n        key {secret}\n        key_alg {alg}\n"
            ));
        }
        block.push_str(extra);
        rfc2136(&block).unwrap()
    }

    /// The TXT values of `name`, asked directly (no recursion), sorted.
    async fn txt(&self, name: &str) -> Vec<String> {
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
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                _ => None,
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
    matches!(
        wire::exchange(addr, question("example.test.", RecordType::SOA), Duration::from_millis(200)).await,
        Ok(r) if r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty()
    )
}

fn txt(value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: NAME.into(),
        value: value.into(),
        ttl: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn appends_next_to_other_values_and_deletes_only_its_own() {
    let named = Named::start().await;
    let provider = named.provider(Some(0), "");
    let zone = provider.zone_for(NAME).await.unwrap();
    assert_eq!(zone, "example.test.");

    // A wildcard and its apex (or two orders) put two values on one name.
    provider.append(&zone, &txt("token-apex")).await.unwrap();
    provider
        .append(&zone, &txt("token-wildcard"))
        .await
        .unwrap();
    assert_eq!(named.txt(NAME).await, ["token-apex", "token-wildcard"]);

    provider.delete(&zone, &txt("token-apex")).await.unwrap();
    assert_eq!(named.txt(NAME).await, ["token-wildcard"]);

    // Deleting what is not there is fine and changes nothing.
    provider.delete(&zone, &txt("token-apex")).await.unwrap();
    provider
        .delete(&zone, &txt("never-published"))
        .await
        .unwrap();
    assert_eq!(named.txt(NAME).await, ["token-wildcard"]);

    provider
        .delete(&zone, &txt("token-wildcard"))
        .await
        .unwrap();
    assert!(named.txt(NAME).await.is_empty());
    // The rest of the zone is untouched.
    let mail = wire::exchange(
        named.addr(),
        question("mail.example.test.", RecordType::A),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(mail.answers.len(), 1);
}

#[tokio::test]
async fn sha384_and_sha512_keys_work() {
    let named = Named::start().await;
    for key in [1, 2] {
        let provider = named.provider(Some(key), "        zone example.test\n");
        let value = format!("token-{key}");
        provider
            .append("example.test.", &txt(&value))
            .await
            .unwrap();
        assert_eq!(named.txt(NAME).await, [value.as_str()]);
        provider
            .delete("example.test.", &txt(&value))
            .await
            .unwrap();
        assert!(named.txt(NAME).await.is_empty());
    }
}

#[tokio::test]
async fn wrong_keys_are_unauthorized() {
    let named = Named::start().await;
    let block = |name: &str, alg: &str, secret: &str| {
        format!(
            "        server 127.0.0.1:{}\n        key_name {name}\n        key {secret}\n        key_alg {alg}\n",
            named.port
        )
    };
    let other_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    for (config, expected) in [
        (block("acme.", "hmac-sha256", other_secret), "BADSIG"),
        (block("nobody.", "hmac-sha256", other_secret), "BADKEY"),
        (block("acme.", "hmac-sha512", KEYS[0].2), "BADKEY"),
        (
            format!("        server 127.0.0.1:{}\n", named.port),
            "REFUSED",
        ),
    ] {
        let provider = rfc2136(&config).unwrap();
        let err = provider
            .append("example.test.", &txt("token"))
            .await
            .unwrap_err();
        let DnsError::Unauthorized {
            zone,
            operation,
            message,
            ..
        } = &err
        else {
            panic!("expected Unauthorized, got {err}");
        };
        assert_eq!(
            (zone.as_str(), operation.as_str()),
            ("example.test.", "append")
        );
        assert!(message.contains(expected), "{err}");
        assert!(!err.to_string().contains(KEYS[0].2), "{err}");
        assert!(!err.to_string().contains(other_secret), "{err}");
    }
    assert!(named.txt(NAME).await.is_empty());
}

#[tokio::test]
async fn a_name_outside_the_servers_zones_is_an_error() {
    let named = Named::start().await;
    let provider = named.provider(Some(0), "");
    let err = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("example.org."), "{err}");
    let err = provider
        .append(
            "example.org.",
            &TxtRecord {
                fqdn: "_acme-challenge.example.org.".into(),
                ..txt("token")
            },
        )
        .await
        .unwrap_err();
    let DnsError::Unauthorized { message, .. } = &err else {
        panic!("expected Unauthorized, got {err}");
    };
    assert!(message.contains("NOTAUTH"), "{err}");
}

#[tokio::test]
async fn the_propagation_check_sees_a_published_value() {
    let named = Named::start().await;
    let provider = named.provider(Some(0), "");
    let zone = provider.zone_for(NAME).await.unwrap();
    provider.append(&zone, &txt("token-visible")).await.unwrap();
    // The default path: the zone's NS (ns1.example.test. = 127.0.0.1), asked directly.
    let options = PropagationOptions {
        timeout: Duration::from_secs(10),
        interval: Duration::from_millis(100),
        upstream: Resolvers::new(vec![named.addr()]),
        authoritative_port: named.port,
        ..PropagationOptions::default()
    };
    wait_until_visible(NAME, "token-visible", &options)
        .await
        .unwrap();
    provider.delete(&zone, &txt("token-visible")).await.unwrap();
    let err = wait_until_visible(
        NAME,
        "token-visible",
        &PropagationOptions {
            timeout: Duration::from_millis(300),
            ..options
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ns1.example.test."), "{err}");
}

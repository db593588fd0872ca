//! For tests only (cargo feature `testing`): a real BIND 9 `named` ([`Named`]) started in a
//! temporary directory on a random loopback port, serving the zones a test describes
//! ([`Setup`], [`Zone`]) and accepting RFC 2136 updates signed with their TSIG keys ([`Key`]),
//! so `libdns.rfc2136` — and whatever publishes dns-01 records through it, up to an ACME CA
//! reading them back — can be tested against the real thing.
//!
//! Needs `named` from Debian's `bind9` package (`apt-get install bind9`; `cargo xtask test`
//! installs it), looked for in `PATH` and the usual `sbin` directories. Without it the tests
//! fail, they do not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure is a failed test

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use madmail_dns::wire;

/// A TSIG key: (name, algorithm, secret as `tsig-keygen` prints it), e.g.
/// `("acme.", "hmac-sha256", "b4P4...")`.
pub type Key = (&'static str, &'static str, &'static str);

/// A zone `named` is primary for.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    /// The zone's name, absolute (`example.test.`).
    pub name: &'static str,
    /// The zone file's text.
    pub file: &'static str,
    /// The keys whose signed updates the zone accepts (declared to `named` as well).
    pub update_keys: &'static [Key],
}

/// What a [`Named`] serves.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub zones: &'static [Zone],
    /// Answer recursive queries from loopback (so an answer follows a CNAME into another of
    /// its zones, as a CA's resolver would); otherwise purely authoritative. No query ever
    /// leaves it as long as every name asked is in its zones.
    pub recursion: bool,
}

/// A running `named`, stopped (and its directory removed) when dropped.
pub struct Named {
    child: Child,
    /// The port it listens on, TCP and UDP, on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `named`, found in `PATH` or the usual `sbin` directories; panics when it is not installed.
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

/// A query for `name`'s `rtype` records, without recursion.
fn question(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message.metadata.recursion_desired = false;
    message
}

/// The file a zone is kept in, in `named`'s directory.
fn zone_file(zone: &Zone) -> String {
    format!("{}.zone", zone.name.trim_end_matches('.'))
}

/// `named.conf` for `setup`, in directory `d`, listening on `port`.
fn named_conf(setup: &Setup, d: &str, port: u16) -> String {
    let mut keys: Vec<Key> = Vec::new();
    for key in setup.zones.iter().flat_map(|z| z.update_keys) {
        if !keys.contains(key) {
            keys.push(*key);
        }
    }
    let keys: String = keys
        .iter()
        .map(|(name, alg, secret)| {
            format!("key \"{name}\" {{ algorithm {alg}; secret \"{secret}\"; }};\n")
        })
        .collect();
    let zones: String = setup
        .zones
        .iter()
        .map(|zone| {
            let allowed: String = zone
                .update_keys
                .iter()
                .map(|(name, _, _)| format!("key \"{name}\"; "))
                .collect();
            format!(
                "zone \"{name}\" {{\n    type primary;\n    file \"{d}/{file}\";\n    allow-update {{ {allowed}}};\n}};\n",
                name = zone.name,
                file = zone_file(zone),
            )
        })
        .collect();
    let recursion = if setup.recursion {
        "recursion yes;\n    allow-recursion { 127.0.0.1; };\n    allow-query-cache { 127.0.0.1; };"
    } else {
        "recursion no;"
    };
    format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    {recursion}
    notify no;
    dnssec-validation no;
}};
controls {{ }};
{keys}
{zones}"#
    )
}

impl Named {
    /// Starts `named` serving `setup`, once it answers for every zone's SOA; panics with its
    /// log when it does not start (after trying three ports).
    pub async fn start(setup: &Setup) -> Named {
        let binary = named_binary();
        let mut failures = Vec::new();
        // A port taken by someone else between choosing and binding makes named exit: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let d = dir.path().display().to_string();
            std::fs::write(dir.path().join("named.conf"), named_conf(setup, &d, port)).unwrap();
            for zone in setup.zones {
                std::fs::write(dir.path().join(zone_file(zone)), zone.file).unwrap();
            }
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
                if soa_answered(port, setup).await {
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

    /// 127.0.0.1 and [`port`](Named::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// named's log so far (for assertion messages, and to see which updates it applied).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// The directives of a `dns rfc2136` block for this server signing with `key`, one a line,
    /// not indented: `server`, `key_name`, `key`, `key_alg`.
    pub fn rfc2136_directives(&self, key: Key) -> String {
        let (name, alg, secret) = key;
        format!(
            "server 127.0.0.1:{}\nkey_name {name}\nkey \"{secret}\"\nkey_alg {alg}",
            self.port
        )
    }

    /// A `dns rfc2136 { ... }` block for this server signing with `key`, one directive per
    /// line, to go one level deep in a configuration block.
    pub fn rfc2136_block(&self, key: Key) -> String {
        let directives: String = self
            .rfc2136_directives(key)
            .lines()
            .map(|line| format!("        {line}\n"))
            .collect();
        format!("dns rfc2136 {{\n{directives}    }}")
    }

    /// The answer to a query for `name`'s `rtype` records, asked directly, without recursion;
    /// panics when none comes within 2 s.
    pub async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        wire::exchange(self.addr(), question(name, rtype), Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("asking named for {name} {rtype}: {e}"))
            .into()
    }

    /// The TXT values of `name` (and the answer's records of other types, as `TYPE name`,
    /// e.g. a CNAME), asked directly, without recursion, sorted.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let response = self.ask(name, RecordType::TXT).await;
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

/// Whether named on `port` answers for the SOA of every zone of `setup`.
async fn soa_answered(port: u16, setup: &Setup) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for zone in setup.zones {
        let answered = matches!(
            wire::exchange(addr, question(zone.name, RecordType::SOA), Duration::from_millis(200)).await,
            Ok(r) if r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty()
        );
        if !answered {
            return false;
        }
    }
    true
}

//! Zone discovery and the propagation check against in-process authoritative servers
//! (hickory-server with in-memory zones), laid out like a real deployment:
//!
//! - `example.test.` has two nameservers, `ns1` (127.0.0.1) and `ns2` (127.0.0.2), each with
//!   its own copy of the zone so a test can publish on one before the other;
//! - `other.test.` (127.0.0.3, `ns.other.test.`) is where `_acme-challenge.deleg.example.test.`
//!   points to with a CNAME (dns-01 delegation);
//! - all of them listen on one random port, which the check is told to use for nameservers.
//!
//! Lookups ("upstream") go to ns1 and then ns.other.test., the way a recursive resolver would
//! find both zones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use madmail_dns::{
    DnsError, PropagationOptions, Resolvers, ServerAddr, find_zone, resolve_cname,
    wait_until_visible,
};
use tokio::net::{TcpListener, UdpSocket};

const EXAMPLE_ZONE: &str = "
$TTL 60
@       IN SOA  ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@       IN NS   ns1.example.test.
@       IN NS   ns2.example.test.
ns1     IN A    127.0.0.1
ns2     IN A    127.0.0.2
mail    IN A    127.0.0.1
_acme-challenge.deleg IN CNAME deleg.acme.other.test.
";

const OTHER_ZONE: &str = "
$TTL 60
@       IN SOA  ns.other.test. hostmaster.other.test. 1 3600 600 86400 60
@       IN NS   ns.other.test.
ns      IN A    127.0.0.3
";

type Zone = Arc<InMemoryZoneHandler>;

fn zone(origin: &str, text: &str) -> Zone {
    let origin = Name::from_ascii(origin).unwrap();
    let (origin, records) = Parser::new(text, None, Some(origin)).parse().unwrap();
    Arc::new(
        InMemoryZoneHandler::new(origin, records, ZoneType::Primary, AxfrPolicy::Deny).unwrap(),
    )
}

/// Publishes a TXT value the way a provider would (next to the values already there).
async fn publish(zone: &Zone, name: &str, value: &str) {
    let record = Record::from_rdata(
        Name::from_ascii(name).unwrap(),
        60,
        RData::TXT(TXT::new(vec![value.to_owned()])),
    );
    let serial = zone.serial().await + 1;
    assert!(zone.upsert(record, serial).await);
}

struct Lab {
    ns1: Zone,
    ns2: Zone,
    other: Zone,
    port: u16,
    servers: Vec<Server<Catalog>>,
}

impl Lab {
    async fn start() -> Lab {
        let ns1 = zone("example.test.", EXAMPLE_ZONE);
        let ns2 = zone("example.test.", EXAMPLE_ZONE);
        let other = zone("other.test.", OTHER_ZONE);
        let hosts = [(1, &ns1), (2, &ns2), (3, &other)];
        // One port for all three addresses: bind the first on a random port, then the others on
        // the same one (taken by chance on another address only rarely: then try another).
        for _ in 0..20 {
            let first = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 1), 0))
                .await
                .unwrap();
            let port = first.local_addr().unwrap().port();
            let mut sockets = Vec::new();
            let mut udp = Some(first);
            for (host, _) in hosts {
                let ip = Ipv4Addr::new(127, 0, 0, host);
                let socket = match udp.take() {
                    Some(s) => Ok(s),
                    None => UdpSocket::bind((ip, port)).await,
                };
                let listener = TcpListener::bind((ip, port)).await;
                match (socket, listener) {
                    (Ok(s), Ok(l)) => sockets.push((s, l)),
                    _ => break,
                }
            }
            if sockets.len() < hosts.len() {
                continue;
            }
            let mut servers = Vec::new();
            for ((udp, tcp), (_, zone)) in sockets.into_iter().zip(hosts) {
                let mut catalog = Catalog::new();
                let origin: LowerName = zone.origin().clone();
                catalog.upsert(origin, vec![zone.clone() as Arc<dyn ZoneHandler>]);
                let mut server = Server::new(catalog);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 16);
                servers.push(server);
            }
            return Lab {
                ns1,
                ns2,
                other,
                port,
                servers,
            };
        }
        panic!("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3");
    }

    fn addr(&self, host: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), self.port)
    }

    fn upstream(&self) -> Resolvers {
        Resolvers::new(vec![self.addr(1), self.addr(3)])
    }

    /// Checks the nameservers quickly, giving up after `timeout`.
    fn options(&self, timeout: Duration) -> PropagationOptions {
        PropagationOptions {
            timeout,
            interval: Duration::from_millis(50),
            upstream: self.upstream(),
            authoritative_port: self.port,
            ..PropagationOptions::default()
        }
    }

    async fn stop(mut self) {
        for server in &mut self.servers {
            let _ = server.shutdown_gracefully().await;
        }
    }
}

#[tokio::test]
async fn finds_the_closest_enclosing_zone() {
    let lab = Lab::start().await;
    let upstream = lab.upstream();
    for (name, zone) in [
        ("example.test.", "example.test."),
        ("example.test", "example.test."),
        ("_acme-challenge.mail.example.test.", "example.test."),
        ("Mail.Example.Test.", "example.test."),
        ("a.b.c.other.test.", "other.test."),
        // A CNAME is not an apex, and its target's zone is not the zone holding the name.
        ("_acme-challenge.deleg.example.test.", "example.test."),
    ] {
        assert_eq!(find_zone(name, &upstream).await.unwrap(), zone, "{name}");
    }
    let err = find_zone("mail.nowhere.invalid.", &upstream)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nowhere.invalid."), "{err}");
    lab.stop().await;
}

#[tokio::test]
async fn follows_cnames() {
    let lab = Lab::start().await;
    let upstream = lab.upstream();
    assert_eq!(
        resolve_cname("_acme-challenge.deleg.example.test.", &upstream)
            .await
            .unwrap(),
        "deleg.acme.other.test."
    );
    assert_eq!(
        resolve_cname("_acme-challenge.mail.example.test", &upstream)
            .await
            .unwrap(),
        "_acme-challenge.mail.example.test."
    );
    lab.stop().await;
}

#[tokio::test]
async fn waits_until_every_nameserver_has_the_value() {
    let lab = Lab::start().await;
    let name = "_acme-challenge.mail.example.test.";
    // Another value is already there (a concurrent order): it must not count.
    publish(&lab.ns1, name, "other-order").await;
    publish(&lab.ns2, name, "other-order").await;

    let published_everywhere = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (ns1, ns2, done) = (
            lab.ns1.clone(),
            lab.ns2.clone(),
            published_everywhere.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            publish(&ns1, name, "token-1").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.store(true, Ordering::SeqCst);
            publish(&ns2, name, "token-1").await;
        })
    };
    wait_until_visible(name, "token-1", &lab.options(Duration::from_secs(20)))
        .await
        .unwrap();
    // The check cannot have passed before the last nameserver got the value.
    assert!(published_everywhere.load(Ordering::SeqCst));
    publisher.await.unwrap();
    lab.stop().await;
}

#[tokio::test]
async fn times_out_naming_the_servers_without_the_value() {
    let lab = Lab::start().await;
    let name = "_acme-challenge.mail.example.test.";
    publish(&lab.ns1, name, "token-2").await;
    let err = wait_until_visible(name, "token-2", &lab.options(Duration::from_millis(700)))
        .await
        .unwrap_err();
    let DnsError::NotVisible {
        name: checked,
        value,
        pending,
        ..
    } = &err
    else {
        panic!("expected NotVisible, got {err}");
    };
    assert_eq!(checked, name);
    assert_eq!(value, "token-2");
    assert_eq!(pending.len(), 1, "{err}");
    assert!(pending[0].starts_with("ns2.example.test. ("), "{err}");
    assert!(pending[0].contains("NXDOMAIN"), "{err}");
    let text = err.to_string();
    assert!(text.contains("ns2.example.test."), "{text}");
    assert!(!text.contains("ns1.example.test."), "{text}");
    lab.stop().await;
}

#[tokio::test]
async fn follows_a_delegation_cname_to_the_target_zone() {
    let lab = Lab::start().await;
    let name = "_acme-challenge.deleg.example.test.";
    let target = "deleg.acme.other.test.";

    // Before the value exists, the servers waited for are the target zone's.
    let err = wait_until_visible(name, "token-3", &lab.options(Duration::from_millis(300)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ns.other.test."), "{text}");
    assert!(!text.contains("example.test. ("), "{text}");

    let other = lab.other.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&other, target, "token-3").await;
    });
    wait_until_visible(name, "token-3", &lab.options(Duration::from_secs(20)))
        .await
        .unwrap();
    publisher.await.unwrap();
    lab.stop().await;
}

#[tokio::test]
async fn explicit_resolvers_replace_the_nameservers() {
    let lab = Lab::start().await;
    let name = "_acme-challenge.mail.example.test.";
    let resolver = |host| ServerAddr::from(lab.addr(host));

    // Only ns1 has the value: asking ns1 alone is satisfied, ns2 is not asked.
    publish(&lab.ns1, name, "token-4").await;
    let only_ns1 = PropagationOptions {
        resolvers: vec![resolver(1)],
        ..lab.options(Duration::from_secs(20))
    };
    wait_until_visible(name, "token-4", &only_ns1)
        .await
        .unwrap();

    // Every listed resolver must answer it.
    let both = PropagationOptions {
        resolvers: vec![resolver(1), resolver(2)],
        ..lab.options(Duration::from_millis(300))
    };
    let err = wait_until_visible(name, "token-4", &both)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("resolver {}", lab.addr(2))),
        "{text}"
    );
    assert!(
        !text.contains(&format!("resolver {}", lab.addr(1))),
        "{text}"
    );
    lab.stop().await;
}

#[tokio::test]
async fn answers_too_large_for_udp_are_fetched_over_tcp() {
    let lab = Lab::start().await;
    let name = "_acme-challenge.mail.example.test.";
    // Twelve 200-byte values: about 2.5 kB, over the 1232 bytes asked for over UDP.
    for i in 0..12 {
        let value = format!("{i:02}{}", "x".repeat(198));
        publish(&lab.ns1, name, &value).await;
        publish(&lab.ns2, name, &value).await;
    }
    let options = lab.options(Duration::from_secs(20));
    wait_until_visible(name, &format!("11{}", "x".repeat(198)), &options)
        .await
        .unwrap();
    lab.stop().await;
}

#[tokio::test]
async fn zero_timeout_skips_the_check() {
    let lab = Lab::start().await;
    let options = lab.options(Duration::ZERO);
    wait_until_visible(
        "_acme-challenge.mail.example.test.",
        "never-published",
        &options,
    )
    .await
    .unwrap();
    lab.stop().await;
}

#[tokio::test]
async fn a_bad_name_is_an_error() {
    let options = PropagationOptions {
        timeout: Duration::from_secs(1),
        upstream: Resolvers::new(Vec::new()),
        ..PropagationOptions::default()
    };
    let err = wait_until_visible("bad..name", "v", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Lookup { .. }), "{err}");
}

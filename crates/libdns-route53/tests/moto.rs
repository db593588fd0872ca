//! `libdns.route53` against moto's Route 53 (`python3 -m moto.server`, from PyPI `moto[server]`): the
//! AWS SDK's real requests, answered by an independent implementation of the API. Zones and
//! records are set up and checked through the SDK's own calls (`ListResourceRecordSets`).
//!
//! moto is not a stand-in over `FakeZones`, so instead of `check_provider` these tests assert
//! the same behaviour on Route 53's own listing: the longest zone wins, two values share a
//! name next to a value that was there before, exactly the added values are removed, removing
//! a value that is gone is no error, and every other record stays.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_route53::Client;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::provider_block;

const INSTALL: &str = "pip install \"moto[server]\"";

/// A `moto_server` on a free local port, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Moto {
        // Through the interpreter rather than the `moto_server` script, which pyenv and
        // virtualenv installs keep off PATH until rehashed or activated.
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "python3 cannot import moto.server; these tests need moto's server: install it with `{INSTALL}` (`cargo xtask test` does)"
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting moto_server ({e}); install it with `{INSTALL}`"));
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("moto_server exited with {status}; is `{INSTALL}` complete?");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// An SDK client for the test's own set-up and checks.
    fn client(&self) -> Client {
        let config = aws_sdk_route53::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(&self.url)
            .build();
        Client::from_conf(config)
    }

    fn provider(&self, extra: &str) -> Arc<dyn DnsProvider> {
        provider_block(
            madmail_libdns_route53::register,
            "route53",
            &format!(
                "access_key_id AKIAIOSFODNN7EXAMPLE\nsecret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nendpoint {}\n{extra}",
                self.url
            ),
        )
        .unwrap()
    }
}

async fn create_zone(client: &Client, name: &str) -> String {
    let reply = client
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("madmail-test-{name}"))
        .send()
        .await
        .unwrap();
    let id = reply.hosted_zone().unwrap().id();
    id.rsplit('/').next().unwrap().to_owned()
}

async fn upsert(
    client: &Client,
    zone_id: &str,
    name: &str,
    rtype: RrType,
    ttl: i64,
    values: &[&str],
) {
    let mut set = ResourceRecordSet::builder()
        .name(name)
        .r#type(rtype)
        .ttl(ttl);
    for value in values {
        set = set.resource_records(ResourceRecord::builder().value(*value).build().unwrap());
    }
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(set.build().unwrap())
        .build()
        .unwrap();
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// Every record set of a zone as `(name, type, ttl, sorted values)`.
async fn record_sets(client: &Client, zone_id: &str) -> Vec<(String, String, i64, Vec<String>)> {
    let mut sets = Vec::new();
    let mut start: Option<(String, RrType)> = None;
    loop {
        let mut request = client.list_resource_record_sets().hosted_zone_id(zone_id);
        if let Some((name, rtype)) = &start {
            request = request
                .start_record_name(name)
                .start_record_type(rtype.clone());
        }
        let reply = request.send().await.unwrap();
        for set in reply.resource_record_sets() {
            let mut values: Vec<String> = set
                .resource_records()
                .iter()
                .map(|r| r.value().to_owned())
                .collect();
            values.sort();
            sets.push((
                set.name().to_owned(),
                set.r#type().as_str().to_owned(),
                set.ttl().unwrap_or_default(),
                values,
            ));
        }
        match (
            reply.is_truncated(),
            reply.next_record_name(),
            reply.next_record_type(),
        ) {
            (true, Some(name), Some(rtype)) => start = Some((name.to_owned(), rtype.clone())),
            _ => break,
        }
    }
    sets.sort();
    sets
}

/// The TXT values (as stored, quoted) at `name`.
async fn txt(client: &Client, zone_id: &str, name: &str) -> Vec<String> {
    record_sets(client, zone_id)
        .await
        .into_iter()
        .filter(|(n, t, _, _)| n == name && t == "TXT")
        .flat_map(|(_, _, _, values)| values)
        .collect()
}

fn record(fqdn: &str, value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.into(),
        value: value.into(),
        ttl: Duration::from_secs(120),
    }
}

const NAME: &str = "_acme-challenge.example.org.";
const DEEP: &str = "_acme-challenge.a.sub.example.org.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaves_as_every_provider_must_against_moto() {
    let moto = Moto::start();
    let client = moto.client();
    for i in 0..3 {
        create_zone(&client, &format!("filler{i}.test")).await;
    }
    let example = create_zone(&client, "example.org").await;
    let sub = create_zone(&client, "sub.example.org").await;
    upsert(
        &client,
        &example,
        NAME,
        RrType::Txt,
        300,
        &["\"pre-existing\""],
    )
    .await;
    // Neighbours: another type on the name, another TXT name right after it.
    upsert(&client, &example, NAME, RrType::A, 300, &["192.0.2.1"]).await;
    upsert(
        &client,
        &example,
        "_acme-challenge.www.example.org.",
        RrType::Txt,
        300,
        &["\"neighbour\""],
    )
    .await;
    for i in 0..20 {
        upsert(
            &client,
            &example,
            &format!("host{i:02}.example.org."),
            RrType::A,
            300,
            &["192.0.2.2"],
        )
        .await;
    }
    let before_example = record_sets(&client, &example).await;
    let before_sub = record_sets(&client, &sub).await;

    let provider = moto.provider("");
    assert_eq!(provider.name(), "route53");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.mail.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    assert_eq!(provider.zone_for(NAME).await.unwrap(), "example.org.");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.Sub.Example.org.")
            .await
            .unwrap(),
        "sub.example.org.",
        "the longest matching zone wins"
    );
    match provider.zone_for("_acme-challenge.example.invalid.").await {
        Err(DnsError::NoZone { provider: p, name }) => {
            assert_eq!(p, "route53");
            assert_eq!(name, "_acme-challenge.example.invalid.");
        }
        other => panic!("a name outside every zone: {other:?}"),
    }

    // A wildcard and its apex: two values on one name, next to the one that was there.
    provider
        .append("example.org.", &record(NAME, "token-one"))
        .await
        .unwrap();
    provider
        .append("example.org.", &record(NAME, "token-two"))
        .await
        .unwrap();
    // Present already: nothing changes.
    provider
        .append("example.org.", &record(NAME, "token-two"))
        .await
        .unwrap();
    assert_eq!(
        txt(&client, &example, NAME).await,
        ["\"pre-existing\"", "\"token-one\"", "\"token-two\""]
    );
    // The set kept its TTL.
    let sets = record_sets(&client, &example).await;
    let set = sets
        .iter()
        .find(|(n, t, _, _)| n == NAME && t == "TXT")
        .unwrap();
    assert_eq!(set.2, 300);

    // In the delegated zone, a new set with the record's TTL.
    provider
        .append("sub.example.org.", &record(DEEP, "token-deep"))
        .await
        .unwrap();
    let sets = record_sets(&client, &sub).await;
    let deep = sets
        .iter()
        .find(|(n, t, _, _)| n == DEEP && t == "TXT")
        .unwrap();
    assert_eq!(
        (deep.2, deep.3.clone()),
        (120, vec!["\"token-deep\"".to_string()])
    );
    assert!(txt(&client, &example, DEEP).await.is_empty());

    provider
        .delete("example.org.", &record(NAME, "token-one"))
        .await
        .unwrap();
    assert_eq!(
        txt(&client, &example, NAME).await,
        ["\"pre-existing\"", "\"token-two\""]
    );
    // Gone already: not an error.
    provider
        .delete("example.org.", &record(NAME, "token-one"))
        .await
        .unwrap();
    provider
        .delete("example.org.", &record(NAME, "token-two"))
        .await
        .unwrap();
    // The last value of a set: the set goes.
    provider
        .delete("sub.example.org.", &record(DEEP, "token-deep"))
        .await
        .unwrap();
    // A name without any TXT set.
    provider
        .delete(
            "example.org.",
            &record("_acme-challenge.nothing.example.org.", "x"),
        )
        .await
        .unwrap();

    assert_eq!(
        record_sets(&client, &example).await,
        before_example,
        "example.org is as it was"
    );
    assert_eq!(
        record_sets(&client, &sub).await,
        before_sub,
        "sub.example.org is as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_hosted_zone_skips_the_lookup() {
    let moto = Moto::start();
    let client = moto.client();
    create_zone(&client, "example.org").await;
    let sub = create_zone(&client, "sub.example.org").await;
    for id in [sub.clone(), format!("/hostedzone/{sub}")] {
        let provider = moto.provider(&format!("hosted_zone_id {id}"));
        assert_eq!(provider.zone_for(DEEP).await.unwrap(), "sub.example.org.");
        // A name outside the configured zone has no zone, even if another zone holds it.
        assert!(matches!(
            provider.zone_for(NAME).await,
            Err(DnsError::NoZone { .. })
        ));
        provider
            .append("sub.example.org.", &record(DEEP, "configured"))
            .await
            .unwrap();
        assert_eq!(txt(&client, &sub, DEEP).await, ["\"configured\""]);
        provider
            .delete("sub.example.org.", &record(DEEP, "configured"))
            .await
            .unwrap();
        assert!(txt(&client, &sub, DEEP).await.is_empty());
    }
    // A hosted zone that does not exist.
    let provider = moto.provider("hosted_zone_id ZNOSUCHZONE");
    let error = provider.zone_for(DEEP).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "route53: list zones in zone -: HTTP 404: NoSuchHostedZone: No hosted zone found with ID: ZNOSUCHZONE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_values_and_odd_values() {
    let moto = Moto::start();
    let client = moto.client();
    let example = create_zone(&client, "example.org").await;
    let provider = moto.provider("");
    let (one, two) = (record(NAME, "wildcard"), record(NAME, "apex"));
    let (a, b) = tokio::join!(
        provider.append("example.org.", &one),
        provider.append("example.org.", &two)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        txt(&client, &example, NAME).await,
        ["\"apex\"", "\"wildcard\""]
    );
    // Quotes and backslashes are escaped; long values split in 255-byte strings.
    let odd = format!("{}\"\\{}", "a".repeat(250), "b".repeat(100));
    provider
        .append("example.org.", &record(NAME, &odd))
        .await
        .unwrap();
    let values = txt(&client, &example, NAME).await;
    assert!(
        values.contains(&format!(
            "\"{}\\\"\\\\{}\" \"{}\"",
            "a".repeat(250),
            "b".repeat(3),
            "b".repeat(97)
        )),
        "{values:?}"
    );
    for value in [odd.as_str(), "wildcard", "apex"] {
        provider
            .delete("example.org.", &record(NAME, value))
            .await
            .unwrap();
    }
    assert!(txt(&client, &example, NAME).await.is_empty());
}

//! `libdns.rfc2136` against a real BIND 9 (`named`, from this crate's `testing` module),
//! started per test in a temporary directory on a random local port with the zone
//! `example.test.` open to updates signed with the test keys. Needs BIND 9 installed (`apt-get install bind9`; `cargo xtask test` installs it): the
//! tests fail, not skip, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::rfc2136;
use hickory_proto::rr::RecordType;
use madmail_dns::{
    DnsError, DnsProvider, PropagationOptions, Resolvers, TxtRecord, wait_until_visible,
};
use madmail_libdns_rfc2136::testing::{Key, Named, Setup, Zone};

/// The keys named accepts updates from: (name, algorithm, secret), made with `tsig-keygen`.
const KEYS: [Key; 3] = [
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

/// `example.test.`, open to updates signed with any of [`KEYS`]; authoritative only.
const SETUP: Setup = Setup {
    zones: &[Zone {
        name: "example.test.",
        file: ZONE,
        update_keys: &KEYS,
    }],
    recursion: false,
};

const NAME: &str = "_acme-challenge.mail.example.test.";

async fn start() -> Named {
    Named::start(&SETUP).await
}

/// `dns rfc2136 { ... }` for `named` with `key`, a 2 s timeout and the `extra` lines.
fn provider_for(named: &Named, key: Key, extra: &str) -> Arc<dyn DnsProvider> {
    rfc2136(&format!(
        "{}
timeout 2s
{extra}",
        named.rfc2136_directives(key)
    ))
    .unwrap()
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
    let named = start().await;
    let provider = provider_for(&named, KEYS[0], "");
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
    let mail = named.ask("mail.example.test.", RecordType::A).await;
    assert_eq!(mail.answers.len(), 1);
}

#[tokio::test]
async fn sha384_and_sha512_keys_work() {
    let named = start().await;
    for key in [1, 2] {
        let provider = provider_for(&named, KEYS[key], "zone example.test\n");
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
    let named = start().await;
    let other_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    for (config, expected) in [
        (
            named.rfc2136_directives(("acme.", "hmac-sha256", other_secret)),
            "BADSIG",
        ),
        (
            named.rfc2136_directives(("nobody.", "hmac-sha256", other_secret)),
            "BADKEY",
        ),
        (
            named.rfc2136_directives(("acme.", "hmac-sha512", KEYS[0].2)),
            "BADKEY",
        ),
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
    let named = start().await;
    let provider = provider_for(&named, KEYS[0], "");
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
    let named = start().await;
    let provider = provider_for(&named, KEYS[0], "");
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

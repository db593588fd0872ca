//! `libdns.rfc2136` configuration: directives, defaults, every error with its position, and
//! failures that need no DNS server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{provider_from, rfc2136};
use madmail_dns::{DnsError, TxtRecord};

const SECRET: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";

fn errors(block: &str) -> Vec<String> {
    match rfc2136(block) {
        Ok(_) => panic!("accepted:\n{block}"),
        Err(errors) => errors,
    }
}

#[test]
fn minimal_and_full_blocks() {
    let provider = rfc2136("        server 127.0.0.1").unwrap();
    assert_eq!(provider.name(), "rfc2136");
    for alg in ["hmac-sha256", "HMAC-SHA384", "hmac-sha512.", "hmac-sha256."] {
        rfc2136(&format!(
            "        server ns1.example.org:5353\n        key_name acme\n        key {SECRET}\n        key_alg {alg}\n        zone Example.ORG\n        timeout 3s"
        ))
        .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
    }
    // Padding is optional, as some tools print keys without it.
    rfc2136(&format!(
        "        server 127.0.0.1\n        key_name acme.\n        key {}",
        SECRET.trim_end_matches('=')
    ))
    .unwrap();
}

#[test]
fn a_named_block_can_be_referenced() {
    let config = format!(
        "libdns.rfc2136 local_dns {{\n    server 127.0.0.1:53\n    key_name acme.\n    key {SECRET}\n}}\ndns_user tcp://127.0.0.1:1 {{\n    dns &local_dns\n}}\n"
    );
    assert_eq!(provider_from(&config).unwrap().name(), "rfc2136");
}

#[test]
fn server_is_required_and_checked() {
    assert_eq!(
        errors("        key_name acme."),
        [
            "2:5: dns: directive server is required",
            "3:9: key_name needs key: the key's secret",
        ]
    );
    let lines = errors("        server host:99999");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("3:16: server: "), "{lines:?}");
    assert!(lines[0].contains("invalid port"), "{lines:?}");
    assert!(errors("        server a/b")[0].starts_with("3:16: server: "));
    assert_eq!(
        errors("        server 127.0.0.1 127.0.0.2"),
        ["3:26: server takes exactly one value"]
    );
}

#[test]
fn key_errors_never_show_the_secret() {
    let bad = "c2VjcmV0!c2VjcmV0";
    let lines = errors(&format!(
        "        server 127.0.0.1\n        key_name acme.\n        key {bad}"
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("5:13: key is not valid base64"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("c2Vj"), "{lines:?}");
    assert!(!lines[0].contains('!'), "{lines:?}");

    assert_eq!(
        errors("        server 127.0.0.1\n        key_name acme.\n        key \"\""),
        ["5:13: key is empty"]
    );
}

#[test]
fn key_alg_must_be_a_supported_hmac() {
    let block = |alg: &str| {
        format!(
            "        server 127.0.0.1\n        key_name acme.\n        key {SECRET}\n        key_alg {alg}"
        )
    };
    let lines = errors(&block("hmac-sha3"));
    assert_eq!(
        lines,
        ["6:17: unknown key_alg \"hmac-sha3\"; use hmac-sha256, hmac-sha384 or hmac-sha512"]
    );
    let lines = errors(&block("hmac-md5.sig-alg.reg.int."));
    assert!(lines[0].starts_with("6:17: key_alg hmac-md5.sig-alg.reg.int. is not supported"));
    assert!(errors(&block("hmac-sha1"))[0].contains("not supported"));
}

#[test]
fn key_parts_go_together() {
    assert_eq!(
        errors(&format!("        server 127.0.0.1\n        key {SECRET}")),
        ["4:9: key needs key_name: the name the server knows the key by (e.g. acme.)"]
    );
    assert_eq!(
        errors("        server 127.0.0.1\n        key_alg hmac-sha256"),
        ["4:9: key_alg needs key and key_name"]
    );
    assert_eq!(
        errors("        server 127.0.0.1\n        timeout 0s"),
        ["4:17: timeout must be longer than 0"]
    );
}

#[test]
fn every_error_is_reported() {
    let lines = errors(
        "        server 127.0.0.1:0\n        key_name acme.\n        key not*base64\n        key_alg md4\n        timeout soon\n        zone bad..zone\n        keyname x",
    );
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines[0].starts_with("3:16: server: "), "{lines:?}");
    assert!(
        lines[1].starts_with("5:13: key is not valid base64"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("6:17: unknown key_alg"), "{lines:?}");
    assert!(lines[3].starts_with("7:17: timeout: "), "{lines:?}");
    assert!(lines[4].starts_with("8:14: zone: "), "{lines:?}");
    assert_eq!(
        lines[5],
        "9:9: unknown directive keyname; did you mean key_name?"
    );
}

#[test]
fn inline_arguments_are_refused() {
    let config = "dns_user tcp://127.0.0.1:1 {\n    dns rfc2136 extra {\n        server 127.0.0.1\n    }\n}\n";
    assert_eq!(
        provider_from(config).err().unwrap(),
        ["2:17: libdns.rfc2136 takes no arguments, only a block"]
    );
}

fn record(fqdn: &str) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.into(),
        value: "value".into(),
        ttl: Duration::from_secs(60),
    }
}

/// A local TCP port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_server_fails_after_bounded_retries() {
    let provider = rfc2136(&format!(
        "        server 127.0.0.1:{}\n        key_name acme.\n        key {SECRET}\n        timeout 1s",
        closed_port()
    ))
    .unwrap();
    let err = provider
        .append("example.test.", &record("_acme-challenge.example.test."))
        .await
        .unwrap_err();
    let DnsError::Failed {
        provider: name,
        zone,
        operation,
        message,
    } = &err
    else {
        panic!("expected Failed, got {err:?}");
    };
    assert_eq!(
        (name.as_str(), zone.as_str(), operation.as_str()),
        ("rfc2136", "example.test.", "append")
    );
    assert!(message.contains("gave up after 3 attempts"), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[tokio::test]
async fn names_outside_the_zone_are_refused_before_sending() {
    let provider = rfc2136(&format!(
        "        server 127.0.0.1:{}\n        zone example.test",
        closed_port()
    ))
    .unwrap();
    assert_eq!(
        provider
            .zone_for("_acme-challenge.mail.Example.Test")
            .await
            .unwrap(),
        "example.test."
    );
    assert!(matches!(
        provider.zone_for("_acme-challenge.example.org.").await,
        Err(DnsError::NoZone { .. })
    ));
    let err = provider
        .delete("example.test.", &record("_acme-challenge.example.org."))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rfc2136: delete in zone example.test.: _acme-challenge.example.org. is not in zone example.test."
    );
}

//! `libdns.alidns` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_alidns::register, "alidns", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_alidns::register,
        "alidns",
        "key_id LTAI5t\nkey_secret s3cr3t",
    )
    .unwrap();
    assert_eq!(provider.name(), "alidns");
    provider_block(
        madmail_libdns_alidns::register,
        "alidns",
        "key_id LTAI5t\nkey_secret s3cr3t\nendpoint https://alidns.cn-hangzhou.aliyuncs.com\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_alidns::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://alidns.aliyuncs.com/"
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive key_id is required",
            "2:5: dns: directive key_secret is required",
        ]
    );
    assert_eq!(
        errors("key_id LTAI5t"),
        ["2:5: dns: directive key_secret is required"]
    );
    assert_eq!(
        errors("key_id LTAI5t\nkey_secret \"  \""),
        ["4:12: key_secret is empty"]
    );
    assert_eq!(
        errors("key_id \"\"\nkey_secret s"),
        ["3:8: key_id is empty"]
    );
    let lines = errors("key_id a\nkey_secret b\nendpoint alidns.aliyuncs.com");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("5:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("key_id a\nkey_secret b\nendpoint https://alidns.aliyuncs.com/?x=1"),
        [
            "5:10: endpoint: \"https://alidns.aliyuncs.com/?x=1\" must not have a query or fragment; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("key_id a\nkey_secret b\nretries many"),
        ["5:9: retries: invalid number \"many\": invalid digit found in string"]
    );
    let lines = errors("key_id a\nkey_secret b\naccess_key_id c");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("5:1: unknown directive access_key_id"),
        "{lines:?}"
    );
    assert_eq!(
        errors("key_id a\nkey_secret b\ntimeout 0s"),
        ["5:9: timeout must be longer than 0"]
    );
}

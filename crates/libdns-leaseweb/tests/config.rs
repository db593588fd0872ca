//! `libdns.leaseweb` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block, provider_by_reference};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_leaseweb::register, "leaseweb", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider =
        provider_block(madmail_libdns_leaseweb::register, "leaseweb", "api_key abc").unwrap();
    assert_eq!(provider.name(), "leaseweb");
    provider_block(
        madmail_libdns_leaseweb::register,
        "leaseweb",
        "api_key abc\nendpoint http://127.0.0.1:8080/hosting/v2\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_leaseweb::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.leaseweb.com/hosting/v2/"
    );
}

#[test]
fn a_named_block_used_by_reference() {
    provider_by_reference(madmail_libdns_leaseweb::register, "leaseweb", "api_key abc");
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive api_key is required"]);
    assert_eq!(errors("api_key \"\""), ["3:9: api_key is empty"]);
    assert_eq!(
        errors("api_key a b"),
        ["3:11: api_key takes exactly one value"]
    );
    let lines = errors("api_key x\nendpoint api.leaseweb.com/hosting/v2");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("4:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("api_key x\nendpoint https://api.leaseweb.com/hosting/v2?x=1"),
        [
            "4:10: endpoint: \"https://api.leaseweb.com/hosting/v2?x=1\" must not have a query or fragment; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_key x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    assert_eq!(
        errors("api_key x\nretries -1"),
        ["4:9: retries: invalid number \"-1\": invalid digit found in string"]
    );
    let lines = errors("api_key x\napi_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive api_token"),
        "{lines:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let lines = errors("endpoint ftp://x/\nbogus 1");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("3:10: endpoint: ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("4:1: unknown directive bogus")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"2:5: dns: directive api_key is required".to_string()),
        "{lines:?}"
    );
}

//! `libdns.hetzner` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{
    check_takes_no_arguments, config_errors, provider_block, provider_by_reference,
};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_hetzner::register, "hetzner", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider =
        provider_block(madmail_libdns_hetzner::register, "hetzner", "api_token abc").unwrap();
    assert_eq!(provider.name(), "hetzner");
    provider_block(
        madmail_libdns_hetzner::register,
        "hetzner",
        "api_token abc\nendpoint http://127.0.0.1:8080/v1\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_hetzner::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.hetzner.cloud/v1/"
    );
    // A named block used by reference.
    provider_by_reference(madmail_libdns_hetzner::register, "hetzner", "api_token abc");
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive api_token is required"]);
    assert_eq!(errors("api_token \"\""), ["3:11: api_token is empty"]);
    assert_eq!(
        errors("api_token a b"),
        ["3:13: api_token takes exactly one value"]
    );
    assert_eq!(
        errors("api_token x\nendpoint api.hetzner.cloud/v1"),
        [
            "4:10: endpoint: \"api.hetzner.cloud/v1\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_token x\nendpoint https://user:pw@api.hetzner.cloud/v1"),
        [
            "4:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_token x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    let lines = errors("api_token x\nauth_api_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive auth_api_token"),
        "{lines:?}"
    );
    // Every error at once.
    let lines = errors("api_token \"\"\nretries many");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "3:11: api_token is empty");
    assert!(lines[1].starts_with("4:9: "), "{lines:?}");
}

#[test]
fn the_module_takes_no_arguments() {
    check_takes_no_arguments(madmail_libdns_hetzner::register, "hetzner", "api_token x");
}

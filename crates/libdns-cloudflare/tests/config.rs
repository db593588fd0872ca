//! `libdns.cloudflare` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_cloudflare::register, "cloudflare", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        "api_token abc",
    )
    .unwrap();
    assert_eq!(provider.name(), "cloudflare");
    provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        "api_token abc\nendpoint http://127.0.0.1:8080/client/v4\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_cloudflare::DEFAULT_ENDPOINT).is_ok()
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive api_token is required"]);
    assert_eq!(errors("api_token \"\""), ["3:11: api_token is empty"]);
    let lines = errors("api_token x\nendpoint api.cloudflare.com/client/v4");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("4:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("api_token x\nendpoint https://user:pw@api.example.com/"),
        [
            "4:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_token x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    let lines = errors("api_token x\nzone_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive zone_token"),
        "{lines:?}"
    );
}

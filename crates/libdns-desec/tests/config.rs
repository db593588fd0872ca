//! `libdns.desec` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{check_takes_no_arguments, config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_desec::register, "desec", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(madmail_libdns_desec::register, "desec", "token abc").unwrap();
    assert_eq!(provider.name(), "desec");
    provider_block(
        madmail_libdns_desec::register,
        "desec",
        "token abc\nendpoint http://127.0.0.1:8080/api/v1\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_desec::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://desec.io/api/v1/"
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive token is required"]);
    assert_eq!(errors("token \"\""), ["3:7: token is empty"]);
    assert_eq!(errors("token a b"), ["3:9: token takes exactly one value"]);
    assert_eq!(
        errors("token x\nendpoint desec.io/api/v1"),
        [
            "4:10: endpoint: \"desec.io/api/v1\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("token x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    assert_eq!(
        errors("token x\nretries -1"),
        ["4:9: retries: invalid number \"-1\": invalid digit found in string"]
    );
    // Caddy's and libdns's name, not this module's.
    let lines = errors("api_token x");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "2:5: dns: directive token is required"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("3:1: unknown directive api_token")),
        "{lines:?}"
    );
}

#[test]
fn arguments_are_refused() {
    check_takes_no_arguments(madmail_libdns_desec::register, "desec", "token x");
}

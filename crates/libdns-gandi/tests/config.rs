//! `libdns.gandi` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{
    check_takes_no_arguments, config_errors, provider_block, provider_by_reference,
};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_gandi::register, "gandi", block)
}

#[test]
fn minimal_and_full_blocks() {
    for block in [
        "personal_token abc",
        "api_token abc",
        "api_token abc\npersonal_token def",
        "personal_token abc\nendpoint https://api.sandbox.gandi.net/v5/livedns/\ntimeout 5s\nretries 0",
    ] {
        let provider = provider_block(madmail_libdns_gandi::register, "gandi", block).unwrap();
        assert_eq!(provider.name(), "gandi");
    }
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_gandi::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.gandi.net/v5/livedns/"
    );
    provider_by_reference(
        madmail_libdns_gandi::register,
        "gandi",
        "personal_token abc",
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        ["2:5: dns: either api_token or personal_token is required"]
    );
    assert_eq!(
        errors("endpoint https://api.gandi.net/v5/livedns/"),
        ["2:5: dns: either api_token or personal_token is required"]
    );
    assert_eq!(
        errors("personal_token \"\""),
        ["3:16: personal_token is empty"]
    );
    assert_eq!(errors("api_token \"\""), ["3:11: api_token is empty"]);
    assert_eq!(
        errors("personal_token a b"),
        ["3:18: personal_token takes exactly one value"]
    );
    assert_eq!(
        errors("personal_token x\nendpoint api.gandi.net/v5/livedns"),
        [
            "4:10: endpoint: \"api.gandi.net/v5/livedns\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("personal_token x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    // Caddy's name for the personal token is not one of maddy's directives.
    let lines = errors("personal_token x\nbearer_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive bearer_token"),
        "{lines:?}"
    );
    // Every error at once.
    let lines = errors("personal_token \"\"\nretries many");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "3:16: personal_token is empty");
    assert!(lines[1].starts_with("4:9: "), "{lines:?}");
}

#[test]
fn the_module_takes_no_arguments() {
    check_takes_no_arguments(madmail_libdns_gandi::register, "gandi", "personal_token x");
}

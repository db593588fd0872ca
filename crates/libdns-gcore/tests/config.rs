//! `libdns.gcore` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{
    check_takes_no_arguments, config_errors, provider_block, provider_by_reference,
};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_gcore::register, "gcore", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(madmail_libdns_gcore::register, "gcore", "api_key abc").unwrap();
    assert_eq!(provider.name(), "gcore");
    provider_block(
        madmail_libdns_gcore::register,
        "gcore",
        "api_key abc\nendpoint http://127.0.0.1:8080/dns/v2\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_gcore::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.gcore.com/dns/v2/"
    );
    // A named block used by reference.
    provider_by_reference(madmail_libdns_gcore::register, "gcore", "api_key abc");
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive api_key is required"]);
    assert_eq!(errors("api_key \"\""), ["3:9: api_key is empty"]);
    assert_eq!(
        errors("api_key a b"),
        ["3:11: api_key takes exactly one value"]
    );
    assert_eq!(
        errors("api_key x\nendpoint api.gcore.com/dns/v2"),
        [
            "4:10: endpoint: \"api.gcore.com/dns/v2\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_key x\nendpoint https://user:pw@api.gcore.com/dns/v2"),
        [
            "4:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_key x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    let lines = errors("api_key x\napi_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive api_token"),
        "{lines:?}"
    );
    // Every error at once.
    let lines = errors("api_key \"\"\nretries many");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "3:9: api_key is empty");
    assert!(lines[1].starts_with("4:9: "), "{lines:?}");
}

#[test]
fn the_module_takes_no_arguments() {
    check_takes_no_arguments(madmail_libdns_gcore::register, "gcore", "api_key x");
}

//! `libdns.porkbun` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{check_takes_no_arguments, config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_porkbun::register, "porkbun", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_porkbun::register,
        "porkbun",
        "api_key pk1_a\napi_secret_key sk1_b",
    )
    .unwrap();
    assert_eq!(provider.name(), "porkbun");
    provider_block(
        madmail_libdns_porkbun::register,
        "porkbun",
        "api_key pk1_a\napi_secret_key sk1_b\nendpoint https://api-ipv4.porkbun.com/api/json/v3\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_porkbun::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.porkbun.com/api/json/v3/"
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive api_key is required",
            "2:5: dns: directive api_secret_key is required"
        ]
    );
    assert_eq!(
        errors("api_key pk1_a"),
        ["2:5: dns: directive api_secret_key is required"]
    );
    assert_eq!(
        errors("api_key \"\"\napi_secret_key sk1_b"),
        ["3:9: api_key is empty"]
    );
    assert_eq!(
        errors("api_key pk1_a\napi_secret_key \" \""),
        ["4:16: api_secret_key is empty"]
    );
    assert_eq!(
        errors("api_key pk1_a sk1_b\napi_secret_key sk1_b"),
        ["3:15: api_key takes exactly one value"]
    );
    let lines = errors("api_key a\napi_secret_key b\nendpoint porkbun.com/api/json/v3");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("5:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("api_key a\napi_secret_key b\nendpoint ftp://api.porkbun.com/"),
        [
            "5:10: endpoint: \"ftp://api.porkbun.com/\": scheme must be https or http; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_key a\napi_secret_key b\nretries many"),
        ["5:9: retries: invalid number \"many\": invalid digit found in string"]
    );
    let lines = errors("api_key a\napi_secret_key b\nsecret_api_key c");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("5:1: unknown directive secret_api_key"),
        "{lines:?}"
    );
}

#[test]
fn no_arguments_on_the_block() {
    check_takes_no_arguments(
        madmail_libdns_porkbun::register,
        "porkbun",
        "api_key a\napi_secret_key b",
    );
}

//! `libdns.namedotcom` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{check_takes_no_arguments, config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_namedotcom::register, "namedotcom", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        "user someone\ntoken abc",
    )
    .unwrap();
    assert_eq!(provider.name(), "namedotcom");
    provider_block(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        "user someone-test\ntoken abc\nendpoint https://api.dev.name.com/core/v1\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_namedotcom::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.name.com/v4/"
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive user is required",
            "2:5: dns: directive token is required"
        ]
    );
    assert_eq!(
        errors("user someone"),
        ["2:5: dns: directive token is required"]
    );
    assert_eq!(
        errors("token abc"),
        ["2:5: dns: directive user is required"]
    );
    assert_eq!(errors("user someone\ntoken \"\""), ["4:7: token is empty"]);
    assert_eq!(errors("user \"\"\ntoken abc"), ["3:6: user is empty"]);
    assert_eq!(
        errors("user a b\ntoken abc"),
        ["3:8: user takes exactly one value"]
    );
    let lines = errors("user someone\ntoken x\nendpoint api.name.com/v4");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("5:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("user someone\ntoken x\nendpoint https://someone:x@api.name.com/v4"),
        [
            "5:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("user someone\ntoken x\ntimeout 0s"),
        ["5:9: timeout must be longer than 0"]
    );
    let lines = errors("user someone\ntoken x\napi_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("5:1: unknown directive api_token"),
        "{lines:?}"
    );
}

#[test]
fn no_arguments_on_the_block() {
    check_takes_no_arguments(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        "user a\ntoken b",
    );
}

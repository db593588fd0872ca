//! `libdns.powerdns` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{check_takes_no_arguments, config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_powerdns::register, "powerdns", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_powerdns::register,
        "powerdns",
        "api_token abc",
    )
    .unwrap();
    assert_eq!(provider.name(), "powerdns");
    provider_block(
        madmail_libdns_powerdns::register,
        "powerdns",
        "api_token abc\nendpoint https://ns1.example.org:8081\nserver_id localhost\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_powerdns::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "http://127.0.0.1:8081/api/v1/"
    );
    assert_eq!(madmail_libdns_powerdns::DEFAULT_SERVER_ID, "localhost");
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(errors(""), ["2:5: dns: directive api_token is required"]);
    assert_eq!(
        errors("server_id localhost"),
        ["2:5: dns: directive api_token is required"]
    );
    assert_eq!(errors("api_token \"\""), ["3:11: api_token is empty"]);
    assert_eq!(
        errors("api_token x\nserver_id \"\""),
        ["4:11: server_id is empty"]
    );
    assert_eq!(
        errors("api_token x\nserver_id"),
        ["4:1: server_id needs a value"]
    );
    let lines = errors("api_token x\nendpoint 127.0.0.1:8081");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("4:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("api_token x\nendpoint http://ns1.example.org:8081/api/v1?api-key=x"),
        [
            "4:10: endpoint: \"http://ns1.example.org:8081/api/v1?api-key=x\" must not have a query or fragment; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    let lines = errors("api_token x\nserver_url http://127.0.0.1:8081");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive server_url"),
        "{lines:?}"
    );
}

#[test]
fn no_arguments_on_the_block() {
    check_takes_no_arguments(madmail_libdns_powerdns::register, "powerdns", "api_token a");
}

//! `libdns.namecheap` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block, provider_by_reference};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_namecheap::register, "namecheap", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_namecheap::register,
        "namecheap",
        "api_key abc\napi_username alice",
    )
    .unwrap();
    assert_eq!(provider.name(), "namecheap");
    provider_block(
        madmail_libdns_namecheap::register,
        "namecheap",
        "api_key abc\napi_username alice\nclient_ip 203.0.113.7\nendpoint https://api.sandbox.namecheap.com/xml.response\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_namecheap::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.namecheap.com/"
    );
    assert!(madmail_libdns_http::Url::parse(madmail_libdns_namecheap::DEFAULT_IP_LOOKUP).is_ok());
}

#[test]
fn a_named_block_used_by_reference() {
    provider_by_reference(
        madmail_libdns_namecheap::register,
        "namecheap",
        "api_key abc\napi_username alice",
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive api_key is required",
            "2:5: dns: directive api_username is required"
        ]
    );
    assert_eq!(
        errors("api_key x"),
        ["2:5: dns: directive api_username is required"]
    );
    assert_eq!(
        errors("api_key \"\"\napi_username alice"),
        ["3:9: api_key is empty"]
    );
    assert_eq!(
        errors("api_key x\napi_username \"\""),
        ["4:14: api_username is empty"]
    );
    assert_eq!(
        errors("api_key x\napi_username alice\nclient_ip 2001:db8::1"),
        ["5:11: client_ip: \"2001:db8::1\" is not an IPv4 address (Namecheap takes IPv4 only)"]
    );
    assert_eq!(
        errors("api_key x\napi_username alice\nclient_ip 1.2.3.4 5.6.7.8"),
        ["5:19: client_ip takes exactly one value"]
    );
    assert_eq!(
        errors("api_key x\napi_username alice\nendpoint ftp://api.namecheap.com/"),
        [
            "5:10: endpoint: \"ftp://api.namecheap.com/\": scheme must be https or http; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_key x\napi_username alice\ntimeout 0s"),
        ["5:9: timeout must be longer than 0"]
    );
    let lines = errors("api_key x\napi_username alice\nuser alice");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("5:1: unknown directive user"),
        "{lines:?}"
    );
}

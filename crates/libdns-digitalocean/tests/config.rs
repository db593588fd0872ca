//! `libdns.digitalocean` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{check_takes_no_arguments, config_errors, provider_block};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_digitalocean::register, "digitalocean", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_digitalocean::register,
        "digitalocean",
        "api_token dop_v1_abc",
    )
    .unwrap();
    assert_eq!(provider.name(), "digitalocean");
    provider_block(
        madmail_libdns_digitalocean::register,
        "digitalocean",
        "api_token dop_v1_abc\nendpoint http://127.0.0.1:8080/v2\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_digitalocean::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://api.digitalocean.com/v2/"
    );
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
        errors("api_token x\nendpoint ftp://api.digitalocean.com/v2"),
        [
            "4:10: endpoint: \"ftp://api.digitalocean.com/v2\": scheme must be https or http; expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("api_token x\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    assert_eq!(
        errors("api_token x\nretries many"),
        ["4:9: retries: invalid number \"many\": invalid digit found in string"]
    );
    let lines = errors("api_token x\nauth_token y");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive auth_token"),
        "{lines:?}"
    );
}

#[test]
fn arguments_are_refused() {
    check_takes_no_arguments(
        madmail_libdns_digitalocean::register,
        "digitalocean",
        "api_token x",
    );
}

//! `libdns.metaname` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block, provider_by_reference};

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_metaname::register, "metaname", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_metaname::register,
        "metaname",
        "account_ref ab12\napi_key abc",
    )
    .unwrap();
    assert_eq!(provider.name(), "metaname");
    provider_block(
        madmail_libdns_metaname::register,
        "metaname",
        "account_ref ab12\napi_key abc\nendpoint https://test.metaname.net/api/1.1\ntimeout 5s\nretries 0",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_metaname::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://metaname.net/api/1.1/"
    );
}

#[test]
fn a_named_block_used_by_reference() {
    provider_by_reference(
        madmail_libdns_metaname::register,
        "metaname",
        "account_ref ab12\napi_key abc",
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive api_key is required",
            "2:5: dns: directive account_ref is required"
        ]
    );
    assert_eq!(
        errors("api_key x"),
        ["2:5: dns: directive account_ref is required"]
    );
    assert_eq!(
        errors("account_ref ab12\napi_key \"\""),
        ["4:9: api_key is empty"]
    );
    assert_eq!(
        errors("account_ref \" \"\napi_key x"),
        ["3:13: account_ref is empty"]
    );
    assert_eq!(
        errors("account_ref ab12 cd34\napi_key x"),
        ["3:18: account_ref takes exactly one value"]
    );
    assert_eq!(
        errors("account_ref ab12\napi_key x\nendpoint metaname.net/api/1.1"),
        [
            "5:10: endpoint: \"metaname.net/api/1.1\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("account_ref ab12\napi_key x\ntimeout 0s"),
        ["5:9: timeout must be longer than 0"]
    );
    let lines = errors("account_ref ab12\napi_key x\naccount_reference ab12");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("5:1: unknown directive account_reference"),
        "{lines:?}"
    );
}

//! `libdns.ovh` configuration: directives, region names, defaults and errors with their
//! positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block};

const KEYS: &str = "application_key ak\napplication_secret as\nconsumer_key ck";

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_ovh::register, "ovh", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(madmail_libdns_ovh::register, "ovh", KEYS).unwrap();
    assert_eq!(provider.name(), "ovh");
    provider_block(
        madmail_libdns_ovh::register,
        "ovh",
        &format!("{KEYS}\nendpoint http://127.0.0.1:8080/1.0\ntimeout 5s\nretries 0"),
    )
    .unwrap();
    for region in ["ovh-eu", "ovh-ca", "OVH-US", "kimsufi-eu", "soyoustart-ca"] {
        provider_block(
            madmail_libdns_ovh::register,
            "ovh",
            &format!("{KEYS}\nendpoint {region}"),
        )
        .unwrap();
    }
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_ovh::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://eu.api.ovh.com/1.0/"
    );
    assert_eq!(
        madmail_libdns_ovh::ENDPOINTS[0],
        ("ovh-eu", madmail_libdns_ovh::DEFAULT_ENDPOINT)
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive application_key is required",
            "2:5: dns: directive application_secret is required",
            "2:5: dns: directive consumer_key is required",
        ]
    );
    assert_eq!(
        errors("application_key ak\nconsumer_key ck"),
        ["2:5: dns: directive application_secret is required"]
    );
    assert_eq!(
        errors("application_key ak\napplication_secret \"\"\nconsumer_key ck"),
        ["4:20: application_secret is empty"]
    );
    assert_eq!(
        errors(&format!("{KEYS}\nendpoint ovh-xx")),
        [
            "6:10: endpoint: \"ovh-xx\" is not a URL (relative URL without a base); expected the API's base URL such as https://api.example.com/v1/ or one of ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca"
        ]
    );
    assert_eq!(
        errors(&format!(
            "{KEYS}\nendpoint https://user:pw@eu.api.ovh.com/1.0"
        )),
        [
            "6:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/ or one of ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca"
        ]
    );
    assert_eq!(
        errors(&format!("{KEYS}\ntimeout 0s")),
        ["6:9: timeout must be longer than 0"]
    );
    let lines = errors(&format!("{KEYS}\napplication_token y"));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("6:1: unknown directive application_token"),
        "{lines:?}"
    );
    assert_eq!(
        errors("application_key ak\napplication_secret as\nconsumer_key a b"),
        ["5:16: consumer_key takes exactly one value"]
    );
    assert_eq!(
        errors(&format!("{KEYS}\nconsumer_key again")),
        ["6:1: duplicate directive consumer_key (first at test.conf:5:1)"]
    );
}

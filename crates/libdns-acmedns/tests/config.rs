//! `libdns.acmedns` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{config_errors, provider_block};

const ACCOUNT: &str = "username eabcdb41-d89f-4580-826f-3e62e9755ef2\npassword pbAXVjlIOE01xbut7YnAbkhMQIkcwoHO0ek2j4Q0\nsubdomain d420c923-bbd7-4056-ab64-c3ca54c9b3cf";

fn errors(block: &str) -> Vec<String> {
    config_errors(madmail_libdns_acmedns::register, "acmedns", block)
}

#[test]
fn minimal_and_full_blocks() {
    let provider = provider_block(
        madmail_libdns_acmedns::register,
        "acmedns",
        &format!("{ACCOUNT}\nserver_url https://auth.acme-dns.io"),
    )
    .unwrap();
    assert_eq!(provider.name(), "acmedns");
    provider_block(
        madmail_libdns_acmedns::register,
        "acmedns",
        &format!("{ACCOUNT}\nserver_url http://127.0.0.1:8080/acme-dns/\ntimeout 5s\nretries 0"),
    )
    .unwrap();
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors(""),
        [
            "2:5: dns: directive username is required",
            "2:5: dns: directive password is required",
            "2:5: dns: directive subdomain is required",
            "2:5: dns: directive server_url is required",
        ]
    );
    assert_eq!(
        errors(ACCOUNT),
        ["2:5: dns: directive server_url is required"]
    );
    assert_eq!(
        errors("username u\npassword \"\"\nsubdomain s\nserver_url https://auth.acme-dns.io"),
        ["4:10: password is empty"]
    );
    assert_eq!(
        errors(&format!("{ACCOUNT}\nserver_url auth.acme-dns.io")),
        [
            "6:12: server_url: \"auth.acme-dns.io\" is not a URL (relative URL without a base); expected the acme-dns server's URL such as https://auth.acme-dns.io"
        ]
    );
    assert_eq!(
        errors(
            "username u\npassword p\nsubdomain sub.example.org\nserver_url https://auth.acme-dns.io"
        ),
        [
            "5:11: subdomain \"sub.example.org\" is not a DNS label: expected the subdomain acme-dns returned at registration"
        ]
    );
    assert_eq!(
        errors("username u\npassword p\nsubdomain -x\nserver_url https://auth.acme-dns.io"),
        [
            "5:11: subdomain \"-x\" is not a DNS label: expected the subdomain acme-dns returned at registration"
        ]
    );
    // maddy's name for the server is server_url; endpoint is not an alias.
    let lines = errors(&format!("{ACCOUNT}\nendpoint https://auth.acme-dns.io"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "2:5: dns: directive server_url is required");
    assert!(
        lines[1].starts_with("6:1: unknown directive endpoint"),
        "{lines:?}"
    );
    assert_eq!(
        errors(&format!(
            "{ACCOUNT}\nserver_url https://auth.acme-dns.io\ntimeout 0s"
        )),
        ["7:9: timeout must be longer than 0"]
    );
    assert_eq!(
        errors(&format!(
            "{ACCOUNT}\nserver_url https://auth.acme-dns.io\nretries -1"
        )),
        ["7:9: retries: invalid number \"-1\": invalid digit found in string"]
    );
}

//! `libdns.route53` configuration: directives, defaults and errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use madmail_libdns_http::testing::{provider_block, provider_from};

fn errors(block: &str) -> Vec<String> {
    match provider_block(madmail_libdns_route53::register, "route53", block) {
        Ok(_) => panic!("accepted:\n{block}"),
        Err(errors) => errors,
    }
}

fn accepted(block: &str) {
    let provider = provider_block(madmail_libdns_route53::register, "route53", block)
        .unwrap_or_else(|e| panic!("{block}\n{e:?}"));
    assert_eq!(provider.name(), "route53");
}

#[test]
fn minimal_and_full_blocks() {
    // maddy's block: both keys; or none at all (the SDK's credential chain).
    accepted(
        "access_key_id AKIAIOSFODNN7EXAMPLE\nsecret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    accepted("");
    accepted("profile dns-admin\nregion eu-central-1");
    accepted(
        "access_key_id AKIAIOSFODNN7EXAMPLE\nsecret_access_key s3cr3t\nsession_token t0k3n\nregion us-east-1\nhosted_zone_id /hostedzone/Z1D633PJN98FT9\nwait_insync no\nendpoint http://127.0.0.1:5000\ntimeout 5s\nretries 0",
    );
    assert_eq!(madmail_libdns_route53::DEFAULT_REGION, "us-east-1");
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_route53::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://route53.amazonaws.com/"
    );
}

#[test]
fn errors_point_at_the_directive() {
    assert_eq!(
        errors("access_key_id AKIAIOSFODNN7EXAMPLE"),
        ["3:1: access_key_id needs secret_access_key too"]
    );
    assert_eq!(
        errors("secret_access_key s3cr3t"),
        ["3:1: secret_access_key needs access_key_id too"]
    );
    assert_eq!(
        errors("access_key_id AKIAIOSFODNN7EXAMPLE\nsecret_access_key \"\""),
        ["4:19: secret_access_key is empty"]
    );
    assert_eq!(
        errors("access_key_id \"\"\nsecret_access_key s3cr3t"),
        ["3:15: access_key_id is empty"]
    );
    assert_eq!(
        errors("session_token t0k3n"),
        ["3:1: session_token needs access_key_id and secret_access_key"]
    );
    assert_eq!(
        errors("access_key_id A\nsecret_access_key s\nprofile dns"),
        [
            "5:1: profile selects credentials of the shared config files: use it or access_key_id, not both"
        ]
    );
    assert_eq!(
        errors("region EU_WEST"),
        ["3:8: region \"EU_WEST\" is not a region name such as us-east-1"]
    );
    assert_eq!(errors("region \"\""), ["3:8: region is empty"]);
    assert_eq!(
        errors("hosted_zone_id /hostedzone/"),
        ["3:16: hosted_zone_id \"/hostedzone/\" is not a hosted zone id such as Z1D633PJN98FT9"]
    );
    assert_eq!(errors("profile \"\""), ["3:9: profile is empty"]);
    let lines = errors("wait_insync maybe");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("3:13: "), "{lines:?}");
    let lines = errors("endpoint 127.0.0.1:5000");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("3:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("endpoint https://user:pw@route53.amazonaws.com/"),
        [
            "3:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(errors("timeout 0s"), ["3:9: timeout must be longer than 0"]);
    let lines = errors("max_retries 3");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("3:1: unknown directive max_retries"),
        "{lines:?}"
    );
    // Several errors at once, each at its place.
    assert_eq!(
        errors("access_key_id A\nregion \"\"\nretries x"),
        [
            "3:1: access_key_id needs secret_access_key too",
            "4:8: region is empty",
            "5:9: retries: invalid number \"x\": invalid digit found in string",
        ]
    );
}

#[test]
fn no_arguments_on_the_block() {
    let lines = match provider_from(
        madmail_libdns_route53::register,
        "dns_user tcp://127.0.0.1:1 {\n    dns route53 extra {\n        region us-east-1\n    }\n}\n",
    ) {
        Ok(_) => panic!("accepted"),
        Err(lines) => lines,
    };
    assert_eq!(
        lines,
        ["2:17: libdns.route53 takes no arguments, only a block"]
    );
}

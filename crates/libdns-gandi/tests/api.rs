//! `libdns.gandi` against a local stand-in of the Gandi LiveDNS API (`standin/mod.rs`): the
//! requests it sends, paging, RRset read-modify-write, both credentials, and the documented
//! error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Response, assert_every_request_has, check_concurrent_changes,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block, txt,
};
use serde_json::json;
use standin::{API_KEY, PERSONAL_TOKEN};

fn provider_with(api: &MockApi, credentials: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_gandi::register,
        "gandi",
        &format!("{credentials}\nendpoint {}", api.url("v5/livedns")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, &format!("personal_token {PERSONAL_TOKEN}"))
}

const NAME: &str = "_acme-challenge.example.org.";
const RRSET: &str = "/v5/livedns/domains/example.org/records/_acme-challenge/TXT";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // LiveDNS's smallest TTL is 300 s, and new values keep the existing RRset's TTL (300 s).
    let expect = Expect {
        lists_zones: true,
        ttl: 300,
    };
    check_provider(provider(&api).as_ref(), &zones, expect).await;
    let requests = api.requests();
    assert_every_request_has(
        &requests,
        "authorization",
        &format!("Bearer {PERSONAL_TOKEN}"),
    );
    assert_every_request_has(&requests, "accept", "application/json");
    // 122 domains, 100 a page: two pages, the second one short.
    let pages = lines_of(&requests[..3]);
    assert_eq!(
        pages,
        [
            "GET /v5/livedns/domains?page=1&per_page=100",
            "GET /v5/livedns/domains?page=2&per_page=100",
            "GET /v5/livedns/domains?page=1&per_page=100",
        ]
    );
}

#[tokio::test]
async fn an_api_key_is_sent_with_its_own_scheme() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider_with(&api, &format!("api_token {API_KEY}"));
    provider
        .append("example.org.", &txt(NAME, "with-key", 300))
        .await
        .unwrap();
    assert!(zones.txt_values(NAME).contains(&"with-key".to_string()));
    for request in api.take_requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Apikey {API_KEY}").as_str())
        );
    }
    // With both, the personal access token is used.
    let provider = provider_with(
        &api,
        &format!("api_token {API_KEY}\npersonal_token {PERSONAL_TOKEN}"),
    );
    provider
        .delete("example.org.", &txt(NAME, "with-key", 300))
        .await
        .unwrap();
    for request in api.take_requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {PERSONAL_TOKEN}").as_str())
        );
    }
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn add_and_remove_rewrite_the_rrset_with_one_value_more_or_less() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);

    provider
        .append("example.org.", &txt(NAME, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let sent = lines_of(&requests);
    assert_eq!(sent, [format!("GET {RRSET}"), format!("PUT {RRSET}")]);
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].json(),
        json!({"rrset_ttl": 300, "rrset_values": ["\"pre-existing\"", "\"token-one\""]}),
        "the other value and the RRset's TTL stay"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing", "token-one"]);

    provider
        .delete("example.org.", &txt(NAME, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let sent = lines_of(&requests);
    assert_eq!(sent, [format!("GET {RRSET}"), format!("PUT {RRSET}")]);
    assert_eq!(
        requests[1].json(),
        json!({"rrset_ttl": 300, "rrset_values": ["\"pre-existing\""]})
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_new_rrset_gets_a_ttl_livedns_accepts_and_goes_with_its_last_value() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let fqdn = "_acme-challenge.mail.example.org.";
    let path = "/v5/livedns/domains/example.org/records/_acme-challenge.mail/TXT";
    // The ACME loader asks for 60 s; LiveDNS takes no less than 300 s.
    provider
        .append("example.org.", &txt(fqdn, "fresh", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let sent = lines_of(&requests);
    assert_eq!(sent, [format!("GET {path}"), format!("PUT {path}")]);
    assert_eq!(
        requests[1].json(),
        json!({"rrset_ttl": 300, "rrset_values": ["\"fresh\""]})
    );
    let records = zones.records_named(fqdn);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ttl, 300);

    provider
        .delete("example.org.", &txt(fqdn, "fresh", 60))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        [format!("GET {path}"), format!("DELETE {path}")]
    );
    assert!(zones.records_named(fqdn).is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn the_apex_is_named_at() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("example.org.", "apex-value", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines()[1],
        "PUT /v5/livedns/domains/example.org/records/@/TXT"
    );
    assert_eq!(zones.txt_values("example.org"), ["apex-value"]);
    provider
        .delete("example.org.", &txt("example.org.", "apex-value", 300))
        .await
        .unwrap();
    assert!(zones.txt_values("example.org").is_empty());
}

#[tokio::test]
async fn values_with_quotes_and_spaces_stay_one_string() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let value = "a \"quoted\" value";
    provider
        .append("example.org.", &txt(NAME, value, 300))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        requests[1].json()["rrset_values"][1],
        "\"a \\\"quoted\\\" value\""
    );
    assert!(zones.txt_values(NAME).contains(&value.to_string()));
    provider
        .delete("example.org.", &txt(NAME, value, 300))
        .await
        .unwrap();
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn changes_at_once_do_not_lose_values() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // Two orders (a wildcard and its apex) presenting at once: each read-modify-write must
    // see the other's value.
    check_concurrent_changes(provider(&api).as_ref(), &zones, 300).await;
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-token";
    let provider = provider_with(&api, &format!("personal_token {secret}"));
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "gandi: list domains in zone -: not authorised: HTTP 401 Unauthorized: Bad authentication attempt because of a wrong API Key."
    );
    // An expired token, or one not given this domain: 403.
    api.fail_next(
        1,
        standin::error(
            403,
            "HTTPForbidden",
            "Forbidden",
            "Access was denied to this resource.",
        ),
    );
    let error = check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt(NAME, "x", 300)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "gandi: add TXT record in zone example.org.: not authorised: HTTP 403 Forbidden: Access was denied to this resource."
    );
    let direct = madmail_libdns_gandi::Gandi::new(
        madmail_libdns_gandi::Credential::PersonalToken(madmail_libdns_http::Secret::new(secret)),
        &api.http_options("v5/livedns"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let fault = standin::error(
        429,
        "HTTPTooManyRequests",
        "Too Many Requests",
        "Too many requests",
    );
    check_retries_rate_limit(
        &api,
        fault,
        provider.append("example.org.", &txt(NAME, "after-wait", 300)),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-wait".to_string()));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let fault = Response::text(502, "text/html", "<html>Bad gateway</html>");
    check_retries_server_errors(
        &api,
        fault,
        provider.append("example.org.", &txt(NAME, "after-errors", 300)),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, &format!("personal_token {PERSONAL_TOKEN}\nretries 1"));
    let fault = standin::error(
        500,
        "HTTPInternalServerError",
        "Internal Server Error",
        "The server encountered an unexpected condition.",
    );
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.delete("example.org.", &txt(NAME, "after-errors", 300)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "gandi: remove TXT record in zone example.org.: HTTP 500 Internal Server Error: The server encountered an unexpected condition. (gave up after 2 attempts)"
    );
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));
}

#[tokio::test]
async fn a_value_that_is_there_already_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt(NAME, "pre-existing", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        [format!("GET {RRSET}")],
        "nothing to write"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_value_that_is_gone_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .delete("example.org.", &txt(NAME, "never-added", 300))
        .await
        .unwrap();
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.nothing.example.org.", "x", 300),
        )
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        [
            format!("GET {RRSET}"),
            "GET /v5/livedns/domains/example.org/records/_acme-challenge.nothing/TXT".to_string(),
        ],
        "nothing to remove"
    );
    // The RRset went between reading and deleting it: DELETE answers 404.
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"rrset_name": "_acme-challenge.gone", "rrset_type": "TXT", "rrset_ttl": 300,
                "rrset_values": ["\"gone\""]}),
        ),
    );
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.gone.example.org.", "gone", 300),
        )
        .await
        .unwrap();
    assert_eq!(
        api.take_lines()[1],
        "DELETE /v5/livedns/domains/example.org/records/_acme-challenge.gone/TXT"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn refusals_are_reported_with_the_apis_message() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // A domain that is not on LiveDNS.
    let error = provider
        .append("other.test.", &txt("_acme-challenge.other.test.", "x", 300))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "gandi: add TXT record in zone other.test.: HTTP 404 Not Found: Unknown domain"
    );
    // Validation errors name their fields.
    api.fail_next(
        1,
        standin::error(404, "dns-record", "Not Found", "Can't find the DNS record"),
    );
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"code": 400, "message": "Validation error", "object": "HTTPBadRequest",
                "cause": "Bad Request", "errors": [{"location": "body", "name": "rrset_values",
                "description": "Too many values."}]}),
        ),
    );
    let error = provider
        .append("example.org.", &txt(NAME, "x", 300))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "gandi: add TXT record in zone example.org.: HTTP 400 Bad Request: Validation error; rrset_values: Too many values."
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v5/livedns").await;
    let provider = provider_block(
        madmail_libdns_gandi::register,
        "gandi",
        &format!("personal_token {PERSONAL_TOKEN}\nendpoint {url}\nretries 0\ntimeout 2s"),
    )
    .unwrap();
    check_unreachable("gandi: list domains in zone -", provider.zone_for(NAME)).await;
}

//! `libdns.gcore` against a local stand-in of the Gcore DNS API v2 (`standin/mod.rs`): the
//! requests it sends, paging, RRset read-modify-write, and the documented error replies.

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
use standin::TOKEN;

fn provider_with(api: &MockApi, key: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_gcore::register,
        "gcore",
        &format!("api_key {key}\nendpoint {}\n{extra}", api.url("dns/v2")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, TOKEN, "")
}

const NAME: &str = "_acme-challenge.example.org.";
const RRSET: &str = "/dns/v2/zones/example.org/_acme-challenge.example.org/TXT";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // New values join the pre-existing RRset and keep its TTL (300 s), so that is the TTL
    // asked for.
    let expect = Expect {
        lists_zones: true,
        ttl: 300,
    };
    check_provider(provider(&api).as_ref(), &zones, expect).await;
    let requests = api.requests();
    assert_every_request_has(&requests, "authorization", &format!("APIKey {TOKEN}"));
    // 122 zones, 100 a page: two pages, the second one short.
    let zone_pages = lines_of(&requests[..3]);
    assert_eq!(
        zone_pages,
        [
            "GET /dns/v2/zones?limit=100&offset=0",
            "GET /dns/v2/zones?limit=100&offset=100",
            "GET /dns/v2/zones?limit=100&offset=0",
        ]
    );
}

#[tokio::test]
async fn add_and_remove_rewrite_the_rrset_with_one_value_more_or_less() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);

    provider
        .append("example.org.", &txt(NAME, "token-one", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(lines, [format!("GET {RRSET}"), format!("PUT {RRSET}")]);
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].json(),
        json!({"ttl": 300, "resource_records": [
            {"content": ["pre-existing"], "enabled": true, "meta": {}},
            {"content": ["token-one"], "enabled": true},
        ]}),
        "the other value and the RRset's TTL stay"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing", "token-one"]);

    provider
        .delete("example.org.", &txt(NAME, "token-one", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(lines, [format!("GET {RRSET}"), format!("PUT {RRSET}")]);
    assert_eq!(
        requests[1].json(),
        json!({"ttl": 300, "resource_records": [
            {"content": ["pre-existing"], "enabled": true, "meta": {}},
        ]})
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_new_rrset_is_created_and_deleted_with_its_last_value() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let fqdn = "_acme-challenge.new.example.org.";
    let path = "/dns/v2/zones/example.org/_acme-challenge.new.example.org/TXT";
    provider
        .append("example.org.", &txt(fqdn, "fresh", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    let sent = lines_of(&requests);
    assert_eq!(sent, [format!("GET {path}"), format!("POST {path}")]);
    assert_eq!(
        requests[1].json(),
        json!({"ttl": 120, "resource_records": [{"content": ["fresh"], "enabled": true}]})
    );
    let records = zones.records_named(fqdn);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ttl, 120);

    provider
        .delete("example.org.", &txt(fqdn, "fresh", 120))
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
async fn settings_of_the_rrset_are_written_back_unchanged() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // An RRset with balancing filters, metadata and a disabled record, made in the portal.
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"name": "_acme-challenge.example.org", "type": "TXT", "ttl": 600,
                "resource_records": [
                    {"id": 7, "content": ["pre-existing"], "enabled": false, "meta": {"notes": ["kept"]}},
                ],
                "filters": [{"type": "first_n", "limit": 1, "strict": false}],
                "meta": {"failover": {"protocol": "HTTP"}},
                "updated_at": "2026-01-01T00:00:00Z"}),
        ),
    );
    provider
        .append("example.org.", &txt(NAME, "token-one", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests[1].line(), format!("PUT {RRSET}"));
    assert_eq!(
        requests[1].json(),
        json!({"ttl": 600,
            "resource_records": [
                {"content": ["pre-existing"], "enabled": false, "meta": {"notes": ["kept"]}},
                {"content": ["token-one"], "enabled": true},
            ],
            "filters": [{"type": "first_n", "limit": 1, "strict": false}],
            "meta": {"failover": {"protocol": "HTTP"}}})
    );
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
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, secret, "");
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "gcore: list zones in zone -: not authorised: HTTP 401 Unauthorized: invalid API token"
    );
    check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt(NAME, "x", 300)),
    )
    .await;
    let direct = madmail_libdns_gcore::Gcore::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("dns/v2"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    check_retries_rate_limit(
        &api,
        standin::error(429, "too many requests"),
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
    check_retries_server_errors(
        &api,
        standin::error(500, "oops"),
        provider.append("example.org.", &txt(NAME, "after-errors", 300)),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, TOKEN, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.delete("example.org.", &txt(NAME, "after-errors", 300)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "gcore: remove TXT record in zone example.org.: HTTP 502 Bad Gateway: <html>Bad gateway</html> (gave up after 2 attempts)"
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
    // The RRset was made by someone else between reading and creating it: the refused
    // creation is followed by reading it again, and it holds the value.
    api.fail_next(1, standin::error(404, "rrset not found"));
    provider
        .append("example.org.", &txt(NAME, "pre-existing", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        [
            format!("GET {RRSET}"),
            format!("POST {RRSET}"),
            format!("GET {RRSET}")
        ]
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
    // ... or it holds another value: this one is added to it.
    api.fail_next(1, standin::error(404, "rrset not found"));
    provider
        .append("example.org.", &txt(NAME, "late", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        [
            format!("GET {RRSET}"),
            format!("POST {RRSET}"),
            format!("GET {RRSET}"),
            format!("PUT {RRSET}")
        ]
    );
    assert_eq!(zones.txt_values(NAME), ["late", "pre-existing"]);
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
            "GET /dns/v2/zones/example.org/_acme-challenge.nothing.example.org/TXT".to_string(),
        ],
        "nothing to remove"
    );
    // The RRset went between reading and deleting it: DELETE answers 404.
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"name": "_acme-challenge.gone.example.org", "type": "TXT", "ttl": 300,
                "resource_records": [{"id": 9, "content": ["gone"], "enabled": true, "meta": {}}],
                "filters": [], "meta": {}}),
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
        "DELETE /dns/v2/zones/example.org/_acme-challenge.gone.example.org/TXT"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn refusals_are_reported_with_the_apis_message() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // A zone the account does not have: creating the RRset is refused, and reading it again
    // does not find it either.
    let error = provider
        .append("other.test.", &txt("_acme-challenge.other.test.", "x", 300))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "gcore: add TXT record in zone other.test.: HTTP 404 Not Found: zone not found"
    );
    assert_eq!(
        api.take_lines(),
        [
            "GET /dns/v2/zones/other.test/_acme-challenge.other.test/TXT",
            "POST /dns/v2/zones/other.test/_acme-challenge.other.test/TXT",
            "GET /dns/v2/zones/other.test/_acme-challenge.other.test/TXT",
        ]
    );
    // A 200 reply that carries an error is a failure.
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"zones": [], "error": "listing is unavailable"}),
        ),
    );
    let error = provider.zone_for(NAME).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "gcore: list zones in zone -: listing is unavailable"
    );
    // ... and so is a change answered that way.
    api.fail_next(1, standin::error(404, "rrset not found"));
    api.fail_next(1, Response::json(200, &json!({"error": "not saved"})));
    let error = provider
        .append(
            "example.org.",
            &txt("_acme-challenge.y.example.org.", "y", 300),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "gcore: add TXT record in zone example.org.: not saved"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("dns/v2").await;
    let provider = provider_block(
        madmail_libdns_gcore::register,
        "gcore",
        &format!("api_key {TOKEN}\nendpoint {url}\nretries 0\ntimeout 2s"),
    )
    .unwrap();
    check_unreachable("gcore: list zones in zone -", provider.zone_for(NAME)).await;
}

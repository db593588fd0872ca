//! `libdns.hetzner` against a local stand-in of the Hetzner Cloud DNS API (`standin/mod.rs`):
//! the requests it sends, paging, actions, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block, txt,
};
use serde_json::json;
use standin::{Standin, TOKEN};

fn provider_with(api: &MockApi, token: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_hetzner::register,
        "hetzner",
        &format!("api_token {token}\nendpoint {}\n{extra}", api.url("v1")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, TOKEN, "")
}

const NAME: &str = "_acme-challenge.example.org.";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    // New values join the pre-existing RRset and take its TTL (300 s), so that is the TTL
    // asked for.
    let expect = Expect {
        lists_zones: true,
        ttl: 300,
    };
    check_provider(provider(&api).as_ref(), &zones, expect).await;
    let requests = api.requests();
    assert_every_request_has(&requests, "authorization", &format!("Bearer {TOKEN}"));
    assert_every_request_has(&requests, "accept", "application/json");
    // 122 zones, 50 a page: three pages.
    let zone_pages = lines_of(&requests[..4]);
    assert_eq!(
        zone_pages,
        [
            "GET /v1/zones?page=1&per_page=50",
            "GET /v1/zones?page=2&per_page=50",
            "GET /v1/zones?page=3&per_page=50",
            "GET /v1/zones?page=1&per_page=50",
        ]
    );
}

#[tokio::test]
async fn add_and_remove_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);

    provider
        .append("example.org.", &txt(NAME, "token-one", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            "GET /v1/zones/example.org/rrsets/_acme-challenge/TXT",
            "POST /v1/zones/example.org/rrsets/_acme-challenge/TXT/actions/add_records",
            // The action started `running`; it is asked about until it succeeds.
            "GET /v1/zones/actions/1",
        ]
    );
    let add = &requests[1];
    assert_eq!(add.header("content-type"), Some("application/json"));
    assert_eq!(
        add.json(),
        json!({"ttl": 120, "records": [{"value": "\"token-one\""}]})
    );
    assert_eq!(
        zones.txt_values(NAME),
        ["pre-existing", "token-one"],
        "added next to the value that was there"
    );
    // The RRset existed: its TTL stays.
    assert!(zones.records_named(NAME).iter().all(|r| r.ttl == 300));

    provider
        .delete("example.org.", &txt(NAME, "token-one", 120))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            "GET /v1/zones/example.org/rrsets/_acme-challenge/TXT",
            "POST /v1/zones/example.org/rrsets/_acme-challenge/TXT/actions/remove_records",
            "GET /v1/zones/actions/2",
        ]
    );
    assert_eq!(
        requests[1].json(),
        json!({"records": [{"value": "\"token-one\""}]})
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_new_rrset_gets_the_ttl_within_hetzners_range() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    let fqdn = "_acme-challenge.new.example.org.";
    provider
        .append("example.org.", &txt(fqdn, "short", 10))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        requests[1].path,
        "/v1/zones/example.org/rrsets/_acme-challenge.new/TXT/actions/add_records"
    );
    assert_eq!(requests[1].json()["ttl"], 60);
    let records = zones.records_named(fqdn);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].ttl, 60);

    provider
        .delete("example.org.", &txt(fqdn, "short", 10))
        .await
        .unwrap();
    assert!(
        zones.records_named(fqdn).is_empty(),
        "the RRset goes with its last value"
    );
}

#[tokio::test]
async fn the_apex_is_named_at() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("example.org.", "apex-value", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines()[1],
        "POST /v1/zones/example.org/rrsets/@/TXT/actions/add_records"
    );
    assert_eq!(zones.txt_values("example.org"), ["apex-value"]);
    provider
        .delete("example.org.", &txt("example.org.", "apex-value", 300))
        .await
        .unwrap();
    assert!(zones.txt_values("example.org").is_empty());
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let secret = "wrong-secret-token";
    let provider = provider_with(&api, secret, "");
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "hetzner: list zones in zone -: not authorised: HTTP 401 Unauthorized: unable to authenticate (unauthorized)"
    );
    let error = check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt(NAME, "x", 300)),
    )
    .await;
    assert!(
        error
            .to_string()
            .starts_with("hetzner: add TXT record in zone example.org.: not authorised"),
        "{error}"
    );
    let direct = madmail_libdns_hetzner::Hetzner::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("v1"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    let fault = standin::error(
        429,
        "rate_limit_exceeded",
        "limit of 3600 requests per hour reached",
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
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.append("example.org.", &txt(NAME, "after-errors", 300)),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, TOKEN, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        standin::error(503, "unavailable", "service temporarily unavailable"),
        provider.append("example.org.", &txt(NAME, "never", 300)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "hetzner: add TXT record in zone example.org.: HTTP 503 Service Unavailable: service temporarily unavailable (unavailable) (gave up after 2 attempts)"
    );
    assert!(!zones.txt_values(NAME).contains(&"never".to_string()));
}

#[tokio::test]
async fn a_value_that_is_there_already_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt(NAME, "pre-existing", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        ["GET /v1/zones/example.org/rrsets/_acme-challenge/TXT"],
        "nothing to add"
    );
    // Added by someone else between reading the RRset and adding to it: the API refuses the
    // duplicate, which is success.
    api.fail_next(1, standin::error(404, "not_found", "rrset not found"));
    provider
        .append("example.org.", &txt(NAME, "pre-existing", 300))
        .await
        .unwrap();
    assert_eq!(
        api.take_lines()[1],
        "POST /v1/zones/example.org/rrsets/_acme-challenge/TXT/actions/add_records"
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_value_that_is_gone_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    // Not in the RRset; no RRset at all.
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
            "GET /v1/zones/example.org/rrsets/_acme-challenge/TXT",
            "GET /v1/zones/example.org/rrsets/_acme-challenge.nothing/TXT",
        ],
        "nothing to remove"
    );
    // The RRset vanished between reading and removing.
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"rrset": {"id": "_acme-challenge.gone/TXT", "name": "_acme-challenge.gone",
                "type": "TXT", "ttl": 300, "records": [{"value": "\"gone\"", "comment": ""}],
                "zone": 122, "labels": {}, "protection": {"change": false}}}),
        ),
    );
    api.fail_next(1, standin::error(404, "not_found", "rrset not found"));
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.gone.example.org.", "gone", 300),
        )
        .await
        .unwrap();
    assert_eq!(api.requests().len(), 2);
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_failed_action_is_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    api.fail_next(1, standin::error(404, "not_found", "rrset not found"));
    api.fail_next(
        1,
        Response::json(
            201,
            &json!({"action": {"id": 77, "command": "add_rrset_records", "status": "running",
                "progress": 0, "resources": [{"id": 122, "type": "zone"}], "error": null}}),
        ),
    );
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"action": {"id": 77, "command": "add_rrset_records", "status": "error",
                "progress": 100, "resources": [{"id": 122, "type": "zone"}],
                "error": {"code": "action_failed", "message": "zone is locked"}}}),
        ),
    );
    let error = provider
        .append("example.org.", &txt(NAME, "x", 300))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "hetzner: add TXT record in zone example.org.: action 77 failed: zone is locked (action_failed)"
    );
    assert_eq!(
        api.take_lines()[2],
        "GET /v1/zones/actions/77",
        "the action was asked about"
    );
}

#[tokio::test]
async fn refusals_are_reported_with_the_apis_message() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    // A zone the project does not have (the API answers for ids and names alike).
    let error = provider
        .append("other.test.", &txt("_acme-challenge.other.test.", "x", 300))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "hetzner: add TXT record in zone other.test.: HTTP 404 Not Found: zone not found (not_found)"
    );
    // Validation errors name their fields.
    api.fail_next(1, standin::error(404, "not_found", "rrset not found"));
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"error": {"code": "invalid_input", "message": "invalid input in field 'records'",
                "details": {"fields": [{"name": "records", "messages": ["too many records"]}]}}}),
        ),
    );
    let error = provider
        .append("example.org.", &txt(NAME, "x", 300))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "hetzner: add TXT record in zone example.org.: HTTP 400 Bad Request: invalid input in field 'records' (invalid_input); records: too many records"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v1").await;
    let provider = provider_block(
        madmail_libdns_hetzner::register,
        "hetzner",
        &format!("api_token {TOKEN}\nendpoint {url}\nretries 0\ntimeout 2s"),
    )
    .unwrap();
    check_unreachable("hetzner: list zones in zone -", provider.zone_for(NAME)).await;
}

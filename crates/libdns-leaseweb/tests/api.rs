//! `libdns.leaseweb` against a local stand-in of the Leaseweb Hosting API v2 (`standin/mod.rs`):
//! the requests it sends, paging, record-set read-modify-write, and the documented errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use madmail_dns::DnsProvider;
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Request, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block, txt,
};
use serde_json::json;

fn provider_with(api: &MockApi, key: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_leaseweb::register,
        "leaseweb",
        &format!("api_key {key}\nendpoint {}\n{extra}", api.url("hosting/v2")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::KEY, "")
}

fn writes(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(Request::line)
        .collect()
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(
        provider(&api).as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 60,
        },
    )
    .await;
    let requests = api.requests();
    assert_every_request_has(&requests, "x-lsw-auth", standin::KEY);
    assert_every_request_has(&requests, "accept", "application/json");
    // 122 domains, 50 a page: three pages, the last one short.
    let pages = lines_of(&requests[..3]);
    assert_eq!(
        pages,
        [
            "GET /hosting/v2/domains?limit=50&offset=0",
            "GET /hosting/v2/domains?limit=50&offset=50",
            "GET /hosting/v2/domains?limit=50&offset=100",
        ]
    );
    assert_eq!(
        requests[3].line(),
        "GET /hosting/v2/domains?limit=50&offset=0"
    );
}

#[tokio::test]
async fn a_new_set_is_created_extended_shrunk_and_deleted() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let name = "_acme-challenge.Mail.example.org.";
    let path =
        "/hosting/v2/domains/example.org/resourceRecordSets/_acme-challenge.mail.example.org./TXT";

    provider
        .append("example.org.", &txt(name, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            format!("GET {path}"),
            "POST /hosting/v2/domains/example.org/resourceRecordSets".to_string(),
        ]
    );
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].json(),
        json!({"name": "_acme-challenge.mail.example.org.", "type": "TXT", "content": ["token-one"], "ttl": 60})
    );

    provider
        .append("example.org.", &txt(name, "token-two", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(lines, [format!("GET {path}"), format!("PUT {path}")]);
    assert_eq!(
        requests[1].json(),
        json!({"content": ["token-one", "token-two"], "ttl": 60})
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.mail.example.org"),
        ["token-one", "token-two"]
    );

    provider
        .delete("example.org.", &txt(name, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(lines, [format!("GET {path}"), format!("PUT {path}")]);
    assert_eq!(
        requests[1].json(),
        json!({"content": ["token-two"], "ttl": 60})
    );

    provider
        .delete("example.org.", &txt(name, "token-two", 60))
        .await
        .unwrap();
    let lines = api.take_lines();
    assert_eq!(lines, [format!("GET {path}"), format!("DELETE {path}")]);
    assert!(
        zones
            .records_named("_acme-challenge.mail.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn values_of_others_stay_and_the_set_ttl_only_shrinks() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let name = "_acme-challenge.example.org.";
    provider
        .append("example.org.", &txt(name, "mine", 60))
        .await
        .unwrap();
    let put = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    // The set had "pre-existing" with TTL 300.
    assert_eq!(
        put.json(),
        json!({"content": ["pre-existing", "mine"], "ttl": 60})
    );
    provider
        .delete("example.org.", &txt(name, "mine", 60))
        .await
        .unwrap();
    let put = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.json(), json!({"content": ["pre-existing"], "ttl": 60}));
    assert_eq!(zones.txt_values(name), ["pre-existing"]);
}

#[tokio::test]
async fn ttls_are_rounded_up_to_the_allowed_list() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    for (asked, given) in [(10, 60), (120, 300), (100_000, 86_400)] {
        let name = format!("_acme-challenge.t{asked}.example.org.");
        provider
            .append("example.org.", &txt(&name, "v", asked))
            .await
            .unwrap();
        let records = zones.records_named(&name);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].ttl, given, "asked {asked}");
    }
}

#[tokio::test]
async fn a_value_already_there_is_success_without_a_write() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "pre-existing", 60),
        )
        .await
        .unwrap();
    assert_eq!(writes(&api.requests()), Vec::<String>::new());
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn deleting_what_is_not_there_is_success_without_a_write() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // No such set (the API answers 404), and a set without the value.
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.nothing.example.org.", "gone", 60),
        )
        .await
        .unwrap();
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "gone", 60),
        )
        .await
        .unwrap();
    assert_eq!(writes(&api.requests()), Vec::<String>::new());
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_set_deleted_meanwhile_is_success() {
    let zones = FakeZones::standard();
    zones.add(
        "example.org",
        "_acme-challenge.x.example.org",
        "TXT",
        "v",
        60,
    );
    let backing = zones.clone();
    // Someone else deletes the set between our read and our DELETE: the API says 404.
    let api = MockApi::start(move |request| {
        if request.method == "DELETE" {
            return standin::error(404, "Resource not found");
        }
        standin::handle(&backing, request)
    })
    .await;
    provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.x.example.org.", "v", 60),
        )
        .await
        .unwrap();
    assert_eq!(writes(&api.requests()).len(), 1);
}

#[tokio::test]
async fn a_set_created_meanwhile_gets_the_value_added() {
    let zones = FakeZones::standard();
    let backing = zones.clone();
    let raced = AtomicBool::new(false);
    // Another client creates the set between our read and our POST.
    let api = MockApi::start(move |request| {
        if request.method == "POST" && !raced.swap(true, Ordering::SeqCst) {
            backing.add(
                "example.org",
                "_acme-challenge.r.example.org",
                "TXT",
                "theirs",
                300,
            );
        }
        standin::handle(&backing, request)
    })
    .await;
    provider(&api)
        .append(
            "example.org.",
            &txt("_acme-challenge.r.example.org.", "mine", 60),
        )
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.r.example.org"),
        ["mine", "theirs"]
    );
    let lines = api.lines();
    let path =
        "/hosting/v2/domains/example.org/resourceRecordSets/_acme-challenge.r.example.org./TXT";
    assert_eq!(
        lines,
        [
            format!("GET {path}"),
            "POST /hosting/v2/domains/example.org/resourceRecordSets".to_string(),
            format!("GET {path}"),
            format!("PUT {path}"),
        ]
    );
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, secret, "");
    let error = check_refused_credentials(
        &api,
        secret,
        provider.zone_for("_acme-challenge.example.org."),
    )
    .await;
    let text = error.to_string();
    assert!(text.starts_with("leaseweb: list zones in zone -: not authorised: HTTP 401 Unauthorized: You are not authorized to view this resource."), "{text}");
    let error = check_refused_credentials(
        &api,
        secret,
        provider.append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        ),
    )
    .await;
    assert!(
        error
            .to_string()
            .starts_with("leaseweb: create TXT record in zone example.org.: not authorised")
    );
    let direct = madmail_libdns_leaseweb::Leaseweb::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("hosting/v2"),
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
        standin::error(429, "Too many requests"),
        provider.append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-wait", 60),
        ),
    )
    .await;
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["after-wait", "pre-existing"]
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_retries_server_errors(
        &api,
        standin::error(503, "Service unavailable"),
        provider(&api).append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-errors", 60),
        ),
    )
    .await;
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-errors".to_string())
    );

    let provider = provider_with(&api, standin::KEY, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        standin::error(500, "Internal server error"),
        provider.delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-errors", 60),
        ),
    )
    .await;
    assert_eq!(
        error.to_string(),
        format!(
            "leaseweb: delete TXT record in zone example.org.: HTTP 500 Internal Server Error: Internal server error [correlation id {}] (gave up after 2 attempts)",
            standin::CORRELATION_ID
        )
    );
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // The domain is not in the account.
    let error = provider
        .append("other.test.", &txt("_acme-challenge.other.test.", "v", 60))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "leaseweb: create TXT record in zone other.test.: HTTP 404 Not Found: Resource not found [correlation id {}]",
            standin::CORRELATION_ID
        )
    );
    // What a validation error looks like (as the stand-in answers a bad TTL).
    api.fail_next(1, Response::empty(404));
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"errorCode": "400", "errorMessage": "Validation failed",
                "errorDetails": {"ttl": ["The value you selected is not a valid choice."]}}),
        ),
    );
    let error = provider
        .append(
            "example.org.",
            &txt("_acme-challenge.v.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "leaseweb: create TXT record in zone example.org.: HTTP 400 Bad Request: Validation failed (ttl: The value you selected is not a valid choice.)"
    );
}

#[tokio::test]
async fn a_name_outside_every_domain() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let error = provider(&api)
        .zone_for("_acme-challenge.example.net.")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "leaseweb: no zone found for _acme-challenge.example.net."
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("hosting/v2").await;
    let provider = provider_block(
        madmail_libdns_leaseweb::register,
        "leaseweb",
        &format!(
            "api_key {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::KEY
        ),
    )
    .unwrap();
    check_unreachable(
        "leaseweb: list zones in zone -",
        provider.zone_for("_acme-challenge.example.org."),
    )
    .await;
}

//! `libdns.vultr` against a local stand-in of the Vultr API v2 (`standin/`): the requests it
//! sends, cursor paging, TXT quoting, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block,
};
use serde_json::json;

const NAME: &str = "_acme-challenge.example.org";
const RECORDS_PAGE: &str = "GET /v2/domains/example.org/records?per_page=500";

fn provider_with(api: &MockApi, token: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_vultr::register,
        "vultr",
        &format!("api_token {token}\nendpoint {}\n{extra}", api.url("v2")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::TOKEN, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(&format!("{NAME}."), value, 120)
}

fn bearer() -> String {
    format!("Bearer {}", standin::TOKEN)
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(provider(&api).as_ref(), &zones, Expect::default()).await;
    let requests = api.requests();
    assert_every_request_has(&requests, "authorization", &bearer());
    // 122 domains fit in one page of 500.
    assert_eq!(requests[0].line(), "GET /v2/domains?per_page=500");
    assert!(!requests[1].line().contains("cursor"));
}

#[tokio::test]
async fn listings_follow_the_cursor() {
    let zones = FakeZones::standard();
    for i in 0..600 {
        zones.add_zone(&format!("more{i:03}.test"));
    }
    for i in 0..520 {
        zones.add(
            "example.org",
            &format!("host{i:03}.example.org"),
            "AAAA",
            "2001:db8::1",
            300,
        );
    }
    let last = zones.add("example.org", NAME, "TXT", "last-one", 300);
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    assert_eq!(
        provider
            .zone_for("_acme-challenge.more599.test.")
            .await
            .unwrap(),
        "more599.test."
    );
    let lines = api.take_lines();
    // 722 domains: the second page starts at 500 (0x1f4).
    assert_eq!(
        lines,
        [
            "GET /v2/domains?per_page=500",
            "GET /v2/domains?per_page=500&cursor=bmV4dF9f1f4",
        ]
    );

    // 642 records: the TXT value is on the second page.
    provider
        .delete("example.org.", &txt("last-one"))
        .await
        .unwrap();
    let lines = api.take_lines();
    assert_eq!(
        lines,
        [
            RECORDS_PAGE.to_string(),
            format!("{RECORDS_PAGE}&cursor=bmV4dF9f1f4"),
            format!(
                "DELETE /v2/domains/example.org/records/{}",
                standin::uuid(&last)
            ),
        ]
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [RECORDS_PAGE, "POST /v2/domains/example.org/records"]
    );
    let create = &requests[1];
    assert_eq!(create.header("authorization"), Some(bearer().as_str()));
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json(),
        json!({"name": "_acme-challenge", "type": "TXT", "data": "\"token-one\"", "ttl": 120, "priority": 0})
    );
    let created = zones.txt_record(NAME, "token-one");
    assert_eq!((created.ttl, created.zone.as_str()), (120, "example.org"));

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            RECORDS_PAGE.to_string(),
            format!(
                "DELETE /v2/domains/example.org/records/{}",
                standin::uuid(&created)
            ),
        ]
    );
    assert_eq!(requests[1].header("authorization"), Some(bearer().as_str()));
    assert!(requests[1].body.is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn the_apex_has_an_empty_name() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let apex = testing::txt("example.org.", "at-apex", 120);
    provider.append("example.org.", &apex).await.unwrap();
    let create = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.json()["name"], "");
    assert_eq!(zones.txt_values("example.org"), ["at-apex"]);
    provider.delete("example.org.", &apex).await.unwrap();
    assert!(zones.txt_values("example.org").is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn ttl_has_a_floor_and_quotes_are_refused() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let short = testing::txt(&format!("{NAME}."), "short", 0);
    provider.append("example.org.", &short).await.unwrap();
    let record = zones.txt_record(NAME, "short");
    assert_eq!(record.ttl, 60);

    api.take_requests();
    let error = provider
        .append("example.org.", &txt("say \"hi\""))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "vultr: create TXT record in zone example.org.: Vultr cannot store a TXT value containing '\"'"
    );
    assert!(api.requests().is_empty());
}

#[test]
fn the_standin_refuses_unquoted_txt_data() {
    // What the provider must never send, and the error Vultr answers it with.
    let zones = FakeZones::standard();
    let reply = standin::handle(
        &zones,
        &madmail_libdns_http::testing::Request {
            method: "POST".into(),
            path: "/v2/domains/example.org/records".into(),
            query: None,
            headers: {
                let mut h = madmail_libdns_http::reqwest::header::HeaderMap::new();
                h.insert("authorization", bearer().parse().unwrap());
                h.insert("content-type", "application/json".parse().unwrap());
                h
            },
            body: json!({"name": "_acme-challenge", "type": "TXT", "data": "bare", "ttl": 120})
                .to_string()
                .into(),
        },
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        json!({"error": "Unable to add record: Record data must be enclosed in quotes", "status": 400})
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, secret, "");
    let error =
        check_refused_credentials(&api, secret, provider.zone_for(&format!("{NAME}."))).await;
    assert_eq!(
        error.to_string(),
        "vultr: list domains in zone -: not authorised: HTTP 401 Unauthorized: Invalid API token."
    );
    let text = check_refused_credentials(
        &api,
        secret,
        provider.delete("example.org.", &txt("token-one")),
    )
    .await
    .to_string();
    assert!(
        text.starts_with("vultr: delete TXT record in zone example.org.: not authorised"),
        "{text}"
    );
    let direct = madmail_libdns_vultr::Vultr::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("v2"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let sent = check_retries_rate_limit(
        &api,
        standin::error(429, "Rate limit exceeded"),
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-wait".to_string()));
    assert_eq!(
        lines_of(&sent),
        [
            RECORDS_PAGE,
            RECORDS_PAGE,
            "POST /v2/domains/example.org/records"
        ]
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(503, "text/html", "<html>Service Unavailable</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, standin::TOKEN, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        standin::error(500, "Internal server error"),
        provider.delete("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "vultr: delete TXT record in zone example.org.: HTTP 500 Internal Server Error: Internal server error (gave up after 2 attempts)"
    );
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));
}

#[tokio::test]
async fn an_existing_value_is_not_added_again() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
    let lines = api.lines();
    assert_eq!(lines, [RECORDS_PAGE]);
}

#[tokio::test]
async fn a_record_gone_before_its_delete_is_success() {
    let zones = FakeZones::standard();
    let racing = zones.clone();
    // Another client deletes the record between our listing and our delete.
    let api = MockApi::start(move |request| {
        let reply = standin::handle(&racing, request);
        if request.method == "GET" && request.path.ends_with("/records") {
            racing.remove_txt(NAME, "vanishing");
        }
        reply
    })
    .await;
    let provider = provider(&api);
    zones.add("example.org", NAME, "TXT", "vanishing", 120);
    provider
        .delete("example.org.", &txt("vanishing"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].method, "DELETE");
    // Never there at all: nothing to delete.
    provider
        .delete("example.org.", &txt("never-there"))
        .await
        .unwrap();
    let lines = api.lines();
    assert_eq!(lines, [RECORDS_PAGE]);
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn an_unknown_domain_is_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let record = testing::txt("_acme-challenge.gone.test.", "x", 120);
    let error = provider.append("gone.test.", &record).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "vultr: create TXT record in zone gone.test.: HTTP 404 Not Found: Invalid domain."
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v2").await;
    let provider = provider_block(
        madmail_libdns_vultr::register,
        "vultr",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable(
        "vultr: list domains in zone -",
        provider.zone_for(&format!("{NAME}.")),
    )
    .await;
}

//! `libdns.digitalocean` against a local stand-in of the DigitalOcean API v2 (`standin/`):
//! the requests it sends, paging, and the documented error replies.

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

fn provider_with(api: &MockApi, token: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_digitalocean::register,
        "digitalocean",
        &format!("api_token {token}\nendpoint {}\n{extra}", api.url("v2")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::TOKEN, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(&format!("{NAME}."), value, 60)
}

fn bearer() -> String {
    format!("Bearer {}", standin::TOKEN)
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
    assert_every_request_has(&requests, "authorization", &bearer());
    // 122 domains fit in one page of 200.
    assert_eq!(requests[0].line(), "GET /v2/domains?page=1&per_page=200");
    assert_ne!(requests[1].line(), "GET /v2/domains?page=2&per_page=200");
}

#[tokio::test]
async fn listings_are_paged() {
    let zones = FakeZones::standard();
    for i in 0..300 {
        zones.add_zone(&format!("more{i:03}.test"));
    }
    // More values at the name than one page holds; the one to delete comes last.
    for i in 0..210 {
        zones.add("example.org", NAME, "TXT", &format!("other-{i:03}"), 300);
    }
    let last = zones.add("example.org", NAME, "TXT", "last-one", 300);
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // 422 domains: three pages of 200, and the zone is found on the first.
    assert_eq!(
        provider.zone_for(&format!("{NAME}.")).await.unwrap(),
        "example.org."
    );
    let lines = api.take_lines();
    assert_eq!(
        lines,
        [
            "GET /v2/domains?page=1&per_page=200",
            "GET /v2/domains?page=2&per_page=200",
            "GET /v2/domains?page=3&per_page=200",
        ]
    );
    assert_eq!(
        provider
            .zone_for("_acme-challenge.more299.test.")
            .await
            .unwrap(),
        "more299.test."
    );
    api.take_requests();

    provider
        .delete("example.org.", &txt("last-one"))
        .await
        .unwrap();
    let lines = api.take_lines();
    let id = standin::numeric_id(&last);
    assert_eq!(
        lines,
        [
            format!("GET /v2/domains/example.org/records?type=TXT&name={NAME}&page=1&per_page=200"),
            format!("GET /v2/domains/example.org/records?type=TXT&name={NAME}&page=2&per_page=200"),
            format!("DELETE /v2/domains/example.org/records/{id}"),
        ]
    );
    let values = zones.txt_values(NAME);
    assert_eq!(values.len(), 211);
    assert!(!values.contains(&"last-one".to_string()));
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
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].line(),
        format!("GET /v2/domains/example.org/records?type=TXT&name={NAME}&page=1&per_page=200")
    );
    let create = &requests[1];
    assert_eq!(create.line(), "POST /v2/domains/example.org/records");
    assert_eq!(create.header("authorization"), Some(bearer().as_str()));
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json(),
        json!({"type": "TXT", "name": "_acme-challenge", "data": "token-one", "ttl": 60})
    );
    let created = zones.txt_record(NAME, "token-one");
    assert_eq!((created.ttl, created.zone.as_str()), (60, "example.org"));

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            format!("GET /v2/domains/example.org/records?type=TXT&name={NAME}&page=1&per_page=200"),
            format!(
                "DELETE /v2/domains/example.org/records/{}",
                standin::numeric_id(&created)
            ),
        ]
    );
    assert_eq!(requests[1].header("authorization"), Some(bearer().as_str()));
    assert!(requests[1].body.is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn the_apex_is_written_at() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let apex = testing::txt("example.org.", "at-apex", 60);
    provider.append("example.org.", &apex).await.unwrap();
    let create = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.json()["name"], "@");
    assert_eq!(zones.txt_values("example.org"), ["at-apex"]);
    provider.delete("example.org.", &apex).await.unwrap();
    assert!(zones.txt_values("example.org").is_empty());
}

#[tokio::test]
async fn ttl_is_raised_to_digitaloceans_minimum() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let short = testing::txt(&format!("{NAME}."), "short", 5);
    provider.append("example.org.", &short).await.unwrap();
    let record = zones.txt_record(NAME, "short");
    assert_eq!(record.ttl, standin::MIN_TTL);
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-token";
    let provider = provider_with(&api, secret, "");
    let error =
        check_refused_credentials(&api, secret, provider.zone_for(&format!("{NAME}."))).await;
    assert_eq!(
        error.to_string(),
        "digitalocean: list domains in zone -: not authorised: HTTP 401 Unauthorized: Unable to authenticate you (Unauthorized)"
    );
    let text = check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt("token-one")),
    )
    .await
    .to_string();
    assert!(
        text.starts_with("digitalocean: create TXT record in zone example.org.: not authorised"),
        "{text}"
    );
    let direct = madmail_libdns_digitalocean::DigitalOcean::new(
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
        standin::error(429, "too_many_requests", "API Rate limit exceeded."),
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-wait".to_string()));
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].method, "POST");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, standin::TOKEN, "retries 1");
    let fault = standin::error(
        500,
        "server_error",
        "Server was unable to give you a response.",
    );
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.append("example.org.", &txt("never")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "digitalocean: create TXT record in zone example.org.: HTTP 500 Internal Server Error: Server was unable to give you a response. (server_error) (gave up after 2 attempts)"
    );
    assert!(!zones.txt_values(NAME).contains(&"never".to_string()));
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
    assert!(api.requests().iter().all(|r| r.method == "GET"));
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
    zones.add("example.org", NAME, "TXT", "vanishing", 60);
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
    assert!(api.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn an_unknown_domain_is_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let record = testing::txt("_acme-challenge.gone.test.", "x", 60);
    let error = provider.append("gone.test.", &record).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "digitalocean: create TXT record in zone gone.test.: HTTP 404 Not Found: The resource you were accessing could not be found. (not_found)"
    );
    let error = provider.append("example.org.", &record).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "digitalocean: create TXT record in zone example.org.: _acme-challenge.gone.test. is not in the zone"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v2").await;
    let provider = provider_block(
        madmail_libdns_digitalocean::register,
        "digitalocean",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable(
        "digitalocean: list domains in zone -",
        provider.zone_for(&format!("{NAME}.")),
    )
    .await;
}

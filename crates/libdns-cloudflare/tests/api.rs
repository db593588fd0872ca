//! `libdns.cloudflare` against a local stand-in of the Cloudflare v4 API (`standin.rs`):
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

fn provider(api: &MockApi, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!(
            "api_token {}\nendpoint {}\n{extra}",
            standin::TOKEN,
            api.url("client/v4")
        ),
    )
    .unwrap()
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 120)
}

const NAME: &str = "_acme-challenge.example.org.";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(provider(&api, "").as_ref(), &zones, Expect::default()).await;
    // Every request carried the token; zones were read 50 a page (122 zones: 3 pages).
    let requests = api.requests();
    assert_every_request_has(
        &requests,
        "authorization",
        &format!("Bearer {}", standin::TOKEN),
    );
    let zone_pages = lines_of(&requests[..3]);
    assert_eq!(
        zone_pages,
        [
            "GET /client/v4/zones?page=1&per_page=50",
            "GET /client/v4/zones?page=2&per_page=50",
            "GET /client/v4/zones?page=3&per_page=50",
        ]
    );
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let zone_id = zones.zone_by_name("example.org").unwrap().id;
    api.take_requests();
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let create = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        create.path,
        format!("/client/v4/zones/{zone_id}/dns_records")
    );
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json(),
        json!({"name": "_acme-challenge.example.org", "ttl": 120, "type": "TXT", "content": "token-one"})
    );

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests[3..]);
    let id = &lines[1];
    assert_eq!(
        lines[0],
        format!(
            "GET /client/v4/zones/{zone_id}/dns_records?type=TXT&content=token-one&name=_acme-challenge.example.org&page=1&per_page=100"
        )
    );
    assert!(
        id.starts_with(&format!(
            "DELETE /client/v4/zones/{zone_id}/dns_records/rec"
        )),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn ttl_is_kept_within_cloudflares_range() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    provider
        .append("example.org.", &testing::txt(NAME, "short", 10))
        .await
        .unwrap();
    let record = zones.txt_record("_acme-challenge.example.org", "short");
    assert_eq!(record.ttl, 60);
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-token";
    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!("api_token {secret}\nendpoint {}", api.url("client/v4")),
    )
    .unwrap();
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    let text = error.to_string();
    assert!(text.starts_with("cloudflare: list zones"), "{text}");
    assert!(text.contains("Authentication error (code 10000)"), "{text}");
    let direct = madmail_libdns_cloudflare::Cloudflare::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("client/v4"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let fault = Response::json(
        429,
        &json!({"success": false, "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}]}),
    );
    // The refused request, repeated, is the first zone listing.
    check_retries_rate_limit(
        &api,
        fault,
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-wait".to_string())
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;

    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!(
            "api_token {}\nendpoint {}\nretries 1",
            standin::TOKEN,
            api.url("client/v4")
        ),
    )
    .unwrap();
    let fault = Response::json(
        500,
        &json!({"success": false, "errors": [{"code": 10001, "message": "service temporarily unavailable"}]}),
    );
    let error = check_gives_up_on_server_errors(&api, fault, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "cloudflare: list zones in zone -: HTTP 500 Internal Server Error: service temporarily unavailable (code 10001) (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn an_identical_record_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("client/v4").await;
    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable("cloudflare: list zones in zone -", provider.zone_for(NAME)).await;
}

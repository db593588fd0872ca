//! `libdns.cloudflare` against a local stand-in of the Cloudflare v4 API (`standin.rs`):
//! the requests it sends, paging, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Response, check_provider, provider_block,
};
use serde_json::json;

async fn standin(zones: &FakeZones) -> MockApi {
    let zones = zones.clone();
    MockApi::start(move |request| standin::handle(&zones, request)).await
}

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
    TxtRecord {
        fqdn: "_acme-challenge.example.org.".into(),
        value: value.into(),
        ttl: Duration::from_secs(120),
    }
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
    check_provider(provider(&api, "").as_ref(), &zones, Expect::default()).await;
    // Every request carried the token; zones were read 50 a page (122 zones: 3 pages).
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {}", standin::TOKEN)))
    );
    let zone_pages: Vec<String> = requests.iter().take(3).map(|r| r.line()).collect();
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
    let api = standin(&zones).await;
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
    let lines: Vec<String> = requests.iter().skip(3).map(|r| r.line()).collect();
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
    let api = standin(&zones).await;
    let provider = provider(&api, "");
    let mut short = txt("short");
    short.ttl = Duration::from_secs(10);
    provider.append("example.org.", &short).await.unwrap();
    let record = zones
        .records_named("_acme-challenge.example.org")
        .into_iter()
        .find(|r| r.value == "short")
        .unwrap();
    assert_eq!(record.ttl, 60);
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!(
            "api_token wrong-secret-token\nendpoint {}",
            api.url("client/v4")
        ),
    )
    .unwrap();
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with("cloudflare: list zones"), "{text}");
    assert!(text.contains("Authentication error (code 10000)"), "{text}");
    assert!(!text.contains("wrong-secret-token"), "{text}");
    let direct = madmail_libdns_cloudflare::Cloudflare::new(
        madmail_libdns_http::Secret::new("wrong-secret-token"),
        &madmail_libdns_http::HttpOptions::with_endpoint(
            madmail_libdns_http::parse_endpoint(&api.url("client/v4")).unwrap(),
        ),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains("wrong-secret-token"));
    // Not retried: one request.
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
    let provider = provider(&api, "");
    api.fail_next(
        1,
        Response::json(429, &json!({"success": false, "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}]}))
            .with_header("retry-after", "1"),
    );
    let started = Instant::now();
    provider
        .append("example.org.", &txt("after-wait"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-wait".to_string())
    );
    // The refused request was repeated: the first two are the same zone listing.
    let requests = api.requests();
    assert_eq!(requests[0].line(), requests[1].line());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
    let provider = provider(&api, "");
    api.fail_next(
        2,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
    );
    provider
        .append("example.org.", &txt("after-errors"))
        .await
        .unwrap();

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
    api.take_requests();
    api.fail_next(2, Response::json(500, &json!({"success": false, "errors": [{"code": 10001, "message": "service temporarily unavailable"}]})));
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cloudflare: list zones in zone -: HTTP 500 Internal Server Error: service temporarily unavailable (code 10001) (gave up after 2 attempts)"
    );
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test]
async fn an_identical_record_is_success() {
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
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
    let zones = FakeZones::standard();
    let api = standin(&zones).await;
    let url = api.url("client/v4");
    drop(api);
    let provider = provider_block(
        madmail_libdns_cloudflare::register,
        "cloudflare",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("cloudflare: list zones in zone -: request failed"),
        "{text}"
    );
}

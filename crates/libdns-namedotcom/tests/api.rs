//! `libdns.namedotcom` against a local stand-in of the name.com API (`standin/mod.rs`): the
//! requests it sends, paging, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Request, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block,
};
use serde_json::json;

fn provider_at(api: &MockApi, path: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        &format!(
            "user {}\ntoken {}\nendpoint {}\n{extra}",
            standin::USER,
            standin::TOKEN,
            api.url(path)
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi, extra: &str) -> Arc<dyn DnsProvider> {
    provider_at(api, "v4", extra)
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 300)
}

const NAME: &str = "_acme-challenge.example.org.";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(
        provider(&api, "").as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 300,
        },
    )
    .await;
    let requests = api.requests();
    let auth = standin::basic_auth();
    assert_every_request_has(&requests, "authorization", &auth);
    // 122 domains at 100 a page: two pages, and the second says nothing of a third.
    assert_eq!(
        lines_of(&requests[..3]),
        [
            "GET /v4/domains?page=1&perPage=100",
            "GET /v4/domains?page=2&perPage=100",
            "GET /v4/domains?page=1&perPage=100",
        ]
    );
    // example.org's 121 records and more are read in two pages when deleting.
    let all = lines_of(&requests);
    assert!(
        all.contains(&"GET /v4/domains/example.org/records?page=2&perPage=100".to_string()),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|l| l.contains("page=3")),
        "no page after the last: {all:?}"
    );
}

#[tokio::test]
async fn the_core_api_works_too() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(
        provider_at(&api, "core/v1", "").as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 300,
        },
    )
    .await;
    let all = api.lines();
    assert_eq!(all[0], "GET /core/v1/domains?page=1&perPage=100");
    assert!(
        all.iter()
            .any(|l| l.starts_with("DELETE /core/v1/domains/example.org/records/"))
    );
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        lines_of(&requests),
        ["POST /v4/domains/example.org/records"]
    );
    let create = &requests[0];
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.header("authorization"),
        Some(standin::basic_auth().as_str())
    );
    assert_eq!(
        create.json(),
        json!({"host": "_acme-challenge", "type": "TXT", "answer": "token-one", "ttl": 300})
    );
    let id = zones
        .txt_record("_acme-challenge.example.org", "token-one")
        .id
        .trim_start_matches("rec")
        .parse::<u64>()
        .unwrap();

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        lines_of(&requests),
        [
            "GET /v4/domains/example.org/records?page=1&perPage=100".to_string(),
            "GET /v4/domains/example.org/records?page=2&perPage=100".to_string(),
            format!("DELETE /v4/domains/example.org/records/{id}"),
        ]
    );
    assert!(requests[2].body.is_empty());
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn the_apex_and_a_delegated_zone() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let apex = testing::txt("sub.example.org.", "apex-value", 300);
    provider.append("sub.example.org.", &apex).await.unwrap();
    let create = api.take_requests().pop().unwrap();
    assert_eq!(create.path, "/v4/domains/sub.example.org/records");
    assert_eq!(create.json()["host"], "");
    assert_eq!(zones.txt_values("sub.example.org"), ["apex-value"]);
    provider.delete("sub.example.org.", &apex).await.unwrap();
    assert!(zones.txt_values("sub.example.org").is_empty());
}

#[tokio::test]
async fn ttl_is_raised_to_the_minimum() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let short = testing::txt(NAME, "short", 60);
    provider.append("example.org.", &short).await.unwrap();
    let record = zones.txt_record("_acme-challenge.example.org", "short");
    assert_eq!(record.ttl, 300);
}

/// A request as the stand-in sees it.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut map = madmail_libdns_http::reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            madmail_libdns_http::reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Request {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: map,
        body: body.to_owned().into_bytes().into(),
    }
}

#[test]
fn the_standin_refuses_what_name_com_refuses() {
    let zones = FakeZones::standard();
    let auth = standin::basic_auth();
    let post = |body: serde_json::Value, json: bool| {
        let mut headers = vec![("authorization", auth.as_str())];
        if json {
            headers.push(("content-type", "application/json"));
        }
        let request = request(
            "POST",
            "/v4/domains/example.org/records",
            &headers,
            &body.to_string(),
        );
        standin::handle(&zones, &request)
    };
    let ok = json!({"host": "x", "type": "TXT", "answer": "v", "ttl": 300});
    assert_eq!(post(ok.clone(), false).status, 403);
    let low = json!({"host": "x", "type": "TXT", "answer": "v", "ttl": 120});
    assert_eq!(post(low, true).status, 400);
    let caa = json!({"host": "x", "type": "CAA", "answer": "0 issue \"x\"", "ttl": 300});
    assert_eq!(post(caa, true).status, 400);
    let absolute = json!({"host": "x.example.org.", "type": "TXT", "answer": "v", "ttl": 300});
    assert_eq!(post(absolute, true).status, 400);
    assert_eq!(post(ok.clone(), true).status, 200);
    assert_eq!(zones.txt_values("x.example.org"), ["v"]);
    let duplicate = post(ok, true);
    assert_eq!(duplicate.status, 400);
    assert_eq!(
        String::from_utf8(duplicate.body).unwrap(),
        r#"{"message":"Parameter Value Error - Record already exists"}"#
    );
    let unauthenticated = standin::handle(
        &zones,
        &request("GET", "/v4/domains", &[("authorization", "Basic eDp5")], ""),
    );
    assert_eq!(unauthenticated.status, 401);
    let unknown = standin::handle(
        &zones,
        &request(
            "DELETE",
            "/v4/domains/example.org/records/999999",
            &[("authorization", auth.as_str())],
            "",
        ),
    );
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-token";
    let provider = provider_block(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        &format!(
            "user {}\ntoken {secret}\nendpoint {}",
            standin::USER,
            api.url("v4")
        ),
    )
    .unwrap();
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "namedotcom: list domains in zone -: not authorised: HTTP 401 Unauthorized: Unauthorized"
    );
    check_refused_credentials(&api, secret, provider.append("example.org.", &txt("x"))).await;
    let direct = madmail_libdns_namedotcom::NameDotCom::new(
        "someone",
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("v4"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let fault = Response::json(429, &json!({"message": "Too Many Requests"}))
        .with_header("x-ratelimit-reset", "1900000000");
    let sent = check_retries_rate_limit(
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
    assert_eq!(
        lines_of(&sent),
        [
            "POST /v4/domains/example.org/records",
            "POST /v4/domains/example.org/records"
        ]
    );
    assert_eq!(sent[0].body, sent[1].body);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let sent = check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(sent.len(), 3);

    let provider = self::provider(&api, "retries 1");
    let fault = Response::json(
        500,
        &json!({"message": "Internal Server Error", "details": "backend unavailable"}),
    );
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.append("example.org.", &txt("never")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "namedotcom: create TXT record in zone example.org.: HTTP 500 Internal Server Error: Internal Server Error (backend unavailable) (gave up after 2 attempts)"
    );
    assert!(
        !zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"never".to_string())
    );
}

#[tokio::test]
async fn an_existing_record_is_success() {
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
    // The API refused the duplicate; the listing confirmed the value is there.
    assert_eq!(
        api.lines(),
        [
            "POST /v4/domains/example.org/records",
            "GET /v4/domains/example.org/records?page=1&perPage=100",
            "GET /v4/domains/example.org/records?page=2&perPage=100",
        ]
    );
}

#[tokio::test]
async fn another_refusal_is_an_error() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"message": "Invalid Argument", "details": "answer too long"}),
        ),
    );
    let error = provider
        .append("example.org.", &txt("refused"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "namedotcom: create TXT record in zone example.org.: HTTP 400 Bad Request: Invalid Argument (answer too long)"
    );
}

#[tokio::test]
async fn deleting_what_is_gone_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    // Never there: nothing to delete.
    provider
        .delete("example.org.", &txt("never-added"))
        .await
        .unwrap();
    assert!(api.requests().iter().all(|r| r.method == "GET"));

    // Deleted by someone else between the listing and the DELETE: the API answers 404.
    let zones = FakeZones::standard();
    let target = zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "racing",
        300,
    );
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.method == "DELETE" {
            shared.remove(&target.id);
        }
        standin::handle(&shared, request)
    })
    .await;
    let provider = self::provider(&api, "");
    provider
        .delete("example.org.", &txt("racing"))
        .await
        .unwrap();
    let deletes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_name_outside_the_zone_is_refused() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let error = provider
        .append("sub.example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "namedotcom: create TXT record in zone sub.example.org.: _acme-challenge.example.org. is not in the zone"
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v4").await;
    let provider = provider_block(
        madmail_libdns_namedotcom::register,
        "namedotcom",
        &format!(
            "user {}\ntoken {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::USER,
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable(
        "namedotcom: list domains in zone -",
        provider.zone_for(NAME),
    )
    .await;
}

//! `libdns.porkbun` against a local stand-in of the Porkbun v3 JSON API (`standin/mod.rs`):
//! the requests it sends, the chunked domain listing, and the documented error replies
//! (with HTTP 400 and with 200).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Request, Response, check_gives_up_on_server_errors,
    check_provider, check_refused_credentials, check_retries_rate_limit,
    check_retries_server_errors, check_unreachable, closed_endpoint, lines_of, provider_block,
};
use serde_json::json;

fn provider_with(api: &MockApi, api_key: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_porkbun::register,
        "porkbun",
        &format!(
            "api_key {api_key}\napi_secret_key {}\nendpoint {}\n{extra}",
            standin::SECRET_KEY,
            api.url("api/json/v3")
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi, extra: &str) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::API_KEY, extra)
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 600)
}

const NAME: &str = "_acme-challenge.example.org.";

/// The body without the key pair, after checking the pair is in it.
fn fields(request: &Request) -> serde_json::Value {
    let mut body = request.json();
    assert_eq!(body["apikey"], standin::API_KEY, "{}", request.line());
    assert_eq!(
        body["secretapikey"],
        standin::SECRET_KEY,
        "{}",
        request.line()
    );
    let object = body.as_object_mut().unwrap();
    object.remove("apikey");
    object.remove("secretapikey");
    body
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_provider(
        provider(&api, "").as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 600,
        },
    )
    .await;
    let requests = api.requests();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/json"));
        fields(request);
    }
    // 122 domains: one chunk, then an empty one ends the listing.
    assert_eq!(
        lines_of(&requests[..2]),
        [
            "POST /api/json/v3/domain/listAll",
            "POST /api/json/v3/domain/listAll"
        ]
    );
    assert_eq!(
        fields(&requests[0]),
        json!({"start": "0", "includeLabels": "no"})
    );
    assert_eq!(
        fields(&requests[1]),
        json!({"start": "122", "includeLabels": "no"})
    );
}

#[tokio::test]
async fn domains_are_listed_in_chunks_of_1000() {
    let zones = FakeZones::new();
    for i in 0..2100 {
        zones.add_zone(&format!("d{i:04}.test"));
    }
    zones.add_zone("example.org");
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.mail.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    let starts: Vec<serde_json::Value> = api
        .requests()
        .iter()
        .map(|r| fields(r)["start"].clone())
        .collect();
    assert_eq!(
        starts,
        [json!("0"), json!("1000"), json!("2000"), json!("2101")]
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
        [
            "POST /api/json/v3/dns/retrieveByNameType/example.org/TXT/_acme-challenge",
            "POST /api/json/v3/dns/create/example.org",
        ]
    );
    assert_eq!(fields(&requests[0]), json!({}));
    assert_eq!(
        fields(&requests[1]),
        json!({"name": "_acme-challenge", "type": "TXT", "content": "token-one", "ttl": "600"})
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
            "POST /api/json/v3/dns/retrieveByNameType/example.org/TXT/_acme-challenge".to_string(),
            format!("POST /api/json/v3/dns/delete/example.org/{id}"),
        ]
    );
    assert_eq!(fields(&requests[1]), json!({}));
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn the_apex_has_no_subdomain() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let apex = testing::txt("sub.example.org.", "apex-value", 600);
    provider.append("sub.example.org.", &apex).await.unwrap();
    let requests = api.take_requests();
    assert_eq!(
        lines_of(&requests),
        [
            "POST /api/json/v3/dns/retrieveByNameType/sub.example.org/TXT",
            "POST /api/json/v3/dns/create/sub.example.org",
        ]
    );
    assert_eq!(fields(&requests[1])["name"], "");
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
    assert_eq!(record.ttl, 600);
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, &format!("pk1_{secret}"), "");
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "porkbun: list domains in zone -: not authorised: HTTP 400 Bad Request: Invalid API key. (001)"
    );
    let error =
        check_refused_credentials(&api, secret, provider.append("example.org.", &txt("x"))).await;
    assert!(!error.to_string().contains(standin::SECRET_KEY));
    let direct = madmail_libdns_porkbun::Porkbun::new(
        madmail_libdns_http::Secret::new(format!("pk1_{secret}")),
        madmail_libdns_http::Secret::new(standin::SECRET_KEY),
        &api.http_options("api/json/v3"),
    )
    .unwrap();
    let debug = format!("{direct:?}");
    assert!(!debug.contains(secret) && !debug.contains(standin::SECRET_KEY));
}

#[tokio::test]
async fn errors_with_http_200_are_errors() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"status": "ERROR", "message": "Invalid API key. (001)"}),
        ),
    );
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert_eq!(
        error,
        DnsError::Unauthorized {
            provider: "porkbun".into(),
            zone: "-".into(),
            operation: "list domains".into(),
            message: "Invalid API key. (001)".into(),
        }
    );

    api.fail_next(
        1,
        Response::json(
            200,
            &json!({"status": "ERROR", "message": "Something broke."}),
        ),
    );
    let error = provider
        .delete("example.org.", &txt("pre-existing"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "porkbun: list records in zone example.org.: Something broke."
    );
    api.fail_next(1, Response::json(200, &json!({"records": []})));
    let error = provider
        .delete("example.org.", &txt("pre-existing"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "porkbun: list records in zone example.org.: status \"\" without a message"
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_domain_without_api_access_is_unauthorized() {
    let zones = FakeZones::standard();
    zones.add_zone("noapi.test");
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let record = testing::txt("_acme-challenge.noapi.test.", "x", 600);
    let error = provider.append("noapi.test.", &record).await.unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "porkbun: list records in zone noapi.test.: not authorised: HTTP 400 Bad Request: Domain is not opted in to API access."
    );
}

#[tokio::test]
async fn a_zone_not_in_the_account_is_an_error() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let record = testing::txt("_acme-challenge.other.test.", "x", 600);
    let error = provider.append("other.test.", &record).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "porkbun: list records in zone other.test.: HTTP 400 Bad Request: Invalid domain."
    );
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let fault = Response::json(
        429,
        &json!({"status": "ERROR", "message": "Rate limit exceeded."}),
    );
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
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(sent.len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    // Porkbun's 503s are openresty HTML pages.
    let fault = Response::text(
        503,
        "text/html",
        "<html><head><title>503 Service Temporarily Unavailable</title></head></html>",
    );
    let sent = check_retries_server_errors(
        &api,
        fault,
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(sent.len(), 4);

    let provider = self::provider(&api, "retries 1");
    let fault = Response::json(
        500,
        &json!({"status": "ERROR", "message": "Internal error."}),
    );
    let error = check_gives_up_on_server_errors(&api, fault, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "porkbun: list domains in zone -: HTTP 500 Internal Server Error: Internal error. (gave up after 2 attempts)"
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
    // Found, not created again.
    assert_eq!(
        api.lines(),
        ["POST /api/json/v3/dns/retrieveByNameType/example.org/TXT/_acme-challenge"]
    );

    // Created meanwhile by someone else, and the API refuses the create: still success.
    let zones = FakeZones::standard();
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.path.ends_with("/dns/create/example.org") {
            shared.add(
                "example.org",
                "_acme-challenge.example.org",
                "TXT",
                "racing",
                600,
            );
            return standin::error("Could not add the record.");
        }
        standin::handle(&shared, request)
    })
    .await;
    let provider = self::provider(&api, "");
    provider
        .append("example.org.", &txt("racing"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing", "racing"]
    );
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn a_refused_create_is_an_error() {
    let zones = FakeZones::standard();
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.path.ends_with("/dns/create/example.org") {
            return standin::error("Could not add the record.");
        }
        standin::handle(&shared, request)
    })
    .await;
    let provider = provider(&api, "");
    let error = provider
        .append("example.org.", &txt("refused"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "porkbun: create TXT record in zone example.org.: HTTP 400 Bad Request: Could not add the record."
    );
}

#[tokio::test]
async fn deleting_what_is_gone_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    provider
        .delete("example.org.", &txt("never-added"))
        .await
        .unwrap();
    assert_eq!(
        api.lines(),
        ["POST /api/json/v3/dns/retrieveByNameType/example.org/TXT/_acme-challenge"]
    );

    // Deleted by someone else between the listing and the delete: the API refuses the id.
    let zones = FakeZones::standard();
    let target = zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "racing",
        600,
    );
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.path.contains("/dns/delete/") {
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
    assert_eq!(api.requests().len(), 3);
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_refused_delete_of_a_present_record_is_an_error() {
    let zones = FakeZones::standard();
    zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "stuck",
        600,
    );
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.path.contains("/dns/delete/") {
            return standin::error("Could not delete the record.");
        }
        standin::handle(&shared, request)
    })
    .await;
    let provider = provider(&api, "");
    let error = provider
        .delete("example.org.", &txt("stuck"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "porkbun: delete TXT record in zone example.org.: HTTP 400 Bad Request: Could not delete the record."
    );
}

#[test]
fn the_standin_refuses_what_porkbun_refuses() {
    let zones = FakeZones::standard();
    let post = |path: &str, body: serde_json::Value| {
        let request = Request {
            method: "POST".into(),
            path: format!("{}{path}", standin::PREFIX),
            query: None,
            headers: Default::default(),
            body: body.to_string().into_bytes().into(),
        };
        standin::handle(&zones, &request)
    };
    let keys = |mut fields: serde_json::Value| {
        fields["apikey"] = json!(standin::API_KEY);
        fields["secretapikey"] = json!(standin::SECRET_KEY);
        fields
    };
    assert_eq!(post("ping", json!({})).status, 400);
    assert_eq!(post("ping", keys(json!({}))).status, 200);
    let low = keys(json!({"name": "x", "type": "TXT", "content": "v", "ttl": "300"}));
    assert_eq!(post("dns/create/example.org", low).status, 400);
    let bad_type = keys(json!({"name": "x", "type": "BOGUS", "content": "v"}));
    assert_eq!(post("dns/create/example.org", bad_type).status, 400);
    let sub_domain = keys(json!({"name": "x", "type": "TXT", "content": "v"}));
    let refused = post("dns/create/www.example.org", sub_domain.clone());
    assert_eq!(
        String::from_utf8(refused.body).unwrap(),
        r#"{"message":"Invalid domain.","status":"ERROR"}"#
    );
    let created = post("dns/create/example.org", sub_domain);
    assert_eq!(created.status, 200);
    let reply: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    assert!(reply["id"].is_u64(), "{reply}");
    assert_eq!(zones.txt_values("x.example.org"), ["v"]);
    assert_eq!(
        post("dns/delete/example.org/999999", keys(json!({}))).status,
        400
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("api/json/v3").await;
    let provider = provider_block(
        madmail_libdns_porkbun::register,
        "porkbun",
        &format!(
            "api_key {}\napi_secret_key {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::API_KEY,
            standin::SECRET_KEY
        ),
    )
    .unwrap();
    check_unreachable("porkbun: list domains in zone -", provider.zone_for(NAME)).await;
}

//! `libdns.linode` against a local stand-in of the Linode API v4 (`standin/`): the requests it
//! sends (with their `X-Filter` headers), paging, TTL rounding, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Request, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block,
};
use serde_json::{Value, json};

const NAME: &str = "_acme-challenge.example.org";
const DOMAINS: &str = "GET /v4/domains?page=1&page_size=500";

fn provider_with(api: &MockApi, token: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_linode::register,
        "linode",
        &format!("api_token {token}\nendpoint {}\n{extra}", api.url("v4")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::TOKEN, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(&format!("{NAME}."), value, 300)
}

fn bearer() -> String {
    format!("Bearer {}", standin::TOKEN)
}

fn x_filter(request: &Request) -> Value {
    serde_json::from_str(request.header("x-filter").expect("an X-Filter header")).unwrap()
}

/// The id of `example.org` at the stand-in, and the record listing of that domain.
fn example_org(zones: &FakeZones) -> (u64, String) {
    let id = standin::domain_id(&zones.zone_by_name("example.org").unwrap());
    (
        id,
        format!("GET /v4/domains/{id}/records?page=1&page_size=500"),
    )
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
            ttl: 300,
        },
    )
    .await;
    let requests = api.requests();
    assert_every_request_has(&requests, "authorization", &bearer());
    // 122 domains fit in one page of 500; the zone listing is not filtered.
    assert_eq!(requests[0].line(), DOMAINS);
    assert_eq!(requests[0].header("x-filter"), None);
    assert_ne!(requests[1].line(), "GET /v4/domains?page=2&page_size=500");
}

#[tokio::test]
async fn listings_are_paged() {
    let zones = FakeZones::standard();
    for i in 0..600 {
        zones.add_zone(&format!("more{i:03}.test"));
    }
    for i in 0..510 {
        zones.add("example.org", NAME, "TXT", &format!("other-{i:03}"), 300);
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
    assert_eq!(lines, [DOMAINS, "GET /v4/domains?page=2&page_size=500"]);

    provider
        .delete("example.org.", &txt("last-one"))
        .await
        .unwrap();
    let (id, records) = example_org(&zones);
    let lines = api.take_lines();
    assert_eq!(
        lines,
        [
            DOMAINS.to_string(),
            records.clone(),
            records.replace("page=1", "page=2"),
            format!(
                "DELETE /v4/domains/{id}/records/{}",
                standin::record_id(&last)
            ),
        ]
    );
    let values = zones.txt_values(NAME);
    assert_eq!(values.len(), 511);
    assert!(!values.contains(&"last-one".to_string()));
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let (id, records) = example_org(&zones);
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    let create_line = format!("POST /v4/domains/{id}/records");
    assert_eq!(lines, [DOMAINS, &records, &create_line]);
    assert_eq!(x_filter(&requests[0]), json!({"domain": "example.org"}));
    assert_eq!(
        x_filter(&requests[1]),
        json!({"name": "_acme-challenge", "type": "TXT"})
    );
    let create = &requests[2];
    assert_eq!(create.header("authorization"), Some(bearer().as_str()));
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json(),
        json!({"type": "TXT", "name": "_acme-challenge", "target": "token-one", "ttl_sec": 300})
    );
    let created = zones.txt_record(NAME, "token-one");
    assert_eq!((created.ttl, created.zone.as_str()), (300, "example.org"));

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let lines = lines_of(&requests);
    assert_eq!(
        lines,
        [
            DOMAINS.to_string(),
            records,
            format!(
                "DELETE /v4/domains/{id}/records/{}",
                standin::record_id(&created)
            ),
        ]
    );
    assert_eq!(requests[2].header("authorization"), Some(bearer().as_str()));
    assert!(requests[2].body.is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn the_apex_has_an_empty_name() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let apex = testing::txt("example.org.", "at-apex", 300);
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
async fn linode_rounds_the_ttl_up() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    for (asked, sent) in [(60, 60), (0, 30)] {
        let record = testing::txt(&format!("{NAME}."), &format!("ttl-{asked}"), asked);
        provider.append("example.org.", &record).await.unwrap();
        let create = api
            .take_requests()
            .into_iter()
            .find(|r| r.method == "POST")
            .unwrap();
        assert_eq!(create.json()["ttl_sec"], sent);
        let stored = zones.txt_record(NAME, &record.value);
        assert_eq!(stored.ttl, standin::rounded_ttl(sent));
    }
    assert_eq!(standin::rounded_ttl(60), 120);
    assert_eq!(standin::rounded_ttl(30), 30);
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
        "linode: list domains in zone -: not authorised: HTTP 401 Unauthorized: Invalid Token"
    );
    let text = check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt("token-one")),
    )
    .await
    .to_string();
    assert!(
        text.starts_with("linode: create TXT record in zone example.org.: not authorised"),
        "{text}"
    );
    let direct = madmail_libdns_linode::Linode::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("v4"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn a_token_without_the_scope_is_unauthorized() {
    let zones = FakeZones::standard();
    // A read-only token: listings work, the create is refused.
    let api = MockApi::start({
        let zones = zones.clone();
        move |request| {
            if request.method == "GET" {
                standin::handle(&zones, request)
            } else {
                standin::error(403, None, "Unauthorized")
            }
        }
    })
    .await;
    let error = provider(&api)
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "linode: create TXT record in zone example.org.: not authorised: HTTP 403 Forbidden: Unauthorized"
    );
    assert_eq!(
        api.requests().iter().filter(|r| r.method == "POST").count(),
        1
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let sent = check_retries_rate_limit(
        &api,
        standin::error(429, None, "Too Many Requests"),
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-wait".to_string()));
    let lines = lines_of(&sent);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], DOMAINS);
    assert!(lines[3].starts_with("POST "), "{lines:?}");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad Gateway</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));

    let provider = provider_with(&api, standin::TOKEN, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        standin::error(500, None, "Internal Server Error"),
        provider.append("example.org.", &txt("never")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "linode: create TXT record in zone example.org.: HTTP 500 Internal Server Error: Internal Server Error (gave up after 2 attempts)"
    );
    assert!(!zones.txt_values(NAME).contains(&"never".to_string()));
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let zones = FakeZones::standard();
    // A stand-in refusing every create with a field error.
    let api = MockApi::start({
        let zones = zones.clone();
        move |request| {
            if request.method == "POST" {
                standin::error(400, Some("target"), "Invalid TXT target")
            } else {
                standin::handle(&zones, request)
            }
        }
    })
    .await;
    let error = provider(&api)
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "linode: create TXT record in zone example.org.: HTTP 400 Bad Request: target: Invalid TXT target"
    );
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
    zones.add("example.org", NAME, "TXT", "vanishing", 300);
    provider
        .delete("example.org.", &txt("vanishing"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].method, "DELETE");
    // Never there at all: nothing to delete.
    provider
        .delete("example.org.", &txt("never-there"))
        .await
        .unwrap();
    assert!(api.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn an_unknown_domain_is_no_zone() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let record = testing::txt("_acme-challenge.gone.test.", "x", 300);
    let error = provider.append("gone.test.", &record).await.unwrap_err();
    assert_eq!(error.to_string(), "linode: no zone found for gone.test.");
    let error = provider.append("example.org.", &record).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "linode: create TXT record in zone example.org.: _acme-challenge.gone.test. is not in the zone"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("v4").await;
    let provider = provider_block(
        madmail_libdns_linode::register,
        "linode",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable(
        "linode: list domains in zone -",
        provider.zone_for(&format!("{NAME}.")),
    )
    .await;
}

//! `libdns.ovh` against a local stand-in of the OVHcloud API (`standin/mod.rs`): signed
//! requests on OVH's clock, zone discovery with and without the right to list zones, the
//! record calls and the refresh that publishes them, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Response, assert_every_request_has,
    check_gives_up_on_server_errors, check_provider, check_retries_rate_limit,
    check_retries_server_errors, check_unreachable, closed_endpoint, lines_of, provider_block,
};
use serde_json::json;

fn provider_with(api: &MockApi, consumer_key: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_ovh::register,
        "ovh",
        &format!(
            "endpoint {}\napplication_key {}\napplication_secret {}\nconsumer_key {consumer_key}\n{extra}",
            api.url("1.0"),
            standin::APPLICATION_KEY,
            standin::APPLICATION_SECRET,
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::CONSUMER_KEY, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 120)
}

const NAME: &str = "_acme-challenge.example.org.";

/// The id OVH shows for the TXT record of `_acme-challenge.example.org` with this value.
fn id_of(zones: &FakeZones, value: &str) -> u64 {
    let record = zones.txt_record("_acme-challenge.example.org", value);
    standin::record_id(&record)
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    check_provider(provider(&api).as_ref(), &zones, Expect::default()).await;
    let requests = api.requests();
    // OVH's clock was asked once, then every call was signed with the consumer key.
    assert_eq!(requests[0].line(), "GET /1.0/auth/time");
    assert_eq!(requests[1].line(), "GET /1.0/domain/zone");
    assert_every_request_has(
        &requests[1..],
        "x-ovh-application",
        standin::APPLICATION_KEY,
    );
    assert_every_request_has(&requests[1..], "x-ovh-consumer", standin::CONSUMER_KEY);
    for request in &requests[1..] {
        assert!(
            request
                .header("x-ovh-signature")
                .unwrap()
                .starts_with("$1$")
        );
    }
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path == "/1.0/auth/time")
            .count(),
        1
    );
    // Every change was published.
    assert!(ovh.unpublished().is_empty(), "{:?}", ovh.unpublished());
    assert!(
        requests
            .iter()
            .any(|r| r.line() == "POST /1.0/domain/zone/sub.example.org/refresh")
    );
}

#[tokio::test]
async fn without_the_right_to_list_zones_they_are_probed() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider_with(&api, standin::RECORDS_ONLY_KEY, "");
    check_provider(provider.as_ref(), &zones, Expect::default()).await;
    assert!(ovh.unpublished().is_empty());

    api.take_requests();
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.sub.example.org.")
            .await
            .unwrap(),
        "sub.example.org."
    );
    assert_eq!(
        api.take_lines(),
        [
            "GET /1.0/domain/zone",
            "GET /1.0/domain/zone/a.sub.example.org/record?fieldType=TXT&subDomain=_acme-challenge",
            "GET /1.0/domain/zone/sub.example.org/record?fieldType=TXT&subDomain=_acme-challenge.a",
        ]
    );
}

#[tokio::test]
async fn rules_naming_one_zone_find_that_zone_only() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider_with(&api, standin::EXAMPLE_ORG_KEY, "");
    // sub.example.org is not granted: skipped for example.org.
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.sub.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    provider
        .append("example.org.", &txt("scoped"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing", "scoped"]
    );
    // Nothing of another zone is readable: the refusal, not "no zone".
    let error = provider
        .zone_for("_acme-challenge.filler001.test.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "ovh: list zones in zone -: not authorised: HTTP 403 Forbidden: This call has not been granted (NOT_GRANTED_CALL)"
    );
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    let pre_existing = id_of(&zones, "pre-existing");
    let mut mail = txt("token-one");
    mail.fqdn = "_acme-challenge.mail.example.org.".into();
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let new = id_of(&zones, "token-one");
    assert_eq!(
        lines_of(&requests),
        [
            "GET /1.0/auth/time".to_string(),
            "GET /1.0/domain/zone/example.org/record?fieldType=TXT&subDomain=_acme-challenge"
                .into(),
            format!("GET /1.0/domain/zone/example.org/record/{pre_existing}"),
            "POST /1.0/domain/zone/example.org/record".into(),
            "POST /1.0/domain/zone/example.org/refresh".into(),
        ]
    );
    let create = &requests[3];
    assert_eq!(
        create.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(
        std::str::from_utf8(&create.body).unwrap(),
        r#"{"fieldType":"TXT","subDomain":"_acme-challenge","target":"token-one","ttl":120}"#
    );
    // Signed with OVH's clock, which runs ahead of ours.
    let timestamp: i64 = create.header("x-ovh-timestamp").unwrap().parse().unwrap();
    assert!(
        (timestamp - standin::server_time()).abs() <= 5,
        "{timestamp}"
    );
    let url = format!("http://{}/1.0/domain/zone/example.org/record", api.addr());
    assert_eq!(
        create.header("x-ovh-signature").unwrap(),
        standin::signature(
            standin::CONSUMER_KEY,
            "POST",
            &url,
            &create.body,
            &timestamp.to_string()
        )
    );
    assert!(requests[4].body.is_empty());

    provider.append("example.org.", &mail).await.unwrap();
    let create = api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/record"))
        .unwrap();
    assert_eq!(create.json()["subDomain"], json!("_acme-challenge.mail"));

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        lines_of(&requests),
        [
            "GET /1.0/domain/zone/example.org/record?fieldType=TXT&subDomain=_acme-challenge"
                .to_string(),
            format!("GET /1.0/domain/zone/example.org/record/{pre_existing}"),
            format!("GET /1.0/domain/zone/example.org/record/{new}"),
            format!("DELETE /1.0/domain/zone/example.org/record/{new}"),
            "POST /1.0/domain/zone/example.org/refresh".into(),
        ]
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
    assert!(ovh.unpublished().is_empty());
}

#[tokio::test]
async fn an_existing_value_is_not_added_twice() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
    assert!(
        !api.requests()
            .iter()
            .any(|r| r.line() == "POST /1.0/domain/zone/example.org/record")
    );
}

#[tokio::test]
async fn a_record_gone_meanwhile_is_deleted() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    // Another client removes the record between its lookup and its deletion.
    let racing = ovh.clone();
    let api = MockApi::start(move |request| {
        if request.method == "DELETE" {
            let id = request
                .path
                .rsplit('/')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            let record = racing
                .zones
                .records()
                .into_iter()
                .find(|r| standin::record_id(r) == id)
                .unwrap();
            racing.zones.remove(&record.id);
        }
        standin::handle(&racing, request)
    })
    .await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("racing"))
        .await
        .unwrap();
    provider
        .delete("example.org.", &txt("racing"))
        .await
        .unwrap();
    let requests = api.requests();
    let delete = requests.iter().position(|r| r.method == "DELETE").unwrap();
    assert_eq!(requests.len(), delete + 2, "refreshed after the 404");
    // A value that was never there: no deletion, no refresh.
    api.take_requests();
    provider
        .delete("example.org.", &txt("never"))
        .await
        .unwrap();
    assert!(api.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn ttl_is_at_least_a_minute() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    let short = testing::txt(NAME, "short", 10);
    provider.append("example.org.", &short).await.unwrap();
    let record = zones.txt_record("_acme-challenge.example.org", "short");
    assert_eq!(record.ttl, 60);
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let wrong_secret = provider_block(
        madmail_libdns_ovh::register,
        "ovh",
        &format!(
            "endpoint {}\napplication_key {}\napplication_secret wrong-application-secret\nconsumer_key {}",
            api.url("1.0"),
            standin::APPLICATION_KEY,
            standin::CONSUMER_KEY,
        ),
    )
    .unwrap();
    let error = wrong_secret
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "ovh: list zones in zone -: not authorised: HTTP 400 Bad Request: Invalid signature (INVALID_SIGNATURE)"
    );
    // Not retried: the clock, then one call.
    assert_eq!(api.take_requests().len(), 2);

    let unknown_key = provider_with(&api, "wrong-consumer-key", "");
    let error = unknown_key
        .append("example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    let text = error.to_string();
    assert_eq!(
        text,
        "ovh: create TXT record in zone example.org.: not authorised: HTTP 403 Forbidden: This credential does not exist (NOT_CREDENTIAL)"
    );
    assert!(!text.contains("wrong-consumer-key"));

    let direct = madmail_libdns_ovh::Ovh::new(
        madmail_libdns_ovh::Credentials {
            application_key: madmail_libdns_http::Secret::new("ak-1"),
            application_secret: madmail_libdns_http::Secret::new("the-application-secret"),
            consumer_key: madmail_libdns_http::Secret::new("the-consumer-key"),
        },
        &api.http_options("1.0"),
    )
    .unwrap();
    let debug = format!("{direct:?}");
    assert!(!debug.contains("the-application-secret"), "{debug}");
    assert!(!debug.contains("the-consumer-key"), "{debug}");
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    provider.zone_for("example.org.").await.unwrap();
    let fault = Response::json(
        429,
        &json!({"errorCode": "QUERY_LIMIT_REACHED", "httpCode": "429 Too Many Requests", "message": "Query limit reached"}),
    );
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
    // The repeated request was signed again, and accepted.
    assert!(ovh.unpublished().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(503, "text/html", "<html>Service unavailable</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-errors".to_string())
    );

    let provider = provider_with(&api, standin::CONSUMER_KEY, "retries 1");
    provider.zone_for("example.org.").await.unwrap();
    let fault = Response::json(
        500,
        &json!({"class": "Server::InternalServerError", "message": "Internal server error"}),
    );
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.delete("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "ovh: delete TXT record in zone example.org.: HTTP 500 Internal Server Error: Internal server error (Server::InternalServerError) (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn a_zone_the_account_lacks() {
    let zones = FakeZones::standard();
    let ovh = standin::Ovh::new(&zones);
    let api = MockApi::serving(&ovh, standin::handle).await;
    let provider = provider(&api);
    let mut other = txt("x");
    other.fqdn = "_acme-challenge.example.net.".into();
    let error = provider.append("example.net.", &other).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "ovh: create TXT record in zone example.net.: HTTP 404 Not Found: This service does not exist (Client::NotFound)"
    );
    let error = provider.append("example.org.", &other).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "ovh: create TXT record in zone example.org.: _acme-challenge.example.net. is not in the zone"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("1.0").await;
    let provider = provider_block(
        madmail_libdns_ovh::register,
        "ovh",
        &format!(
            "endpoint {url}\napplication_key a\napplication_secret b\nconsumer_key c\nretries 0\ntimeout 2s"
        ),
    )
    .unwrap();
    check_unreachable("ovh: list zones in zone -", provider.zone_for(NAME)).await;
}

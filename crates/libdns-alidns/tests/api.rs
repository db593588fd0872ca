//! `libdns.alidns` against a local stand-in of Alibaba Cloud DNS's RPC API
//! (`standin/mod.rs`): signed form requests, paging, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use madmail_dns::{DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Request, Response, check_gives_up_on_server_errors,
    check_provider, check_refused_credentials, check_retries_rate_limit,
    check_retries_server_errors, check_unreachable, closed_endpoint, provider_block,
};
use serde_json::json;

fn provider_with(
    api: &MockApi,
    key_id: &str,
    key_secret: &str,
    extra: &str,
) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_alidns::register,
        "alidns",
        &format!(
            "key_id {key_id}\nkey_secret {key_secret}\nendpoint {}\n{extra}",
            api.url("")
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::KEY_ID, standin::KEY_SECRET, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 600)
}

const NAME: &str = "_acme-challenge.example.org.";

/// The request's parameters without those that change with each request.
fn stable_params(request: &Request) -> BTreeMap<String, String> {
    let mut params = standin::params(request);
    for name in ["SignatureNonce", "Timestamp", "Signature"] {
        assert!(params.remove(name).is_some(), "{name} missing");
    }
    params
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = [
        ("AccessKeyId", standin::KEY_ID),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2015-01-09"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    params.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    params
}

fn action(request: &Request) -> String {
    standin::params(request)["Action"].clone()
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    check_provider(
        provider(&api).as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 600,
        },
    )
    .await;
    let requests = api.requests();
    assert!(requests.iter().all(|r| r.line() == "POST /"));
    // 122 domains, 100 a page: two pages.
    assert_eq!(
        stable_params(&requests[0]),
        expected(&[
            ("Action", "DescribeDomains"),
            ("PageNumber", "1"),
            ("PageSize", "100")
        ])
    );
    assert_eq!(
        stable_params(&requests[1]),
        expected(&[
            ("Action", "DescribeDomains"),
            ("PageNumber", "2"),
            ("PageSize", "100")
        ])
    );
    assert_eq!(action(&requests[2]), "DescribeDomains");
    // The form is the canonical query (sorted, RFC 3986 encoded) followed by the signature.
    let body = std::str::from_utf8(&requests[0].body).unwrap();
    assert!(body.starts_with("AccessKeyId=LTAI5tStandInKeyId&Action=DescribeDomains&Format=JSON&PageNumber=1&PageSize=100&SignatureMethod=HMAC-SHA1&SignatureNonce="), "{body}");
    assert!(
        body.contains("&Timestamp=20") && body.contains("%3A"),
        "{body}"
    );
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        stable_params(&requests[0]),
        expected(&[
            ("Action", "AddDomainRecord"),
            ("DomainName", "example.org"),
            ("RR", "_acme-challenge"),
            ("TTL", "600"),
            ("Type", "TXT"),
            ("Value", "token-one"),
        ])
    );
    let id = standin::record_id(&zones.txt_record("_acme-challenge.example.org", "token-one"));

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        stable_params(&requests[0]),
        expected(&[
            ("Action", "DescribeDomainRecords"),
            ("DomainName", "example.org"),
            ("PageNumber", "1"),
            ("PageSize", "500"),
            ("RRKeyWord", "_acme-challenge"),
            ("SearchMode", "COMBINATION"),
            ("TypeKeyWord", "TXT"),
        ])
    );
    assert_eq!(
        stable_params(&requests[1]),
        expected(&[("Action", "DeleteDomainRecord"), ("RecordId", &id)])
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn the_apex_is_at_and_ttls_are_clamped() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    let apex = testing::txt("Example.org.", "apex", 60);
    provider.append("example.org.", &apex).await.unwrap();
    assert_eq!(standin::params(&api.take_requests()[0])["RR"], "@");
    let record = zones.txt_record("example.org", "apex");
    assert_eq!(record.ttl, 600);
    let long = testing::txt(NAME, "long", 7 * 86_400);
    provider.append("example.org.", &long).await.unwrap();
    assert_eq!(standin::params(&api.take_requests()[0])["TTL"], "86400");
    provider.delete("example.org.", &apex).await.unwrap();
    assert!(zones.records_named("example.org").is_empty());
}

#[tokio::test]
async fn records_are_read_page_by_page() {
    let zones = FakeZones::standard();
    // 600 other challenge names match the fuzzy RR keyword before the value looked for.
    for i in 0..600 {
        zones.add(
            "example.org",
            &format!("_acme-challenge.host{i:03}.example.org"),
            "TXT",
            "other",
            600,
        );
    }
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    provider.append("example.org.", &txt("last")).await.unwrap();
    api.take_requests();
    provider.delete("example.org.", &txt("last")).await.unwrap();
    let requests = api.take_requests();
    let pages: Vec<String> = requests
        .iter()
        .filter(|r| action(r) == "DescribeDomainRecords")
        .map(|r| standin::params(r)["PageNumber"].clone())
        .collect();
    assert_eq!(pages, ["1", "2"]);
    assert_eq!(action(requests.last().unwrap()), "DeleteDomainRecord");
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
    assert_eq!(zones.records_in("example.org").len(), 120 + 1 + 600);
}

#[tokio::test]
async fn refused_keys_are_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let secret = "wrong-key-secret";
    let wrong_secret = provider_with(&api, standin::KEY_ID, secret, "");
    let error = check_refused_credentials(&api, secret, wrong_secret.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "alidns: list zones in zone -: not authorised: HTTP 400 Bad Request: Specified signature is not matched with our calculation. (SignatureDoesNotMatch)"
    );

    let unknown = provider_with(&api, "LTAI-unknown-key", secret, "");
    let error =
        check_refused_credentials(&api, secret, unknown.append("example.org.", &txt("x"))).await;
    assert_eq!(
        error.to_string(),
        "alidns: create TXT record in zone example.org.: not authorised: HTTP 404 Not Found: Specified access key is not found. (InvalidAccessKeyId.NotFound)"
    );

    let direct = madmail_libdns_alidns::AliDns::new(
        madmail_libdns_http::Secret::new("the-key-id"),
        madmail_libdns_http::Secret::new("the-key-secret"),
        &api.http_options(""),
    )
    .unwrap();
    let debug = format!("{direct:?}");
    assert!(!debug.contains("the-key-secret"), "{debug}");
}

#[tokio::test]
async fn throttling_and_rate_limits_are_waited_out() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    // Alibaba throttles with HTTP 400 and no Retry-After.
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"RequestId": "x", "HostId": "alidns.aliyuncs.com", "Code": "Throttling.User", "Message": "Request was denied due to user flow control."}),
        ),
    );
    let started = Instant::now();
    provider
        .append("example.org.", &txt("after-throttle"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A 429 with Retry-After (a gateway in front of the API) is waited out too.
    check_retries_rate_limit(
        &api,
        Response::text(429, "text/plain", "Too Many Requests"),
        provider.append("example.org.", &txt("after-429")),
    )
    .await;
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["after-429", "after-throttle", "pre-existing"]
    );
    // Each attempt was signed with a fresh nonce (the stand-in refuses a nonce seen before).
    let requests = api.requests();
    assert_eq!(requests.len(), 4);
    let nonces: std::collections::HashSet<String> = requests
        .iter()
        .map(|r| standin::params(r)["SignatureNonce"].clone())
        .collect();
    assert_eq!(nonces.len(), 4);

    // Throttled for longer than the retries allow.
    let impatient = provider_with(&api, standin::KEY_ID, standin::KEY_SECRET, "retries 0");
    api.fail_next(
        1,
        Response::json(
            400,
            &json!({"Code": "Throttling.User", "Message": "Request was denied due to user flow control."}),
        ),
    );
    let error = impatient
        .append("example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "alidns: create TXT record in zone example.org.: HTTP 400 Bad Request: Request was denied due to user flow control. (Throttling.User)"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-errors".to_string())
    );

    let provider = provider_with(&api, standin::KEY_ID, standin::KEY_SECRET, "retries 1");
    let fault = Response::json(
        503,
        &json!({"Code": "ServiceUnavailable", "Message": "The request has failed due to a temporary failure of the server."}),
    );
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.delete("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "alidns: delete TXT record in zone example.org.: HTTP 503 Service Unavailable: The request has failed due to a temporary failure of the server. (ServiceUnavailable) (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn an_identical_record_is_success() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
    // The API answered DomainRecordDuplicate.
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn a_record_gone_is_deleted() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    // Another client removes the record between its lookup and its deletion.
    let racing = alidns.clone();
    let api = MockApi::start(move |request| {
        let params = standin::params(request);
        if params
            .get("Action")
            .is_some_and(|a| a == "DeleteDomainRecord")
        {
            let id = &params["RecordId"];
            if let Some(r) = racing
                .zones
                .records()
                .into_iter()
                .find(|r| standin::record_id(r) == *id)
            {
                racing.zones.remove(&r.id);
            }
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
    assert_eq!(action(api.requests().last().unwrap()), "DeleteDomainRecord");
    // A value that was never there: nothing to delete.
    api.take_requests();
    provider
        .delete("example.org.", &txt("never"))
        .await
        .unwrap();
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(action(&requests[0]), "DescribeDomainRecords");
}

#[tokio::test]
async fn a_zone_the_account_lacks() {
    let zones = FakeZones::standard();
    let alidns = standin::AliDns::new(&zones);
    let api = MockApi::serving(&alidns, standin::handle).await;
    let provider = provider(&api);
    let other = testing::txt("_acme-challenge.example.net.", "x", 600);
    let error = provider.append("example.net.", &other).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "alidns: create TXT record in zone example.net.: HTTP 400 Bad Request: The specified domain name does not exist. Refresh the page and try again. (InvalidDomainName.NoExist)"
    );
    let error = provider.append("example.org.", &other).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "alidns: create TXT record in zone example.org.: _acme-challenge.example.net. is not in the zone"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("").await;
    let provider = provider_block(
        madmail_libdns_alidns::register,
        "alidns",
        &format!("key_id a\nkey_secret b\nendpoint {url}\nretries 0\ntimeout 2s"),
    )
    .unwrap();
    check_unreachable("alidns: list zones in zone -", provider.zone_for(NAME)).await;
}

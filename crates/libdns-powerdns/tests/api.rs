//! `libdns.powerdns` against a local stand-in of the PowerDNS HTTP API (`standin/mod.rs`):
//! the requests it sends, RRset read-modify-write, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::time::Duration;

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Request, Response, assert_every_request_has,
    check_concurrent_changes, check_gives_up_on_server_errors, check_provider,
    check_refused_credentials, check_retries_rate_limit, check_retries_server_errors,
    check_unreachable, closed_endpoint, lines_of, provider_block,
};
use serde_json::json;

fn provider_at(api: &MockApi, path: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_powerdns::register,
        "powerdns",
        &format!(
            "api_token {}\nendpoint {}\n{extra}",
            standin::KEY,
            api.url(path)
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi, extra: &str) -> Arc<dyn DnsProvider> {
    provider_at(api, "", extra)
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 120)
}

const NAME: &str = "_acme-challenge.example.org.";

const ZONES: &str = "/api/v1/servers/localhost/zones";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // The pre-existing RRset has TTL 300, which the added values share.
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
    assert_every_request_has(&requests, "x-api-key", standin::KEY);
    assert_every_request_has(&requests, "accept", "application/json");
    // The zone listing is one unpaged array.
    assert_eq!(
        lines_of(&requests[..2]),
        [
            format!("GET {ZONES}?dnssec=false"),
            format!("GET {ZONES}?dnssec=false")
        ]
    );
}

#[tokio::test]
async fn servers_ignoring_the_rrset_filters_work_too() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle_old).await;
    check_provider(
        provider(&api, "").as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 300,
        },
    )
    .await;
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
            format!("GET {ZONES}?zone=example.org.&dnssec=false"),
            format!(
                "GET {ZONES}/example.org.?rrset_name=_acme-challenge.example.org.&rrset_type=TXT"
            ),
            format!("PATCH {ZONES}/example.org."),
        ]
    );
    assert_eq!(requests[2].header("content-type"), Some("application/json"));
    // The existing value and the set's TTL are kept.
    assert_eq!(
        requests[2].json(),
        json!({"rrsets": [{
            "name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
            "changetype": "REPLACE",
            "records": [
                {"content": "\"pre-existing\"", "disabled": false},
                {"content": "\"token-one\"", "disabled": false}
            ]
        }]})
    );

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        lines_of(&requests),
        [
            format!("GET {ZONES}?zone=example.org.&dnssec=false"),
            format!(
                "GET {ZONES}/example.org.?rrset_name=_acme-challenge.example.org.&rrset_type=TXT"
            ),
            format!("PATCH {ZONES}/example.org."),
        ]
    );
    assert_eq!(
        requests[2].json(),
        json!({"rrsets": [{
            "name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
            "changetype": "REPLACE",
            "records": [{"content": "\"pre-existing\"", "disabled": false}]
        }]})
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_new_set_gets_the_records_ttl_and_goes_when_empty() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let record = testing::txt("_acme-challenge.www.Example.org.", "fresh", 60);
    provider.append("example.org.", &record).await.unwrap();
    let patch = api.take_requests().pop().unwrap();
    assert_eq!(
        patch.json(),
        json!({"rrsets": [{
            "name": "_acme-challenge.www.example.org.", "type": "TXT", "ttl": 60,
            "changetype": "REPLACE",
            "records": [{"content": "\"fresh\"", "disabled": false}]
        }]})
    );
    let stored = zones.records_named("_acme-challenge.www.example.org");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].ttl, 60);

    provider.delete("example.org.", &record).await.unwrap();
    let patch = api.take_requests().pop().unwrap();
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.json(),
        json!({"rrsets": [{
            "name": "_acme-challenge.www.example.org.", "type": "TXT", "changetype": "DELETE"
        }]})
    );
    assert!(
        zones
            .records_named("_acme-challenge.www.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn long_and_odd_values_are_quoted() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let long = format!("{}\"\\{}", "a".repeat(250), "b".repeat(100));
    provider.append("example.org.", &txt(&long)).await.unwrap();
    let patch = api.take_requests().pop().unwrap();
    let content = patch.json()["rrsets"][0]["records"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        content,
        format!(
            "\"{}\\\"\\\\{}\" \"{}\"",
            "a".repeat(250),
            "b".repeat(3),
            "b".repeat(97)
        )
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        [long.clone(), "pre-existing".to_string()]
    );
    // Present already: nothing written.
    provider.append("example.org.", &txt(&long)).await.unwrap();
    assert!(api.take_requests().iter().all(|r| r.method == "GET"));
    provider.delete("example.org.", &txt(&long)).await.unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn concurrent_values_on_one_name_both_survive() {
    let zones = FakeZones::standard();
    let shared = zones.clone();
    // A slow read: without serialisation both writers would read the same set and the second
    // write would drop the first value.
    let api = MockApi::start(move |request| {
        if request.method == "GET" && request.query_param("rrset_name").is_some() {
            std::thread::sleep(Duration::from_millis(200));
        }
        standin::handle(&shared, request)
    })
    .await;
    check_concurrent_changes(provider(&api, "").as_ref(), &zones, 120).await;
}

#[tokio::test]
async fn the_endpoint_may_name_the_server_or_the_api_and_server_id_is_used() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    for path in ["", "api/v1", "api/v1/"] {
        let provider = provider_at(&api, path, "");
        assert_eq!(
            provider
                .zone_for("_acme-challenge.example.org.")
                .await
                .unwrap(),
            "example.org."
        );
    }
    assert!(
        api.take_requests()
            .iter()
            .all(|r| r.line() == format!("GET {ZONES}?dnssec=false"))
    );
    let provider = provider(&api, "server_id other");
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "powerdns: list zones in zone -: HTTP 404 Not Found: Not Found"
    );
    assert_eq!(api.take_requests()[0].path, "/api/v1/servers/other/zones");
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_block(
        madmail_libdns_powerdns::register,
        "powerdns",
        &format!("api_token {secret}\nendpoint {}", api.url("")),
    )
    .unwrap();
    let error = check_refused_credentials(&api, secret, provider.zone_for(NAME)).await;
    assert_eq!(
        error.to_string(),
        "powerdns: list zones in zone -: not authorised: HTTP 401 Unauthorized: Unauthorized"
    );
    check_refused_credentials(&api, secret, provider.append("example.org.", &txt("x"))).await;
    let direct = madmail_libdns_powerdns::PowerDns::new(
        madmail_libdns_http::Secret::new(secret),
        "localhost",
        &api.http_options(""),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    // PowerDNS itself has no rate limit; a proxy in front of it may.
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let sent = check_retries_rate_limit(
        &api,
        Response::text(429, "text/plain", "Too Many Requests"),
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-wait".to_string())
    );
    assert_eq!(sent.len(), 4);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let fault = Response::json(500, &json!({"error": "Backend error: database is locked"}));
    let sent = check_retries_server_errors(
        &api,
        fault.clone(),
        provider.append("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(sent.len(), 5);

    let provider = self::provider(&api, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        provider.append("example.org.", &txt("never")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "powerdns: create TXT record in zone example.org.: HTTP 500 Internal Server Error: Backend error: database is locked (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn validation_errors_are_reported() {
    let zones = FakeZones::standard();
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.method == "PATCH" {
            return Response::json(
                422,
                &json!({"error": "Multiple errors found in RRset",
                    "errors": ["RRset _acme-challenge.example.org. IN TXT: Conflicts with pre-existing RRset",
                        "something else"]}),
            );
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
        "powerdns: create TXT record in zone example.org.: HTTP 422 Unprocessable Entity: Multiple errors found in RRset: RRset _acme-challenge.example.org. IN TXT: Conflicts with pre-existing RRset; something else"
    );
    // The set was read again to see whether the value is there after all.
    assert_eq!(api.requests().len(), 4);
}

#[tokio::test]
async fn an_existing_value_is_success() {
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
    assert!(api.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn deleting_what_is_gone_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    // No such value, and no such set.
    provider
        .delete("example.org.", &txt("never-added"))
        .await
        .unwrap();
    let gone = testing::txt("_acme-challenge.nothing.example.org.", "x", 60);
    provider.delete("example.org.", &gone).await.unwrap();
    assert!(api.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );

    // Removed by someone else between the read and the write, and the server refuses the
    // write: still success.
    let zones = FakeZones::new();
    zones.add_zone("example.org");
    zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "racing",
        60,
    );
    let shared = zones.clone();
    let api = MockApi::start(move |request| {
        if request.method == "PATCH" {
            for r in shared.records_named("_acme-challenge.example.org") {
                shared.remove(&r.id);
            }
            return Response::json(422, &json!({"error": "RRset does not exist"}));
        }
        standin::handle(&shared, request)
    })
    .await;
    let provider = self::provider(&api, "");
    provider
        .delete("example.org.", &txt("racing"))
        .await
        .unwrap();
    assert_eq!(api.requests().len(), 4);
    assert!(zones.records().is_empty());
}

#[tokio::test]
async fn an_unknown_zone_and_a_name_outside_it() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api, "");
    let other = testing::txt("_acme-challenge.other.test.", "x", 60);
    let error = provider.append("other.test.", &other).await.unwrap_err();
    assert_eq!(
        error,
        DnsError::NoZone {
            provider: "powerdns".into(),
            name: "other.test.".into()
        }
    );
    let error = provider
        .append("sub.example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "powerdns: create TXT record in zone sub.example.org.: _acme-challenge.example.org. is not in the zone"
    );
}

#[test]
fn the_standin_refuses_what_powerdns_refuses() {
    let zones = FakeZones::standard();
    let patch = |body: &str, accept_json: bool| {
        let mut headers = madmail_libdns_http::reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", standin::KEY.parse().unwrap());
        if accept_json {
            headers.insert("accept", "application/json".parse().unwrap());
        }
        let request = Request {
            method: "PATCH".into(),
            path: format!("{ZONES}/example.org."),
            query: None,
            headers,
            body: body.to_owned().into_bytes().into(),
        };
        let reply = standin::handle(&zones, &request);
        (reply.status, String::from_utf8(reply.body).unwrap())
    };
    let set = |name: &str, changetype: &str, content: &str| {
        json!({"rrsets": [{"name": name, "type": "TXT", "ttl": 60, "changetype": changetype,
            "records": [{"content": content, "disabled": false}]}]})
        .to_string()
    };
    assert_eq!(
        patch("", true),
        (
            400,
            r#"{"error":"JSON document expected in request body, but body was empty"}"#.into()
        )
    );
    assert_eq!(
        patch(&set("x.example.org.", "REPLACE", "token"), true),
        (
            422,
            r#"{"error":"Record x.example.org./TXT 'token': Parsing record content (try 'pdnsutil check-zone'): Data field in DNS should start with quote (\") at position 0 of 'token'"}"#.into()
        )
    );
    assert_eq!(
        patch(&set("x.example.org", "REPLACE", "\"token\""), true),
        (
            422,
            r#"{"error":"DNS Name 'x.example.org' is not canonical"}"#.into()
        )
    );
    assert_eq!(
        patch(&set("x.example.com.", "REPLACE", "\"token\""), false),
        (
            422,
            "RRset x.example.com. IN TXT: Name is out of zone".into()
        )
    );
    assert_eq!(
        patch(&set("x.example.org.", "EXTEND", "\"token\""), true),
        (422, r#"{"error":"Changetype not understood"}"#.into())
    );
    let long = format!("\"{}\"", "x".repeat(256));
    assert_eq!(patch(&set("x.example.org.", "REPLACE", &long), true).0, 422);
    let twice = json!({"rrsets": [{"name": "x.example.org.", "type": "TXT", "ttl": 60,
        "changetype": "REPLACE", "records": [{"content": "\"a\""}, {"content": "\"a\""}]}]});
    assert_eq!(patch(&twice.to_string(), true).0, 422);
    let no_ttl = json!({"rrsets": [{"name": "x.example.org.", "type": "TXT",
        "changetype": "REPLACE", "records": [{"content": "\"a\""}]}]});
    assert_eq!(patch(&no_ttl.to_string(), true).0, 422);
    assert!(zones.records_named("x.example.org").is_empty());
    assert_eq!(
        patch(&set("x.example.org.", "replace", "\"a\" \"b\""), true),
        (204, String::new())
    );
    assert_eq!(zones.txt_values("x.example.org"), ["ab"]);
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("").await;
    let provider = provider_block(
        madmail_libdns_powerdns::register,
        "powerdns",
        &format!(
            "api_token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::KEY
        ),
    )
    .unwrap();
    check_unreachable("powerdns: list zones in zone -", provider.zone_for(NAME)).await;
}

//! `libdns.metaname` against a local stand-in of Metaname's JSON-RPC API (`standin/mod.rs`):
//! the calls it makes, zone discovery by probing, and the errors Metaname answers in HTTP 200
//! replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use madmail_dns::DnsProvider;
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Request, Response, check_gives_up_on_server_errors, check_provider,
    check_refused_credentials, check_retries_rate_limit, check_retries_server_errors,
    check_unreachable, closed_endpoint, provider_block, txt,
};
use serde_json::{Value, json};

fn provider_with(api: &MockApi, account: &str, key: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_metaname::register,
        "metaname",
        &format!(
            "account_ref {account}\napi_key {key}\nendpoint {}\n{extra}",
            api.url("api/1.1")
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::ACCOUNT, standin::KEY, "")
}

/// `method(args after the credentials)` of each call.
fn calls(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let body = r.json();
            let args: Vec<String> = body["params"].as_array().unwrap()[2..]
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    Value::Object(_) => "{record}".to_string(),
                    other => other.to_string(),
                })
                .collect();
            format!("{}({})", body["method"].as_str().unwrap(), args.join(", "))
        })
        .collect()
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
    let mut last_id = 0;
    for r in &requests {
        assert_eq!(r.line(), "POST /api/1.1");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["params"][0], standin::ACCOUNT);
        assert_eq!(body["params"][1], standin::KEY);
        let id = body["id"].as_u64().unwrap();
        assert!(id > last_id, "ids increase");
        last_id = id;
    }
    // Zones are found by trying each enclosing name, longest first.
    assert_eq!(
        calls(&requests[..2]),
        [
            "dns_zone(_acme-challenge.mail.example.org)",
            "dns_zone(mail.example.org)",
        ]
    );
    assert_eq!(calls(&requests[2..3]), ["dns_zone(example.org)"]);
}

#[tokio::test]
async fn zone_discovery_probes_longest_first() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.Sub.Example.org.")
            .await
            .unwrap(),
        "sub.example.org."
    );
    assert_eq!(
        calls(&api.take_requests()),
        [
            "dns_zone(_acme-challenge.a.sub.example.org)",
            "dns_zone(a.sub.example.org)",
            "dns_zone(sub.example.org)",
        ]
    );
    let error = provider
        .zone_for("_acme-challenge.example.net.")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metaname: no zone found for _acme-challenge.example.net."
    );
    // The top-level domain is never tried.
    assert_eq!(
        calls(&api.take_requests()),
        [
            "dns_zone(_acme-challenge.example.net)",
            "dns_zone(example.net)",
        ]
    );
}

#[tokio::test]
async fn create_and_delete_calls() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append(
            "example.org.",
            &txt("_acme-challenge.Mail.example.org.", "token-one", 60),
        )
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(
        calls(&requests)[0],
        "dns_zone(example.org)",
        "the zone is read first"
    );
    assert_eq!(requests.len(), 2);
    let create = requests[1].json();
    assert_eq!(
        create,
        json!({"jsonrpc": "2.0", "id": create["id"], "method": "create_dns_record",
            "params": [standin::ACCOUNT, standin::KEY, "example.org",
                {"name": "_acme-challenge.mail", "type": "TXT", "aux": null, "ttl": 60, "data": "token-one"}]})
    );
    let record = zones
        .records_named("_acme-challenge.mail.example.org")
        .pop()
        .unwrap();
    assert_eq!((record.value.as_str(), record.ttl), ("token-one", 60));

    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.mail.example.org.", "token-one", 60),
        )
        .await
        .unwrap();
    assert_eq!(
        calls(&api.take_requests()),
        [
            "dns_zone(example.org)".to_string(),
            format!("delete_dns_record(example.org, {})", record.id),
        ]
    );
    assert!(
        zones
            .records_named("_acme-challenge.mail.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn only_the_value_is_deleted_with_its_duplicates() {
    let zones = FakeZones::standard();
    // Records are independent: a value may be there twice (another client's doing).
    zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "dup",
        60,
    );
    zones.add(
        "example.org",
        "_acme-challenge.example.org",
        "TXT",
        "dup",
        60,
    );
    zones.add(
        "example.org",
        "_acme-challenge.x.example.org",
        "TXT",
        "dup",
        60,
    );
    let api = MockApi::serving(&zones, standin::handle).await;
    provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "dup", 60),
        )
        .await
        .unwrap();
    let deletes = calls(&api.requests())
        .into_iter()
        .filter(|c| c.starts_with("delete_dns_record"))
        .count();
    assert_eq!(deletes, 2);
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
    assert_eq!(zones.txt_values("_acme-challenge.x.example.org"), ["dup"]);
}

#[tokio::test]
async fn ttls_are_at_least_a_minute() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    provider(&api)
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "short", 10),
        )
        .await
        .unwrap();
    let record = zones.txt_record("_acme-challenge.example.org", "short");
    assert_eq!(record.ttl, 60);
}

#[tokio::test]
async fn a_value_already_there_is_success_without_a_write() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    provider(&api)
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "pre-existing", 60),
        )
        .await
        .unwrap();
    assert_eq!(calls(&api.requests()), ["dns_zone(example.org)"]);
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn deleting_what_is_not_there_is_success() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "gone", 60),
        )
        .await
        .unwrap();
    assert_eq!(calls(&api.requests()), ["dns_zone(example.org)"]);

    // Deleted by someone else between the read and the delete: the API says 17.
    zones.add(
        "example.org",
        "_acme-challenge.y.example.org",
        "TXT",
        "v",
        60,
    );
    let backing = zones.clone();
    let api = MockApi::start(move |request| {
        if request.json()["method"] == "delete_dns_record" {
            return standin::rpc_error(
                &request.json()["id"],
                -17,
                "DNS record not found",
                Value::Null,
            );
        }
        standin::handle(&backing, request)
    })
    .await;
    provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.y.example.org.", "v", 60),
        )
        .await
        .unwrap();
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, standin::ACCOUNT, secret, "");
    let error = check_refused_credentials(
        &api,
        secret,
        provider.append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        ),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "metaname: create TXT record in zone example.org.: not authorised: Authentication failed (code -1)"
    );
    check_refused_credentials(
        &api,
        secret,
        provider.zone_for("_acme-challenge.example.org."),
    )
    .await;
    let direct = madmail_libdns_metaname::Metaname::new(
        madmail_libdns_http::Secret::new("ab12"),
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("api/1.1"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let sent = check_retries_rate_limit(
        &api,
        Response::text(429, "text/plain", "Too Many Requests"),
        provider(&api).append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-wait", 60),
        ),
    )
    .await;
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["after-wait", "pre-existing"]
    );
    assert_eq!(sent[0].body, sent[1].body, "the same call again");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider(&api).append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-errors", 60),
        ),
    )
    .await;

    let provider = provider_with(&api, standin::ACCOUNT, standin::KEY, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        Response::text(503, "text/html", "<html>Unavailable</html>"),
        provider.delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-errors", 60),
        ),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "metaname: delete TXT record in zone example.org.: HTTP 503 Service Unavailable: <html>Unavailable</html> (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn transient_api_errors_in_200_replies_are_retried() {
    let zones = FakeZones::standard();
    let backing = zones.clone();
    let creates = AtomicUsize::new(0);
    // The first create goes through but is answered with an internal error: the record must
    // not be created twice.
    let api = MockApi::start(move |request| {
        let body = request.json();
        if body["method"] == "create_dns_record" && creates.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = standin::handle(&backing, request);
            return standin::rpc_error(&body["id"], -32603, "Internal error", Value::Null);
        }
        standin::handle(&backing, request)
    })
    .await;
    api.fail_next(
        1,
        standin::rpc_error(&json!(1), -18, "Upstream error", Value::Null),
    );
    provider(&api)
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "once", 60),
        )
        .await
        .unwrap();
    assert_eq!(
        calls(&api.requests()),
        [
            "dns_zone(example.org)",
            "dns_zone(example.org)",
            "create_dns_record(example.org, {record})",
            "dns_zone(example.org)",
        ]
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["once", "pre-existing"]
    );

    // Used up: reported with Metaname's message.
    let provider = provider_with(&api, standin::ACCOUNT, standin::KEY, "retries 1");
    api.fail_next(
        2,
        standin::rpc_error(&Value::Null, -32603, "Internal error", json!("try later")),
    );
    let reference = zones.txt_record("_acme-challenge.example.org", "once").id;
    let error = provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "once", 60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metaname: delete TXT record in zone example.org.: Internal error (code -32603): try later"
    );
    assert!(zones.record(&reference).is_some());
}

#[tokio::test]
async fn api_errors_name_zone_and_operation() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let error = provider
        .append("other.nz.", &txt("_acme-challenge.other.nz.", "v", 60))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metaname: create TXT record in zone other.nz.: Domain name not found (code -5): other.nz"
    );
    api.fail_next(
        1,
        standin::rpc_error(&Value::Null, -12, "DNS hosting not enabled", Value::Null),
    );
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metaname: find zone in zone _acme-challenge.example.org: DNS hosting not enabled (code -12); enable DNS hosting for the domain in Metaname's control panel"
    );
}

#[tokio::test]
async fn replies_must_answer_the_request() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    api.fail_next(
        1,
        Response::json(200, &json!({"jsonrpc": "2.0", "id": 999, "result": []})),
    );
    let error = provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metaname: delete TXT record in zone example.org.: the reply is for request 999, not 1"
    );
    api.fail_next(
        1,
        Response::text(200, "text/html", "<html>maintenance</html>"),
    );
    let error = provider(&api)
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "metaname: delete TXT record in zone example.org.: unexpected reply from the API: "
        ),
        "{error}"
    );
}

#[tokio::test]
async fn the_endpoint_is_called_as_configured() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    for endpoint in [api.url("api/1.1"), api.url("api/1.1/")] {
        let provider = provider_block(
            madmail_libdns_metaname::register,
            "metaname",
            &format!(
                "account_ref {}\napi_key {}\nendpoint {endpoint}",
                standin::ACCOUNT,
                standin::KEY
            ),
        )
        .unwrap();
        provider.zone_for("example.org.").await.unwrap();
    }
    assert!(api.requests().iter().all(|r| r.path == "/api/1.1"));
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("api/1.1").await;
    let provider = provider_block(
        madmail_libdns_metaname::register,
        "metaname",
        &format!(
            "account_ref {}\napi_key {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::ACCOUNT,
            standin::KEY
        ),
    )
    .unwrap();
    check_unreachable(
        "metaname: delete TXT record in zone example.org.",
        provider.delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        ),
    )
    .await;
}

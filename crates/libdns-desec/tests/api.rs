//! `libdns.desec` against a local stand-in of the deSEC API v1 (`standin/`): the requests it
//! sends, RRset read-modify-write, TTL limits, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, Expect, FakeZones, MockApi, Response, check_concurrent_changes,
    check_gives_up_on_server_errors, check_provider, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    lines_of, provider_block,
};
use serde_json::json;

const NAME: &str = "_acme-challenge.example.org";
const RRSET: &str = "/api/v1/domains/example.org/rrsets/_acme-challenge/TXT/";

fn provider_with(api: &MockApi, token: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_desec::register,
        "desec",
        &format!("token {token}\nendpoint {}\n{extra}", api.url("api/v1")),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::TOKEN, "")
}

fn txt_at(fqdn: &str, value: &str) -> TxtRecord {
    testing::txt(fqdn, value, 3600)
}

fn txt(value: &str) -> TxtRecord {
    txt_at(&format!("{NAME}."), value)
}

fn token() -> String {
    format!("Token {}", standin::TOKEN)
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // New values join the pre-existing RRset and keep its TTL (300 s, which deSEC allows only
    // where it lowered the domain's minimum), so that is the TTL asked for; the RRset created
    // in sub.example.org gets the minimum, 3600 s.
    check_provider(
        provider(&api).as_ref(),
        &zones,
        Expect {
            lists_zones: true,
            ttl: 300,
        },
    )
    .await;
    assert!(
        api.requests()
            .iter()
            .any(|r| r.method == "POST" && r.json()["ttl"] == 3600)
    );
    let requests = api.requests();
    for r in &requests {
        assert_eq!(r.header("authorization"), Some(token().as_str()), "{r:?}");
        assert_eq!(r.header("accept"), Some("application/json"), "{r:?}");
        assert!(r.path.ends_with('/'), "{r:?}");
    }
    // deSEC finds the responsible domain itself: one request per name, no listing.
    assert_eq!(
        requests[0].line(),
        "GET /api/v1/domains/?owns_qname=_acme-challenge.mail.example.org"
    );
}

#[tokio::test]
async fn rrset_requests() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);

    // The name has an RRset (`pre-existing`): the value is added to it.
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let seen = lines_of(&requests);
    assert_eq!(seen, [format!("GET {RRSET}"), format!("PATCH {RRSET}")]);
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].json(),
        json!({"records": ["\"pre-existing\"", "\"token-one\""]})
    );

    // A name without one: the RRset is created, with the domain's minimum TTL.
    let mail = txt_at("_acme-challenge.mail.example.org.", "token-mail");
    provider.append("example.org.", &mail).await.unwrap();
    let requests = api.take_requests();
    let seen = lines_of(&requests);
    assert_eq!(
        seen,
        [
            "GET /api/v1/domains/example.org/rrsets/_acme-challenge.mail/TXT/",
            "GET /api/v1/domains/example.org/",
            "POST /api/v1/domains/example.org/rrsets/",
        ]
    );
    assert_eq!(requests[2].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[2].json(),
        json!({"subname": "_acme-challenge.mail", "type": "TXT", "ttl": 3600, "records": ["\"token-mail\""]})
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.mail.example.org"),
        ["token-mail"]
    );

    // Removing one of several values writes back the others.
    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let seen = lines_of(&requests);
    assert_eq!(seen, [format!("GET {RRSET}"), format!("PATCH {RRSET}")]);
    assert_eq!(requests[1].json(), json!({"records": ["\"pre-existing\""]}));
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);

    // Removing the last value deletes the RRset.
    provider.delete("example.org.", &mail).await.unwrap();
    let requests = api.take_requests();
    let seen = lines_of(&requests);
    assert_eq!(
        seen,
        [
            "GET /api/v1/domains/example.org/rrsets/_acme-challenge.mail/TXT/",
            "DELETE /api/v1/domains/example.org/rrsets/_acme-challenge.mail/TXT/",
        ]
    );
    assert!(requests[1].body.is_empty());
    assert!(
        zones
            .records_named("_acme-challenge.mail.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn the_apex_is_at_in_urls_and_empty_in_bodies() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let apex = txt_at("example.org.", "at-apex");
    provider.append("example.org.", &apex).await.unwrap();
    let requests = api.take_requests();
    assert_eq!(
        requests[0].line(),
        "GET /api/v1/domains/example.org/rrsets/@/TXT/"
    );
    assert_eq!(requests[2].json()["subname"], "");
    assert_eq!(zones.txt_values("example.org"), ["at-apex"]);
    provider.delete("example.org.", &apex).await.unwrap();
    assert_eq!(
        api.take_lines(),
        [
            "GET /api/v1/domains/example.org/rrsets/@/TXT/",
            "DELETE /api/v1/domains/example.org/rrsets/@/TXT/",
        ]
    );
    assert!(zones.txt_values("example.org").is_empty());
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn ttl_is_kept_within_the_domains_limits() {
    let zones = FakeZones::standard();
    zones.add_zone(standin::LOW_TTL_DOMAIN);
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let cases = [
        ("example.org.", 60, standin::MINIMUM_TTL),
        ("example.org.", 1_000_000, standin::MAX_TTL),
        ("lowttl.test.", 60, standin::LOW_MINIMUM_TTL),
        ("lowttl.test.", 10, standin::LOW_MINIMUM_TTL),
    ];
    for (i, (zone, asked, kept)) in cases.into_iter().enumerate() {
        let fqdn = format!("_acme-challenge.t{i}.{zone}");
        let record = testing::txt(&fqdn, "v", asked);
        provider.append(zone, &record).await.unwrap();
        let stored = zones.records_named(&fqdn);
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0].ttl, kept, "{zone} {asked}");
    }
}

#[tokio::test]
async fn concurrent_values_on_one_name_both_stay() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    // Two orders (a wildcard and its apex) presenting at once: each read-modify-write must
    // see the other's value.
    check_concurrent_changes(provider(&api).as_ref(), &zones, 3600).await;
}

#[tokio::test]
async fn an_rrset_created_meanwhile_is_modified_instead() {
    let zones = FakeZones::standard();
    let racing = zones.clone();
    let raced = Arc::new(AtomicBool::new(false));
    let once = raced.clone();
    // Another client creates the RRset between our read (404) and our create.
    let api = MockApi::start(move |request| {
        let reply = standin::handle(&racing, request);
        if request.method == "GET"
            && request.path.ends_with("/_acme-challenge.race/TXT/")
            && !once.swap(true, Ordering::SeqCst)
        {
            racing.add(
                "example.org",
                "_acme-challenge.race.example.org",
                "TXT",
                "other-writer",
                3600,
            );
        }
        reply
    })
    .await;
    let provider = provider(&api);
    provider
        .append(
            "example.org.",
            &txt_at("_acme-challenge.race.example.org.", "ours"),
        )
        .await
        .unwrap();
    assert!(raced.load(Ordering::SeqCst));
    let path = "/api/v1/domains/example.org/rrsets/_acme-challenge.race/TXT/";
    assert_eq!(
        api.take_lines(),
        [
            format!("GET {path}"),
            "GET /api/v1/domains/example.org/".into(),
            "POST /api/v1/domains/example.org/rrsets/".into(),
            format!("GET {path}"),
            format!("PATCH {path}"),
        ]
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.race.example.org"),
        ["other-writer", "ours"]
    );
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
        "desec: find domain in zone -: not authorised: HTTP 401 Unauthorized: Invalid token."
    );
    let text = check_refused_credentials(
        &api,
        secret,
        provider.append("example.org.", &txt("token-one")),
    )
    .await
    .to_string();
    assert!(
        text.starts_with("desec: add TXT value in zone example.org.: not authorised"),
        "{text}"
    );
    let direct = madmail_libdns_desec::Desec::new(
        madmail_libdns_http::Secret::new(secret),
        &api.http_options("api/v1"),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn a_token_restricted_by_policy_is_unauthorized() {
    let zones = FakeZones::standard();
    let api = MockApi::start({
        let zones = zones.clone();
        move |request| {
            if request.method == "GET" {
                standin::handle(&zones, request)
            } else {
                Response::json(
                    403,
                    &json!({"detail": "You do not have permission to perform this action."}),
                )
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
        "desec: add TXT value in zone example.org.: not authorised: HTTP 403 Forbidden: You do not have permission to perform this action."
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let fault = Response::json(
        429,
        &json!({"detail": "Request was throttled. Expected available in 1 second."}),
    );
    let sent = check_retries_rate_limit(
        &api,
        fault,
        provider.append("example.org.", &txt("after-wait")),
    )
    .await;
    assert!(zones.txt_values(NAME).contains(&"after-wait".to_string()));
    assert_eq!(
        lines_of(&sent),
        [
            format!("GET {RRSET}"),
            format!("GET {RRSET}"),
            format!("PATCH {RRSET}"),
        ]
    );
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
        Response::json(500, &json!({"detail": "A server error occurred."})),
        provider.delete("example.org.", &txt("after-errors")),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "desec: remove TXT value in zone example.org.: HTTP 500 Internal Server Error: A server error occurred. (gave up after 2 attempts)"
    );
    assert!(zones.txt_values(NAME).contains(&"after-errors".to_string()));
}

#[tokio::test]
async fn field_errors_are_quoted_with_their_field() {
    let zones = FakeZones::standard();
    let api = MockApi::start({
        let zones = zones.clone();
        move |request| {
            if request.method == "POST" {
                Response::json(
                    400,
                    &json!({"records": ["Record content for type TXT malformed: x"], "ttl": ["Ensure this value is less than or equal to 86400."]}),
                )
            } else {
                standin::handle(&zones, request)
            }
        }
    })
    .await;
    let error = provider(&api)
        .append(
            "example.org.",
            &txt_at("_acme-challenge.new.example.org.", "x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "desec: add TXT value in zone example.org.: HTTP 400 Bad Request: records: Record content for type TXT malformed: x; ttl: Ensure this value is less than or equal to 86400."
    );
}

#[tokio::test]
async fn an_existing_value_is_not_written_again() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
    assert_eq!(api.take_lines(), [format!("GET {RRSET}")]);
}

#[tokio::test]
async fn removing_what_is_not_there_writes_nothing() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    // The RRset exists without the value.
    provider
        .delete("example.org.", &txt("never-there"))
        .await
        .unwrap();
    assert_eq!(api.take_lines(), [format!("GET {RRSET}")]);
    // No RRset at all (404).
    provider
        .delete(
            "example.org.",
            &txt_at("_acme-challenge.none.example.org.", "x"),
        )
        .await
        .unwrap();
    assert_eq!(
        api.take_lines(),
        ["GET /api/v1/domains/example.org/rrsets/_acme-challenge.none/TXT/"]
    );
    assert_eq!(zones.txt_values(NAME), ["pre-existing"]);
}

#[tokio::test]
async fn an_unknown_domain_is_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&zones, standin::handle).await;
    let provider = provider(&api);
    let error = provider
        .append("gone.test.", &txt_at("_acme-challenge.gone.test.", "x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "desec: add TXT value in zone gone.test.: HTTP 404 Not Found: Not found."
    );
    let error = provider
        .append("example.org.", &txt_at("_acme-challenge.gone.test.", "x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "desec: add TXT value in zone example.org.: _acme-challenge.gone.test. is not in the zone"
    );
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("api/v1").await;
    let provider = provider_block(
        madmail_libdns_desec::register,
        "desec",
        &format!(
            "token {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::TOKEN
        ),
    )
    .unwrap();
    check_unreachable(
        "desec: find domain in zone -",
        provider.zone_for(&format!("{NAME}.")),
    )
    .await;
}

//! `libdns.acmedns` against a local stand-in of an acme-dns server (`standin/mod.rs`).
//!
//! acme-dns is not a zone store: an account serves the two values posted last at one name,
//! with no listing and no deletion, so the shared `check_provider` (zones, several values on a
//! name, exact deletion) does not apply. These tests check instead what acme-dns allows: the
//! name as its own zone, two values at once, never pushing out a value still in use, and the
//! documented requests and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    self, MockApi, Response, check_gives_up_on_server_errors, check_refused_credentials,
    check_retries_rate_limit, check_retries_server_errors, check_unreachable, closed_endpoint,
    provider_block,
};
use serde_json::json;

const NAME: &str = "_acme-challenge.example.org.";

fn provider_with(
    api: &MockApi,
    password: &str,
    subdomain: &str,
    extra: &str,
) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_acmedns::register,
        "acmedns",
        &format!(
            "username {}\npassword {password}\nsubdomain {subdomain}\nserver_url {}\n{extra}",
            standin::USERNAME,
            api.url("").trim_end_matches('/'),
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::PASSWORD, standin::SUBDOMAIN, "")
}

fn txt(value: &str) -> TxtRecord {
    testing::txt(NAME, value, 60)
}

/// Presents `value` as the ACME loader does: the zone from `zone_for`, then `append`.
async fn present(provider: &dyn DnsProvider, value: &str) -> Result<(), DnsError> {
    let zone = provider.zone_for(NAME).await?;
    provider.append(&zone, &txt(value)).await
}

async fn clean_up(provider: &dyn DnsProvider, value: &str) {
    let zone = provider.zone_for(NAME).await.unwrap();
    provider.delete(&zone, &txt(value)).await.unwrap();
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    values.sort();
    values
}

#[tokio::test]
async fn the_name_is_its_own_zone_without_asking_anyone() {
    let server = standin::AcmeDns::new("/");
    let api = MockApi::serving(&server, standin::handle).await;
    let provider = provider(&api);
    assert_eq!(
        provider
            .zone_for("_acme-challenge.Mail.Example.org")
            .await
            .unwrap(),
        "_acme-challenge.mail.example.org."
    );
    assert_eq!(provider.zone_for(NAME).await.unwrap(), NAME);
    assert!(matches!(
        provider.zone_for(".").await,
        Err(DnsError::NoZone { .. })
    ));
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn two_values_at_once_and_none_pushed_out_while_in_use() {
    let server = standin::AcmeDns::new("/");
    let api = MockApi::serving(&server, standin::handle).await;
    let provider = provider(&api);
    let [a, b, c, d, e] = [1, 2, 3, 4, 5].map(standin::digest);

    // A certificate for example.org and *.example.org: two values on one name.
    present(provider.as_ref(), &a).await.unwrap();
    present(provider.as_ref(), &b).await.unwrap();
    assert_eq!(server.values(), sorted(&[&a, &b]));
    let requests = api.take_requests();
    assert_eq!(requests.len(), 2);
    let update = &requests[0];
    assert_eq!(update.line(), "POST /update");
    assert_eq!(update.header("x-api-user"), Some(standin::USERNAME));
    assert_eq!(update.header("x-api-key"), Some(standin::PASSWORD));
    assert_eq!(update.header("content-type"), Some("application/json"));
    assert_eq!(
        std::str::from_utf8(&update.body).unwrap(),
        format!(r#"{{"subdomain":"{}","txt":"{a}"}}"#, standin::SUBDOMAIN)
    );

    // A third while both are in use would push one out: refused, nothing sent.
    let error = present(provider.as_ref(), &c).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "acmedns: update TXT value in zone _acme-challenge.example.org.: an acme-dns account serves 2 TXT values at once and updating it now would replace one still in use; give at most 2 names of a certificate to one account"
    );
    // Presenting a value served already sends nothing either.
    present(provider.as_ref(), &b).await.unwrap();
    assert!(api.take_requests().is_empty());

    // Cleaning up sends nothing (acme-dns cannot delete) but frees the value's place.
    clean_up(provider.as_ref(), &a).await;
    assert!(api.requests().is_empty());
    assert_eq!(server.values(), sorted(&[&a, &b]));
    present(provider.as_ref(), &c).await.unwrap();
    assert_eq!(server.values(), sorted(&[&b, &c]));

    // The older value (b) is the one replaced next, even right after c: updates are kept a
    // second apart, so acme-dns's dates (whole seconds) never tie.
    clean_up(provider.as_ref(), &b).await;
    let started = Instant::now();
    present(provider.as_ref(), &d).await.unwrap();
    assert_eq!(server.values(), sorted(&[&c, &d]));
    assert!(started.elapsed() >= Duration::from_millis(500));

    // The newer value is done with but the older (c) is still in use: still refused.
    clean_up(provider.as_ref(), &d).await;
    assert!(present(provider.as_ref(), &e).await.is_err());
    // Presenting d again needs no update: it is still served.
    api.take_requests();
    present(provider.as_ref(), &d).await.unwrap();
    assert!(api.requests().is_empty());
    // Cleaning up a value never presented is fine.
    clean_up(provider.as_ref(), &standin::digest(9)).await;
    assert_eq!(api.requests().len(), 0);
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_never_printed() {
    let server = standin::AcmeDns::new("/");
    let api = MockApi::serving(&server, standin::handle).await;
    let wrong = provider_with(
        &api,
        "wrongwrongwrongwrongwrongwrongwrongwrong",
        standin::SUBDOMAIN,
        "",
    );
    let error = check_refused_credentials(
        &api,
        "wrongwrong",
        present(wrong.as_ref(), &standin::digest(1)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "acmedns: update TXT value in zone _acme-challenge.example.org.: not authorised: HTTP 401 Unauthorized: forbidden: wrong username or password, a subdomain of another account, or a client address outside the account's allowfrom"
    );

    // Another account's subdomain.
    let other = provider_with(
        &api,
        standin::PASSWORD,
        "0b8d6e3a-0000-4000-8000-000000000000",
        "",
    );
    check_refused_credentials(
        &api,
        standin::PASSWORD,
        present(other.as_ref(), &standin::digest(1)),
    )
    .await;
    assert_eq!(server.values(), ["", ""]);

    let direct = madmail_libdns_acmedns::AcmeDns::new(
        madmail_libdns_acmedns::Account {
            username: madmail_libdns_http::Secret::new(standin::USERNAME),
            password: madmail_libdns_http::Secret::new("the-account-password"),
            subdomain: standin::SUBDOMAIN.into(),
        },
        &api.http_options(""),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains("the-account-password"));
}

#[tokio::test]
async fn only_acme_values_are_taken() {
    let server = standin::AcmeDns::new("/");
    let api = MockApi::serving(&server, standin::handle).await;
    let provider = provider(&api);
    let error = present(provider.as_ref(), "madmail-preflight-0123456789abcdef")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "acmedns: update TXT value in zone _acme-challenge.example.org.: HTTP 400 Bad Request: bad_txt: acme-dns takes only ACME challenge values (43 characters of A-Z, a-z, 0-9, - and _)"
    );
    // The refused value took no place.
    present(provider.as_ref(), &standin::digest(1))
        .await
        .unwrap();
    present(provider.as_ref(), &standin::digest(2))
        .await
        .unwrap();
    assert_eq!(
        server.values(),
        sorted(&[&standin::digest(1), &standin::digest(2)])
    );
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let server = standin::AcmeDns::new("/");
    let api = MockApi::serving(&server, standin::handle).await;
    let provider = provider(&api);
    let fault = Response::text(500, "application/json", r#"{"error": "db_error"}"#);
    let sent = check_retries_server_errors(
        &api,
        fault.clone(),
        present(provider.as_ref(), &standin::digest(1)),
    )
    .await;
    assert_eq!(sent.len(), 3);
    // A proxy in front of the server may rate-limit.
    check_retries_rate_limit(
        &api,
        Response::text(429, "text/plain", "slow down"),
        present(provider.as_ref(), &standin::digest(2)),
    )
    .await;
    assert_eq!(
        server.values(),
        sorted(&[&standin::digest(1), &standin::digest(2)])
    );

    let impatient = provider_with(&api, standin::PASSWORD, standin::SUBDOMAIN, "retries 1");
    let error = check_gives_up_on_server_errors(
        &api,
        fault,
        present(impatient.as_ref(), &standin::digest(3)),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "acmedns: update TXT value in zone _acme-challenge.example.org.: HTTP 500 Internal Server Error: db_error: the server could not write its database (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn a_server_under_a_path() {
    let server = standin::AcmeDns::new("/acme-dns/");
    let api = MockApi::serving(&server, standin::handle).await;
    for url in [api.url("acme-dns"), api.url("acme-dns/")] {
        let provider = provider_block(
            madmail_libdns_acmedns::register,
            "acmedns",
            &format!(
                "username {}\npassword {}\nsubdomain {}\nserver_url {url}",
                standin::USERNAME,
                standin::PASSWORD,
                standin::SUBDOMAIN,
            ),
        )
        .unwrap();
        present(provider.as_ref(), &standin::digest(7))
            .await
            .unwrap();
    }
    let lines = api.lines();
    assert_eq!(lines, ["POST /acme-dns/update", "POST /acme-dns/update"]);
    assert!(server.values().contains(&standin::digest(7)));
    // The stand-in is strict about routes, as acme-dns's router is.
    let response = standin::handle(
        &server,
        &madmail_libdns_http::testing::Request {
            method: "POST".into(),
            path: "/acme-dns//update".into(),
            query: None,
            headers: Default::default(),
            body: json!({}).to_string().into(),
        },
    );
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn unreachable_server() {
    let url = closed_endpoint("").await;
    let provider = provider_block(
        madmail_libdns_acmedns::register,
        "acmedns",
        &format!(
            "username {}\npassword {}\nsubdomain {}\nserver_url {url}\nretries 0\ntimeout 2s",
            standin::USERNAME,
            standin::PASSWORD,
            standin::SUBDOMAIN,
        ),
    )
    .unwrap();
    check_unreachable(
        "acmedns: update TXT value in zone _acme-challenge.example.org.",
        present(provider.as_ref(), &standin::digest(1)),
    )
    .await;
}

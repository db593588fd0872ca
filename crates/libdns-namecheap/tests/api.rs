//! `libdns.namecheap` against a local stand-in of the Namecheap XML API (`standin/mod.rs`):
//! the commands it sends, paging, whole-zone read-modify-write, and the errors Namecheap
//! answers in HTTP 200 replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;

use madmail_dns::{DnsError, DnsProvider};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Request, Response, check_gives_up_on_server_errors, check_provider,
    check_refused_credentials, check_retries_rate_limit, check_retries_server_errors,
    check_unreachable, closed_endpoint, provider_block, txt,
};
use madmail_libdns_http::{Secret, Url};
use madmail_libdns_namecheap::Namecheap;
use standin::Standin;

fn provider_with(api: &MockApi, key: &str, client_ip: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_namecheap::register,
        "namecheap",
        &format!(
            "api_key {key}\napi_username {}\nclient_ip {client_ip}\nendpoint {}\n{extra}",
            standin::USER,
            api.url("")
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::KEY, standin::CLIENT_IP, "")
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn command(request: &Request) -> String {
    field(&request.form(), "Command")
        .unwrap_or_default()
        .to_owned()
}

fn globals() -> Vec<(String, String)> {
    [
        ("ApiUser", standin::USER),
        ("ApiKey", standin::KEY),
        ("UserName", standin::USER),
        ("ClientIp", standin::CLIENT_IP),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The hosts of a setHosts form: (HostName, RecordType, Address, MXPref, TTL).
fn hosts_of(form: &[(String, String)]) -> Vec<[String; 5]> {
    let mut hosts = Vec::new();
    for n in 1.. {
        let Some(name) = field(form, &format!("HostName{n}")) else {
            break;
        };
        let get = |f: &str| field(form, &format!("{f}{n}")).unwrap_or("-").to_owned();
        hosts.push([
            name.to_owned(),
            get("RecordType"),
            get("Address"),
            get("MXPref"),
            get("TTL"),
        ]);
    }
    hosts
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let standin = Standin::new(zones.clone());
    let api = MockApi::serving(&standin, Standin::handle).await;
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
    for r in &requests {
        assert_eq!(
            r.line(),
            "POST /xml.response",
            "the key never goes in a URL"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.form()[..4], globals());
    }
    // 122 domains, 100 a page: two pages.
    let expected_page = |page: &str| {
        let mut form = globals();
        form.extend(pairs(&[
            ("Command", "namecheap.domains.getList"),
            ("ListType", "ALL"),
            ("Page", page),
            ("PageSize", "100"),
        ]));
        form
    };
    assert_eq!(requests[0].form(), expected_page("1"));
    assert_eq!(requests[1].form(), expected_page("2"));
    assert_eq!(command(&requests[2]), "namecheap.domains.getList");
    assert_eq!(standin.email_type("example.org"), "MX");
    assert_eq!(standin.email_type("sub.example.org"), "MX");
}

#[tokio::test]
async fn create_and_delete_rewrite_the_whole_domain() {
    let zones = FakeZones::standard();
    let standin = Standin::new(zones.clone());
    let api = MockApi::serving(&standin, Standin::handle).await;
    let provider = provider(&api);
    let name = "_acme-challenge.Mail.example.org.";
    provider
        .append("example.org.", &txt(name, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 2);
    let mut get_hosts = globals();
    get_hosts.extend(pairs(&[
        ("Command", "namecheap.domains.dns.getHosts"),
        ("SLD", "example"),
        ("TLD", "org"),
    ]));
    assert_eq!(requests[0].form(), get_hosts);
    let form = requests[1].form();
    let mut head = globals();
    head.extend(pairs(&[
        ("Command", "namecheap.domains.dns.setHosts"),
        ("SLD", "example"),
        ("TLD", "org"),
        ("EmailType", "MX"),
    ]));
    assert_eq!(form[..8], head);
    let hosts = hosts_of(&form);
    assert_eq!(hosts.len(), 122, "every host is sent back");
    assert_eq!(
        hosts[0],
        ["host000", "A", "192.0.2.1", "10", "300"].map(String::from)
    );
    assert_eq!(
        hosts[120],
        ["_acme-challenge", "TXT", "pre-existing", "10", "300"].map(String::from)
    );
    assert_eq!(
        hosts[121],
        ["_acme-challenge.mail", "TXT", "token-one", "10", "60"].map(String::from)
    );
    assert_eq!(standin.email_type("example.org"), "MX");

    provider
        .delete("example.org.", &txt(name, "token-one", 60))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests[0].form(), get_hosts);
    let hosts = hosts_of(&requests[1].form());
    assert_eq!(hosts.len(), 121);
    assert!(hosts.iter().all(|h| h[2] != "token-one"));
    assert_eq!(requests.len(), 2);
    assert!(
        zones
            .records_named("_acme-challenge.mail.example.org")
            .is_empty()
    );
    assert_eq!(zones.records_in("example.org").len(), 121);
}

#[tokio::test]
async fn odd_values_of_other_records_survive_the_rewrite() {
    let zones = FakeZones::standard();
    let odd = "v=spf1 include:\"x&y\" <b> 'c' ~all";
    zones.add("example.org", "example.org", "TXT", odd, 1799);
    zones.add(
        "example.org",
        "example.org",
        "CAA",
        "0 issue \"letsencrypt.org\"",
        1800,
    );
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    provider
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "token", 60),
        )
        .await
        .unwrap();
    provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "token", 60),
        )
        .await
        .unwrap();
    let apex: Vec<(String, String, u64)> = zones
        .records_named("example.org")
        .into_iter()
        .map(|r| (r.rtype, r.value, r.ttl))
        .collect();
    assert_eq!(
        apex,
        [
            ("TXT".to_string(), odd.to_string(), 1799),
            (
                "CAA".to_string(),
                "0 issue \"letsencrypt.org\"".to_string(),
                1800
            ),
        ]
    );
}

#[tokio::test]
async fn ttls_are_kept_within_namecheaps_range() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    for (asked, given) in [(10, 60), (100_000, 60_000)] {
        let name = format!("_acme-challenge.t{asked}.example.org.");
        provider
            .append("example.org.", &txt(&name, "v", asked))
            .await
            .unwrap();
        assert_eq!(zones.records_named(&name)[0].ttl, given, "asked {asked}");
    }
}

#[tokio::test]
async fn nothing_is_written_when_nothing_changes() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    let name = "_acme-challenge.example.org.";
    provider
        .append("example.org.", &txt(name, "pre-existing", 60))
        .await
        .unwrap();
    provider
        .delete("example.org.", &txt(name, "gone", 60))
        .await
        .unwrap();
    let commands: Vec<String> = api.requests().iter().map(command).collect();
    assert_eq!(
        commands,
        [
            "namecheap.domains.dns.getHosts",
            "namecheap.domains.dns.getHosts"
        ]
    );
    assert_eq!(zones.txt_values(name), ["pre-existing"]);
}

#[tokio::test]
async fn concurrent_changes_do_not_undo_each_other() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    let name = "_acme-challenge.example.org.";
    let (one, two, old) = (
        txt(name, "one", 60),
        txt(name, "two", 60),
        txt(name, "pre-existing", 60),
    );
    let (a, b, c) = tokio::join!(
        provider.append("example.org.", &one),
        provider.append("example.org.", &two),
        provider.delete("example.org.", &old),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert_eq!(zones.txt_values(name), ["one", "two"]);
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let secret = "wrong-secret-key";
    let provider = provider_with(&api, secret, standin::CLIENT_IP, "");
    let error = check_refused_credentials(
        &api,
        secret,
        provider.zone_for("_acme-challenge.example.org."),
    )
    .await;
    assert_eq!(
        error.to_string(),
        "namecheap: list zones in zone -: not authorised: API Key is invalid or API access has not been enabled (error 1011102)"
    );
    let direct = Namecheap::new(
        standin::USER.into(),
        Secret::new(secret),
        None,
        &api.http_options(""),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(secret));
}

#[tokio::test]
async fn an_address_not_whitelisted_is_unauthorized_with_a_hint() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider_with(&api, standin::KEY, "198.51.100.9", "");
    let error = provider
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "namecheap: create TXT record in zone example.org.: not authorised: Parameter RequestIP is invalid (error 1011150) (whitelist 198.51.100.9 in Namecheap's API access settings)"
    );
}

#[tokio::test]
async fn the_client_address_is_found_once_when_not_configured() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = Namecheap::new(
        standin::USER.into(),
        Secret::new(standin::KEY),
        None,
        &api.http_options(""),
    )
    .unwrap()
    .with_ip_lookup(Url::parse(&api.url("getip")).unwrap());
    // Building does no I/O.
    assert!(api.requests().is_empty());
    let name = "_acme-challenge.example.org.";
    provider
        .append("example.org.", &txt(name, "found", 60))
        .await
        .unwrap();
    provider
        .delete("example.org.", &txt(name, "found", 60))
        .await
        .unwrap();
    let requests = api.requests();
    assert_eq!(requests[0].method, "GET");
    assert!(requests[0].path.starts_with("/getip"));
    assert_eq!(requests.iter().filter(|r| r.method == "GET").count(), 1);
    assert!(
        requests[1..]
            .iter()
            .all(|r| field(&r.form(), "ClientIp") == Some(standin::CLIENT_IP))
    );
    assert_eq!(zones.txt_values(name), ["pre-existing"]);

    // A lookup answering something else is an error telling what to do.
    let bad = Namecheap::new(
        standin::USER.into(),
        Secret::new(standin::KEY),
        None,
        &api.http_options(""),
    )
    .unwrap()
    .with_ip_lookup(Url::parse(&api.url("getip")).unwrap());
    api.fail_next(1, Response::text(200, "text/plain", "2001:db8::1\n"));
    let error = bad
        .append("example.org.", &txt(name, "v", 60))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("namecheap: create TXT record in zone example.org.: http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.ends_with("/getip answered \"2001:db8::1\", not an IPv4 address; set client_ip"),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
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
    assert_eq!(sent[0].body, sent[1].body, "the same command again");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    check_retries_server_errors(
        &api,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
        provider(&api).append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "after-errors", 60),
        ),
    )
    .await;

    let provider = provider_with(&api, standin::KEY, standin::CLIENT_IP, "retries 1");
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
        "namecheap: delete TXT record in zone example.org.: HTTP 503 Service Unavailable: <html>Unavailable</html> (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn api_errors_name_zone_and_operation() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider(&api);
    let error = provider
        .append("other.test.", &txt("_acme-challenge.other.test.", "v", 60))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "namecheap: create TXT record in zone other.test.: Domain not found (error 2019166)"
    );
    api.fail_next(
        1,
        standin::error(
            "2030288",
            "Cannot complete this command as this domain is not using proper DNS servers",
        ),
    );
    let error = provider
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Failed { .. }));
    assert_eq!(
        error.to_string(),
        "namecheap: delete TXT record in zone example.org.: Cannot complete this command as this domain is not using proper DNS servers (error 2030288) (the domain must use Namecheap's DNS)"
    );
}

#[tokio::test]
async fn an_unsuccessful_set_hosts_is_an_error() {
    let zones = FakeZones::standard();
    let standin = Standin::new(zones.clone());
    let api = MockApi::serving(&standin, Standin::handle).await;
    let backing = standin.clone();
    let api2 = MockApi::start(move |request| {
        if command(request) == "namecheap.domains.dns.setHosts" {
            return Response::text(
                200,
                "text/xml",
                &standin::envelope(
                    "namecheap.domains.dns.setHosts",
                    r#"<DomainDNSSetHostsResult Domain="example.org" IsSuccess="false" />"#,
                ),
            );
        }
        backing.handle(request)
    })
    .await;
    drop(api);
    let error = provider(&api2)
        .append(
            "example.org.",
            &txt("_acme-challenge.example.org.", "v", 60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "namecheap: create TXT record in zone example.org.: setHosts answered IsSuccess=\"false\""
    );
    api2.fail_next(
        1,
        Response::text(200, "text/html", "<html><body>maintenance</body></html>"),
    );
    let error = provider(&api2)
        .delete(
            "example.org.",
            &txt("_acme-challenge.example.org.", "pre-existing", 60),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "namecheap: delete TXT record in zone example.org.: unexpected reply from the API (no ApiResponse status): <html><body>maintenance</body></html>"
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn maddys_endpoint_form_is_accepted() {
    let zones = FakeZones::standard();
    let api = MockApi::serving(&Standin::new(zones.clone()), Standin::handle).await;
    let provider = provider_block(
        madmail_libdns_namecheap::register,
        "namecheap",
        &format!(
            "api_key {}\napi_username {}\nclient_ip {}\nendpoint {}",
            standin::KEY,
            standin::USER,
            standin::CLIENT_IP,
            api.url("xml.response")
        ),
    )
    .unwrap();
    assert_eq!(
        provider
            .zone_for("_acme-challenge.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    assert!(api.requests().iter().all(|r| r.path == "/xml.response"));
}

#[tokio::test]
async fn unreachable_api() {
    let url = closed_endpoint("").await;
    let provider = provider_block(
        madmail_libdns_namecheap::register,
        "namecheap",
        &format!(
            "api_key {}\napi_username {}\nclient_ip {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::KEY,
            standin::USER,
            standin::CLIENT_IP
        ),
    )
    .unwrap();
    check_unreachable(
        "namecheap: list zones in zone -",
        provider.zone_for("_acme-challenge.example.org."),
    )
    .await;
}

//! `libdns.googleclouddns` against a local stand-in of Google's token endpoint and the Cloud
//! DNS v1 API (`standin/mod.rs`): the JWT it signs, the requests it sends, paging, RRset
//! read-modify-write, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_googleclouddns::{Credentials, GoogleCloudDns};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Request, Response, check_provider, provider_block,
};
use madmail_libdns_http::{HttpOptions, parse_endpoint};
use serde_json::{Value, json};
use standin::{Google, PROJECT};

const ZONES: &str = "/dns/v1/projects/madmail-test/managedZones";
const EXAMPLE: &str = "/dns/v1/projects/madmail-test/managedZones/zone-example-org";

struct Setup {
    zones: FakeZones,
    google: Google,
    api: MockApi,
    _dir: tempfile::TempDir,
    key_file: PathBuf,
}

async fn setup() -> Setup {
    let zones = FakeZones::standard();
    let google = Google::new(&zones);
    let handler = google.clone();
    let api = MockApi::start(move |request| handler.handle(request)).await;
    with_api(zones, google, api)
}

/// A stand-in whose handler is `handler` (wrapping the stand-in's).
async fn setup_with(
    handler: impl Fn(&Google, &FakeZones, &Request) -> Response + Send + Sync + 'static,
) -> Setup {
    let zones = FakeZones::standard();
    let google = Google::new(&zones);
    let (g, z) = (google.clone(), zones.clone());
    let api = MockApi::start(move |request| handler(&g, &z, request)).await;
    with_api(zones, google, api)
}

fn with_api(zones: FakeZones, google: Google, api: MockApi) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    std::fs::write(
        &key_file,
        standin::key_json(&api.url("token"), &standin::key().pem),
    )
    .unwrap();
    Setup {
        zones,
        google,
        api,
        _dir: dir,
        key_file,
    }
}

impl Setup {
    fn provider(&self, extra: &str) -> Arc<dyn DnsProvider> {
        provider_block(
            madmail_libdns_googleclouddns::register,
            "googleclouddns",
            &format!(
                "project {PROJECT}\nservice_account_json {}\nendpoint {}\n{extra}",
                self.key_file.display(),
                self.api.url("dns/v1")
            ),
        )
        .unwrap()
    }

    fn direct(&self, credentials: Credentials) -> GoogleCloudDns {
        GoogleCloudDns::new(
            PROJECT,
            credentials,
            &HttpOptions::with_endpoint(parse_endpoint(&self.api.url("dns/v1")).unwrap()),
        )
        .unwrap()
    }
}

fn txt(value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: "_acme-challenge.example.org.".into(),
        value: value.into(),
        ttl: Duration::from_secs(120),
    }
}

fn lines(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| r.line()).collect()
}

fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let s = setup().await;
    // The pre-existing RRset has TTL 300, which the added values share.
    check_provider(
        s.provider("").as_ref(),
        &s.zones,
        Expect {
            lists_zones: true,
            ttl: 300,
        },
    )
    .await;
    let requests = s.api.requests();
    // One access token, for every API call.
    assert_eq!(s.google.tokens_issued(), 1);
    assert_eq!(requests[0].line(), "POST /token");
    for request in &requests[1..] {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer ya29.c.test-access-token-1"),
            "{}",
            request.line()
        );
    }
    // 122 zones, 100 a page: two pages.
    assert_eq!(
        lines(&requests[1..3]),
        [
            format!("GET {ZONES}?maxResults=100"),
            format!("GET {ZONES}?maxResults=100&pageToken={}", page_token(100)),
        ]
    );
}

#[tokio::test]
async fn the_token_request_is_a_signed_jwt() {
    let s = setup().await;
    let provider = s.provider("");
    provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap();
    let token = s.api.requests()[0].clone();
    assert_eq!(token.line(), "POST /token");
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = token.form();
    assert_eq!(form.len(), 2, "{form:?}");
    assert_eq!(
        form[0],
        (
            "grant_type".to_string(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()
        )
    );
    assert_eq!(form[1].0, "assertion");
    let parts: Vec<&str> = form[1].1.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(
        decode(parts[0]),
        json!({"alg": "RS256", "typ": "JWT", "kid": standin::KEY_ID})
    );
    let claims = decode(parts[1]);
    assert_eq!(claims["iss"], standin::CLIENT_EMAIL);
    assert_eq!(claims["aud"], s.api.url("token"));
    assert_eq!(claims["scope"], standin::SCOPE);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && now - iat < 60, "iat {iat}, now {now}");
    assert_eq!(claims.as_object().unwrap().len(), 5, "{claims}");
}

#[tokio::test]
async fn create_and_delete_requests() {
    let s = setup().await;
    let provider = s.provider("");
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = s.api.take_requests();
    assert_eq!(
        lines(&requests),
        [
            "POST /token".to_string(),
            format!("GET {ZONES}?dnsName=example.org.&maxResults=100"),
            format!("GET {EXAMPLE}/rrsets?name=_acme-challenge.example.org.&type=TXT"),
            format!("POST {EXAMPLE}/changes"),
            format!("GET {EXAMPLE}/changes/1"),
        ]
    );
    let change = &requests[3];
    assert_eq!(change.header("content-type"), Some("application/json"));
    // The set as listed goes, the set with the new value comes, in one change.
    assert_eq!(
        change.json(),
        json!({
            "additions": [{"name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
                "rrdatas": ["\"pre-existing\"", "\"token-one\""]}],
            "deletions": [{"name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
                "rrdatas": ["\"pre-existing\""], "kind": "dns#resourceRecordSet"}]
        })
    );
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing", "token-one"]
    );

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = s.api.take_requests();
    assert_eq!(
        lines(&requests),
        [
            format!("GET {ZONES}?dnsName=example.org.&maxResults=100"),
            format!("GET {EXAMPLE}/rrsets?name=_acme-challenge.example.org.&type=TXT"),
            format!("POST {EXAMPLE}/changes"),
            format!("GET {EXAMPLE}/changes/2"),
        ]
    );
    assert_eq!(
        requests[2].json(),
        json!({
            "additions": [{"name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
                "rrdatas": ["\"pre-existing\""]}],
            "deletions": [{"name": "_acme-challenge.example.org.", "type": "TXT", "ttl": 300,
                "rrdatas": ["\"pre-existing\"", "\"token-one\""], "kind": "dns#resourceRecordSet"}]
        })
    );
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_new_set_gets_the_records_ttl_and_goes_when_empty() {
    let s = setup().await;
    let provider = s.provider("");
    let record = TxtRecord {
        fqdn: "_acme-challenge.www.Example.org.".into(),
        value: "fresh \"quoted\"".into(),
        ttl: Duration::from_secs(60),
    };
    provider.append("example.org.", &record).await.unwrap();
    let change = s
        .api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/changes"))
        .unwrap();
    assert_eq!(
        change.json(),
        json!({"additions": [{"name": "_acme-challenge.www.example.org.", "type": "TXT",
            "ttl": 60, "rrdatas": ["\"fresh \\\"quoted\\\"\""]}]})
    );
    let stored = s.zones.records_named("_acme-challenge.www.example.org");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].value.as_str(), stored[0].ttl),
        ("fresh \"quoted\"", 60)
    );

    provider.delete("example.org.", &record).await.unwrap();
    let change = s
        .api
        .take_requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        change.json(),
        json!({"deletions": [{"name": "_acme-challenge.www.example.org.", "type": "TXT",
            "ttl": 60, "rrdatas": ["\"fresh \\\"quoted\\\"\""], "kind": "dns#resourceRecordSet"}]})
    );
    assert!(
        s.zones
            .records_named("_acme-challenge.www.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn present_values_and_missing_values_change_nothing() {
    let s = setup().await;
    let provider = s.provider("");
    // Present already.
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    // Not there, on a name with a set and on a name without one.
    provider
        .delete("example.org.", &txt("never-added"))
        .await
        .unwrap();
    let mut missing = txt("never-added");
    missing.fqdn = "_acme-challenge.nothing.example.org.".into();
    provider.delete("example.org.", &missing).await.unwrap();
    let requests = s.api.requests();
    assert!(
        requests.iter().all(|r| !r.path.ends_with("/changes")),
        "{:?}",
        lines(&requests)
    );
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_concurrent_writer_makes_it_read_again() {
    // Between our read and our change another writer adds a value (412 conditionNotMet on
    // our deletion), then, for a new name, creates the set first (409 alreadyExists).
    let posts = Arc::new(AtomicUsize::new(0));
    let counter = posts.clone();
    let s = setup_with(move |google, zones, request| {
        if request.method == "POST" && request.path.ends_with("/changes") {
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    zones.add(
                        "example.org",
                        "_acme-challenge.example.org",
                        "TXT",
                        "other-writer",
                        300,
                    );
                }
                2 => {
                    zones.add(
                        "example.org",
                        "_acme-challenge.new.example.org",
                        "TXT",
                        "first",
                        300,
                    );
                }
                _ => {}
            }
        }
        google.handle(request)
    })
    .await;
    let provider = s.provider("");
    provider.append("example.org.", &txt("mine")).await.unwrap();
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["mine", "other-writer", "pre-existing"]
    );
    let mut new = txt("second");
    new.fqdn = "_acme-challenge.new.example.org.".into();
    provider.append("example.org.", &new).await.unwrap();
    assert_eq!(
        s.zones.txt_values("_acme-challenge.new.example.org"),
        ["first", "second"]
    );
    assert_eq!(posts.load(Ordering::SeqCst), 4);
    let changes: Vec<Value> = s
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/changes"))
        .map(Request::json)
        .collect();
    // The retried change deletes the set as it was read the second time.
    assert_eq!(
        changes[1]["deletions"][0]["rrdatas"],
        json!(["\"pre-existing\"", "\"other-writer\""])
    );
    assert!(changes[2].get("deletions").is_none());
    assert_eq!(changes[3]["deletions"][0]["rrdatas"], json!(["\"first\""]));
}

#[tokio::test]
async fn concurrent_values_on_one_name_both_survive() {
    let s = setup_with(|google, _, request| {
        if request.path.ends_with("/rrsets") {
            std::thread::sleep(Duration::from_millis(200));
        }
        google.handle(request)
    })
    .await;
    let provider = s.provider("");
    let (one, two) = (txt("wildcard"), txt("apex"));
    let (a, b) = tokio::join!(
        provider.append("example.org.", &one),
        provider.append("example.org.", &two)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["apex", "pre-existing", "wildcard"]
    );
    // Serialised: no change was refused.
    assert_eq!(
        s.api
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/changes"))
            .count(),
        2
    );
}

#[tokio::test]
async fn private_zones_are_not_used() {
    let s = setup().await;
    s.zones.add_zone("internal.example.org");
    let provider = s.provider("");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.mx.internal.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    let error = provider
        .append(
            "internal.example.org.",
            &TxtRecord {
                fqdn: "_acme-challenge.mx.internal.example.org.".into(),
                value: "x".into(),
                ttl: Duration::from_secs(60),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnsError::NoZone { name, .. } if name == "internal.example.org."),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_unauthorized_and_never_printed() {
    let s = setup().await;
    let json = standin::key_json(&s.api.url("token"), standin::other_key_pem());
    let credentials = Credentials::from_json(&json).unwrap();
    let provider = s.direct(credentials);
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "googleclouddns: list zones (getting an access token) in zone -: not authorised: HTTP 400 Bad Request: invalid_grant: Invalid JWT Signature."
    );
    // Not retried: one request.
    assert_eq!(s.api.requests().len(), 1);
    let printed = format!("{provider:?}");
    let key_body = standin::other_key_pem().lines().nth(1).unwrap();
    assert!(!printed.contains(key_body), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[tokio::test]
async fn a_revoked_token_is_renewed_once() {
    let s = setup().await;
    let provider = s.provider("");
    provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap();
    s.api.take_requests();
    s.google.revoke_tokens();
    provider
        .append("example.org.", &txt("after-revocation"))
        .await
        .unwrap();
    let requests = s.api.take_requests();
    assert_eq!(
        lines(&requests[..3]),
        [
            format!("GET {ZONES}?dnsName=example.org.&maxResults=100"),
            "POST /token".to_string(),
            format!("GET {ZONES}?dnsName=example.org.&maxResults=100"),
        ]
    );
    assert_eq!(
        requests[2].header("authorization"),
        Some("Bearer ya29.c.test-access-token-2")
    );
    assert_eq!(s.google.tokens_issued(), 2);

    // A token refused again right after renewal is an authorisation error, not a loop.
    let s = setup_with(|google, _, request| {
        if request.path.starts_with("/dns/") {
            google.revoke_tokens();
        }
        google.handle(request)
    })
    .await;
    let error = s
        .provider("")
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("googleclouddns: list zones in zone -: not authorised: HTTP 401 Unauthorized: Request had invalid authentication credentials."),
        "{error}"
    );
    assert!(!error.to_string().contains("ya29"), "{error}");
    assert_eq!(s.google.tokens_issued(), 2);
}

#[tokio::test]
async fn a_project_the_account_cannot_use_is_unauthorized() {
    let s = setup().await;
    let credentials = Credentials::from_file(&s.key_file).unwrap();
    let provider = GoogleCloudDns::new(
        "someone-else",
        credentials,
        &HttpOptions::with_endpoint(parse_endpoint(&s.api.url("dns/v1")).unwrap()),
    )
    .unwrap();
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "googleclouddns: list zones in zone -: not authorised: HTTP 403 Forbidden: The caller does not have permission (forbidden)"
    );
}

#[tokio::test]
async fn user_credentials_and_the_metadata_server() {
    let s = setup().await;
    let user = Credentials::from_json(&standin::user_json(&s.api.url("token"))).unwrap();
    let provider = s.direct(user);
    provider
        .append("example.org.", &txt("from-a-user"))
        .await
        .unwrap();
    let token = s.api.take_requests().remove(0);
    let mut form = token.form();
    form.sort();
    assert_eq!(
        form,
        [
            ("client_id".to_string(), standin::CLIENT_ID.to_string()),
            (
                "client_secret".to_string(),
                standin::CLIENT_SECRET.to_string()
            ),
            ("grant_type".to_string(), "refresh_token".to_string()),
            (
                "refresh_token".to_string(),
                standin::REFRESH_TOKEN.to_string()
            ),
        ]
    );
    assert!(!format!("{provider:?}").contains(standin::REFRESH_TOKEN));

    let metadata = Credentials::metadata(&s.api.addr().to_string()).unwrap();
    let provider = s.direct(metadata);
    provider
        .delete("example.org.", &txt("from-a-user"))
        .await
        .unwrap();
    let token = s.api.take_requests().remove(0);
    assert_eq!(token.line(), format!("GET {}", standin::METADATA_PATH));
    assert_eq!(token.header("metadata-flavor"), Some("Google"));
    assert_eq!(
        s.zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );

    // A refused refresh token.
    let json =
        standin::user_json(&s.api.url("token")).replace(standin::REFRESH_TOKEN, "1//revoked");
    let provider = s.direct(Credentials::from_json(&json).unwrap());
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert!(!error.to_string().contains("revoked"), "{error}");
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let s = setup().await;
    let provider = s.provider("");
    provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap();
    s.api.take_requests();
    s.api.fail_next(
        1,
        standin::error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'",
        )
        .with_header("retry-after", "1"),
    );
    let started = Instant::now();
    provider
        .append("example.org.", &txt("after-wait"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        s.zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-wait".to_string())
    );
    let requests = s.api.requests();
    assert_eq!(requests[0].line(), requests[1].line());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let s = setup().await;
    let provider = s.provider("");
    provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap();
    s.api.fail_next(
        2,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
    );
    provider
        .append("example.org.", &txt("after-errors"))
        .await
        .unwrap();

    let provider = s.provider("retries 1");
    s.api.take_requests();
    // The first request asks for a token (a new provider): let it through.
    provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap();
    s.api.take_requests();
    s.api
        .fail_next(2, standin::error(503, "backendError", "Backend Error"));
    let error = provider
        .append("example.org.", &txt("never"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "googleclouddns: create TXT record in zone example.org.: HTTP 503 Service Unavailable: Backend Error (backendError) (gave up after 2 attempts)"
    );
    assert_eq!(s.api.requests().len(), 2);
}

#[tokio::test]
async fn refused_changes_are_reported() {
    let s = setup_with(|google, _, request| {
        if request.method == "POST" && request.path.ends_with("/changes") {
            return standin::error(
                400,
                "invalid",
                "Invalid value for 'entity.change.additions[0].rrdata[1]': '\"x\"'",
            );
        }
        google.handle(request)
    })
    .await;
    let error = s
        .provider("")
        .append("example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "googleclouddns: create TXT record in zone example.org.: HTTP 400 Bad Request: Invalid value for 'entity.change.additions[0].rrdata[1]': '\"x\"' (invalid)"
    );
}

#[tokio::test]
async fn names_outside_the_zone_are_refused_before_any_call() {
    let s = setup().await;
    let error = s
        .provider("")
        .append("sub.example.org.", &txt("misplaced"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "googleclouddns: create TXT record in zone sub.example.org.: _acme-challenge.example.org. is not in the zone"
    );
    assert!(s.api.requests().is_empty());
}

#[tokio::test]
async fn unreachable_api() {
    let s = setup().await;
    let url = s.api.url("dns/v1");
    let key_file = s.key_file.clone();
    drop(s.api);
    let provider = provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        &format!(
            "project {PROJECT}\nservice_account_json {}\nendpoint {url}\nretries 0\ntimeout 2s",
            key_file.display()
        ),
    )
    .unwrap();
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "googleclouddns: list zones (getting an access token) in zone -: request failed"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_standin_checks_what_google_checks() {
    let s = setup().await;
    // A plain HTTP/1.1 request (reqwest would need a TLS provider chosen).
    let addr = s.api.addr();
    let post = |assertion: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        let status: u16 = reply[9..12].parse().unwrap();
        (status, reply)
    };
    let account = |json: String| match Credentials::from_json(&json).unwrap() {
        Credentials::ServiceAccount(account) => account,
        other => panic!("{other:?}"),
    };
    let now = std::time::SystemTime::now();
    let good = account(standin::key_json(&s.api.url("token"), &standin::key().pem));
    assert_eq!(post(good.assertion(now).unwrap()).await.0, 200);
    // Expired.
    let (status, body) = post(good.assertion(now - Duration::from_secs(7200)).unwrap()).await;
    assert_eq!(status, 400);
    assert!(body.contains("short-lived token"), "{body}");
    // Tampered claims.
    let signed = good.assertion(now).unwrap();
    let parts: Vec<&str> = signed.split('.').collect();
    let claims = URL_SAFE_NO_PAD.encode(
        String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
            .unwrap()
            .replace("dns-01@", "admin@"),
    );
    let (status, body) = post(format!("{}.{claims}.{}", parts[0], parts[2])).await;
    assert_eq!(
        (status, body.contains("Invalid JWT Signature.")),
        (400, true),
        "{body}"
    );
    // Another audience, another account.
    let elsewhere = account(standin::key_json(
        "https://oauth2.googleapis.com/token",
        &standin::key().pem,
    ));
    let (status, body) = post(elsewhere.assertion(now).unwrap()).await;
    assert_eq!((status, body.contains("audience")), (400, true), "{body}");
    let stranger = account(
        standin::key_json(&s.api.url("token"), &standin::key().pem).replace(
            standin::CLIENT_EMAIL,
            "stranger@example.iam.gserviceaccount.com",
        ),
    );
    let (status, body) = post(stranger.assertion(now).unwrap()).await;
    assert_eq!(
        (status, body.contains("account not found")),
        (400, true),
        "{body}"
    );
    assert_eq!(s.google.tokens_issued(), 1);
}

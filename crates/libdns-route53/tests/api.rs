//! `libdns.route53` against a local stand-in of the Route 53 REST API over `FakeZones`
//! (`standin/mod.rs`, which verifies SigV4 signatures): the requests the SDK sends for it,
//! zone lookup paging, RRset read-modify-write, and the documented error replies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::testing::{
    Expect, FakeZones, MockApi, Request, Response, check_provider, provider_block,
};
use standin::Route53;

async fn standin(zones: &FakeZones) -> (Route53, MockApi) {
    let route53 = Route53::new(zones);
    let handler = route53.clone();
    let api = MockApi::start(move |request| handler.handle(request)).await;
    (route53, api)
}

fn provider_with(api: &MockApi, secret: &str, extra: &str) -> Arc<dyn DnsProvider> {
    provider_block(
        madmail_libdns_route53::register,
        "route53",
        &format!(
            "access_key_id {}\nsecret_access_key {secret}\nendpoint {}\n{extra}",
            standin::ACCESS_KEY_ID,
            api.url("")
        ),
    )
    .unwrap()
}

fn provider(api: &MockApi, extra: &str) -> Arc<dyn DnsProvider> {
    provider_with(api, standin::SECRET_ACCESS_KEY, extra)
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

fn body(request: &Request) -> String {
    String::from_utf8_lossy(&request.body).into_owned()
}

const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

#[tokio::test]
async fn behaves_as_every_provider_must() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
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
    let today = requests[0].header("x-amz-date").unwrap()[..8].to_owned();
    for request in &requests {
        let authorization = request.header("authorization").unwrap();
        assert!(
            authorization.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={}/{today}/us-east-1/route53/aws4_request, SignedHeaders=",
                standin::ACCESS_KEY_ID
            )),
            "{authorization}"
        );
        assert!(!authorization.contains(standin::SECRET_ACCESS_KEY));
    }
    // The zone of a name is found by asking for the name, then its parents.
    assert_eq!(
        lines(&requests[..3]),
        [
            "GET /2013-04-01/hostedzonesbyname?dnsname=_acme-challenge.mail.example.org.&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=mail.example.org.&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=example.org.&maxitems=100",
        ]
    );
}

#[tokio::test]
async fn create_and_delete_requests() {
    let zones = FakeZones::standard();
    let (route53, api) = standin(&zones).await;
    let zone = route53.zone_id("example.org");
    let provider = provider(&api, "");
    provider
        .append("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    let change_id = "C000000000001";
    assert_eq!(
        lines(&requests),
        [
            "GET /2013-04-01/hostedzonesbyname?dnsname=example.org.&maxitems=100".to_string(),
            format!(
                "GET /2013-04-01/hostedzone/{zone}/rrset?name=_acme-challenge.example.org.&type=TXT&maxitems=1"
            ),
            format!("POST /2013-04-01/hostedzone/{zone}/rrset"),
            format!("GET /2013-04-01/change/{change_id}"),
        ]
    );
    assert_eq!(requests[2].header("content-type"), Some("application/xml"));
    // The whole set with the new value, keeping the set's TTL.
    assert_eq!(
        body(&requests[2]),
        format!(
            "<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch><Comment>madmail dns-01 challenge</Comment><Changes><Change><Action>UPSERT</Action><ResourceRecordSet><Name>_acme-challenge.example.org.</Name><Type>TXT</Type><TTL>300</TTL><ResourceRecords><ResourceRecord><Value>&quot;pre-existing&quot;</Value></ResourceRecord><ResourceRecord><Value>&quot;token-one&quot;</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        )
    );

    provider
        .delete("example.org.", &txt("token-one"))
        .await
        .unwrap();
    let requests = api.take_requests();
    assert_eq!(requests.len(), 4, "{:?}", lines(&requests));
    assert!(
        body(&requests[2]).contains("<Action>UPSERT</Action><ResourceRecordSet><Name>_acme-challenge.example.org.</Name><Type>TXT</Type><TTL>300</TTL><ResourceRecords><ResourceRecord><Value>&quot;pre-existing&quot;</Value></ResourceRecord></ResourceRecords>"),
        "{}",
        body(&requests[2])
    );
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn a_new_set_gets_the_records_ttl_and_is_deleted_as_it_is() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let provider = provider(&api, "wait_insync off");
    let record = TxtRecord {
        fqdn: "_acme-challenge.www.Example.org.".into(),
        value: "fresh".into(),
        ttl: Duration::from_secs(60),
    };
    provider.append("example.org.", &record).await.unwrap();
    let stored = zones.records_named("_acme-challenge.www.example.org");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].value.as_str(), stored[0].ttl), ("fresh", 60));
    provider.delete("example.org.", &record).await.unwrap();
    let requests = api.take_requests();
    // Without wait_insync: no GetChange.
    assert!(requests.iter().all(|r| !r.path.contains("/change/")));
    let delete = requests.last().unwrap();
    assert!(
        body(delete).contains("<Action>DELETE</Action><ResourceRecordSet><Name>_acme-challenge.www.example.org.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>&quot;fresh&quot;</Value></ResourceRecord></ResourceRecords>"),
        "{}",
        body(delete)
    );
    assert!(
        zones
            .records_named("_acme-challenge.www.example.org")
            .is_empty()
    );
}

#[tokio::test]
async fn present_values_and_missing_values_change_nothing() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let provider = provider(&api, "");
    provider
        .append("example.org.", &txt("pre-existing"))
        .await
        .unwrap();
    provider
        .delete("example.org.", &txt("never-added"))
        .await
        .unwrap();
    // The listing starts at a name without TXT and answers with the next set: not ours.
    let mut elsewhere = txt("x");
    elsewhere.fqdn = "_acme-challenge.host000.example.org.".into();
    provider.delete("example.org.", &elsewhere).await.unwrap();
    assert!(api.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(
        zones.txt_values("_acme-challenge.example.org"),
        ["pre-existing"]
    );
}

#[tokio::test]
async fn private_zones_and_zone_listing_pages() {
    let zones = FakeZones::standard();
    let (route53, api) = standin(&zones).await;
    // Private zones share the name of a public one (its id sorts first here).
    for _ in 0..150 {
        route53.add_private_zone("sub.example.org");
    }
    let provider = provider(&api, "");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.sub.example.org.")
            .await
            .unwrap(),
        "sub.example.org."
    );
    // A name with only private zones (two pages of them) is no zone: its parent is.
    for _ in 0..150 {
        route53.add_private_zone("internal.example.org");
    }
    api.take_requests();
    assert_eq!(
        provider
            .zone_for("_acme-challenge.mx.internal.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    let requests = lines(&api.take_requests());
    assert_eq!(
        requests,
        [
            "GET /2013-04-01/hostedzonesbyname?dnsname=_acme-challenge.mx.internal.example.org.&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=mx.internal.example.org.&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=internal.example.org.&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=internal.example.org.&hostedzoneid=ZPRIV00251&maxitems=100",
            "GET /2013-04-01/hostedzonesbyname?dnsname=example.org.&maxitems=100",
        ]
    );
}

#[tokio::test]
async fn a_concurrent_writer_makes_the_delete_read_again() {
    let zones = FakeZones::standard();
    let route53 = Route53::new(&zones);
    let handler = route53.clone();
    let shared = zones.clone();
    // Between our read and our DELETE another writer adds a value.
    let api = MockApi::start(move |request| {
        if request.method == "POST"
            && String::from_utf8_lossy(&request.body).contains("DELETE")
            && shared.txt_values("_acme-challenge.new.example.org").len() == 1
        {
            shared.add(
                "example.org",
                "_acme-challenge.new.example.org",
                "TXT",
                "other-writer",
                60,
            );
        }
        handler.handle(request)
    })
    .await;
    let provider = provider(&api, "");
    let mut record = txt("mine");
    record.fqdn = "_acme-challenge.new.example.org.".into();
    record.ttl = Duration::from_secs(60);
    provider.append("example.org.", &record).await.unwrap();
    provider.delete("example.org.", &record).await.unwrap();
    assert_eq!(
        zones.txt_values("_acme-challenge.new.example.org"),
        ["other-writer"]
    );
    let posts: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(body)
        .collect();
    assert_eq!(posts.len(), 3);
    assert!(posts[1].contains("<Action>DELETE</Action>"));
    assert!(posts[2].contains("<Action>UPSERT</Action>"));
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_never_printed() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let provider = provider_with(&api, "wrong-secret-access-key", "");
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "route53: list zones in zone -: not authorised: HTTP 403: SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    );
    assert!(!error.to_string().contains("wrong-secret"));
    // Not retried: one request.
    assert_eq!(api.take_requests().len(), 1);
    // Nor printed by the provider's Debug, before or after its client exists.
    let mut options = madmail_libdns_route53::Route53Options::with_keys(
        standin::ACCESS_KEY_ID,
        "wrong-secret-access-key",
    );
    options.endpoint = Some(madmail_libdns_http::parse_endpoint(&api.url("")).unwrap());
    let direct = madmail_libdns_route53::Route53::new(options);
    assert!(!format!("{direct:?}").contains("wrong-secret"));
    direct
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    let printed = format!("{direct:?}");
    assert!(!printed.contains("wrong-secret"), "{printed}");
    api.take_requests();

    let provider = provider_block(
        madmail_libdns_route53::register,
        "route53",
        &format!(
            "access_key_id AKIANOTKNOWN\nsecret_access_key {}\nendpoint {}",
            standin::SECRET_ACCESS_KEY,
            api.url("")
        ),
    )
    .unwrap();
    let error = provider
        .append("example.org.", &txt("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "route53: create TXT record in zone example.org.: not authorised: HTTP 403: InvalidClientTokenId: The security token included in the request is invalid."
    );
}

#[tokio::test]
async fn throttling_is_retried() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let provider = provider(&api, "");
    api.fail_next(1, standin::error(400, "Throttling", "Rate exceeded"));
    api.fail_next(
        1,
        standin::error(
            400,
            "PriorRequestNotComplete",
            "The request was rejected because Route 53 was still processing a prior request.",
        ),
    );
    provider
        .append("example.org.", &txt("after-wait"))
        .await
        .unwrap();
    assert!(
        zones
            .txt_values("_acme-challenge.example.org")
            .contains(&"after-wait".to_string())
    );
    let requests = api.requests();
    assert_eq!(requests[0].line(), requests[1].line());
    assert_eq!(requests[1].line(), requests[2].line());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let provider = provider(&api, "");
    api.fail_next(
        2,
        Response::text(502, "text/html", "<html>Bad gateway</html>"),
    );
    provider
        .append("example.org.", &txt("after-errors"))
        .await
        .unwrap();

    let provider = self::provider(&api, "retries 1");
    api.take_requests();
    api.fail_next(
        2,
        standin::error(500, "InternalFailure", "An internal error occurred."),
    );
    let started = Instant::now();
    let error = provider
        .append("example.org.", &txt("never"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "route53: create TXT record in zone example.org.: HTTP 500: InternalFailure: An internal error occurred."
    );
    assert_eq!(api.requests().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn refused_changes_are_reported() {
    let zones = FakeZones::standard();
    let route53 = Route53::new(&zones);
    let handler = route53.clone();
    let api = MockApi::start(move |request| {
        if request.method == "POST" {
            return standin::error(
                400,
                "InvalidChangeBatch",
                "[Invalid Resource Record: 'FATAL problem: TXTRDATATooLong encountered with ...']",
            );
        }
        handler.handle(request)
    })
    .await;
    let provider = provider(&api, "");
    let error = provider
        .append("example.org.", &txt("refused"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "route53: create TXT record in zone example.org.: HTTP 400: InvalidChangeBatch: [Invalid Resource Record: 'FATAL problem: TXTRDATATooLong encountered with ...']"
    );
    // A name outside the zone is refused before any call.
    api.take_requests();
    let error = provider
        .append("sub.example.org.", &txt("misplaced"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "route53: create TXT record in zone sub.example.org.: _acme-challenge.example.org. is not in the zone"
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn unreachable_api() {
    let zones = FakeZones::standard();
    let (_route53, api) = standin(&zones).await;
    let url = api.url("");
    drop(api);
    let provider = provider_block(
        madmail_libdns_route53::register,
        "route53",
        &format!(
            "access_key_id {}\nsecret_access_key {}\nendpoint {url}\nretries 0\ntimeout 2s",
            standin::ACCESS_KEY_ID,
            standin::SECRET_ACCESS_KEY
        ),
    )
    .unwrap();
    let error = provider
        .zone_for("_acme-challenge.example.org.")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("route53: list zones in zone -: "),
        "{text}"
    );
    assert!(!text.contains(standin::SECRET_ACCESS_KEY), "{text}");
}

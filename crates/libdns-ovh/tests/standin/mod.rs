//! A stand-in for the OVHcloud API v1's DNS zone endpoints, after OVH's API console and its
//! clients (go-ovh, python-ovh): every call but `GET /auth/time` is signed
//! (`X-Ovh-Application`, `X-Ovh-Consumer`, `X-Ovh-Timestamp`, `X-Ovh-Signature` =
//! `$1$` + SHA-1 of `AS+CK+METHOD+URL+BODY+TIMESTAMP`, checked here against OVH's clock, which
//! runs [`CLOCK_SKEW`] seconds ahead of the local one), consumer keys carry access rules, record
//! listings are bare arrays of ids without paging, TXT targets come back quoted, and changes
//! stay unpublished until `POST /domain/zone/{zone}/refresh`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response};
use serde_json::{Value, json};

pub const APPLICATION_KEY: &str = "ovh-test-application-key";
pub const APPLICATION_SECRET: &str = "ovh-test-application-secret-0123";
/// A consumer key allowed everything under `/domain/zone`, listing zones included.
pub const CONSUMER_KEY: &str = "ovh-test-consumer-key-full";
/// A consumer key with exactly the rules the libdns module's README asks for: no zone listing.
pub const RECORDS_ONLY_KEY: &str = "ovh-test-consumer-key-records";
/// A consumer key whose rules name the zone `example.org` only.
pub const EXAMPLE_ORG_KEY: &str = "ovh-test-consumer-key-example-org";
pub const PREFIX: &str = "/1.0/";
/// How far OVH's clock is ahead of the local one here: a client that signs with its own clock
/// instead of OVH's (`GET /auth/time`) is refused.
pub const CLOCK_SKEW: i64 = 1000;
/// How far a request's timestamp may be from OVH's clock. OVH does not document the window
/// (unconfirmed); its clients all sync to `/auth/time`, so any small window fits.
const TIMESTAMP_WINDOW: i64 = 60;

const FIELD_TYPES: [&str; 19] = [
    "A", "AAAA", "CAA", "CNAME", "DKIM", "DMARC", "DNAME", "HTTPS", "LOC", "MX", "NAPTR", "NS",
    "PTR", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT",
];

/// The zones behind the stand-in and which of them have unpublished changes.
#[derive(Clone)]
pub struct Ovh {
    pub zones: FakeZones,
    unpublished: Arc<Mutex<BTreeSet<String>>>,
}

impl Ovh {
    pub fn new(zones: &FakeZones) -> Ovh {
        Ovh {
            zones: zones.clone(),
            unpublished: Arc::default(),
        }
    }

    /// The zones changed since their last refresh.
    pub fn unpublished(&self) -> Vec<String> {
        self.unpublished.lock().unwrap().iter().cloned().collect()
    }

    fn changed(&self, zone: &str) {
        self.unpublished.lock().unwrap().insert(zone.to_owned());
    }
}

/// OVH's clock.
pub fn server_time() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_secs()).unwrap() + CLOCK_SKEW
}

/// The signature OVH expects, computed from its parts.
pub fn signature(
    consumer_key: &str,
    method: &str,
    url: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    let mut data = format!("{APPLICATION_SECRET}+{consumer_key}+{method}+{url}+").into_bytes();
    data.extend_from_slice(body);
    data.extend_from_slice(format!("+{timestamp}").as_bytes());
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("$1${hex}")
}

/// The id OVH would show for a record of the store (`rec000123` is 123).
pub fn record_id(record: &FakeRecord) -> u64 {
    record.id.trim_start_matches("rec").parse().unwrap()
}

fn auth_error(status: u16, code: &str, message: &str) -> Response {
    let http_code = match status {
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        _ => "403 Forbidden",
    };
    Response::json(
        status,
        &json!({"errorCode": code, "httpCode": http_code, "message": message}),
    )
}

fn api_error(status: u16, class: &str, message: &str) -> Response {
    Response::json(status, &json!({"class": class, "message": message}))
}

fn no_service() -> Response {
    api_error(404, "Client::NotFound", "This service does not exist")
}

/// The access rules of a consumer key (method, path pattern with `*`), as the account owner
/// validated them.
fn rules(consumer_key: &str) -> Option<Vec<(&'static str, &'static str)>> {
    match consumer_key {
        CONSUMER_KEY => Some(vec![
            ("GET", "/domain/zone"),
            ("GET", "/domain/zone/*"),
            ("POST", "/domain/zone/*"),
            ("PUT", "/domain/zone/*"),
            ("DELETE", "/domain/zone/*"),
        ]),
        RECORDS_ONLY_KEY => Some(vec![
            ("GET", "/domain/zone/*/record"),
            ("GET", "/domain/zone/*/record/*"),
            ("POST", "/domain/zone/*/record"),
            ("DELETE", "/domain/zone/*/record/*"),
            ("POST", "/domain/zone/*/refresh"),
        ]),
        EXAMPLE_ORG_KEY => Some(vec![
            ("GET", "/domain/zone/example.org/*"),
            ("POST", "/domain/zone/example.org/*"),
            ("DELETE", "/domain/zone/example.org/*"),
        ]),
        _ => None,
    }
}

/// `*` stands for any characters, `/` included, as in OVH's access rules.
fn matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            let Some(rest) = path.strip_prefix(head) else {
                return false;
            };
            (1..=rest.len()).any(|i| rest.is_char_boundary(i) && matches(tail, &rest[i..]))
        }
    }
}

/// Answers one request.
pub fn handle(ovh: &Ovh, request: &Request) -> Response {
    let Some(route) = request.path.strip_prefix(PREFIX.trim_end_matches('/')) else {
        return api_error(404, "Client::NotFound", "Got an invalid (or empty) URL");
    };
    if request.method == "GET" && route == "/auth/time" {
        return Response::text(200, "application/json", &server_time().to_string());
    }
    if request.header("x-ovh-application") != Some(APPLICATION_KEY) {
        return auth_error(403, "INVALID_KEY", "This application key is invalid");
    }
    let Some(consumer_key) = request.header("x-ovh-consumer") else {
        return auth_error(401, "NOT_CREDENTIAL", "You must login first");
    };
    let Some(rules) = rules(consumer_key) else {
        return auth_error(403, "NOT_CREDENTIAL", "This credential does not exist");
    };
    let (Some(timestamp), Some(sent)) = (
        request.header("x-ovh-timestamp"),
        request.header("x-ovh-signature"),
    ) else {
        return auth_error(400, "INVALID_SIGNATURE", "Invalid signature");
    };
    // The response OVH's clients document for a clock that is off (unconfirmed wording).
    match timestamp.parse::<i64>() {
        Ok(t) if (t - server_time()).abs() <= TIMESTAMP_WINDOW => {}
        _ => return auth_error(400, "QUERY_TIME_OUT", "Query out of time"),
    }
    let url = format!(
        "http://{}{}{}",
        request.header("host").unwrap_or_default(),
        request.path,
        request
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    if sent
        != signature(
            consumer_key,
            &request.method,
            &url,
            &request.body,
            timestamp,
        )
    {
        return auth_error(400, "INVALID_SIGNATURE", "Invalid signature");
    }
    if !rules
        .iter()
        .any(|(method, pattern)| *method == request.method && matches(pattern, route))
    {
        return auth_error(403, "NOT_GRANTED_CALL", "This call has not been granted");
    }
    let segments: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domain", "zone"]) => {
            let names: Vec<String> = ovh.zones.zones().into_iter().map(|z| z.name).collect();
            Response::json(200, &json!(names))
        }
        (method, ["domain", "zone", zone, rest @ ..]) => {
            let Some(zone) = ovh.zones.zone_by_name(zone) else {
                return no_service();
            };
            zone_call(ovh, &zone.name, method, rest, request)
        }
        _ => api_error(404, "Client::NotFound", "Got an invalid (or empty) URL"),
    }
}

fn record_json(record: &FakeRecord) -> Value {
    let target = if record.rtype == "TXT" {
        // Since 2025 OVH returns TXT targets quoted, however they were sent.
        names::quote_txt(&record.value)
    } else {
        record.value.clone()
    };
    json!({
        "id": record_id(record),
        "zone": record.zone,
        "subDomain": names::relative(&record.name, &record.zone),
        "fieldType": record.rtype,
        "target": target,
        "ttl": record.ttl,
    })
}

fn zone_call(ovh: &Ovh, zone: &str, method: &str, rest: &[&str], request: &Request) -> Response {
    match (method, rest) {
        ("GET", ["record"]) => {
            let mut records = ovh.zones.records_in(zone);
            if let Some(field_type) = request.query_param("fieldType") {
                if !FIELD_TYPES.contains(&field_type.as_str()) {
                    return api_error(
                        400,
                        "Client::BadRequest",
                        &format!(
                            "Invalid value for fieldType: {field_type} is not a valid zone.NamedResolutionFieldTypeEnum"
                        ),
                    );
                }
                records.retain(|r| r.rtype == field_type);
            }
            if let Some(sub_domain) = request.query_param("subDomain") {
                records.retain(|r| names::relative(&r.name, zone) == sub_domain);
            }
            let ids: Vec<u64> = records.iter().map(record_id).collect();
            Response::json(200, &json!(ids))
        }
        ("GET", ["record", id]) => match find(ovh, zone, id) {
            Ok(record) => Response::json(200, &record_json(&record)),
            Err(response) => response,
        },
        ("POST", ["record"]) => create(ovh, zone, request),
        ("DELETE", ["record", id]) => match find(ovh, zone, id) {
            Ok(record) => {
                ovh.zones.remove(&record.id);
                ovh.changed(zone);
                Response::json(200, &Value::Null)
            }
            Err(response) => response,
        },
        ("POST", ["refresh"]) => {
            if !request.body.is_empty() {
                return api_error(400, "Client::BadRequest", "This call does not take a body");
            }
            ovh.unpublished.lock().unwrap().remove(zone);
            Response::json(200, &Value::Null)
        }
        _ => api_error(404, "Client::NotFound", "Got an invalid (or empty) URL"),
    }
}

fn find(ovh: &Ovh, zone: &str, id: &str) -> Result<FakeRecord, Response> {
    let Ok(number) = id.parse::<u64>() else {
        return Err(api_error(
            400,
            "Client::BadRequest",
            &format!("Invalid value for id: {id} is not a long"),
        ));
    };
    ovh.zones
        .records_in(zone)
        .into_iter()
        .find(|r| record_id(r) == number)
        .ok_or_else(|| {
            Response::json(
                404,
                &json!({"message": format!("The requested object (id = {number}) does not exist")}),
            )
        })
}

fn create(ovh: &Ovh, zone: &str, request: &Request) -> Response {
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return api_error(400, "Client::BadRequest", "Invalid content type");
    }
    let body = request.json();
    let (Some(field_type), Some(target)) = (body["fieldType"].as_str(), body["target"].as_str())
    else {
        return api_error(
            400,
            "Client::BadRequest",
            "Missing parameter(s): fieldType, target",
        );
    };
    if !FIELD_TYPES.contains(&field_type) {
        return api_error(400, "Client::BadRequest", "Invalid value for fieldType");
    }
    let sub_domain = body["subDomain"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    if sub_domain.ends_with('.')
        || !sub_domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'))
    {
        return api_error(
            400,
            "Client::BadRequest",
            &format!("Invalid subdomain: {sub_domain}"),
        );
    }
    // 0 stands for the zone's default TTL; OVH refuses less than 60 s otherwise (as the libdns
    // module assumes; the exact error is unconfirmed).
    let ttl = match body["ttl"].as_u64() {
        None | Some(0) => 3600,
        Some(ttl) if ttl < 60 => {
            return api_error(400, "Client::BadRequest", "Invalid TTL: minimum is 60");
        }
        Some(ttl) => ttl,
    };
    if target.matches('"').count() % 2 == 1 {
        return api_error(
            400,
            "Client::BadRequest",
            "Invalid target: unbalanced quotes",
        );
    }
    let value = if field_type == "TXT" {
        names::unquote_txt(target)
    } else {
        target.to_owned()
    };
    let name = if sub_domain.is_empty() {
        zone.to_owned()
    } else {
        format!("{sub_domain}.{zone}")
    };
    // OVH keeps a second record with the same value: no "already exists".
    let record = ovh.zones.add(zone, &name, field_type, &value, ttl);
    ovh.changed(zone);
    Response::json(200, &record_json(&record))
}

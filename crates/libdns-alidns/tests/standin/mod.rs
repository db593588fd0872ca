//! A stand-in for Alibaba Cloud DNS's RPC API (version 2015-01-09), after Alibaba's API
//! reference: every call is `GET` or `POST` to `/` with the action and its parameters in the
//! query or a form body, signed with HMAC-SHA1 (signature version 1.0, checked here by
//! recomputing it), with a timestamp within 15 minutes and a nonce used once; the actions
//! `DescribeDomains` (at most 100 a page), `DescribeDomainRecords` (at most 500 a page, fuzzy
//! keyword filters), `AddDomainRecord` (TTL 600 to 86400 on the free edition, duplicates
//! refused) and `DeleteDomainRecord`; errors as `{RequestId, HostId, Code, Message}`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::Engine;
use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, page_of};
use serde_json::{Value, json};

pub const KEY_ID: &str = "LTAI5tStandInKeyId";
pub const KEY_SECRET: &str = "standin-access-key-secret-0123456789";
/// How far a request's timestamp may be from the server's clock.
const TIMESTAMP_WINDOW: i64 = 15 * 60;
const RECORD_TYPES: [&str; 10] = [
    "A",
    "AAAA",
    "CNAME",
    "MX",
    "TXT",
    "NS",
    "SRV",
    "CAA",
    "REDIRECT_URL",
    "FORWARD_URL",
];

/// The zones behind the stand-in and the nonces it has seen.
#[derive(Clone)]
pub struct AliDns {
    pub zones: FakeZones,
    nonces: Arc<Mutex<HashSet<String>>>,
}

impl AliDns {
    pub fn new(zones: &FakeZones) -> AliDns {
        AliDns {
            zones: zones.clone(),
            nonces: Arc::default(),
        }
    }
}

/// The `RecordId` Alibaba would show for a record of the store (`rec000123` is `"123"`).
pub fn record_id(record: &FakeRecord) -> String {
    record
        .id
        .trim_start_matches("rec")
        .trim_start_matches('0')
        .to_owned()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({
            "RequestId": "8E8A2DB5-0000-4000-8000-STANDIN",
            "HostId": "alidns.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Alidns"),
        }),
    )
}

fn ok(mut body: Value) -> Response {
    body["RequestId"] = json!("0E0F2E6B-0000-4000-8000-STANDIN");
    Response::json(200, &body)
}

/// RFC 3986 percent-encoding with upper-case hex, as the signature wants it.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The signature of these parameters (without `Signature`) for `method`.
pub fn signature(method: &str, params: &BTreeMap<String, String>) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let to_sign = format!("{method}&{}&{}", encode("/"), encode(&query.join("&")));
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{KEY_SECRET}&").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, to_sign.as_bytes()))
}

/// `YYYY-MM-DDThh:mm:ssZ` as seconds since 1970.
fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::from(number(0..4)?),
        month,
        u8::try_from(number(8..10)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(number(11..13)?).ok()?,
        u8::try_from(number(14..16)?).ok()?,
        u8::try_from(number(17..19)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(clock).assume_utc().unix_timestamp())
}

/// The parameters of a request: the form body of a POST, the query of a GET.
pub fn params(request: &Request) -> BTreeMap<String, String> {
    let pairs = match request.method.as_str() {
        "POST" => request.form(),
        _ => request.query_pairs(),
    };
    pairs.into_iter().collect()
}

/// Answers one request.
pub fn handle(api: &AliDns, request: &Request) -> Response {
    if request.path != "/" || !matches!(request.method.as_str(), "GET" | "POST") {
        return error(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    if request.method == "POST"
        && request.header("content-type") != Some("application/x-www-form-urlencoded")
    {
        return error(400, "InvalidParameter", "Unsupported content type.");
    }
    let mut params = params(request);
    for required in [
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
    ] {
        if !params.contains_key(required) {
            return error(
                400,
                "MissingParameter",
                &format!(
                    "The input parameter \"{required}\" that is mandatory for processing this request is not supplied."
                ),
            );
        }
    }
    let Some(sent) = params.remove("Signature") else {
        return error(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        );
    };
    if params["Version"] != "2015-01-09" {
        return error(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    if params["Format"] != "JSON" {
        // The real API also speaks XML; clients of this stand-in must ask for JSON.
        return error(
            400,
            "InvalidParameter",
            "The stand-in answers Format=JSON only.",
        );
    }
    if params["SignatureMethod"] != "HMAC-SHA1" || params["SignatureVersion"] != "1.0" {
        return error(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        );
    }
    if params["AccessKeyId"] != KEY_ID {
        return error(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let Some(timestamp) = parse_timestamp(&params["Timestamp"]) else {
        return error(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        );
    };
    if (timestamp - time::OffsetDateTime::now_utc().unix_timestamp()).abs() > TIMESTAMP_WINDOW {
        return error(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    let expected = signature(&request.method, &params);
    if sent != expected {
        return error(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }
    if !api
        .nonces
        .lock()
        .unwrap()
        .insert(params["SignatureNonce"].clone())
    {
        return error(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    match params["Action"].as_str() {
        "DescribeDomains" => describe_domains(api, &params),
        "DescribeDomainRecords" => describe_records(api, &params),
        "AddDomainRecord" => add_record(api, &params),
        "DeleteDomainRecord" => delete_record(api, &params),
        _ => error(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        ),
    }
}

/// `PageNumber` (from 1) and `PageSize` (default 20, at most `max`; the wording of the error
/// for a larger one is unconfirmed).
fn paging(params: &BTreeMap<String, String>, max: usize) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                &format!("Specified parameter {name} is not valid."),
            )
        }),
    };
    let page = number("PageNumber", 1)?;
    let size = number("PageSize", 20)?;
    if size > max {
        return Err(error(
            400,
            "InvalidParameter",
            &format!("Specified parameter PageSize is not valid: at most {max}."),
        ));
    }
    Ok((page, size))
}

fn describe_domains(api: &AliDns, params: &BTreeMap<String, String>) -> Response {
    let (number, size) = match paging(params, 100) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut zones = api.zones.zones();
    if let Some(keyword) = params.get("KeyWord") {
        let exact = params.get("SearchMode").is_some_and(|m| m == "EXACT");
        zones.retain(|z| {
            if exact {
                z.name == *keyword
            } else {
                z.name.contains(keyword.as_str())
            }
        });
    }
    let domains: Vec<Value> = page_of(&zones, number, size)
        .iter()
        .map(|z| {
            json!({
                "DomainId": z.id, "DomainName": z.name, "PunyCode": z.name, "VersionCode": "mianfei",
                "VersionName": "Alibaba Cloud DNS", "AliDomain": false,
                "RecordCount": api.zones.records_in(&z.name).len(),
            })
        })
        .collect();
    ok(json!({
        "TotalCount": zones.len(), "PageNumber": number, "PageSize": size,
        "Domains": {"Domain": domains},
    }))
}

fn record_json(record: &FakeRecord) -> Value {
    json!({
        "RecordId": record_id(record), "RR": names::relative_or_at(&record.name, &record.zone),
        "Type": record.rtype, "Value": record.value, "TTL": record.ttl, "Line": "default",
        "Status": "ENABLE", "Locked": false, "DomainName": record.zone, "Weight": 1,
    })
}

fn no_domain() -> Response {
    error(
        400,
        "InvalidDomainName.NoExist",
        "The specified domain name does not exist. Refresh the page and try again.",
    )
}

fn describe_records(api: &AliDns, params: &BTreeMap<String, String>) -> Response {
    let Some(zone) = params
        .get("DomainName")
        .and_then(|d| api.zones.zone_by_name(d))
    else {
        return no_domain();
    };
    let (number, size) = match paging(params, 500) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let contains =
        |text: &str, keyword: &str| text.to_lowercase().contains(&keyword.to_lowercase());
    let mut records = api.zones.records_in(&zone.name);
    let rr = |r: &FakeRecord| names::relative_or_at(&r.name, &r.zone);
    match params.get("SearchMode").map_or("LIKE", String::as_str) {
        // LIKE and EXACT search KeyWord only, ignoring the other keywords.
        "LIKE" => {
            if let Some(keyword) = params.get("KeyWord") {
                records.retain(|r| contains(&rr(r), keyword) || contains(&r.value, keyword));
            }
        }
        "EXACT" => {
            if let Some(keyword) = params.get("KeyWord") {
                records.retain(|r| rr(r) == *keyword);
            }
        }
        "COMBINATION" | "ADVANCED" => {
            if let Some(keyword) = params.get("RRKeyWord") {
                records.retain(|r| contains(&rr(r), keyword));
            }
            if let Some(rtype) = params.get("TypeKeyWord") {
                records.retain(|r| r.rtype.eq_ignore_ascii_case(rtype));
            }
            if let Some(keyword) = params.get("ValueKeyWord") {
                records.retain(|r| contains(&r.value, keyword));
            }
        }
        _ => {
            return error(
                400,
                "InvalidParameter",
                "Specified parameter SearchMode is not valid.",
            );
        }
    }
    let list: Vec<Value> = page_of(&records, number, size)
        .iter()
        .map(record_json)
        .collect();
    ok(json!({
        "TotalCount": records.len(), "PageNumber": number, "PageSize": size,
        "DomainRecords": {"Record": list},
    }))
}

fn add_record(api: &AliDns, params: &BTreeMap<String, String>) -> Response {
    let Some(zone) = params
        .get("DomainName")
        .and_then(|d| api.zones.zone_by_name(d))
    else {
        return no_domain();
    };
    let (Some(rr), Some(rtype), Some(value)) =
        (params.get("RR"), params.get("Type"), params.get("Value"))
    else {
        return error(400, "MissingParameter", "RR, Type and Value are mandatory.");
    };
    if rr.is_empty()
        || rr.ends_with('.')
        || !rr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*@".contains(c))
    {
        return error(400, "InvalidRR", "The host record is invalid.");
    }
    if !RECORD_TYPES.contains(&rtype.as_str()) {
        return error(400, "InvalidRecordType", "The record type is invalid.");
    }
    let ttl = match params.get("TTL").map(|t| t.parse::<u64>()) {
        None => 600,
        Some(Ok(ttl)) if (600..=86_400).contains(&ttl) => ttl,
        Some(_) => {
            return error(
                400,
                "QuotaExceeded.TTL",
                "The specified TTL is invalid. A valid TTL must be in the range of 600 to 86400.",
            );
        }
    };
    let name = if rr == "@" {
        zone.name.clone()
    } else {
        format!("{}.{}", rr.to_ascii_lowercase(), zone.name)
    };
    if api
        .zones
        .records_named(&name)
        .iter()
        .any(|r| r.rtype == *rtype && r.value == *value)
    {
        return error(
            400,
            "DomainRecordDuplicate",
            "The DNS record already exists.",
        );
    }
    let record = api.zones.add(&zone.name, &name, rtype, value, ttl);
    ok(json!({"RecordId": record_id(&record)}))
}

fn delete_record(api: &AliDns, params: &BTreeMap<String, String>) -> Response {
    let Some(id) = params.get("RecordId") else {
        return error(
            400,
            "MissingRecordId",
            "RecordId is mandatory for this action.",
        );
    };
    match api
        .zones
        .records()
        .into_iter()
        .find(|r| record_id(r) == *id)
    {
        Some(record) => {
            api.zones.remove(&record.id);
            ok(json!({"RecordId": id}))
        }
        None => error(
            400,
            "DomainRecordNotBelongToUser",
            "The DNS record does not exist in your account",
        ),
    }
}

//! A stand-in for the Route 53 REST API (2013-04-01) over `FakeZones`, after the AWS API
//! reference and the SigV4 documentation:
//!
//! - every request must carry a valid AWS Signature Version 4 (`AWS4-HMAC-SHA256`, scope
//!   `DATE/us-east-1/route53/aws4_request`, `X-Amz-Date`), recomputed here with the test's
//!   secret: an unknown key id is 403 `InvalidClientTokenId`, a wrong signature 403
//!   `SignatureDoesNotMatch`;
//! - `GET /2013-04-01/hostedzonesbyname?dnsname=&hostedzoneid=&maxitems=`: zones in order of
//!   their reversed labels (then id), STARTING at `dnsname` (not a filter), at most
//!   `maxitems` (≤ 100), with `IsTruncated`, `NextDNSName`, `NextHostedZoneId`; private zones
//!   ([`Route53::add_private_zone`]) are listed too, with `PrivateZone` true;
//! - `GET /2013-04-01/hostedzone/{Id}`;
//! - `GET /2013-04-01/hostedzone/{Id}/rrset?name=&type=&maxitems=`: sets in order of reversed
//!   labels then type, starting at `name`/`type`; `type` without `name` is `InvalidInput`;
//! - `POST /2013-04-01/hostedzone/{Id}/rrset`: a `ChangeResourceRecordSetsRequest` whose
//!   changes are all checked before any is made: `CREATE` of an existing set, `DELETE` of a
//!   missing one or of one whose TTL and values differ, names outside the zone, TXT values
//!   not in quotes or with strings over 255 bytes, and TTLs out of range are
//!   `InvalidChangeBatch` (all messages of a batch in one, `[a, b]`); the reply is a `PENDING`
//!   change;
//! - `GET /2013-04-01/change/{Id}`: `INSYNC` for a change it made, `NoSuchChange` otherwise.
//!
//! Errors are `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message>
//! </Error><RequestId>..</RequestId></ErrorResponse>` with the documented status.

#![allow(dead_code)] // each test file uses a part

use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeZones, Request, Response};
use serde::Deserialize;

pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const PREFIX: &str = "/2013-04-01/";
const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const MAX_ITEMS: usize = 100;

#[derive(Default)]
struct State {
    /// Private zones: (id, name without dot).
    private: Vec<(String, String)>,
    changes: Vec<String>,
}

/// The stand-in: `FakeZones` plus private zones and the changes made.
#[derive(Clone)]
pub struct Route53 {
    zones: FakeZones,
    state: Arc<Mutex<State>>,
}

/// A hosted zone as listed: (id, name without dot, private).
type ListedZone = (String, String, bool);

impl Route53 {
    pub fn new(zones: &FakeZones) -> Route53 {
        Route53 {
            zones: zones.clone(),
            state: Arc::default(),
        }
    }

    /// A private hosted zone (VPC only) named `name`; it holds no records here.
    pub fn add_private_zone(&self, name: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let id = format!("ZPRIV{:05}", state.private.len() + 1);
        state.private.push((id.clone(), names::bare(name)));
        id
    }

    /// The Route 53 id of a `FakeZones` zone.
    pub fn zone_id(&self, name: &str) -> String {
        let zone = self.zones.zone_by_name(name).unwrap();
        route53_id(&zone.id)
    }

    fn all_zones(&self) -> Vec<ListedZone> {
        let mut zones: Vec<ListedZone> = self
            .zones
            .zones()
            .into_iter()
            .map(|z| (route53_id(&z.id), z.name, false))
            .collect();
        for (id, name) in &self.state.lock().unwrap().private {
            zones.push((id.clone(), name.clone(), true));
        }
        zones.sort_by(|a, b| (reversed(&a.1), &a.0).cmp(&(reversed(&b.1), &b.0)));
        zones
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        if let Err(response) = check_signature(request) {
            return response;
        }
        let Some(segments) = request.segments_after(PREFIX) else {
            return error(404, "UnknownOperationException", "Unknown operation");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["hostedzonesbyname"]) => self.zones_by_name(request),
            ("GET", ["hostedzone", id]) => match self.zone(id) {
                Some(zone) => Response::text(
                    200,
                    "text/xml",
                    &format!(
                        "<?xml version=\"1.0\"?>\n<GetHostedZoneResponse xmlns=\"{NS}\"><HostedZone>{}</HostedZone><DelegationSet><NameServers><NameServer>ns-1.awsdns-01.org</NameServer></NameServers></DelegationSet></GetHostedZoneResponse>",
                        zone_xml(&zone)
                    ),
                ),
                None => no_such_zone(id),
            },
            ("GET", ["hostedzone", id, "rrset"]) => match self.zone(id) {
                Some(zone) => self.list_sets(request, &zone),
                None => no_such_zone(id),
            },
            ("POST", ["hostedzone", id, "rrset"]) => match self.zone(id) {
                Some(zone) => self.change(request, &zone),
                None => no_such_zone(id),
            },
            ("GET", ["change", id]) => {
                if self.state.lock().unwrap().changes.iter().any(|c| c == id) {
                    Response::text(
                        200,
                        "text/xml",
                        &format!(
                            "<?xml version=\"1.0\"?>\n<GetChangeResponse xmlns=\"{NS}\"><ChangeInfo><Id>/change/{id}</Id><Status>INSYNC</Status><SubmittedAt>2026-01-01T00:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
                        ),
                    )
                } else {
                    error(
                        404,
                        "NoSuchChange",
                        &format!("A change with the specified change ID does not exist: {id}"),
                    )
                }
            }
            _ => error(404, "UnknownOperationException", "Unknown operation"),
        }
    }

    fn zone(&self, id: &str) -> Option<ListedZone> {
        self.all_zones().into_iter().find(|z| z.0 == id)
    }

    fn zones_by_name(&self, request: &Request) -> Response {
        let max = match max_items(request) {
            Ok(max) => max,
            Err(e) => return e,
        };
        let dns_name = request.query_param("dnsname");
        let zone_id = request.query_param("hostedzoneid");
        if zone_id.is_some() && dns_name.is_none() {
            return error(
                400,
                "InvalidInput",
                "The input is not valid: hostedzoneid requires dnsname",
            );
        }
        let all = self.all_zones();
        let start = match &dns_name {
            None => 0,
            Some(name) => {
                let key = reversed(&names::bare(name));
                all.iter()
                    .position(|z| {
                        let zone_key = reversed(&z.1);
                        zone_key > key
                            || (zone_key == key
                                && zone_id.as_deref().is_none_or(|id| z.0.as_str() >= id))
                    })
                    .unwrap_or(all.len())
            }
        };
        let page: Vec<&ListedZone> = all.iter().skip(start).take(max).collect();
        let mut body = format!(
            "<?xml version=\"1.0\"?>\n<ListHostedZonesByNameResponse xmlns=\"{NS}\"><HostedZones>"
        );
        for zone in &page {
            body.push_str(&format!("<HostedZone>{}</HostedZone>", zone_xml(zone)));
        }
        body.push_str("</HostedZones>");
        if let Some(name) = &dns_name {
            body.push_str(&format!("<DNSName>{}</DNSName>", escape(name)));
        }
        if let Some(id) = &zone_id {
            body.push_str(&format!("<HostedZoneId>{}</HostedZoneId>", escape(id)));
        }
        match all.get(start + max) {
            Some(next) => body.push_str(&format!(
                "<IsTruncated>true</IsTruncated><NextDNSName>{}.</NextDNSName><NextHostedZoneId>{}</NextHostedZoneId>",
                next.1, next.0
            )),
            None => body.push_str("<IsTruncated>false</IsTruncated>"),
        }
        body.push_str(&format!(
            "<MaxItems>{max}</MaxItems></ListHostedZonesByNameResponse>"
        ));
        Response::text(200, "text/xml", &body)
    }

    /// The zone's record sets, in Route 53's order: (name with dot, type, ttl, values).
    fn sets(&self, zone: &ListedZone) -> Vec<(String, String, u64, Vec<String>)> {
        let mut sets: Vec<(String, String, u64, Vec<String>)> = Vec::new();
        if zone.2 {
            return sets;
        }
        for record in self.zones.records_in(&zone.1) {
            let name = format!("{}.", record.name);
            let data = if record.rtype == "TXT" {
                names::quote_txt(&record.value)
            } else {
                record.value.clone()
            };
            match sets.iter_mut().find(|s| s.0 == name && s.1 == record.rtype) {
                Some(set) => set.3.push(data),
                None => sets.push((name, record.rtype.clone(), record.ttl, vec![data])),
            }
        }
        sets.sort_by(|a, b| (reversed(&a.0), &a.1).cmp(&(reversed(&b.0), &b.1)));
        sets
    }

    fn list_sets(&self, request: &Request, zone: &ListedZone) -> Response {
        let max = match max_items(request) {
            Ok(max) => max,
            Err(e) => return e,
        };
        let name = request.query_param("name");
        let rtype = request.query_param("type");
        if rtype.is_some() && name.is_none() {
            return error(
                400,
                "InvalidInput",
                "The input is not valid: type requires name",
            );
        }
        let sets = self.sets(zone);
        let start = match &name {
            None => 0,
            Some(name) => {
                let key = (
                    reversed(&names::bare(name)),
                    rtype.clone().unwrap_or_default(),
                );
                sets.iter()
                    .position(|s| (reversed(&s.0), s.1.clone()) >= key)
                    .unwrap_or(sets.len())
            }
        };
        let mut body = format!(
            "<?xml version=\"1.0\"?>\n<ListResourceRecordSetsResponse xmlns=\"{NS}\"><ResourceRecordSets>"
        );
        for (name, rtype, ttl, values) in sets.iter().skip(start).take(max) {
            body.push_str(&format!(
                "<ResourceRecordSet><Name>{}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>",
                escape(name)
            ));
            for value in values {
                body.push_str(&format!(
                    "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                    escape(value)
                ));
            }
            body.push_str("</ResourceRecords></ResourceRecordSet>");
        }
        body.push_str("</ResourceRecordSets>");
        match sets.get(start + max) {
            Some(next) => body.push_str(&format!(
                "<IsTruncated>true</IsTruncated><NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
                escape(&next.0),
                next.1
            )),
            None => body.push_str("<IsTruncated>false</IsTruncated>"),
        }
        body.push_str(&format!(
            "<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"
        ));
        Response::text(200, "text/xml", &body)
    }

    fn change(&self, request: &Request, zone: &ListedZone) -> Response {
        let text = String::from_utf8_lossy(&request.body);
        let parsed: ChangeRequest = match quick_xml::de::from_str(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                return error(400, "InvalidInput", &format!("Invalid XML ; {e}"));
            }
        };
        let changes = parsed.change_batch.changes.change;
        if changes.is_empty() {
            return error(
                400,
                "InvalidInput",
                "1 validation error detected: Value null at 'changeBatch.changes' failed to satisfy constraint: Member must not be null",
            );
        }
        // Checked against the zone as it will be after the changes before each one.
        let mut sets = self.sets(zone);
        let mut messages = Vec::new();
        for change in &changes {
            let set = &change.resource_record_set;
            let name = format!("{}.", names::bare(&set.name));
            let describe = format!("[name='{name}', type='{}']", set.rtype);
            if !names::in_zone(&name, &zone.1) {
                messages.push(format!(
                    "RRSet with DNS name {name} is not permitted in zone {}.",
                    zone.1
                ));
                continue;
            }
            let values: Vec<String> = set
                .resource_records
                .as_ref()
                .map(|r| r.record.iter().map(|r| r.value.clone()).collect())
                .unwrap_or_default();
            let Some(ttl) = set.ttl.filter(|t| (0..=2_147_483_647).contains(t)) else {
                messages.push(format!("Invalid TTL in {describe}"));
                continue;
            };
            if values.is_empty() {
                messages.push(format!("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords]], but found none in Change with {describe}"));
                continue;
            }
            if set.rtype == "TXT"
                && let Some(bad) = values.iter().find(|v| !valid_txt(v))
            {
                messages.push(format!("Invalid Resource Record: 'FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with '{bad}''"));
                continue;
            }
            let position = sets.iter().position(|s| s.0 == name && s.1 == set.rtype);
            match (change.action.as_str(), position) {
                ("CREATE", Some(_)) => messages.push(format!(
                    "Tried to create resource record set {describe} but it already exists"
                )),
                ("DELETE", None) => messages.push(format!(
                    "Tried to delete resource record set {describe} but it was not found"
                )),
                ("DELETE", Some(i)) => {
                    let mut current = sets[i].3.clone();
                    let mut given = values.clone();
                    current.sort();
                    given.sort();
                    if sets[i].2 != ttl as u64 || current != given {
                        messages.push(format!("Tried to delete resource record set {describe} but the values provided do not match the current values"));
                    } else {
                        sets.remove(i);
                    }
                }
                ("CREATE" | "UPSERT", position) => {
                    if let Some(i) = position {
                        sets.remove(i);
                    }
                    sets.push((name, set.rtype.clone(), ttl as u64, values));
                }
                (action, _) => messages.push(format!("Invalid action {action}")),
            }
        }
        if !messages.is_empty() {
            // Route 53 used to answer with an `<InvalidChangeBatch>` document; since 2024 it
            // is the standard error document, the messages in brackets.
            return error(
                400,
                "InvalidChangeBatch",
                &format!("[{}]", messages.join(", ")),
            );
        }
        // Apply: replace every changed name/type by its new state.
        for change in &changes {
            let set = &change.resource_record_set;
            let name = names::bare(&set.name);
            for record in self.zones.records_named(&name) {
                if record.rtype == set.rtype {
                    self.zones.remove(&record.id);
                }
            }
            if let Some(new) = sets
                .iter()
                .find(|s| names::bare(&s.0) == name && s.1 == set.rtype)
            {
                for value in &new.3 {
                    let value = if set.rtype == "TXT" {
                        names::unquote_txt(value)
                    } else {
                        value.clone()
                    };
                    self.zones.add(&zone.1, &name, &set.rtype, &value, new.2);
                }
            }
        }
        let id = {
            let mut state = self.state.lock().unwrap();
            let id = format!("C{:012}", state.changes.len() + 1);
            state.changes.push(id.clone());
            id
        };
        Response::text(
            200,
            "text/xml",
            &format!(
                "<?xml version=\"1.0\"?>\n<ChangeResourceRecordSetsResponse xmlns=\"{NS}\"><ChangeInfo><Id>/change/{id}</Id><Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00.000Z</SubmittedAt><Comment>{}</Comment></ChangeInfo></ChangeResourceRecordSetsResponse>",
                escape(parsed.change_batch.comment.as_deref().unwrap_or_default())
            ),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeRequest {
    change_batch: XmlBatch,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlBatch {
    #[serde(default)]
    comment: Option<String>,
    changes: XmlChanges,
}

#[derive(Debug, Deserialize)]
struct XmlChanges {
    #[serde(rename = "Change", default)]
    change: Vec<XmlChange>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlChange {
    action: String,
    resource_record_set: XmlSet,
}

#[derive(Debug, Deserialize)]
struct XmlSet {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL", default)]
    ttl: Option<i64>,
    #[serde(rename = "ResourceRecords", default)]
    resource_records: Option<XmlRecords>,
}

#[derive(Debug, Deserialize)]
struct XmlRecords {
    #[serde(rename = "ResourceRecord", default)]
    record: Vec<XmlRecord>,
}

#[derive(Debug, Deserialize)]
struct XmlRecord {
    #[serde(rename = "Value")]
    value: String,
}

/// `zone0012` (a `FakeZones` id) as a Route 53 id.
fn route53_id(fake: &str) -> String {
    format!("Z{}", fake.trim_start_matches("zone"))
}

fn zone_xml(zone: &ListedZone) -> String {
    format!(
        "<Id>/hostedzone/{}</Id><Name>{}.</Name><CallerReference>ref-{}</CallerReference><Config><PrivateZone>{}</PrivateZone></Config><ResourceRecordSetCount>2</ResourceRecordSetCount>",
        zone.0, zone.1, zone.0, zone.2
    )
}

/// A name's labels in reverse (`www.example.org` → `org.example.www`), Route 53's sort key.
fn reversed(name: &str) -> String {
    let bare = names::bare(name);
    let mut labels: Vec<&str> = bare.split('.').collect();
    labels.reverse();
    labels.join(".")
}

fn max_items(request: &Request) -> Result<usize, Response> {
    match request.query_param("maxitems") {
        None => Ok(MAX_ITEMS),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_ITEMS)),
            _ => Err(error(400, "InvalidInput", &format!("Invalid maxitems {v}"))),
        },
    }
}

/// Quoted character-strings of at most 255 bytes, separated by spaces.
fn valid_txt(data: &str) -> bool {
    let mut chars = data.chars();
    let mut in_string = false;
    let mut seen = false;
    let mut length = 0;
    while let Some(c) = chars.next() {
        match (c, in_string) {
            ('"', false) => {
                in_string = true;
                seen = true;
                length = 0;
            }
            ('"', true) => in_string = false,
            ('\\', true) => match chars.next() {
                Some(next) => length += next.len_utf8(),
                None => return false,
            },
            (c, true) => length += c.len_utf8(),
            (' ', false) => {}
            (_, false) => return false,
        }
        if length > 255 {
            return false;
        }
    }
    seen && !in_string
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn no_such_zone(id: &str) -> Response {
    error(
        404,
        "NoSuchHostedZone",
        &format!("No hosted zone found with ID: {id}"),
    )
}

/// Route 53's error document.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    Response::text(
        status,
        "text/xml",
        &format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>a7b3c9d1-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
            escape(message)
        ),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: everything but unreserved characters.
fn uri_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Verifies the request's SigV4 signature with the test's key.
fn check_signature(request: &Request) -> Result<(), Response> {
    let missing = || {
        error(
            403,
            "MissingAuthenticationToken",
            "Missing Authentication Token",
        )
    };
    let authorization = request.header("authorization").ok_or_else(missing)?;
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(missing)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(error(
            400,
            "IncompleteSignature",
            "Authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let scope_parts: Vec<&str> = credential.splitn(2, '/').collect();
    let [key_id, scope] = scope_parts.as_slice() else {
        return Err(error(400, "IncompleteSignature", "Credential is malformed"));
    };
    if *key_id != ACCESS_KEY_ID {
        return Err(error(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    let scope_fields: Vec<&str> = scope.split('/').collect();
    let [date, region, service, "aws4_request"] = scope_fields.as_slice() else {
        return Err(error(
            400,
            "IncompleteSignature",
            "Credential scope is malformed",
        ));
    };
    if *region != "us-east-1" || *service != "route53" {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            &format!(
                "Credential should be scoped to a valid region and service, not '{region}/{service}'."
            ),
        ));
    }
    let amz_date = request.header("x-amz-date").ok_or_else(missing)?;
    if !amz_date.starts_with(date) {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
        ));
    }
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "'Host' must be a signed header",
        ));
    }
    // The canonical request.
    let mut query: Vec<(String, String)> = request
        .query_pairs()
        .into_iter()
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let path: String = request
        .path
        .split('/')
        .map(|segment| uri_encode(&uri_encode(segment)))
        .collect::<Vec<_>>()
        .join("/");
    let payload = match request.header("x-amz-content-sha256") {
        Some(hash) => hash.to_owned(),
        None => hex(digest(&SHA256, &request.body).as_ref()),
    };
    let canonical = format!(
        "{}\n{path}\n{}\n{headers}\n{signed_headers}\n{payload}",
        request.method,
        query.join("&")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest(&SHA256, canonical.as_bytes()).as_ref())
    );
    let mac = |key: &[u8], data: &str| -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    };
    let key = mac(format!("AWS4{SECRET_ACCESS_KEY}").as_bytes(), date);
    let key = mac(&key, region);
    let key = mac(&key, service);
    let key = mac(&key, "aws4_request");
    let expected = hex(&mac(&key, &to_sign));
    if expected != signature {
        return Err(error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

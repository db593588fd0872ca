//! A stand-in for the Leaseweb Hosting API v2 (domains and resource record sets), after
//! developer.leaseweb.com/api-docs/domains_v2.html: the `X-LSW-Auth` key header, `limit`/`offset`
//! paging with a `_metadata` envelope (default 10), record sets named by their FQDN with a
//! trailing dot (also in the path), bare TXT values, the fixed list of TTLs, PUT bodies holding
//! only `content` and `ttl`, and Leaseweb's `{errorCode, errorMessage, correlationId}` errors.
//!
//! Not documented, modelled on the most plausible behaviour: the largest page (50 here), and
//! creating a set that exists (409 here).

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, window};
use serde_json::{Value, json};

pub const KEY: &str = "lsw-test-key-0123456789";
pub const PREFIX: &str = "/hosting/v2/";
pub const MAX_LIMIT: usize = 50;
pub const CORRELATION_ID: &str = "550e8400-e29b-41d4-a716-446655440000";
const TTLS: [u64; 8] = [60, 300, 1_800, 3_600, 14_400, 28_800, 43_200, 86_400];
const TYPES: [&str; 9] = ["A", "AAAA", "CAA", "CNAME", "MX", "NS", "SOA", "SRV", "TXT"];

pub fn error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"correlationId": CORRELATION_ID, "errorCode": status.to_string(), "errorMessage": message}),
    )
}

fn invalid(field: &str, message: &str) -> Response {
    Response::json(
        400,
        &json!({"correlationId": CORRELATION_ID, "errorCode": "400",
            "errorMessage": "Validation failed", "errorDetails": {field: [message]}}),
    )
}

fn not_found() -> Response {
    error(404, "Resource not found")
}

/// The record set (`name` with its trailing dot) as the API shows it.
fn set_json(domain: &str, name: &str, rtype: &str, records: &[FakeRecord]) -> Value {
    json!({
        "name": name,
        "type": rtype,
        "content": records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        "ttl": records.first().map_or(3600, |r| r.ttl),
        "editable": !matches!(rtype, "SOA" | "NS"),
        "_links": {
            "self": {"href": format!("/domains/{domain}/resourceRecordSets/{name}/{rtype}")},
            "collection": {"href": format!("/domains/{domain}/resourceRecordSets")},
        },
    })
}

/// `limit` and `offset` as the API reads them (defaults 10 and 0).
fn paging(request: &Request) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| invalid(name, "This value should be a valid number.")),
    };
    Ok((
        number("limit", 10)?.clamp(1, MAX_LIMIT),
        number("offset", 0)?,
    ))
}

fn paged(items: Vec<Value>, key: &str, limit: usize, offset: usize) -> Value {
    let total = items.len();
    let page = window(&items, offset, limit);
    json!({key: page, "_metadata": {"totalCount": total, "limit": limit, "offset": offset}})
}

/// The records of one set of `domain`.
fn set_records(zones: &FakeZones, domain: &str, name: &str, rtype: &str) -> Vec<FakeRecord> {
    zones
        .records_in(domain)
        .into_iter()
        .filter(|r| r.name == names::bare(name) && r.rtype == rtype)
        .collect()
}

fn ttl_of(body: &Value) -> Result<u64, Response> {
    match body["ttl"].as_u64() {
        Some(ttl) if TTLS.contains(&ttl) => Ok(ttl),
        _ => Err(invalid(
            "ttl",
            "The value you selected is not a valid choice.",
        )),
    }
}

fn content_of(body: &Value) -> Result<Vec<String>, Response> {
    let Some(list) = body["content"].as_array() else {
        return Err(invalid("content", "This value should not be blank."));
    };
    let values: Option<Vec<String>> = list.iter().map(|v| v.as_str().map(str::to_owned)).collect();
    match values {
        Some(values) if !values.is_empty() => Ok(values),
        _ => Err(invalid("content", "This value should not be blank.")),
    }
}

/// Replaces a set: every record gets the set's one TTL.
fn replace(zones: &FakeZones, domain: &str, name: &str, rtype: &str, values: &[String], ttl: u64) {
    for record in set_records(zones, domain, name, rtype) {
        zones.remove(&record.id);
    }
    for value in values {
        zones.add(domain, name, rtype, value, ttl);
    }
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.header("x-lsw-auth") != Some(KEY) {
        return error(401, "You are not authorized to view this resource.");
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return not_found();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if matches!(request.method.as_str(), "POST" | "PUT")
        && request.header("content-type") != Some("application/json")
    {
        return error(415, "Unsupported media type");
    }
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let (limit, offset) = match paging(request) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let all: Vec<Value> = zones
                .zones()
                .iter()
                .map(|z| {
                    json!({"domainName": z.name, "suspended": false, "dnsOnly": true,
                        "status": "ACTIVE", "contractStartDate": "2026-01-01T00:00:00+01:00",
                        "_links": {"self": {"href": format!("/domains/{}", z.name)}}})
                })
                .collect();
            Response::json(200, &paged(all, "domains", limit, offset))
        }
        ("GET", ["domains", domain]) => match zones.zone_by_name(domain) {
            Some(zone) => {
                Response::json(200, &json!({"domainName": zone.name, "suspended": false}))
            }
            None => not_found(),
        },
        (method, ["domains", domain, "resourceRecordSets", rest @ ..]) => {
            // Domain names in paths come without the trailing dot.
            let Some(zone) = zones
                .zone_by_name(domain)
                .filter(|_| !domain.ends_with('.'))
            else {
                return not_found();
            };
            record_sets(zones, &zone.name, method, rest, request)
        }
        _ => not_found(),
    }
}

fn record_sets(
    zones: &FakeZones,
    domain: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Response {
    match (method, rest) {
        ("GET", []) => {
            let (limit, offset) = match paging(request) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let mut sets: Vec<(String, String)> = Vec::new();
            for r in zones.records_in(domain) {
                let key = (r.name.clone(), r.rtype.clone());
                if !sets.contains(&key) {
                    sets.push(key);
                }
            }
            let all: Vec<Value> = sets
                .iter()
                .map(|(name, rtype)| {
                    let records = set_records(zones, domain, name, rtype);
                    set_json(domain, &format!("{name}."), rtype, &records)
                })
                .collect();
            Response::json(200, &paged(all, "resourceRecordSets", limit, offset))
        }
        ("POST", []) => {
            let body = request.json();
            let (Some(name), Some(rtype)) = (body["name"].as_str(), body["type"].as_str()) else {
                return invalid("name", "This value should not be blank.");
            };
            if !TYPES.contains(&rtype) {
                return invalid("type", "The value you selected is not a valid choice.");
            }
            if !name.ends_with('.') || !names::in_zone(name, domain) {
                return invalid(
                    "name",
                    "The name must be a fully qualified name in the domain, ending with a dot.",
                );
            }
            let (content, ttl) = match (content_of(&body), ttl_of(&body)) {
                (Ok(c), Ok(t)) => (c, t),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            if !set_records(zones, domain, name, rtype).is_empty() {
                return error(409, "Resource record set already exists");
            }
            replace(zones, domain, name, rtype, &content, ttl);
            let records = set_records(zones, domain, name, rtype);
            Response::json(
                201,
                &set_json(domain, &name.to_ascii_lowercase(), rtype, &records),
            )
        }
        (method, [name, rtype]) => {
            if !name.ends_with('.') || !TYPES.contains(rtype) {
                return not_found();
            }
            let records = set_records(zones, domain, name, rtype);
            match method {
                "GET" if records.is_empty() => not_found(),
                "GET" => Response::json(200, &set_json(domain, name, rtype, &records)),
                "PUT" => {
                    if records.is_empty() {
                        return not_found();
                    }
                    let body = request.json();
                    let Some(fields) = body.as_object() else {
                        return error(400, "The API could not interpret your request correctly.");
                    };
                    if let Some(extra) = fields
                        .keys()
                        .find(|k| !matches!(k.as_str(), "content" | "ttl"))
                    {
                        return invalid(extra, "This field was not expected.");
                    }
                    if matches!(*rtype, "SOA" | "NS") {
                        return error(403, "This resource record set is not editable.");
                    }
                    let (content, ttl) = match (content_of(&body), ttl_of(&body)) {
                        (Ok(c), Ok(t)) => (c, t),
                        (Err(e), _) | (_, Err(e)) => return e,
                    };
                    replace(zones, domain, name, rtype, &content, ttl);
                    let records = set_records(zones, domain, name, rtype);
                    Response::json(200, &set_json(domain, name, rtype, &records))
                }
                // "Well-formatted DELETE requests will always succeed, even for non-existing
                // records."
                "DELETE" => {
                    for record in records {
                        zones.remove(&record.id);
                    }
                    Response::empty(204)
                }
                _ => error(405, "Method not allowed"),
            }
        }
        _ => not_found(),
    }
}

//! A stand-in for the Gcore DNS API v2 (`/dns/v2/zones...`), after Gcore's API reference and
//! its Go SDK: `Authorization: APIKey <token>`, zones listed with `limit`/`offset` and a
//! `total_amount`, RRsets addressed as `zones/ZONE/FQDN/TYPE` (full name without the final
//! dot), created with POST, replaced whole with PUT, deleted with DELETE, `resource_records`
//! whose `content` is an array (one unquoted string for TXT), and `{"error": "..."}` bodies
//! with the meaning in the status.
//!
//! Not documented, so chosen here: a key that is wrong is refused with 401 (a missing header
//! with 403, as Gcore's SDK tests show), POST on an RRset that exists is refused with 409,
//! `limit` defaults to 100 and is capped at 1000.

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZone, FakeZones, Request, Response, window};
use serde_json::{Value, json};

pub const TOKEN: &str = "gcore-test-key-0123456789";
pub const PREFIX: &str = "/dns/v2/";
/// The largest TTL the API stores (a signed 32-bit number, as in DNS).
const MAX_TTL: u64 = 2_147_483_647;

pub fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"error": message}))
}

fn zone_json(zone: &FakeZone) -> Value {
    let number: u64 = zone.id.trim_start_matches("zone").parse().unwrap_or(0);
    json!({
        "id": number, "name": zone.name, "client_id": 1000, "enabled": true, "status": "active",
        "nx_ttl": 300, "retry": 3600, "refresh": 10800, "expiry": 604800,
        "contact": "support@gcore.com", "serial": 1767225600,
        "primary_server": "ns1.gcorelabs.net", "dnssec_enabled": false, "meta": {}
    })
}

fn rrset_json(fqdn: &str, records: &[FakeRecord]) -> Value {
    let resource_records: Vec<Value> = records
        .iter()
        .map(|r| {
            let id: u64 = r.id.trim_start_matches("rec").parse().unwrap_or(0);
            json!({"id": id, "content": [r.value], "enabled": true, "meta": {}})
        })
        .collect();
    json!({
        "name": fqdn, "type": "TXT", "ttl": records.first().map_or(300, |r| r.ttl),
        "resource_records": resource_records, "filters": [], "meta": {},
        "updated_at": "2026-01-01T00:00:00Z"
    })
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    match request.header("authorization") {
        None => {
            return error(
                403,
                "authHeader up for parsing was not passed through the context",
            );
        }
        Some(value) if value != format!("APIKey {TOKEN}") => {
            return error(401, "invalid API token");
        }
        Some(_) => {}
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return error(404, "page not found");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["zones"]) => list_zones(zones, request),
        (method, ["zones", zone, rest @ ..]) => {
            let Some(zone) = zones.zone_by_name(zone).filter(|z| z.name == *zone) else {
                return error(404, "zone not found");
            };
            match (method, rest) {
                ("GET", []) => Response::json(200, &zone_json(&zone)),
                (method, [name, rtype]) => rrset(zones, request, &zone, method, name, rtype),
                _ => error(404, "page not found"),
            }
        }
        _ => error(404, "page not found"),
    }
}

fn list_zones(zones: &FakeZones, request: &Request) -> Response {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| error(400, &format!("invalid {name}"))),
    };
    let (limit, offset) = match (number("limit", 100), number("offset", 0)) {
        (Ok(limit), Ok(offset)) => (limit.clamp(1, 1000), offset),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut all = zones.zones();
    let filter: Vec<String> = request
        .query_pairs()
        .into_iter()
        .filter(|(k, _)| k == "name")
        .map(|(_, v)| v)
        .collect();
    if !filter.is_empty() {
        all.retain(|z| filter.contains(&z.name));
    }
    let page: Vec<Value> = window(&all, offset, limit).iter().map(zone_json).collect();
    Response::json(200, &json!({"zones": page, "total_amount": all.len()}))
}

/// The TTL and TXT values of a POST or PUT body, or the API's refusal.
fn rrset_body(request: &Request) -> Result<(u64, Vec<String>), Response> {
    if request.header("content-type") != Some("application/json") {
        return Err(error(400, "request body must be JSON"));
    }
    let body = request.json();
    let ttl = match &body["ttl"] {
        Value::Null => 300,
        ttl => ttl
            .as_u64()
            .filter(|t| *t <= MAX_TTL)
            .ok_or_else(|| error(400, "ttl: must be a number from 0 to 2147483647"))?,
    };
    let records = body["resource_records"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| error(400, "resource_records: at least one record is required"))?;
    let mut values = Vec::new();
    for record in records {
        match record["content"].as_array().map(Vec::as_slice) {
            Some([Value::String(value)]) if !value.is_empty() => values.push(value.clone()),
            _ => {
                return Err(error(
                    400,
                    "resource_records.content: a TXT record's content is one string",
                ));
            }
        }
        if record.as_object().is_some_and(|r| {
            r.keys()
                .any(|k| !["content", "enabled", "meta"].contains(&k.as_str()))
        }) {
            return Err(error(400, "resource_records: unknown field"));
        }
    }
    let mut unique = values.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != values.len() {
        return Err(error(400, "resource_records: duplicate content"));
    }
    Ok((ttl, values))
}

/// Makes the RRset (`fqdn`, TXT) exactly `values` with `ttl`.
fn replace(
    zones: &FakeZones,
    zone: &str,
    fqdn: &str,
    existing: &[FakeRecord],
    values: &[String],
    ttl: u64,
) {
    for record in existing {
        if record.ttl != ttl || !values.contains(&record.value) {
            zones.remove(&record.id);
        }
    }
    for value in values {
        if !existing.iter().any(|r| &r.value == value && r.ttl == ttl) {
            zones.add(zone, fqdn, "TXT", value, ttl);
        }
    }
}

fn rrset(
    zones: &FakeZones,
    request: &Request,
    zone: &FakeZone,
    method: &str,
    name: &str,
    rtype: &str,
) -> Response {
    if name.ends_with('.') || !names::in_zone(name, &zone.name) {
        return error(
            400,
            "rrset name must be a name in the zone, without a trailing dot",
        );
    }
    if rtype != "TXT" {
        // Other types exist, but nothing in these tests has any business with them.
        return error(400, "this stand-in serves TXT only");
    }
    let fqdn = name.to_ascii_lowercase();
    let existing: Vec<FakeRecord> = zones
        .records_named(&fqdn)
        .into_iter()
        .filter(|r| r.rtype == "TXT")
        .collect();
    match method {
        "GET" if existing.is_empty() => error(404, "rrset not found"),
        "GET" => Response::json(200, &rrset_json(&fqdn, &existing)),
        "POST" | "PUT" => {
            let (ttl, values) = match rrset_body(request) {
                Ok(body) => body,
                Err(refusal) => return refusal,
            };
            if method == "POST" && !existing.is_empty() {
                return error(409, "rrset already exists");
            }
            if method == "PUT" && existing.is_empty() {
                return error(404, "rrset not found");
            }
            replace(zones, &zone.name, &fqdn, &existing, &values, ttl);
            let now: Vec<FakeRecord> = zones
                .records_named(&fqdn)
                .into_iter()
                .filter(|r| r.rtype == "TXT")
                .collect();
            Response::json(200, &rrset_json(&fqdn, &now))
        }
        "DELETE" if existing.is_empty() => error(404, "rrset not found"),
        "DELETE" => {
            for record in &existing {
                zones.remove(&record.id);
            }
            Response::json(200, &json!({}))
        }
        _ => error(405, "method not allowed"),
    }
}

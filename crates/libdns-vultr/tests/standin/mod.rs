//! A stand-in for the Vultr API v2's DNS endpoints, after Vultr's API reference and govultr:
//! bearer-key authentication, cursor paging (`per_page` 100 by default, at most 500; the next
//! page's cursor in `meta.links.next`, `""` on the last), no server-side record filter, record
//! names relative to the domain (`""` at the apex), TXT data that must be one quoted string
//! (and comes back quoted), UUID record ids, 201 for a created record and 204 for a deleted one,
//! and `{"error", "status"}` error bodies.

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, window};
use serde_json::{Value, json};

pub const TOKEN: &str = "VULTRTESTKEY0123456789ABCDEFGHIJKLMNO";
pub const PREFIX: &str = "/v2/";
pub const MAX_PER_PAGE: usize = 500;
const DEFAULT_PER_PAGE: usize = 100;

pub fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"error": message, "status": status}))
}

/// Vultr's UUID for a record of the store (`rec000123` is `...-000000000123`).
pub fn uuid(record: &FakeRecord) -> String {
    let n: u64 = record
        .id
        .trim_start_matches("rec")
        .parse()
        .expect("store ids are rec + digits");
    format!("6f1e2d3c-0000-4000-8000-{n:012}")
}

fn record_json(r: &FakeRecord) -> Value {
    let data = if r.rtype == "TXT" {
        names::quote_txt(&r.value)
    } else {
        r.value.clone()
    };
    json!({
        "id": uuid(r), "type": r.rtype, "name": names::relative(&r.name, &r.zone),
        "data": data, "priority": 0, "ttl": r.ttl
    })
}

/// The cursor of the page starting at `offset`: opaque to clients, as Vultr's are.
fn cursor(offset: usize) -> String {
    format!("bmV4dF9f{offset:x}")
}

/// One page of `items` as the request asks for it, and its `meta`.
fn paged<T: Clone>(items: &[T], request: &Request) -> Result<(Vec<T>, Value), Response> {
    let per_page = match request.query_param("per_page") {
        None => DEFAULT_PER_PAGE,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| error(400, "Invalid per_page value"))?
            .clamp(1, MAX_PER_PAGE),
    };
    let offset = match request.query_param("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c
            .strip_prefix("bmV4dF9f")
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .ok_or_else(|| error(400, "Invalid cursor"))?,
    };
    let slice = window(items, offset, per_page).to_vec();
    let next = if offset + per_page < items.len() {
        cursor(offset + per_page)
    } else {
        String::new()
    };
    let prev = if offset > 0 {
        cursor(offset.saturating_sub(per_page))
    } else {
        String::new()
    };
    Ok((
        slice,
        json!({"total": items.len(), "links": {"next": next, "prev": prev}}),
    ))
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return error(401, "Invalid API token.");
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return error(404, "Not found");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let (slice, meta) = match paged(&zones.zones(), request) {
                Ok(page) => page,
                Err(e) => return e,
            };
            let domains: Vec<Value> = slice
                .iter()
                .map(|z| {
                    json!({"domain": z.name, "date_created": "2026-01-01T00:00:00+00:00", "dns_sec": "disabled"})
                })
                .collect();
            Response::json(200, &json!({"domains": domains, "meta": meta}))
        }
        (method, ["domains", domain, "records", rest @ ..]) => {
            let Some(zone) = zones.zone_by_name(domain) else {
                return error(404, "Invalid domain.");
            };
            records(zones, &zone.name, method, rest, request)
        }
        _ => error(404, "Not found"),
    }
}

fn records(
    zones: &FakeZones,
    zone: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Response {
    match (method, rest) {
        ("GET", []) => {
            let (slice, meta) = match paged(&zones.records_in(zone), request) {
                Ok(page) => page,
                Err(e) => return e,
            };
            let records: Vec<Value> = slice.iter().map(record_json).collect();
            Response::json(200, &json!({"records": records, "meta": meta}))
        }
        ("POST", []) => create(zones, zone, request),
        ("DELETE", [id]) => {
            let found = zones.records_in(zone).into_iter().find(|r| uuid(r) == *id);
            match found {
                Some(record) => {
                    zones.remove(&record.id);
                    Response::empty(204)
                }
                None => error(404, "Invalid record."),
            }
        }
        _ => error(405, "Method not allowed"),
    }
}

fn create(zones: &FakeZones, zone: &str, request: &Request) -> Response {
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return error(400, "Invalid JSON body");
    }
    let body = request.json();
    let (Some(rtype), Some(name), Some(data)) = (
        body["type"].as_str(),
        body["name"].as_str(),
        body["data"].as_str(),
    ) else {
        return error(
            400,
            "Unable to add record: name, type and data are required",
        );
    };
    let rtype = rtype.to_ascii_uppercase();
    let value = if rtype == "TXT" {
        let inner = data
            .strip_prefix('"')
            .and_then(|d| d.strip_suffix('"'))
            .filter(|inner| !inner.contains('"'));
        match inner {
            Some(inner) => inner.to_owned(),
            None => {
                return error(
                    400,
                    "Unable to add record: Record data must be enclosed in quotes",
                );
            }
        }
    } else {
        data.to_owned()
    };
    // Always relative: a full name would be put below the domain once more.
    let name = name.to_ascii_lowercase();
    let fqdn = if name.is_empty() {
        zone.to_owned()
    } else {
        format!("{name}.{zone}")
    };
    let ttl = match &body["ttl"] {
        Value::Null => 300,
        value => match value.as_u64() {
            Some(ttl) => ttl,
            None => return error(400, "Unable to add record: Invalid TTL"),
        },
    };
    let record = zones.add(zone, &fqdn, &rtype, &value, ttl);
    Response::json(201, &json!({"record": record_json(&record)}))
}

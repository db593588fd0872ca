//! A stand-in for the Linode (Akamai) API v4's Domains endpoints, after Linode's API reference
//! and linodego: bearer-token authentication, `page`/`page_size` paging (`page_size` 25 to 500,
//! 100 by default) in `{data, page, pages, results}` envelopes, `X-Filter` headers on the
//! filterable fields (domains: `domain`, `type`, `group`, `tags`; records: `name`, `type`,
//! `target`, `tag`), numeric ids, record names relative to the domain (`""` at the apex; a
//! full name has the domain stripped), unquoted TXT targets, TTLs rounded up to the next valid
//! value, 200 replies to creates and deletes, and `{"errors": [{"reason", "field"}]}` bodies.

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{
    FakeRecord, FakeZone, FakeZones, Request, Response, page_count, page_of,
};
use serde_json::{Map, Value, json};

pub const TOKEN: &str = "linode-test-token-0123456789abcdef0123456789abcdef";
pub const PREFIX: &str = "/v4/";
pub const MAX_PAGE_SIZE: usize = 500;
const MIN_PAGE_SIZE: usize = 25;
const DEFAULT_PAGE_SIZE: usize = 100;
/// The TTLs Linode keeps; any other is rounded up to the next one (0: the domain's default).
pub const VALID_TTLS: [u64; 14] = [
    30, 120, 300, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 345600, 604800, 1209600, 2419200,
];
const DOMAIN_FILTERS: [&str; 4] = ["domain", "type", "group", "tags"];
const RECORD_FILTERS: [&str; 4] = ["name", "type", "target", "tag"];

pub fn error(status: u16, field: Option<&str>, reason: &str) -> Response {
    let mut error = json!({"reason": reason});
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    Response::json(status, &json!({"errors": [error]}))
}

fn not_found() -> Response {
    error(404, None, "Not found")
}

fn number(id: &str, prefix: &str) -> u64 {
    id.trim_start_matches(prefix)
        .parse()
        .expect("store ids are a prefix + digits")
}

/// Linode's integer id for a domain of the store (`zone0123` is 123).
pub fn domain_id(zone: &FakeZone) -> u64 {
    number(&zone.id, "zone")
}

/// Linode's integer id for a record of the store (`rec000123` is 123).
pub fn record_id(record: &FakeRecord) -> u64 {
    number(&record.id, "rec")
}

fn domain_json(z: &FakeZone) -> Value {
    json!({
        "id": domain_id(z), "domain": z.name, "type": "master", "status": "active",
        "soa_email": format!("hostmaster@{}", z.name), "description": "", "group": "",
        "ttl_sec": 0, "refresh_sec": 0, "retry_sec": 0, "expire_sec": 0,
        "master_ips": [], "axfr_ips": [], "tags": []
    })
}

fn record_json(r: &FakeRecord) -> Value {
    json!({
        "id": record_id(r), "type": r.rtype, "name": names::relative(&r.name, &r.zone),
        "target": r.value, "priority": 0, "weight": 0, "port": 0, "service": null,
        "protocol": null, "tag": null, "ttl_sec": r.ttl,
        "created": "2026-01-01T00:00:00", "updated": "2026-01-01T00:00:00"
    })
}

/// The `X-Filter` header: field equality on `allowed` fields.
fn filter(request: &Request, allowed: &[&str]) -> Result<Map<String, Value>, Response> {
    let Some(header) = request.header("x-filter") else {
        return Ok(Map::new());
    };
    let Ok(Value::Object(filter)) = serde_json::from_str::<Value>(header) else {
        return Err(error(400, None, "Invalid JSON in X-Filter header"));
    };
    for (field, value) in &filter {
        if field.starts_with('+') || value.is_object() || value.is_array() {
            // Operators (+and, +or, +contains, ...) exist; nothing here sends them.
            return Err(error(
                400,
                None,
                "Stand-in: filter operators are not modelled",
            ));
        }
        if !allowed.contains(&field.as_str()) {
            return Err(error(400, None, &format!("Cannot filter on {field}")));
        }
    }
    Ok(filter)
}

fn matches(item: &Value, filter: &Map<String, Value>) -> bool {
    filter.iter().all(|(field, value)| &item[field] == value)
}

/// The page the request asks for, in Linode's envelope.
fn paged(items: Vec<Value>, request: &Request) -> Response {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| error(400, Some(name), "Must be an integer")),
    };
    let page = match number("page", 1) {
        Ok(0) => return error(400, Some("page"), "Must be 1 or greater"),
        Ok(page) => page,
        Err(e) => return e,
    };
    let page_size = match number("page_size", DEFAULT_PAGE_SIZE) {
        Ok(size) if (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size) => size,
        Ok(_) => return error(400, Some("page_size"), "Must be 25-500"),
        Err(e) => return e,
    };
    let pages = page_count(items.len(), page_size);
    let results = items.len();
    let data = page_of(&items, page, page_size);
    Response::json(
        200,
        &json!({"data": data, "page": page, "pages": pages, "results": results}),
    )
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return error(401, None, "Invalid Token");
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return not_found();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let filter = match filter(request, &DOMAIN_FILTERS) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let all: Vec<Value> = zones
                .zones()
                .iter()
                .map(domain_json)
                .filter(|d| matches(d, &filter))
                .collect();
            paged(all, request)
        }
        (method, ["domains", id, "records", rest @ ..]) => {
            let Some(zone) = zones
                .zones()
                .into_iter()
                .find(|z| id.parse::<u64>().is_ok_and(|n| n == domain_id(z)))
            else {
                return not_found();
            };
            records(zones, &zone.name, method, rest, request)
        }
        _ => not_found(),
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
            let filter = match filter(request, &RECORD_FILTERS) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let all: Vec<Value> = zones
                .records_in(zone)
                .iter()
                .map(record_json)
                .filter(|r| matches(r, &filter))
                .collect();
            paged(all, request)
        }
        ("POST", []) => create(zones, zone, request),
        ("DELETE", [id]) => {
            let found = zones
                .records_in(zone)
                .into_iter()
                .find(|r| id.parse::<u64>().is_ok_and(|n| n == record_id(r)));
            match found {
                Some(record) => {
                    zones.remove(&record.id);
                    Response::json(200, &json!({}))
                }
                None => not_found(),
            }
        }
        _ => error(405, None, "Method Not Allowed"),
    }
}

/// The TTL Linode keeps for `ttl`.
pub fn rounded_ttl(ttl: u64) -> u64 {
    VALID_TTLS
        .iter()
        .copied()
        .find(|valid| *valid >= ttl)
        .unwrap_or(VALID_TTLS[VALID_TTLS.len() - 1])
}

fn create(zones: &FakeZones, zone: &str, request: &Request) -> Response {
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return error(400, None, "Content-Type must be application/json");
    }
    let body = request.json();
    if !body.is_object() {
        return error(400, None, "Malformed JSON");
    }
    let Some(rtype) = body["type"].as_str() else {
        return error(400, Some("type"), "type is required");
    };
    let name = body["name"].as_str().unwrap_or("").to_ascii_lowercase();
    if name.len() > 100 {
        return error(400, Some("name"), "Length must be 1-100 characters");
    }
    let Some(target) = body["target"].as_str().filter(|t| !t.is_empty()) else {
        return error(400, Some("target"), "target is required");
    };
    // A full name (lego sends one) loses its domain.
    let fqdn = if name.is_empty() || names::bare(&name) == zone {
        zone.to_owned()
    } else if let Some(inner) = names::bare(&name).strip_suffix(&format!(".{zone}")) {
        format!("{inner}.{zone}")
    } else {
        format!("{name}.{zone}")
    };
    let ttl = match &body["ttl_sec"] {
        Value::Null => 0,
        value => match value.as_u64() {
            Some(0) => 0,
            Some(ttl) => rounded_ttl(ttl),
            None => return error(400, Some("ttl_sec"), "Must be an integer"),
        },
    };
    let record = zones.add(zone, &fqdn, rtype, target, ttl);
    Response::json(200, &record_json(&record))
}

//! A stand-in for the Cloudflare v4 API's zone and DNS record endpoints, after Cloudflare's
//! API reference: bearer-token authentication, `{success, errors, messages, result,
//! result_info}` envelopes, page/per_page paging (zones at most 50 a page), and the documented
//! error codes (10000 authentication error, 81058 identical record exists, 81044 record does
//! not exist). Shared with the end-to-end test (`tests/e2e/acme_dns.rs`) through `#[path]`.

use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, page_count, page_of};
use serde_json::{Value, json};

pub const TOKEN: &str = "cf-test-token-0123456789";
pub const PREFIX: &str = "/client/v4/";

fn envelope(result: Value, info: Option<Value>) -> Value {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = info {
        body["result_info"] = info;
    }
    body
}

fn error(status: u16, code: u32, message: &str) -> Response {
    Response::json(
        status,
        &json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
    )
}

fn record_json(r: &FakeRecord, zone_id: &str) -> Value {
    json!({
        "id": r.id, "zone_id": zone_id, "zone_name": r.zone, "name": r.name, "type": r.rtype,
        "content": r.value, "proxiable": false, "proxied": false, "ttl": r.ttl, "locked": false,
        "meta": {"auto_added": false}, "comment": null, "tags": [],
        "created_on": "2026-01-01T00:00:00.000000Z", "modified_on": "2026-01-01T00:00:00.000000Z"
    })
}

/// `page` and `per_page` as Cloudflare reads them (defaults 1 and 20; per_page capped at `max`).
fn paging(request: &Request, max: usize) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| error(400, 1001, &format!("Invalid {name}"))),
    };
    let page = number("page", 1)?.max(1);
    let per_page = number("per_page", 20)?.clamp(5, max);
    Ok((page, per_page))
}

/// One page of `items`, and the `result_info` of its reply.
fn paged<T: Clone>(items: &[T], page: usize, per_page: usize) -> (Vec<T>, Value) {
    let total_pages = page_count(items.len(), per_page);
    let slice = page_of(items, page, per_page).to_vec();
    let info = json!({"page": page, "per_page": per_page, "count": slice.len(),
        "total_count": items.len(), "total_pages": total_pages});
    (slice, info)
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return error(403, 10000, "Authentication error");
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return error(404, 7000, "No route for that URI");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["zones"]) => {
            let mut all = zones.zones();
            if let Some(name) = request.query_param("name") {
                all.retain(|z| z.name == name);
            }
            let (page, per_page) = match paging(request, 50) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let (slice, info) = paged(&all, page, per_page);
            let result: Vec<Value> = slice
                .iter()
                .map(|z| json!({"id": z.id, "name": z.name, "status": "active", "paused": false, "type": "full"}))
                .collect();
            Response::json(200, &envelope(json!(result), Some(info)))
        }
        (method, ["zones", zone_id, "dns_records", rest @ ..]) => {
            let Some(zone) = zones.zone_by_id(zone_id) else {
                return error(
                    404,
                    7003,
                    "Could not route to /zones/..., perhaps your object identifier is invalid?",
                );
            };
            records(zones, &zone.id, &zone.name, method, rest, request)
        }
        _ => error(404, 7000, "No route for that URI"),
    }
}

fn records(
    zones: &FakeZones,
    zone_id: &str,
    zone: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Response {
    match (method, rest) {
        ("GET", []) => {
            let mut all = zones.records_in(zone);
            if let Some(rtype) = request.query_param("type") {
                all.retain(|r| r.rtype == rtype);
            }
            if let Some(name) = request.query_param("name") {
                all.retain(|r| r.name == name.to_ascii_lowercase());
            }
            if let Some(content) = request.query_param("content") {
                all.retain(|r| r.value == content);
            }
            let (page, per_page) = match paging(request, 100) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let (slice, info) = paged(&all, page, per_page);
            let result: Vec<Value> = slice.iter().map(|r| record_json(r, zone_id)).collect();
            Response::json(200, &envelope(json!(result), Some(info)))
        }
        ("POST", []) => {
            if request.header("content-type") != Some("application/json") {
                return error(400, 6003, "Invalid request headers");
            }
            let body = request.json();
            let (Some(rtype), Some(name), Some(content)) = (
                body["type"].as_str(),
                body["name"].as_str(),
                body["content"].as_str(),
            ) else {
                return error(400, 9000, "DNS name, type and content are required");
            };
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name != zone && !name.ends_with(&format!(".{zone}")) {
                return error(400, 9005, "Content for the name is outside the zone");
            }
            let ttl = body["ttl"].as_u64().unwrap_or(1);
            if ttl != 1 && !(60..=86_400).contains(&ttl) {
                return error(
                    400,
                    9021,
                    "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                );
            }
            let content = madmail_libdns_http::names::unquote_txt(content);
            if zones
                .records_named(&name)
                .iter()
                .any(|r| r.rtype == rtype && r.value == content)
            {
                return error(400, 81058, "An identical record already exists.");
            }
            let record = zones.add(zone, &name, rtype, &content, ttl);
            Response::json(200, &envelope(record_json(&record, zone_id), None))
        }
        ("DELETE", [record_id]) => match zones.remove(record_id) {
            Some(_) => Response::json(200, &envelope(json!({"id": record_id}), None)),
            None => error(404, 81044, "Record does not exist."),
        },
        _ => error(405, 10405, "Method not allowed"),
    }
}

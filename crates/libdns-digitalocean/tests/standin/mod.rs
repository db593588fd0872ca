//! A stand-in for the DigitalOcean API v2's Domains and Domain Records endpoints, after
//! DigitalOcean's API reference: bearer-token authentication, `page`/`per_page` paging (20 a
//! page by default, at most 200) with `links.pages.next` while pages follow, record names
//! relative to the domain (`@` at the apex) while the `name` filter takes the full name, raw
//! (unquoted) TXT data, TTLs of 30 s or more, integer record ids, 201 for a created record and
//! 204 for a deleted one, and `{"id", "message"}` error bodies.

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, page_count, page_of};
use serde_json::{Value, json};

pub const TOKEN: &str = "dop_v1_0123456789abcdef-test-token";
pub const PREFIX: &str = "/v2/";
/// The public API, as the `links` of a real reply name it.
const PUBLIC: &str = "https://api.digitalocean.com/v2/";
pub const MAX_PER_PAGE: usize = 200;
const DEFAULT_PER_PAGE: usize = 20;
pub const MIN_TTL: u64 = 30;

pub fn error(status: u16, id: &str, message: &str) -> Response {
    Response::json(status, &json!({"id": id, "message": message}))
}

fn not_found() -> Response {
    error(
        404,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

/// DigitalOcean's integer id for a record of the store (`rec000123` is 123).
pub fn numeric_id(record: &FakeRecord) -> u64 {
    record
        .id
        .trim_start_matches("rec")
        .parse()
        .expect("store ids are rec + digits")
}

fn record_json(r: &FakeRecord) -> Value {
    let name = names::relative_or_at(&r.name, &r.zone);
    json!({
        "id": numeric_id(r), "type": r.rtype, "name": name, "data": r.value,
        "priority": null, "port": null, "ttl": r.ttl, "weight": null, "flags": null, "tag": null
    })
}

/// `page` and `per_page` as DigitalOcean reads them.
fn paging(request: &Request) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            error(
                400,
                "bad_request",
                &format!("{name} must be a positive integer"),
            )
        }),
    };
    let page = number("page", 1)?.max(1);
    let per_page = number("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    Ok((page, per_page))
}

/// One page of `items`, and the `links` and `meta` of its reply.
fn paged<T: Clone>(
    items: &[T],
    page: usize,
    per_page: usize,
    path: &str,
) -> (Vec<T>, Value, Value) {
    let last = page_count(items.len(), per_page);
    let slice = page_of(items, page, per_page).to_vec();
    let link = |n: usize| format!("{PUBLIC}{path}?page={n}&per_page={per_page}");
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({ "pages": pages })
    };
    (slice, links, json!({"total": items.len()}))
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        // The body DigitalOcean really sends (capital U).
        return error(401, "Unauthorized", "Unable to authenticate you");
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return not_found();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let (page, per_page) = match paging(request) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let all = zones.zones();
            let (slice, links, meta) = paged(&all, page, per_page, "domains");
            let domains: Vec<Value> = slice
                .iter()
                .map(|z| json!({"name": z.name, "ttl": 1800, "zone_file": ""}))
                .collect();
            Response::json(
                200,
                &json!({"domains": domains, "links": links, "meta": meta}),
            )
        }
        (method, ["domains", domain, "records", rest @ ..]) => {
            let Some(zone) = zones.zone_by_name(domain) else {
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
            let mut all = zones.records_in(zone);
            if let Some(rtype) = request.query_param("type") {
                all.retain(|r| r.rtype == rtype);
            }
            // The filter takes the full name; a relative one matches nothing.
            if let Some(name) = request.query_param("name") {
                all.retain(|r| r.name == name.to_ascii_lowercase());
            }
            let (page, per_page) = match paging(request) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let (slice, links, meta) =
                paged(&all, page, per_page, &format!("domains/{zone}/records"));
            let records: Vec<Value> = slice.iter().map(record_json).collect();
            Response::json(
                200,
                &json!({"domain_records": records, "links": links, "meta": meta}),
            )
        }
        ("POST", []) => create(zones, zone, request),
        ("DELETE", [id]) => {
            let found = zones
                .records_in(zone)
                .into_iter()
                .find(|r| id.parse::<u64>().is_ok_and(|n| n == numeric_id(r)));
            match found {
                Some(record) => {
                    zones.remove(&record.id);
                    Response::empty(204)
                }
                None => not_found(),
            }
        }
        _ => error(405, "method_not_allowed", "Method Not Allowed"),
    }
}

fn create(zones: &FakeZones, zone: &str, request: &Request) -> Response {
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return error(400, "bad_request", "Content-Type must be application/json");
    }
    let body = request.json();
    let Some(rtype) = body["type"].as_str() else {
        return error(422, "unprocessable_entity", "Type is invalid.");
    };
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return error(422, "unprocessable_entity", "Name is invalid.");
    };
    let Some(data) = body["data"].as_str().filter(|d| !d.is_empty()) else {
        return error(422, "unprocessable_entity", "Data needs to be set.");
    };
    // `@`, a name relative to the domain, or the full name with a trailing dot (lego's form).
    let fqdn = if name == "@" {
        zone.to_owned()
    } else if let Some(absolute) = name.strip_suffix('.') {
        if !names::in_zone(absolute, zone) {
            return error(
                422,
                "unprocessable_entity",
                "Name is not within the domain.",
            );
        }
        absolute.to_ascii_lowercase()
    } else {
        format!("{}.{zone}", name.to_ascii_lowercase())
    };
    let ttl = match &body["ttl"] {
        Value::Null => 1800,
        value => match value.as_u64() {
            Some(ttl) if ttl >= MIN_TTL => ttl,
            _ => {
                return error(
                    422,
                    "unprocessable_entity",
                    "Ttl must be greater than or equal to 30.",
                );
            }
        },
    };
    // Identical records are not refused: DigitalOcean stores a second one.
    let record = zones.add(zone, &fqdn, rtype, data, ttl);
    Response::json(201, &json!({"domain_record": record_json(&record)}))
}

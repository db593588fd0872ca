//! A stand-in for the name.com API's domain and DNS record endpoints, after name.com's API
//! documentation, both generations (`/v4/` and the Core API `/core/v1/`, which share paths and
//! record shapes):
//!
//! - HTTP Basic authentication (`user:token`); 401 `{"message":"Unauthorized"}` otherwise;
//! - `GET domains` and `GET domains/{domain}/records` paged with `page` (1-based) and `perPage`
//!   (default 1000 on v4, 500 on the Core API); v4 leaves `nextPage`/`lastPage` out on the last
//!   page, the Core API always sends them (0) with `totalCount`, `from` and `to`;
//! - `POST domains/{domain}/records` with `{host, type, answer, ttl}`: JSON only (v4 answers 403
//!   otherwise, the Core API 415), `host` relative (`""`/`@` the apex), `answer` stored as sent,
//!   `ttl` at least 300, a duplicate (host, type, answer) refused with 400;
//! - `DELETE domains/{domain}/records/{id}`: 200 `{}` (v4) or 204 (Core API), 404
//!   `{"message":"Not Found"}` for an unknown id.
//!
//! Record ids are the numbers of the fake store's ids (`rec000123` is 123).

use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, page_count, page_of};
use serde_json::{Value, json};

pub const USER: &str = "madmail-test";
pub const TOKEN: &str = "ndc-test-token-0123456789";

const TYPES: [&str; 8] = ["A", "AAAA", "ANAME", "CNAME", "MX", "NS", "SRV", "TXT"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    Core,
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"message": message}))
}

fn error_details(status: u16, message: &str, details: &str) -> Response {
    Response::json(status, &json!({"message": message, "details": details}))
}

/// `Authorization: Basic base64(USER:TOKEN)`.
pub fn basic_auth() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"))
    )
}

fn numeric_id(record: &FakeRecord) -> u64 {
    record.id.trim_start_matches("rec").parse().unwrap_or(0)
}

fn record_json(r: &FakeRecord, version: Version) -> Value {
    let host = madmail_libdns_http::names::relative(&r.name, &r.zone);
    let mut body = json!({
        "id": numeric_id(r), "domainName": r.zone, "fqdn": format!("{}.", r.name),
        "type": r.rtype, "answer": r.value, "ttl": r.ttl,
    });
    // v4 leaves out empty fields: the apex has no `host`.
    if !host.is_empty() || version == Version::Core {
        body["host"] = json!(host);
    }
    body
}

/// `page` and `perPage`; non-numbers are refused.
fn paging(request: &Request, version: Version) -> Result<(usize, usize), Response> {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            error(
                400,
                &format!("Invalid value '{v}' for '{name}', must be an integer."),
            )
        }),
    };
    let default = if version == Version::V4 { 1000 } else { 500 };
    let page = number("page", 1)?.max(1);
    let per_page = number("perPage", default)?.clamp(1, 1000);
    Ok((page, per_page))
}

/// One page of `items` under `key`, with name.com's paging fields.
fn paged(key: &str, items: Vec<Value>, page: usize, per_page: usize, version: Version) -> Response {
    let total = items.len();
    let last_page = page_count(total, per_page);
    let slice = page_of(&items, page, per_page);
    let mut body = json!({ key: slice });
    match version {
        Version::V4 => {
            if page < last_page {
                body["nextPage"] = json!(page + 1);
                body["lastPage"] = json!(last_page);
            }
        }
        Version::Core => {
            let from = ((page - 1) * per_page + 1).min(total);
            body["totalCount"] = json!(total);
            body["from"] = json!(from);
            body["to"] = json!((page * per_page).min(total));
            body["nextPage"] = json!(if page < last_page { page + 1 } else { 0 });
            body["lastPage"] = json!(last_page);
        }
    }
    Response::json(200, &body)
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    let (version, segments) = if let Some(s) = request.segments_after("/v4/") {
        (Version::V4, s)
    } else if let Some(s) = request.segments_after("/core/v1/") {
        (Version::Core, s)
    } else {
        return error(404, "Not Found");
    };
    if request.header("authorization") != Some(basic_auth().as_str()) {
        return error(401, "Unauthorized");
    }
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let (page, per_page) = match paging(request, version) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let all: Vec<Value> = zones
                .zones()
                .iter()
                .map(|z| {
                    json!({"domainName": z.name, "locked": true, "autorenewEnabled": true,
                        "expireDate": "2027-01-01T00:00:00Z", "createDate": "2020-01-01T00:00:00Z"})
                })
                .collect();
            paged("domains", all, page, per_page, version)
        }
        ("GET", ["domains", domain]) => match zones.zone_by_name(domain) {
            Some(z) => Response::json(
                200,
                &json!({"domainName": z.name, "nameservers": ["ns1.name.com", "ns2.name.com"]}),
            ),
            None => error(404, "Not Found"),
        },
        (method, ["domains", domain, "records", rest @ ..]) => {
            // Domain names in paths are matched as the account holds them (lowercase).
            let Some(zone) = zones.zone_by_name(domain).filter(|z| z.name == *domain) else {
                return error(404, "Not Found");
            };
            records(zones, &zone.name, method, rest, request, version)
        }
        (_, ["domains", ..]) => error(405, "Method Not Allowed"),
        _ => error(404, "Not Found"),
    }
}

fn records(
    zones: &FakeZones,
    zone: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
    version: Version,
) -> Response {
    match (method, rest) {
        ("GET", []) => {
            let (page, per_page) = match paging(request, version) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let all: Vec<Value> = zones
                .records_in(zone)
                .iter()
                .map(|r| record_json(r, version))
                .collect();
            paged("records", all, page, per_page, version)
        }
        ("POST", []) => create(zones, zone, request, version),
        ("GET", [id]) => match find(zones, zone, id) {
            Some(r) => Response::json(200, &record_json(&r, version)),
            None => error(404, "Not Found"),
        },
        ("DELETE", [id]) => match find(zones, zone, id) {
            Some(r) => {
                zones.remove(&r.id);
                match version {
                    Version::V4 => Response::json(200, &json!({})),
                    Version::Core => Response::empty(204),
                }
            }
            None => error(404, "Not Found"),
        },
        _ => error(405, "Method Not Allowed"),
    }
}

fn find(zones: &FakeZones, zone: &str, id: &str) -> Option<FakeRecord> {
    let id: u64 = id.parse().ok()?;
    zones
        .records_in(zone)
        .into_iter()
        .find(|r| numeric_id(r) == id)
}

fn create(zones: &FakeZones, zone: &str, request: &Request, version: Version) -> Response {
    if request.header("content-type") != Some("application/json") {
        return match version {
            Version::V4 => error(403, "Forbidden"),
            Version::Core => error(415, "Unsupported Media Type"),
        };
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error(400, "Invalid JSON body");
    };
    let Some(rtype) = body["type"].as_str() else {
        return error(400, "'type' can't be null");
    };
    if !TYPES.contains(&rtype) {
        return error(
            400,
            &format!(
                "Invalid value '{rtype}' for 'type', must be one of 'A', 'AAAA', 'ANAME', 'CNAME', 'MX', 'NS', 'SRV', 'TXT'."
            ),
        );
    }
    let Some(answer) = body["answer"].as_str() else {
        return error(400, "'answer' can't be null");
    };
    let host = body["host"].as_str().unwrap_or("");
    if host.ends_with('.') || host.contains(' ') {
        return error(400, &format!("Invalid value '{host}' for 'host'."));
    }
    let ttl = match &body["ttl"] {
        Value::Null => MIN_TTL,
        Value::Number(n) => match n.as_u64() {
            Some(ttl) => ttl,
            None => return error(400, "Invalid value for 'ttl', must be an integer."),
        },
        _ => return error(400, "Invalid value for 'ttl', must be an integer."),
    };
    if ttl < MIN_TTL {
        // The text is not documented; the limit is ("minimum TTL of 300").
        return error_details(400, "Parameter Value Error", "TTL must be at least 300");
    }
    let name = if host.is_empty() || host == "@" {
        zone.to_owned()
    } else {
        format!("{}.{zone}", host.to_ascii_lowercase())
    };
    if zones
        .records_named(&name)
        .iter()
        .any(|r| r.rtype == rtype && r.value == answer)
    {
        return error(400, "Parameter Value Error - Record already exists");
    }
    let record = zones.add(zone, &name, rtype, answer, ttl);
    Response::json(200, &record_json(&record, version))
}

const MIN_TTL: u64 = 300;

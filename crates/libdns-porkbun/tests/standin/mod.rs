//! A stand-in for the Porkbun v3 JSON API's domain and DNS endpoints, after Porkbun's API
//! documentation (v3.7 specification):
//!
//! - every call is a `POST` with a JSON object body carrying `apikey` and `secretapikey`
//!   (v3.7 also takes the `X-API-Key` / `X-Secret-API-Key` headers); a wrong pair is refused
//!   with 400 `{"status":"ERROR","message":"Invalid API key. (001)"}`;
//! - replies are `{"status":"SUCCESS", ...}` or `{"status":"ERROR","message":...}` with 400;
//! - `domain/listAll` in chunks of 1000 from the string index `start`, an empty `domains` past
//!   the end;
//! - `dns/retrieve/{domain}[/{id}]` and `dns/retrieveByNameType/{domain}/{type}[/{subdomain}]`
//!   list records with `id`, `ttl` and `prio` as strings and `name` as the full name without a
//!   trailing dot;
//! - `dns/create/{domain}` takes `name` relative to the domain (empty for the apex), `type`,
//!   `content` (stored as sent) and `ttl` (string or number, at least 600; the refusal's text is
//!   not documented) and answers `{"status":"SUCCESS","id":N}` with a number; a second,
//!   identical record is not refused (Porkbun documents no duplicate check);
//! - `dns/delete/{domain}/{id}`;
//! - only the account's domains are valid `{domain}`s ("Invalid domain."), and domains whose
//!   name starts with `noapi` have "API ACCESS" off ("Domain is not opted in to API access.").
//!
//! Record ids are the numbers of the fake store's ids (`rec000123` is `"123"`).

use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response, window};
use serde_json::{Value, json};

pub const API_KEY: &str = "pk1_0123456789abcdef";
pub const SECRET_KEY: &str = "sk1_fedcba9876543210";
pub const PREFIX: &str = "/api/json/v3/";
pub const CHUNK: usize = 1000;
pub const MIN_TTL: u64 = 600;

const TYPES: [&str; 13] = [
    "A", "MX", "CNAME", "ALIAS", "TXT", "NS", "AAAA", "SRV", "TLSA", "CAA", "HTTPS", "SVCB",
    "SSHFP",
];

pub fn error(message: &str) -> Response {
    Response::json(400, &json!({"status": "ERROR", "message": message}))
}

fn success(mut body: Value) -> Response {
    body["status"] = json!("SUCCESS");
    Response::json(200, &body)
}

fn numeric_id(record: &FakeRecord) -> String {
    record
        .id
        .trim_start_matches("rec")
        .trim_start_matches('0')
        .to_owned()
}

fn record_json(r: &FakeRecord) -> Value {
    json!({
        "id": numeric_id(r), "name": r.name, "type": r.rtype, "content": r.value,
        "ttl": r.ttl.to_string(), "prio": "0", "notes": ""
    })
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    let Some(segments) = request.segments_after(PREFIX) else {
        return Response::text(404, "text/html", "<html>404 Not Found</html>");
    };
    if request.method != "POST" {
        return error("Method not allowed: use POST.");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return error("Invalid JSON body.");
    };
    let key = body
        .get("apikey")
        .and_then(Value::as_str)
        .or(request.header("x-api-key"));
    let secret = body
        .get("secretapikey")
        .and_then(Value::as_str)
        .or(request.header("x-secret-api-key"));
    if key != Some(API_KEY) || secret != Some(SECRET_KEY) {
        return error("Invalid API key. (001)");
    }
    let body = Value::Object(body);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["ping"] => success(json!({"yourIp": "127.0.0.1"})),
        ["domain", "listAll"] => {
            let start = match &body["start"] {
                Value::Null => 0,
                Value::String(s) => match s.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => return error("Invalid start value."),
                },
                Value::Number(n) => match n.as_u64() {
                    Some(n) => n as usize,
                    None => return error("Invalid start value."),
                },
                _ => return error("Invalid start value."),
            };
            let domains: Vec<Value> = window(&zones.zones(), start, CHUNK)
                .iter()
                .map(|z| {
                    let tld = z.name.rsplit('.').next().unwrap_or("");
                    json!({"domain": z.name, "status": "ACTIVE", "tld": tld,
                        "createDate": "2021-09-14 09:40:58", "expireDate": "2027-09-14 09:40:58",
                        "securityLock": "1", "whoisPrivacy": "1", "autoRenew": "1", "notLocal": 0})
                })
                .collect();
            success(json!({"domains": domains}))
        }
        ["dns", action, domain, rest @ ..] => {
            let Some(zone) = zones.zone_by_name(domain).filter(|z| z.name == *domain) else {
                return error("Invalid domain.");
            };
            if zone.name.starts_with("noapi") {
                return error("Domain is not opted in to API access.");
            }
            dns(zones, &zone.name, action, rest, &body)
        }
        _ => Response::text(404, "text/html", "<html>404 Not Found</html>"),
    }
}

fn dns(zones: &FakeZones, zone: &str, action: &str, rest: &[&str], body: &Value) -> Response {
    let full_name = |sub: &str| {
        if sub.is_empty() {
            zone.to_owned()
        } else {
            format!("{}.{zone}", sub.to_ascii_lowercase())
        }
    };
    match (action, rest) {
        ("retrieve", []) => {
            let records: Vec<Value> = zones.records_in(zone).iter().map(record_json).collect();
            success(json!({"cloudflare": "enabled", "records": records}))
        }
        ("retrieve", [id]) => {
            let records: Vec<Value> = zones
                .records_in(zone)
                .iter()
                .filter(|r| numeric_id(r) == *id)
                .map(record_json)
                .collect();
            success(json!({"cloudflare": "enabled", "records": records}))
        }
        ("retrieveByNameType", [rtype, sub @ ..]) if sub.len() <= 1 => {
            let name = full_name(sub.first().copied().unwrap_or(""));
            let records: Vec<Value> = zones
                .records_in(zone)
                .iter()
                .filter(|r| r.name == name && r.rtype.eq_ignore_ascii_case(rtype))
                .map(record_json)
                .collect();
            success(json!({"cloudflare": "enabled", "records": records}))
        }
        ("create", []) => {
            let Some(rtype) = body["type"].as_str().filter(|t| TYPES.contains(t)) else {
                return error("Invalid type.");
            };
            let Some(content) = body["content"].as_str().filter(|c| !c.is_empty()) else {
                return error("Invalid content.");
            };
            let sub = body["name"].as_str().unwrap_or("");
            if sub.ends_with('.') || sub.contains(' ') {
                return error("Invalid name.");
            }
            let ttl = match &body["ttl"] {
                Value::Null => MIN_TTL,
                Value::String(s) => match s.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => return error("Invalid TTL."),
                },
                Value::Number(n) => match n.as_u64() {
                    Some(n) => n,
                    None => return error("Invalid TTL."),
                },
                _ => return error("Invalid TTL."),
            };
            if ttl < MIN_TTL {
                return error("Invalid TTL: the minimum is 600 seconds.");
            }
            let record = zones.add(zone, &full_name(sub), rtype, content, ttl);
            let id: u64 = numeric_id(&record).parse().unwrap_or(0);
            success(json!({"id": id}))
        }
        ("delete", [id]) => {
            match zones
                .records_in(zone)
                .into_iter()
                .find(|r| numeric_id(r) == *id)
            {
                Some(r) => {
                    zones.remove(&r.id);
                    success(json!({}))
                }
                None => error("Invalid record ID."),
            }
        }
        _ => Response::text(404, "text/html", "<html>404 Not Found</html>"),
    }
}

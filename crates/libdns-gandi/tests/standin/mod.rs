//! A stand-in for the Gandi LiveDNS API v5 (`/v5/livedns/domains...`), after
//! api.gandi.net/docs/livedns: `Authorization: Bearer <personal access token>` or
//! `Authorization: Apikey <key>`, domains as a JSON array paged with `page`/`per_page`
//! (default 25, at most 100) and a `Total-Count` header, RRsets addressed as
//! `domains/FQDN/records/NAME/TYPE` with the name relative to the domain (`@` for the apex,
//! never ending in a dot), PUT creating or replacing an RRset (`201 DNS Record Created`),
//! DELETE removing it (`204`), TTLs from 300 s to 30 days, TXT values stored and returned
//! quoted, and `{"code", "message", "object", "cause"}` error bodies (`errors` for validation).

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZone, FakeZones, Request, Response, page_of};
use serde_json::{Value, json};

pub const PERSONAL_TOKEN: &str = "gandi-test-pat-0123456789";
pub const API_KEY: &str = "gandi-test-apikey-9876543210";
pub const PREFIX: &str = "/v5/livedns/";
const HOST: &str = "https://api.gandi.net/v5/livedns";

pub fn error(status: u16, object: &str, cause: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"code": status, "message": message, "object": object, "cause": cause}),
    )
}

fn invalid(location: &str, name: &str, description: &str) -> Response {
    Response::json(
        400,
        &json!({"code": 400, "message": "Validation error", "object": "HTTPBadRequest",
            "cause": "Bad Request",
            "errors": [{"location": location, "name": name, "description": description}]}),
    )
}

fn domain_json(zone: &FakeZone) -> Value {
    json!({
        "fqdn": zone.name, "fqdn_unicode": zone.name, "automatic_snapshots": true,
        "domain_href": format!("{HOST}/domains/{}", zone.name),
        "domain_keys_href": format!("{HOST}/domains/{}/keys", zone.name),
        "domain_records_href": format!("{HOST}/domains/{}/records", zone.name)
    })
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    let authorization = request.header("authorization");
    if authorization != Some(&format!("Bearer {PERSONAL_TOKEN}"))
        && authorization != Some(&format!("Apikey {API_KEY}"))
    {
        return error(
            401,
            "HTTPUnauthorized",
            "Unauthorized",
            "Bad authentication attempt because of a wrong API Key.",
        );
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return error(
            404,
            "HTTPNotFound",
            "Not Found",
            "The resource could not be found.",
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => list_domains(zones, request),
        (method, ["domains", domain, rest @ ..]) => {
            let Some(zone) = zones.zone_by_name(domain).filter(|z| z.name == *domain) else {
                return error(404, "LocalizedHTTPNotFound", "Not Found", "Unknown domain");
            };
            match (method, rest) {
                ("GET", []) => Response::json(200, &domain_json(&zone)),
                (method, ["records", name, rtype]) => {
                    rrset(zones, request, &zone, method, name, rtype)
                }
                _ => error(
                    404,
                    "HTTPNotFound",
                    "Not Found",
                    "The resource could not be found.",
                ),
            }
        }
        _ => error(
            404,
            "HTTPNotFound",
            "Not Found",
            "The resource could not be found.",
        ),
    }
}

fn list_domains(zones: &FakeZones, request: &Request) -> Response {
    let number = |name: &str, default: usize| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("querystring", name, "Must be a positive integer.")),
    };
    let (page, per_page) = match (number("page", 1), number("per_page", 25)) {
        (Ok(page), Ok(per_page)) => (page, per_page),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if per_page > 100 {
        return invalid("querystring", "per_page", "Must be at most 100.");
    }
    let all = zones.zones();
    let slice: Vec<Value> = page_of(&all, page, per_page)
        .iter()
        .map(domain_json)
        .collect();
    Response::json(200, &json!(slice)).with_header("total-count", &all.len().to_string())
}

fn rrset(
    zones: &FakeZones,
    request: &Request,
    zone: &FakeZone,
    method: &str,
    name: &str,
    rtype: &str,
) -> Response {
    // LiveDNS's name pattern refuses a final dot; any other name is taken as relative, so a
    // full name sent by mistake would land at NAME.ZONE.
    if name.is_empty() || name.ends_with('.') {
        return invalid("path", "rrset_name", "Does not match the expected pattern.");
    }
    if rtype != "TXT" {
        // Other types exist, but nothing in these tests has any business with them.
        return invalid("path", "rrset_type", "This stand-in serves TXT only.");
    }
    let fqdn = if name == "@" {
        zone.name.clone()
    } else {
        format!("{}.{}", name.to_ascii_lowercase(), zone.name)
    };
    let existing: Vec<FakeRecord> = zones
        .records_named(&fqdn)
        .into_iter()
        .filter(|r| r.rtype == "TXT")
        .collect();
    let not_found = || {
        error(
            404,
            "dns-record",
            "Not Found",
            &format!("Can't find the DNS record {name}/{rtype} in the zone"),
        )
    };
    match method {
        "GET" if existing.is_empty() => not_found(),
        "GET" => Response::json(
            200,
            &json!({"rrset_name": name, "rrset_type": rtype,
                "rrset_ttl": existing[0].ttl,
                "rrset_href": format!("{HOST}/domains/{}/records/{name}/{rtype}", zone.name),
                "rrset_values": existing.iter().map(|r| names::quote_txt(&r.value)).collect::<Vec<_>>()}),
        ),
        "PUT" => {
            if request.header("content-type") != Some("application/json") {
                return error(
                    415,
                    "HTTPUnsupportedMediaType",
                    "Unsupported Media Type",
                    "The request's content type is not supported.",
                );
            }
            let body = request.json();
            let ttl = match &body["rrset_ttl"] {
                Value::Null => 10_800,
                ttl => match ttl.as_u64().filter(|t| (300..=2_592_000).contains(t)) {
                    Some(ttl) => ttl,
                    None => {
                        return invalid("body", "rrset_ttl", "Must be between 300 and 2592000.");
                    }
                },
            };
            let Some(values) = body["rrset_values"].as_array().filter(|v| !v.is_empty()) else {
                return invalid("body", "rrset_values", "Shorter than minimum length 1.");
            };
            let mut data = Vec::new();
            for value in values {
                match value.as_str() {
                    // Stored quoted either way: bare values are taken as they are.
                    Some(v) if !v.is_empty() => {
                        let value = names::unquote_txt(v);
                        if !data.contains(&value) {
                            data.push(value);
                        }
                    }
                    _ => return invalid("body", "rrset_values", "Not a valid string."),
                }
            }
            // The RRset becomes exactly these values, all with this TTL.
            for record in &existing {
                if record.ttl != ttl || !data.contains(&record.value) {
                    zones.remove(&record.id);
                }
            }
            for value in &data {
                if !existing.iter().any(|r| &r.value == value && r.ttl == ttl) {
                    zones.add(&zone.name, &fqdn, rtype, value, ttl);
                }
            }
            Response::json(201, &json!({"message": "DNS Record Created"}))
        }
        "DELETE" if existing.is_empty() => not_found(),
        "DELETE" => {
            for record in &existing {
                zones.remove(&record.id);
            }
            Response::empty(204)
        }
        _ => error(
            405,
            "HTTPMethodNotAllowed",
            "Method Not Allowed",
            "The method is not allowed for the requested URL.",
        ),
    }
}

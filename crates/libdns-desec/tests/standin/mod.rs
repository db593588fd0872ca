//! A stand-in for the deSEC API v1's domain and RRset endpoints, after deSEC's documentation
//! (dns/domains, dns/rrsets, authentication) and its API tests: `Authorization: Token`
//! authentication, paths ending in `/` (Django redirects others), `owns_qname` domain lookup,
//! RRsets addressed by subname (`@` for the apex in URLs, `""` in bodies) and type, TXT records in
//! presentation format (quoted), TTLs between the domain's `minimum_ttl` (3600) and 86400,
//! 201 for a created RRset and 400 for one that exists, PATCH of `records` (emptying deletes),
//! 204 for deletes, and Django REST Framework error bodies (`{"detail"}` or field lists).

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeZone, FakeZones, Request, Response};
use serde_json::{Value, json};

pub const TOKEN: &str = "desec-test-token-0123456789abcdefABCD";
pub const PREFIX: &str = "/api/v1/";
pub const MINIMUM_TTL: u64 = 3600;
/// A domain whose minimum TTL deSEC lowered on request (support can do that per domain).
pub const LOW_TTL_DOMAIN: &str = "lowttl.test";
pub const LOW_MINIMUM_TTL: u64 = 60;
pub const MAX_TTL: u64 = 86_400;
const MAX_RECORDS: usize = 4091;
pub const EXISTS: &str =
    "Another RRset with the same subdomain and type exists for this domain. (Try modifying it.)";

fn detail(status: u16, text: &str) -> Response {
    Response::json(status, &json!({"detail": text}))
}

fn not_found() -> Response {
    detail(404, "Not found.")
}

/// A field error, as Django REST Framework reports one.
pub fn field_error(field: &str, text: &str) -> Response {
    Response::json(400, &json!({ field: [text] }))
}

fn minimum_ttl(zone: &str) -> u64 {
    if zone == LOW_TTL_DOMAIN {
        LOW_MINIMUM_TTL
    } else {
        MINIMUM_TTL
    }
}

fn domain_json(z: &FakeZone) -> Value {
    json!({
        "created": "2026-01-01T00:00:00.000000Z", "minimum_ttl": minimum_ttl(&z.name), "name": z.name,
        "published": "2026-01-01T00:00:00.000000Z", "touched": "2026-01-01T00:00:00.000000Z"
    })
}

fn fqdn(subname: &str, zone: &str) -> String {
    if subname.is_empty() {
        zone.to_owned()
    } else {
        format!("{subname}.{zone}")
    }
}

/// The RRset (`subname`, `rtype`) of `zone`, or `None` when it has no records.
fn rrset_json(zones: &FakeZones, zone: &str, subname: &str, rtype: &str) -> Option<Value> {
    let name = fqdn(subname, zone);
    let records: Vec<_> = zones
        .records_named(&name)
        .into_iter()
        .filter(|r| r.rtype == rtype)
        .collect();
    let ttl = records.first()?.ttl;
    let values: Vec<String> = records
        .iter()
        .map(|r| {
            if rtype == "TXT" {
                names::quote_txt(&r.value)
            } else {
                r.value.clone()
            }
        })
        .collect();
    Some(json!({
        "created": "2026-01-01T00:00:00.000000Z", "domain": zone, "subname": subname,
        "name": format!("{name}."), "type": rtype, "records": values, "ttl": ttl,
        "touched": "2026-01-01T00:00:00.000000Z"
    }))
}

/// The values of TXT records in presentation format: one or more quoted strings, or one
/// unquoted word (deSEC canonicalises it to a quoted string).
fn txt_values(records: &Value) -> Result<Vec<String>, Response> {
    let Some(items) = records.as_array() else {
        return Err(field_error(
            "records",
            "Expected a list of items but got type \"str\".",
        ));
    };
    if items.len() > MAX_RECORDS {
        return Err(field_error(
            "records",
            &format!("Ensure this field has no more than {MAX_RECORDS} elements."),
        ));
    }
    let mut values = Vec::new();
    for item in items {
        let Some(text) = item.as_str() else {
            return Err(field_error("records", "Not a valid string."));
        };
        let text = text.trim();
        let quoted = text.starts_with('"') && text.ends_with('"') && text.len() >= 2;
        let bare_word = !text.is_empty() && !text.contains(['"', ' ', '\t', '\\']);
        if !quoted && !bare_word {
            return Err(field_error(
                "records",
                &format!("Record content for type TXT malformed: {text}"),
            ));
        }
        values.push(names::unquote_txt(text));
    }
    Ok(values)
}

fn ttl(body: &Value, zone: &str, required: bool) -> Result<Option<u64>, Response> {
    let minimum = minimum_ttl(zone);
    match &body["ttl"] {
        Value::Null if required => Err(field_error("ttl", "This field is required.")),
        Value::Null => Ok(None),
        value => match value.as_u64() {
            Some(ttl) if ttl < minimum => Err(field_error(
                "ttl",
                &format!("Ensure this value is greater than or equal to {minimum}."),
            )),
            Some(ttl) if ttl > MAX_TTL => Err(field_error(
                "ttl",
                &format!("Ensure this value is less than or equal to {MAX_TTL}."),
            )),
            Some(ttl) => Ok(Some(ttl)),
            None => Err(field_error("ttl", "A valid integer is required.")),
        },
    }
}

fn json_body(request: &Request) -> Result<Value, Response> {
    match request.header("content-type") {
        Some(t) if t.starts_with("application/json") => {}
        other => {
            return Err(detail(
                415,
                &format!(
                    "Unsupported media type \"{}\" in request.",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| detail(400, &format!("JSON parse error - {e}")))
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    match request.header("authorization") {
        None => return detail(401, "Authentication credentials were not provided."),
        Some(value) if value != format!("Token {TOKEN}") => {
            return detail(401, "Invalid token.");
        }
        Some(_) => {}
    }
    if !request.path.ends_with('/') {
        // Django's APPEND_SLASH.
        return Response::empty(301).with_header("location", &format!("{}/", request.path));
    }
    let Some(segments) = request.segments_after(PREFIX) else {
        return not_found();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["domains"]) => {
            let Some(qname) = request.query_param("owns_qname") else {
                // The plain listing exists too; nothing here reads it.
                return detail(400, "Stand-in: only owns_qname listings are modelled.");
            };
            let all = zones.zones();
            let responsible = names::longest_zone(&qname, all.iter().map(|z| z.name.as_str()))
                .and_then(|name| zones.zone_by_name(name));
            let found: Vec<Value> = responsible.iter().map(domain_json).collect();
            Response::json(200, &json!(found))
        }
        ("GET", ["domains", name]) => match zones.zone_by_name(name) {
            Some(zone) => Response::json(200, &domain_json(&zone)),
            None => not_found(),
        },
        (method, ["domains", name, "rrsets", rest @ ..]) => {
            let Some(zone) = zones.zone_by_name(name) else {
                return not_found();
            };
            rrsets(zones, &zone.name, method, rest, request)
        }
        _ => not_found(),
    }
}

fn rrsets(
    zones: &FakeZones,
    zone: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Response {
    match (method, rest) {
        ("POST", []) => create(zones, zone, request),
        (method, [subname, rtype]) => {
            // `@` (or `...`) stands for the apex in URLs.
            let subname = match *subname {
                "@" | "..." => "",
                other => other,
            };
            let rtype = rtype.to_ascii_uppercase();
            match method {
                "GET" => match rrset_json(zones, zone, subname, &rtype) {
                    Some(rrset) => Response::json(200, &rrset),
                    None => not_found(),
                },
                "PATCH" => patch(zones, zone, subname, &rtype, request),
                "DELETE" => {
                    zones.set_rrset(zone, &fqdn(subname, zone), &rtype, &[], 0);
                    Response::empty(204)
                }
                _ => detail(405, &format!("Method \"{method}\" not allowed.")),
            }
        }
        _ => not_found(),
    }
}

fn create(zones: &FakeZones, zone: &str, request: &Request) -> Response {
    let body = match json_body(request) {
        Ok(body) => body,
        Err(e) => return e,
    };
    let Some(rtype) = body["type"].as_str() else {
        return field_error("type", "This field is required.");
    };
    let Some(subname) = body["subname"].as_str() else {
        return field_error("subname", "This field is required.");
    };
    let valid_subname = subname.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_*".contains(c))
    });
    if !subname.is_empty() && !valid_subname {
        return field_error(
            "subname",
            "Subname can only use (lowercase) a-z, 0-9, ., -, and _, may start with a '*.', or just be '*'. Components may not exceed 63 characters.",
        );
    }
    let ttl = match ttl(&body, zone, true) {
        Ok(ttl) => ttl.unwrap_or(MINIMUM_TTL),
        Err(e) => return e,
    };
    let values = if rtype == "TXT" {
        match txt_values(&body["records"]) {
            Ok(values) => values,
            Err(e) => return e,
        }
    } else {
        return field_error("type", "Stand-in: only TXT RRsets are modelled.");
    };
    if values.is_empty() {
        return field_error("records", "This field may not be empty.");
    }
    if rrset_json(zones, zone, subname, rtype).is_some() {
        return Response::json(400, &json!({"non_field_errors": [EXISTS]}));
    }
    zones.set_rrset(zone, &fqdn(subname, zone), rtype, &values, ttl);
    Response::json(
        201,
        &rrset_json(zones, zone, subname, rtype).unwrap_or(Value::Null),
    )
}

fn patch(zones: &FakeZones, zone: &str, subname: &str, rtype: &str, request: &Request) -> Response {
    let body = match json_body(request) {
        Ok(body) => body,
        Err(e) => return e,
    };
    let Some(existing) = rrset_json(zones, zone, subname, rtype) else {
        return not_found();
    };
    let ttl = match ttl(&body, zone, false) {
        Ok(ttl) => ttl.unwrap_or_else(|| existing["ttl"].as_u64().unwrap_or(MINIMUM_TTL)),
        Err(e) => return e,
    };
    let values = match &body["records"] {
        Value::Null => txt_values(&existing["records"]).unwrap_or_default(),
        records => match txt_values(records) {
            Ok(values) => values,
            Err(e) => return e,
        },
    };
    zones.set_rrset(zone, &fqdn(subname, zone), rtype, &values, ttl);
    match rrset_json(zones, zone, subname, rtype) {
        Some(rrset) => Response::json(200, &rrset),
        // Emptied: the RRset is gone.
        None => Response::empty(204),
    }
}

//! A stand-in for the PowerDNS Authoritative Server's HTTP API (`/api/v1`), after its
//! documentation (docs/http-api, the OpenAPI spec) and webserver code:
//!
//! - `X-API-Key` authentication; 401 otherwise. Errors are `{"error": ...}` (with `errors`
//!   for several) when the request's `Accept` has `application/json`, plain text otherwise;
//! - `GET servers/localhost/zones` (one unpaged array; `?zone=NAME.` selects one,
//!   `?dnssec=true|false`); zone ids are the names with their dot;
//! - `GET servers/localhost/zones/{id}` with `rrset_name` / `rrset_type` filters (`rrset_type`
//!   only with `rrset_name`), or, as older servers do, ignoring them ([`handle_old`]);
//!   404 `Could not find domain 'x.'` for an unknown zone;
//! - `PATCH servers/localhost/zones/{id}` with `{"rrsets": [...]}`: names absolute (ending in
//!   `.`) and inside the zone, `changetype` `REPLACE` (with `ttl` and `records`; TXT content
//!   quoted, in strings of at most 255 bytes; no duplicate content) or `DELETE` (a set that
//!   is not there is no error); `EXTEND`/`PRUNE` are refused as by 4.x servers. Every change is
//!   checked before any is made; 204 on success, 422 with PowerDNS's texts otherwise.
//!
//! An RRset has one TTL: a `REPLACE` gives every record of the set the new TTL.

use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response};
use serde_json::{Value, json};

pub const KEY: &str = "pdns-test-key-0123456789";
pub const SERVER_ID: &str = "localhost";

/// Answers one request against `zones`, as a current server.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    serve(zones, request, false)
}

/// Answers one request against `zones`, as a server that ignores the `rrset_name` and
/// `rrset_type` filters and always sends the whole zone.
pub fn handle_old(zones: &FakeZones, request: &Request) -> Response {
    serve(zones, request, true)
}

fn error(request: &Request, status: u16, message: &str) -> Response {
    if wants_json(request) {
        Response::json(status, &json!({"error": message}))
    } else {
        Response::text(status, "text/plain; charset=utf-8", message)
    }
}

fn wants_json(request: &Request) -> bool {
    request
        .header("accept")
        .is_some_and(|a| a.contains("application/json"))
}

fn zone_json(name: &str) -> Value {
    json!({
        "id": format!("{name}."), "name": format!("{name}."), "kind": "Native",
        "url": format!("/api/v1/servers/localhost/zones/{name}."), "account": "",
        "dnssec": false, "serial": 2026010101, "edited_serial": 2026010101,
        "notified_serial": 0, "last_check": 0, "masters": []
    })
}

/// TXT data in presentation form: quoted, split in strings of at most 255 bytes.
pub fn quote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    let mut strings = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + 255).min(bytes.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        strings.push(madmail_libdns_http::names::quote_txt(&value[start..end]));
        start = end;
    }
    strings.join(" ")
}

/// The strings of TXT content, or PowerDNS's complaint.
fn parse_txt(content: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut chars = content.chars().peekable();
    let mut position = 0;
    if !content.starts_with('"') {
        return Err(format!(
            "Data field in DNS should start with quote (\") at position 0 of '{content}'"
        ));
    }
    while let Some(c) = chars.next() {
        position += 1;
        match c {
            ' ' | '\t' => {}
            '"' => {
                let mut string = Vec::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("Unterminated string in '{content}'")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => string.push(escaped),
                            None => return Err(format!("Unterminated string in '{content}'")),
                        },
                        Some(c) => string.push(c),
                    }
                }
                let string: String = string.into_iter().collect();
                if string.len() > 255 {
                    return Err(format!("String too long in '{content}'"));
                }
                value.push_str(&string);
            }
            _ => {
                return Err(format!(
                    "Data field in DNS should start with quote (\") at position {position} of '{content}'"
                ));
            }
        }
    }
    Ok(value)
}

fn serve(zones: &FakeZones, request: &Request, old: bool) -> Response {
    if request.header("x-api-key") != Some(KEY) {
        return error(request, 401, "Unauthorized");
    }
    if request.path == "/api" {
        return Response::json(200, &json!([{"url": "/api/v1", "version": 1}]));
    }
    let Some(segments) = request.segments_after("/api/v1/") else {
        return error(request, 404, "Not Found");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.as_str();
    match segments.as_slice() {
        ["servers"] if method == "GET" => Response::json(
            200,
            &json!([{"type": "Server", "id": SERVER_ID, "daemon_type": "authoritative",
                "version": "4.9.4", "url": "/api/v1/servers/localhost",
                "config_url": "/api/v1/servers/localhost/config{/config_setting}",
                "zones_url": "/api/v1/servers/localhost/zones{/zone}"}]),
        ),
        ["servers", server, ..] if *server != SERVER_ID => error(request, 404, "Not Found"),
        ["servers", _, "zones"] if method == "GET" => {
            if let Some(dnssec) = request.query_param("dnssec")
                && dnssec != "true"
                && dnssec != "false"
            {
                return error(request, 422, "'dnssec' should be 'true' or 'false'");
            }
            let wanted = request
                .query_param("zone")
                .map(|z| z.trim_end_matches('.').to_ascii_lowercase());
            let list: Vec<Value> = zones
                .zones()
                .iter()
                .filter(|z| wanted.as_ref().is_none_or(|w| *w == z.name))
                .map(|z| zone_json(&z.name))
                .collect();
            Response::json(200, &json!(list))
        }
        ["servers", _, "zones", id] => {
            let Some(zone) = zones
                .zones()
                .into_iter()
                .find(|z| format!("{}.", z.name) == *id)
            else {
                return error(request, 404, &format!("Could not find domain '{id}'"));
            };
            match method {
                "GET" => detail(zones, &zone.name, request, old),
                "PATCH" => patch(zones, &zone.name, request),
                _ => error(request, 405, "Method Not Allowed"),
            }
        }
        _ => error(request, 404, "Not Found"),
    }
}

fn detail(zones: &FakeZones, zone: &str, request: &Request, old: bool) -> Response {
    let mut records = zones.records_in(zone);
    if !old {
        let name = request.query_param("rrset_name");
        let rtype = request.query_param("rrset_type");
        if rtype.is_some() && name.is_none() {
            return error(request, 422, "rrset_type given without rrset_name");
        }
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            records.retain(|r| r.name == name);
        }
        if let Some(rtype) = rtype {
            records.retain(|r| r.rtype.eq_ignore_ascii_case(&rtype));
        }
    }
    let mut body = zone_json(zone);
    body["rrsets"] = json!(rrsets(&records));
    Response::json(200, &body)
}

fn rrsets(records: &[FakeRecord]) -> Vec<Value> {
    let mut sets: Vec<((String, String), Vec<&FakeRecord>)> = Vec::new();
    for r in records {
        let key = (r.name.clone(), r.rtype.clone());
        match sets.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => sets.push((key, vec![r])),
        }
    }
    sets.into_iter()
        .map(|((name, rtype), members)| {
            let records: Vec<Value> = members
                .iter()
                .map(|r| {
                    let content = if r.rtype == "TXT" {
                        quote(&r.value)
                    } else {
                        r.value.clone()
                    };
                    json!({"content": content, "disabled": false})
                })
                .collect();
            json!({"name": format!("{name}."), "type": rtype, "ttl": members[0].ttl,
                "records": records, "comments": []})
        })
        .collect()
}

/// One checked change: (name, type, `Some((ttl, values))` to replace, `None` to delete).
type Change = (String, String, Option<(u64, Vec<String>)>);

fn patch(zones: &FakeZones, zone: &str, request: &Request) -> Response {
    if request.body.is_empty() {
        return error(
            request,
            400,
            "JSON document expected in request body, but body was empty",
        );
    }
    let Ok(document) = serde_json::from_slice::<Value>(&request.body) else {
        return error(
            request,
            400,
            "Could not parse JSON document in request body",
        );
    };
    if !document.is_object() {
        return error(request, 400, "JSON document is not an object");
    }
    let Some(sets) = document["rrsets"].as_array() else {
        return error(request, 422, "No rrsets given in update request");
    };
    let mut changes: Vec<Change> = Vec::new();
    let mut problems = Vec::new();
    for set in sets {
        match check(zone, set) {
            Ok(change) => changes.push(change),
            Err(problem) => problems.push(problem),
        }
    }
    match problems.len() {
        0 => {}
        1 => return error(request, 422, &problems[0]),
        _ => {
            return Response::json(
                422,
                &json!({"error": "Multiple errors found in RRset", "errors": problems}),
            );
        }
    }
    for (name, rtype, replace) in changes {
        for r in zones.records_named(&name) {
            if r.rtype == rtype {
                zones.remove(&r.id);
            }
        }
        if let Some((ttl, values)) = replace {
            for value in values {
                zones.add(zone, &name, &rtype, &value, ttl);
            }
        }
    }
    Response::empty(204)
}

fn check(zone: &str, set: &Value) -> Result<Change, String> {
    let Some(name) = set["name"].as_str() else {
        return Err("Key 'name' not present or not a String".into());
    };
    let Some(rtype) = set["type"].as_str() else {
        return Err("Key 'type' not present or not a String".into());
    };
    let Some(changetype) = set["changetype"].as_str() else {
        return Err("Key 'changetype' not present or not a String".into());
    };
    if !name.ends_with('.') {
        return Err(format!("DNS Name '{name}' is not canonical"));
    }
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    if bare != zone && !bare.ends_with(&format!(".{zone}")) {
        return Err(format!("RRset {name} IN {rtype}: Name is out of zone"));
    }
    let rtype = rtype.to_ascii_uppercase();
    match changetype.to_ascii_uppercase().as_str() {
        "DELETE" => Ok((bare, rtype, None)),
        "REPLACE" => {
            let records = set["records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                return Ok((bare, rtype, None));
            }
            let Some(ttl) = set["ttl"].as_u64() else {
                return Err("Key 'ttl' not present or not an Integer".into());
            };
            let mut values: Vec<String> = Vec::new();
            let mut contents: Vec<&str> = Vec::new();
            for record in &records {
                let Some(content) = record["content"].as_str() else {
                    return Err("Key 'content' not present or not a String".into());
                };
                if contents.contains(&content) {
                    return Err(format!(
                        "Duplicate record in RRset {name} IN {rtype} with content \"{content}\""
                    ));
                }
                contents.push(content);
                let value = if rtype == "TXT" {
                    parse_txt(content).map_err(|e| {
                        format!(
                            "Record {name}/{rtype} '{content}': Parsing record content (try 'pdnsutil check-zone'): {e}"
                        )
                    })?
                } else {
                    content.to_owned()
                };
                values.push(value);
            }
            Ok((bare, rtype, Some((ttl, values))))
        }
        _ => Err("Changetype not understood".into()),
    }
}

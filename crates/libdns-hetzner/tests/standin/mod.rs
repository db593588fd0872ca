//! A stand-in for the Hetzner Cloud API's DNS endpoints (`/v1/zones`, RRsets and their
//! actions), after docs.hetzner.cloud: `Authorization: Bearer` project tokens, zones paged with
//! `page`/`per_page` (default 25, at most 50) and `meta.pagination`, zones addressed by id or
//! name, RRsets named relative to their zone (`@` for the apex, lowercase, never ending in a
//! dot or the zone's name), TXT data as quoted strings of at most 255 characters, TTLs from
//! 60 s, changes applied through asynchronous actions (`running` when started, `success` when
//! asked again), and `{"error": {"code", "message", "details"}}` error bodies.

use std::sync::{Arc, Mutex};

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{
    FakeRecord, FakeZone, FakeZones, Request, Response, page_count, page_of,
};
use serde_json::{Value, json};

pub const TOKEN: &str = "hcloud-test-token-0123456789abcdef";
pub const PREFIX: &str = "/v1/";
/// The TTL a new RRset gets when the request sets none (a zone's default).
const ZONE_DEFAULT_TTL: u64 = 3600;

/// The stand-in's state; its clones share it.
#[derive(Clone)]
pub struct Standin {
    pub zones: FakeZones,
    /// The actions started so far (command, zone id); an action's id is its index plus one.
    actions: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

pub fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"code": code, "message": message, "details": {}}}),
    )
}

fn invalid_field(field: &str, message: &str) -> Response {
    Response::json(
        400,
        &json!({"error": {"code": "invalid_input", "message": format!("invalid input in field '{field}'"),
            "details": {"fields": [{"name": field, "messages": [message]}]}}}),
    )
}

/// The numeric id the API shows for a zone of the store (`zone0042` is 42).
pub fn zone_number(zone: &FakeZone) -> u64 {
    zone.id.trim_start_matches("zone").parse().unwrap_or(0)
}

fn zone_json(zones: &FakeZones, zone: &FakeZone) -> Value {
    json!({
        "id": zone_number(zone), "name": zone.name, "created": "2026-01-01T00:00:00Z",
        "mode": "primary", "primary_nameservers": [], "labels": {},
        "protection": {"delete": false}, "ttl": ZONE_DEFAULT_TTL, "status": "ok",
        "record_count": zones.records_in(&zone.name).len(),
        "authoritative_nameservers": {"assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.", "helium.ns.hetzner.de."],
            "delegated": [], "delegation_last_check": null, "delegation_status": "unknown"},
        "registrar": "other"
    })
}

/// An action the stand-in has carried out already; it reports `running` when started.
fn action_json(id: u64, command: &str, zone: u64, status: &str) -> Value {
    json!({
        "id": id, "command": command, "status": status,
        "progress": if status == "success" { 100 } else { 0 },
        "started": "2026-01-01T00:00:00Z",
        "finished": if status == "success" { json!("2026-01-01T00:00:01Z") } else { Value::Null },
        "resources": [{"id": zone, "type": "zone"}], "error": null
    })
}

/// Whether `data` is TXT data as the API takes it: one or more quoted strings of at most 255
/// characters, separated by spaces.
fn valid_txt(data: &str) -> bool {
    let mut chars = data.chars().peekable();
    let mut strings = 0;
    loop {
        if chars.next() != Some('"') {
            return false;
        }
        let mut length = 0;
        loop {
            match chars.next() {
                None => return false,
                Some('"') => break,
                Some('\\') => {
                    if chars.next().is_none() {
                        return false;
                    }
                    length += 1;
                }
                Some(_) => length += 1,
            }
        }
        if length > 255 {
            return false;
        }
        strings += 1;
        match chars.next() {
            None => return strings > 0,
            Some(' ') => {}
            Some(_) => return false,
        }
    }
}

impl Standin {
    pub fn new(zones: FakeZones) -> Standin {
        Standin {
            zones,
            actions: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Records a started action; its reply body.
    fn start(&self, command: &'static str, zone: u64) -> Response {
        let mut actions = self.actions.lock().unwrap();
        actions.push((command, zone));
        let id = actions.len() as u64;
        Response::json(
            201,
            &json!({"action": action_json(id, command, zone, "running")}),
        )
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        let reply = self.route(request);
        // Every reply of the Cloud API carries its rate limit (3600 requests an hour).
        reply
            .with_header("ratelimit-limit", "3600")
            .with_header("ratelimit-remaining", "3599")
            .with_header("ratelimit-reset", "1767225600")
    }

    fn route(&self, request: &Request) -> Response {
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return error(401, "unauthorized", "unable to authenticate");
        }
        let Some(segments) = request.segments_after(PREFIX) else {
            return error(404, "not_found", "not found");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["zones"]) => self.list_zones(request),
            ("GET", ["zones", "actions", id]) | ("GET", ["actions", id]) => {
                let actions = self.actions.lock().unwrap();
                let found = id
                    .parse::<usize>()
                    .ok()
                    .and_then(|id| Some((id, actions.get(id.checked_sub(1)?)?)));
                match found {
                    Some((id, (command, zone))) => Response::json(
                        200,
                        &json!({"action": action_json(id as u64, command, *zone, "success")}),
                    ),
                    None => error(404, "not_found", "action not found"),
                }
            }
            (method, ["zones", zone, rest @ ..]) => {
                let zone = if zone.chars().all(|c| c.is_ascii_digit()) {
                    self.zones
                        .zones()
                        .into_iter()
                        .find(|z| zone_number(z).to_string() == *zone)
                } else {
                    self.zones.zone_by_name(zone).filter(|z| z.name == *zone)
                };
                let Some(zone) = zone else {
                    return error(404, "not_found", "zone not found");
                };
                match (method, rest) {
                    ("GET", []) => {
                        Response::json(200, &json!({"zone": zone_json(&self.zones, &zone)}))
                    }
                    (method, ["rrsets", name, rtype, more @ ..]) => {
                        self.rrset(request, &zone, method, name, rtype, more)
                    }
                    _ => error(404, "not_found", "not found"),
                }
            }
            _ => error(404, "not_found", "not found"),
        }
    }

    fn list_zones(&self, request: &Request) -> Response {
        let number = |name: &str, default: usize| match request.query_param(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid_field(name, "must be a positive integer")),
        };
        let (page, per_page) = match (number("page", 1), number("per_page", 25)) {
            (Ok(page), Ok(per_page)) => (page, per_page),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if per_page > 50 {
            return invalid_field("per_page", "must be less than or equal to 50");
        }
        let mut all = self.zones.zones();
        if let Some(name) = request.query_param("name") {
            all.retain(|z| z.name == name);
        }
        let last_page = page_count(all.len(), per_page);
        let zones: Vec<Value> = page_of(&all, page, per_page)
            .iter()
            .map(|z| zone_json(&self.zones, z))
            .collect();
        let previous = if page > 1 {
            json!(page - 1)
        } else {
            Value::Null
        };
        let next = if page < last_page {
            json!(page + 1)
        } else {
            Value::Null
        };
        Response::json(
            200,
            &json!({"zones": zones, "meta": {"pagination": {"page": page, "per_page": per_page,
                "previous_page": previous, "next_page": next, "last_page": last_page,
                "total_entries": all.len()}}}),
        )
    }

    fn rrset(
        &self,
        request: &Request,
        zone: &FakeZone,
        method: &str,
        name: &str,
        rtype: &str,
        more: &[&str],
    ) -> Response {
        if name != name.to_ascii_lowercase()
            || name.ends_with('.')
            || name == zone.name
            || name.ends_with(&format!(".{}", zone.name))
        {
            return invalid_field(
                "name",
                "must be lowercase and relative to the zone, without a trailing dot",
            );
        }
        if rtype != "TXT" {
            // The other types exist, but nothing in these tests has any business with them.
            return invalid_field("type", "this stand-in serves TXT only");
        }
        let fqdn = if name == "@" {
            zone.name.clone()
        } else {
            format!("{name}.{}", zone.name)
        };
        let records: Vec<FakeRecord> = self
            .zones
            .records_named(&fqdn)
            .into_iter()
            .filter(|r| r.rtype == rtype)
            .collect();
        match (method, more) {
            ("GET", []) => {
                if records.is_empty() {
                    return error(404, "not_found", "rrset not found");
                }
                Response::json(
                    200,
                    &json!({"rrset": {"id": format!("{name}/{rtype}"), "name": name, "type": rtype,
                        "ttl": records[0].ttl, "labels": {}, "protection": {"change": false},
                        "records": records.iter().map(|r| json!({"value": names::quote_txt(&r.value), "comment": ""})).collect::<Vec<_>>(),
                        "zone": zone_number(zone)}}),
                )
            }
            ("POST", ["actions", action @ ("add_records" | "remove_records")]) => {
                if request.header("content-type") != Some("application/json") {
                    return error(400, "json_error", "invalid JSON or content type");
                }
                let body = request.json();
                let Some(values) = body["records"].as_array().filter(|v| !v.is_empty()) else {
                    return invalid_field("records", "must contain at least one record");
                };
                let mut data = Vec::new();
                for value in values {
                    match value["value"].as_str() {
                        Some(v) if valid_txt(v) => data.push(names::unquote_txt(v)),
                        _ => {
                            return invalid_field(
                                "records",
                                "TXT values must be quoted strings of at most 255 characters",
                            );
                        }
                    }
                }
                if *action == "add_records" {
                    let ttl = match &body["ttl"] {
                        Value::Null => ZONE_DEFAULT_TTL,
                        ttl => match ttl.as_u64().filter(|t| (60..=2_147_483_647).contains(t)) {
                            Some(ttl) => ttl,
                            None => {
                                return invalid_field("ttl", "must be between 60 and 2147483647");
                            }
                        },
                    };
                    if data
                        .iter()
                        .any(|value| records.iter().any(|r| &r.value == value))
                    {
                        return error(409, "uniqueness_error", "record already exists in rrset");
                    }
                    // The TTL applies to a new RRset; new values join an existing one's TTL.
                    let ttl = records.first().map_or(ttl, |r| r.ttl);
                    for value in &data {
                        self.zones.add(&zone.name, &fqdn, rtype, value, ttl);
                    }
                    self.start("add_rrset_records", zone_number(zone))
                } else {
                    if records.is_empty() {
                        return error(404, "not_found", "rrset not found");
                    }
                    // Values the RRset does not hold are ignored; the RRset goes with its last
                    // value.
                    for record in records.iter().filter(|r| data.contains(&r.value)) {
                        self.zones.remove(&record.id);
                    }
                    self.start("remove_rrset_records", zone_number(zone))
                }
            }
            _ => error(404, "not_found", "not found"),
        }
    }
}

//! A stand-in for Metaname's JSON-RPC API 1.1 (metaname.net/api/1.1/doc), over
//! [`FakeZones`]: one URL taking JSON-RPC 2.0 POSTs, the account reference and API key as the
//! first two positional parameters of every method, `dns_zone` / `create_dns_record` /
//! `delete_dns_record` / `account_balance`, records named relative to their zone with opaque
//! string references, bare TXT data, TTLs of at least 60 s, and errors as JSON-RPC `error`
//! objects in HTTP 200 replies with Metaname's codes (sent negative, as Metaname's clients
//! expect): 1 authentication failed, 4 invalid domain name, 5 domain name not found, 16
//! invalid DNS record, 17 DNS record not found, and the JSON-RPC codes -32700, -32600, -32601,
//! -32602. The API has no paging: `dns_zone` returns the whole zone.

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeRecord, FakeZones, Request, Response};
use serde_json::{Map, Value, json};

pub const ACCOUNT: &str = "ab12";
pub const KEY: &str = "metaname-test-key-0123456789abcdef";
pub const PATH: &str = "/api/1.1";

pub fn rpc_error(id: &Value, code: i64, message: &str, data: Value) -> Response {
    Response::json(
        200,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}}),
    )
}

fn rpc_result(id: &Value, result: Value) -> Response {
    Response::json(200, &json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A domain name as Metaname validates it: letters, digits and hyphens in two or more labels.
fn valid_domain(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        })
}

fn record_json(r: &FakeRecord) -> Value {
    let relative = names::relative(&r.name, &r.zone);
    json!({
        "reference": r.id,
        "name": if relative.is_empty() { "@".to_string() } else { relative },
        "type": r.rtype,
        "aux": null,
        "ttl": r.ttl,
        "data": r.value,
    })
}

/// Answers one request against `zones`.
pub fn handle(zones: &FakeZones, request: &Request) -> Response {
    if request.path != PATH {
        return Response::text(404, "text/html", "<h1>Not Found</h1>");
    }
    if request.method != "POST" {
        return Response::text(405, "text/html", "<h1>Method Not Allowed</h1>");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return rpc_error(&Value::Null, -32700, "Parse error", Value::Null);
    };
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let (Some("2.0"), Some(method), Some(params)) = (
        body["jsonrpc"].as_str(),
        body["method"].as_str(),
        body["params"].as_array(),
    ) else {
        return rpc_error(&id, -32600, "Invalid Request", Value::Null);
    };
    if request.header("content-type") != Some("application/json") {
        return rpc_error(
            &id,
            -32600,
            "Invalid Request",
            json!("expected application/json"),
        );
    }
    if params.len() < 2 {
        return rpc_error(
            &id,
            -32602,
            "Invalid params",
            json!("Wrong number of params"),
        );
    }
    if params[0].as_str() != Some(ACCOUNT) || params[1].as_str() != Some(KEY) {
        return rpc_error(&id, -1, "Authentication failed", Value::Null);
    }
    let args = &params[2..];
    let arity = |n: usize| {
        if args.len() == n {
            None
        } else {
            Some(rpc_error(
                &id,
                -32602,
                "Invalid params",
                json!("Wrong number of params"),
            ))
        }
    };
    match method {
        "account_balance" => arity(0).unwrap_or_else(|| rpc_result(&id, json!("123.45"))),
        "dns_zone" => {
            if let Some(e) = arity(1) {
                return e;
            }
            let zone = match zone_arg(zones, &id, &args[0]) {
                Ok(zone) => zone,
                Err(e) => return e,
            };
            let records: Vec<Value> = zones.records_in(&zone).iter().map(record_json).collect();
            rpc_result(&id, json!(records))
        }
        "create_dns_record" => {
            if let Some(e) = arity(2) {
                return e;
            }
            let zone = match zone_arg(zones, &id, &args[0]) {
                Ok(zone) => zone,
                Err(e) => return e,
            };
            create(zones, &id, &zone, &args[1])
        }
        "delete_dns_record" => {
            if let Some(e) = arity(2) {
                return e;
            }
            let zone = match zone_arg(zones, &id, &args[0]) {
                Ok(zone) => zone,
                Err(e) => return e,
            };
            let Some(reference) = args[1].as_str() else {
                return rpc_error(
                    &id,
                    -20,
                    "Invalid data",
                    json!("reference must be a string"),
                );
            };
            match zones.record(reference).filter(|r| r.zone == zone) {
                Some(record) => {
                    zones.remove(&record.id);
                    rpc_result(&id, Value::Null)
                }
                None => rpc_error(&id, -17, "DNS record not found", Value::Null),
            }
        }
        _ => rpc_error(&id, -32601, "Method not found", Value::Null),
    }
}

/// The zone named by a parameter: a domain name without trailing dot held by the account.
fn zone_arg(zones: &FakeZones, id: &Value, arg: &Value) -> Result<String, Response> {
    let Some(name) = arg.as_str() else {
        return Err(rpc_error(id, -4, "Invalid domain name", Value::Null));
    };
    if !valid_domain(name) {
        return Err(rpc_error(id, -4, "Invalid domain name", json!(name)));
    }
    zones
        .zone_by_name(name)
        .map(|z| z.name)
        .ok_or_else(|| rpc_error(id, -5, "Domain name not found", json!(name)))
}

/// `create_dns_record`: the record object must have exactly name, type, aux, ttl and data.
fn create(zones: &FakeZones, id: &Value, zone: &str, record: &Value) -> Response {
    let invalid = |why: &str| rpc_error(id, -16, "Invalid DNS record", json!(why));
    let Some(fields) = record.as_object() else {
        return invalid("the record must be an object");
    };
    let expected = ["aux", "data", "name", "ttl", "type"];
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != expected {
        return invalid("the record needs exactly name, type, aux, ttl and data");
    }
    let get = |f: &Map<String, Value>, key: &str| f.get(key).cloned().unwrap_or(Value::Null);
    let (Some(name), Some(rtype), Some(data), Some(ttl)) = (
        get(fields, "name").as_str().map(str::to_owned),
        get(fields, "type").as_str().map(str::to_owned),
        get(fields, "data").as_str().map(str::to_owned),
        get(fields, "ttl").as_u64(),
    ) else {
        return invalid("name, type and data must be strings, ttl a number");
    };
    if rtype == "TXT" && !get(fields, "aux").is_null() {
        return invalid("aux must be null for TXT records");
    }
    if ttl < 60 {
        return invalid("ttl must be at least 60");
    }
    // Relative to the zone, or absolute with a trailing dot.
    let fqdn = if name == "@" {
        zone.to_owned()
    } else if name.ends_with('.') {
        if !names::in_zone(&name, zone) {
            return invalid("the name is outside the zone");
        }
        names::bare(&name)
    } else {
        format!("{}.{zone}", name.to_ascii_lowercase())
    };
    let record = zones.add(zone, &fqdn, &rtype, &data, ttl);
    rpc_result(id, json!(record.id))
}

//! A stand-in for Google's OAuth2 token endpoint and the Cloud DNS v1 API, after Google's
//! documentation (OAuth 2.0 for server to server applications, the Cloud DNS REST reference)
//! and Google's client libraries:
//!
//! - `POST /token` (`application/x-www-form-urlencoded`): the JWT bearer grant, whose RS256
//!   signature is verified with the public half of the test's key pair, and whose `alg`,
//!   `kid`, `iss`, `aud` (this endpoint's URL), `scope` and `iat`/`exp` (at most an hour
//!   apart, not expired) are checked; or the `refresh_token` grant of user credentials.
//!   Refusals are OAuth errors (`400 invalid_grant`, `401 invalid_client`, ...).
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token`, with the required
//!   `Metadata-Flavor: Google` header (403 without).
//! - `/dns/v1/projects/{project}/managedZones`: bearer tokens it issued (401 `authError`
//!   otherwise, and after [`Google::revoke_tokens`]); `dnsName` (exact, with its dot),
//!   `maxResults` (at most 100 here, as the server chooses) and opaque `pageToken` paging;
//!   zones in [`PRIVATE_ZONES`] are `private`.
//! - `.../managedZones/{zone}/rrsets?name=&type=`: exact filters, `type` only with `name`;
//!   TXT `rrdatas` quoted.
//! - `POST .../managedZones/{zone}/changes`: every deletion must match a set exactly (TTL and
//!   rrdatas; 404 `notFound` when there is none, 412 `conditionNotMet` otherwise), every
//!   addition must not meet an existing set (409 `alreadyExists`); names absolute and inside
//!   the zone, TTL a non-negative 32-bit number, TXT strings of at most 255 bytes. All is
//!   checked before anything changes. Changes answer `pending`; `GET .../changes/{id}` answers
//!   `done`.
//!
//! Errors are Google's envelope: `{"error": {"code", "message", "errors": [{"message",
//! "domain", "reason"}], "status"}}`.

#![allow(dead_code)] // each test file uses a part

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeZones, Request, Response};
use serde_json::{Value, json};

pub const PROJECT: &str = "madmail-test";
pub const CLIENT_EMAIL: &str = "dns-01@madmail-test.iam.gserviceaccount.com";
pub const KEY_ID: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
pub const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
pub const CLIENT_ID: &str =
    "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";
pub const REFRESH_TOKEN: &str = "1//0refresh-token-of-the-user";
pub const API: &str = "/dns/v1/";
pub const METADATA_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Zones the stand-in reports as `private` (only visible inside a VPC).
pub const PRIVATE_ZONES: [&str; 1] = ["internal.example.org"];
const MAX_PAGE: usize = 100;

/// The test's RSA key pair: PKCS#8 PEM of the private key, DER of the public key.
pub struct TestKey {
    pub pem: String,
    pub public: Vec<u8>,
}

/// One 2048-bit key for the whole test binary.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let public = pair.public_key().as_ref().to_vec();
        TestKey {
            pem: pem("PRIVATE KEY", der.as_ref()),
            public,
        }
    })
}

/// A second key the stand-in does not know.
pub fn other_key_pem() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        pem("PRIVATE KEY", pair.as_der().unwrap().as_ref())
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// A service account key file as the Cloud console writes it.
pub fn key_json(token_uri: &str, private_key_pem: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": private_key_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "108327498453678912345",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/dns-01%40madmail-test.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

/// gcloud's `application_default_credentials.json` of a user.
pub fn user_json(token_uri: &str) -> String {
    json!({
        "type": "authorized_user",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "token_uri": token_uri,
        "quota_project_id": PROJECT
    })
    .to_string()
}

#[derive(Default)]
struct State {
    /// Access tokens issued and still valid.
    tokens: Vec<String>,
    /// Ids of changes made.
    changes: Vec<String>,
}

/// The stand-in's state besides the zones: issued tokens, changes.
#[derive(Clone)]
pub struct Google {
    zones: FakeZones,
    state: Arc<Mutex<State>>,
    counter: Arc<AtomicU64>,
}

impl Google {
    pub fn new(zones: &FakeZones) -> Google {
        Google {
            zones: zones.clone(),
            state: Arc::default(),
            counter: Arc::default(),
        }
    }

    /// Every access token issued so far stops working (401 on the next call).
    pub fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// How many access tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    fn issue(&self) -> Response {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("ya29.c.test-access-token-{n}");
        self.state.lock().unwrap().tokens.push(token.clone());
        Response::json(
            200,
            &json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        if request.path == "/token" {
            return self.token(request);
        }
        if request.path == METADATA_PATH {
            if request.method != "GET" {
                return Response::text(405, "text/html", "Method not allowed");
            }
            if request.header("metadata-flavor") != Some("Google") {
                return Response::text(403, "text/html", "Missing Metadata-Flavor:Google header.");
            }
            return self.issue();
        }
        let Some(segments) = request.segments_after(API) else {
            return error(404, "notFound", "Not Found");
        };
        let bearer = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let valid =
            bearer.is_some_and(|t| self.state.lock().unwrap().tokens.iter().any(|v| v == t));
        if !valid {
            return error(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            );
        }
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["projects", project, "managedZones", rest @ ..] => {
                if *project != PROJECT {
                    return error(403, "forbidden", "The caller does not have permission");
                }
                self.zones_api(request, rest)
            }
            _ => error(404, "notFound", "Not Found"),
        }
    }

    fn token(&self, request: &Request) -> Response {
        if request.method != "POST" {
            return oauth_error(405, "invalid_request", "Method not allowed");
        }
        if request.header("content-type") != Some("application/x-www-form-urlencoded") {
            return oauth_error(400, "invalid_request", "Bad Request");
        }
        let form = request.form();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match field("grant_type") {
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {}
            Some("refresh_token") => {
                if field("client_id") != Some(CLIENT_ID)
                    || field("client_secret") != Some(CLIENT_SECRET)
                {
                    return oauth_error(401, "invalid_client", "Unauthorized");
                }
                if field("refresh_token") != Some(REFRESH_TOKEN) {
                    return oauth_error(400, "invalid_grant", "Bad Request");
                }
                return self.issue();
            }
            _ => return oauth_error(400, "unsupported_grant_type", "Invalid grant_type: "),
        }
        let Some(assertion) = field("assertion") else {
            return oauth_error(
                400,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        let host = request.header("host").unwrap_or_default();
        match check_jwt(assertion, &format!("http://{host}/token")) {
            Ok(()) => self.issue(),
            Err(response) => response,
        }
    }

    fn zones_api(&self, request: &Request, rest: &[&str]) -> Response {
        match (request.method.as_str(), rest) {
            ("GET", []) => {
                let mut all: Vec<Value> = self
                    .zones
                    .zones()
                    .iter()
                    .map(|z| {
                        let private = PRIVATE_ZONES.contains(&z.name.as_str());
                        json!({
                            "kind": "dns#managedZone",
                            "name": format!("zone-{}", z.name.replace('.', "-")),
                            "dnsName": format!("{}.", z.name),
                            "id": z.id.trim_start_matches("zone"),
                            "description": "",
                            "nameServers": ["ns-cloud-a1.googledomains.com."],
                            "visibility": if private { "private" } else { "public" },
                            "creationTime": "2026-01-01T00:00:00.000Z"
                        })
                    })
                    .collect();
                if let Some(dns_name) = request.query_param("dnsName") {
                    all.retain(|z| z["dnsName"] == dns_name.as_str());
                }
                page(request, "managedZones", "dns#managedZonesListResponse", all)
            }
            (method, [zone_name, rest @ ..]) => {
                let Some(zone) = self
                    .zones
                    .zones()
                    .into_iter()
                    .find(|z| format!("zone-{}", z.name.replace('.', "-")) == *zone_name)
                else {
                    return error(
                        404,
                        "notFound",
                        &format!(
                            "The 'parameters.managedZone' resource named '{zone_name}' does not exist."
                        ),
                    );
                };
                match (method, rest) {
                    ("GET", ["rrsets"]) => self.list_rrsets(request, &zone.name),
                    ("POST", ["changes"]) => self.create_change(request, &zone.name),
                    ("GET", ["changes", id]) => {
                        if self.state.lock().unwrap().changes.iter().any(|c| c == id) {
                            Response::json(
                                200,
                                &json!({"kind": "dns#change", "id": id, "status": "done", "startTime": "2026-01-01T00:00:00.000Z"}),
                            )
                        } else {
                            error(
                                404,
                                "notFound",
                                &format!(
                                    "The 'parameters.changeId' resource named '{id}' does not exist."
                                ),
                            )
                        }
                    }
                    _ => error(404, "notFound", "Not Found"),
                }
            }
            _ => error(404, "notFound", "Not Found"),
        }
    }

    /// The zone's RRsets: records grouped by name and type, in store order.
    fn rrsets(&self, zone: &str) -> Vec<Value> {
        let mut sets: Vec<Value> = Vec::new();
        for record in self.zones.records_in(zone) {
            let name = format!("{}.", record.name);
            let data = if record.rtype == "TXT" {
                names::quote_txt(&record.value)
            } else {
                record.value.clone()
            };
            match sets
                .iter_mut()
                .find(|s| s["name"] == name.as_str() && s["type"] == record.rtype.as_str())
            {
                Some(set) => set["rrdatas"].as_array_mut().unwrap().push(json!(data)),
                None => sets.push(json!({
                    "kind": "dns#resourceRecordSet",
                    "name": name,
                    "type": record.rtype,
                    "ttl": record.ttl,
                    "rrdatas": [data]
                })),
            }
        }
        sets
    }

    fn list_rrsets(&self, request: &Request, zone: &str) -> Response {
        let name = request.query_param("name");
        let rtype = request.query_param("type");
        if rtype.is_some() && name.is_none() {
            return error(
                400,
                "required",
                "Required parameter 'name' is missing when 'type' is specified.",
            );
        }
        let mut sets = self.rrsets(zone);
        if let Some(name) = name {
            sets.retain(|s| s["name"] == name.as_str());
        }
        if let Some(rtype) = rtype {
            sets.retain(|s| s["type"] == rtype.as_str());
        }
        page(
            request,
            "rrsets",
            "dns#resourceRecordSetsListResponse",
            sets,
        )
    }

    fn create_change(&self, request: &Request, zone: &str) -> Response {
        if !request
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return error(
                400,
                "parseError",
                "This API does not support parsing form-encoded input.",
            );
        }
        let body = request.json();
        if !body.is_object() {
            return error(400, "parseError", "Invalid JSON payload received.");
        }
        let list = |field: &str| -> Vec<Value> {
            body.get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (additions, deletions) = (list("additions"), list("deletions"));
        if additions.is_empty() && deletions.is_empty() {
            return error(
                400,
                "required",
                "The 'entity.change' parameter is required but was missing.",
            );
        }
        let existing = self.rrsets(zone);
        let find = |set: &Value| {
            existing
                .iter()
                .find(|e| e["name"] == set["name"] && e["type"] == set["type"])
                .cloned()
        };
        // Deletions first: each must match the set exactly.
        let mut deleted: Vec<(String, String)> = Vec::new();
        for (i, set) in deletions.iter().enumerate() {
            let field = format!("entity.change.deletions[{i}]");
            let (name, rtype) = match check_set(set, zone, &field) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let Some(current) = find(set) else {
                return error(
                    404,
                    "notFound",
                    &format!("The '{field}' resource named '{name} ({rtype})' does not exist."),
                );
            };
            let sorted = |v: &Value| {
                let mut data: Vec<String> = v["rrdatas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| d.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                data.sort();
                data
            };
            if current["ttl"] != set["ttl"] || sorted(&current) != sorted(set) {
                return error(
                    412,
                    "conditionNotMet",
                    &format!("Precondition not met for '{field}'"),
                );
            }
            deleted.push((name, rtype));
        }
        let mut added: Vec<(String, String, u64, Vec<String>)> = Vec::new();
        for (i, set) in additions.iter().enumerate() {
            let field = format!("entity.change.additions[{i}]");
            let (name, rtype) = match check_set(set, zone, &field) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let Some(ttl) = set["ttl"].as_u64().filter(|t| *t <= i32::MAX as u64) else {
                return error(
                    400,
                    "invalid",
                    &format!("Invalid value for '{field}.ttl': '{}'", set["ttl"]),
                );
            };
            let rrdatas: Vec<String> = set["rrdatas"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if rrdatas.is_empty() {
                return error(
                    400,
                    "required",
                    &format!("The '{field}.rrdata' parameter is required but was missing."),
                );
            }
            let mut values = Vec::new();
            for (j, data) in rrdatas.iter().enumerate() {
                if rtype == "TXT" && !valid_txt(data) {
                    return error(
                        400,
                        "invalid",
                        &format!("Invalid value for '{field}.rrdata[{j}]': '{data}'"),
                    );
                }
                let value = if rtype == "TXT" {
                    names::unquote_txt(data)
                } else {
                    data.clone()
                };
                if values.contains(&value) {
                    return error(
                        400,
                        "invalid",
                        &format!("The resource record set '{field}' contains duplicate records."),
                    );
                }
                values.push(value);
            }
            let still_there =
                find(set).is_some() && !deleted.contains(&(name.clone(), rtype.clone()));
            if still_there || added.iter().any(|(n, t, _, _)| *n == name && *t == rtype) {
                return error(
                    409,
                    "alreadyExists",
                    &format!("The resource '{field}' named '{name} ({rtype})' already exists"),
                );
            }
            added.push((name, rtype, ttl, values));
        }
        // All checked: apply.
        for (name, rtype) in &deleted {
            for record in self.zones.records_named(name) {
                if record.rtype == *rtype {
                    self.zones.remove(&record.id);
                }
            }
        }
        for (name, rtype, ttl, values) in &added {
            for value in values {
                self.zones.add(zone, name, rtype, value, *ttl);
            }
        }
        let id = {
            let mut state = self.state.lock().unwrap();
            let id = (state.changes.len() + 1).to_string();
            state.changes.push(id.clone());
            id
        };
        Response::json(
            200,
            &json!({
                "kind": "dns#change", "id": id, "status": "pending",
                "startTime": "2026-01-01T00:00:00.000Z",
                "additions": additions, "deletions": deletions
            }),
        )
    }
}

/// The name (absolute, inside the zone) and type of an RRset in a change.
fn check_set(set: &Value, zone: &str, field: &str) -> Result<(String, String), Response> {
    let Some(name) = set["name"].as_str() else {
        return Err(error(
            400,
            "required",
            &format!("The '{field}.name' parameter is required but was missing."),
        ));
    };
    let Some(rtype) = set["type"].as_str() else {
        return Err(error(
            400,
            "required",
            &format!("The '{field}.type' parameter is required but was missing."),
        ));
    };
    if !name.ends_with('.') {
        return Err(error(
            400,
            "invalid",
            &format!("Invalid value for '{field}.name': '{name}'"),
        ));
    }
    if !names::in_zone(name, zone) {
        return Err(error(
            400,
            "invalid",
            &format!("The resource record set '{name}' is not in zone '{zone}.'"),
        ));
    }
    Ok((name.trim_end_matches('.').to_owned(), rtype.to_owned()))
}

/// TXT data in zone-file syntax: quoted strings of at most 255 bytes (escapes allowed), or
/// one unquoted word.
fn valid_txt(data: &str) -> bool {
    if !data.starts_with('"') {
        return !data.is_empty() && !data.contains(char::is_whitespace);
    }
    let mut chars = data.chars();
    let mut in_string = false;
    let mut length = 0;
    while let Some(c) = chars.next() {
        match (c, in_string) {
            ('"', false) => {
                in_string = true;
                length = 0;
            }
            ('"', true) => in_string = false,
            ('\\', true) => match chars.next() {
                Some(next) => length += next.len_utf8(),
                None => return false,
            },
            (c, true) => length += c.len_utf8(),
            (' ', false) => {}
            (_, false) => return false,
        }
        if length > 255 {
            return false;
        }
    }
    !in_string
}

/// One page of `items` as `{kind, field: [...], nextPageToken}`.
fn page(request: &Request, field: &str, kind: &str, items: Vec<Value>) -> Response {
    let size = match request.query_param("maxResults") {
        None => MAX_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_PAGE),
            _ => {
                return error(
                    400,
                    "invalid",
                    &format!("Invalid value for 'parameters.maxResults': '{v}'"),
                );
            }
        },
    };
    let start = match request.query_param("pageToken") {
        None => 0,
        Some(token) => match URL_SAFE_NO_PAD
            .decode(&token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("offset:")
                    .and_then(|n| n.parse::<usize>().ok())
            }) {
            Some(start) => start,
            None => {
                return error(
                    400,
                    "invalid",
                    &format!("Invalid value for 'parameters.pageToken': '{token}'"),
                );
            }
        },
    };
    let slice: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let mut body = json!({"kind": kind, field: slice});
    if start + size < items.len() {
        body["nextPageToken"] = json!(URL_SAFE_NO_PAD.encode(format!("offset:{}", start + size)));
    }
    Response::json(200, &body)
}

/// Checks a JWT bearer assertion as Google's token endpoint does.
fn check_jwt(assertion: &str, audience: &str) -> Result<(), Response> {
    let invalid = |text: &str| oauth_error(400, "invalid_grant", text);
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(invalid("Invalid JWT: Token must be a signed JWT."));
    };
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(header), decode(claims)) else {
        return Err(invalid("Invalid JWT: Token must be a signed JWT."));
    };
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(invalid("Invalid JWT: alg must be RS256."));
    }
    if header.get("kid").is_some_and(|k| k != KEY_ID) {
        return Err(invalid("Invalid JWT Signature."));
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return Err(invalid("Invalid JWT Signature."));
    };
    let signed = &assertion[..assertion.rfind('.').unwrap()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key().public)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| invalid("Invalid JWT Signature."))?;
    if claims["iss"] != CLIENT_EMAIL {
        return Err(invalid("Invalid grant: account not found"));
    }
    if claims["aud"] != audience {
        return Err(invalid(
            "Invalid JWT: Failed audience check. The right audience is https://oauth2.googleapis.com/token",
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == SCOPE) {
        return Err(oauth_error(
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(invalid(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ));
    };
    if exp <= iat || exp - iat > 3600 || exp <= now || iat > now + 300 {
        return Err(invalid(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    Ok(())
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    }
}

/// Google's API error envelope.
pub fn error(code: u16, reason: &str, message: &str) -> Response {
    Response::json(
        code,
        &json!({"error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status_name(code)
        }}),
    )
}

/// An OAuth 2.0 error reply of the token endpoint.
pub fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

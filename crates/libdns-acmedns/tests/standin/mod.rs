//! A stand-in for an acme-dns server's API, after acme-dns's README and source (`api.go`,
//! `auth.go`, `db.go`): `POST /update` authenticated by `X-Api-User` (a UUID) and `X-Api-Key`
//! (40 characters), a JSON body whose `subdomain` must be the account's and whose `txt` must be
//! 43 characters of the base64url alphabet, and an account that serves two TXT values: each
//! update overwrites the row updated longest ago (`ORDER BY LastUpdate LIMIT 1`, with
//! LastUpdate in whole seconds and ties going to the first row). Errors are
//! `{"error": "<code>"}`; unknown routes get httprouter's plain-text 404 and 405.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use madmail_libdns_http::testing::{FakeZones, Request, Response};
use serde::Deserialize;

pub const USERNAME: &str = "eabcdb41-d89f-4580-826f-3e62e9755ef2";
pub const PASSWORD: &str = "pbAXVjlIOE01xbut7YnAbkhMQIkcwoHO0ek2j4Q0";
pub const SUBDOMAIN: &str = "d420c923-bbd7-4056-ab64-c3ca54c9b3cf";
/// The acme-dns server's own zone.
pub const DOMAIN: &str = "auth.example.net";

/// The name the account's values are served at.
pub fn fulldomain() -> String {
    format!("{SUBDOMAIN}.{DOMAIN}")
}

/// An ACME dns-01 value: 43 characters of base64url (SHA-256 digest without padding).
pub fn digest(n: u8) -> String {
    let c = char::from(b'a' + n % 26);
    format!("{}-{n:02}", c.to_string().repeat(40))
}

#[derive(Debug)]
struct Row {
    record: String,
    last_update: u64,
}

/// One account of an acme-dns server, its two rows kept in a [`FakeZones`].
#[derive(Clone)]
pub struct AcmeDns {
    pub zones: FakeZones,
    /// The path the API is served under (`/` or, behind a proxy, `/acme-dns/`).
    prefix: String,
    rows: Arc<Mutex<Vec<Row>>>,
}

impl AcmeDns {
    /// A registered account: two empty rows, as `/register` leaves them.
    pub fn new(prefix: &str) -> AcmeDns {
        let zones = FakeZones::new();
        zones.add_zone(DOMAIN);
        let rows = (0..2)
            .map(|_| Row {
                record: zones.add(DOMAIN, &fulldomain(), "TXT", "", 1).id,
                last_update: 0,
            })
            .collect();
        AcmeDns {
            zones,
            prefix: prefix.to_owned(),
            rows: Arc::new(Mutex::new(rows)),
        }
    }

    /// The values the account serves, sorted.
    pub fn values(&self) -> Vec<String> {
        self.zones.txt_values(&fulldomain())
    }

    fn update(&self, value: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut rows = self.rows.lock().unwrap();
        let oldest = rows
            .iter_mut()
            .enumerate()
            .min_by_key(|(i, row)| (row.last_update, *i))
            .map(|(_, row)| row)
            .unwrap();
        self.zones.remove(&oldest.record);
        oldest.record = self.zones.add(DOMAIN, &fulldomain(), "TXT", value, 1).id;
        oldest.last_update = now;
    }
}

fn error(status: u16, code: &str) -> Response {
    // acme-dns writes its JSON by hand, with a space after the colon.
    Response::text(
        status,
        "application/json",
        &format!("{{\"error\": \"{code}\"}}"),
    )
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_base64url(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_label(text: &str) -> bool {
    let b = text.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[derive(Default, Deserialize)]
struct Body {
    #[serde(default)]
    subdomain: String,
    #[serde(default)]
    txt: String,
}

/// Answers one request.
pub fn handle(server: &AcmeDns, request: &Request) -> Response {
    let Some(route) = request.path.strip_prefix(&server.prefix) else {
        return Response::text(404, "text/plain; charset=utf-8", "404 page not found\n");
    };
    match (request.method.as_str(), route) {
        ("POST", "update") => {}
        ("GET", "health") => return Response::empty(200),
        (_, "update" | "health") => {
            return Response::text(405, "text/plain; charset=utf-8", "Method Not Allowed\n");
        }
        _ => return Response::text(404, "text/plain; charset=utf-8", "404 page not found\n"),
    }
    // auth.go: the headers must be well-formed and match the account.
    let user = request.header("x-api-user").unwrap_or_default();
    let key = request.header("x-api-key").unwrap_or_default();
    if !is_uuid(user) || !is_base64url(key, 40) || user != USERNAME || key != PASSWORD {
        return error(401, "forbidden");
    }
    // A body that is not JSON decodes to an empty subdomain, which is not the account's.
    let body: Body = serde_json::from_slice(&request.body).unwrap_or_default();
    if body.subdomain != SUBDOMAIN {
        return error(401, "forbidden");
    }
    if !is_label(&body.subdomain) {
        return error(400, "bad_subdomain");
    }
    if !is_base64url(&body.txt, 43) {
        return error(400, "bad_txt");
    }
    server.update(&body.txt);
    Response::text(
        200,
        "application/json",
        &format!("{{\"txt\": \"{}\"}}", body.txt),
    )
}

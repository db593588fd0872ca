//! `libdns.hetzner`: publishes dns-01 TXT records through the Hetzner Cloud DNS API
//! (`https://api.hetzner.cloud/v1/`, zones and RRsets) with a Cloud project API token
//! (`Authorization: Bearer`):
//!
//! ```text
//! dns hetzner {
//!     api_token {env:HCLOUD_TOKEN}
//! }
//! ```
//!
//! The directive is maddy's, but the API is not: the DNS Console API maddy 0.9 spoke
//! (`dns.hetzner.com`, `Auth-API-Token`) was shut down in 2026, and its tokens do not work
//! here. The token is made in the Cloud Console (project, Security, API tokens) with the
//! permission **Read & Write**; it only reaches the zones of its project.
//!
//! It only adds and removes single TXT values (the API's atomic `add_records` and
//! `remove_records` actions, so other values of the name are never rewritten), and never logs
//! the token.

use std::time::Duration;

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::header::{ACCEPT, CONTENT_TYPE};
use madmail_libdns_http::reqwest::{Method, RequestBuilder, StatusCode};
use madmail_libdns_http::{
    ApiClient, Call, Failure, HttpOptions, Secret, Url, build_provider, names,
};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1/";

const PROVIDER: &str = "hetzner";
/// The Cloud API's largest page (its default is 25).
const ZONES_PER_PAGE: u32 = 50;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u32 = 1000;
/// The TTLs an RRset may have.
const TTL_RANGE: (u64, u64) = (60, 2_147_483_647);
/// How long an action (the API applies changes asynchronously) may stay `running`.
const ACTION_DEADLINE: Duration = Duration::from_secs(60);
/// The first wait before asking again about a running action; it doubles up to the maximum.
const ACTION_FIRST_POLL: Duration = Duration::from_millis(200);
const ACTION_MAX_POLL: Duration = Duration::from_secs(2);
/// The longest character-string of TXT data (RFC 1035); the API wants longer values split.
const TXT_STRING_MAX: usize = 255;

/// Registers `libdns.hetzner`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.hetzner",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Hetzner Cloud DNS (API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_token", Secret::from_node).required(),
        |token, options| Hetzner::new(token, &options),
    )
}

/// The Hetzner Cloud DNS API with one project token.
#[derive(Debug)]
pub struct Hetzner {
    client: ApiClient,
    token: Secret,
}

#[derive(Debug, Deserialize)]
struct ZonePage {
    #[serde(default)]
    zones: Vec<Zone>,
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Zone {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Meta {
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    page: u32,
    next_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RrsetReply {
    rrset: Rrset,
}

#[derive(Debug, Deserialize)]
struct Rrset {
    #[serde(default)]
    records: Vec<RecordValue>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordValue {
    /// TXT data in zone-file syntax: one or more quoted strings.
    value: String,
}

#[derive(Debug, Serialize)]
struct AddRecords<'a> {
    ttl: u64,
    records: &'a [RecordValue],
}

#[derive(Debug, Serialize)]
struct RemoveRecords<'a> {
    records: &'a [RecordValue],
}

#[derive(Debug, Deserialize)]
struct ActionReply {
    action: Action,
}

#[derive(Debug, Deserialize)]
struct Action {
    id: u64,
    status: String,
    error: Option<ApiError>,
}

/// `{"error": {"code": "not_found", "message": "...", "details": {...}}}`
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<ErrorDetails>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetails {
    #[serde(default)]
    fields: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
struct FieldError {
    #[serde(default)]
    name: String,
    #[serde(default)]
    messages: Vec<String>,
}

impl ApiError {
    fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.message, self.code);
        for field in self.details.iter().flat_map(|d| &d.fields) {
            text.push_str(&format!("; {}: {}", field.name, field.messages.join(", ")));
        }
        text
    }
}

/// A change the API accepted: its action to wait for, or nothing to do.
enum Change {
    Started(Action),
    /// The API refused the change as already made (the value is there, or gone).
    AlreadyDone,
}

impl Hetzner {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<Hetzner, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Hetzner { client, token })
    }

    fn request(
        &self,
        http: &madmail_libdns_http::reqwest::Client,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
    ) -> RequestBuilder {
        let request = http
            .request(method, url.clone())
            .bearer_auth(self.token.expose())
            .header(ACCEPT, "application/json");
        match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            None => request,
        }
    }

    /// Every zone's name, page by page.
    async fn zones(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut zones = Vec::new();
        let mut page = 1;
        loop {
            let mut url = self.client.url(&call, "zones")?;
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &ZONES_PER_PAGE.to_string());
            let reply: ZonePage = self
                .client
                .json(&call, |http| self.request(http, Method::GET, &url, None))
                .await?;
            zones.extend(reply.zones.into_iter().map(|z| z.name));
            let next = reply
                .meta
                .and_then(|m| m.pagination)
                .and_then(|p| p.next_page.filter(|next| *next > p.page));
            match next {
                Some(next) if next <= MAX_PAGES => page = next,
                Some(_) => {
                    return Err(self
                        .client
                        .failed(&call, format!("more than {MAX_PAGES} pages of zones")));
                }
                None => return Ok(zones),
            }
        }
    }

    /// `zones/ZONE/rrsets/NAME/TXT` followed by `more`. The API takes a zone's name where it
    /// takes its id, which saves looking the id up.
    fn rrset_url(
        &self,
        call: &Call<'_>,
        zone: &str,
        name: &str,
        more: &[&str],
    ) -> Result<Url, DnsError> {
        let mut url = self.client.url(call, "zones")?;
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .push(&names::bare(zone))
            .push("rrsets")
            .push(name)
            .push("TXT")
            .extend(more);
        Ok(url)
    }

    /// The TXT values of `name` as the API stores them (quoted), or none when the RRset does
    /// not exist.
    async fn txt_values(
        &self,
        call: &Call<'_>,
        zone: &str,
        name: &str,
    ) -> Result<Vec<RecordValue>, DnsError> {
        let url = self.rrset_url(call, zone, name, &[])?;
        match self
            .client
            .send(call, |http| self.request(http, Method::GET, &url, None))
            .await
        {
            Ok(reply) => Ok(self
                .client
                .decode::<RrsetReply>(call, &reply.body)?
                .rrset
                .records),
            Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Ok(Vec::new()),
            Err(failure) => Err(self.client.error(call, failure)),
        }
    }

    /// Starts the action `zones/ZONE/rrsets/NAME/TXT/actions/ACTION` with `body`; a refusal
    /// whose error code is in `done_codes` means the change had been made already.
    async fn start(
        &self,
        call: &Call<'_>,
        zone: &str,
        name: &str,
        action: &str,
        body: &[u8],
        done_codes: &[&str],
    ) -> Result<Change, DnsError> {
        let url = self.rrset_url(call, zone, name, &["actions", action])?;
        match self
            .client
            .send(call, |http| {
                self.request(http, Method::POST, &url, Some(body))
            })
            .await
        {
            Ok(reply) => Ok(Change::Started(
                self.client.decode::<ActionReply>(call, &reply.body)?.action,
            )),
            Err(failure) if done_codes.contains(&error_code(&failure).as_str()) => {
                Ok(Change::AlreadyDone)
            }
            Err(failure) => Err(self.client.error(call, failure)),
        }
    }

    /// Waits until `action` has succeeded: changes are applied asynchronously, and the
    /// propagation check should not start before the API has made the change.
    async fn finish(&self, call: &Call<'_>, mut action: Action) -> Result<(), DnsError> {
        let deadline = tokio::time::Instant::now() + ACTION_DEADLINE;
        let mut wait = ACTION_FIRST_POLL;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let detail = action
                        .error
                        .as_ref()
                        .map(ApiError::describe)
                        .unwrap_or_else(|| "no reason given".into());
                    return Err(self
                        .client
                        .failed(call, format!("action {} failed: {detail}", action.id)));
                }
                // `running`, or a status this client does not know yet: ask again.
                _ => {}
            }
            if tokio::time::Instant::now() + wait > deadline {
                return Err(self.client.failed(
                    call,
                    format!(
                        "action {} still {} after {} s",
                        action.id,
                        action.status,
                        ACTION_DEADLINE.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(ACTION_MAX_POLL);
            let url = self
                .client
                .url(call, &format!("zones/actions/{}", action.id))?;
            action = self
                .client
                .json::<ActionReply, _>(call, |http| self.request(http, Method::GET, &url, None))
                .await?
                .action;
        }
    }
}

#[async_trait]
impl DnsProvider for Hetzner {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let zones = self.zones().await?;
        names::longest_zone(fqdn, zones.iter().map(String::as_str))
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("add TXT record", zone);
        let name = names::relative_or_at(&record.fqdn, zone);
        let existing = self.txt_values(&call, zone, &name).await?;
        if existing
            .iter()
            .any(|r| names::unquote_txt(&r.value) == record.value)
        {
            return Ok(());
        }
        // The TTL only applies when this creates the RRset; an existing RRset keeps its own.
        let body = serde_json::to_vec(&AddRecords {
            ttl: record.ttl.as_secs().clamp(TTL_RANGE.0, TTL_RANGE.1),
            records: &[RecordValue {
                value: txt_data(&record.value),
            }],
        })
        .map_err(|e| self.client.failed(&call, e.to_string()))?;
        // Not confirmed in Hetzner's documentation: adding a value the RRset holds already
        // (a concurrent order got there first) is taken to be refused as `uniqueness_error`.
        match self
            .start(
                &call,
                zone,
                &name,
                "add_records",
                &body,
                &["uniqueness_error"],
            )
            .await?
        {
            Change::Started(action) => self.finish(&call, action).await?,
            Change::AlreadyDone => {}
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value added");
        Ok(())
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("remove TXT record", zone);
        let name = names::relative_or_at(&record.fqdn, zone);
        // Removed exactly as the API stores it, so its quoting cannot make the match fail.
        let matching: Vec<RecordValue> = self
            .txt_values(&call, zone, &name)
            .await?
            .into_iter()
            .filter(|r| names::unquote_txt(&r.value) == record.value)
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&RemoveRecords { records: &matching })
            .map_err(|e| self.client.failed(&call, e.to_string()))?;
        // The API deletes the RRset itself once its last value is gone; an RRset deleted in
        // the meantime answers `not_found`.
        match self
            .start(&call, zone, &name, "remove_records", &body, &["not_found"])
            .await?
        {
            Change::Started(action) => self.finish(&call, action).await?,
            Change::AlreadyDone => {}
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

/// A TXT value as the API wants it: quoted character-strings of at most 255 bytes each.
fn txt_data(value: &str) -> String {
    let mut strings = Vec::new();
    let mut rest = value;
    while rest.len() > TXT_STRING_MAX {
        let mut cut = TXT_STRING_MAX;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        strings.push(names::quote_txt(head));
        rest = tail;
    }
    strings.push(names::quote_txt(rest));
    strings.join(" ")
}

fn error_code(failure: &Failure) -> String {
    serde_json::from_slice::<ErrorBody>(&failure.body)
        .map(|body| body.error.code)
        .unwrap_or_default()
}

/// `message (code)` of a Cloud API error body, with the fields it names.
fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.error.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_split_into_strings() {
        assert_eq!(txt_data("abc"), "\"abc\"");
        let long = "x".repeat(300);
        let data = txt_data(&long);
        assert_eq!(
            data,
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
        assert_eq!(names::unquote_txt(&data), long);
    }

    #[test]
    fn error_bodies_are_described() {
        let body = br#"{"error":{"code":"invalid_input","message":"invalid input in field 'ttl'","details":{"fields":[{"name":"ttl","messages":["must be at least 60"]}]}}}"#;
        assert_eq!(
            error_message(body).unwrap(),
            "invalid input in field 'ttl' (invalid_input); ttl: must be at least 60"
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}

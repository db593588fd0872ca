//! `libdns.leaseweb`: publishes dns-01 TXT records through the Leaseweb Hosting API v2
//! (`/domains/{domain}/resourceRecordSets`), authenticated with an API key in the `X-LSW-Auth`
//! header, as maddy's module of the same name:
//!
//! ```text
//! dns leaseweb {
//!     api_key {env:LEASEWEB_API_KEY}
//! }
//! ```
//!
//! The key comes from the Customer Portal (Administration, API keys); Leaseweb keys have no
//! narrower scope than the account, and the domains must use Leaseweb's DNS.
//!
//! The API holds record *sets* (all values of one name and type, one TTL): adding a value reads
//! the set and writes it back with the value added, removing one writes back the others, and
//! only a set left empty is deleted. It never touches other names or types, never replaces a
//! whole zone, and never logs the key.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::{Method, StatusCode};
use madmail_libdns_http::{
    ApiClient, Call, Failure, HttpOptions, Reply, Secret, Url, build_provider, names,
};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.leaseweb.com/hosting/v2/";

const PROVIDER: &str = "leaseweb";
const AUTH_HEADER: &str = "X-LSW-Auth";
/// Domains asked for per page. The API documents the default (10) but no maximum; 50 is the
/// largest page Leaseweb's other v2 listings are known to serve, and the loop below follows
/// `_metadata.totalCount`, so a smaller server-side cap only costs more pages.
const DOMAINS_PER_PAGE: usize = 50;
/// The only TTLs the API accepts for a record set (anything else is a validation error).
const TTLS: [u64; 8] = [60, 300, 1_800, 3_600, 14_400, 28_800, 43_200, 86_400];

/// Registers `libdns.leaseweb`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.leaseweb",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Leaseweb (API key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_key", Secret::from_node).required(),
        |api_key, options| Leaseweb::new(api_key, &options),
    )
}

/// The Leaseweb Hosting API with one API key.
#[derive(Debug)]
pub struct Leaseweb {
    client: ApiClient,
    api_key: Secret,
}

#[derive(Debug, Deserialize)]
struct DomainPage {
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(rename = "_metadata", default)]
    metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    #[serde(rename = "domainName")]
    domain_name: String,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(rename = "totalCount", default)]
    total_count: Option<usize>,
}

/// One record set as the API returns it.
#[derive(Debug, Deserialize)]
struct RecordSet {
    #[serde(default)]
    content: Vec<String>,
    ttl: u64,
    /// `false` for the sets Leaseweb manages itself (SOA, NS).
    #[serde(default = "editable_by_default")]
    editable: bool,
}

fn editable_by_default() -> bool {
    true
}

/// The body creating a record set.
#[derive(Debug, Serialize)]
struct NewRecordSet<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    rtype: &'a str,
    content: [&'a str; 1],
    ttl: u64,
}

/// The body replacing a record set's values: the API refuses `name`, `type` or `editable` here.
#[derive(Debug, Serialize)]
struct RecordSetUpdate<'a> {
    content: &'a [String],
    ttl: u64,
}

/// Leaseweb's error body.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "errorMessage", default)]
    error_message: Option<String>,
    /// Field name to messages for validation errors.
    #[serde(rename = "errorDetails", default)]
    error_details: Option<serde_json::Value>,
    #[serde(rename = "correlationId", default)]
    correlation_id: Option<String>,
}

impl Leaseweb {
    pub fn new(api_key: Secret, options: &HttpOptions) -> Result<Leaseweb, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Leaseweb { client, api_key })
    }

    /// Sends one request with the key; a JSON `body` goes with its content type.
    async fn request(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        self.client
            .send(call, |http| {
                let request = http
                    .request(method.clone(), url.clone())
                    .header(AUTH_HEADER, self.api_key.expose())
                    .header("accept", "application/json");
                match &body {
                    Some(json) => request
                        .header("content-type", "application/json")
                        .body(json.clone()),
                    None => request,
                }
            })
            .await
    }

    /// Every domain of the account, page by page.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut domains = Vec::new();
        let mut offset = 0;
        loop {
            let mut url = self.client.url(&call, "domains")?;
            url.query_pairs_mut()
                .append_pair("limit", &DOMAINS_PER_PAGE.to_string())
                .append_pair("offset", &offset.to_string());
            let reply = self
                .request(&call, Method::GET, &url, None)
                .await
                .map_err(|f| self.client.error(&call, f))?;
            let page: DomainPage = self.client.decode(&call, &reply.body)?;
            let count = page.domains.len();
            domains.extend(page.domains.into_iter().map(|d| d.domain_name));
            offset += count;
            let more = match page.metadata.and_then(|m| m.total_count) {
                Some(total) => offset < total,
                None => count == DOMAINS_PER_PAGE,
            };
            if count == 0 || !more {
                return Ok(domains);
            }
        }
    }

    /// `domains/{domain}/resourceRecordSets`, and with `name`, `.../{name}/TXT`; each part
    /// percent-encoded as one path segment.
    fn sets_url(&self, call: &Call<'_>, domain: &str, name: Option<&str>) -> Result<Url, DnsError> {
        let mut url = self.client.url(call, "domains")?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| self.client.failed(call, "the endpoint cannot hold a path"))?;
            segments.push(domain).push("resourceRecordSets");
            if let Some(name) = name {
                segments.push(name).push("TXT");
            }
        }
        Ok(url)
    }

    /// The TXT record set of `name` (with its trailing dot), `None` when there is none.
    async fn txt_set(
        &self,
        call: &Call<'_>,
        domain: &str,
        name: &str,
    ) -> Result<Option<RecordSet>, DnsError> {
        let url = self.sets_url(call, domain, Some(name))?;
        let sent = self.request(call, Method::GET, &url, None).await;
        match self.client.unless_gone(call, sent)? {
            Some(reply) => self.client.decode(call, &reply.body).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces the values of the TXT set of `name`.
    async fn put_set(
        &self,
        call: &Call<'_>,
        domain: &str,
        name: &str,
        content: &[String],
        ttl: u64,
    ) -> Result<(), DnsError> {
        let url = self.sets_url(call, domain, Some(name))?;
        let body = self.json(call, &RecordSetUpdate { content, ttl })?;
        self.request(call, Method::PUT, &url, Some(body))
            .await
            .map(|_| ())
            .map_err(|f| self.client.error(call, f))
    }

    fn json<T: Serialize>(&self, call: &Call<'_>, body: &T) -> Result<Vec<u8>, DnsError> {
        serde_json::to_vec(body).map_err(|e| {
            self.client
                .failed(call, format!("encoding the request: {e}"))
        })
    }

    fn check_editable(&self, call: &Call<'_>, set: &RecordSet, name: &str) -> Result<(), DnsError> {
        if set.editable {
            Ok(())
        } else {
            Err(self.client.failed(
                call,
                format!("the TXT records of {name} are managed by Leaseweb and cannot be changed"),
            ))
        }
    }
}

#[async_trait]
impl DnsProvider for Leaseweb {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let domains = self.domains().await?;
        names::longest_zone(fqdn, domains.iter().map(String::as_str))
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        let domain = names::bare(zone);
        let name = set_name(&record.fqdn);
        let ttl = allowed_ttl(record.ttl.as_secs());
        // A refused creation, kept while the set is read again: if someone else created it in
        // between, the value is added to theirs; if there is still none, this is the error.
        let mut refused: Option<Failure> = None;
        loop {
            match self.txt_set(&call, &domain, &name).await? {
                Some(set) => {
                    self.check_editable(&call, &set, &name)?;
                    if set.content.iter().any(|v| same_value(v, &record.value)) {
                        return Ok(());
                    }
                    let mut content = set.content;
                    content.push(record.value.clone());
                    // One TTL per set: the shorter of the set's and the one asked for, so
                    // the new value is not cached longer than wanted.
                    let ttl = allowed_ttl(set.ttl.min(ttl));
                    self.put_set(&call, &domain, &name, &content, ttl).await?;
                    tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value added to the record set");
                    return Ok(());
                }
                None => {
                    if let Some(failure) = refused {
                        return Err(self.client.error(&call, failure));
                    }
                    let url = self.sets_url(&call, &domain, None)?;
                    let body = self.json(
                        &call,
                        &NewRecordSet {
                            name: &name,
                            rtype: "TXT",
                            content: [&record.value],
                            ttl,
                        },
                    )?;
                    match self.request(&call, Method::POST, &url, Some(body)).await {
                        Ok(_) => {
                            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record set created");
                            return Ok(());
                        }
                        // The status of "the set exists" is not documented (409 or 400 are
                        // plausible): any such refusal is checked by reading the set again.
                        Err(failure) if may_exist(&failure) => refused = Some(failure),
                        Err(failure) => return Err(self.client.error(&call, failure)),
                    }
                }
            }
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let domain = names::bare(zone);
        let name = set_name(&record.fqdn);
        let Some(set) = self.txt_set(&call, &domain, &name).await? else {
            return Ok(());
        };
        if !set.content.iter().any(|v| same_value(v, &record.value)) {
            return Ok(());
        }
        self.check_editable(&call, &set, &name)?;
        let remaining: Vec<String> = set
            .content
            .into_iter()
            .filter(|v| !same_value(v, &record.value))
            .collect();
        if !remaining.is_empty() {
            self.put_set(&call, &domain, &name, &remaining, allowed_ttl(set.ttl))
                .await?;
        } else {
            let url = self.sets_url(&call, &domain, Some(&name))?;
            let sent = self.request(&call, Method::DELETE, &url, None).await;
            self.client.unless_gone(&call, sent)?;
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

/// A record set's name: the FQDN with its trailing dot, lowercase.
fn set_name(fqdn: &str) -> String {
    format!("{}.", names::bare(fqdn))
}

/// The API stores TXT values as they are; a quoted value read back is compared unquoted too.
fn same_value(stored: &str, value: &str) -> bool {
    stored == value || names::unquote_txt(stored) == value
}

/// The smallest TTL the API accepts that is at least `ttl` (a day at most).
fn allowed_ttl(ttl: u64) -> u64 {
    TTLS.iter()
        .copied()
        .find(|allowed| *allowed >= ttl)
        .unwrap_or(TTLS[TTLS.len() - 1])
}

/// Whether a refused creation may mean the set exists already (a client error other than
/// authentication or a missing domain).
fn may_exist(failure: &Failure) -> bool {
    failure.status.is_some_and(|s| {
        s.is_client_error()
            && !matches!(
                s,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            )
    })
}

/// `errorMessage` of a Leaseweb error body, with its validation details and correlation id
/// (which Leaseweb's support asks for).
fn error_message(body: &[u8]) -> Option<String> {
    let error: ApiError = serde_json::from_slice(body).ok()?;
    let mut text = error.error_message.filter(|m| !m.trim().is_empty())?;
    if let Some(serde_json::Value::Object(details)) = &error.error_details {
        let details: Vec<String> = details
            .iter()
            .map(|(field, messages)| match messages {
                serde_json::Value::Array(list) => {
                    let list: Vec<String> = list
                        .iter()
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                        .collect();
                    format!("{field}: {}", list.join(", "))
                }
                serde_json::Value::String(message) => format!("{field}: {message}"),
                other => format!("{field}: {other}"),
            })
            .collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join("; ")));
        }
    }
    if let Some(id) = error.correlation_id.filter(|id| !id.is_empty()) {
        text.push_str(&format!(" [correlation id {id}]"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_an_allowed_value() {
        assert_eq!(allowed_ttl(0), 60);
        assert_eq!(allowed_ttl(60), 60);
        assert_eq!(allowed_ttl(61), 300);
        assert_eq!(allowed_ttl(3_600), 3_600);
        assert_eq!(allowed_ttl(90_000), 86_400);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(
                br#"{"errorCode":"400","errorMessage":"Validation failed","errorDetails":{"ttl":["not allowed"]},"correlationId":"abc"}"#
            )
            .as_deref(),
            Some("Validation failed (ttl: not allowed) [correlation id abc]")
        );
        assert_eq!(error_message(b"<html>"), None);
        assert_eq!(error_message(br#"{"errorMessage":""}"#), None);
    }
}

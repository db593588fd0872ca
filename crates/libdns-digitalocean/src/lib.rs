//! `libdns.digitalocean`: publishes dns-01 TXT records in domains hosted at DigitalOcean,
//! through the API v2 (`https://api.digitalocean.com/v2/`, `Authorization: Bearer` with a
//! personal access token), as maddy's module of the same name:
//!
//! ```text
//! dns digitalocean {
//!     api_token {env:DO_AUTH_TOKEN}
//! }
//! ```
//!
//! The token needs the scopes `domain:read`, `domain:create` and `domain:delete` (or full
//! access). Zones are the account's domains (`GET domains`, paged).
//!
//! It only adds and removes single TXT records (DigitalOcean keeps every value of a name as a
//! record of its own, so other values are never touched), and never logs the token.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::StatusCode;
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::json;

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.digitalocean.com/v2/";

const PROVIDER: &str = "digitalocean";
/// The largest page the API serves (`per_page` is at most 200; the default is 20).
const PER_PAGE: u32 = 200;
/// DigitalOcean refuses TTLs below 30 s (422); lower values are raised to it.
const MIN_TTL: u64 = 30;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u32 = 10_000;
// Rate limits (250 requests a minute, 5000 an hour per token) come back as 429 with
// `Retry-After`, which the shared client honours.

/// Registers `libdns.digitalocean`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.digitalocean",
    kind: Kind::Named,
    build,
    summary: "DNS provider: DigitalOcean (API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_token", Secret::from_node).required(),
        |token, options| DigitalOcean::new(token, &options),
    )
}

/// The DigitalOcean API with one token.
#[derive(Debug)]
pub struct DigitalOcean {
    client: ApiClient,
    token: Secret,
}

#[derive(Debug, Deserialize)]
struct DomainPage {
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(default)]
    links: Links,
}

#[derive(Debug, Deserialize)]
struct Domain {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RecordPage {
    #[serde(default)]
    domain_records: Vec<Record>,
    #[serde(default)]
    links: Links,
}

/// `links.pages.next` is there while more pages follow; `links` may be `{}`.
#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Debug, Default, Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

impl Links {
    fn has_next(&self) -> bool {
        self.pages
            .as_ref()
            .and_then(|p| p.next.as_deref())
            .is_some_and(|next| !next.is_empty())
    }
}

#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(rename = "type", default)]
    rtype: String,
    /// Relative to the domain, `@` at the apex.
    #[serde(default)]
    name: String,
    #[serde(default)]
    data: String,
}

/// `{"id": "not_found", "message": "...", "request_id": "..."}`, the body of every error.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

impl DigitalOcean {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<DigitalOcean, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(DigitalOcean { client, token })
    }

    /// The API's base URL followed by `segments` (each percent-encoded) and `query`.
    fn url(
        &self,
        call: &Call<'_>,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Url, DnsError> {
        let mut url = self.client.base().clone();
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call<'_>,
        url: &Url,
    ) -> Result<T, DnsError> {
        self.client
            .json(call, |http| {
                http.get(url.clone()).bearer_auth(self.token.expose())
            })
            .await
    }

    /// Every domain of the account, page by page.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list domains", "-");
        let mut domains = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = self.url(
                &call,
                &["domains"],
                &[
                    ("page", page.to_string()),
                    ("per_page", PER_PAGE.to_string()),
                ],
            )?;
            let reply: DomainPage = self.get(&call, &url).await?;
            domains.extend(reply.domains.into_iter().map(|d| d.name));
            if !reply.links.has_next() {
                return Ok(domains);
            }
        }
        Err(self
            .client
            .failed(&call, format!("more than {MAX_PAGES} pages")))
    }

    /// The TXT records of `fqdn` holding `value` in `domain`. The API filters by type and
    /// name (which it wants fully qualified, without the dot); the filter is applied here
    /// again so that a server ignoring it cannot make us delete another record.
    async fn txt_records(
        &self,
        call: &Call<'_>,
        domain: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let host = names::relative_or_at(fqdn, domain);
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = self.url(
                call,
                &["domains", domain, "records"],
                &[
                    ("type", "TXT".to_owned()),
                    ("name", names::bare(fqdn)),
                    ("page", page.to_string()),
                    ("per_page", PER_PAGE.to_string()),
                ],
            )?;
            let reply: RecordPage = self.get(call, &url).await?;
            found.extend(reply.domain_records.into_iter().filter(|r| {
                r.rtype.eq_ignore_ascii_case("TXT")
                    && (r.name.eq_ignore_ascii_case(&host)
                        || names::bare(&r.name) == names::bare(fqdn))
                    // Stored as sent (unquoted); a value quoted by hand is read as its content.
                    && (r.data == value || names::unquote_txt(&r.data) == value)
            }));
            if !reply.links.has_next() {
                return Ok(found);
            }
        }
        Err(self
            .client
            .failed(call, format!("more than {MAX_PAGES} pages")))
    }
}

#[async_trait]
impl DnsProvider for DigitalOcean {
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
        if !names::in_zone(&record.fqdn, &domain) {
            return Err(self
                .client
                .failed(&call, format!("{} is not in the zone", record.fqdn)));
        }
        // DigitalOcean stores identical records twice rather than refusing the second (as far
        // as its documentation and clients show): look first, so a repeated presentation adds
        // nothing.
        let existing = self
            .txt_records(&call, &domain, &record.fqdn, &record.value)
            .await?;
        if !existing.is_empty() {
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record exists already");
            return Ok(());
        }
        let url = self.url(&call, &["domains", &domain, "records"], &[])?;
        let body = json!({
            "type": "TXT",
            "name": names::relative_or_at(&record.fqdn, &domain),
            // Raw, not quoted: DigitalOcean quotes TXT data itself.
            "data": record.value,
            "ttl": record.ttl.as_secs().max(MIN_TTL),
        })
        .to_string();
        let sent = self
            .client
            .send(&call, |http| {
                http.post(url.clone())
                    .bearer_auth(self.token.expose())
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await;
        match sent {
            Ok(_) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
                Ok(())
            }
            // Should a duplicate ever be refused (422), the listing decides.
            Err(failure) if failure.status == Some(StatusCode::UNPROCESSABLE_ENTITY) => {
                match self
                    .txt_records(&call, &domain, &record.fqdn, &record.value)
                    .await
                {
                    Ok(found) if !found.is_empty() => Ok(()),
                    _ => Err(self.client.error(&call, failure)),
                }
            }
            Err(failure) => Err(self.client.error(&call, failure)),
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let domain = names::bare(zone);
        let found = self
            .txt_records(&call, &domain, &record.fqdn, &record.value)
            .await?;
        for r in found {
            let id = r.id.to_string();
            let url = self.url(&call, &["domains", &domain, "records", &id], &[])?;
            let sent = self
                .client
                .send(&call, |http| {
                    http.delete(url.clone()).bearer_auth(self.token.expose())
                })
                .await;
            // 204, no body. A 404: deleted meanwhile.
            if self.client.unless_gone(&call, sent)?.is_some() {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record deleted");
            }
        }
        Ok(())
    }
}

/// `message (id)` of an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    match (error.message.is_empty(), error.id.is_empty()) {
        (true, true) => None,
        (false, true) => Some(error.message),
        (true, false) => Some(error.id),
        (false, false) => Some(format!("{} ({})", error.message, error.id)),
    }
}

//! `libdns.vultr`: publishes dns-01 TXT records in domains hosted at Vultr, through the API v2
//! (`https://api.vultr.com/v2/`, `Authorization: Bearer` with an API key), as maddy's module
//! of the same name:
//!
//! ```text
//! dns vultr {
//!     api_token {env:VULTR_API_KEY}
//! }
//! ```
//!
//! The key is the account's (or a sub-account's) API key; Vultr has no scopes, and the key's
//! access control list must allow the address madmail calls from. Zones are the account's
//! domains (`GET domains`, cursor-paged).
//!
//! It only adds and removes single TXT records (Vultr keeps every value of a name as a record
//! of its own, so other values are never touched), and never logs the key.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::json;

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.vultr.com/v2/";

const PROVIDER: &str = "vultr";
/// The largest page the API serves (`per_page` is at most 500; the default is 100).
const PER_PAGE: u32 = 500;
/// Vultr documents no minimum TTL (lego sends 120, the control panel offers 300 by default).
/// Unconfirmed: values below 60 s are raised to 60 s, which every DNS host here accepts, so a
/// zero or tiny TTL never reaches the API.
const MIN_TTL: u64 = 60;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u32 = 10_000;
// Rate limit: 30 requests a second per key; a 429 is retried by the shared client (with
// `Retry-After` when sent, backing off otherwise).

/// Registers `libdns.vultr`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.vultr",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Vultr (API key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_token", Secret::from_node).required(),
        |token, options| Vultr::new(token, &options),
    )
}

/// The Vultr API with one API key.
#[derive(Debug)]
pub struct Vultr {
    client: ApiClient,
    token: Secret,
}

#[derive(Debug, Deserialize)]
struct DomainPage {
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Debug, Deserialize)]
struct Domain {
    domain: String,
}

#[derive(Debug, Deserialize)]
struct RecordPage {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    meta: Meta,
}

/// `meta.links.next`: the cursor of the next page, `""` on the last.
#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    links: Links,
}

#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type", default)]
    rtype: String,
    /// Relative to the domain, `""` at the apex.
    #[serde(default)]
    name: String,
    /// TXT data comes back quoted.
    #[serde(default)]
    data: String,
}

/// `{"error": "...", "status": 400}`, the body of every error.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    error: String,
}

impl Vultr {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<Vultr, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Vultr { client, token })
    }

    /// The API's base URL followed by `segments` (each percent-encoded) and `query`.
    fn url(
        &self,
        call: &Call<'_>,
        segments: &[&str],
        query: &[(&str, &str)],
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

    /// Every page of a cursor-paged listing under `segments`, handed to `each`.
    async fn pages<T, F>(
        &self,
        call: &Call<'_>,
        segments: &[&str],
        mut each: F,
    ) -> Result<(), DnsError>
    where
        T: for<'de> Deserialize<'de>,
        F: FnMut(T) -> String,
    {
        let per_page = PER_PAGE.to_string();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("per_page", per_page.as_str())];
            if !cursor.is_empty() {
                query.push(("cursor", cursor.as_str()));
            }
            let url = self.url(call, segments, &query)?;
            let page: T = self
                .client
                .json(call, |http| {
                    http.get(url.clone()).bearer_auth(self.token.expose())
                })
                .await?;
            let next = each(page);
            if next.is_empty() {
                return Ok(());
            }
            if next == cursor {
                return Err(self.client.failed(call, "the listing repeats its cursor"));
            }
            cursor = next;
        }
        Err(self
            .client
            .failed(call, format!("more than {MAX_PAGES} pages")))
    }

    /// Every domain of the account.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list domains", "-");
        let mut domains = Vec::new();
        self.pages(&call, &["domains"], |page: DomainPage| {
            domains.extend(page.domains.into_iter().map(|d| d.domain));
            page.meta.links.next
        })
        .await?;
        Ok(domains)
    }

    /// The TXT records of `fqdn` holding `value` in `domain`. The API cannot filter, so every
    /// page of the domain's records is read.
    async fn txt_records(
        &self,
        call: &Call<'_>,
        domain: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let host = names::relative(fqdn, domain);
        let mut found = Vec::new();
        self.pages(call, &["domains", domain, "records"], |page: RecordPage| {
            found.extend(page.records.into_iter().filter(|r| {
                r.rtype.eq_ignore_ascii_case("TXT")
                    && r.name.eq_ignore_ascii_case(&host)
                    && names::unquote_txt(&r.data) == value
            }));
            page.meta.links.next
        })
        .await?;
        Ok(found)
    }
}

#[async_trait]
impl DnsProvider for Vultr {
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
        if record.value.contains('"') {
            // Vultr takes TXT data as one quoted string and refuses quotes inside it.
            return Err(self
                .client
                .failed(&call, "Vultr cannot store a TXT value containing '\"'"));
        }
        // Vultr stores identical records twice rather than refusing the second (no "already
        // exists" error is documented): look first, so a repeated presentation adds nothing.
        let existing = self
            .txt_records(&call, &domain, &record.fqdn, &record.value)
            .await?;
        if !existing.is_empty() {
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record exists already");
            return Ok(());
        }
        let url = self.url(&call, &["domains", &domain, "records"], &[])?;
        let body = json!({
            "name": names::relative(&record.fqdn, &domain),
            "type": "TXT",
            // "Record data must be enclosed in quotes."
            "data": names::quote_txt(&record.value),
            "ttl": record.ttl.as_secs().max(MIN_TTL),
            "priority": 0,
        })
        .to_string();
        self.client
            .send(&call, |http| {
                http.post(url.clone())
                    .bearer_auth(self.token.expose())
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|failure| self.client.error(&call, failure))?;
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
        Ok(())
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let domain = names::bare(zone);
        let found = self
            .txt_records(&call, &domain, &record.fqdn, &record.value)
            .await?;
        for r in found {
            let url = self.url(&call, &["domains", &domain, "records", &r.id], &[])?;
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

/// The `error` text of an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    (!error.error.is_empty()).then_some(error.error)
}

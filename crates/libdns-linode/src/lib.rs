//! `libdns.linode`: publishes dns-01 TXT records in domains hosted in Linode's (Akamai's) DNS
//! Manager, through the API v4 (`https://api.linode.com/v4/`, `Authorization: Bearer` with a
//! personal access token). maddy has no such module; the directive is the one of libdns/linode
//! and Caddy's `dns linode`:
//!
//! ```text
//! dns linode {
//!     api_token {env:LINODE_TOKEN}
//! }
//! ```
//!
//! The token needs the scope `domains:read_write`. Zones are the account's domains
//! (`GET domains`, paged); a domain is addressed by its numeric id, looked up by name with an
//! `X-Filter` header.
//!
//! It only adds and removes single TXT records (Linode keeps every value of a name as a record
//! of its own, so other values are never touched), and never logs the token.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

/// The public API; `endpoint` replaces it (`https://api.linode.com/v4beta/` for the beta).
pub const DEFAULT_ENDPOINT: &str = "https://api.linode.com/v4/";

const PROVIDER: &str = "linode";
/// The largest page the API serves (`page_size` is 25 to 500; the default is 100).
const PAGE_SIZE: u32 = 500;
/// The shortest TTL Linode keeps (its valid TTLs are 30, 120, 300, 3600, ... and it rounds any
/// other value up to the next one; 0 would mean the domain's default). Older documentation
/// listed 300 as the shortest and rounded to the nearest: either way the API decides, so the
/// TTL asked for is sent as it is, only never below this.
const MIN_TTL: u64 = 30;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u32 = 10_000;
// Rate limits (200 a minute for paged listings, 1600 for other calls, per token) come back as
// 429 with `Retry-After`, which the shared client honours.

/// Registers `libdns.linode`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.linode",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Linode / Akamai DNS Manager (API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_token", Secret::from_node).required(),
        |token, options| Linode::new(token, &options),
    )
}

/// The Linode API with one token.
#[derive(Debug)]
pub struct Linode {
    client: ApiClient,
    token: Secret,
}

/// The envelope of every listing.
#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    page: u32,
    #[serde(default)]
    pages: u32,
}

#[derive(Debug, Deserialize)]
struct Domain {
    id: u64,
    domain: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(rename = "type", default)]
    rtype: String,
    /// Relative to the domain, `""` at the apex.
    #[serde(default)]
    name: String,
    #[serde(default)]
    target: String,
}

/// `{"errors": [{"reason": "...", "field": "..."}]}`, the body of every error.
#[derive(Debug, Deserialize)]
struct ApiErrors {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    field: Option<String>,
}

impl Linode {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<Linode, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Linode { client, token })
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

    /// Every item of the paged listing under `segments` that matches `filter` (Linode's
    /// `X-Filter`: field equality, applied by the API).
    async fn list<T>(
        &self,
        call: &Call<'_>,
        segments: &[&str],
        filter: Option<&Value>,
    ) -> Result<Vec<T>, DnsError>
    where
        T: for<'de> Deserialize<'de>,
    {
        let filter = filter.map(Value::to_string);
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = self.url(
                call,
                segments,
                &[
                    ("page", page.to_string()),
                    ("page_size", PAGE_SIZE.to_string()),
                ],
            )?;
            let reply: Page<T> = self
                .client
                .json(call, |http| {
                    let request = http.get(url.clone()).bearer_auth(self.token.expose());
                    match &filter {
                        Some(filter) => request.header("x-filter", filter.as_str()),
                        None => request,
                    }
                })
                .await?;
            items.extend(reply.data);
            if reply.page >= reply.pages {
                return Ok(items);
            }
        }
        Err(self
            .client
            .failed(call, format!("more than {MAX_PAGES} pages")))
    }

    /// The id of the domain `zone`.
    async fn domain_id(&self, call: &Call<'_>, zone: &str) -> Result<u64, DnsError> {
        let domain = names::bare(zone);
        let found: Vec<Domain> = self
            .list(call, &["domains"], Some(&json!({"domain": domain})))
            .await?;
        found
            .into_iter()
            .find(|d| names::bare(&d.domain) == domain)
            .map(|d| d.id)
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: zone.into(),
            })
    }

    /// The TXT records of `host` (relative to the domain) holding `value` in the domain `id`.
    /// The API filters by name and type; name and value are compared here again, so that a
    /// server ignoring the filter cannot make us delete another record.
    async fn txt_records(
        &self,
        call: &Call<'_>,
        id: &str,
        host: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let records: Vec<Record> = self
            .list(
                call,
                &["domains", id, "records"],
                Some(&json!({"name": host, "type": "TXT"})),
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|r| {
                r.rtype.eq_ignore_ascii_case("TXT")
                    && r.name.eq_ignore_ascii_case(host)
                    && (r.target == value || names::unquote_txt(&r.target) == value)
            })
            .collect())
    }
}

#[async_trait]
impl DnsProvider for Linode {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let call = Call::new("list domains", "-");
        let domains: Vec<Domain> = self.list(&call, &["domains"], None).await?;
        names::longest_zone(fqdn, domains.iter().map(|d| d.domain.as_str()))
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        if !names::in_zone(&record.fqdn, zone) {
            return Err(self
                .client
                .failed(&call, format!("{} is not in the zone", record.fqdn)));
        }
        let id = self.domain_id(&call, zone).await?.to_string();
        let host = names::relative(&record.fqdn, zone);
        // No "already exists" error is documented for TXT records (Linode seems to store a
        // second identical one): look first, so a repeated presentation adds nothing.
        let existing = self.txt_records(&call, &id, &host, &record.value).await?;
        if !existing.is_empty() {
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record exists already");
            return Ok(());
        }
        let url = self.url(&call, &["domains", &id, "records"], &[])?;
        let body = json!({
            "type": "TXT",
            "name": host,
            // Unquoted: Linode quotes TXT targets itself.
            "target": record.value,
            "ttl_sec": record.ttl.as_secs().max(MIN_TTL),
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
        let id = self.domain_id(&call, zone).await?.to_string();
        let host = names::relative(&record.fqdn, zone);
        let found = self.txt_records(&call, &id, &host, &record.value).await?;
        for r in found {
            let record_id = r.id.to_string();
            let url = self.url(&call, &["domains", &id, "records", &record_id], &[])?;
            let sent = self
                .client
                .send(&call, |http| {
                    http.delete(url.clone()).bearer_auth(self.token.expose())
                })
                .await;
            // 200 `{}`. A 404: deleted meanwhile.
            if self.client.unless_gone(&call, sent)?.is_some() {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record deleted");
            }
        }
        Ok(())
    }
}

/// `field: reason` of each error in an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let errors = serde_json::from_slice::<ApiErrors>(body).ok()?.errors;
    let text: Vec<String> = errors
        .into_iter()
        .filter(|e| !e.reason.is_empty())
        .map(|e| match e.field {
            Some(field) if !field.is_empty() => format!("{field}: {}", e.reason),
            _ => e.reason,
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

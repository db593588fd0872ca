//! `libdns.gandi`: publishes dns-01 TXT records through the Gandi LiveDNS API
//! (`https://api.gandi.net/v5/livedns/`), as maddy's module of the same name:
//!
//! ```text
//! dns gandi {
//!     personal_token {env:GANDI_TOKEN}
//! }
//! ```
//!
//! A personal access token (`personal_token`, sent as `Authorization: Bearer`) needs the
//! permission "Manage domain name technical configurations" on the domains (and "See and renew
//! domain names" to list them). The deprecated API key (`api_token`, sent as
//! `Authorization: Apikey`) still works where Gandi still accepts it; with both, the personal
//! token is used.
//!
//! LiveDNS keeps records as RRsets (one per name and type) that are written whole, so a value
//! is added or removed by reading the RRset and writing it back with exactly that value more or
//! less. It only adds and removes single TXT values, and never logs a token.

use async_trait::async_trait;
use madmail_config::Error;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use madmail_libdns_http::reqwest::{Method, RequestBuilder};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};

/// The public API; `endpoint` replaces it (the sandbox is
/// `https://api.sandbox.gandi.net/v5/livedns/`).
pub const DEFAULT_ENDPOINT: &str = "https://api.gandi.net/v5/livedns/";

const PROVIDER: &str = "gandi";
/// Domains asked for a page (LiveDNS allows up to 100).
const DOMAINS_PER_PAGE: usize = 100;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: usize = 1000;
/// The TTLs LiveDNS accepts: 5 minutes to 30 days.
const TTL_RANGE: (u64, u64) = (300, 2_592_000);

/// Registers `libdns.gandi`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.gandi",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Gandi LiveDNS (personal access token or API key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let api_key = block.custom("api_token", Secret::from_node).optional();
            let personal = block.custom("personal_token", Secret::from_node).optional();
            let given = |name: &str| def.node.children().iter().any(|n| n.name == name);
            if !given("api_token") && !given("personal_token") {
                block.error(Error::at(
                    &def.node.pos,
                    format!(
                        "{}: either api_token or personal_token is required",
                        def.node.name
                    ),
                ));
            }
            match (personal, api_key) {
                (Some(token), _) => Some(Credential::PersonalToken(token)),
                (None, Some(key)) => {
                    tracing::warn!(
                        module = def.module,
                        "api_token is a Gandi API key, which Gandi has deprecated; use personal_token with a personal access token"
                    );
                    Some(Credential::ApiKey(key))
                }
                // Both absent or refused: reported in the block.
                (None, None) => None,
            }
        },
        |credential, options| Gandi::new(credential, &options),
    )
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A personal access token: `Authorization: Bearer`.
    PersonalToken(Secret),
    /// A (deprecated) API key: `Authorization: Apikey`.
    ApiKey(Secret),
}

impl Credential {
    fn header(&self) -> String {
        match self {
            Credential::PersonalToken(token) => format!("Bearer {}", token.expose()),
            Credential::ApiKey(key) => format!("Apikey {}", key.expose()),
        }
    }
}

/// The Gandi LiveDNS API with one credential.
#[derive(Debug)]
pub struct Gandi {
    client: ApiClient,
    credential: Credential,
    /// Held through each read-modify-write of an RRset: the API has no conditional write, so
    /// two orders changing one name at once would otherwise lose a value.
    changing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    fqdn: String,
}

#[derive(Debug, Deserialize)]
struct Rrset {
    rrset_ttl: Option<u64>,
    #[serde(default)]
    rrset_values: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RrsetBody<'a> {
    rrset_ttl: u64,
    rrset_values: &'a [String],
}

/// `{"code": 404, "message": "...", "object": "...", "cause": "...", "errors": [...]}`
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
struct FieldError {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

impl Gandi {
    pub fn new(credential: Credential, options: &HttpOptions) -> Result<Gandi, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Gandi {
            client,
            credential,
            changing: tokio::sync::Mutex::new(()),
        })
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
            .header(AUTHORIZATION, self.credential.header())
            .header(ACCEPT, "application/json");
        match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            None => request,
        }
    }

    /// Every LiveDNS domain's name, page by page: a page shorter than asked for, or the
    /// `Total-Count` header, says it was the last.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list domains", "-");
        let mut domains = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.client.url(&call, "domains")?;
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &DOMAINS_PER_PAGE.to_string());
            let reply = self
                .client
                .send(&call, |http| self.request(http, Method::GET, &url, None))
                .await
                .map_err(|f| self.client.error(&call, f))?;
            let batch: Vec<Domain> = self.client.decode(&call, &reply.body)?;
            let count = batch.len();
            domains.extend(batch.into_iter().map(|d| d.fqdn));
            let total = reply
                .headers
                .get("total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            if count < DOMAINS_PER_PAGE || total.is_some_and(|total| domains.len() >= total) {
                return Ok(domains);
            }
        }
        Err(self
            .client
            .failed(&call, format!("more than {MAX_PAGES} pages of domains")))
    }

    /// `domains/ZONE/records/NAME/TXT`, the name relative to the zone (`@` for the apex).
    fn rrset_url(&self, call: &Call<'_>, zone: &str, fqdn: &str) -> Result<Url, DnsError> {
        let mut url = self.client.url(call, "domains")?;
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .push(&names::bare(zone))
            .push("records")
            .push(&names::relative_or_at(fqdn, zone))
            .push("TXT");
        Ok(url)
    }

    /// The TXT RRset at `url`, or `None` when there is none.
    async fn read(&self, call: &Call<'_>, url: &Url) -> Result<Option<Rrset>, DnsError> {
        let sent = self
            .client
            .send(call, |http| self.request(http, Method::GET, url, None))
            .await;
        match self.client.unless_gone(call, sent)? {
            Some(reply) => Ok(Some(self.client.decode(call, &reply.body)?)),
            None => Ok(None),
        }
    }

    /// Creates or replaces the RRset at `url` (PUT does both).
    async fn write(
        &self,
        call: &Call<'_>,
        url: &Url,
        ttl: u64,
        values: &[String],
    ) -> Result<(), DnsError> {
        let body = serde_json::to_vec(&RrsetBody {
            rrset_ttl: ttl,
            rrset_values: values,
        })
        .map_err(|e| self.client.failed(call, e.to_string()))?;
        self.client
            .send(call, |http| {
                self.request(http, Method::PUT, url, Some(&body))
            })
            .await
            .map_err(|f| self.client.error(call, f))?;
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for Gandi {
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
        let call = Call::new("add TXT record", zone);
        let url = self.rrset_url(&call, zone, &record.fqdn)?;
        let _changing = self.changing.lock().await;
        let (ttl, mut values) = match self.read(&call, &url).await? {
            // The RRset's TTL is shared by its values: the existing one stays.
            Some(rrset) => (
                rrset
                    .rrset_ttl
                    .unwrap_or_else(|| clamp_ttl(record.ttl.as_secs())),
                rrset.rrset_values,
            ),
            None => (clamp_ttl(record.ttl.as_secs()), Vec::new()),
        };
        if values.iter().any(|v| names::unquote_txt(v) == record.value) {
            return Ok(());
        }
        // LiveDNS stores TXT data quoted whichever way it is sent; sending it quoted keeps a
        // value with spaces or quotes one string.
        values.push(names::quote_txt(&record.value));
        self.write(&call, &url, ttl, &values).await?;
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value added");
        Ok(())
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("remove TXT record", zone);
        let url = self.rrset_url(&call, zone, &record.fqdn)?;
        let _changing = self.changing.lock().await;
        let Some(rrset) = self.read(&call, &url).await? else {
            return Ok(());
        };
        let before = rrset.rrset_values.len();
        let kept: Vec<String> = rrset
            .rrset_values
            .into_iter()
            .filter(|v| names::unquote_txt(v) != record.value)
            .collect();
        if kept.len() == before {
            return Ok(());
        }
        if kept.is_empty() {
            // The RRset goes with its last value (LiveDNS refuses an empty one); gone already
            // is as good.
            let sent = self
                .client
                .send(&call, |http| self.request(http, Method::DELETE, &url, None))
                .await;
            self.client.unless_gone(&call, sent)?;
        } else {
            let ttl = rrset
                .rrset_ttl
                .unwrap_or_else(|| clamp_ttl(record.ttl.as_secs()));
            self.write(&call, &url, ttl, &kept).await?;
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

fn clamp_ttl(ttl: u64) -> u64 {
    ttl.clamp(TTL_RANGE.0, TTL_RANGE.1)
}

/// The `message` of a LiveDNS error body, with the fields its `errors` name.
fn error_message(body: &[u8]) -> Option<String> {
    let body = serde_json::from_slice::<ErrorBody>(body).ok()?;
    if body.message.is_empty() {
        return None;
    }
    let mut text = body.message;
    for error in &body.errors {
        text.push_str(&format!("; {}: {}", error.name, error.description));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_described() {
        let body = br#"{"code":400,"message":"Validation error","object":"HTTPBadRequest","cause":"Bad Request","errors":[{"location":"body","name":"rrset_ttl","description":"Must be at least 300."}]}"#;
        assert_eq!(
            error_message(body).unwrap(),
            "Validation error; rrset_ttl: Must be at least 300."
        );
        assert_eq!(error_message(b"{}"), None);
        assert_eq!(error_message(b"<html>"), None);
    }

    #[test]
    fn ttls_are_kept_in_range() {
        assert_eq!(clamp_ttl(60), 300);
        assert_eq!(clamp_ttl(3600), 3600);
        assert_eq!(clamp_ttl(u64::MAX), 2_592_000);
    }

    #[test]
    fn credentials_choose_the_scheme() {
        assert_eq!(
            Credential::PersonalToken(Secret::new("t")).header(),
            "Bearer t"
        );
        assert_eq!(Credential::ApiKey(Secret::new("k")).header(), "Apikey k");
        let debug = format!("{:?}", Credential::ApiKey(Secret::new("s3cr3t-value")));
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
    }
}

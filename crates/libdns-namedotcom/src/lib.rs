//! `libdns.namedotcom`: publishes dns-01 TXT records through the name.com v4 API
//! (`https://api.name.com/v4/`, HTTP Basic authentication with the account's user name and an
//! API token), as maddy's module of the same name:
//!
//! ```text
//! dns namedotcom {
//!     user  example-user
//!     token {env:NAMEDOTCOM_TOKEN}
//! }
//! ```
//!
//! The token is made under Account Settings → Security → API Tokens; it has the account's full
//! rights (name.com has no scopes), and with two-factor authentication the account's "API
//! Access" switch must be on. The newer Core API (`endpoint https://api.name.com/core/v1/`)
//! takes the same requests. Zones are the account's domains (`GET domains`, paged).
//!
//! It only adds and removes single TXT records (name.com keeps every value of a name as a record
//! of its own, so other values are never touched), and never logs the token.

use async_trait::async_trait;
use madmail_config::Error;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::StatusCode;
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::decode::single;
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::json;

/// The public v4 API (maddy's); `endpoint` replaces it, e.g. with the test environment
/// `https://api.dev.name.com/v4/` or the Core API `https://api.name.com/core/v1/`.
pub const DEFAULT_ENDPOINT: &str = "https://api.name.com/v4/";

const PROVIDER: &str = "namedotcom";
/// Page size asked for in listings. The API's default is 1000 (v4) or 500 (Core API) and it
/// documents no maximum; 100 keeps each reply small and is below both.
const PER_PAGE: u32 = 100;
/// "name.com allows a minimum TTL of 300": lower values are raised to it.
const MIN_TTL: u64 = 300;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u32 = 10_000;
// Rate limits (20 requests/s, 3000/hour per account) come back as 429. The API documents an
// `x-ratelimit-reset` header (a Unix time) rather than `Retry-After`; the shared client honours
// `Retry-After` when sent and otherwise backs off (0.5 s, 1 s, 2 s, ...), which covers the
// per-second limit. An exhausted hourly limit fails the call after the retries.

/// Registers `libdns.namedotcom`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.namedotcom",
    kind: Kind::Named,
    build,
    summary: "DNS provider: name.com (user name and API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let user = block.custom("user", non_empty).required();
            let token = block.custom("token", Secret::from_node).required();
            Some((user?, token?))
        },
        |(user, token), options| NameDotCom::new(user, token, &options),
    )
}

fn non_empty(node: &madmail_config::Node) -> Result<String, Error> {
    let value = single(node)?;
    if value.trim().is_empty() {
        return Err(Error::at(
            node.arg_pos(0),
            format!("{} is empty", node.name),
        ));
    }
    Ok(value.to_owned())
}

/// The name.com API with one user name and token.
#[derive(Debug)]
pub struct NameDotCom {
    client: ApiClient,
    user: String,
    token: Secret,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DomainPage {
    #[serde(default)]
    domains: Vec<Domain>,
    /// Absent (v4) or 0 (Core API) on the last page.
    #[serde(default)]
    next_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Domain {
    domain_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordPage {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    next_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: i64,
    /// Relative to the domain; absent or `""` at the apex.
    #[serde(default)]
    host: String,
    /// Absolute, with a trailing dot.
    #[serde(default)]
    fqdn: String,
    #[serde(rename = "type", default)]
    rtype: String,
    #[serde(default)]
    answer: String,
}

/// `{"message": "...", "details": "..."}`, the body of every error reply.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<String>,
}

impl NameDotCom {
    /// A provider for the account `user` with the API token `token`.
    pub fn new(
        user: impl Into<String>,
        token: Secret,
        options: &HttpOptions,
    ) -> Result<NameDotCom, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(NameDotCom {
            client,
            user: user.into(),
            token,
        })
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
                http.get(url.clone())
                    .basic_auth(&self.user, Some(self.token.expose()))
            })
            .await
    }

    /// Every domain of the account, page by page.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list domains", "-");
        let mut domains = Vec::new();
        let mut page = 1;
        loop {
            let url = self.url(
                &call,
                &["domains"],
                &[
                    ("page", page.to_string()),
                    ("perPage", PER_PAGE.to_string()),
                ],
            )?;
            let reply: DomainPage = self.get(&call, &url).await?;
            domains.extend(reply.domains.into_iter().map(|d| d.domain_name));
            page = match next_page(&self.client, &call, page, reply.next_page)? {
                Some(next) => next,
                None => return Ok(domains),
            };
        }
    }

    /// The TXT records of `fqdn` holding `value` in `domain`. The API cannot filter, so every
    /// page of the domain's records is read.
    async fn txt_records(
        &self,
        zone: &str,
        domain: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let call = Call::new("list records", zone);
        let host = names::relative(fqdn, domain);
        let mut found = Vec::new();
        let mut page = 1;
        loop {
            let url = self.url(
                &call,
                &["domains", domain, "records"],
                &[
                    ("page", page.to_string()),
                    ("perPage", PER_PAGE.to_string()),
                ],
            )?;
            let reply: RecordPage = self.get(&call, &url).await?;
            found.extend(reply.records.into_iter().filter(|r| {
                let same_name = if r.fqdn.is_empty() {
                    let other = r.host.trim_end_matches('.');
                    other.eq_ignore_ascii_case(&host) || (other == "@" && host.is_empty())
                } else {
                    names::bare(&r.fqdn) == names::bare(fqdn)
                };
                // Values are stored as sent (unquoted); a quoted one is read as its content.
                let same_value = r.answer == value || names::unquote_txt(&r.answer) == value;
                r.rtype.eq_ignore_ascii_case("TXT") && same_name && same_value
            }));
            page = match next_page(&self.client, &call, page, reply.next_page)? {
                Some(next) => next,
                None => return Ok(found),
            };
        }
    }
}

/// The page after `page`: `None` when the reply says there is none.
fn next_page(
    client: &ApiClient,
    call: &Call<'_>,
    page: u32,
    next: Option<u32>,
) -> Result<Option<u32>, DnsError> {
    match next {
        Some(next) if next > page => {
            if next > MAX_PAGES {
                return Err(client.failed(call, format!("more than {MAX_PAGES} pages")));
            }
            Ok(Some(next))
        }
        _ => Ok(None),
    }
}

#[async_trait]
impl DnsProvider for NameDotCom {
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
        let url = self.url(&call, &["domains", &domain, "records"], &[])?;
        let ttl = u32::try_from(record.ttl.as_secs().max(MIN_TTL)).unwrap_or(u32::MAX);
        let body = json!({
            "host": names::relative(&record.fqdn, &domain),
            "type": "TXT",
            "answer": record.value,
            "ttl": ttl,
        })
        .to_string();
        let sent = self
            .client
            .send(&call, |http| {
                http.post(url.clone())
                    .basic_auth(&self.user, Some(self.token.expose()))
                    // v4 answers 403 to a POST without it.
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await;
        match sent {
            Ok(_) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
                Ok(())
            }
            // A duplicate is refused with 400 ("Record already exists"; v4's wording is not
            // documented, the Core API answers 409 to duplicate updates): the listing decides
            // whether the value is there, so the exact text does not matter.
            Err(failure)
                if failure
                    .status
                    .is_some_and(|s| s == StatusCode::BAD_REQUEST || s == StatusCode::CONFLICT) =>
            {
                match self
                    .txt_records(zone, &domain, &record.fqdn, &record.value)
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
            .txt_records(zone, &domain, &record.fqdn, &record.value)
            .await?;
        for r in found {
            let id = r.id.to_string();
            let url = self.url(&call, &["domains", &domain, "records", &id], &[])?;
            let sent = self
                .client
                .send(&call, |http| {
                    http.delete(url.clone())
                        .basic_auth(&self.user, Some(self.token.expose()))
                })
                .await;
            // v4 answers 200 `{}`, the Core API 204. A 404: deleted meanwhile.
            if self.client.unless_gone(&call, sent)?.is_some() {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record deleted");
            }
        }
        Ok(())
    }
}

/// `message (details)` of an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    let details = error.details.unwrap_or_default();
    match (error.message.is_empty(), details.is_empty()) {
        (true, true) => None,
        (false, true) => Some(error.message),
        (true, false) => Some(details),
        (false, false) => Some(format!("{} ({details})", error.message)),
    }
}

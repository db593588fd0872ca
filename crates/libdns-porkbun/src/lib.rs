//! `libdns.porkbun`: publishes dns-01 TXT records through the Porkbun v3 JSON API
//! (`https://api.porkbun.com/api/json/v3/`, every call a `POST` whose JSON body carries the API
//! key pair), with the directive names of the libdns/Caddy module:
//!
//! ```text
//! dns porkbun {
//!     api_key        {env:PORKBUN_API_KEY}
//!     api_secret_key {env:PORKBUN_SECRET_KEY}
//! }
//! ```
//!
//! The key pair (`pk1_...`, `sk1_...`, made at porkbun.com/account/api) has the account's full
//! rights; each domain must also have "API ACCESS" switched on in Domain Management. Zones are the
//! account's domains (`domain/listAll`, in chunks of 1000).
//!
//! It only adds and removes single TXT records (Porkbun keeps every value of a name as a record
//! of its own; the `...ByNameType` edit and delete calls, which act on every value of a name, are
//! never used), and never logs the keys. Porkbun reports failures as `{"status": "ERROR",
//! "message": ...}`, with HTTP 400 or with 200: both are read, and a refused key or a domain
//! without API access is an authorisation error.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The public API; `endpoint` replaces it (e.g. with the IPv4-only
/// `https://api-ipv4.porkbun.com/api/json/v3/`). The old host `porkbun.com` no longer answers.
pub const DEFAULT_ENDPOINT: &str = "https://api.porkbun.com/api/json/v3/";

const PROVIDER: &str = "porkbun";
/// Porkbun's minimum TTL. Older documents say 300, current clients and Porkbun's own
/// Terraform notes say 600; whether the API refuses or raises a lower value is not documented,
/// so lower values are raised here.
const MIN_TTL: u64 = 600;
/// A domain listing longer than this many chunks (of 1000) is a misbehaving API.
const MAX_CHUNKS: usize = 1000;

/// Texts of Porkbun's error replies that mean the credentials may not do this: a wrong key
/// pair ("Invalid API key. (001)") or a domain whose "API ACCESS" is off ("Domain is not opted
/// in to API access.").
const AUTH_ERRORS: [&str; 2] = ["invalid api key", "not opted in to api access"];

/// Registers `libdns.porkbun`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.porkbun",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Porkbun (API key and secret key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let api_key = block.custom("api_key", Secret::from_node).required();
            let secret_key = block.custom("api_secret_key", Secret::from_node).required();
            Some((api_key?, secret_key?))
        },
        |(api_key, secret_key), options| Porkbun::new(api_key, secret_key, &options),
    )
}

/// The Porkbun API with one key pair.
#[derive(Debug)]
pub struct Porkbun {
    client: ApiClient,
    api_key: Secret,
    secret_key: Secret,
}

#[derive(Debug, Deserialize)]
struct DomainList {
    #[serde(default)]
    domains: Vec<Domain>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    domain: String,
}

#[derive(Debug, Deserialize)]
struct RecordList {
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    /// A string in listings (`"106926652"`); accepted as a number too.
    id: Value,
    /// The full name without a trailing dot (`_acme-challenge.example.org`).
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    rtype: String,
    #[serde(default)]
    content: String,
}

impl Record {
    fn id(&self) -> Option<String> {
        match &self.id {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// `{"status": "ERROR", "message": "..."}`.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: Option<String>,
}

impl Porkbun {
    pub fn new(
        api_key: Secret,
        secret_key: Secret,
        options: &HttpOptions,
    ) -> Result<Porkbun, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(api_message);
        Ok(Porkbun {
            client,
            api_key,
            secret_key,
        })
    }

    fn url(&self, call: &Call<'_>, segments: &[&str]) -> Result<Url, DnsError> {
        let mut url = self.client.base().clone();
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// `POST`s `fields` with the key pair to `segments`; the reply when its status is
    /// `SUCCESS`, else an error (an authorisation error for a refused key or domain).
    async fn post<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        segments: &[&str],
        fields: Map<String, Value>,
    ) -> Result<T, DnsError> {
        let url = self.url(call, segments)?;
        let mut body = fields;
        body.insert("apikey".into(), self.api_key.expose().into());
        body.insert("secretapikey".into(), self.secret_key.expose().into());
        let body = Value::Object(body).to_string();
        let sent = self
            .client
            .send(call, |http| {
                http.post(url.clone())
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await;
        let reply = match sent {
            Ok(reply) => reply,
            Err(failure) => {
                return Err(match api_message(&failure.body) {
                    Some(message) if is_auth_error(&message) => {
                        self.client.unauthorized(call, failure.message)
                    }
                    _ => self.client.error(call, failure),
                });
            }
        };
        // Errors may come with HTTP 200: the status field decides.
        let status: Status = self.client.decode(call, &reply.body)?;
        if !status.status.eq_ignore_ascii_case("SUCCESS") {
            let message = status
                .message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("status {:?} without a message", status.status));
            return Err(if is_auth_error(&message) {
                self.client.unauthorized(call, message)
            } else {
                self.client.failed(call, message)
            });
        }
        self.client.decode(call, &reply.body)
    }

    /// Every domain of the account, chunk by chunk.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list domains", "-");
        let mut domains: Vec<String> = Vec::new();
        let mut previous_first: Option<String> = None;
        for _ in 0..MAX_CHUNKS {
            let mut fields = Map::new();
            // Strings, as documented. Porkbun documents chunks of 1000 and "increment by
            // 1000"; stepping by what came back is the same then, and misses nothing if the
            // chunk size changes.
            fields.insert("start".into(), domains.len().to_string().into());
            fields.insert("includeLabels".into(), "no".into());
            let chunk: DomainList = self.post(&call, &["domain", "listAll"], fields).await?;
            let Some(first) = chunk.domains.first().map(|d| d.domain.clone()) else {
                return Ok(domains);
            };
            if previous_first.as_ref() == Some(&first) {
                return Err(self.client.failed(
                    &call,
                    "the API sent the same chunk twice (ignoring `start`?)",
                ));
            }
            previous_first = Some(first);
            domains.extend(chunk.domains.into_iter().map(|d| d.domain));
        }
        Err(self
            .client
            .failed(&call, format!("more than {MAX_CHUNKS} chunks of domains")))
    }

    /// The TXT records of `fqdn` in `domain` holding `value`.
    async fn txt_records(
        &self,
        zone: &str,
        domain: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let call = Call::new("list records", zone);
        let subdomain = names::relative(fqdn, domain);
        let mut segments = vec!["dns", "retrieveByNameType", domain, "TXT"];
        // The apex has no subdomain segment.
        if !subdomain.is_empty() {
            segments.push(&subdomain);
        }
        let list: RecordList = self.post(&call, &segments, Map::new()).await?;
        Ok(list
            .records
            .into_iter()
            .filter(|r| {
                r.rtype.eq_ignore_ascii_case("TXT")
                    && names::bare(&r.name) == names::bare(fqdn)
                    && (r.content == value || names::unquote_txt(&r.content) == value)
            })
            .collect())
    }
}

#[async_trait]
impl DnsProvider for Porkbun {
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
        // Porkbun does not document what a duplicate create does: look first.
        if !self
            .txt_records(zone, &domain, &record.fqdn, &record.value)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let mut fields = Map::new();
        fields.insert("name".into(), names::relative(&record.fqdn, &domain).into());
        fields.insert("type".into(), "TXT".into());
        fields.insert("content".into(), record.value.clone().into());
        // A string, as in Porkbun's examples.
        fields.insert(
            "ttl".into(),
            record.ttl.as_secs().max(MIN_TTL).to_string().into(),
        );
        match self
            .post::<Value>(&call, &["dns", "create", &domain], fields)
            .await
        {
            Ok(_) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
                Ok(())
            }
            Err(e @ DnsError::Unauthorized { .. }) => Err(e),
            // Created meanwhile (a concurrent order, or a retried request that had gone
            // through): fine.
            Err(e) => match self
                .txt_records(zone, &domain, &record.fqdn, &record.value)
                .await
            {
                Ok(found) if !found.is_empty() => Ok(()),
                _ => Err(e),
            },
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let domain = names::bare(zone);
        let found = self
            .txt_records(zone, &domain, &record.fqdn, &record.value)
            .await?;
        for r in found {
            let Some(id) = r.id() else {
                return Err(self
                    .client
                    .failed(&call, format!("a record without an id: {:?}", r.id)));
            };
            match self
                .post::<Value>(&call, &["dns", "delete", &domain, &id], Map::new())
                .await
            {
                Ok(_) => {
                    tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record deleted");
                }
                Err(e @ DnsError::Unauthorized { .. }) => return Err(e),
                // Porkbun does not document the reply for an unknown id: gone is gone.
                Err(e) => {
                    let still_there = self
                        .txt_records(zone, &domain, &record.fqdn, &record.value)
                        .await
                        .map(|left| left.iter().any(|l| l.id() == Some(id.clone())));
                    if !matches!(still_there, Ok(false)) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_auth_error(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    AUTH_ERRORS.iter().any(|m| message.contains(m))
}

/// The `message` of an error body.
fn api_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Status>(body)
        .ok()?
        .message
        .filter(|m| !m.is_empty())
}

//! `libdns.desec`: publishes dns-01 TXT records in domains hosted at deSEC, through its API v1
//! (`https://desec.io/api/v1/`, `Authorization: Token ...`). maddy has no such module; the
//! directive is the one of libdns/desec and Caddy's `dns desec`:
//!
//! ```text
//! dns desec {
//!     token {env:DESEC_TOKEN}
//! }
//! ```
//!
//! A plain token (without the token-management permission) is enough; a token restricted by
//! scoping policies needs read access to the domain and write access to the
//! `_acme-challenge` TXT RRsets. The zone of a name is the one deSEC reports as responsible
//! for it (`GET domains/?owns_qname=`).
//!
//! deSEC stores RRsets, not single records: a value is added by reading the name's TXT RRset
//! and writing it back with the value added, and removed the same way (the RRset is deleted
//! when its last value goes). Other values are never touched; read-modify-write cycles of one
//! provider are serialised. It never logs the token.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::{Method, RequestBuilder, StatusCode};
use madmail_libdns_http::{
    ApiClient, Call, Failure, HttpOptions, Secret, Url, build_provider, names,
};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://desec.io/api/v1/";

const PROVIDER: &str = "desec";
/// The longest TTL deSEC accepts (one version of its documentation says 604800; 86400 is the
/// limit the API enforces for ordinary accounts).
const MAX_TTL: u64 = 86_400;
/// A domain's `minimum_ttl` when its object does not say (deSEC's default).
const DEFAULT_MINIMUM_TTL: u64 = 3_600;
/// The error deSEC answers a create of an RRset that exists (newer servers append
/// " (Try modifying it.)").
const RRSET_EXISTS: &str = "Another RRset with the same subdomain and type exists";
// Rate limits are tight for writes (2/s, 15/min, 100/h per domain) and come back as 429 with
// `Retry-After`, which the shared client honours up to two minutes.

/// Registers `libdns.desec`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.desec",
    kind: Kind::Named,
    build,
    summary: "DNS provider: deSEC (API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("token", Secret::from_node).required(),
        |token, options| Desec::new(token, &options),
    )
}

/// The deSEC API with one token.
#[derive(Debug)]
pub struct Desec {
    client: ApiClient,
    token: Secret,
    /// Held across each read-modify-write of an RRset, so that two values presented at once
    /// (a wildcard and its apex) do not overwrite each other.
    writing: Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    name: String,
    #[serde(default)]
    minimum_ttl: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RrSet {
    /// In presentation format: TXT values quoted.
    #[serde(default)]
    records: Vec<String>,
}

/// Where an RRset is.
struct Target {
    /// The zone's name without the trailing dot, as the API wants it.
    domain: String,
    /// Relative to the zone, `""` at the apex.
    subname: String,
}

impl Target {
    /// The path segments of the RRset (`@` stands for the apex in URLs).
    fn segments(&self) -> [&str; 5] {
        let subname = if self.subname.is_empty() {
            "@"
        } else {
            self.subname.as_str()
        };
        ["domains", &self.domain, "rrsets", subname, "TXT"]
    }
}

impl Desec {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<Desec, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Desec {
            client,
            token,
            writing: Mutex::new(()),
        })
    }

    /// The API's base URL followed by `segments` (each percent-encoded), the trailing slash
    /// every deSEC path has, and `query`.
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
            .extend(segments)
            .push("");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A request with the token and the JSON `Accept` header.
    fn request(&self, request: RequestBuilder) -> RequestBuilder {
        request
            .header("authorization", format!("Token {}", self.token.expose()))
            .header("accept", "application/json")
    }

    /// A JSON `body` sent to `url` with `method`.
    async fn write(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<(), Failure> {
        let body = body.map(Value::to_string);
        self.client
            .send(call, |http| {
                let request = self.request(http.request(method.clone(), url.clone()));
                match &body {
                    Some(body) => request
                        .header("content-type", "application/json")
                        .body(body.clone()),
                    None => request,
                }
            })
            .await
            .map(|_| ())
    }

    /// The TXT RRset at `target`, or `None` when there is none.
    async fn rrset(&self, call: &Call<'_>, target: &Target) -> Result<Option<RrSet>, DnsError> {
        let url = self.url(call, &target.segments(), &[])?;
        let sent = self
            .client
            .send(call, |http| self.request(http.get(url.clone())))
            .await;
        match self.client.unless_gone(call, sent)? {
            Some(reply) => self.client.decode(call, &reply.body).map(Some),
            None => Ok(None),
        }
    }

    /// The domain's smallest TTL (3600 unless deSEC lowered it for the account).
    async fn minimum_ttl(&self, call: &Call<'_>, domain: &str) -> Result<u64, DnsError> {
        let url = self.url(call, &["domains", domain], &[])?;
        let domain: Domain = self
            .client
            .json(call, |http| self.request(http.get(url.clone())))
            .await?;
        Ok(domain.minimum_ttl.unwrap_or(DEFAULT_MINIMUM_TTL))
    }

    /// Creates the RRset at `target` holding `value`; `Ok(false)` when it exists already.
    async fn create(
        &self,
        call: &Call<'_>,
        target: &Target,
        record: &TxtRecord,
    ) -> Result<bool, DnsError> {
        let minimum = self.minimum_ttl(call, &target.domain).await?;
        let ttl = record.ttl.as_secs().clamp(minimum, MAX_TTL.max(minimum));
        let url = self.url(call, &["domains", &target.domain, "rrsets"], &[])?;
        let body = json!({
            "subname": target.subname,
            "type": "TXT",
            "ttl": ttl,
            "records": [names::quote_txt(&record.value)],
        });
        match self.write(call, Method::POST, &url, Some(&body)).await {
            Ok(()) => Ok(true),
            // Created meanwhile by someone else: modify it instead.
            Err(failure)
                if failure.status == Some(StatusCode::BAD_REQUEST)
                    && String::from_utf8_lossy(&failure.body).contains(RRSET_EXISTS) =>
            {
                Ok(false)
            }
            Err(failure) => Err(self.client.error(call, failure)),
        }
    }

    /// Replaces the records of the RRset at `target` by `records`.
    async fn patch(
        &self,
        call: &Call<'_>,
        target: &Target,
        records: &[String],
    ) -> Result<(), DnsError> {
        let url = self.url(call, &target.segments(), &[])?;
        self.write(
            call,
            Method::PATCH,
            &url,
            Some(&json!({ "records": records })),
        )
        .await
        .map_err(|failure| self.client.error(call, failure))
    }
}

fn target(zone: &str, fqdn: &str) -> Target {
    Target {
        domain: names::bare(zone),
        subname: names::relative(fqdn, zone),
    }
}

#[async_trait]
impl DnsProvider for Desec {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let call = Call::new("find domain", "-");
        let name = names::bare(fqdn);
        let url = self.url(&call, &["domains"], &[("owns_qname", &name)])?;
        // deSEC answers with the one domain of the account responsible for the name, or none.
        let domains: Vec<Domain> = self
            .client
            .json(&call, |http| self.request(http.get(url.clone())))
            .await?;
        names::longest_zone(fqdn, domains.iter().map(|d| d.name.as_str()))
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("add TXT value", zone);
        if !names::in_zone(&record.fqdn, zone) {
            return Err(self
                .client
                .failed(&call, format!("{} is not in the zone", record.fqdn)));
        }
        let target = target(zone, &record.fqdn);
        let _writing = self.writing.lock().await;
        // Twice at most: a create that finds the RRset made meanwhile modifies it instead.
        for _ in 0..2 {
            match self.rrset(&call, &target).await? {
                None => {
                    if self.create(&call, &target, record).await? {
                        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT RRset created");
                        return Ok(());
                    }
                }
                Some(rrset) => {
                    if rrset
                        .records
                        .iter()
                        .any(|r| names::unquote_txt(r) == record.value)
                    {
                        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value exists already");
                        return Ok(());
                    }
                    let mut records = rrset.records;
                    records.push(names::quote_txt(&record.value));
                    self.patch(&call, &target, &records).await?;
                    tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value added");
                    return Ok(());
                }
            }
        }
        Err(self.client.failed(
            &call,
            format!(
                "the TXT RRset of {} keeps changing under us",
                names::bare(&record.fqdn)
            ),
        ))
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("remove TXT value", zone);
        let target = target(zone, &record.fqdn);
        let _writing = self.writing.lock().await;
        let Some(rrset) = self.rrset(&call, &target).await? else {
            return Ok(());
        };
        let before = rrset.records.len();
        let remaining: Vec<String> = rrset
            .records
            .into_iter()
            .filter(|r| names::unquote_txt(r) != record.value)
            .collect();
        if remaining.len() == before {
            return Ok(());
        }
        if remaining.is_empty() {
            let url = self.url(&call, &target.segments(), &[])?;
            // 204, also when the RRset is gone already.
            let sent = self.write(&call, Method::DELETE, &url, None).await;
            self.client.unless_gone(&call, sent)?;
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT RRset deleted");
        } else {
            self.patch(&call, &target, &remaining).await?;
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
        }
        Ok(())
    }
}

/// The messages of a Django REST Framework error body: `{"detail": "..."}`, or field errors
/// `{"ttl": ["..."], "non_field_errors": ["..."]}` (a list of those for bulk requests).
fn error_message(body: &[u8]) -> Option<String> {
    fn collect(value: &Value, field: Option<&str>, out: &mut Vec<String>) {
        match value {
            Value::String(text) => match field {
                Some(field) if field != "detail" && field != "non_field_errors" => {
                    out.push(format!("{field}: {text}"));
                }
                _ => out.push(text.clone()),
            },
            Value::Array(items) => items.iter().for_each(|v| collect(v, field, out)),
            Value::Object(fields) => fields
                .iter()
                .for_each(|(name, v)| collect(v, Some(name), out)),
            _ => {}
        }
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut messages = Vec::new();
    collect(&value, None, &mut messages);
    (!messages.is_empty()).then(|| messages.join("; "))
}

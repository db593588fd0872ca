//! `libdns.ovh`: publishes dns-01 TXT records through the OVHcloud API v1 with an application
//! key, its secret and a consumer key (OVH's signed requests), for zones hosted by OVHcloud.
//! maddy has no such module; the directive names are those of the libdns/Caddy module:
//!
//! ```text
//! dns ovh {
//!     endpoint ovh-eu
//!     application_key {env:OVH_APPLICATION_KEY}
//!     application_secret {env:OVH_APPLICATION_SECRET}
//!     consumer_key {env:OVH_CONSUMER_KEY}
//! }
//! ```
//!
//! `endpoint` takes a URL or one of OVH's region names (`ovh-eu`, `ovh-ca`, `ovh-us`,
//! `kimsufi-eu`, ...). The consumer key needs `GET /domain/zone/*/record`,
//! `GET /domain/zone/*/record/*`, `POST /domain/zone/*/record`,
//! `DELETE /domain/zone/*/record/*` and `POST /domain/zone/*/refresh`; `GET /domain/zone`
//! lets it list zones in one call (without it, zones are found by probing the enclosing names).
//!
//! It only adds and removes single TXT records (OVH keeps each value as a record of its own),
//! and never logs the application secret or the consumer key.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lc_rs::digest;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::Method;
use madmail_libdns_http::{
    ApiClient, ApiEndpoint, Call, Failure, HttpOptions, Secret, Url, build_provider, names,
};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};

/// The API of OVHcloud Europe (`ovh-eu`); `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://eu.api.ovh.com/1.0/";

/// The region names `endpoint` accepts in place of a URL, as OVH's own clients (go-ovh,
/// python-ovh) name them.
pub const ENDPOINTS: [(&str, &str); 7] = [
    ("ovh-eu", DEFAULT_ENDPOINT),
    ("ovh-ca", "https://ca.api.ovh.com/1.0/"),
    ("ovh-us", "https://api.us.ovhcloud.com/1.0/"),
    ("kimsufi-eu", "https://eu.api.kimsufi.com/1.0/"),
    ("kimsufi-ca", "https://ca.api.kimsufi.com/1.0/"),
    ("soyoustart-eu", "https://eu.api.soyoustart.com/1.0/"),
    ("soyoustart-ca", "https://ca.api.soyoustart.com/1.0/"),
];

const PROVIDER: &str = "ovh";
/// OVH's smallest TTL (the libdns module raises shorter ones to it too); 0 would mean "the
/// zone's default", which is usually an hour.
const MIN_TTL: u64 = 60;
/// How long the difference between the local clock and OVH's is trusted before it is asked
/// again: signatures carry OVH's time, and a local clock may drift.
const CLOCK_OFFSET_LIFETIME: Duration = Duration::from_secs(3600);

/// `errorCode`s of the authentication layer meaning the credentials were refused: a wrong
/// application secret or consumer key shows as a signature that does not match.
const CODES_AUTH: [&str; 5] = [
    "INVALID_SIGNATURE",
    "INVALID_CREDENTIAL",
    "NOT_CREDENTIAL",
    "INVALID_KEY",
    "FORBIDDEN",
];
/// The consumer key is valid but this call is not among its access rules.
const CODE_NOT_GRANTED: &str = "NOT_GRANTED_CALL";

/// Registers `libdns.ovh`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.ovh",
    kind: Kind::Named,
    build,
    summary: "DNS provider: OVHcloud (application key, secret, consumer key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        ApiEndpoint {
            default: DEFAULT_ENDPOINT,
            aliases: &ENDPOINTS,
        },
        |block| {
            let application_key = block
                .custom("application_key", Secret::from_node)
                .required();
            let application_secret = block
                .custom("application_secret", Secret::from_node)
                .required();
            let consumer_key = block.custom("consumer_key", Secret::from_node).required();
            Some(Credentials {
                application_key: application_key?,
                application_secret: application_secret?,
                consumer_key: consumer_key?,
            })
        },
        |credentials, options| Ovh::new(credentials, &options),
    )
}

/// What signs OVH API calls: the application's key and secret, and the consumer key the
/// account owner validated for it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub application_key: Secret,
    pub application_secret: Secret,
    pub consumer_key: Secret,
}

/// The OVHcloud API with one application and consumer key.
#[derive(Debug)]
pub struct Ovh {
    client: ApiClient,
    credentials: Credentials,
    /// OVH's clock minus the local one (seconds), and when it was measured.
    clock_offset: Mutex<Option<(i64, Instant)>>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default, rename = "errorCode")]
    error_code: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A record as `GET /domain/zone/{zone}/record/{id}` shows it.
#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(default, rename = "fieldType")]
    field_type: String,
    #[serde(default, rename = "subDomain")]
    sub_domain: String,
    #[serde(default)]
    target: String,
}

/// The body of `POST /domain/zone/{zone}/record`. The bytes sent are the bytes signed.
#[derive(Debug, Serialize)]
struct NewRecord<'a> {
    #[serde(rename = "fieldType")]
    field_type: &'a str,
    #[serde(rename = "subDomain")]
    sub_domain: &'a str,
    target: &'a str,
    ttl: u64,
}

/// A call the API refused, sorted by what the caller makes of it.
enum Refusal {
    /// HTTP 404: no such zone or record.
    NotFound(DnsError),
    /// The consumer key may not make this call (`NOT_GRANTED_CALL`).
    NotGranted(DnsError),
    Error(DnsError),
}

impl From<DnsError> for Refusal {
    fn from(error: DnsError) -> Refusal {
        Refusal::Error(error)
    }
}

impl Refusal {
    fn into_error(self) -> DnsError {
        match self {
            Refusal::NotFound(e) | Refusal::NotGranted(e) | Refusal::Error(e) => e,
        }
    }
}

impl Ovh {
    pub fn new(credentials: Credentials, options: &HttpOptions) -> Result<Ovh, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Ovh {
            client,
            credentials,
            clock_offset: Mutex::new(None),
        })
    }

    /// OVH's clock minus ours, from the unauthenticated `GET /auth/time` (a bare integer):
    /// a request whose timestamp is off is refused, so it is OVH's time that is signed.
    async fn clock_offset(&self, call: &Call<'_>) -> Result<i64, DnsError> {
        if let Some((offset, measured)) = *lock(&self.clock_offset)
            && measured.elapsed() < CLOCK_OFFSET_LIFETIME
        {
            return Ok(offset);
        }
        let url = self.client.url(call, "auth/time")?;
        let server: i64 = self
            .client
            .json(call, |http| {
                http.get(url.clone())
                    .header("accept", "application/json")
                    .header(
                        "x-ovh-application",
                        self.credentials.application_key.expose(),
                    )
            })
            .await?;
        let offset = server - unix_now();
        *lock(&self.clock_offset) = Some((offset, Instant::now()));
        Ok(offset)
    }

    /// Sends one signed call; the reply's body.
    async fn request(
        &self,
        call: &Call<'_>,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<Vec<u8>, Refusal> {
        let offset = self.clock_offset(call).await?;
        let credentials = &self.credentials;
        let result = self
            .client
            .send(call, |http| {
                // A fresh timestamp (and so signature) for each attempt.
                let timestamp = unix_now() + offset;
                let signature = sign(
                    credentials,
                    method.as_str(),
                    url.as_str(),
                    body.as_deref().unwrap_or(""),
                    timestamp,
                );
                let request = http
                    .request(method.clone(), url.clone())
                    .header("accept", "application/json")
                    .header("x-ovh-application", credentials.application_key.expose())
                    .header("x-ovh-consumer", credentials.consumer_key.expose())
                    .header("x-ovh-timestamp", timestamp.to_string())
                    .header("x-ovh-signature", signature);
                match &body {
                    Some(json) => request
                        .header("content-type", "application/json;charset=utf-8")
                        .body(json.clone()),
                    None => request,
                }
            })
            .await;
        match result {
            Ok(reply) => Ok(reply.body.to_vec()),
            Err(failure) => Err(self.refusal(call, failure)),
        }
    }

    fn refusal(&self, call: &Call<'_>, failure: Failure) -> Refusal {
        let code = serde_json::from_slice::<ApiError>(&failure.body)
            .ok()
            .and_then(|e| e.error_code);
        match code.as_deref() {
            Some(CODE_NOT_GRANTED) => {
                Refusal::NotGranted(self.client.unauthorized(call, failure.message))
            }
            Some(code) if CODES_AUTH.contains(&code) => {
                Refusal::Error(self.client.unauthorized(call, failure.message))
            }
            _ if failure.status.is_some_and(|s| s.as_u16() == 404) => {
                Refusal::NotFound(self.client.failed(call, failure.message))
            }
            _ => Refusal::Error(self.client.error(call, failure)),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call<'_>,
        url: Url,
    ) -> Result<T, Refusal> {
        let body = self.request(call, Method::GET, url, None).await?;
        Ok(self.client.decode(call, &body)?)
    }

    /// `domain/zone/{zone}/record` filtered to the TXT records of `sub_domain` (relative to
    /// the zone, `""` for the apex).
    fn records_url(&self, call: &Call<'_>, zone: &str, sub_domain: &str) -> Result<Url, DnsError> {
        let mut url = self
            .client
            .url(call, &format!("domain/zone/{zone}/record"))?;
        url.query_pairs_mut()
            .append_pair("fieldType", "TXT")
            .append_pair("subDomain", sub_domain);
        Ok(url)
    }

    /// The ids of the TXT records of `sub_domain` in `zone` whose value is `value`. OVH lists
    /// only ids (no paging), so each record is read for its value.
    async fn find(
        &self,
        call: &Call<'_>,
        zone: &str,
        sub_domain: &str,
        value: &str,
    ) -> Result<Vec<u64>, DnsError> {
        let url = self.records_url(call, zone, sub_domain)?;
        let ids: Vec<u64> = self.get(call, url).await.map_err(Refusal::into_error)?;
        let mut found = Vec::new();
        for id in ids {
            let url = self
                .client
                .url(call, &format!("domain/zone/{zone}/record/{id}"))?;
            let record: Record = match self.get(call, url).await {
                Ok(record) => record,
                // Deleted since it was listed.
                Err(Refusal::NotFound(_)) => continue,
                Err(refusal) => return Err(refusal.into_error()),
            };
            // OVH returns TXT targets in quotes even when they were sent bare.
            if record.field_type == "TXT"
                && record.sub_domain.eq_ignore_ascii_case(sub_domain)
                && names::unquote_txt(&record.target) == value
            {
                found.push(record.id);
            }
        }
        Ok(found)
    }

    /// Publishes the zone's pending changes: OVH serves nothing new before this call.
    async fn refresh(&self, call: &Call<'_>, zone: &str) -> Result<(), DnsError> {
        let url = self
            .client
            .url(call, &format!("domain/zone/{zone}/refresh"))?;
        self.request(call, Method::POST, url, None)
            .await
            .map_err(Refusal::into_error)?;
        Ok(())
    }

    /// Without the right to list zones: the longest name enclosing `fqdn` whose TXT records
    /// can be read is the zone (OVH answers 404 for a name that is not one of the account's
    /// zones). Reading records is a right the provider needs anyway.
    async fn probe_zone(&self, fqdn: &str, refused: DnsError) -> Result<String, DnsError> {
        let mut granted_any = false;
        for candidate in candidates(fqdn) {
            let call = Call::new("find zone", &candidate);
            let sub_domain = names::relative(fqdn, &candidate);
            let url = self.records_url(&call, &candidate, &sub_domain)?;
            match self.request(&call, Method::GET, url, None).await {
                Ok(_) => return Ok(format!("{candidate}.")),
                Err(Refusal::NotFound(_)) => granted_any = true,
                // Access rules may name zones one by one.
                Err(Refusal::NotGranted(_)) => {}
                Err(Refusal::Error(e)) => return Err(e),
            }
        }
        if granted_any {
            Err(DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
        } else {
            Err(refused)
        }
    }
}

#[async_trait]
impl DnsProvider for Ovh {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let call = Call::new("list zones", "-");
        let url = self.client.url(&call, "domain/zone")?;
        match self.get::<Vec<String>>(&call, url).await {
            Ok(zones) => names::longest_zone(fqdn, zones.iter().map(String::as_str))
                .map(|zone| format!("{}.", names::bare(zone)))
                .ok_or_else(|| DnsError::NoZone {
                    provider: PROVIDER.into(),
                    name: fqdn.into(),
                }),
            Err(Refusal::NotGranted(refused)) => {
                tracing::debug!(
                    provider = PROVIDER,
                    name = fqdn,
                    "listing zones is not granted; probing the enclosing names"
                );
                self.probe_zone(fqdn, refused).await
            }
            Err(refusal) => Err(refusal.into_error()),
        }
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        let (zone_name, sub_domain) = split(&self.client, &call, zone, &record.fqdn)?;
        if self
            .find(&call, &zone_name, &sub_domain, &record.value)
            .await?
            .is_empty()
        {
            // OVH would store a second record with the same value: look before adding.
            let body = serde_json::to_string(&NewRecord {
                field_type: "TXT",
                sub_domain: &sub_domain,
                target: &record.value,
                ttl: record.ttl.as_secs().max(MIN_TTL),
            })
            .map_err(|e| {
                self.client
                    .failed(&call, format!("encoding the record: {e}"))
            })?;
            let url = self
                .client
                .url(&call, &format!("domain/zone/{zone_name}/record"))?;
            self.request(&call, Method::POST, url, Some(body))
                .await
                .map_err(Refusal::into_error)?;
            tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
        }
        // Also when the value was there: an earlier attempt may have stopped before this.
        self.refresh(&call, &zone_name).await
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let (zone_name, sub_domain) = split(&self.client, &call, zone, &record.fqdn)?;
        let ids = self
            .find(&call, &zone_name, &sub_domain, &record.value)
            .await?;
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            let url = self
                .client
                .url(&call, &format!("domain/zone/{zone_name}/record/{id}"))?;
            match self.request(&call, Method::DELETE, url, None).await {
                Ok(_) | Err(Refusal::NotFound(_)) => {}
                Err(refusal) => return Err(refusal.into_error()),
            }
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record deleted");
        self.refresh(&call, &zone_name).await
    }
}

/// The zone's name without its dot and `fqdn` relative to it.
fn split(
    client: &ApiClient,
    call: &Call<'_>,
    zone: &str,
    fqdn: &str,
) -> Result<(String, String), DnsError> {
    if !names::in_zone(fqdn, zone) {
        return Err(client.failed(call, format!("{fqdn} is not in the zone")));
    }
    Ok((names::bare(zone), names::relative(fqdn, zone)))
}

/// The names enclosing `fqdn` that could be zones, longest first: not the top-level domain,
/// and not a name starting with `_` (no registrable domain does).
fn candidates(fqdn: &str) -> Vec<String> {
    let name = names::bare(fqdn);
    let labels: Vec<&str> = name.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .filter(|candidate| !candidate.starts_with('_'))
        .collect()
}

/// `$1$` followed by the SHA-1 (lowercase hex) of
/// `SECRET+CONSUMER_KEY+METHOD+URL+BODY+TIMESTAMP`, as OVH's clients sign requests. The URL is
/// the full one with its query, byte for byte as sent.
fn sign(credentials: &Credentials, method: &str, url: &str, body: &str, timestamp: i64) -> String {
    let timestamp = timestamp.to_string();
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    for (i, part) in [
        credentials.application_secret.expose(),
        credentials.consumer_key.expose(),
        method,
        url,
        body,
        timestamp.as_str(),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            context.update(b"+");
        }
        context.update(part.as_bytes());
    }
    let hex: String = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("$1${hex}")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `message (errorCode)` of an OVH error body; the API layer's replies carry a `class`
/// (`Client::NotFound`) instead of an `errorCode`.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    let message = error.message.filter(|m| !m.is_empty())?;
    match error.error_code.or(error.class) {
        Some(code) => Some(format!("{message} ({code})")),
        None => Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            application_key: Secret::new("ak"),
            application_secret: Secret::new("EXEgWIz07P0HYwtQDs7cNIqCiQaWSuHF"),
            consumer_key: Secret::new("MtSwSrPpNjqfVSmJhLbPyr2i45lSwPU1"),
        }
    }

    /// Signatures computed independently (Python's hashlib) for the same inputs.
    #[test]
    fn signatures_match_known_values() {
        let base = "https://eu.api.ovh.com/1.0";
        assert_eq!(
            sign(
                &credentials(),
                "GET",
                &format!(
                    "{base}/domain/zone/example.com/record?fieldType=TXT&subDomain=_acme-challenge.mail"
                ),
                "",
                1_700_000_000
            ),
            "$1$224fd553723affe24c6b20034f9e5e7b16263d6e"
        );
        assert_eq!(
            sign(
                &credentials(),
                "POST",
                &format!("{base}/domain/zone/example.com/record"),
                r#"{"fieldType":"TXT","subDomain":"_acme-challenge.mail","target":"abc","ttl":60}"#,
                1_700_000_000
            ),
            "$1$701b4df3dd0ce6fe4a24251f8b274457c4b19529"
        );
        assert_eq!(
            sign(
                &credentials(),
                "POST",
                &format!("{base}/domain/zone/example.com/refresh"),
                "",
                1_700_000_000
            ),
            "$1$0af36359e53aac8da29239d31020ef57abbcd182"
        );
    }

    #[test]
    fn the_body_is_serialised_in_the_signed_order() {
        let body = serde_json::to_string(&NewRecord {
            field_type: "TXT",
            sub_domain: "_acme-challenge.mail",
            target: "abc",
            ttl: 60,
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"fieldType":"TXT","subDomain":"_acme-challenge.mail","target":"abc","ttl":60}"#
        );
    }

    #[test]
    fn zone_candidates_longest_first() {
        assert_eq!(
            candidates("_acme-challenge.a.Sub.example.org."),
            ["a.sub.example.org", "sub.example.org", "example.org"]
        );
        assert_eq!(candidates("example.org."), ["example.org"]);
        assert!(candidates("org.").is_empty());
    }

    #[test]
    fn region_names_are_valid_endpoints() {
        for (name, url) in ENDPOINTS {
            let parsed = madmail_libdns_http::parse_endpoint(url).unwrap();
            assert_eq!(parsed.as_str(), url, "{name}");
            assert!(parsed.path().starts_with("/1.0/"), "{name}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                br#"{"errorCode":"INVALID_SIGNATURE","httpCode":"400 Bad Request","message":"Invalid signature"}"#
            )
            .as_deref(),
            Some("Invalid signature (INVALID_SIGNATURE)")
        );
        assert_eq!(
            error_message(
                br#"{"class":"Client::NotFound","message":"This service does not exist"}"#
            )
            .as_deref(),
            Some("This service does not exist (Client::NotFound)")
        );
        assert_eq!(
            error_message(br#"{"message":"The requested object (id = 1) does not exist"}"#)
                .as_deref(),
            Some("The requested object (id = 1) does not exist")
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}

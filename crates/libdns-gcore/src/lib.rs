//! `libdns.gcore`: publishes dns-01 TXT records through the Gcore DNS API v2
//! (`https://api.gcore.com/dns/v2/`) with a permanent API token
//! (`Authorization: APIKey <token>`), as maddy's module of the same name:
//!
//! ```text
//! dns gcore {
//!     api_key {env:GCORE_API_KEY}
//! }
//! ```
//!
//! The token is made in the Gcore portal (Profile, API tokens) for a user whose role may edit
//! DNS zones (Administrators or Engineers). The API keeps records as RRsets (one per name and
//! type) that are replaced whole, so a value is added or removed by reading the RRset and
//! writing it back with exactly that value more or less, keeping every other value and setting.
//! It only adds and removes single TXT values, and never logs the token.

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use madmail_libdns_http::reqwest::{Method, RequestBuilder, StatusCode};
use madmail_libdns_http::{
    ApiClient, Call, Failure, HttpOptions, Secret, Url, build_provider, names,
};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.gcore.com/dns/v2/";

const PROVIDER: &str = "gcore";
/// Zones asked for a page (`limit`), as Gcore's own SDK lists them.
const ZONES_PER_PAGE: u64 = 100;
/// A listing longer than this many pages is a misbehaving API, not an account.
const MAX_PAGES: u64 = 1000;
/// The fields of a resource record that are written back when an RRset is replaced; others
/// (`id`) are the API's own.
const RECORD_FIELDS: [&str; 3] = ["content", "enabled", "meta"];
/// The largest TTL DNS allows (RFC 2181: 2^31 - 1); Gcore documents no minimum.
const MAX_TTL: u64 = 2_147_483_647;

/// Registers `libdns.gcore`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.gcore",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Gcore DNS (API key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_key", Secret::from_node).required(),
        |key, options| Gcore::new(key, &options),
    )
}

/// The Gcore DNS API with one permanent API token.
#[derive(Debug)]
pub struct Gcore {
    client: ApiClient,
    key: Secret,
    /// Held through each read-modify-write of an RRset: the API has no conditional write, so
    /// two orders changing one name at once would otherwise lose a value.
    changing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct ZonePage {
    #[serde(default)]
    zones: Vec<Zone>,
    total_amount: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Zone {
    name: String,
}

/// An RRset as the API returns it; records and settings this client does not interpret are
/// kept as they came, to be written back unchanged.
#[derive(Debug, Deserialize)]
struct Rrset {
    ttl: Option<u64>,
    #[serde(default)]
    resource_records: Vec<Map<String, Value>>,
    #[serde(default)]
    filters: Option<Value>,
    #[serde(default)]
    meta: Option<Value>,
}

/// `{"error": "message"}`, the body of every refusal (and of some 200 replies).
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
}

impl Rrset {
    /// Whether a record holds `value` (TXT content is one string, unquoted; quotes are
    /// tolerated in case a record was made elsewhere in zone-file syntax).
    fn holds(record: &Map<String, Value>, value: &str) -> bool {
        let content: Vec<&str> = record
            .get("content")
            .and_then(Value::as_array)
            .map(|parts| parts.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        names::unquote_txt(&content.concat()) == value
    }

    /// The body that replaces this RRset with `records`.
    fn body(&self, records: Vec<Map<String, Value>>, ttl: u64) -> Value {
        let records: Vec<Value> = records
            .into_iter()
            .map(|record| {
                Value::Object(
                    record
                        .into_iter()
                        .filter(|(key, _)| RECORD_FIELDS.contains(&key.as_str()))
                        .collect(),
                )
            })
            .collect();
        let mut body = json!({"ttl": ttl, "resource_records": records});
        // Balancing filters and RRset metadata stay as they were.
        if let Some(filters) = self.filters.as_ref().filter(|f| !is_empty(f)) {
            body["filters"] = filters.clone();
        }
        if let Some(meta) = self.meta.as_ref().filter(|m| !is_empty(m)) {
            body["meta"] = meta.clone();
        }
        body
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

fn new_record(value: &str) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("content".into(), json!([value]));
    record.insert("enabled".into(), json!(true));
    record
}

impl Gcore {
    pub fn new(key: Secret, options: &HttpOptions) -> Result<Gcore, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Gcore {
            client,
            key,
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
            .header(AUTHORIZATION, format!("APIKey {}", self.key.expose()))
            .header(ACCEPT, "application/json");
        match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            None => request,
        }
    }

    /// Every zone's name, `limit` at a time.
    async fn zones(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut zones = Vec::new();
        for page in 0..MAX_PAGES {
            let offset = page * ZONES_PER_PAGE;
            let mut url = self.client.url(&call, "zones")?;
            url.query_pairs_mut()
                .append_pair("limit", &ZONES_PER_PAGE.to_string())
                .append_pair("offset", &offset.to_string());
            let reply: ZonePage = self
                .client
                .json(&call, |http| self.request(http, Method::GET, &url, None))
                .await?;
            if let Some(error) = reply.error.filter(|e| !e.is_empty()) {
                return Err(self.client.failed(&call, error));
            }
            let count = reply.zones.len() as u64;
            zones.extend(reply.zones.into_iter().map(|z| z.name));
            let total = reply.total_amount.unwrap_or(u64::MAX);
            if count < ZONES_PER_PAGE || offset + count >= total {
                return Ok(zones);
            }
        }
        Err(self
            .client
            .failed(&call, format!("more than {MAX_PAGES} pages of zones")))
    }

    /// `zones/ZONE/NAME/TXT`: RRsets are named by their full name, without the final dot.
    fn rrset_url(&self, call: &Call<'_>, zone: &str, fqdn: &str) -> Result<Url, DnsError> {
        let mut url = self.client.url(call, "zones")?;
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .push(&names::bare(zone))
            .push(&names::bare(fqdn))
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

    /// Sends a change; a 2xx reply that still carries an `error` is a failure.
    async fn write(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<(), Failure> {
        let body = body.map(|b| b.to_string().into_bytes());
        let reply = self
            .client
            .send(call, |http| {
                self.request(http, method.clone(), url, body.as_deref())
            })
            .await?;
        match serde_json::from_slice::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|b| b.error)
            .filter(|e| !e.is_empty())
        {
            Some(error) => Err(Failure {
                status: Some(reply.status),
                body: reply.body,
                message: error,
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl DnsProvider for Gcore {
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
        let url = self.rrset_url(&call, zone, &record.fqdn)?;
        let _changing = self.changing.lock().await;
        let ttl = record.ttl.as_secs().min(MAX_TTL);
        let mut refused = None;
        loop {
            let Some(rrset) = self.read(&call, &url).await? else {
                if let Some(failure) = refused {
                    return Err(self.client.error(&call, failure));
                }
                let body = json!({"ttl": ttl, "resource_records": [new_record(&record.value)]});
                match self.write(&call, Method::POST, &url, Some(&body)).await {
                    Ok(()) => break,
                    // Gcore does not document how it refuses to create an RRset that exists
                    // (another order made it since it was read): any refusal that is not about
                    // credentials is checked by reading the RRset again.
                    Err(failure)
                        if failure.status.is_some_and(|s| {
                            s.is_client_error()
                                && s != StatusCode::UNAUTHORIZED
                                && s != StatusCode::FORBIDDEN
                        }) =>
                    {
                        refused = Some(failure);
                        continue;
                    }
                    Err(failure) => return Err(self.client.error(&call, failure)),
                }
            };
            if rrset
                .resource_records
                .iter()
                .any(|r| Rrset::holds(r, &record.value))
            {
                return Ok(());
            }
            let mut records = rrset.resource_records.clone();
            records.push(new_record(&record.value));
            // The RRset's TTL is shared by its values: the existing one stays.
            let body = rrset.body(records, rrset.ttl.unwrap_or(ttl));
            self.write(&call, Method::PUT, &url, Some(&body))
                .await
                .map_err(|f| self.client.error(&call, f))?;
            break;
        }
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
        let (gone, kept): (Vec<_>, Vec<_>) = rrset
            .resource_records
            .iter()
            .cloned()
            .partition(|r| Rrset::holds(r, &record.value));
        if gone.is_empty() {
            return Ok(());
        }
        let result = if kept.is_empty() {
            // Deleting the RRset, not writing an empty one; gone already is as good.
            match self.write(&call, Method::DELETE, &url, None).await {
                Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Ok(()),
                other => other,
            }
        } else {
            let ttl = rrset.ttl.unwrap_or(record.ttl.as_secs().min(MAX_TTL));
            self.write(&call, Method::PUT, &url, Some(&rrset.body(kept, ttl)))
                .await
        };
        result.map_err(|f| self.client.error(&call, f))?;
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

/// The `error` of a Gcore error body.
fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()?
        .error
        .filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_their_content() {
        let record = new_record("abc");
        assert!(Rrset::holds(&record, "abc"));
        assert!(!Rrset::holds(&record, "abcd"));
        let quoted = json!({"content": ["\"abc\""]});
        assert!(Rrset::holds(quoted.as_object().unwrap(), "abc"));
        let empty = Map::new();
        assert!(!Rrset::holds(&empty, "abc"));
    }

    #[test]
    fn error_bodies_are_read() {
        assert_eq!(
            error_message(br#"{"error":"zone not found"}"#).as_deref(),
            Some("zone not found")
        );
        assert_eq!(error_message(br#"{"error":""}"#), None);
        assert_eq!(error_message(b"<html>"), None);
    }
}

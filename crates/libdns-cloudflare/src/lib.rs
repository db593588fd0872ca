//! `libdns.cloudflare`: publishes dns-01 TXT records through the Cloudflare v4 API with an API
//! token (`Authorization: Bearer`), as maddy's module of the same name:
//!
//! ```text
//! dns cloudflare {
//!     api_token {env:CLOUDFLARE_TOKEN}
//! }
//! ```
//!
//! The token needs `Zone:Read` and `DNS:Edit` on the zones. It only adds and removes single TXT
//! records, and never logs the token.

use async_trait::async_trait;
use cloudflare::endpoints::dns::dns::{
    CreateDnsRecord, CreateDnsRecordParams, DeleteDnsRecord, DnsContent, ListDnsRecords,
    ListDnsRecordsParams,
};
use cloudflare::endpoints::zones::zone::{ListZones, ListZonesParams};
use cloudflare::framework::endpoint::RequestBody;
use cloudflare::framework::endpoint::spec::EndpointSpec;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://api.cloudflare.com/client/v4/";

const PROVIDER: &str = "cloudflare";
/// Cloudflare's largest page for zones; dns_records allow more, zones do not.
const ZONES_PER_PAGE: u32 = 50;
const RECORDS_PER_PAGE: u32 = 100;
/// Cloudflare accepts TTLs from 60 s (30 s on Enterprise plans) up to a day; 1 means "auto".
const TTL_RANGE: (u64, u64) = (60, 86_400);

/// Error codes of Cloudflare's replies: the record exists (81057, 81058 identical record),
/// the record is gone (81044), credentials refused (9109 invalid token, 10000
/// authentication error, 6003 invalid headers).
const CODES_EXISTS: [u32; 2] = [81_057, 81_058];
const CODES_GONE: [u32; 1] = [81_044];
const CODES_AUTH: [u32; 4] = [9_109, 10_000, 6_003, 6_111];

/// Registers `libdns.cloudflare`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.cloudflare",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Cloudflare (API token)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| block.custom("api_token", Secret::from_node).required(),
        |token, options| Cloudflare::new(token, &options),
    )
}

/// The Cloudflare API with one token.
#[derive(Debug)]
pub struct Cloudflare {
    client: ApiClient,
    token: Secret,
}

/// The envelope of every reply.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    page: u32,
    #[serde(default)]
    total_pages: u32,
}

#[derive(Debug, Deserialize)]
struct ApiErrors {
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    content: String,
}

impl Cloudflare {
    pub fn new(token: Secret, options: &HttpOptions) -> Result<Cloudflare, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(Cloudflare { client, token })
    }

    /// Sends one of the `cloudflare` crate's endpoints; the reply's `result` and paging.
    async fn call<E, T>(&self, call: &Call<'_>, endpoint: &E) -> Result<Envelope<T>, DnsError>
    where
        E: EndpointSpec,
        T: for<'de> Deserialize<'de>,
    {
        let reply = self
            .send(call, endpoint)
            .await
            .map_err(|refusal| refusal.into_error(&self.client, call))?;
        self.client.decode(call, &reply)
    }

    async fn send<E: EndpointSpec>(
        &self,
        call: &Call<'_>,
        endpoint: &E,
    ) -> Result<Vec<u8>, Refusal> {
        let mut url = self.client.url(call, &endpoint.path())?;
        url.set_query(endpoint.query().as_deref());
        let body = match endpoint.body() {
            Some(RequestBody::Json(json)) => Some(json),
            Some(_) => return Err(self.client.failed(call, "unsupported request body").into()),
            None => None,
        };
        let method = endpoint.method();
        let failure = match self
            .client
            .send(call, |http| {
                let request = http
                    .request(method.clone(), url.clone())
                    .bearer_auth(self.token.expose());
                match &body {
                    Some(json) => request
                        .header("content-type", "application/json")
                        .body(json.clone()),
                    None => request,
                }
            })
            .await
        {
            Ok(reply) => return Ok(reply.body.to_vec()),
            Err(failure) => failure,
        };
        let codes = error_codes(&failure.body);
        Err(if codes.iter().any(|c| CODES_AUTH.contains(c)) {
            Refusal::Error(self.client.unauthorized(call, failure.message))
        } else if codes.iter().any(|c| CODES_EXISTS.contains(c)) {
            Refusal::Exists
        } else if codes.iter().any(|c| CODES_GONE.contains(c))
            || failure.status.is_some_and(|s| s.as_u16() == 404)
        {
            Refusal::Gone
        } else {
            Refusal::Error(self.client.error(call, failure))
        })
    }

    async fn zones(&self) -> Result<Vec<Zone>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut zones = Vec::new();
        let mut page = 1;
        loop {
            let endpoint = ListZones {
                params: ListZonesParams {
                    page: Some(page),
                    per_page: Some(ZONES_PER_PAGE),
                    ..Default::default()
                },
            };
            let reply: Envelope<Vec<Zone>> = self.call(&call, &endpoint).await?;
            zones.extend(reply.result.unwrap_or_default());
            match reply.result_info {
                Some(info) if info.page < info.total_pages => page = info.page + 1,
                _ => return Ok(zones),
            }
        }
    }

    async fn zone_id(&self, zone: &str) -> Result<String, DnsError> {
        self.zones()
            .await?
            .into_iter()
            .find(|z| names::bare(&z.name) == names::bare(zone))
            .map(|z| z.id)
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: zone.into(),
            })
    }

    /// The TXT records of `fqdn` with the content `value` in the zone with this id.
    async fn txt_records(
        &self,
        call: &Call<'_>,
        zone_id: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let mut records = Vec::new();
        let mut page = 1;
        loop {
            let endpoint = ListDnsRecords {
                zone_identifier: zone_id,
                params: ListDnsRecordsParams {
                    // Serialised as `type=TXT&content=VALUE`: the API filters on both.
                    record_type: Some(DnsContent::TXT {
                        content: value.to_owned(),
                    }),
                    name: Some(names::bare(fqdn)),
                    page: Some(page),
                    per_page: Some(RECORDS_PER_PAGE),
                    ..Default::default()
                },
            };
            let reply: Envelope<Vec<Record>> = self.call(call, &endpoint).await?;
            records.extend(reply.result.unwrap_or_default());
            match reply.result_info {
                Some(info) if info.page < info.total_pages => page = info.page + 1,
                _ => return Ok(records),
            }
        }
    }
}

/// A call the API refused, sorted by what the caller makes of it.
enum Refusal {
    /// The record exists already: success for a create.
    Exists,
    /// The record is gone: success for a delete.
    Gone,
    Error(DnsError),
}

impl From<DnsError> for Refusal {
    fn from(error: DnsError) -> Refusal {
        Refusal::Error(error)
    }
}

impl Refusal {
    fn into_error(self, client: &ApiClient, call: &Call<'_>) -> DnsError {
        match self {
            Refusal::Exists => client.failed(call, "the record exists already"),
            Refusal::Gone => client.failed(call, "not found"),
            Refusal::Error(e) => e,
        }
    }
}

#[async_trait]
impl DnsProvider for Cloudflare {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let zones = self.zones().await?;
        names::longest_zone(fqdn, zones.iter().map(|z| z.name.as_str()))
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(zone).await?;
        let call = Call::new("create TXT record", zone);
        let name = names::bare(&record.fqdn);
        let endpoint = CreateDnsRecord {
            zone_identifier: &zone_id,
            params: CreateDnsRecordParams {
                ttl: Some(clamp_ttl(record.ttl.as_secs())),
                priority: None,
                proxied: None,
                name: &name,
                content: DnsContent::TXT {
                    content: record.value.clone(),
                },
            },
        };
        match self.send(&call, &endpoint).await {
            Ok(_) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
                Ok(())
            }
            // The same value is there already (a retried request that had gone through).
            Err(Refusal::Exists) => Ok(()),
            Err(refusal) => Err(refusal.into_error(&self.client, &call)),
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let zone_id = self.zone_id(zone).await?;
        let call = Call::new("delete TXT record", zone);
        let records = self
            .txt_records(&call, &zone_id, &record.fqdn, &record.value)
            .await?;
        for found in records
            .iter()
            .filter(|r| names::unquote_txt(&r.content) == record.value)
        {
            let endpoint = DeleteDnsRecord {
                zone_identifier: &zone_id,
                identifier: &found.id,
            };
            match self.send(&call, &endpoint).await {
                Ok(_) => {}
                Err(Refusal::Gone) => {}
                Err(refusal) => return Err(refusal.into_error(&self.client, &call)),
            }
        }
        Ok(())
    }
}

fn clamp_ttl(ttl: u64) -> u32 {
    u32::try_from(ttl.clamp(TTL_RANGE.0, TTL_RANGE.1)).unwrap_or(120)
}

fn error_codes(body: &[u8]) -> Vec<u32> {
    serde_json::from_slice::<ApiErrors>(body)
        .map(|e| e.errors.into_iter().map(|e| e.code).collect())
        .unwrap_or_default()
}

/// `message (code N)` of each error in a Cloudflare error body.
fn error_message(body: &[u8]) -> Option<String> {
    let errors = serde_json::from_slice::<ApiErrors>(body).ok()?.errors;
    if errors.is_empty() {
        return None;
    }
    Some(
        errors
            .iter()
            .map(|e| format!("{} (code {})", e.message, e.code))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

//! `libdns.powerdns`: publishes dns-01 TXT records through the HTTP API of a PowerDNS
//! Authoritative Server (`/api/v1`, header `X-API-Key`), with the directive names of the
//! libdns/Caddy module (`endpoint` standing for their `server_url`):
//!
//! ```text
//! dns powerdns {
//!     endpoint  https://ns1.example.org:8081
//!     api_token {env:PDNS_API_KEY}
//!     server_id localhost
//! }
//! ```
//!
//! The key is the server's `api-key` setting (it grants the whole API: PowerDNS has no scopes);
//! the server needs `api=yes` and a `webserver-allowfrom` that lets madmail in. `endpoint` may
//! name the server (`/api/v1` is appended) or the API itself (`.../api/v1`).
//!
//! PowerDNS changes whole RRsets: to add a value the TXT RRset is read, the value appended and
//! the set written back (`REPLACE`, keeping the set's TTL and every other value); to remove one
//! the set is written back without it, and deleted only when it held nothing else. Those
//! read-modify-writes are serialised within this provider. It only changes the TXT RRset of the
//! challenge name, and never logs the key.

use async_trait::async_trait;
use madmail_config::{Error, Node};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::Method;
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::decode::single;
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// PowerDNS's webserver listens on 127.0.0.1:8081 unless configured otherwise; there is no
/// public API. `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8081/api/v1/";

/// The authoritative server's only server id.
pub const DEFAULT_SERVER_ID: &str = "localhost";

const PROVIDER: &str = "powerdns";
/// A TXT record's character-strings hold at most 255 bytes each.
const TXT_STRING: usize = 255;

/// Registers `libdns.powerdns`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.powerdns",
    kind: Kind::Named,
    build,
    summary: "DNS provider: PowerDNS Authoritative Server (HTTP API)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let token = block.custom("api_token", Secret::from_node).required();
            let server_id = block
                .custom("server_id", non_empty)
                .default(DEFAULT_SERVER_ID.to_owned());
            Some((token?, server_id))
        },
        |(token, server_id), options| PowerDns::new(token, server_id, &options),
    )
}

fn non_empty(node: &Node) -> Result<String, Error> {
    let value = single(node)?;
    if value.trim().is_empty() {
        return Err(Error::at(
            node.arg_pos(0),
            format!("{} is empty", node.name),
        ));
    }
    Ok(value.to_owned())
}

/// One PowerDNS server's API with one key.
#[derive(Debug)]
pub struct PowerDns {
    client: ApiClient,
    token: Secret,
    server_id: String,
    /// Held across each read-modify-write of an RRset, so that two values presented at once
    /// (a wildcard and its apex) do not overwrite each other.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct Zone {
    /// Opaque (usually the name with its dot; unusual characters escaped as `=XX`): used as
    /// given in later URLs.
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct ZoneDetail {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

#[derive(Debug, Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<Record>,
}

/// A record as the API has it; other values of the set are written back as they were read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    /// Zone-file syntax: TXT data in quotes.
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// `{"error": "...", "errors": ["...", ...]}`.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    errors: Vec<String>,
}

impl PowerDns {
    /// A provider for the server `server_id` at `options.endpoint` (the server's URL, to which
    /// `/api/v1/` is appended, or the API's).
    pub fn new(
        token: Secret,
        server_id: impl Into<String>,
        options: &HttpOptions,
    ) -> Result<PowerDns, String> {
        let mut options = options.clone();
        if !options.endpoint.path().ends_with("/api/v1/") {
            let path = format!("{}api/v1/", options.endpoint.path());
            options.endpoint.set_path(&path);
        }
        let client = ApiClient::new(PROVIDER, &options)?.with_error_message(error_message);
        Ok(PowerDns {
            client,
            token,
            server_id: server_id.into(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// `servers/{server_id}/zones` followed by `segments`, each percent-encoded.
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
            .extend(["servers", &self.server_id, "zones"])
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn request(
        &self,
        http: &madmail_libdns_http::reqwest::Client,
        method: Method,
        url: &Url,
    ) -> madmail_libdns_http::reqwest::RequestBuilder {
        http.request(method, url.clone())
            .header("x-api-key", self.token.expose())
            // Without it PowerDNS answers errors in plain text.
            .header("accept", "application/json")
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call<'_>,
        url: &Url,
    ) -> Result<T, DnsError> {
        self.client
            .json(call, |http| self.request(http, Method::GET, url))
            .await
    }

    /// Every zone of the server (the API does not page this listing).
    async fn zones(&self, call: &Call<'_>, only: Option<&str>) -> Result<Vec<Zone>, DnsError> {
        let mut query = vec![("dnssec", "false")];
        let only = only.map(absolute);
        if let Some(zone) = &only {
            query.insert(0, ("zone", zone.as_str()));
        }
        let url = self.url(call, &[], &query)?;
        self.get(call, &url).await
    }

    /// The id of `zone`.
    async fn zone_id(&self, call: &Call<'_>, zone: &str) -> Result<String, DnsError> {
        // `?zone=` answers with that zone only (servers that ignore it list all of them).
        self.zones(call, Some(zone))
            .await?
            .into_iter()
            .find(|z| names::bare(&z.name) == names::bare(zone))
            .map(|z| z.id)
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: zone.into(),
            })
    }

    /// The TXT RRset of `fqdn` in the zone with this id, if there is one.
    async fn txt_rrset(
        &self,
        call: &Call<'_>,
        zone_id: &str,
        fqdn: &str,
    ) -> Result<Option<RrSet>, DnsError> {
        let name = absolute(fqdn);
        let url = self.url(
            call,
            &[zone_id],
            &[("rrset_name", &name), ("rrset_type", "TXT")],
        )?;
        let zone: ZoneDetail = self.get(call, &url).await?;
        // Servers before the filters existed send every RRset of the zone.
        Ok(zone.rrsets.into_iter().find(|r| {
            r.rtype.eq_ignore_ascii_case("TXT") && names::bare(&r.name) == names::bare(fqdn)
        }))
    }

    /// Sends one RRset change.
    async fn patch(
        &self,
        call: &Call<'_>,
        zone_id: &str,
        rrset: serde_json::Value,
    ) -> Result<(), DnsError> {
        let url = self.url(call, &[zone_id], &[])?;
        let body = json!({ "rrsets": [rrset] }).to_string();
        self.client
            .send(call, |http| {
                self.request(http, Method::PATCH, &url)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await
            .map(|_| ())
            .map_err(|failure| self.client.error(call, failure))
    }

    /// Whether the TXT RRset of `fqdn` holds `value` now (after a refused write).
    async fn holds(&self, call: &Call<'_>, zone_id: &str, fqdn: &str, value: &str) -> Option<bool> {
        let rrset = self.txt_rrset(call, zone_id, fqdn).await.ok()?;
        Some(rrset.is_some_and(|r| r.records.iter().any(|r| txt_value(&r.content) == value)))
    }
}

#[async_trait]
impl DnsProvider for PowerDns {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let zones = self.zones(&Call::new("list zones", "-"), None).await?;
        names::longest_zone(fqdn, zones.iter().map(|z| z.name.as_str()))
            .map(absolute)
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
        let _writing = self.writing.lock().await;
        let zone_id = self.zone_id(&call, zone).await?;
        let rrset = self.txt_rrset(&call, &zone_id, &record.fqdn).await?;
        // An RRset has one TTL: an existing set keeps its own, a new one gets the record's.
        let requested = u32::try_from(record.ttl.as_secs()).unwrap_or(u32::MAX);
        let (ttl, mut records) = match rrset {
            Some(set) => (set.ttl, set.records),
            None => (requested, Vec::new()),
        };
        if records
            .iter()
            .any(|r| txt_value(&r.content) == record.value)
        {
            return Ok(());
        }
        records.push(Record {
            content: quote_txt(&record.value),
            disabled: false,
        });
        let change = json!({
            "name": absolute(&record.fqdn),
            "type": "TXT",
            "ttl": ttl,
            "changetype": "REPLACE",
            "records": records,
        });
        match self.patch(&call, &zone_id, change).await {
            Ok(()) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value added");
                Ok(())
            }
            Err(e @ DnsError::Unauthorized { .. }) => Err(e),
            Err(e) => match self
                .holds(&call, &zone_id, &record.fqdn, &record.value)
                .await
            {
                Some(true) => Ok(()),
                _ => Err(e),
            },
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let _writing = self.writing.lock().await;
        let zone_id = self.zone_id(&call, zone).await?;
        let Some(rrset) = self.txt_rrset(&call, &zone_id, &record.fqdn).await? else {
            return Ok(());
        };
        let remaining: Vec<Record> = rrset
            .records
            .iter()
            .filter(|r| txt_value(&r.content) != record.value)
            .cloned()
            .collect();
        if remaining.len() == rrset.records.len() {
            return Ok(());
        }
        let change = if remaining.is_empty() {
            json!({"name": absolute(&record.fqdn), "type": "TXT", "changetype": "DELETE"})
        } else {
            json!({
                "name": absolute(&record.fqdn),
                "type": "TXT",
                "ttl": rrset.ttl,
                "changetype": "REPLACE",
                "records": remaining,
            })
        };
        match self.patch(&call, &zone_id, change).await {
            Ok(()) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT value removed");
                Ok(())
            }
            Err(e @ DnsError::Unauthorized { .. }) => Err(e),
            // Deleting a set that is gone may be refused (404/422) by some versions.
            Err(e) => match self
                .holds(&call, &zone_id, &record.fqdn, &record.value)
                .await
            {
                Some(false) => Ok(()),
                _ => Err(e),
            },
        }
    }
}

/// `name` lowercase with a trailing dot, as the API wants names.
fn absolute(name: &str) -> String {
    format!("{}.", names::bare(name))
}

/// A TXT value in zone-file syntax: quoted, `"` and `\` escaped, values longer than 255 bytes
/// split into several strings (PowerDNS refuses unquoted TXT content).
fn quote_txt(value: &str) -> String {
    if value.is_empty() {
        return names::quote_txt("");
    }
    let mut strings = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut end = rest.len().min(TXT_STRING);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        strings.push(names::quote_txt(&rest[..end]));
        rest = &rest[end..];
    }
    strings.join(" ")
}

/// The value of TXT content in zone-file syntax (its strings concatenated).
fn txt_value(content: &str) -> String {
    names::unquote_txt(content)
}

/// `error: errors...` of an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    match (error.error.is_empty(), error.errors.is_empty()) {
        (true, true) => None,
        (false, true) => Some(error.error),
        (true, false) => Some(error.errors.join("; ")),
        (false, false) => Some(format!("{}: {}", error.error, error.errors.join("; "))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn long_values_are_split_into_strings() {
        assert_eq!(quote_txt("abc"), "\"abc\"");
        assert_eq!(quote_txt(""), "\"\"");
        assert_eq!(quote_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let long = "x".repeat(300);
        let quoted = quote_txt(&long);
        assert_eq!(
            quoted,
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
        assert_eq!(txt_value(&quoted), long);
        // Never inside a character.
        let wide = "é".repeat(200);
        assert_eq!(txt_value(&quote_txt(&wide)), wide);
    }

    #[test]
    fn endpoints_get_the_api_path() {
        let make = |endpoint: &str| {
            let options =
                HttpOptions::with_endpoint(madmail_libdns_http::parse_endpoint(endpoint).unwrap());
            PowerDns::new(Secret::new("k"), "localhost", &options)
                .unwrap()
                .client
                .base()
                .to_string()
        };
        assert_eq!(
            make("http://127.0.0.1:8081"),
            "http://127.0.0.1:8081/api/v1/"
        );
        assert_eq!(
            make("https://ns1.example.org/pdns/"),
            "https://ns1.example.org/pdns/api/v1/"
        );
        assert_eq!(
            make("https://ns1.example.org/api/v1"),
            "https://ns1.example.org/api/v1/"
        );
        assert_eq!(make(DEFAULT_ENDPOINT), DEFAULT_ENDPOINT);
    }
}

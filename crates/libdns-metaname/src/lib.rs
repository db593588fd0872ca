//! `libdns.metaname`: publishes dns-01 TXT records through Metaname's JSON-RPC API 1.1
//! (`dns_zone`, `create_dns_record`, `delete_dns_record`), as maddy's module of the same name:
//!
//! ```text
//! dns metaname {
//!     account_ref {env:METANAME_ACCOUNT}
//!     api_key {env:METANAME_API_KEY}
//! }
//! ```
//!
//! The account reference (four characters) and the API key come from Metaname's control panel;
//! the key can do whatever the account can (purchases included), and DNS hosting must be
//! enabled for the domain. Both travel as the first two parameters of every call, inside the
//! request body, which is therefore never logged.
//!
//! Records are independent (no record sets): adding a value creates one TXT record unless the
//! same value is there already, removing one deletes the records with exactly that name and
//! value. It never touches other records, and never logs the key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The JSON-RPC endpoint; `endpoint` replaces it (`https://test.metaname.net/api/1.1` is
/// Metaname's test system). Every call is a POST to exactly this URL.
pub const DEFAULT_ENDPOINT: &str = "https://metaname.net/api/1.1";

const PROVIDER: &str = "metaname";
/// "minimum_ttl = 60 # Specified by Metaname" (Metaname's own certbot plugin). No maximum is
/// documented; a day is the most a challenge record could want.
const TTL_RANGE: (u64, u64) = (60, 86_400);

/// Metaname's error codes (sent negative; compared by absolute value, as its clients do).
const CODE_AUTHENTICATION_FAILED: i64 = 1;
const CODE_DNS_NOT_ENABLED: i64 = 12;
const CODE_RECORD_NOT_FOUND: i64 = 17;
const CODE_UPSTREAM_ERROR: i64 = 18;
const CODE_INTERNAL_ERROR: i64 = 32_603;
/// What `dns_zone` answers for a name that is not one of the account's zones: invalid domain
/// name (4), domain name not found (5), invalid data (20), invalid zone name (21).
const CODES_NOT_A_ZONE: [i64; 4] = [4, 5, 20, 21];
/// The first wait before repeating a call that failed with a transient error in a 200 reply.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Registers `libdns.metaname`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.metaname",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Metaname (account reference and API key)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let api_key = block.custom("api_key", Secret::from_node).required();
            let account_ref = block.custom("account_ref", Secret::from_node).required();
            Some((api_key?, account_ref?))
        },
        |(api_key, account_ref), options| Metaname::new(account_ref, api_key, &options),
    )
}

/// The Metaname API with one account reference and API key.
#[derive(Debug)]
pub struct Metaname {
    client: ApiClient,
    /// The endpoint as configured: [`HttpOptions`] ends base URLs with `/`, but this is one
    /// resource, not a directory, so the slash comes off again.
    url: Url,
    account_ref: Secret,
    api_key: Secret,
    retries: u32,
    next_id: AtomicU64,
}

/// One record of `dns_zone`'s reply.
#[derive(Debug, Deserialize)]
struct Record {
    reference: String,
    /// Relative to the zone (`_acme-challenge.mail`); `@` or empty for the apex.
    #[serde(default)]
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    data: String,
}

/// The record `create_dns_record` takes: every key present, `aux` null for TXT.
#[derive(Debug, Serialize)]
struct NewRecord<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    rtype: &'a str,
    aux: Option<u32>,
    ttl: u64,
    data: &'a str,
}

#[derive(Debug, Deserialize)]
struct RpcReply {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Debug, Clone, Deserialize)]
struct RpcError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Value,
}

impl RpcError {
    fn is(&self, code: i64) -> bool {
        self.code.abs() == code
    }

    fn is_transient(&self) -> bool {
        self.is(CODE_INTERNAL_ERROR) || self.is(CODE_UPSTREAM_ERROR)
    }

    fn describe(&self) -> String {
        let mut text = format!("{} (code {})", self.message, self.code);
        match &self.data {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => text.push_str(&format!(": {s}")),
            other => text.push_str(&format!(": {other}")),
        }
        text
    }
}

/// How a call failed.
enum Failed {
    /// The API answered with a JSON-RPC error.
    Api(RpcError),
    /// Anything else, ready to report.
    Other(DnsError),
}

impl From<DnsError> for Failed {
    fn from(error: DnsError) -> Failed {
        Failed::Other(error)
    }
}

impl Metaname {
    pub fn new(
        account_ref: Secret,
        api_key: Secret,
        options: &HttpOptions,
    ) -> Result<Metaname, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        let mut url = options.endpoint.clone();
        let path = url.path().to_owned();
        if path.len() > 1 {
            url.set_path(path.trim_end_matches('/'));
        }
        Ok(Metaname {
            client,
            url,
            account_ref,
            api_key,
            retries: options.retries,
            next_id: AtomicU64::new(1),
        })
    }

    /// Calls `method` with the credentials and then `args` as its parameters, once.
    async fn call_once(
        &self,
        call: &Call<'_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Failed> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = vec![
            Value::from(self.account_ref.expose()),
            Value::from(self.api_key.expose()),
        ];
        params.extend_from_slice(args);
        let body = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .map_err(|e| {
            self.client
                .failed(call, format!("encoding the request: {e}"))
        })?;
        let reply = self
            .client
            .send(call, |http| {
                http.post(self.url.clone())
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|f| self.client.error(call, f))?;
        let reply: RpcReply = self.client.decode(call, &reply.body)?;
        if let Some(error) = reply.error {
            return Err(Failed::Api(error));
        }
        if reply.id.as_u64() != Some(id) {
            return Err(self
                .client
                .failed(
                    call,
                    format!("the reply is for request {}, not {id}", reply.id),
                )
                .into());
        }
        Ok(reply.result)
    }

    /// [`Metaname::call_once`], repeated after transient errors (internal and upstream
    /// errors, which the API is known to answer now and then to good calls): only for calls
    /// that can be repeated without harm.
    async fn call_idempotent(
        &self,
        call: &Call<'_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Failed> {
        let mut attempt = 0;
        loop {
            match self.call_once(call, method, args).await {
                Err(Failed::Api(error)) if error.is_transient() && attempt < self.retries => {
                    self.pause(call, &error, attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn pause(&self, call: &Call<'_>, error: &RpcError, attempt: u32) {
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << attempt.min(4))
            .min(Duration::from_secs(8));
        tracing::debug!(
            provider = PROVIDER,
            operation = call.operation,
            zone = call.zone,
            error = %error.describe(),
            wait_ms = wait.as_millis() as u64,
            "Metaname call failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }

    /// A JSON-RPC error as a [`DnsError`]: failed authentication is [`DnsError::Unauthorized`].
    fn api_error(&self, call: &Call<'_>, error: &RpcError) -> DnsError {
        if error.is(CODE_AUTHENTICATION_FAILED) {
            self.client.unauthorized(call, error.describe())
        } else if error.is(CODE_DNS_NOT_ENABLED) {
            self.client.failed(
                call,
                format!(
                    "{}; enable DNS hosting for the domain in Metaname's control panel",
                    error.describe()
                ),
            )
        } else {
            self.client.failed(call, error.describe())
        }
    }

    fn error(&self, call: &Call<'_>, failed: Failed) -> DnsError {
        match failed {
            Failed::Api(error) => self.api_error(call, &error),
            Failed::Other(error) => error,
        }
    }

    fn decode<T: DeserializeOwned>(&self, call: &Call<'_>, result: Value) -> Result<T, DnsError> {
        serde_json::from_value(result).map_err(|e| {
            self.client
                .failed(call, format!("unexpected reply from the API: {e}"))
        })
    }

    /// The records of `zone` (a name without trailing dot).
    async fn records(&self, call: &Call<'_>, zone: &str) -> Result<Vec<Record>, Failed> {
        let result = self
            .call_idempotent(call, "dns_zone", &[Value::from(zone)])
            .await?;
        Ok(self.decode(call, result)?)
    }

    /// The references of the TXT records of `fqdn` holding `value`.
    async fn matching(
        &self,
        call: &Call<'_>,
        zone: &str,
        fqdn: &str,
        value: &str,
    ) -> Result<Vec<String>, DnsError> {
        let records = self
            .records(call, zone)
            .await
            .map_err(|f| self.error(call, f))?;
        let relative = names::relative(fqdn, zone);
        Ok(records
            .into_iter()
            .filter(|r| {
                r.rtype.eq_ignore_ascii_case("TXT")
                    && record_name(&r.name, zone) == relative
                    && (r.data == value || names::unquote_txt(&r.data) == value)
            })
            .map(|r| r.reference)
            .collect())
    }
}

#[async_trait]
impl DnsProvider for Metaname {
    fn name(&self) -> &str {
        PROVIDER
    }

    /// The API cannot list zones ("there is no method to return a list of hosted zones", says
    /// Metaname's certbot plugin; `dns_zones` has no documented reply), so each enclosing name
    /// is tried with `dns_zone`, longest first, as that plugin does.
    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = names::bare(fqdn);
        let labels: Vec<&str> = name.split('.').collect();
        // A zone has at least two labels: no account holds a top-level domain.
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let call = Call::new("find zone", &candidate);
            match self.records(&call, &candidate).await {
                Ok(_) => return Ok(format!("{candidate}.")),
                Err(Failed::Api(error)) if CODES_NOT_A_ZONE.iter().any(|c| error.is(*c)) => {}
                Err(failed) => return Err(self.error(&call, failed)),
            }
        }
        Err(DnsError::NoZone {
            provider: PROVIDER.into(),
            name: fqdn.into(),
        })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        let zone_name = names::bare(zone);
        let name = names::relative_or_at(&record.fqdn, &zone_name);
        let ttl = record.ttl.as_secs().clamp(TTL_RANGE.0, TTL_RANGE.1);
        let new = NewRecord {
            name: &name,
            rtype: "TXT",
            aux: None,
            ttl,
            data: &record.value,
        };
        let new = serde_json::to_value(&new).map_err(|e| {
            self.client
                .failed(&call, format!("encoding the record: {e}"))
        })?;
        let mut attempt = 0;
        loop {
            // Records are not unique: a value already there (a retried call that had gone
            // through) is not created twice.
            let existing = self
                .matching(&call, &zone_name, &record.fqdn, &record.value)
                .await?;
            if !existing.is_empty() {
                return Ok(());
            }
            let args = [Value::from(zone_name.as_str()), new.clone()];
            match self.call_once(&call, "create_dns_record", &args).await {
                Ok(reference) => {
                    tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, reference = %reference, "TXT record created");
                    return Ok(());
                }
                // The record may have been created anyway: look again before repeating.
                Err(Failed::Api(error)) if error.is_transient() && attempt < self.retries => {
                    self.pause(&call, &error, attempt).await;
                    attempt += 1;
                }
                Err(failed) => return Err(self.error(&call, failed)),
            }
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let zone_name = names::bare(zone);
        let references = self
            .matching(&call, &zone_name, &record.fqdn, &record.value)
            .await?;
        for reference in references {
            let args = [Value::from(zone_name.as_str()), Value::from(reference)];
            match self
                .call_idempotent(&call, "delete_dns_record", &args)
                .await
            {
                Ok(_) => {}
                // Gone already (deleted by someone else meanwhile).
                Err(Failed::Api(error)) if error.is(CODE_RECORD_NOT_FOUND) => {}
                Err(failed) => return Err(self.error(&call, failed)),
            }
        }
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record removed");
        Ok(())
    }
}

/// A record name of `dns_zone`'s reply relative to `zone` (`""` for the apex); absolute
/// names (with a trailing dot), which the API accepts on creation, are made relative too.
fn record_name(name: &str, zone: &str) -> String {
    let name = name.trim();
    if name.is_empty() || name == "@" {
        String::new()
    } else if name.ends_with('.') {
        names::relative(name, zone)
    } else {
        name.to_ascii_lowercase()
    }
}

/// The JSON-RPC error of a body that came with an HTTP error status.
fn error_message(body: &[u8]) -> Option<String> {
    let reply: RpcReply = serde_json::from_slice(body).ok()?;
    reply.error.map(|e| e.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_relative_to_the_zone() {
        assert_eq!(record_name("@", "example.nz"), "");
        assert_eq!(record_name("", "example.nz"), "");
        assert_eq!(
            record_name("_acme-challenge.Mail", "example.nz"),
            "_acme-challenge.mail"
        );
        assert_eq!(
            record_name("_acme-challenge.example.nz.", "example.nz"),
            "_acme-challenge"
        );
    }

    #[test]
    fn errors_are_described_with_code_and_data() {
        let error: RpcError = serde_json::from_str(
            r#"{"code":-32602,"message":"Invalid params","data":"Wrong number of params"}"#,
        )
        .unwrap();
        assert_eq!(
            error.describe(),
            "Invalid params (code -32602): Wrong number of params"
        );
        assert!(!error.is_transient());
        let error: RpcError =
            serde_json::from_str(r#"{"code":-18,"message":"Upstream error"}"#).unwrap();
        assert!(error.is_transient());
        assert_eq!(error.describe(), "Upstream error (code -18)");
    }
}

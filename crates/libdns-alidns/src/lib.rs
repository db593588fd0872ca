//! `libdns.alidns`: publishes dns-01 TXT records through Alibaba Cloud DNS (the RPC API of
//! version 2015-01-09, every call signed with HMAC-SHA1), as maddy's module of the same name:
//!
//! ```text
//! dns alidns {
//!     key_id {env:ALIDNS_KEY_ID}
//!     key_secret {env:ALIDNS_KEY_SECRET}
//! }
//! ```
//!
//! The AccessKey (preferably a RAM user's) needs `alidns:DescribeDomains`,
//! `alidns:DescribeDomainRecords`, `alidns:AddDomainRecord` and `alidns:DeleteDomainRecord`
//! (or the policy `AliyunDNSFullAccess`). It only adds and removes single TXT records (Alibaba
//! keeps each value as a record of its own), and never logs the AccessKey secret.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, Failure, HttpOptions, Secret, build_provider, names};
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;

/// The public API (the same for every region); `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://alidns.aliyuncs.com/";

const PROVIDER: &str = "alidns";
const API_VERSION: &str = "2015-01-09";
/// The largest pages the API gives: 100 domains, 500 records.
const DOMAINS_PER_PAGE: u64 = 100;
const RECORDS_PER_PAGE: u64 = 500;
/// The TTLs of the free edition; paid editions allow shorter ones, but the plan is not known
/// here, and 600 s does not slow a challenge down (the value is new, nothing caches it).
const TTL_RANGE: (u64, u64) = (600, 86_400);
/// The first wait after a throttled call (a 400 reply, without `Retry-After`, so the
/// client's own retries do not cover it); it doubles with each retry.
const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(10);

/// Error codes meaning the AccessKey was refused or lacks a permission.
const CODES_AUTH: [&str; 7] = [
    "InvalidAccessKeyId",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "Forbidden.RAM",
    "Forbidden",
];
/// An identical record exists (success for a create).
const CODE_EXISTS: &str = "DomainRecordDuplicate";
/// The record is gone (success for a delete).
const CODE_GONE: &str = "DomainRecordNotBelongToUser";

/// Registers `libdns.alidns`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.alidns",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Alibaba Cloud DNS (AccessKey)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let key_id = block.custom("key_id", Secret::from_node).required();
            let key_secret = block.custom("key_secret", Secret::from_node).required();
            Some((key_id?, key_secret?))
        },
        |(key_id, key_secret), options| AliDns::new(key_id, key_secret, &options),
    )
}

/// Alibaba Cloud DNS with one AccessKey.
#[derive(Debug)]
pub struct AliDns {
    client: ApiClient,
    key_id: Secret,
    key_secret: Secret,
    retries: u32,
    /// Random per provider; with `nonces` it makes every request's `SignatureNonce` unique
    /// (a nonce seen before is refused).
    nonce_base: u128,
    nonces: AtomicU64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Paging {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    page_number: u64,
    #[serde(default)]
    page_size: u64,
}

impl Paging {
    fn has_more(&self, got: usize) -> bool {
        got > 0 && self.page_number.saturating_mul(self.page_size) < self.total_count
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DomainsReply {
    #[serde(flatten)]
    paging: Paging,
    #[serde(default)]
    domains: DomainList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DomainList {
    #[serde(default)]
    domain: Vec<Domain>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Domain {
    domain_name: String,
    /// The ASCII form of an internationalised name (empty otherwise).
    #[serde(default)]
    puny_code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordsReply {
    #[serde(flatten)]
    paging: Paging,
    #[serde(default)]
    domain_records: RecordList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordList {
    #[serde(default)]
    record: Vec<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_id: String,
    #[serde(rename = "RR")]
    rr: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(default)]
    value: String,
}

/// A call the API refused, sorted by what the caller makes of it.
enum Refusal {
    Exists,
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
            Refusal::Gone => client.failed(call, "the record does not exist"),
            Refusal::Error(e) => e,
        }
    }
}

impl AliDns {
    pub fn new(
        key_id: Secret,
        key_secret: Secret,
        options: &HttpOptions,
    ) -> Result<AliDns, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        let mut random = [0u8; 16];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| "no random numbers for request nonces".to_string())?;
        Ok(AliDns {
            client,
            key_id,
            key_secret,
            retries: options.retries,
            nonce_base: u128::from_be_bytes(random),
            nonces: AtomicU64::new(0),
        })
    }

    /// A `SignatureNonce` never used before, shaped as a UUID like those of Alibaba's SDKs.
    fn nonce(&self) -> String {
        let n = self
            .nonce_base
            .wrapping_add(u128::from(self.nonces.fetch_add(1, Ordering::Relaxed)));
        let hex = format!("{n:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// The signed form of one call: the common parameters, `params`, and `Signature`.
    fn signed_form(&self, action: &str, params: &[(&str, String)]) -> String {
        let mut all: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        for (name, value) in [
            ("Action", action.to_owned()),
            ("Version", API_VERSION.to_owned()),
            ("Format", "JSON".to_owned()),
            ("AccessKeyId", self.key_id.expose().to_owned()),
            ("SignatureMethod", "HMAC-SHA1".to_owned()),
            ("SignatureVersion", "1.0".to_owned()),
            ("SignatureNonce", self.nonce()),
            ("Timestamp", timestamp(time::OffsetDateTime::now_utc())),
        ] {
            all.insert(name.to_owned(), value);
        }
        let canonical = canonical_query(&all);
        let signature = sign(
            self.key_secret.expose(),
            &string_to_sign("POST", &canonical),
        );
        format!("{canonical}&Signature={}", percent_encode(&signature))
    }

    /// Sends one action (`POST /`, the parameters as a form) and returns the reply's body.
    /// A throttled call is retried after a pause, as often as `retries` allows.
    async fn action(
        &self,
        call: &Call<'_>,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<u8>, Refusal> {
        let url = self.client.base().clone();
        let mut throttled = 0;
        loop {
            let result = self
                .client
                .send(call, |http| {
                    // Signed anew for each attempt: a nonce may be used once only.
                    http.post(url.clone())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("accept", "application/json")
                        .body(self.signed_form(action, params))
                })
                .await;
            let failure = match result {
                Ok(reply) => return Ok(reply.body.to_vec()),
                Err(failure) => failure,
            };
            let code = error_code(&failure.body).unwrap_or_default();
            if code.starts_with("Throttling") && throttled < self.retries {
                let wait = THROTTLE_BACKOFF
                    .saturating_mul(1 << throttled.min(10))
                    .min(MAX_THROTTLE_BACKOFF);
                tracing::debug!(
                    provider = PROVIDER,
                    operation = call.operation,
                    zone = call.zone,
                    code,
                    wait_ms = wait.as_millis() as u64,
                    "throttled; retrying"
                );
                tokio::time::sleep(wait).await;
                throttled += 1;
                continue;
            }
            return Err(self.refusal(call, &code, failure));
        }
    }

    fn refusal(&self, call: &Call<'_>, code: &str, failure: Failure) -> Refusal {
        if CODES_AUTH.contains(&code) {
            Refusal::Error(self.client.unauthorized(call, failure.message))
        } else if code == CODE_EXISTS {
            Refusal::Exists
        } else if code == CODE_GONE {
            Refusal::Gone
        } else {
            Refusal::Error(self.client.error(call, failure))
        }
    }

    async fn decoded<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call<'_>,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<T, DnsError> {
        let body = self
            .action(call, action, params)
            .await
            .map_err(|r| r.into_error(&self.client, call))?;
        self.client.decode(call, &body)
    }

    /// Every domain of the account (`DescribeDomains`, page by page).
    async fn domains(&self) -> Result<Vec<Domain>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut domains = Vec::new();
        let mut page = 1;
        loop {
            let params = [
                ("PageNumber", page.to_string()),
                ("PageSize", DOMAINS_PER_PAGE.to_string()),
            ];
            let reply: DomainsReply = self.decoded(&call, "DescribeDomains", &params).await?;
            let got = reply.domains.domain.len();
            domains.extend(reply.domains.domain);
            if !reply.paging.has_more(got) {
                return Ok(domains);
            }
            page += 1;
        }
    }

    /// The TXT records of `rr` in `zone` with the value `value` (`DescribeDomainRecords`,
    /// whose keyword filters are fuzzy: the exact match is made here).
    async fn find(
        &self,
        call: &Call<'_>,
        zone: &str,
        rr: &str,
        value: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let mut found = Vec::new();
        let mut page = 1;
        loop {
            let params = [
                ("DomainName", zone.to_owned()),
                ("RRKeyWord", rr.to_owned()),
                ("TypeKeyWord", "TXT".to_owned()),
                // LIKE and EXACT search `KeyWord` only; COMBINATION applies the filters above.
                ("SearchMode", "COMBINATION".to_owned()),
                ("PageNumber", page.to_string()),
                ("PageSize", RECORDS_PER_PAGE.to_string()),
            ];
            let reply: RecordsReply = self.decoded(call, "DescribeDomainRecords", &params).await?;
            let got = reply.domain_records.record.len();
            found.extend(
                reply.domain_records.record.into_iter().filter(|r| {
                    r.rtype == "TXT" && r.rr.eq_ignore_ascii_case(rr) && r.value == value
                }),
            );
            if !reply.paging.has_more(got) {
                return Ok(found);
            }
            page += 1;
        }
    }
}

#[async_trait]
impl DnsProvider for AliDns {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let domains = self.domains().await?;
        // An internationalised domain matches by its ASCII form, which is then the zone's name
        // (ACME names are ASCII).
        let zone_names = domains.iter().flat_map(|d| {
            std::iter::once(d.domain_name.as_str())
                .chain(Some(d.puny_code.as_str()).filter(|p| !p.is_empty()))
        });
        names::longest_zone(fqdn, zone_names)
            .map(|zone| format!("{}.", names::bare(zone)))
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        let rr = relative(&self.client, &call, zone, &record.fqdn)?;
        let params = [
            ("DomainName", names::bare(zone)),
            ("RR", rr),
            ("Type", "TXT".to_owned()),
            ("Value", record.value.clone()),
            (
                "TTL",
                record
                    .ttl
                    .as_secs()
                    .clamp(TTL_RANGE.0, TTL_RANGE.1)
                    .to_string(),
            ),
        ];
        match self.action(&call, "AddDomainRecord", &params).await {
            Ok(_) => {
                tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record created");
                Ok(())
            }
            // The same value is there already (perhaps from an attempt whose reply was lost).
            Err(Refusal::Exists) => Ok(()),
            Err(refusal) => Err(refusal.into_error(&self.client, &call)),
        }
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let rr = relative(&self.client, &call, zone, &record.fqdn)?;
        let found = self
            .find(&call, &names::bare(zone), &rr, &record.value)
            .await?;
        for r in found {
            let params = [("RecordId", r.record_id)];
            match self.action(&call, "DeleteDomainRecord", &params).await {
                Ok(_) | Err(Refusal::Gone) => {}
                Err(refusal) => return Err(refusal.into_error(&self.client, &call)),
            }
        }
        Ok(())
    }
}

/// `fqdn` relative to `zone` as the API's `RR` wants it (`@` for the apex).
fn relative(
    client: &ApiClient,
    call: &Call<'_>,
    zone: &str,
    fqdn: &str,
) -> Result<String, DnsError> {
    if !names::in_zone(fqdn, zone) {
        return Err(client.failed(call, format!("{fqdn} is not in the zone")));
    }
    Ok(names::relative_or_at(fqdn, zone))
}

/// `YYYY-MM-DDThh:mm:ssZ`, the only form the API takes.
fn timestamp(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Alibaba's percent-encoding (RFC 3986): everything but `A-Z a-z 0-9 - _ . ~` as `%XY`, so a
/// space is `%20` and `*` is `%2A`. Hand-written: form encoders write a space as `+`, which
/// the signature does not allow.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The parameters (sorted by name, as a `BTreeMap` keeps them) as `name=value` pairs, each
/// side percent-encoded, joined with `&`.
fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&` followed by the canonical query, percent-encoded once more.
fn string_to_sign(method: &str, canonical_query: &str) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(canonical_query)
    )
}

/// Base64 of the HMAC-SHA1 of `string_to_sign`, keyed with the secret followed by `&`.
fn sign(secret: &str, string_to_sign: &str) -> String {
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    BASE64.encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ApiError>(body).ok()?.code
}

/// `Message (Code)` of an Alibaba error body.
fn error_message(body: &[u8]) -> Option<String> {
    let error = serde_json::from_slice::<ApiError>(body).ok()?;
    match (error.message, error.code) {
        (Some(message), Some(code)) => Some(format!("{message} ({code})")),
        (Some(text), None) | (None, Some(text)) => Some(text),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The example of Alibaba Cloud's documentation of the signature (RPC, version 1.0).
    #[test]
    fn signature_of_the_documented_example() {
        let params = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDomainRecords"),
            ("DomainName", "example.com"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "f59ed6a9-83fc-473b-9cc6-99c95df3856e"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-03-24T16:41:54Z"),
            ("Version", "2015-01-09"),
        ]);
        let to_sign = string_to_sign("GET", &canonical_query(&params));
        assert_eq!(
            to_sign,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDomainRecords%26DomainName%3Dexample.com%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Df59ed6a9-83fc-473b-9cc6-99c95df3856e%26SignatureVersion%3D1.0%26Timestamp%3D2016-03-24T16%253A41%253A54Z%26Version%3D2015-01-09"
        );
        let signature = sign("testsecret", &to_sign);
        assert_eq!(signature, "uRpHwaSEt3J+6KQD//svCh/x+pI=");
        assert_eq!(
            percent_encode(&signature),
            "uRpHwaSEt3J%2B6KQD%2F%2FsvCh%2Fx%2BpI%3D"
        );
    }

    /// A POST with characters the encoding must escape (`+`, `/`, `=`), computed independently.
    #[test]
    fn signature_of_a_post() {
        let params = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "AddDomainRecord"),
            ("DomainName", "example.com"),
            ("Format", "JSON"),
            ("RR", "_acme-challenge.mail"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3f8a8c1e-1111-2222-3333-444455556666"),
            ("SignatureVersion", "1.0"),
            ("TTL", "600"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Type", "TXT"),
            ("Value", "abc-DEF_123+/="),
            ("Version", "2015-01-09"),
        ]);
        let to_sign = string_to_sign("POST", &canonical_query(&params));
        assert_eq!(sign("testsecret", &to_sign), "lfv5H1hoi8M7/7usHDZVuCZa02w=");
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d"), "a%20b%2Ac~d");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("A-Z_a.z"), "A-Z_a.z");
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_458_837_714).unwrap();
        assert_eq!(timestamp(t), "2016-03-24T16:41:54Z");
    }

    #[test]
    fn nonces_are_unique() {
        let provider = AliDns::new(
            Secret::new("id"),
            Secret::new("secret"),
            &HttpOptions::with_endpoint(
                madmail_libdns_http::parse_endpoint(DEFAULT_ENDPOINT).unwrap(),
            ),
        )
        .unwrap();
        let a = provider.nonce();
        let b = provider.nonce();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                br#"{"RequestId":"x","HostId":"alidns.aliyuncs.com","Code":"DomainRecordDuplicate","Message":"The DNS record already exists."}"#
            )
            .as_deref(),
            Some("The DNS record already exists. (DomainRecordDuplicate)")
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}

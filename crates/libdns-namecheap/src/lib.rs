//! `libdns.namecheap`: publishes dns-01 TXT records through the Namecheap XML API
//! (`namecheap.domains.getList`, `namecheap.domains.dns.getHosts` and `setHosts`), as maddy's
//! module of the same name:
//!
//! ```text
//! dns namecheap {
//!     api_key {env:NAMECHEAP_API_KEY}
//!     api_username alice
//!     client_ip 203.0.113.7
//! }
//! ```
//!
//! API access must be enabled for the account (Profile, Tools, API Access) with this server's
//! public IPv4 address whitelisted; `client_ip` is that address (found through Namecheap's
//! own "what is my IP" service at the first call when left out). The key can do whatever the
//! account can. The domains must use Namecheap's DNS.
//!
//! Namecheap has no call adding or removing one record: `setHosts` replaces every host record
//! of a domain. So each change reads all records (`getHosts`), adds or removes exactly the one
//! TXT value, and writes all of them back with the domain's `EmailType`; changes are
//! serialised inside the provider so two of them cannot undo each other. It never changes
//! another record on purpose, never writes when nothing changes, and never logs the key (which
//! travels in POST bodies, not URLs).

use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;
use madmail_config::{Error, Node};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, build_provider, names};
use madmail_module::decode::single;
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::Deserialize;

/// The API's base; requests go to `xml.response` under it. `endpoint` replaces it
/// (`https://api.sandbox.namecheap.com/` is the sandbox); maddy's form naming the resource
/// itself (`https://api.sandbox.namecheap.com/xml.response`) is accepted too.
pub const DEFAULT_ENDPOINT: &str = "https://api.namecheap.com/";

/// Where this server's public IPv4 address is asked for when `client_ip` is not set:
/// Namecheap's dynamic DNS service, which answers with the caller's address as plain text.
pub const DEFAULT_IP_LOOKUP: &str = "https://dynamicdns.park-your-domain.com/getip";

const PROVIDER: &str = "namecheap";
const RESOURCE: &str = "xml.response";
/// The largest page of `namecheap.domains.getList` (the API takes 10 to 100).
const DOMAINS_PER_PAGE: u64 = 100;
/// TTLs the API accepts ("any value between 60 to 60000").
const TTL_RANGE: (u64, u64) = (60, 60_000);
/// `MXPref` is required for every host; Namecheap's own default.
const DEFAULT_MX_PREF: &str = "10";

/// Error numbers meaning the credentials, the user or the client address were refused: API
/// user missing (1010101), key missing or invalid (1010102, 1011102), client IP missing or
/// invalid (1010105, 1011105), client IP not whitelisted (1011150), address, IP or user
/// disabled or locked (1017150, 1017105, 1017101), too many login attempts (1017411), user
/// name unavailable or unauthorised (1019103, 1016103), API user not validated (1050900).
const NUMBERS_AUTH: [&str; 13] = [
    "1010101", "1010102", "1011102", "1010105", "1011105", "1011150", "1017150", "1017105",
    "1017101", "1017411", "1019103", "1016103", "1050900",
];
const NUMBER_IP_NOT_WHITELISTED: &str = "1011150";
const NUMBER_NOT_OUR_DNS: &str = "2030288";

/// Registers `libdns.namecheap`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.namecheap",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Namecheap (API key, user and whitelisted IP)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let api_key = block.custom("api_key", Secret::from_node).required();
            let api_user = block.custom("api_username", parse_username).required();
            let client_ip = block.custom("client_ip", parse_client_ip).optional();
            Some((api_key?, api_user?, client_ip))
        },
        |(api_key, api_user, client_ip), mut options| {
            options.endpoint = api_base(&options.endpoint);
            Namecheap::new(api_user, api_key, client_ip, &options)
        },
    )
}

fn parse_username(node: &Node) -> Result<String, Error> {
    let value = single(node)?;
    if value.trim().is_empty() {
        return Err(Error::at(node.arg_pos(0), "api_username is empty"));
    }
    Ok(value.to_owned())
}

fn parse_client_ip(node: &Node) -> Result<Ipv4Addr, Error> {
    let value = single(node)?;
    value.parse().map_err(|_| {
        Error::at(
            node.arg_pos(0),
            format!("client_ip: {value:?} is not an IPv4 address (Namecheap takes IPv4 only)"),
        )
    })
}

/// The endpoint as a base URL: a configured `.../xml.response` (maddy's form, which the
/// endpoint parser ended with `/`) loses that segment again.
fn api_base(endpoint: &Url) -> Url {
    let mut url = endpoint.clone();
    let path = url.path().to_owned();
    if let Some(base) = path.strip_suffix(&format!("{RESOURCE}/")) {
        url.set_path(base);
    }
    url
}

/// The Namecheap API with one API user and key.
#[derive(Debug)]
pub struct Namecheap {
    client: ApiClient,
    api_user: String,
    api_key: Secret,
    ip_lookup: Url,
    /// Configured, or found at the first call.
    client_ip: Mutex<Option<Ipv4Addr>>,
    /// Held across each read-modify-write of a domain's hosts.
    writing: tokio::sync::Mutex<()>,
}

/// `<ApiResponse Status="OK|ERROR">`.
#[derive(Debug, Deserialize)]
struct ApiResponse {
    #[serde(rename = "@Status", default)]
    status: String,
    #[serde(rename = "Errors", default)]
    errors: ErrorList,
    #[serde(rename = "CommandResponse", default)]
    command: Option<CommandResponse>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorList {
    #[serde(rename = "Error", default)]
    errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "@Number", default)]
    number: String,
    #[serde(rename = "$text", default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct CommandResponse {
    #[serde(rename = "DomainGetListResult", default)]
    domains: Option<DomainList>,
    #[serde(rename = "Paging", default)]
    paging: Option<Paging>,
    #[serde(rename = "DomainDNSGetHostsResult", default)]
    hosts: Option<Hosts>,
    #[serde(rename = "DomainDNSSetHostsResult", default)]
    set_hosts: Option<SetHostsResult>,
}

#[derive(Debug, Default, Deserialize)]
struct DomainList {
    #[serde(rename = "Domain", default)]
    domains: Vec<DomainEntry>,
}

#[derive(Debug, Deserialize)]
struct DomainEntry {
    #[serde(rename = "@Name")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Paging {
    #[serde(rename = "TotalItems", default)]
    total_items: Option<u64>,
}

/// `<DomainDNSGetHostsResult EmailType=...>` with its hosts.
#[derive(Debug, Default, Deserialize)]
struct Hosts {
    /// Must be sent back with `setHosts`, or Namecheap may drop the domain's mail setup.
    #[serde(rename = "@EmailType", default)]
    email_type: Option<String>,
    /// `<host>` on the live API, `<Host>` in its documentation.
    #[serde(rename = "host", alias = "Host", default)]
    hosts: Vec<Host>,
}

/// One host record, with what `setHosts` takes back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Host {
    /// Relative to the domain, `@` for the apex.
    #[serde(rename = "@Name")]
    name: String,
    #[serde(rename = "@Type")]
    rtype: String,
    /// Raw: TXT values unquoted, CAA records as `flag tag value`.
    #[serde(rename = "@Address", default)]
    address: String,
    #[serde(rename = "@MXPref", default)]
    mx_pref: Option<String>,
    #[serde(rename = "@TTL", default)]
    ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SetHostsResult {
    #[serde(rename = "@IsSuccess", default)]
    is_success: String,
}

impl Namecheap {
    /// `options.endpoint` is the API's base URL (requests go to `xml.response` under it).
    /// Without `client_ip`, the address is asked for at [`DEFAULT_IP_LOOKUP`] at the first
    /// call.
    pub fn new(
        api_user: String,
        api_key: Secret,
        client_ip: Option<Ipv4Addr>,
        options: &HttpOptions,
    ) -> Result<Namecheap, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        let ip_lookup =
            Url::parse(DEFAULT_IP_LOOKUP).map_err(|e| format!("{DEFAULT_IP_LOOKUP}: {e}"))?;
        Ok(Namecheap {
            client,
            api_user,
            api_key,
            ip_lookup,
            client_ip: Mutex::new(client_ip),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Asks `url` instead of [`DEFAULT_IP_LOOKUP`] for this server's address.
    pub fn with_ip_lookup(mut self, url: Url) -> Namecheap {
        self.ip_lookup = url;
        self
    }

    /// The address Namecheap must see the calls come from.
    async fn client_ip(&self, call: &Call<'_>) -> Result<Ipv4Addr, DnsError> {
        if let Some(ip) = *lock(&self.client_ip) {
            return Ok(ip);
        }
        let reply = self
            .client
            .send(call, |http| http.get(self.ip_lookup.clone()))
            .await
            .map_err(|f| {
                self.client.failed(
                    call,
                    format!(
                        "finding this server's public IPv4 address at {}: {}; set client_ip",
                        self.ip_lookup, f.message
                    ),
                )
            })?;
        let text = String::from_utf8_lossy(&reply.body);
        let ip: Ipv4Addr = text.trim().parse().map_err(|_| {
            self.client.failed(
                call,
                format!(
                    "{} answered {:?}, not an IPv4 address; set client_ip",
                    self.ip_lookup,
                    text.trim().chars().take(60).collect::<String>()
                ),
            )
        })?;
        tracing::info!(provider = PROVIDER, client_ip = %ip, "public IPv4 address found; Namecheap must have it whitelisted");
        *lock(&self.client_ip) = Some(ip);
        Ok(ip)
    }

    /// Runs one API command (POSTed as a form, so the key stays out of URLs) and returns its
    /// `CommandResponse`; an `ERROR` status becomes a [`DnsError`].
    async fn command(
        &self,
        call: &Call<'_>,
        command: &str,
        params: &[(String, String)],
    ) -> Result<CommandResponse, DnsError> {
        let client_ip = self.client_ip(call).await?;
        let url = self.client.url(call, RESOURCE)?;
        let mut form: Vec<(String, String)> = vec![
            ("ApiUser".into(), self.api_user.clone()),
            ("ApiKey".into(), self.api_key.expose().to_owned()),
            ("UserName".into(), self.api_user.clone()),
            ("ClientIp".into(), client_ip.to_string()),
            ("Command".into(), command.into()),
        ];
        form.extend_from_slice(params);
        let reply = self
            .client
            .send(call, |http| http.post(url.clone()).form(&form))
            .await
            .map_err(|f| self.client.error(call, f))?;
        let text = String::from_utf8_lossy(&reply.body);
        let response: ApiResponse = quick_xml::de::from_str(&text).map_err(|e| {
            self.client
                .failed(call, format!("unexpected reply from the API: {e}"))
        })?;
        if response.status.is_empty() {
            // Not an ApiResponse at all (a maintenance page, a proxy's answer).
            let start: String = text.trim().chars().take(100).collect();
            return Err(self.client.failed(
                call,
                format!("unexpected reply from the API (no ApiResponse status): {start}"),
            ));
        }
        if !response.status.eq_ignore_ascii_case("OK") || !response.errors.errors.is_empty() {
            return Err(self.api_error(call, &response, client_ip));
        }
        response
            .command
            .ok_or_else(|| self.client.failed(call, "the reply has no CommandResponse"))
    }

    fn api_error(&self, call: &Call<'_>, response: &ApiResponse, client_ip: Ipv4Addr) -> DnsError {
        let errors = &response.errors.errors;
        if errors.is_empty() {
            return self
                .client
                .failed(call, format!("status {:?} without errors", response.status));
        }
        let mut message = describe(errors);
        if errors.iter().any(|e| e.number == NUMBER_IP_NOT_WHITELISTED) {
            message.push_str(&format!(
                " (whitelist {client_ip} in Namecheap's API access settings)"
            ));
        }
        if errors.iter().any(|e| e.number == NUMBER_NOT_OUR_DNS) {
            message.push_str(" (the domain must use Namecheap's DNS)");
        }
        if errors
            .iter()
            .any(|e| NUMBERS_AUTH.contains(&e.number.as_str()))
        {
            self.client.unauthorized(call, message)
        } else {
            self.client.failed(call, message)
        }
    }

    /// Every domain of the account, page by page.
    async fn domains(&self) -> Result<Vec<String>, DnsError> {
        let call = Call::new("list zones", "-");
        let mut domains = Vec::new();
        let mut page = 1;
        loop {
            let params = [
                ("ListType".to_owned(), "ALL".to_owned()),
                ("Page".to_owned(), page.to_string()),
                ("PageSize".to_owned(), DOMAINS_PER_PAGE.to_string()),
            ];
            let response = self
                .command(&call, "namecheap.domains.getList", &params)
                .await?;
            let found = response.domains.map(|d| d.domains).unwrap_or_default();
            let count = found.len() as u64;
            domains.extend(found.into_iter().map(|d| d.name));
            let total = response.paging.and_then(|p| p.total_items);
            let more = match total {
                Some(total) => page * DOMAINS_PER_PAGE < total,
                None => count == DOMAINS_PER_PAGE,
            };
            if count == 0 || !more {
                return Ok(domains);
            }
            page += 1;
        }
    }

    async fn get_hosts(&self, call: &Call<'_>, domain: &Domain) -> Result<Hosts, DnsError> {
        let response = self
            .command(call, "namecheap.domains.dns.getHosts", &domain.params())
            .await?;
        response.hosts.ok_or_else(|| {
            self.client
                .failed(call, "the reply has no DomainDNSGetHostsResult")
        })
    }

    /// Replaces the domain's hosts by `hosts`.
    async fn set_hosts(
        &self,
        call: &Call<'_>,
        domain: &Domain,
        hosts: &Hosts,
    ) -> Result<(), DnsError> {
        let mut params = domain.params();
        if let Some(email_type) = hosts.email_type.as_ref().filter(|t| !t.is_empty()) {
            params.push(("EmailType".into(), email_type.clone()));
        }
        for (i, host) in hosts.hosts.iter().enumerate() {
            let n = i + 1;
            params.push((format!("HostName{n}"), host.name.clone()));
            params.push((format!("RecordType{n}"), host.rtype.clone()));
            params.push((format!("Address{n}"), host.address.clone()));
            params.push((
                format!("MXPref{n}"),
                host.mx_pref
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| DEFAULT_MX_PREF.into()),
            ));
            if let Some(ttl) = host.ttl.as_ref().filter(|t| !t.is_empty()) {
                params.push((format!("TTL{n}"), ttl.clone()));
            }
        }
        let response = self
            .command(call, "namecheap.domains.dns.setHosts", &params)
            .await?;
        match response.set_hosts {
            Some(result) if result.is_success.eq_ignore_ascii_case("true") => Ok(()),
            Some(result) => Err(self.client.failed(
                call,
                format!("setHosts answered IsSuccess={:?}", result.is_success),
            )),
            None => Err(self
                .client
                .failed(call, "the reply has no DomainDNSSetHostsResult")),
        }
    }
}

/// A domain as the API names it: `SLD` (first label) and `TLD` (the rest, `co.uk`).
struct Domain {
    sld: String,
    tld: String,
}

impl Domain {
    /// Zones at Namecheap are registered domains, so the split is at the first dot.
    fn of(client: &ApiClient, call: &Call<'_>, zone: &str) -> Result<Domain, DnsError> {
        let zone = names::bare(zone);
        match zone.split_once('.') {
            Some((sld, tld)) if !sld.is_empty() && !tld.is_empty() => Ok(Domain {
                sld: sld.into(),
                tld: tld.into(),
            }),
            _ => Err(client.failed(call, format!("{zone:?} is not a registered domain name"))),
        }
    }

    fn params(&self) -> Vec<(String, String)> {
        vec![
            ("SLD".into(), self.sld.clone()),
            ("TLD".into(), self.tld.clone()),
        ]
    }
}

fn is_value(host: &Host, name: &str, value: &str) -> bool {
    host.rtype.eq_ignore_ascii_case("TXT")
        && host.name.eq_ignore_ascii_case(name)
        && (host.address == value || names::unquote_txt(&host.address) == value)
}

#[async_trait]
impl DnsProvider for Namecheap {
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
        let domain = Domain::of(&self.client, &call, zone)?;
        let name = names::relative_or_at(&record.fqdn, zone);
        let _writing = self.writing.lock().await;
        let mut hosts = self.get_hosts(&call, &domain).await?;
        if hosts
            .hosts
            .iter()
            .any(|h| is_value(h, &name, &record.value))
        {
            return Ok(());
        }
        let ttl = record.ttl.as_secs().clamp(TTL_RANGE.0, TTL_RANGE.1);
        hosts.hosts.push(Host {
            name,
            rtype: "TXT".into(),
            address: record.value.clone(),
            mx_pref: None,
            ttl: Some(ttl.to_string()),
        });
        self.set_hosts(&call, &domain, &hosts).await?;
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record added");
        Ok(())
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let domain = Domain::of(&self.client, &call, zone)?;
        let name = names::relative_or_at(&record.fqdn, zone);
        let _writing = self.writing.lock().await;
        let mut hosts = self.get_hosts(&call, &domain).await?;
        let before = hosts.hosts.len();
        hosts.hosts.retain(|h| !is_value(h, &name, &record.value));
        if hosts.hosts.len() == before {
            return Ok(());
        }
        self.set_hosts(&call, &domain, &hosts).await?;
        tracing::debug!(provider = PROVIDER, zone, name = %record.fqdn, "TXT record removed");
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `text (error N)` of each error.
fn describe(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} (error {})", e.message.trim(), e.number))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The errors of an XML body that came with an HTTP error status.
fn error_message(body: &[u8]) -> Option<String> {
    let response: ApiResponse = quick_xml::de::from_str(&String::from_utf8_lossy(body)).ok()?;
    if response.errors.errors.is_empty() {
        None
    } else {
        Some(describe(&response.errors.errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use madmail_libdns_http::parse_endpoint;

    #[test]
    fn replies_parse_with_either_host_spelling() {
        for tag in ["host", "Host"] {
            let xml = format!(
                r#"<?xml version="1.0" encoding="utf-8"?>
<ApiResponse Status="OK" xmlns="http://api.namecheap.com/xml.response">
  <Errors />
  <Warnings />
  <RequestedCommand>namecheap.domains.dns.getHosts</RequestedCommand>
  <CommandResponse Type="namecheap.domains.dns.getHosts">
    <DomainDNSGetHostsResult Domain="example.com" EmailType="MX" IsUsingOurDNS="true">
      <{tag} HostId="12" Name="@" Type="A" Address="1.2.3.4" MXPref="10" TTL="1800" AssociatedAppTitle="" FriendlyName="" IsActive="true" IsDDNSEnabled="false" />
      <{tag} HostId="14" Name="_acme-challenge" Type="TXT" Address="a &amp; &quot;b&quot;" MXPref="10" TTL="60" />
    </DomainDNSGetHostsResult>
  </CommandResponse>
  <Server>SERVER-NAME</Server>
  <GMTTimeDifference>+5</GMTTimeDifference>
  <ExecutionTime>32.76</ExecutionTime>
</ApiResponse>"#
            );
            let response: ApiResponse = quick_xml::de::from_str(&xml).unwrap();
            assert_eq!(response.status, "OK");
            let hosts = response.command.unwrap().hosts.unwrap();
            assert_eq!(hosts.email_type.as_deref(), Some("MX"));
            assert_eq!(hosts.hosts.len(), 2, "<{tag}>");
            assert_eq!(hosts.hosts[1].address, "a & \"b\"");
            assert_eq!(hosts.hosts[0].ttl.as_deref(), Some("1800"));
        }
    }

    #[test]
    fn errors_parse() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<ApiResponse Status="ERROR" xmlns="http://api.namecheap.com/xml.response">
  <Errors><Error Number="1011102">API Key is invalid or API access has not been enabled</Error></Errors>
  <Warnings /><RequestedCommand /><Server>PHX01SBAPI01</Server>
  <GMTTimeDifference>--5:00</GMTTimeDifference><ExecutionTime>0</ExecutionTime>
</ApiResponse>"#;
        assert_eq!(
            error_message(xml.as_bytes()).as_deref(),
            Some("API Key is invalid or API access has not been enabled (error 1011102)")
        );
        assert_eq!(error_message(b"<html>busy</html>"), None);
    }

    #[test]
    fn the_endpoint_is_a_base() {
        let base = |s: &str| api_base(&parse_endpoint(s).unwrap()).to_string();
        assert_eq!(base(DEFAULT_ENDPOINT), "https://api.namecheap.com/");
        assert_eq!(
            base("https://api.sandbox.namecheap.com/xml.response"),
            "https://api.sandbox.namecheap.com/"
        );
        assert_eq!(base("http://127.0.0.1:1/nc"), "http://127.0.0.1:1/nc/");
    }
}

//! The propagation check: after a provider publishes a TXT record, wait until the servers the
//! CA will effectively ask answer it, so the CA is not sent to validate too early.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use crate::addr::{DNS_PORT, ServerAddr};
use crate::lookup::{
    QUERY_TIMEOUT, Resolvers, addresses, follow_cname, fqdn_string, lookup_error, parse_name,
    question,
};
use crate::{DnsError, find_zone, wire};

/// How [`wait_until_visible`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationOptions {
    /// How long to keep checking before giving up with [`DnsError::NotVisible`]; zero skips
    /// the check (after `delay`). Default: 2 minutes.
    pub timeout: Duration,
    /// Sleep before the first check, e.g. for providers known to publish late. Default: 0.
    pub delay: Duration,
    /// Time between two rounds of queries. Default: 2 seconds.
    pub interval: Duration,
    /// Check these (recursive) resolvers instead of the zone's authoritative nameservers.
    /// Default: empty, the authoritative nameservers.
    pub resolvers: Vec<ServerAddr>,
    /// The resolvers used to find the zone, its nameservers and their addresses, and to
    /// follow a CNAME. Default: the system's.
    pub upstream: Resolvers,
    /// The port authoritative nameservers are asked on. Always 53 in the real world; tests and
    /// labs that run nameservers on other ports set it.
    pub authoritative_port: u16,
}

impl Default for PropagationOptions {
    fn default() -> PropagationOptions {
        PropagationOptions {
            timeout: Duration::from_secs(120),
            delay: Duration::ZERO,
            interval: Duration::from_secs(2),
            resolvers: Vec::new(),
            upstream: Resolvers::system(),
            authoritative_port: DNS_PORT,
        }
    }
}

/// Waits until `value` is among the TXT values of `fqdn` at every server checked.
///
/// By default the servers are the authoritative nameservers of the zone holding `fqdn`, each
/// asked directly (no recursion, so no cache is involved): every nameserver must have it, as
/// the CA may ask any of them. When `fqdn` is a CNAME (dns-01 delegation, `override_domain`),
/// the check follows it and asks the nameservers of the target's zone for the target. With
/// `options.resolvers`, each of those resolvers is asked instead, with recursion.
///
/// Fails with [`DnsError::NotVisible`], naming the servers that have not answered the value
/// yet and what they answered, when `options.timeout` passes.
pub async fn wait_until_visible(
    fqdn: &str,
    value: &str,
    options: &PropagationOptions,
) -> Result<(), DnsError> {
    let name = parse_name(fqdn)?;
    if !options.delay.is_zero() {
        tracing::debug!(name = %fqdn, delay = ?options.delay, "waiting before the propagation check");
        tokio::time::sleep(options.delay).await;
    }
    if options.timeout.is_zero() {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut servers: Option<Vec<Server>> = None;
    let mut discovery_error = String::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A round started just before the deadline still gets a fair chance to answer.
        let query_timeout = QUERY_TIMEOUT.min(remaining.max(Duration::from_millis(500)));
        if servers.is_none() {
            match discover(&name, options).await {
                Ok(found) => servers = Some(found),
                Err(e) => discovery_error = e.to_string(),
            }
        }
        if let Some(servers) = servers.as_mut() {
            let pending: Vec<&mut Server> = servers.iter_mut().filter(|s| !s.seen).collect();
            join_all(
                pending
                    .into_iter()
                    .map(|server| server.check(value, query_timeout)),
            )
            .await;
            if servers.iter().all(|s| s.seen) {
                tracing::debug!(name = %fqdn, waited = ?started.elapsed(), "TXT value visible");
                return Ok(());
            }
        }
        let pending = match &servers {
            Some(servers) => servers
                .iter()
                .filter(|s| !s.seen)
                .map(|s| format!("{} ({})", s.label, s.status))
                .collect(),
            None => vec![format!("nameserver discovery ({discovery_error})")],
        };
        if Instant::now() >= deadline {
            return Err(DnsError::NotVisible {
                name: fqdn_string(&name),
                value: value.to_owned(),
                waited: options.timeout,
                pending,
            });
        }
        tracing::debug!(name = %fqdn, ?pending, "TXT value not visible yet");
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(options.interval.min(remaining)).await;
    }
}

/// One server to check (a nameserver may have several addresses: one answering the value is
/// enough, as a CA asks one of them).
struct Server {
    label: String,
    addrs: Vec<SocketAddr>,
    /// The name to ask for: the CNAME target for nameservers, the original name for resolvers
    /// (which follow the CNAME themselves, as the CA's would).
    name: Name,
    recursion: bool,
    seen: bool,
    /// What it answered last, for the error.
    status: String,
}

impl Server {
    async fn check(&mut self, value: &str, timeout: Duration) {
        if self.addrs.is_empty() {
            self.status = "has no address".into();
            return;
        }
        let mut statuses = Vec::new();
        for &addr in &self.addrs {
            let message = question(&self.name, RecordType::TXT, self.recursion);
            match wire::exchange(addr, message, timeout).await {
                Ok(response) => match has_value(&response, value) {
                    Ok(()) => {
                        self.seen = true;
                        return;
                    }
                    Err(status) => statuses.push(status),
                },
                Err(e) => statuses.push(e.to_string()),
            }
        }
        self.status = if self.addrs.len() == 1 {
            statuses.concat()
        } else {
            self.addrs
                .iter()
                .zip(&statuses)
                .map(|(addr, status)| format!("{addr}: {status}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
    }
}

/// Whether the answer holds `value` among its TXT records; otherwise what it said instead.
fn has_value(response: &Message, value: &str) -> Result<(), String> {
    let code = response.metadata.response_code;
    if code != ResponseCode::NoError {
        return Err(format!("answered {}", wire::rcode_name(code)));
    }
    let values: Vec<Vec<u8>> = response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            // A TXT value is the concatenation of its character-strings (values over 255
            // bytes are split).
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    if values.iter().any(|v| v == value.as_bytes()) {
        return Ok(());
    }
    match values.len() {
        0 => Err("no TXT record yet".into()),
        n => Err(format!("{n} other TXT value(s)")),
    }
}

/// The servers to check for `name`.
async fn discover(name: &Name, options: &PropagationOptions) -> Result<Vec<Server>, DnsError> {
    if !options.resolvers.is_empty() {
        let mut servers = Vec::new();
        for resolver in &options.resolvers {
            let addrs = resolver
                .resolve()
                .await
                .map_err(|e| lookup_error(name, format!("resolver {resolver}: {e}")))?;
            servers.push(Server {
                label: format!("resolver {resolver}"),
                addrs,
                name: name.clone(),
                recursion: true,
                seen: false,
                status: "not asked yet".into(),
            });
        }
        return Ok(servers);
    }

    let upstream = &options.upstream;
    let target = follow_cname(name, upstream).await?;
    if target != *name {
        tracing::debug!(%name, %target, "following the CNAME of a delegated challenge");
    }
    let zone = parse_name(&find_zone(&target.to_ascii(), upstream).await?)?;
    let response = upstream.query(&zone, RecordType::NS).await?;
    let mut hosts: Vec<Name> = Vec::new();
    for record in &response.answers {
        if let RData::NS(ns) = &record.data
            && record.name == zone
            && !hosts.contains(&ns.0)
        {
            hosts.push(ns.0.clone());
        }
    }
    if hosts.is_empty() {
        return Err(lookup_error(&zone, "the zone has no NS records"));
    }
    let mut servers = Vec::new();
    for host in hosts {
        // Addresses the resolver volunteered next to the NS records save lookups.
        let mut ips: Vec<_> = response
            .additionals
            .iter()
            .filter(|r| r.name == host)
            .filter_map(|r| r.data.ip_addr())
            .collect();
        if ips.is_empty() {
            ips = addresses(upstream, &host).await;
        }
        servers.push(Server {
            label: fqdn_string(&host),
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, options.authoritative_port))
                .collect(),
            name: target.clone(),
            recursion: false,
            seen: false,
            status: "not asked yet".into(),
        });
    }
    tracing::debug!(
        name = %target,
        zone = %zone,
        nameservers = ?servers.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(),
        "checking the zone's nameservers"
    );
    Ok(servers)
}

//! DNS for the dns-01 challenge: the interface every `libdns.<provider>` module implements
//! ([`DnsProvider`]), and the checks around it: zone discovery ([`find_zone`]) for providers
//! that cannot list their zones, CNAME delegation ([`resolve_cname`]) and the propagation check
//! ([`wait_until_visible`]). [`wire`] sends one DNS message, for providers speaking DNS.
//!
//! It must not know about ACME: the ACME loader calls a provider to present and clean up TXT
//! records and asks this crate when they are visible. It never changes DNS data itself.

use std::time::Duration;

mod addr;
mod lookup;
mod propagation;
pub mod wire;
mod zone;

pub use addr::{DNS_PORT, ServerAddr};
pub use lookup::{Resolvers, absolute_name, resolve_cname};
pub use propagation::{PropagationOptions, wait_until_visible};
pub use zone::find_zone;

use async_trait::async_trait;
use madmail_module::Capability;

/// One TXT record, named by its fully qualified domain name with a trailing dot
/// (`_acme-challenge.example.org.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    pub fqdn: String,
    pub value: String,
    pub ttl: Duration,
}

/// What went wrong talking to a DNS provider. Messages name the provider, the zone and the
/// operation, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Credentials refused or insufficient (do not retry).
    #[error("{provider}: {operation} in zone {zone}: not authorised: {message}")]
    Unauthorized {
        provider: String,
        zone: String,
        operation: String,
        message: String,
    },
    /// No zone of this account contains the name.
    #[error("{provider}: no zone found for {name}")]
    NoZone { provider: String, name: String },
    /// Anything else (network, rate limit after retries, server error, bad reply).
    #[error("{provider}: {operation} in zone {zone}: {message}")]
    Failed {
        provider: String,
        zone: String,
        operation: String,
        message: String,
    },
    /// A lookup this crate needed failed (zone discovery, CNAME, nameservers), or `name` is
    /// not a domain name.
    #[error("DNS lookup of {name} failed: {message}")]
    Lookup { name: String, message: String },
    /// The propagation check gave up: these servers (each with what it answered last) did not
    /// serve the value within `waited`.
    #[error(
        "TXT {name} {value:?} not visible after {waited:?} at: {}",
        .pending.join("; ")
    )]
    NotVisible {
        name: String,
        value: String,
        waited: Duration,
        pending: Vec<String>,
    },
}

/// A DNS hosting service (or a server accepting RFC 2136 updates) that can publish TXT records.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// The provider's name for logs and errors (`rfc2136`, `cloudflare`, ...).
    fn name(&self) -> &str;

    /// The zone (FQDN with a trailing dot) this provider would change to publish `fqdn`: the
    /// longest zone it manages that contains the name. Providers that can list their zones
    /// do so; others find the zone through DNS (the closest enclosing SOA).
    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError>;

    /// Adds `record` to `zone`, next to any TXT values the name already has (a wildcard and its
    /// apex, or two concurrent orders, put two values on one name: never overwrite).
    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError>;

    /// Removes exactly this value of `record.fqdn` from `zone`, leaving other values. Removing
    /// a record that is not there is not an error.
    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError>;
}

impl Capability for dyn DnsProvider {
    const DESCRIPTION: &'static str = "a DNS provider";
}

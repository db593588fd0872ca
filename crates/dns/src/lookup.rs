//! Lookups through recursive resolvers ("upstream"): the questions zone discovery and the
//! propagation check ask before they go to authoritative servers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::{DnsError, wire};

/// How long one question to one server may take (UDP retransmissions included).
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The recursive resolvers lookups go to: the system's (`/etc/resolv.conf` as hickory-resolver
/// reads it, when a lookup happens) or an explicit list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolvers {
    servers: Option<Vec<SocketAddr>>,
}

impl Resolvers {
    /// The resolvers the system is configured with.
    pub fn system() -> Resolvers {
        Resolvers { servers: None }
    }

    /// These servers, asked in order (the next when one fails or refuses).
    pub fn new(servers: Vec<SocketAddr>) -> Resolvers {
        Resolvers {
            servers: Some(servers),
        }
    }

    fn servers(&self, name: &Name) -> Result<Vec<SocketAddr>, DnsError> {
        let servers = match &self.servers {
            Some(servers) => servers.clone(),
            None => {
                let (config, _) =
                    hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                        lookup_error(name, format!("reading the system's resolvers: {e}"))
                    })?;
                let mut servers: Vec<SocketAddr> = Vec::new();
                for ns in config.name_servers() {
                    let port = ns.connections.first().map_or(53, |c| c.port);
                    let addr = SocketAddr::new(ns.ip, port);
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
                servers
            }
        };
        if servers.is_empty() {
            return Err(lookup_error(name, "no resolvers configured"));
        }
        Ok(servers)
    }

    /// Asks `name`/`rtype` with recursion desired, trying each resolver until one gives a
    /// usable answer (NOERROR or NXDOMAIN).
    pub(crate) async fn query(&self, name: &Name, rtype: RecordType) -> Result<Message, DnsError> {
        let mut failures = Vec::new();
        for server in self.servers(name)? {
            match wire::exchange(server, question(name, rtype, true), QUERY_TIMEOUT).await {
                Ok(response) => {
                    let code = response.metadata.response_code;
                    if matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
                        return Ok(response.into());
                    }
                    failures.push(format!("{server} answered {}", wire::rcode_name(code)));
                }
                Err(e) => failures.push(format!("{server}: {e}")),
            }
        }
        Err(lookup_error(
            name,
            format!("{rtype} query failed: {}", failures.join("; ")),
        ))
    }
}

/// A query message for `name`/`rtype` (EDNS with a 1232-byte payload, the DNS flag day size).
pub(crate) fn question(name: &Name, rtype: RecordType, recursion: bool) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(name.clone(), rtype));
    message.metadata.recursion_desired = recursion;
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message
}

/// The name `fqdn` is an alias of, following CNAMEs (at most 8), or `fqdn` itself.
///
/// For dns-01 delegation: `_acme-challenge.mail.example.org` may be a CNAME to a name in a
/// zone meant for challenges; the TXT record then lives (and is checked) there.
pub async fn resolve_cname(fqdn: &str, resolvers: &Resolvers) -> Result<String, DnsError> {
    let name = parse_name(fqdn)?;
    Ok(fqdn_string(&follow_cname(&name, resolvers).await?))
}

pub(crate) async fn follow_cname(name: &Name, resolvers: &Resolvers) -> Result<Name, DnsError> {
    const MAX_HOPS: usize = 8;
    let mut current = name.clone();
    let mut seen = vec![current.clone()];
    for _ in 0..MAX_HOPS {
        let response = resolvers.query(&current, RecordType::CNAME).await?;
        let Some(target) = cname_of(&response, &current) else {
            return Ok(current);
        };
        if seen.contains(&target) {
            return Err(lookup_error(name, format!("CNAME loop at {target}")));
        }
        seen.push(target.clone());
        current = target;
    }
    Err(lookup_error(
        name,
        format!("more than {MAX_HOPS} CNAMEs in a row"),
    ))
}

/// The target of a CNAME owned by `name` in the answer section.
pub(crate) fn cname_of(response: &Message, name: &Name) -> Option<Name> {
    response.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(target) if r.name == *name => Some(target.0.clone()),
        _ => None,
    })
}

/// The IPv4 and IPv6 addresses of `host` (following CNAMEs, as resolvers do); empty when it
/// has none or the lookups fail.
pub(crate) async fn addresses(resolvers: &Resolvers, host: &Name) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        match resolvers.query(host, rtype).await {
            Ok(response) => found.extend(response.answers.iter().filter_map(|r| r.data.ip_addr())),
            Err(e) => tracing::debug!(%host, error = %e, "no address for nameserver"),
        }
    }
    found
}

/// `fqdn` as an absolute DNS name.
pub(crate) fn parse_name(fqdn: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(fqdn).map_err(|e| DnsError::Lookup {
        name: fqdn.to_owned(),
        message: format!("not a valid domain name: {e}"),
    })?;
    name.set_fqdn(true);
    Ok(name)
}

/// `name` as an absolute domain name: lowercase, with the trailing dot (`Example.ORG` ->
/// `example.org.`); the error says why it is not a domain name.
pub fn absolute_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "." {
        return Err("empty domain name".into());
    }
    let parsed =
        Name::from_ascii(name).map_err(|e| format!("{name:?} is not a domain name: {e}"))?;
    Ok(fqdn_string(&parsed))
}

/// Lowercase, with the trailing dot.
pub(crate) fn fqdn_string(name: &Name) -> String {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name.to_ascii()
}

pub(crate) fn lookup_error(name: &Name, message: impl Into<String>) -> DnsError {
    DnsError::Lookup {
        name: fqdn_string(name),
        message: message.into(),
    }
}

//! `HOST[:PORT]` addresses of DNS servers, as written in the configuration (`server`,
//! `resolvers`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The port DNS servers listen on when an address names none.
pub const DNS_PORT: u16 = 53;

/// A DNS server: an IP address or a host name, and a port (53 unless given).
///
/// Accepted forms: `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1`, `[2001:db8::1]:5353`,
/// `ns1.example.org`, `ns1.example.org:5353`. Host names are resolved when the server is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl ServerAddr {
    /// Parses `HOST[:PORT]`; the error says what is wrong, without position.
    pub fn parse(text: &str) -> Result<ServerAddr, String> {
        if text.is_empty() {
            return Err("empty server address".into());
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(ServerAddr {
                host: Host::Ip(ip),
                port: DNS_PORT,
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(format!("{text:?}: port 0 is not allowed"));
            }
            return Ok(ServerAddr::from(addr));
        }
        if text.starts_with('[') {
            return Err(format!(
                "{text:?} is not a valid address: expected [IPV6]:PORT"
            ));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?}: invalid port {port:?}"))?;
                (host, port)
            }
            None => (text, DNS_PORT),
        };
        if port == 0 {
            return Err(format!("{text:?}: port 0 is not allowed"));
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "{text:?} is not a valid server address: expected HOST[:PORT]"
            ));
        }
        Ok(ServerAddr {
            host: Host::Name(name.to_ascii_lowercase()),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket addresses to try, in order: the address itself, or what the host name
    /// resolves to through the system resolver.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), self.port))
                    .await?
                    .collect();
                if found.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{name} has no address"),
                    ));
                }
                Ok(found)
            }
        }
    }
}

impl From<SocketAddr> for ServerAddr {
    fn from(addr: SocketAddr) -> ServerAddr {
        ServerAddr {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<ServerAddr, String> {
        ServerAddr::parse(s)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let ok = |s: &str| ServerAddr::parse(s).map(|a| a.to_string());
        assert_eq!(ok("192.0.2.1").unwrap(), "192.0.2.1:53");
        assert_eq!(ok("192.0.2.1:5353").unwrap(), "192.0.2.1:5353");
        assert_eq!(ok("2001:db8::1").unwrap(), "[2001:db8::1]:53");
        assert_eq!(ok("[2001:db8::1]:5353").unwrap(), "[2001:db8::1]:5353");
        assert_eq!(ok("NS1.Example.org").unwrap(), "ns1.example.org:53");
        assert_eq!(ok("ns1.example.org.:54").unwrap(), "ns1.example.org:54");
        assert_eq!(ok("localhost:1053").unwrap(), "localhost:1053");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            ":53",
            "host:",
            "host:99999",
            "host:0",
            "192.0.2.1:0",
            "[2001:db8::1]",
            "a b",
            "exa mple.org:53",
            "a..b",
            "host:53:53",
        ] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

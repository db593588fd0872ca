//! Parsers for the value types directives share: booleans, durations, data sizes and listen
//! addresses. Errors are plain messages; callers attach the position.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use madmail_config::{Error, Node};

/// `name` alone is true; otherwise `yes/no`, `true/false`, `on/off`, `1/0` (any case).
pub fn flag(n: &Node) -> Result<bool, Error> {
    match n.args.as_slice() {
        [] => Ok(true),
        [v] => match v.value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            other => Err(Error::at(
                &v.pos,
                format!("{}: expected yes or no, not {other:?}", n.name),
            )),
        },
        [_, extra, ..] => Err(Error::at(
            &extra.pos,
            format!("{} takes at most one value (yes or no)", n.name),
        )),
    }
}

/// Go's `time.ParseDuration` syntax (`300ms`, `1.5h`, `2h45m`, units ns/us/µs/ms/s/m/h) plus
/// `d` for 24 hours. Negative durations are rejected.
pub fn duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("expected a duration such as 30s, 5m, 1h or 7d".into());
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(format!("duration {s:?} is negative"));
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!(
                "invalid duration {s:?}: expected a number before the unit"
            ));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m, h or d)"
                ));
            }
            other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
        };
        let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        total += value * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("duration {s:?} is out of range"))
}

/// A size in bytes: groups of a number and an optional unit `B`, `K`, `M` or `G` (powers of
/// 1024, any case), summed: `32M`, `1G512M`, `4096`.
pub fn data_size(s: &str) -> Result<u64, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return Err("expected a size such as 512K, 32M or 1G".into());
    }
    let mut total: u64 = 0;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid size {s:?}: expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let value: u64 = num
            .parse()
            .map_err(|_| format!("size {s:?} is too large"))?;
        let mut chars = after.chars();
        let (mult, next) = match chars.next().map(|c| c.to_ascii_uppercase()) {
            None => (1, ""),
            Some(c) if c.is_ascii_digit() => (1, after),
            Some('B') => (1, chars.as_str()),
            Some('K') => (1 << 10, chars.as_str()),
            Some('M') => (1 << 20, chars.as_str()),
            Some('G') => (1 << 30, chars.as_str()),
            Some(other) => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?} (use B, K, M or G)"
                ));
            }
        };
        total = value
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("size {s:?} is too large"))?;
        rest = next;
    }
    Ok(total)
}

/// Where an endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `tcp://host:port` (`tls: false`) or `tls://host:port` (implicit TLS).
    Tcp { host: String, port: u16, tls: bool },
    /// `unix://path`.
    Unix(PathBuf),
}

impl ListenAddr {
    /// `host:port` as `tokio::net::TcpListener::bind` accepts it (IPv6 hosts bracketed).
    pub fn socket_addr_string(&self) -> Option<String> {
        match self {
            ListenAddr::Tcp { host, port, .. } if host.contains(':') => {
                Some(format!("[{host}]:{port}"))
            }
            ListenAddr::Tcp { host, port, .. } => Some(format!("{host}:{port}")),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { tls, .. } => {
                let scheme = if *tls { "tls" } else { "tcp" };
                write!(
                    f,
                    "{scheme}://{}",
                    self.socket_addr_string().unwrap_or_default()
                )
            }
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Parses `tcp://host:port`, `tls://host:port` (host may be an IPv6 address in brackets, or
/// empty for all addresses) or `unix://path`.
pub fn listen_addr(s: &str) -> Result<ListenAddr, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "invalid address {s:?}: expected tcp://host:port, tls://host:port or unix://path"
        ));
    };
    match scheme {
        "unix" => {
            if rest.is_empty() {
                return Err(format!("invalid address {s:?}: missing socket path"));
            }
            Ok(ListenAddr::Unix(PathBuf::from(rest)))
        }
        "tcp" | "tls" => {
            let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
                let (host, after) = v6.split_once(']').ok_or_else(|| {
                    format!("invalid address {s:?}: missing ] after IPv6 address")
                })?;
                let port = after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("invalid address {s:?}: missing :port"))?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!(
                        "invalid address {s:?}: {host:?} is not an IPv6 address"
                    ));
                }
                (host, port)
            } else {
                rest.rsplit_once(':')
                    .ok_or_else(|| format!("invalid address {s:?}: missing :port"))?
            };
            if host.contains(['/', '[', ']']) || (host.contains(':') && !rest.starts_with('[')) {
                return Err(format!(
                    "invalid address {s:?}: bad host {host:?} (bracket IPv6 addresses: [::1])"
                ));
            }
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid address {s:?}: bad port {port:?}"))?;
            Ok(ListenAddr::Tcp {
                host: host.to_owned(),
                port,
                tls: scheme == "tls",
            })
        }
        other => Err(format!(
            "invalid address {s:?}: unknown scheme {other:?} (use tcp, tls or unix)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("-1s").is_err());
        assert!(duration("5").is_err());
        assert!(duration("5x").is_err());
        assert!(duration("").is_err());
        assert!(duration("h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(data_size("32M"), Ok(32 << 20));
        assert_eq!(data_size("1G512M"), Ok((1 << 30) + (512 << 20)));
        assert_eq!(data_size("4096"), Ok(4096));
        assert_eq!(data_size("10k"), Ok(10240));
        assert!(data_size("M").is_err());
        assert!(data_size("5X").is_err());
        assert!(data_size("99999999999G").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            listen_addr("tcp://0.0.0.0:25"),
            Ok(ListenAddr::Tcp {
                host: "0.0.0.0".into(),
                port: 25,
                tls: false
            })
        );
        assert_eq!(
            listen_addr("tls://[::]:465"),
            Ok(ListenAddr::Tcp {
                host: "::".into(),
                port: 465,
                tls: true
            })
        );
        assert_eq!(
            listen_addr("tls://[::]:465").map(|a| a.to_string()),
            Ok("tls://[::]:465".into())
        );
        assert_eq!(
            listen_addr("unix:///run/lmtp.sock"),
            Ok(ListenAddr::Unix("/run/lmtp.sock".into()))
        );
        assert!(listen_addr("tcp://::1:25").is_err());
        assert!(listen_addr("tcp://host").is_err());
        assert!(listen_addr("tcp://host:99999").is_err());
        assert!(listen_addr("udp://host:1").is_err());
        assert!(listen_addr("host:25").is_err());
    }
}

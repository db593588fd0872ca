//! The `tls.loader.acme` block: maddy's directives first, then madmail's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use madmail_config::{Error, Node};
use madmail_dns::DnsProvider;
use madmail_module::decode::{no_block, single};
use madmail_module::delivery::DeliveryTarget;
use madmail_module::globals::relative_to_file;
use madmail_module::values::ListenAddr;
use madmail_module::{Block, Ctx, Definition, Errors};

use crate::export::ExportConfig;
use crate::notify::NotifyConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// An ACME challenge type, in the order of preference the configuration gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChallengeKind {
    #[serde(rename = "dns-01")]
    Dns01,
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    fn parse(s: &str) -> Option<ChallengeKind> {
        [
            ChallengeKind::Dns01,
            ChallengeKind::Http01,
            ChallengeKind::TlsAlpn01,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn acme(self) -> instant_acme::ChallengeType {
        match self {
            ChallengeKind::Dns01 => instant_acme::ChallengeType::Dns01,
            ChallengeKind::Http01 => instant_acme::ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
        }
    }
}

/// The private key type of ordered certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa4096,
}

impl KeyType {
    const NAMES: [&'static str; 4] = ["ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa4096"];

    fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            "rsa2048" => KeyType::Rsa2048,
            "rsa4096" => KeyType::Rsa4096,
            _ => return None,
        })
    }
}

/// External account binding (RFC 8555 §7.3.4): the key id and the decoded HMAC key.
#[derive(Clone)]
pub struct Eab {
    pub key_id: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A decoded `tls.loader.acme` block.
#[derive(Clone)]
pub struct AcmeConfig {
    /// The instance name (or `tls.loader.acme` for an inline one), for logs and `--loader`.
    pub label: String,
    pub debug: bool,
    pub hostname: String,
    /// `hostname` then `extra_names`, lowercase, without duplicates.
    pub names: Vec<String>,
    pub store_path: PathBuf,
    pub runtime_dir: PathBuf,
    pub ca: String,
    pub test_ca: Option<String>,
    pub staging: bool,
    pub override_domain: Option<String>,
    pub email: Option<String>,
    pub challenges: Vec<ChallengeKind>,
    pub dns: Option<Arc<dyn DnsProvider>>,
    pub trusted_roots: Vec<CertificateDer<'static>>,
    pub key_type: KeyType,
    pub reuse_key: bool,
    pub eab: Option<Eab>,
    pub http_listen: ListenAddr,
    pub tls_alpn_listen: Option<ListenAddr>,
    pub renew_before: Option<Duration>,
    pub check_interval: Duration,
    pub renewal_timeout: Duration,
    pub propagation_timeout: Duration,
    pub propagation_delay: Duration,
    /// Resolvers for the propagation check instead of the authoritative nameservers.
    pub resolvers: Vec<madmail_dns::ServerAddr>,
    /// `notify_*`: who hears about certificate events.
    pub notify: NotifyConfig,
    /// `export_path`, `export_owner`, `export_group`.
    pub export: Option<ExportConfig>,
}

impl std::fmt::Debug for AcmeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeConfig")
            .field("label", &self.label)
            .field("names", &self.names)
            .field("ca", &self.ca)
            .field("challenges", &self.challenges)
            .finish_non_exhaustive()
    }
}

impl AcmeConfig {
    /// The CA certificates are ordered from: `test_ca` with `staging`, else `ca`.
    pub fn issuing_ca(&self) -> &str {
        match (&self.test_ca, self.staging) {
            (Some(test), true) => test,
            _ => &self.ca,
        }
    }

    /// The CA a failed attempt is rehearsed against before `ca` is tried again.
    pub fn rehearsal_ca(&self) -> Option<&str> {
        match (&self.test_ca, self.staging) {
            (Some(test), false) if *test != self.ca => Some(test),
            _ => None,
        }
    }
}

const MODULE: &str = "tls.loader.acme";

pub fn decode(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<AcmeConfig, Errors> {
    let mut errors = Errors::new();
    for arg in def.args {
        errors.push(Error::at(
            &arg.pos,
            format!("{MODULE} takes no arguments; configure it in its block"),
        ));
    }
    let globals = ctx.globals();
    let mut block = Block::new(def.node, globals.clone());

    // maddy's directives.
    let debug = block.flag("debug").inherit().default(false);
    let hostname = block
        .custom("hostname", single_dns_name)
        .inherit()
        .required();
    let extra_names = block
        .custom("extra_names", |n| {
            no_block(n)?;
            if n.args.is_empty() {
                return Err(Errors::at(&n.pos, "extra_names needs at least one name"));
            }
            let mut errors = Errors::new();
            let mut names = Vec::new();
            for i in 0..n.args.len() {
                match dns_name(n, i, true) {
                    Ok(name) => names.push((name, n.arg_pos(i).clone())),
                    Err(e) => errors.push(e),
                }
            }
            errors.into_result(names)
        })
        .default(Vec::new());
    let store_path = block
        .custom("store_path", |n| {
            let v = single(n)?;
            relative_to_file(n, v, 0)
        })
        .optional()
        .unwrap_or_else(|| globals.state_dir.join("acme"));
    let ca = block.custom("ca", directory_url).optional();
    let test_ca = block.custom("test_ca", directory_url).optional();
    let override_domain = block.custom("override_domain", single_dns_name).optional();
    let email = block
        .custom("email", |n| {
            let v = single(n)?;
            match v.split_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    Ok(v.to_owned())
                }
                _ => Err(Error::at(
                    n.arg_pos(0),
                    format!("email: {v:?} is not an email address"),
                )),
            }
        })
        .optional();
    let agreed = block.flag("agreed").default(false);
    let challenges = block.custom("challenge", challenge_list).required();
    let dns_node = block.all("dns");
    let mut dns = None;
    if let Some((first, rest)) = dns_node.split_first() {
        for dup in rest {
            errors.push(Error::at(
                &dup.pos,
                format!("duplicate directive dns (first at {})", first.pos),
            ));
        }
        if first.args.is_empty() {
            errors.push(Error::at(
                &first.pos,
                "dns needs a provider: dns PROVIDER { ... } or dns &name",
            ));
        } else {
            match ctx.module_from::<dyn DnsProvider>(first, 0, "libdns") {
                Ok(provider) => dns = Some((provider, first.pos.clone())),
                Err(e) => errors.extend(e),
            }
        }
    }

    // madmail's.
    let staging = block.flag("staging").default(false);
    let trusted_roots = block
        .custom("trusted_roots", trusted_roots)
        .default(Vec::new());
    let key_type = block
        .custom("key_type", |n| {
            let v = single(n)?;
            KeyType::parse(v).ok_or_else(|| {
                Error::at(
                    n.arg_pos(0),
                    format!(
                        "key_type must be one of {}, not {v:?}",
                        KeyType::NAMES.join(", ")
                    ),
                )
            })
        })
        .default(KeyType::EcdsaP256);
    let reuse_key = block.flag("reuse_key").default(false);
    let eab = block.custom("eab", eab).optional();
    let http_listen = block
        .custom("http_listen", |n| plain_tcp(n, false))
        .optional();
    let tls_alpn_listen = block
        .custom("tls_alpn_listen", |n| plain_tcp(n, true))
        .optional();
    let renew_before = block.duration("renew_before").optional();
    let check_interval = block
        .duration("check_interval")
        .default(Duration::from_secs(3600));
    let renewal_timeout = block
        .duration("renewal_timeout")
        .default(Duration::from_secs(300));
    let propagation_timeout = block
        .duration("propagation_timeout")
        .default(Duration::from_secs(120));
    let propagation_delay = block.duration("propagation_delay").default(Duration::ZERO);
    let resolvers = block.custom("resolvers", resolvers).default(Vec::new());
    let notify_before = block.custom("notify_before", notify_before).default(
        NotifyConfig::DEFAULT_BEFORE_DAYS
            .iter()
            .map(|d| Duration::from_secs(d * 86_400))
            .collect(),
    );
    let notify_to = block
        .custom("notify_to", |n| {
            no_block(n)?;
            if n.args.is_empty() {
                return Err(Error::at(&n.pos, "notify_to needs at least one address"));
            }
            let mut out = Vec::new();
            for (i, arg) in n.args.iter().enumerate() {
                match arg.value.split_once('@') {
                    Some((l, d))
                        if !l.is_empty()
                            && !d.is_empty()
                            && !arg.value.contains(['<', '>', ',', ' ']) =>
                    {
                        out.push(arg.value.clone())
                    }
                    _ => {
                        return Err(Error::at(
                            n.arg_pos(i),
                            format!("notify_to: {:?} is not an email address", arg.value),
                        ));
                    }
                }
            }
            Ok(out)
        })
        .default(Vec::new());
    let notify_deliver_to = match block.all("notify_deliver_to").as_slice() {
        [] => None,
        [node, rest @ ..] => {
            for dup in rest {
                errors.push(Error::at(
                    &dup.pos,
                    format!(
                        "duplicate directive notify_deliver_to (first at {})",
                        node.pos
                    ),
                ));
            }
            if node.args.is_empty() {
                errors.push(Error::at(
                    &node.pos,
                    "notify_deliver_to needs a delivery target: notify_deliver_to &name",
                ));
                None
            } else {
                match ctx.module_from::<dyn DeliveryTarget>(node, 0, "target") {
                    Ok(target) => Some((target, node.pos.clone())),
                    Err(e) => {
                        errors.extend(e);
                        None
                    }
                }
            }
        }
    };
    let notify_webhook = block.custom("notify_webhook", webhook_url).optional();
    let notify_webhook_secret = block
        .custom("notify_webhook_secret", |n| {
            let v = single(n)?;
            if v.is_empty() {
                return Err(Error::at(n.arg_pos(0), "notify_webhook_secret is empty"));
            }
            Ok(v.as_bytes().to_vec())
        })
        .optional();
    let notify_command = block
        .custom("notify_command", |n| {
            no_block(n)?;
            let Some(program) = n.args.first() else {
                return Err(Error::at(&n.pos, "notify_command needs a program to run"));
            };
            if !Path::new(&program.value).is_absolute() {
                return Err(Error::at(
                    &program.pos,
                    format!(
                        "notify_command: {:?} must be an absolute path (the server's PATH is not the shell's)",
                        program.value
                    ),
                ));
            }
            Ok(n.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>())
        })
        .optional();
    let notify_command_timeout = block
        .duration("notify_command_timeout")
        .default(NotifyConfig::DEFAULT_COMMAND_TIMEOUT);
    let export_path = block
        .custom("export_path", |n| {
            let v = single(n)?;
            relative_to_file(n, v, 0)
        })
        .optional();
    let export_owner = block
        .custom("export_owner", |n| {
            crate::export::id_directive(n, Path::new("/etc/passwd"))
        })
        .optional();
    let export_group = block
        .custom("export_group", |n| {
            crate::export::id_directive(n, Path::new("/etc/group"))
        })
        .optional();

    // Checks across directives, reported at the directive that has to change.
    let node = def.node;
    if !agreed {
        let pos = node
            .children()
            .iter()
            .find(|c| c.name == "agreed")
            .map_or(&node.pos, |c| &c.pos);
        errors.push(Error::at(
            pos,
            format!(
                "{MODULE}: the CA's terms of service must be accepted: read them (for Let's Encrypt: https://letsencrypt.org/repository/) and add the directive agreed"
            ),
        ));
    }
    let position = |name: &str| {
        node.children()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.pos.clone())
            .unwrap_or_else(|| node.pos.clone())
    };
    if !notify_to.is_empty() && notify_deliver_to.is_none() {
        errors.push(Error::at(
            &position("notify_to"),
            "notify_to needs notify_deliver_to &target: the delivery target notices go through (e.g. a target.smtp or storage block)",
        ));
    }
    if notify_to.is_empty()
        && let Some((_, pos)) = &notify_deliver_to
    {
        errors.push(Error::at(
            pos,
            "notify_deliver_to is only used with notify_to, which is not set",
        ));
    }
    if notify_webhook_secret.is_some() && notify_webhook.is_none() {
        errors.push(Error::at(
            &position("notify_webhook_secret"),
            "notify_webhook_secret is only used with notify_webhook, which is not set",
        ));
    }
    if (export_owner.is_some() || export_group.is_some()) && export_path.is_none() {
        let name = if export_owner.is_some() {
            "export_owner"
        } else {
            "export_group"
        };
        errors.push(Error::at(
            &position(name),
            format!("{name} is only used with export_path, which is not set"),
        ));
    }
    for (name, value) in [
        ("check_interval", check_interval),
        ("renewal_timeout", renewal_timeout),
        ("notify_command_timeout", notify_command_timeout),
    ] {
        if value.is_zero() {
            errors.push(Error::at(
                &position(name),
                format!("{name} must be longer than 0"),
            ));
        }
    }
    let ca = ca.unwrap_or_else(|| LETS_ENCRYPT.to_owned());
    let test_ca = test_ca.or_else(|| (ca == LETS_ENCRYPT).then(|| LETS_ENCRYPT_STAGING.to_owned()));
    if staging && test_ca.is_none() {
        errors.push(Error::at(
            &position("staging"),
            "staging uses test_ca as the CA, but there is none: set test_ca (it defaults to Let's Encrypt staging only when ca is Let's Encrypt)",
        ));
    }
    let mut names: Vec<(String, madmail_config::Pos)> = Vec::new();
    if let Some(h) = &hostname {
        names.push((h.clone(), position("hostname")));
    }
    for (name, pos) in extra_names {
        if !names.iter().any(|(n, _)| *n == name) {
            names.push((name, pos));
        }
    }
    let challenges = challenges.unwrap_or_default();
    if !challenges.is_empty() {
        let dns01 = challenges.contains(&ChallengeKind::Dns01);
        if dns01 && dns.is_none() {
            errors.push(Error::at(
                &position("challenge"),
                format!(
                    "{MODULE}: the dns-01 challenge needs a DNS provider: dns PROVIDER {{ ... }}"
                ),
            ));
        }
        if !dns01 {
            for (name, pos) in &names {
                if name.starts_with("*.") {
                    errors.push(Error::at(
                        pos,
                        format!(
                            "{name}: a wildcard name can only be validated with the dns-01 challenge"
                        ),
                    ));
                }
            }
            if let Some((_, pos)) = &dns {
                errors.push(Error::at(
                    pos,
                    "dns is only used by the dns-01 challenge, which challenge does not list",
                ));
            }
            if override_domain.is_some() {
                errors.push(Error::at(
                    &position("override_domain"),
                    "override_domain is only used by the dns-01 challenge, which challenge does not list",
                ));
            }
        }
        if tls_alpn_listen.is_some() && !challenges.contains(&ChallengeKind::TlsAlpn01) {
            errors.push(Error::at(
                &position("tls_alpn_listen"),
                "tls_alpn_listen is only used by the tls-alpn-01 challenge, which challenge does not list",
            ));
        }
    }
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    let Some(hostname) = hostname else {
        return Err(Errors::new());
    };
    let notice_host = globals.hostname.clone().unwrap_or_else(|| hostname.clone());
    Ok(AcmeConfig {
        label: def.label(),
        debug,
        hostname,
        names: names.into_iter().map(|(n, _)| n).collect(),
        store_path,
        runtime_dir: globals.runtime_dir.clone(),
        ca,
        test_ca,
        staging,
        override_domain,
        email,
        challenges,
        dns: dns.map(|(p, _)| p),
        trusted_roots,
        key_type,
        reuse_key,
        eab,
        http_listen: http_listen.unwrap_or(ListenAddr::Tcp {
            host: "0.0.0.0".into(),
            port: 80,
            tls: false,
        }),
        tls_alpn_listen,
        renew_before,
        check_interval,
        renewal_timeout,
        propagation_timeout,
        propagation_delay,
        resolvers,
        notify: NotifyConfig {
            before: notify_before,
            to: notify_to,
            deliver_to: notify_deliver_to.map(|(t, _)| t),
            from: format!("postmaster@{notice_host}"),
            hostname: notice_host,
            webhook: notify_webhook,
            webhook_secret: notify_webhook_secret,
            command: notify_command,
            command_timeout: notify_command_timeout,
        },
        export: export_path.map(|dir| ExportConfig {
            dir,
            owner: export_owner,
            group: export_group,
        }),
    })
}

/// `notify_before DURATION...`: thresholds, largest first, without duplicates.
fn notify_before(n: &Node) -> Result<Vec<Duration>, Error> {
    no_block(n)?;
    if n.args.is_empty() {
        return Err(Error::at(
            &n.pos,
            "notify_before needs at least one duration",
        ));
    }
    let mut out = Vec::new();
    for (i, arg) in n.args.iter().enumerate() {
        let d = madmail_module::values::duration(&arg.value)
            .map_err(|e| Error::at(n.arg_pos(i), format!("notify_before: {e}")))?;
        if d.is_zero() {
            return Err(Error::at(
                n.arg_pos(i),
                "notify_before: a threshold must be longer than 0",
            ));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ok(out)
}

/// `notify_webhook URL`: http or https with a host.
fn webhook_url(n: &Node) -> Result<String, Error> {
    let v = single(n)?;
    let uri: http::Uri = v.parse().map_err(|e| {
        Error::at(
            n.arg_pos(0),
            format!("notify_webhook: {v:?} is not a URL: {e}"),
        )
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(v.to_owned()),
        _ => Err(Error::at(
            n.arg_pos(0),
            format!("notify_webhook: {v:?}: expected an http:// or https:// URL"),
        )),
    }
}

fn single_dns_name(n: &Node) -> Result<String, Error> {
    single(n)?;
    dns_name(n, 0, false)
}

/// Argument `i` of `n` as a DNS name (lowercase, no trailing dot); `*.` allowed with
/// `wildcard`.
fn dns_name(n: &Node, i: usize, wildcard: bool) -> Result<String, Error> {
    let Some(arg) = n.args.get(i) else {
        return Err(Error::at(&n.pos, format!("{} needs a value", n.name)));
    };
    let name = arg.value.trim_end_matches('.').to_ascii_lowercase();
    let host = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => {
            return Err(Error::at(
                &arg.pos,
                format!("{}: {:?} can't be a wildcard name", n.name, arg.value),
            ));
        }
        None => &name,
    };
    let valid = host.contains('.') || host == "localhost";
    if !valid
        || host.parse::<std::net::IpAddr>().is_ok()
        || rustls::pki_types::DnsName::try_from(host).is_err()
    {
        return Err(Error::at(
            &arg.pos,
            format!(
                "{}: {:?} is not a DNS name a CA can issue for",
                n.name, arg.value
            ),
        ));
    }
    Ok(name)
}

/// An ACME directory URL: https, or http on a loopback address (test servers).
fn directory_url(n: &Node) -> Result<String, Error> {
    let v = single(n)?;
    let bad = |why: &str| Error::at(n.arg_pos(0), format!("{}: {v:?}: {why}", n.name));
    let Some((scheme, rest)) = v.split_once("://") else {
        return Err(bad("expected an https:// URL of the CA's ACME directory"));
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    match scheme {
        "https" => Ok(v.to_owned()),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(v.to_owned())
            } else {
                Err(bad(
                    "ACME needs https (plain http is accepted only on loopback addresses, for tests)",
                ))
            }
        }
        _ => Err(bad("expected an https:// URL of the CA's ACME directory")),
    }
}

fn challenge_list(n: &Node) -> Result<Vec<ChallengeKind>, Errors> {
    no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(
            &n.pos,
            "challenge needs 1 to 3 of dns-01, http-01, tls-alpn-01 (in order of preference)",
        ));
    }
    let mut errors = Errors::new();
    let mut kinds = Vec::new();
    for arg in &n.args {
        match ChallengeKind::parse(&arg.value) {
            Some(k) if kinds.contains(&k) => {
                errors.push(Error::at(
                    &arg.pos,
                    format!("challenge: {} is listed twice", arg.value),
                ));
            }
            Some(k) => kinds.push(k),
            None => errors.push(Error::at(
                &arg.pos,
                format!(
                    "challenge: unknown challenge type {:?} (use dns-01, http-01 or tls-alpn-01)",
                    arg.value
                ),
            )),
        }
    }
    errors.into_result(kinds)
}

fn trusted_roots(n: &Node) -> Result<Vec<CertificateDer<'static>>, Errors> {
    no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(
            &n.pos,
            "trusted_roots needs at least one PEM file",
        ));
    }
    let mut errors = Errors::new();
    let mut roots = Vec::new();
    for (i, arg) in n.args.iter().enumerate() {
        let path = match relative_to_file(n, &arg.value, i) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                errors.push(Error::at(
                    &arg.pos,
                    format!("trusted_roots: {}: {e}", path.display()),
                ));
                continue;
            }
        };
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if certs.is_empty() => errors.push(Error::at(
                &arg.pos,
                format!(
                    "trusted_roots: {}: no PEM certificate found",
                    path.display()
                ),
            )),
            Ok(certs) => roots.extend(certs),
            Err(e) => errors.push(Error::at(
                &arg.pos,
                format!("trusted_roots: {}: {e}", path.display()),
            )),
        }
    }
    errors.into_result(roots)
}

fn eab(n: &Node) -> Result<Eab, Error> {
    use base64::Engine;
    no_block(n)?;
    let [key_id, hmac] = n.args.as_slice() else {
        return Err(Error::at(
            &n.pos,
            "eab needs two values: eab KEY_ID HMAC_KEY (as the CA gives them)",
        ));
    };
    // CAs hand out the HMAC key base64url-encoded, usually without padding.
    let trimmed = hmac.value.trim_end_matches('=');
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| {
            Error::at(
                &hmac.pos,
                format!("eab: the HMAC key is not base64url: {e}"),
            )
        })?;
    if decoded.is_empty() || key_id.value.is_empty() {
        return Err(Error::at(&n.pos, "eab: empty key id or HMAC key"));
    }
    Ok(Eab {
        key_id: key_id.value.clone(),
        hmac_key: decoded,
    })
}

/// `tcp://host:port` (`tls://` too for tls-alpn-01, where both mean the same).
fn plain_tcp(n: &Node, tls_ok: bool) -> Result<ListenAddr, Error> {
    let v = single(n)?;
    let addr = madmail_module::values::listen_addr(v)
        .map_err(|e| Error::at(n.arg_pos(0), format!("{}: {e}", n.name)))?;
    match addr {
        ListenAddr::Tcp { tls: true, .. } if !tls_ok => Err(Error::at(
            n.arg_pos(0),
            format!("{}: http-01 is plain HTTP: use tcp://, not tls://", n.name),
        )),
        ListenAddr::Unix(_) => Err(Error::at(
            n.arg_pos(0),
            format!("{}: the CA connects over TCP: use tcp://host:port", n.name),
        )),
        addr => Ok(addr),
    }
}

fn resolvers(n: &Node) -> Result<Vec<madmail_dns::ServerAddr>, Errors> {
    no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(
            &n.pos,
            "resolvers needs at least one HOST[:PORT]",
        ));
    }
    let mut errors = Errors::new();
    let mut out = Vec::new();
    for arg in &n.args {
        match madmail_dns::ServerAddr::parse(&arg.value) {
            Ok(addr) => out.push(addr),
            Err(e) => errors.push(Error::at(&arg.pos, format!("resolvers: {e}"))),
        }
    }
    errors.into_result(out)
}

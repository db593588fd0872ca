//! `madmail cert test`: checks that an order would get through, each reported ok or FAIL with
//! the reason and what to do about it. Everything is really tried (the directory fetched, the
//! account used, the port bound, names resolved, CAA read, a TXT record published, seen and
//! removed); `--dry-run` runs a whole order against the test CA.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use madmail_dns::{PropagationOptions, TxtRecord};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::ChallengeKind;
use crate::loader::{AcmeLoader, Outcome};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub loader: String,
    /// What was checked (`directory`, `account`, `http-01 listener`, `resolve mx.example.org`...).
    pub check: String,
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
    /// What to do about a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

struct Checks {
    loader: String,
    list: Vec<Check>,
}

impl Checks {
    fn ok(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.list.push(Check {
            loader: self.loader.clone(),
            check: check.into(),
            ok: true,
            detail: detail.into(),
            hint: None,
        });
    }

    fn fail(
        &mut self,
        check: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.list.push(Check {
            loader: self.loader.clone(),
            check: check.into(),
            ok: false,
            detail: detail.into(),
            hint: Some(hint.into()),
        });
    }
}

/// Runs the checks of `loader` (for the certificates with `name`, or all).
pub async fn run(loader: &Arc<AcmeLoader>, name: Option<&str>, dry_run: bool) -> Vec<Check> {
    let engine = loader.engine().clone();
    let cfg = engine.cfg.clone();
    let mut checks = Checks {
        loader: cfg.label.clone(),
        list: Vec::new(),
    };
    let ca = cfg.issuing_ca().to_owned();
    let deadline = Instant::now() + cfg.renewal_timeout.min(Duration::from_secs(120));
    let groups = loader.groups(name);
    let names: Vec<String> = groups.iter().flat_map(|g| g.names.clone()).collect();

    let directory = match engine.directory(&ca, deadline).await {
        Ok(d) => {
            let terms = d
                .meta
                .terms_of_service
                .as_ref()
                .map(|t| format!("; terms of service: {t}"))
                .unwrap_or_default();
            checks.ok("directory", format!("{ca} answers{terms}"));
            Some(d)
        }
        Err(e) => {
            checks.fail(
                "directory",
                e.to_string(),
                "check ca (the directory URL), the network path to the CA, and trusted_roots for a private CA",
            );
            None
        }
    };
    if let Some(d) = &directory {
        if d.meta.external_account_required && cfg.eab.is_none() {
            checks.fail(
                "external account",
                "the CA requires external account binding",
                "add eab KEY_ID HMAC_KEY with the values from the CA's account page",
            );
        }
        match engine.account(&ca, deadline).await {
            Ok(account) => checks.ok("account", format!("account {}", account.id())),
            Err(e) => checks.fail(
                "account",
                e.to_string(),
                "check email and eab; remove the stored account under store_path/accounts to register anew",
            ),
        }
    }

    for kind in &cfg.challenges {
        match kind {
            ChallengeKind::Http01 => {
                match engine.bind_listeners().await {
                    Ok(()) => checks.ok("http-01 listener", format!("listening on {}", cfg.http_listen)),
                    Err(e) => checks.fail(
                        "http-01 listener",
                        e,
                        "port 80 needs root or CAP_NET_BIND_SERVICE and no other web server on it; or set http_listen and forward port 80 there",
                    ),
                }
                resolve_names(&mut checks, &names, 80).await;
            }
            ChallengeKind::TlsAlpn01 => {
                match &cfg.tls_alpn_listen {
                    Some(addr) => match engine.bind_listeners().await {
                        Ok(()) => checks.ok("tls-alpn-01 listener", format!("listening on {addr}")),
                        Err(e) => checks.fail(
                            "tls-alpn-01 listener",
                            e,
                            "port 443 needs root or CAP_NET_BIND_SERVICE and nothing else on it; or forward port 443 to tls_alpn_listen",
                        ),
                    },
                    None => checks.ok(
                        "tls-alpn-01 listener",
                        "no tls_alpn_listen: an implicit-TLS endpoint on port 443 using this loader must answer acme-tls/1",
                    ),
                }
                resolve_names(&mut checks, &names, 443).await;
            }
            ChallengeKind::Dns01 => {
                for group in &groups {
                    dns_round_trip(&mut checks, &engine.cfg, &group.names[0]).await;
                }
            }
        }
    }

    if let Some(d) = &directory {
        for name in &names {
            caa(&mut checks, name, &d.meta.caa_identities).await;
        }
    }

    if dry_run {
        for (names, outcome) in loader.dry_run(name).await {
            let label = format!("dry run {}", names.join(", "));
            match outcome {
                Outcome::DryRun { ca, serial } => checks.ok(
                    label,
                    format!("{ca} issued serial {serial} (not stored, not served)"),
                ),
                Outcome::Failed { error } => checks.fail(
                    label,
                    error,
                    "the checks above usually say why; run with debug to see every step",
                ),
                other => checks.ok(label, format!("{other:?}")),
            }
        }
    }
    checks.list
}

async fn resolve_names(checks: &mut Checks, names: &[String], port: u16) {
    for name in names.iter().filter(|n| !n.starts_with("*.")) {
        match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(addrs) => {
                let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                ips.dedup();
                if ips.is_empty() {
                    checks.fail(
                        format!("resolve {name}"),
                        "no address",
                        "add A/AAAA records pointing at this server: the CA connects there",
                    );
                } else {
                    checks.ok(format!("resolve {name}"), ips.join(", "));
                }
            }
            Err(e) => checks.fail(
                format!("resolve {name}"),
                e.to_string(),
                "add A/AAAA records pointing at this server: the CA connects there",
            ),
        }
    }
}

/// Publishes a test TXT value where the dns-01 record would go, waits to see it, removes it.
async fn dns_round_trip(checks: &mut Checks, cfg: &crate::config::AcmeConfig, name: &str) {
    let label = format!("dns-01 {name}");
    let Some(provider) = cfg.dns.clone() else {
        checks.fail(label, "no DNS provider", "add dns PROVIDER { ... }");
        return;
    };
    let base = name.strip_prefix("*.").unwrap_or(name);
    let checked = format!("_acme-challenge.{base}.");
    let fqdn = cfg
        .override_domain
        .as_ref()
        .map_or_else(|| checked.clone(), |d| format!("{d}."));
    // Shaped like a real dns-01 value (43 base64url characters: a SHA-256 digest), which some
    // providers insist on (acme-dns refuses anything else).
    let value = preflight_value();
    let zone = match provider.zone_for(&fqdn).await {
        Ok(z) => z,
        Err(e) => {
            checks.fail(
                label,
                e.to_string(),
                "check that the provider manages the zone of this name (or override_domain)",
            );
            return;
        }
    };
    let record = TxtRecord {
        fqdn: fqdn.clone(),
        value: value.clone(),
        ttl: Duration::from_secs(60),
    };
    if let Err(e) = provider.append(&zone, &record).await {
        checks.fail(
            label,
            e.to_string(),
            "check the provider's credentials and their permissions on the zone",
        );
        return;
    }
    let options = PropagationOptions {
        timeout: if cfg.propagation_timeout.is_zero() {
            Duration::from_secs(120)
        } else {
            cfg.propagation_timeout
        },
        delay: cfg.propagation_delay,
        resolvers: cfg.resolvers.clone(),
        ..PropagationOptions::default()
    };
    let seen = madmail_dns::wait_until_visible(&checked, &value, &options).await;
    let removed = provider.delete(&zone, &record).await;
    match (seen, removed) {
        (Ok(()), Ok(())) => checks.ok(label, format!("TXT {fqdn} published in {zone}, seen, removed")),
        (Err(e), _) => checks.fail(
            label,
            e.to_string(),
            "the servers checked did not serve the value in time: raise propagation_timeout, check resolvers, or the CNAME for override_domain",
        ),
        (Ok(()), Err(e)) => checks.fail(
            label,
            format!("published and seen, but not removed: {e}"),
            "remove the test record by hand and check the provider's delete permission",
        ),
    }
}

/// RFC 8659: the closest CAA record set above `name` must let one of the CA's identities
/// issue (or say nothing about issuing).
async fn caa(checks: &mut Checks, name: &str, identities: &[String]) {
    let label = format!("CAA {name}");
    let resolver = match TokioResolver::builder_tokio() {
        Ok(b) => b.build(),
        Err(e) => {
            checks.fail(label, format!("no resolver: {e}"), "check /etc/resolv.conf");
            return;
        }
    };
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => {
            checks.fail(label, format!("no resolver: {e}"), "check /etc/resolv.conf");
            return;
        }
    };
    let wildcard = name.starts_with("*.");
    let mut domain = name.trim_start_matches("*.").to_owned();
    loop {
        match resolver.lookup(format!("{domain}."), RecordType::CAA).await {
            Ok(found) => {
                let records: Vec<_> = found
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::CAA(caa) => Some(caa.clone()),
                        _ => None,
                    })
                    .collect();
                if !records.is_empty() {
                    let tag = if wildcard
                        && records
                            .iter()
                            .any(|c| c.tag.eq_ignore_ascii_case("issuewild"))
                    {
                        "issuewild"
                    } else {
                        "issue"
                    };
                    let issuers: Vec<String> = records
                        .iter()
                        .filter(|c| c.tag.eq_ignore_ascii_case(tag))
                        .map(|c| {
                            c.value_as_issue()
                                .ok()
                                .and_then(|(n, _)| n)
                                .map(|n| n.to_string().trim_end_matches('.').to_ascii_lowercase())
                                .unwrap_or_default()
                        })
                        .collect();
                    if issuers.is_empty() {
                        checks.ok(label, format!("CAA at {domain} does not restrict issuance"));
                    } else if identities.is_empty() {
                        checks.ok(label, format!("CAA at {domain} allows {}; the CA publishes no identities to compare", issuers.join(", ")));
                    } else if issuers
                        .iter()
                        .any(|i| identities.iter().any(|id| id.eq_ignore_ascii_case(i)))
                    {
                        checks.ok(
                            label,
                            format!("CAA at {domain} allows {}", identities.join(", ")),
                        );
                    } else {
                        checks.fail(
                            label,
                            format!("CAA at {domain} allows only {}", issuers.join(", ")),
                            format!(
                                "add a CAA record: {domain}. CAA 0 {tag} \"{}\"",
                                identities.first().map_or("", String::as_str)
                            ),
                        );
                    }
                    return;
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {}
            Err(e) => {
                checks.fail(
                    label,
                    format!("CAA lookup of {domain}: {e}"),
                    "CAs refuse to issue when CAA can't be read: fix the DNS servers of the zone",
                );
                return;
            }
        }
        match domain.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => domain = parent.to_owned(),
            _ => break,
        }
    }
    checks.ok(label, "no CAA records: any CA may issue");
}

/// `cert test` for people.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {}: {}: {}\n", c.loader, c.check, c.detail));
        if let Some(h) = &c.hint {
            out.push_str(&format!("     hint: {h}\n"));
        }
    }
    if checks.is_empty() {
        out.push_str("nothing to check\n");
    }
    out
}

/// A random value shaped like a dns-01 key authorization digest: 32 bytes in unpadded base64url.
fn preflight_value() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&crate::schedule::random_u64().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

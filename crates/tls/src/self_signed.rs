//! `tls.loader.self_signed [NAMES...]`: a certificate made up in memory (ECDSA P-256) for
//! tests and local setups, as maddy's loader of the same name. Nobody can verify it; it only
//! lets clients that don't check certificates (or pin this one) use TLS.

use std::sync::Arc;
use std::time::Duration;

use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::certs::{CertError, KeyProblem, LoadedCert, certified_key, inspect};
use crate::{CertSet, CertificateSource, SniResolver};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "tls.loader.self_signed",
    kind: Kind::Named,
    build,
    summary: "TLS certificate loader: a self-signed certificate generated at start",
};

/// How long a generated certificate is valid. It is made anew at every start and reload; a
/// year keeps clients that check dates (but not the issuer) content on long-running servers.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let hostname = block.string("hostname").inherit().optional();
    block.finish()?;
    let names: Vec<String> = if def.args.is_empty() {
        vec![hostname.unwrap_or_else(|| "localhost".to_owned())]
    } else {
        def.args.iter().map(|a| a.value.clone()).collect()
    };
    let generated = generate_self_signed(&names).map_err(|e| {
        let pos = def.args.first().map_or(&def.node.pos, |a| &a.pos);
        Errors::at(pos, format!("{}: {e}", SPEC.name))
    })?;
    let mut set = CertSet::new();
    set.set_default(generated.key.clone());
    for name in &generated.names {
        set.insert(name, generated.key.clone());
    }
    tracing::debug!(names = ?generated.names, serial = %generated.serial, "generated self-signed certificate");
    let source = Arc::new(SelfSigned {
        resolver: Arc::new(SniResolver::new(set)),
    });
    Ok(Built::new(
        Capabilities::new().with::<dyn CertificateSource>(source),
    ))
}

struct SelfSigned {
    resolver: Arc<SniResolver>,
}

impl CertificateSource for SelfSigned {
    fn resolver(&self) -> Arc<SniResolver> {
        self.resolver.clone()
    }
}

/// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses; the first is
/// also the subject's common name), valid from an hour ago for a year, with a random serial.
/// The ACME loader uses the same as its placeholder until the first certificate arrives.
pub fn generate_self_signed(names: &[String]) -> Result<LoadedCert, CertError> {
    let generate = |e: rcgen::Error| CertError::Generate(e.to_string());
    for name in names {
        let host = name.strip_prefix("*.").unwrap_or(name);
        if name.parse::<std::net::IpAddr>().is_err()
            && rustls::pki_types::DnsName::try_from(host).is_err()
        {
            return Err(CertError::Generate(format!(
                "{name:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "madmail self-signed");
    if let Some(first) = names.first() {
        dn.push(rcgen::DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + VALIDITY;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CertError::Generate("no randomness".into()))?;
    // Positive (top bit clear) and without a leading zero byte, so it keeps 16 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let cert = params.self_signed(&key_pair).map_err(generate)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let info = inspect(&der).map_err(CertError::Generate)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let key = certified_key(vec![der], key, &crate::provider()).map_err(|e| match e {
        KeyProblem::Unusable(reason) => CertError::Generate(reason),
        KeyProblem::Mismatch => CertError::Generate("generated key does not match".into()),
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names: info.names,
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ips() {
        let cert = generate_self_signed(&["mx.example.org".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(cert.names, ["mx.example.org"]);
        assert_eq!(cert.serial.len(), 32);
        assert!(cert.not_after > std::time::SystemTime::now());
    }

    #[test]
    fn bad_name_is_an_error() {
        assert!(generate_self_signed(&["bad\u{1}name".into()]).is_err());
    }
}

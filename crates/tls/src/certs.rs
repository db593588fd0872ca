//! Reading a certificate chain and its private key from PEM into a rustls [`CertifiedKey`],
//! with the facts loaders log and select by (names, serial, validity).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// Why a certificate or key could not be used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no private key found (expected a PEM PKCS#8, PKCS#1 or SEC1 key)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{}: invalid certificate: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("generating a certificate: {0}")]
    Generate(String),
}

/// A certificate ready to serve.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// The DNS names it is for (subjectAltName, else the common name), lowercase, as found
    /// (wildcards as `*.example.org`).
    pub names: Vec<String>,
    /// Uppercase hex without colons, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Reads `cert_path` (PEM chain, end-entity first) and `key_path` (PEM key).
pub fn load_pem_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
    parse_pem(&cert_pem, &key_pem, cert_path, key_path)
}

pub(crate) fn read_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

/// Builds a [`LoadedCert`] from PEM text; the paths are only for messages. The key may be
/// PKCS#8, PKCS#1 (RSA) or SEC1 (EC) and must match the end-entity certificate.
pub fn parse_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(end_entity) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
        });
    };
    let info = inspect(end_entity).map_err(|reason| CertError::Certificate {
        path: cert_path.to_owned(),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoKey {
            path: key_path.to_owned(),
        },
        e => CertError::Pem {
            path: key_path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let key = certified_key(chain, key, &crate::provider()).map_err(|e| match e {
        KeyProblem::Unusable(reason) => CertError::Key {
            path: key_path.to_owned(),
            reason,
        },
        KeyProblem::Mismatch => CertError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        },
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names: info.names,
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

pub(crate) enum KeyProblem {
    Unusable(String),
    Mismatch,
}

/// The chain with its key, checked to belong together.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, KeyProblem> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| KeyProblem::Unusable(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // Unknown: the key type can't tell its public key; nothing to compare then.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(KeyProblem::Mismatch),
        Err(e) => Err(KeyProblem::Unusable(e.to_string())),
    }
}

pub(crate) struct CertInfo {
    pub names: Vec<String>,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

pub(crate) fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                push_name(&mut names, dns);
            }
        }
    }
    if names.is_empty() {
        // Certificates without subjectAltName are obsolete, but still seen in private setups.
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                push_name(&mut names, cn);
            }
        }
    }
    let serial = serial_hex(cert.raw_serial());
    let validity = cert.validity();
    Ok(CertInfo {
        names,
        serial,
        not_before: unix_time(validity.not_before.timestamp()),
        not_after: unix_time(validity.not_after.timestamp()),
    })
}

fn push_name(names: &mut Vec<String>, name: &str) {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !name.is_empty() && !names.contains(&name) {
        names.push(name);
    }
}

/// The serial as a positive integer in hex (DER may add a leading zero byte for the sign).
fn serial_hex(raw: &[u8]) -> String {
    let significant = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    significant.iter().map(|b| format!("{b:02X}")).collect()
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_openssl_style() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8F01");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn garbage_is_reported_with_the_path() {
        let err = parse_pem(b"nothing", b"", "c.pem".as_ref(), "k.pem".as_ref()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.pem: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)"
        );
    }
}

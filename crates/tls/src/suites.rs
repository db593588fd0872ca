//! Names in the `protocols`, `ciphers` and `curves` TLS options, mapped to what rustls with
//! aws-lc-rs offers. maddy takes Go's names (`ECDHE-RSA-WITH-AES128-GCM-SHA256`, `p256`);
//! IANA / rustls names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `secp256r1`) are accepted
//! too. Names of things rustls deliberately lacks (CBC, RC4, 3DES, static RSA key exchange,
//! P-521, TLS 1.0/1.1) are known, so that the directive can drop them with a warning instead
//! of rejecting a working maddy configuration.

use rustls::SupportedCipherSuite;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{cipher_suite as cs, kx_group as kx};

pub(crate) enum Lookup<T> {
    Supported(T),
    /// A real name rustls does not implement, and why.
    Unsupported(&'static str),
    Unknown,
}

/// Upper case without separators or the `TLS` prefix, so Go's and IANA's spellings of a
/// suite meet (`ECDHE-RSA-WITH-AES128-GCM-SHA256` = `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
fn cipher_key(name: &str) -> String {
    let key: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    key.strip_prefix("TLS").map(str::to_owned).unwrap_or(key)
}

pub(crate) fn cipher_suite(name: &str) -> Lookup<SupportedCipherSuite> {
    use Lookup::{Supported, Unknown, Unsupported};
    const CBC: &str = "CBC mode suites are not implemented by rustls";
    const RC4: &str = "RC4 is broken and not implemented by rustls";
    const DES: &str = "3DES is obsolete and not implemented by rustls";
    const RSA_KX: &str =
        "static RSA key exchange (no forward secrecy) is not implemented by rustls";
    match cipher_key(name).as_str() {
        "ECDHEECDSAWITHAES128GCMSHA256" => Supported(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        "ECDHEECDSAWITHAES256GCMSHA384" => Supported(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        "ECDHEECDSAWITHCHACHA20POLY1305" | "ECDHEECDSAWITHCHACHA20POLY1305SHA256" => {
            Supported(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "ECDHERSAWITHAES128GCMSHA256" => Supported(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "ECDHERSAWITHAES256GCMSHA384" => Supported(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "ECDHERSAWITHCHACHA20POLY1305" | "ECDHERSAWITHCHACHA20POLY1305SHA256" => {
            Supported(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        // TLS 1.3: IANA `TLS_AES_128_GCM_SHA256`, rustls `TLS13_AES_128_GCM_SHA256`.
        "AES128GCMSHA256" | "13AES128GCMSHA256" => Supported(cs::TLS13_AES_128_GCM_SHA256),
        "AES256GCMSHA384" | "13AES256GCMSHA384" => Supported(cs::TLS13_AES_256_GCM_SHA384),
        "CHACHA20POLY1305SHA256" | "13CHACHA20POLY1305SHA256" => {
            Supported(cs::TLS13_CHACHA20_POLY1305_SHA256)
        }
        "RSAWITHRC4128SHA" | "ECDHEECDSAWITHRC4128SHA" | "ECDHERSAWITHRC4128SHA" => {
            Unsupported(RC4)
        }
        "RSAWITH3DESEDECBCSHA" | "ECDHERSAWITH3DESEDECBCSHA" => Unsupported(DES),
        "RSAWITHAES128CBCSHA"
        | "RSAWITHAES256CBCSHA"
        | "RSAWITHAES128CBCSHA256"
        | "ECDHEECDSAWITHAES128CBCSHA"
        | "ECDHEECDSAWITHAES256CBCSHA"
        | "ECDHERSAWITHAES128CBCSHA"
        | "ECDHERSAWITHAES256CBCSHA"
        | "ECDHEECDSAWITHAES128CBCSHA256"
        | "ECDHERSAWITHAES128CBCSHA256" => Unsupported(CBC),
        "RSAWITHAES128GCMSHA256" | "RSAWITHAES256GCMSHA384" => Unsupported(RSA_KX),
        _ => Unknown,
    }
}

/// The names to suggest when nothing usable was listed.
pub(crate) const USABLE_CIPHERS: &str = "ECDHE-ECDSA-WITH-AES128-GCM-SHA256, \
    ECDHE-ECDSA-WITH-AES256-GCM-SHA384, ECDHE-ECDSA-WITH-CHACHA20-POLY1305, \
    ECDHE-RSA-WITH-AES128-GCM-SHA256, ECDHE-RSA-WITH-AES256-GCM-SHA384, \
    ECDHE-RSA-WITH-CHACHA20-POLY1305";

pub(crate) fn kx_group(name: &str) -> Lookup<&'static dyn SupportedKxGroup> {
    use Lookup::{Supported, Unknown, Unsupported};
    let key: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match key.as_str() {
        "x25519" => Supported(kx::X25519),
        "p256" | "secp256r1" | "prime256v1" => Supported(kx::SECP256R1),
        "p384" | "secp384r1" => Supported(kx::SECP384R1),
        "x25519mlkem768" => Supported(kx::X25519MLKEM768),
        "p256mlkem768" | "secp256r1mlkem768" => Supported(kx::SECP256R1MLKEM768),
        "mlkem768" => Supported(kx::MLKEM768),
        "mlkem1024" => Supported(kx::MLKEM1024),
        "p521" | "secp521r1" => Unsupported("P-521 is not implemented by rustls"),
        _ => Unknown,
    }
}

/// A TLS version name: `Some(minor)` (0 for TLS 1.0 ... 3 for TLS 1.3).
pub(crate) fn tls_version(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tls1.0" => Some(0),
        "tls1.1" => Some(1),
        "tls1.2" => Some(2),
        "tls1.3" => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported(name: &str) -> Option<SupportedCipherSuite> {
        match cipher_suite(name) {
            Lookup::Supported(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn go_and_iana_names_meet() {
        let go = supported("ECDHE-RSA-WITH-AES128-GCM-SHA256").unwrap();
        let iana = supported("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").unwrap();
        assert_eq!(go.suite(), iana.suite());
        let tls13 = supported("TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(
            tls13.suite(),
            supported("TLS13_AES_256_GCM_SHA384").unwrap().suite()
        );
        assert!(matches!(
            cipher_suite("ECDHE-RSA-WITH-AES128-CBC-SHA"),
            Lookup::Unsupported(_)
        ));
        assert!(matches!(cipher_suite("NOPE"), Lookup::Unknown));
    }

    #[test]
    fn curves() {
        assert!(matches!(kx_group("X25519"), Lookup::Supported(_)));
        assert!(matches!(kx_group("p256"), Lookup::Supported(_)));
        assert!(matches!(kx_group("p521"), Lookup::Unsupported(_)));
        assert!(matches!(kx_group("p999"), Lookup::Unknown));
    }
}

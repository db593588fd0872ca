//! madmail's TLS layer: everything an endpoint needs to speak TLS, and the interface the
//! certificate loaders (this crate's `file` and `self_signed`, and later `acme`) feed.
//!
//! - [`server_tls`] decodes maddy's `tls` directive (`tls off`, `tls LOADER ARGS`, `tls &name`,
//!   `tls { loader ...; protocols ...; ciphers ...; curves ... }`) into a rustls
//!   [`ServerConfig`](rustls::ServerConfig); [`client_tls`] does the same for `tls_client`.
//! - [`SniResolver`] is the certificate resolver behind every server configuration: a set of
//!   certificates chosen by SNI, swapped atomically while handshakes run, plus the
//!   `acme-tls/1` challenge certificates.
//! - [`CertificateSource`] is the capability a loader offers: it owns a resolver and keeps it
//!   current.
//! - The loaders `tls.loader.file` and `tls.loader.self_signed` ([`register`]).
//!
//! Everything uses rustls with the aws-lc-rs provider ([`provider`]). This crate must not
//! speak any mail protocol, bind sockets or obtain certificates over the network (that is the
//! ACME loader's job); loaders only start watching files in `Lifecycle::start`.

mod certs;
mod directive;
mod file_loader;
mod resolver;
mod self_signed;
mod suites;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use certs::{CertError, LoadedCert, load_pem_files, parse_pem};
pub use directive::{client_tls, client_tls_default, server_tls, with_alpn};
pub use resolver::{ACME_TLS_ALPN, CertSet, SniResolver};
pub use self_signed::generate_self_signed;

/// What a certificate loader offers: the resolver it keeps filled with current certificates.
///
/// Endpoints get it through `ctx.module_from::<dyn CertificateSource>(node, 0, "tls.loader")`
/// (which [`server_tls`] does for them) and put the resolver into their rustls configuration;
/// the loader replaces certificates in it whenever it has new ones.
pub trait CertificateSource: Send + Sync {
    fn resolver(&self) -> Arc<SniResolver>;

    /// ALPN protocols endpoints serving from this source must offer (an ACME loader using
    /// tls-alpn-01 answers `acme-tls/1` on implicit-TLS endpoints too).
    fn alpn_protocols(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

impl madmail_module::Capability for dyn CertificateSource {
    const DESCRIPTION: &'static str = "a TLS certificate loader";
}

/// Registers `tls.loader.file` and `tls.loader.self_signed`.
pub fn register(registry: &mut madmail_module::Registry) {
    registry.register(file_loader::SPEC);
    registry.register(self_signed::SPEC);
}

/// Installs aws-lc-rs as the process-wide rustls provider, for code that builds rustls
/// configurations without naming a provider. Idempotent; if another provider was installed
/// first it stays (this crate's own configurations always name aws-lc-rs explicitly).
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: either way a provider is installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The aws-lc-rs provider with its default suites and groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

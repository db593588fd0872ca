//! `tls.loader.acme`: certificates from an ACME CA (Let's Encrypt by default), obtained with
//! http-01, tls-alpn-01 or dns-01, stored under `store_path` (certmagic's layout, so a maddy
//! store is used as it is), renewed in time (ARI, `renew_before`, or a third of the lifetime
//! left) and swapped into every endpoint through the loader's [`madmail_tls::SniResolver`].
//!
//! - [`register`] adds the module to a registry.
//! - [`loaders`] finds the loaders of a built configuration, for `madmail cert`.
//! - [`control`]: the unix socket `runtime_dir/madmail.sock` a running server answers on
//!   (started by the first loader that starts; nothing to wire), the client, and the offline
//!   fallback on the store ([`control::run`]).
//! - [`CertStatus`]: what `cert info` shows.
//!
//! It must not block start-up on the network: until a certificate exists a self-signed
//! placeholder is served, and every order runs in background tasks started by
//! `Lifecycle::start` and cancelled by `stop`. It does not speak mail protocols nor decode
//! `tls` directives (that is `madmail-tls`), and talks to DNS providers only through
//! [`madmail_dns::DnsProvider`].

mod client;
pub mod clock;
mod config;
pub mod control;
mod engine;
pub mod events;
mod export;
mod http01;
mod listeners;
mod loader;
mod notify;
mod preflight;
mod schedule;
mod status;
mod storage;
mod time_fmt;
mod tls_alpn;

use std::sync::Arc;

pub use config::{ChallengeKind, KeyType, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
pub use loader::{AcmeLoader, Outcome};
pub use preflight::Check;
pub use schedule::RenewalReason;
pub use status::{CertStatus, Status};
pub use storage::{CertFiles, issuer_key, safe_name};

/// Registers `tls.loader.acme`.
pub fn register(registry: &mut madmail_module::Registry) {
    registry.register(loader::SPEC);
}

/// The ACME loaders among a built configuration's instances, in initialisation order.
pub fn loaders(loaded: &madmail_module::Loaded) -> Vec<Arc<AcmeLoader>> {
    loaded
        .instances
        .iter()
        .filter_map(|i| i.caps.get::<AcmeLoader>())
        .collect()
}

//! The certificate resolver behind every server configuration.
//!
//! A handshake reads the current [`CertSet`] through an `ArcSwap` (no lock), so a loader can
//! replace the whole set at any time: handshakes that already picked a certificate keep their
//! `Arc` to it, those starting later see the new set. No handshake fails because of a swap.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of the ACME `tls-alpn-01` challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates by DNS name, plus the one served when nothing matches.
#[derive(Clone, Default)]
pub struct CertSet {
    default: Option<Arc<CertifiedKey>>,
    /// Lowercase names without a trailing dot; wildcards as `*.example.org`.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    pub fn new() -> CertSet {
        CertSet::default()
    }

    /// The certificate served without SNI, or when no name matches.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    pub fn default_key(&self) -> Option<&Arc<CertifiedKey>> {
        self.default.as_ref()
    }

    /// Serves `key` for `name` (exact, or `*.parent` for the names one label below `parent`).
    /// Returns the certificate it replaces.
    pub fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) -> Option<Arc<CertifiedKey>> {
        self.by_name.insert(normalize(name), key)
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.by_name.remove(&normalize(name))
    }

    /// The names with a certificate of their own (normalised).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.by_name.is_empty()
    }

    /// The certificate for a handshake with `server_name` (SNI): the exact name, then the
    /// wildcard one label up, then the default.
    pub fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = normalize(name);
            if let Some(key) = self.by_name.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && !parent.is_empty()
                && let Some(key) = self.by_name.get(&format!("*.{parent}"))
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.names().collect();
        names.sort_unstable();
        f.debug_struct("CertSet")
            .field("default", &self.default.is_some())
            .field("names", &names)
            .finish()
    }
}

/// SNI is case-insensitive and may carry the root's trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A hot-swappable SNI certificate resolver: one per loader, shared by every endpoint that
/// uses the loader.
pub struct SniResolver {
    certs: ArcSwap<CertSet>,
    /// `tls-alpn-01` challenge certificates by name, consulted only for handshakes whose
    /// ALPN offer is exactly `acme-tls/1`.
    challenges: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn new(certs: CertSet) -> SniResolver {
        SniResolver {
            certs: ArcSwap::from_pointee(certs),
            challenges: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Replaces every certificate at once.
    pub fn replace(&self, certs: CertSet) {
        self.certs.store(Arc::new(certs));
    }

    /// Changes some certificates (e.g. one renewed name) without losing a concurrent
    /// change: `change` may run more than once, on the latest set each time.
    pub fn update(&self, mut change: impl FnMut(&mut CertSet)) {
        self.certs.rcu(|current| {
            let mut next = CertSet::clone(current);
            change(&mut next);
            next
        });
    }

    /// The certificates served now.
    pub fn current(&self) -> Arc<CertSet> {
        self.certs.load_full()
    }

    /// Serves `key` to `acme-tls/1` handshakes for `name` until [`SniResolver::clear_challenge`].
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        let name = normalize(name);
        self.challenges.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(name.clone(), key.clone());
            next
        });
    }

    pub fn clear_challenge(&self, name: &str) {
        let name = normalize(name);
        self.challenges.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(&name);
            next
        });
    }

    /// The certificate for a handshake: for an `acme-tls/1` handshake only the challenge
    /// certificate of that name (RFC 8737 §3: never the regular one), otherwise as
    /// [`CertSet::select`].
    pub fn select(
        &self,
        server_name: Option<&str>,
        acme_tls_alpn: bool,
    ) -> Option<Arc<CertifiedKey>> {
        if acme_tls_alpn {
            let name = normalize(server_name?);
            return self.challenges.load().get(&name).cloned();
        }
        self.certs.load().select(server_name)
    }
}

impl Default for SniResolver {
    fn default() -> SniResolver {
        SniResolver::new(CertSet::new())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certs", &*self.certs.load())
            .field("challenges", &self.challenges.load().len())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut offered| {
            offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
        });
        let key = self.select(hello.server_name(), acme);
        if key.is_none() {
            tracing::debug!(
                server_name = hello.server_name().unwrap_or(""),
                acme_tls_alpn = acme,
                "no certificate for handshake"
            );
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::self_signed::generate_self_signed;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let generated = generate_self_signed(&[name.to_owned()]).unwrap();
        generated.key
    }

    #[test]
    fn selection_order() {
        let (exact, wildcard, default) = (key("mx.example.org"), key("*.example.org"), key("d"));
        let mut set = CertSet::new();
        set.insert("MX.example.org.", exact.clone());
        set.insert("*.example.org", wildcard.clone());
        set.set_default(default.clone());
        let pick = |n: Option<&str>| set.select(n).unwrap();
        assert!(Arc::ptr_eq(&pick(Some("mx.example.org")), &exact));
        assert!(Arc::ptr_eq(&pick(Some("Mx.Example.Org.")), &exact));
        assert!(Arc::ptr_eq(&pick(Some("imap.example.org")), &wildcard));
        // A wildcard covers exactly one label.
        assert!(Arc::ptr_eq(&pick(Some("a.b.example.org")), &default));
        assert!(Arc::ptr_eq(&pick(Some("example.org")), &default));
        assert!(Arc::ptr_eq(&pick(Some("other.test")), &default));
        assert!(Arc::ptr_eq(&pick(None), &default));
    }

    #[test]
    fn empty_set_selects_nothing() {
        assert!(CertSet::new().select(Some("x")).is_none());
        assert!(CertSet::new().select(None).is_none());
    }

    #[test]
    fn challenges_only_for_acme_alpn() {
        let (normal, challenge) = (key("mx.example.org"), key("mx.example.org"));
        let mut set = CertSet::new();
        set.set_default(normal.clone());
        let resolver = SniResolver::new(set);
        assert!(resolver.select(Some("mx.example.org"), true).is_none());
        resolver.set_challenge("mx.example.org", challenge.clone());
        let got = resolver.select(Some("MX.example.org"), true).unwrap();
        assert!(Arc::ptr_eq(&got, &challenge));
        let got = resolver.select(Some("mx.example.org"), false).unwrap();
        assert!(Arc::ptr_eq(&got, &normal));
        assert!(resolver.select(None, true).is_none());
        resolver.clear_challenge("mx.example.org");
        assert!(resolver.select(Some("mx.example.org"), true).is_none());
    }

    #[test]
    fn update_keeps_other_names() {
        let resolver = SniResolver::default();
        let (a, b) = (key("a.test"), key("b.test"));
        resolver.update(|s| {
            s.insert("a.test", a.clone());
        });
        resolver.update(|s| {
            s.insert("b.test", b.clone());
        });
        let set = resolver.current();
        assert!(Arc::ptr_eq(&set.select(Some("a.test")).unwrap(), &a));
        assert!(Arc::ptr_eq(&set.select(Some("b.test")).unwrap(), &b));
    }
}

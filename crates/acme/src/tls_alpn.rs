//! tls-alpn-01 (RFC 8737): the challenge certificate, and the listener on `tls_alpn_listen`
//! that presents it to handshakes offering only `acme-tls/1`.
//!
//! The certificates go into the loader's [`SniResolver`] (`set_challenge`), so implicit-TLS
//! endpoints serving from that resolver answer the challenge too when they accept
//! `acme-tls/1`. The listener is shared by the loaders of the process that name the same
//! address: it asks each of their resolvers.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use madmail_module::values::ListenAddr;
use madmail_tls::{ACME_TLS_ALPN, SniResolver};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::listeners::{Registry, bind_with_retry};

/// A self-signed certificate for `name` carrying the critical `acmeIdentifier` extension with
/// `digest` (SHA-256 of the key authorization).
pub fn challenge_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    // Built directly: the usual key check parses the certificate with webpki, which rejects
    // the critical acmeIdentifier extension this certificate must carry.
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = madmail_tls::provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

type Resolvers = Arc<RwLock<Vec<Weak<SniResolver>>>>;

static LISTENERS: Registry<TlsAlpnListener> = Registry::new();

/// A bound tls-alpn-01 listener; dropping the last holder closes it.
pub struct TlsAlpnListener {
    resolvers: Resolvers,
    local_addr: SocketAddr,
    stop: CancellationToken,
}

impl std::fmt::Debug for TlsAlpnListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpnListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsAlpnListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TlsAlpnListener {
    /// The listener on `addr` (bound now unless already held), answering from `resolver` too.
    pub async fn acquire(
        addr: &ListenAddr,
        resolver: &Arc<SniResolver>,
    ) -> std::io::Result<Arc<TlsAlpnListener>> {
        let key = addr.to_string();
        let listener = match LISTENERS.existing(&key) {
            Some(l) => l,
            None => {
                let tcp = bind_with_retry(addr, "tls-alpn-01").await?;
                let local_addr = tcp.local_addr()?;
                // Another task may have bound it meanwhile (then ours is dropped, closing it).
                LISTENERS.insert_or_existing(key, || {
                    let resolvers: Resolvers = Arc::default();
                    let stop = CancellationToken::new();
                    tokio::spawn(serve(tcp, resolvers.clone(), stop.clone()));
                    tracing::debug!(address = %local_addr, "tls-alpn-01 listener bound");
                    Arc::new(TlsAlpnListener {
                        resolvers,
                        local_addr,
                        stop,
                    })
                })
            }
        };
        if let Ok(mut list) = listener.resolvers.write() {
            list.retain(|w| w.strong_count() > 0);
            if !list.iter().any(|w| w.as_ptr() == Arc::as_ptr(resolver)) {
                list.push(Arc::downgrade(resolver));
            }
        }
        Ok(listener)
    }
}

/// Picks the challenge certificate from whichever registered resolver has one for the name.
#[derive(Debug)]
struct ChallengeResolver {
    resolvers: Resolvers,
}

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let list = self.resolvers.read().ok()?;
        list.iter()
            .filter_map(Weak::upgrade)
            .find_map(|r| r.select(Some(name), true))
    }
}

async fn serve(listener: tokio::net::TcpListener, resolvers: Resolvers, stop: CancellationToken) {
    let config = rustls::ServerConfig::builder_with_provider(madmail_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut config = match config {
        Ok(c) => c
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ChallengeResolver { resolvers })),
        Err(e) => {
            tracing::error!(error = %e, "tls-alpn-01 listener: no usable TLS configuration");
            return;
        }
    };
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "tls-alpn-01 accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // The validation is the handshake itself; nothing is exchanged after it.
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            if let Ok(Ok(mut tls)) = handshake.await {
                let _ = tls.shutdown().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_certificate_carries_the_digest() {
        let digest = [7u8; 32];
        let key = challenge_certificate("mx.example.org", &digest).unwrap();
        let der = key.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}

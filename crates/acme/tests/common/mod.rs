//! Shared helpers: configurations with a small endpoint that uses a `tls` loader, a TLS
//! listener serving from a loader's resolver, and a client that reports the certificate it
//! was served. Submodules: real Pebble ([`pebble`]) and BIND9 ([`bind`]), the in-process ACME
//! double ([`double`]), a switchable TCP relay ([`proxy`]) and the `madmail` binary
//! ([`madmail`]).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod bind;
pub mod double;
pub mod madmail;
pub mod pebble;
pub mod proxy;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use madmail_acme::{AcmeLoader, CertStatus, Status};
use madmail_config::{Environment, parse_str};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Loaded, ModuleSpec, Registry, load,
};
use madmail_tls::SniResolver;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

/// `test_tls { tls ... }`: an endpoint that only decodes its `tls` (so a loader is used).
fn build_test_endpoint(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let _tls = block
        .custom("tls", |n| madmail_tls::server_tls(n, ctx))
        .inherit()
        .required();
    block.finish()?;
    Ok(Built::new(Capabilities::new()))
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_tls::register(&mut r);
    madmail_acme::register(&mut r);
    madmail_libdns_rfc2136::register(&mut r);
    madmail_target::register(&mut r);
    r.register(ModuleSpec {
        name: "test_tls",
        kind: Kind::Endpoint,
        build: build_test_endpoint,
        summary: "test endpoint decoding tls",
    });
    r
}

/// Builds `text` as if it were `dir/test.conf`.
pub fn load_config(dir: &Path, text: &str) -> Result<Loaded, Errors> {
    let nodes =
        parse_str(&dir.join("test.conf"), text, &Environment::empty()).map_err(Errors::from)?;
    load(&registry(), &nodes)
}

pub fn config_errors(dir: &Path, text: &str) -> Vec<String> {
    match load_config(dir, text) {
        Ok(_) => panic!("configuration unexpectedly valid:\n{text}"),
        Err(e) => madmail_module::testing::error_lines(e),
    }
}

pub fn loader(loaded: &Loaded) -> Arc<AcmeLoader> {
    madmail_acme::loaders(loaded)
        .into_iter()
        .next()
        .expect("an ACME loader")
}

/// Waits (bounded) until every certificate of `loader` satisfies `done`.
pub async fn wait_status(
    loader: &AcmeLoader,
    what: &str,
    done: impl Fn(&CertStatus) -> bool,
) -> Vec<CertStatus> {
    for _ in 0..600 {
        let statuses = loader.status().await;
        if !statuses.is_empty() && statuses.iter().all(&done) {
            return statuses;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {:#?}", loader.status().await);
}

pub async fn wait_valid(loader: &AcmeLoader) -> Vec<CertStatus> {
    wait_status(loader, "valid certificates", |s| s.status == Status::Valid).await
}

/// A TLS listener on 127.0.0.1 serving from `resolver` (as an endpoint would).
pub async fn tls_server(resolver: Arc<SniResolver>) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Serial (uppercase hex) of the certificate served at `addr` for `sni`, verified against
/// `root_pem` (a placeholder or wrong chain fails the handshake).
pub async fn served_serial(addr: SocketAddr, sni: &str, root_pem: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let cert = conn.peer_certificates().unwrap()[0].clone();
    Ok(serial_of(&cert))
}

/// Serial of the certificate served at `addr` without SNI and without verification.
pub async fn served_serial_unverified(addr: SocketAddr) -> String {
    let config = rustls::ClientConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAll))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    // An IP address as server name: rustls sends no SNI then.
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    serial_of(&conn.peer_certificates().unwrap()[0])
}

pub fn serial_of(cert: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    let raw = parsed.raw_serial();
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

#[derive(Debug)]
struct AcceptAll;

impl rustls::client::danger::ServerCertVerifier for AcceptAll {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        madmail_tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

//! Shared test helpers: configurations with a small endpoint that decodes `tls`, a TLS server
//! on 127.0.0.1 and a client that reports which certificate it was served.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use madmail_config::{Environment, parse_str};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Loaded, ModuleSpec, Registry, load,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What `test_tls { tls ... }` decoded.
pub struct Decoded(pub Option<Arc<ServerConfig>>);

/// `test_tls { tls ... }`: an endpoint that only decodes its (possibly inherited) `tls`.
fn build_test_endpoint(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let tls = block
        .custom("tls", |n| madmail_tls::server_tls(n, ctx))
        .inherit()
        .required();
    block.finish()?;
    let tls = tls.ok_or_else(Errors::new)?;
    Ok(Built::new(Capabilities::new().with(Arc::new(Decoded(tls)))))
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_tls::register(&mut r);
    r.register(ModuleSpec {
        name: "test_tls",
        kind: Kind::Endpoint,
        build: build_test_endpoint,
        summary: "test endpoint decoding tls",
    });
    r
}

/// Configuration text with `; ` standing for a line break and `{}` for an empty block, so
/// tests can write short blocks on one line (the language itself has neither).
pub fn conf(text: &str) -> String {
    text.replace("; ", "\n").replace("{}", "{\n}")
}

/// Builds `text` (see [`conf`]) as if it were `dir/test.conf`.
pub fn load_config(dir: &Path, text: &str) -> Result<Loaded, Errors> {
    let nodes = parse_str(&dir.join("test.conf"), &conf(text), &Environment::empty())
        .map_err(Errors::from)?;
    load(&registry(), &nodes)
}

/// The server configuration of the first `test_tls` endpoint.
pub fn endpoint_tls(loaded: &Loaded) -> Option<Arc<ServerConfig>> {
    loaded.endpoints[0].caps.get::<Decoded>().unwrap().0.clone()
}

/// Every error message of a failed build, one per line.
pub fn config_errors(dir: &Path, text: &str) -> String {
    match load_config(dir, text) {
        Ok(_) => panic!("configuration unexpectedly valid:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A certificate for `names` signed by `issuer` (or self-signed), with `serial`.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "madmail test CA");
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa { params, key, pem }
    }
}

pub fn make_cert(names: &[&str], serial: u64, issuer: Option<&TestCa>) -> TestCert {
    make_cert_with_key(names, serial, issuer, rcgen::KeyPair::generate().unwrap())
}

pub fn make_cert_with_key(
    names: &[&str],
    serial: u64,
    issuer: Option<&TestCa>,
    key: rcgen::KeyPair,
) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let cert = match issuer {
        Some(ca) => {
            let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
            params.signed_by(&key, &issuer).unwrap()
        }
        None => params.self_signed(&key).unwrap(),
    };
    let mut cert_pem = cert.pem();
    if let Some(ca) = issuer {
        cert_pem.push_str(&ca.pem);
    }
    TestCert {
        cert_pem,
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

impl TestCert {
    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }

    /// Replaces `cert` and `key` atomically each (write aside, rename over).
    pub fn replace(&self, cert: &Path, key: &Path) {
        for (path, text) in [(cert, &self.cert_pem), (key, &self.key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

/// Serves `config` on 127.0.0.1: each connection completes the handshake, gets "ok" and is
/// closed. Returns the address.
pub async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Accepts any certificate; the tests look at which one was served.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a test client connects.
#[derive(Clone, Default)]
pub struct Client {
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
    /// Only TLS 1.2 (`Some(12)`) or only TLS 1.3 (`Some(13)`).
    pub only_version: Option<u8>,
    /// Restricts the suites offered.
    pub suites: Option<Vec<rustls::SupportedCipherSuite>>,
    /// Verifies with this configuration instead of accepting anything.
    pub verifying: Option<Arc<ClientConfig>>,
}

pub struct Served {
    pub cert: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
}

impl Client {
    pub fn sni(name: &str) -> Client {
        Client {
            sni: Some(name.to_owned()),
            ..Client::default()
        }
    }

    fn config(&self) -> Arc<ClientConfig> {
        if let Some(c) = &self.verifying {
            return c.clone();
        }
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(suites) = &self.suites {
            provider.cipher_suites.clone_from(suites);
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = match self.only_version {
            Some(12) => &[&rustls::version::TLS12],
            Some(13) => &[&rustls::version::TLS13],
            _ => rustls::DEFAULT_VERSIONS,
        };
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        config.alpn_protocols.clone_from(&self.alpn);
        config.enable_sni = self.sni.is_some();
        Arc::new(config)
    }

    /// Connects, completes the handshake and reads the server's "ok".
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<Served> {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let name =
            ServerName::try_from(self.sni.clone().unwrap_or_else(|| "unused.invalid".into()))
                .map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .map_err(std::io::Error::other)??;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        if buf != b"ok" {
            return Err(std::io::Error::other(format!("server said {buf:?}")));
        }
        let (_, conn) = tls.get_ref();
        Ok(Served {
            cert: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .cloned()
                .ok_or_else(|| std::io::Error::other("no certificate"))?,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        })
    }
}

/// Retries `check` every 50 ms until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `f` logs (at any level), as text.
pub fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (value, text)
}

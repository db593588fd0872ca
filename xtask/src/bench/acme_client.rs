//! How the ACME benchmark decides that a certificate is there: an SMTP client that does EHLO,
//! STARTTLS, a handshake with SNI verified against Pebble's issuing root (the self-signed
//! placeholder madmail serves until then fails it), and EHLO again; and the same
//! verification of the chain lego writes to disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One SMTP reply may take this long before the probe counts as failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two probes while waiting for the first certificate: short, so the measurement
/// is not coarser than it needs to be, but not a busy loop stealing the server's CPU.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many names are verified at once after the many-names scenario.
const VERIFY_CONCURRENCY: usize = 8;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn roots(root: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| format!("Pebble's issuing root: {e}"))?;
    Ok(Arc::new(roots))
}

/// A TLS client trusting only `root` (Pebble's issuing root of this run).
pub fn connector(root: &CertificateDer<'static>) -> Result<TlsConnector, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .with_root_certificates(roots(root)?)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Why a probe did not get a verified certificate.
#[derive(Debug)]
pub enum ProbeError {
    /// Nothing answered SMTP yet (connection refused, no greeting).
    NotListening(String),
    /// The endpoint answered, but the certificate was not one Pebble issued for the name
    /// (the placeholder), or the session failed after STARTTLS.
    NotVerified(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::NotListening(e) => write!(f, "not answering SMTP: {e}"),
            ProbeError::NotVerified(e) => write!(f, "no verified certificate: {e}"),
        }
    }
}

/// One SMTP session to `addr` with STARTTLS and SNI `name`; succeeds only when the served
/// certificate verifies against the connector's root for `name`.
pub async fn starttls_verified(
    addr: SocketAddr,
    name: &str,
    tls: &TlsConnector,
) -> Result<(), ProbeError> {
    let not_listening = ProbeError::NotListening;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| not_listening(format!("connect: {e}")))?;
    tcp.set_nodelay(true)
        .map_err(|e| not_listening(format!("nodelay: {e}")))?;
    let mut plain = BufReader::new(tcp);
    super::client::expect(&mut plain, 220, "greeting", REPLY_TIMEOUT)
        .await
        .map_err(not_listening)?;
    let not_verified = ProbeError::NotVerified;
    command(&mut plain, b"EHLO probe.test\r\n", 250)
        .await
        .map_err(not_verified)?;
    command(&mut plain, b"STARTTLS\r\n", 220)
        .await
        .map_err(not_verified)?;
    if !plain.buffer().is_empty() {
        return Err(not_verified(
            "the server sent data after its STARTTLS reply".into(),
        ));
    }
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|e| not_verified(format!("{name}: {e}")))?;
    let stream = tls
        .connect(server_name, plain.into_inner())
        .await
        .map_err(|e| not_verified(format!("TLS handshake: {e}")))?;
    let mut conn = BufReader::new(stream);
    command(&mut conn, b"EHLO probe.test\r\n", 250)
        .await
        .map_err(not_verified)?;
    // Verified; a server closing abruptly now changes nothing.
    let _ = command(&mut conn, b"QUIT\r\n", 221).await;
    Ok(())
}

/// When the first verified certificate was served, counted from `start`.
pub struct FirstCertificate {
    /// The first probe that got as far as STARTTLS (the placeholder was being served).
    pub endpoint_up: Option<Duration>,
    pub verified: Duration,
}

/// Probes every [`POLL_INTERVAL`] until a verified certificate is served, `within` passes
/// (counted from `start`), the run is interrupted or `gone` reports the server dead.
pub async fn wait_first_certificate(
    addr: SocketAddr,
    name: &str,
    tls: &TlsConnector,
    start: Instant,
    within: Duration,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<FirstCertificate, String> {
    let mut endpoint_up = None;
    loop {
        super::cleanup::check()?;
        let probe = tokio::time::timeout(REPLY_TIMEOUT, starttls_verified(addr, name, tls)).await;
        let last = match probe {
            Ok(Ok(())) => {
                return Ok(FirstCertificate {
                    endpoint_up,
                    verified: start.elapsed(),
                });
            }
            Ok(Err(e @ ProbeError::NotVerified(_))) => {
                endpoint_up.get_or_insert_with(|| start.elapsed());
                e.to_string()
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the probe took more than {}s", REPLY_TIMEOUT.as_secs()),
        };
        if let Some(why) = gone() {
            return Err(why);
        }
        if start.elapsed() >= within {
            return Err(format!(
                "no verified certificate for {name} on {addr} within {}s (last probe: {last})",
                within.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Checks with one STARTTLS session per name (SNI) that every name is served a verified
/// certificate; returns the names that are not.
pub async fn unverified_names(
    addr: SocketAddr,
    names: &[String],
    tls: &TlsConnector,
) -> Vec<(String, String)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(VERIFY_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let (name, tls, limit) = (name.clone(), tls.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result =
                tokio::time::timeout(REPLY_TIMEOUT, starttls_verified(addr, &name, &tls)).await;
            match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((name, e.to_string())),
                Err(_) => Some((name, "timed out".to_owned())),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Some(failure)) => failed.push(failure),
            Ok(None) => {}
            Err(e) => failed.push(("?".into(), format!("probe task failed: {e}"))),
        }
    }
    failed.sort();
    failed
}

/// Verifies a PEM chain on disk (end-entity first, as lego writes it) for `name` against
/// Pebble's issuing root: the same check a TLS client makes.
pub fn verify_chain_file(
    path: &Path,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(format!("{}: no certificate", path.display()));
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(root)?, provider())
        .build()
        .map_err(|e| format!("verifier: {e}"))?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| format!("{name}: {e}"))?;
    verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Sends `line` and expects a reply with `code`.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    line: &[u8],
    code: u16,
) -> Result<(), String> {
    let what = String::from_utf8_lossy(line).trim_end().to_owned();
    let stream = conn.get_mut();
    stream
        .write_all(line)
        .await
        .map_err(|e| format!("{what}: write: {e}"))?;
    // TLS streams buffer records until flushed.
    stream
        .flush()
        .await
        .map_err(|e| format!("{what}: write: {e}"))?;
    super::client::expect(conn, code, &what, REPLY_TIMEOUT).await
}

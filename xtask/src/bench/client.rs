//! The STARTTLS load client (smtp-source speaks neither TLS nor measures latency): a fixed
//! number of concurrent sessions, each EHLO, STARTTLS, EHLO, then back-to-back transactions
//! (MAIL, RCPT, DATA, no RSET between them) until the shared message count is used up. Each
//! message's latency runs from sending MAIL FROM to the 250 after its content; commands are
//! not pipelined, like smtp-source.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{DOMAIN, RECIPIENT, SENDER};

/// How long one reply may take before the run is abandoned.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Latencies are recorded in microseconds, up to ten minutes.
const MAX_LATENCY_US: u64 = 600_000_000;

pub struct Load {
    pub addr: SocketAddr,
    pub sessions: usize,
    pub messages: usize,
    /// Bytes of message content after the headers.
    pub size: usize,
}

pub struct Outcome {
    /// From the first connection to the last message's 250.
    pub elapsed: Duration,
    /// Per-message latency in microseconds.
    pub latency: Histogram<u64>,
}

/// Runs the load to completion, or fails at the first unexpected reply.
pub fn run(load: &Load, within: Duration) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the load client's runtime: {e}"))?;
    runtime.block_on(async {
        tokio::select! {
            outcome = tokio::time::timeout(within, run_sessions(load)) => outcome.map_err(|_| {
                format!("the STARTTLS load did not finish within {}s", within.as_secs())
            })?,
            error = interrupted() => Err(error),
        }
    })
}

/// Resolves once the run is interrupted (dropping the sessions closes their connections).
async fn interrupted() -> String {
    loop {
        if let Err(e) = super::cleanup::check() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_sessions(load: &Load) -> Result<Outcome, String> {
    let tls = TlsConnector::from(Arc::new(tls_config()?));
    let body: Arc<[u8]> = message_body(load.size).into();
    let tickets = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.sessions {
        let session = Session {
            addr: load.addr,
            tls: tls.clone(),
            body: body.clone(),
            tickets: tickets.clone(),
            messages: load.messages,
        };
        tasks.spawn(session.run());
    }
    let mut latency = new_histogram()?;
    let mut last_done = start;
    while let Some(joined) = tasks.join_next().await {
        let (histogram, done) = joined.map_err(|e| format!("load session failed: {e}"))??;
        latency
            .add(&histogram)
            .map_err(|e| format!("histogram: {e}"))?;
        last_done = last_done.max(done);
    }
    Ok(Outcome {
        elapsed: last_done - start,
        latency,
    })
}

fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| format!("histogram: {e}"))
}

struct Session {
    addr: SocketAddr,
    tls: TlsConnector,
    body: Arc<[u8]>,
    tickets: Arc<AtomicUsize>,
    messages: usize,
}

impl Session {
    /// Returns the session's latencies and when its last message was accepted.
    async fn run(self) -> Result<(Histogram<u64>, Instant), String> {
        let addr = self.addr;
        self.transact()
            .await
            .map_err(|e| format!("session with {addr}: {e}"))
    }

    async fn transact(self) -> Result<(Histogram<u64>, Instant), String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let mut plain = BufReader::new(tcp);
        expect(&mut plain, 220, "greeting", REPLY_TIMEOUT).await?;
        command(&mut plain, b"EHLO load.test\r\n", 250).await?;
        command(&mut plain, b"STARTTLS\r\n", 220).await?;
        if !plain.buffer().is_empty() {
            return Err("the server sent data after its STARTTLS reply".into());
        }
        let name = ServerName::try_from(format!("mx.{DOMAIN}"))
            .map_err(|e| format!("server name: {e}"))?;
        let tls = self
            .tls
            .connect(name, plain.into_inner())
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let mut conn = BufReader::new(tls);
        command(&mut conn, b"EHLO load.test\r\n", 250).await?;

        let mail = format!("MAIL FROM:<{SENDER}>\r\n");
        let rcpt = format!("RCPT TO:<{RECIPIENT}>\r\n");
        let mut latency = new_histogram()?;
        let mut last_done = Instant::now();
        loop {
            let n = self.tickets.fetch_add(1, Ordering::Relaxed);
            if n >= self.messages {
                break;
            }
            let sent = Instant::now();
            command(&mut conn, mail.as_bytes(), 250).await?;
            command(&mut conn, rcpt.as_bytes(), 250).await?;
            command(&mut conn, b"DATA\r\n", 354).await?;
            let headers = format!(
                "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: bench {n}\r\n\
                 Message-ID: <{n}.bench@load.test>\r\n\r\n"
            );
            send(&mut conn, headers.as_bytes()).await?;
            send(&mut conn, &self.body).await?;
            command(&mut conn, b".\r\n", 250).await?;
            last_done = Instant::now();
            let micros = u64::try_from((last_done - sent).as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.clamp(1, MAX_LATENCY_US));
        }
        // The messages are in; a server that closes abruptly here changes nothing measured.
        let _ = command(&mut conn, b"QUIT\r\n", 221).await;
        Ok((latency, last_done))
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    bytes: &[u8],
) -> Result<(), String> {
    conn.get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Sends `line` and expects a reply with `code`.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    line: &[u8],
    code: u16,
) -> Result<(), String> {
    send(conn, line).await?;
    // TLS streams buffer records until flushed.
    conn.get_mut()
        .flush()
        .await
        .map_err(|e| format!("write: {e}"))?;
    let what = String::from_utf8_lossy(line).trim_end().to_owned();
    expect(conn, code, &what, REPLY_TIMEOUT).await
}

/// Reads one (possibly multi-line) reply within `timeout` and checks its code (shared with
/// the acme benchmark's probe).
pub(super) async fn expect<S: AsyncRead + Unpin>(
    conn: &mut BufReader<S>,
    code: u16,
    after: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(timeout, conn.read_line(&mut line))
            .await
            .map_err(|_| format!("no reply to {after} within {}s", timeout.as_secs()))?
            .map_err(|e| format!("read after {after}: {e}"))?;
        if read == 0 {
            return Err(format!("connection closed after {after}: {reply}"));
        }
        reply.push_str(&line);
        // `250-...` continues, `250 ...` (or a bare `250`) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    if reply.get(..3).and_then(|c| c.parse::<u16>().ok()) == Some(code) {
        Ok(())
    } else {
        Err(format!(
            "{after}: expected {code}, got {:?}",
            reply.trim_end()
        ))
    }
}

/// `size` bytes (at least 2) of content in lines of at most 78 characters, none starting
/// with a dot (so no dot stuffing), ending with CRLF.
fn message_body(size: usize) -> Vec<u8> {
    const TEXT: &[u8] =
        b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrstuvwxyz.";
    const WIDTH: usize = 78;
    let mut body = Vec::with_capacity(size);
    while size - body.len() >= 2 {
        let room = size - body.len() - 2;
        // Never leave exactly one byte, which could not hold a CRLF.
        let take = match room {
            r if r <= WIDTH => r,
            r if r == WIDTH + 1 => WIDTH - 1,
            _ => WIDTH,
        };
        body.extend_from_slice(&TEXT[..take]);
        body.extend_from_slice(b"\r\n");
    }
    body
}

fn tls_config() -> Result<ClientConfig, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// BENCHMARK ONLY: accepts any server certificate. Both servers present self-signed
/// certificates made for the run, and the benchmark measures the cost of TLS, not trust.
/// Handshake signatures are still checked, so the key exchange is the real one. Never use
/// this outside a benchmark: it makes TLS worthless against an active attacker.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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

#[cfg(test)]
mod tests {
    use super::message_body;

    #[test]
    fn body_has_the_requested_size_and_no_leading_dots() {
        for size in 2..400 {
            let body = message_body(size);
            assert_eq!(body.len(), size, "size {size}");
            assert!(body.ends_with(b"\r\n"));
            assert!(!body.split(|&b| b == b'\n').any(|l| l.starts_with(b".")));
        }
    }
}

//! Test doubles (a recording delivery target, a password checker), TLS material, a running
//! endpoint and a line-level SMTP client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madmail_module::Lifecycle;
use madmail_module::auth::{AuthError, PlainAuth};
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::values::ListenAddr;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::config::{Protocol, Settings};
use crate::conn::Io;
use crate::server::{Bound, Endpoint};

/// Every read in the tests gives up after this: a hang is a failure, not a stuck test.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// A committed message as the target saw it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub envelope: Envelope,
    pub rcpts: Vec<String>,
    pub body: Vec<u8>,
}

impl Stored {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Records committed messages. Recipients at `reject.test` are refused at RCPT; a message for
/// `full@...` fails at the body (to give LMTP recipients different outcomes).
#[derive(Default, Clone)]
pub struct Recorder {
    pub stored: Arc<Mutex<Vec<Stored>>>,
    pub aborted: Arc<Mutex<usize>>,
}

impl Recorder {
    pub fn messages(&self) -> Vec<Stored> {
        self.stored.lock().unwrap().clone()
    }
}

#[async_trait]
impl DeliveryTarget for Recorder {
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        if envelope.mail_from.ends_with("@blocked.test") {
            return Err(DeliveryError::new(550, "5.7.1", "Sender blocked"));
        }
        Ok(Box::new(RecorderDelivery {
            recorder: self.clone(),
            stored: Stored {
                envelope: envelope.clone(),
                rcpts: Vec::new(),
                body: Vec::new(),
            },
        }))
    }
}

struct RecorderDelivery {
    recorder: Recorder,
    stored: Stored,
}

#[async_trait]
impl Delivery for RecorderDelivery {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        if rcpt.ends_with("@reject.test") {
            return Err(DeliveryError::new(550, "5.1.1", "No such user"));
        }
        self.stored.rcpts.push(rcpt.to_owned());
        Ok(())
    }
    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        if self.stored.rcpts.iter().any(|r| r.starts_with("full@")) {
            return Err(DeliveryError::new(452, "4.2.2", "Mailbox full"));
        }
        self.stored.body = message.to_vec();
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        self.recorder.stored.lock().unwrap().push(self.stored);
        Ok(())
    }
    async fn abort(self: Box<Self>) {
        *self.recorder.aborted.lock().unwrap() += 1;
    }
}

/// alice / secret is valid; user `broken` makes the backend fail.
pub struct Passwords;

#[async_trait]
impl PlainAuth for Passwords {
    async fn authenticate(&self, username: &str, password: &str) -> Result<(), AuthError> {
        match (username, password) {
            ("alice", "secret") => Ok(()),
            ("broken", _) => Err(AuthError::Temporary("database down".into())),
            _ => Err(AuthError::InvalidCredentials),
        }
    }
}

/// A self-signed certificate for `localhost`: the server's configuration and a client
/// configuration that trusts it.
pub fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Settings for an endpoint delivering to `recorder`.
pub fn settings(protocol: Protocol, recorder: &Recorder) -> Settings {
    let mut s = Settings::new(protocol, "mx.test", Arc::new(recorder.clone()));
    if protocol == Protocol::Submission {
        s.auth = vec![Arc::new(Passwords)];
    }
    s
}

pub fn tcp(host: &str, tls: bool) -> ListenAddr {
    ListenAddr::Tcp {
        host: host.to_owned(),
        port: 0,
        tls,
    }
}

/// A started endpoint; stopped when the test calls `stop`.
pub struct Running {
    pub endpoint: Arc<Endpoint>,
    pub counters: Arc<crate::Counters>,
}

impl Running {
    pub async fn start(settings: Settings, addrs: Vec<ListenAddr>) -> Running {
        let counters = settings.counters.clone();
        let endpoint = Arc::new(Endpoint::new(Arc::new(settings), addrs));
        endpoint.start().await.unwrap();
        Running { endpoint, counters }
    }

    /// The `i`-th TCP address bound.
    pub fn addr(&self, i: usize) -> SocketAddr {
        match &self.endpoint.bound()[i] {
            Bound::Tcp(a) => *a,
            Bound::Unix(p) => panic!("{} is a unix socket", p.display()),
        }
    }

    pub async fn stop(&self) {
        self.endpoint.stop().await;
    }
}

/// A client that sends lines and reads (multi-line) replies.
pub struct Client {
    stream: BufReader<Box<dyn Io>>,
}

/// A reply: its code and its lines (without the code).
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The reply as `CODE text` of its last line, for compact assertions.
    pub fn short(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().map_or("", String::as_str)
        )
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        Client::over(Box::new(stream))
    }

    pub async fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), stream)
            .await
            .unwrap();
        Client::over(Box::new(tls))
    }

    pub fn over(io: Box<dyn Io>) -> Client {
        Client {
            stream: BufReader::new(io),
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.send_raw(text.as_bytes()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.stream.get_mut();
        io.write_all(bytes).await.unwrap();
        io.flush().await.unwrap();
    }

    /// The next reply, or `None` when the server closed the connection.
    pub async fn reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(READ_LIMIT, self.stream.read_line(&mut line))
                .await
                .expect("server did not answer in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse().unwrap();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends a command and returns its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await.expect("connection closed")
    }

    /// Sends a command and checks its reply code.
    pub async fn ok(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.code, code, "{line}: {}", r.text());
        r
    }

    /// Whether the server closed the connection (EOF without a further reply).
    pub async fn closed(&mut self) -> bool {
        self.reply().await.is_none()
    }

    /// STARTTLS was answered; now the handshake.
    pub async fn upgrade(self, config: Arc<rustls::ClientConfig>) -> Client {
        assert!(
            self.stream.buffer().is_empty(),
            "the server sent bytes after its 220"
        );
        let io = self.stream.into_inner();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), io)
            .await
            .unwrap();
        Client::over(Box::new(tls))
    }

    /// A whole transaction with DATA; returns the final reply.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        self.ok(&format!("MAIL FROM:<{from}>"), 250).await;
        for rcpt in to {
            self.ok(&format!("RCPT TO:<{rcpt}>"), 250).await;
        }
        self.ok("DATA", 354).await;
        self.send(body).await;
        self.send(".\r\n").await;
        self.reply().await.expect("connection closed")
    }
}

/// Base64 as AUTH wants it.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether an external program is installed; tests that need one say so and skip without it.
pub fn have(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("SKIPPED: {program} is not installed (apt-get install -y {program})");
    }
    found
}

//! `target.smtp` and `target.lmtp` against a small scripted server written here: the exact
//! commands sent, STARTTLS and implicit TLS with a certificate the client is told to trust,
//! AUTH, per-recipient errors, LMTP's per-recipient replies, BDAT, unix sockets, and failures
//! to connect.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use madmail_module::delivery::Envelope;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

use common::{deliver, envelope, errors_of, load_target};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the scripted server behaves.
#[derive(Clone)]
struct Script {
    lmtp: bool,
    /// EHLO keywords after the greeting line.
    extensions: Vec<&'static str>,
    tls: Option<Arc<ServerConfig>>,
    /// Reply to `RCPT TO:<addr>` by address; others get `250 2.1.5 ok`.
    rcpt: HashMap<&'static str, &'static str>,
    /// LMTP: the final reply for a recipient; others get `250 2.0.0 delivered`.
    lmtp_final: HashMap<&'static str, &'static str>,
    /// The reply to AUTH; `None` means `235 2.7.0 ok`.
    auth: Option<&'static str>,
}

impl Script {
    fn smtp(extensions: &[&'static str]) -> Script {
        Script {
            lmtp: false,
            extensions: extensions.to_vec(),
            tls: None,
            rcpt: HashMap::new(),
            lmtp_final: HashMap::new(),
            auth: None,
        }
    }
}

/// What the server saw: every command line, `<tls>` when a handshake completed, `<data>`
/// for each message received (its bytes, unstuffed, are in `messages`), `<close>` when the
/// client went away.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    messages: Vec<Vec<u8>>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Seen>>);

impl Log {
    fn line(&self, line: impl Into<String>) {
        self.0.lock().unwrap().lines.push(line.into());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().lines.clone()
    }
    fn messages(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().messages.clone()
    }
    /// Waits (bounded) until the client closed as many connections as it opened.
    async fn settled(&self) -> Vec<String> {
        for _ in 0..500 {
            let lines = self.lines();
            let opened = lines.iter().filter(|l| *l == "<connect>").count();
            let closed = lines.iter().filter(|l| *l == "<close>").count();
            if opened > 0 && opened == closed {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("connections did not close: {:?}", self.lines());
    }
}

async fn serve_tcp(script: Script) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(Box::new(stream), script.clone(), l.clone(), false));
        }
    });
    (port, log)
}

/// Implicit TLS from the first byte.
async fn serve_tls(script: Script) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(script.tls.clone().unwrap());
            let (script, l) = (script.clone(), l.clone());
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => session(Box::new(tls), script, l, true).await,
                    Err(_) => {
                        l.line("<connect>");
                        l.line("<close>");
                    }
                }
            });
        }
    });
    (port, log)
}

enum Next {
    Close,
    StartTls(Box<dyn Io>),
}

async fn session(stream: Box<dyn Io>, script: Script, log: Log, tls: bool) {
    log.line("<connect>");
    if tls {
        log.line("<tls>");
    }
    let mut stream = stream;
    let mut tls = tls;
    let greeting = if script.lmtp {
        "220 fake LMTP ready\r\n"
    } else {
        "220 fake ESMTP ready\r\n"
    };
    if stream.write_all(greeting.as_bytes()).await.is_ok() {
        while let Next::StartTls(plain) = commands(stream, &script, &log, tls).await {
            let acceptor = tokio_rustls::TlsAcceptor::from(script.tls.clone().unwrap());
            match acceptor.accept(plain).await {
                Ok(encrypted) => {
                    log.line("<tls>");
                    stream = Box::new(encrypted);
                    tls = true;
                }
                Err(_) => break,
            }
        }
    }
    log.line("<close>");
}

/// Answers commands until the client leaves or asks for STARTTLS.
async fn commands(stream: Box<dyn Io>, script: &Script, log: &Log, tls: bool) -> Next {
    let mut reader = BufReader::new(stream);
    let mut rcpts: Vec<String> = Vec::new();
    let mut chunks: Vec<u8> = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        log.line(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
            let mut lines = vec!["fake.test greets you"];
            lines.extend(
                script
                    .extensions
                    .iter()
                    .filter(|e| **e != "STARTTLS" || (!tls && script.tls.is_some())),
            );
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                .collect()
        } else if upper == "STARTTLS" {
            reader
                .get_mut()
                .write_all(b"220 2.0.0 go ahead\r\n")
                .await
                .unwrap();
            return Next::StartTls(reader.into_inner());
        } else if upper.starts_with("AUTH") {
            format!("{}\r\n", script.auth.unwrap_or("235 2.7.0 ok"))
        } else if upper.starts_with("MAIL FROM:") {
            rcpts.clear();
            chunks.clear();
            "250 2.1.0 ok\r\n".into()
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
            let addr = &line[9..9 + rest.find('>').unwrap()];
            let reply = script.rcpt.get(addr).copied().unwrap_or("250 2.1.5 ok");
            if reply.starts_with('2') {
                rcpts.push(addr.to_owned());
            }
            format!("{reply}\r\n")
        } else if upper == "DATA" {
            reader
                .get_mut()
                .write_all(b"354 go ahead\r\n")
                .await
                .unwrap();
            let mut message = Vec::new();
            loop {
                let mut data_line = Vec::new();
                match reader.read_until(b'\n', &mut data_line).await {
                    Ok(0) | Err(_) => return Next::Close,
                    Ok(_) => {}
                }
                if data_line == b".\r\n" {
                    break;
                }
                let unstuffed = data_line.strip_prefix(b".").unwrap_or(&data_line);
                message.extend_from_slice(unstuffed);
            }
            log.line("<data>");
            log.0.lock().unwrap().messages.push(message);
            final_replies(script, &rcpts)
        } else if let Some(args) = upper.strip_prefix("BDAT ") {
            let mut parts = args.split_whitespace();
            let size: usize = parts.next().unwrap().parse().unwrap();
            let last = parts.next() == Some("LAST");
            let mut chunk = vec![0; size];
            if reader.read_exact(&mut chunk).await.is_err() {
                return Next::Close;
            }
            chunks.extend_from_slice(&chunk);
            if last {
                log.line("<data>");
                log.0
                    .lock()
                    .unwrap()
                    .messages
                    .push(std::mem::take(&mut chunks));
                final_replies(script, &rcpts)
            } else {
                "250 2.0.0 chunk ok\r\n".into()
            }
        } else if upper == "QUIT" {
            let _ = reader.get_mut().write_all(b"221 2.0.0 bye\r\n").await;
            return Next::Close;
        } else {
            "502 5.5.2 unknown command\r\n".into()
        };
        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return Next::Close;
        }
    }
}

fn final_replies(script: &Script, rcpts: &[String]) -> String {
    if !script.lmtp {
        return "250 2.0.0 queued\r\n".into();
    }
    rcpts
        .iter()
        .map(|r| {
            format!(
                "{}\r\n",
                script
                    .lmtp_final
                    .get(r.as_str())
                    .copied()
                    .unwrap_or("250 2.0.0 delivered")
            )
        })
        .collect()
}

/// A self-signed certificate for `localhost`, its PEM file (for `root_ca`) and a server
/// configuration presenting it.
fn tls_setup(dir: &Path) -> (Arc<ServerConfig>, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem_path = dir.join("ca.pem");
    std::fs::write(&pem_path, cert.cert.pem()).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    (Arc::new(config), pem_path.display().to_string())
}

fn config(module: &str, targets: &str, extra: &str) -> String {
    format!(
        "hostname mx.test\n\
         capture tcp://127.0.0.1:1 {{\n    deliver_to {module} {targets} {{\n{extra}\n    }}\n}}\n"
    )
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n";

#[tokio::test]
async fn smtp_sends_exactly_the_expected_commands() {
    let (port, log) = serve_tcp(Script::smtp(&["PIPELINING", "8BITMIME", "SIZE 100000"])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    assert!(target.relays(), "target.smtp relays");

    let mut delivery = target.start(&envelope("from@example.org")).await.unwrap();
    delivery.add_rcpt("a@example.net").await.unwrap();
    delivery.add_rcpt("b@example.net").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    // The message is sent but not ended: the server has taken nothing yet.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!log.lines().contains(&"<data>".to_owned()));
    delivery.commit().await.unwrap();

    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "EHLO mx.test",
            "MAIL FROM:<from@example.org> BODY=8BITMIME",
            "RCPT TO:<a@example.net>",
            "RCPT TO:<b@example.net>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
    assert_eq!(log.messages(), [MESSAGE.to_vec()]);
}

#[tokio::test]
async fn recipient_errors_carry_the_servers_reply() {
    let mut script = Script::smtp(&["ENHANCEDSTATUSCODES"]);
    script
        .rcpt
        .insert("nobody@example.net", "550 5.1.1 no such user here");
    script
        .rcpt
        .insert("full@example.net", "452 4.2.2 mailbox full");
    script
        .rcpt
        .insert("many@example.net", "552 5.5.3 too many recipients");
    script.rcpt.insert("plain@example.net", "550 rejected");
    let (port, log) = serve_tcp(script).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;

    let mut delivery = target.start(&envelope("from@example.org")).await.unwrap();
    let e = delivery.add_rcpt("nobody@example.net").await.unwrap_err();
    assert_eq!(
        (e.code, e.enhanced.as_str(), e.message.as_str()),
        (550, "5.1.1", "no such user here")
    );
    let e = delivery.add_rcpt("full@example.net").await.unwrap_err();
    assert_eq!((e.code, e.enhanced.as_str()), (452, "4.2.2"));
    assert!(e.is_temporary());
    let e = delivery.add_rcpt("many@example.net").await.unwrap_err();
    assert_eq!(
        (e.code, e.enhanced.as_str()),
        (452, "4.5.3"),
        "552 to RCPT is temporary"
    );
    let e = delivery.add_rcpt("plain@example.net").await.unwrap_err();
    assert_eq!((e.code, e.enhanced.as_str()), (550, "5.0.0"));
    delivery.add_rcpt("ok@example.net").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    delivery.commit().await.unwrap();
    let lines = log.settled().await;
    assert_eq!(lines.iter().filter(|l| l.starts_with("RCPT")).count(), 5);
    assert!(lines.contains(&"<data>".to_owned()));
}

#[tokio::test]
async fn abort_in_data_leaves_nothing_downstream() {
    let (port, log) = serve_tcp(Script::smtp(&[])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    let mut delivery = target.start(&envelope("from@example.org")).await.unwrap();
    delivery.add_rcpt("a@example.net").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    delivery.abort().await;
    let lines = log.settled().await;
    assert_eq!(lines.last().map(String::as_str), Some("<close>"));
    assert!(!lines.contains(&"<data>".to_owned()));
    assert!(log.messages().is_empty());
}

#[tokio::test]
async fn bdat_when_chunking_is_offered() {
    let (port, log) = serve_tcp(Script::smtp(&["CHUNKING", "8BITMIME"])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "EHLO mx.test",
            "MAIL FROM:<from@example.org> BODY=8BITMIME",
            "RCPT TO:<a@example.net>",
            &format!("BDAT {}", MESSAGE.len()),
            "BDAT 0 LAST",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
    assert_eq!(
        log.messages(),
        [MESSAGE.to_vec()],
        "no dot-stuffing in BDAT"
    );
}

#[tokio::test]
async fn size_limit_is_checked_before_sending() {
    let (port, log) = serve_tcp(Script::smtp(&["SIZE 10"])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    let mut delivery = target.start(&envelope("from@example.org")).await.unwrap();
    delivery.add_rcpt("a@example.net").await.unwrap();
    let e = delivery.body(MESSAGE).await.unwrap_err();
    assert_eq!((e.code, e.enhanced.as_str()), (552, "5.3.4"));
    delivery.abort().await;
    assert!(!log.settled().await.contains(&"DATA".to_owned()));
}

#[tokio::test]
async fn smtputf8() {
    let (port, log) = serve_tcp(Script::smtp(&["SMTPUTF8"])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    let envelope = Envelope {
        smtputf8: true,
        ..envelope("jösé@example.org")
    };
    let mut delivery = target.start(&envelope).await.unwrap();
    delivery.add_rcpt("ñ@example.net").await.unwrap();
    delivery.abort().await;
    let lines = log.settled().await;
    assert!(lines.contains(&"MAIL FROM:<jösé@example.org> SMTPUTF8".to_owned()));

    // A server without SMTPUTF8 can't take a non-ASCII address.
    let (port, _log) = serve_tcp(Script::smtp(&[])).await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    let mut delivery = target
        .start(&common::envelope("a@example.org"))
        .await
        .unwrap();
    let e = delivery.add_rcpt("ñ@example.net").await.unwrap_err();
    assert_eq!((e.code, e.enhanced.as_str()), (553, "5.6.7"));
    delivery.abort().await;
}

#[tokio::test]
async fn starttls_with_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, ca) = tls_setup(dir.path());
    let mut script = Script::smtp(&["STARTTLS", "8BITMIME"]);
    script.tls = Some(tls);
    let (port, log) = serve_tcp(script).await;
    let extra = format!(
        "        require_tls yes\n        tls_client {{\n            root_ca {ca}\n        }}"
    );
    let (target, _r) =
        load_target(&config("smtp", &format!("tcp://localhost:{port}"), &extra)).await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "EHLO mx.test",
            "STARTTLS",
            "<tls>",
            "EHLO mx.test",
            "MAIL FROM:<from@example.org> BODY=8BITMIME",
            "RCPT TO:<a@example.net>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
}

#[tokio::test]
async fn untrusted_certificate_falls_back_to_plaintext_unless_tls_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, _ca) = tls_setup(dir.path());
    let mut script = Script::smtp(&["STARTTLS"]);
    script.tls = Some(tls);
    let (port, log) = serve_tcp(script).await;
    let addr = format!("tcp://localhost:{port}");

    // The certificate is self-signed and not trusted: required TLS fails, temporarily.
    let (target, _r) = load_target(&config("smtp", &addr, "        require_tls yes")).await;
    let e = target
        .start(&envelope("from@example.org"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.code, e.enhanced.as_str()), (451, "4.7.0"));
    log.settled().await;

    // Opportunistic TLS: a second connection in the clear.
    let (target, _r) = load_target(&config("smtp", &addr, "")).await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    let lines = log.settled().await;
    let tail: Vec<&str> = lines.iter().map(String::as_str).rev().take(9).collect();
    assert_eq!(
        tail.into_iter().rev().collect::<Vec<_>>(),
        [
            "<close>",
            "<connect>",
            "EHLO mx.test",
            "MAIL FROM:<from@example.org>",
            "RCPT TO:<a@example.net>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
}

#[tokio::test]
async fn require_tls_without_starttls_fails() {
    let (port, log) = serve_tcp(Script::smtp(&["8BITMIME"])).await;
    let (target, _r) = load_target(&config(
        "smtp",
        &format!("tcp://127.0.0.1:{port}"),
        "        require_tls",
    ))
    .await;
    let e = target
        .start(&envelope("from@example.org"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.code, e.enhanced.as_str()), (451, "4.7.0"));
    assert_eq!(
        log.settled().await,
        ["<connect>", "EHLO mx.test", "QUIT", "<close>"]
    );
}

#[tokio::test]
async fn implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, ca) = tls_setup(dir.path());
    let mut script = Script::smtp(&["STARTTLS"]);
    script.tls = Some(tls);
    let (port, log) = serve_tls(script).await;
    // The global tls_client is inherited.
    let text = format!(
        "tls_client {{\n    root_ca {ca}\n}}\n{}",
        config("smtp", &format!("tls://localhost:{port}"), "")
    );
    let (target, _r) = load_target(&text).await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "<tls>",
            "EHLO mx.test",
            "MAIL FROM:<from@example.org>",
            "RCPT TO:<a@example.net>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
}

#[tokio::test]
async fn auth_plain_sends_the_credentials_and_reports_failure_temporarily() {
    let (port, log) = serve_tcp(Script::smtp(&["AUTH PLAIN LOGIN"])).await;
    let extra = "        auth plain relay-user s3cret";
    let (target, _r) =
        load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), extra)).await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    let lines = log.settled().await;
    let auth = lines.iter().find(|l| l.starts_with("AUTH PLAIN ")).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&auth["AUTH PLAIN ".len()..])
        .unwrap();
    assert_eq!(decoded, b"\0relay-user\0s3cret");
    assert_eq!(lines[2], *auth, "AUTH right after EHLO");

    let mut script = Script::smtp(&["AUTH PLAIN"]);
    script.auth = Some("535 5.7.8 bad credentials");
    let (port, log) = serve_tcp(script).await;
    let (target, _r) =
        load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), extra)).await;
    let e = target
        .start(&envelope("from@example.org"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.code, e.enhanced.as_str()), (451, "4.7.0"));
    assert!(!log.settled().await.iter().any(|l| l.starts_with("MAIL")));

    // Without AUTH PLAIN on offer nothing is sent.
    let (port, log) = serve_tcp(Script::smtp(&["8BITMIME"])).await;
    let (target, _r) =
        load_target(&config("smtp", &format!("tcp://127.0.0.1:{port}"), extra)).await;
    let e = target
        .start(&envelope("from@example.org"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.code, e.enhanced.as_str()), (451, "4.7.0"));
    assert_eq!(
        log.settled().await,
        ["<connect>", "EHLO mx.test", "QUIT", "<close>"]
    );
}

#[tokio::test]
async fn lmtp_per_recipient_replies() {
    let mut script = Script::smtp(&["PIPELINING", "ENHANCEDSTATUSCODES"]);
    script.lmtp = true;
    script
        .lmtp_final
        .insert("full@example.org", "552 5.2.2 over quota");
    let (port, log) = serve_tcp(script).await;
    let (target, _r) = load_target(&config("lmtp", &format!("tcp://127.0.0.1:{port}"), "")).await;
    assert!(!target.relays(), "target.lmtp delivers locally");

    let err = deliver(
        &*target,
        "from@example.net",
        &["a@example.org", "full@example.org", "c@example.org"],
        MESSAGE,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code, err.enhanced.as_str(), err.message.as_str()),
        (552, "5.2.2", "over quota"),
        "the first failure"
    );
    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "LHLO mx.test",
            "MAIL FROM:<from@example.net>",
            "RCPT TO:<a@example.org>",
            "RCPT TO:<full@example.org>",
            "RCPT TO:<c@example.org>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );

    // All accepted: success.
    deliver(
        &*target,
        "from@example.net",
        &["a@example.org", "c@example.org"],
        MESSAGE,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn lmtp_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmtp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Log::default();
    let mut script = Script::smtp(&["STARTTLS"]);
    script.lmtp = true;
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(Box::new(stream), script.clone(), l.clone(), false));
        }
    });
    let (target, _r) =
        load_target(&config("lmtp", &format!("unix://{}", path.display()), "")).await;
    deliver(&*target, "from@example.net", &["a@example.org"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        log.settled().await,
        [
            "<connect>",
            "LHLO mx.test",
            "MAIL FROM:<from@example.net>",
            "RCPT TO:<a@example.org>",
            "DATA",
            "<data>",
            "QUIT",
            "<close>",
        ]
    );
    assert_eq!(log.messages(), [MESSAGE.to_vec()]);
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn connection_refused_is_temporary_and_the_next_target_is_tried() {
    let dead = closed_port().await;
    let (target, _r) = load_target(&config("smtp", &format!("tcp://127.0.0.1:{dead}"), "")).await;
    let e = target
        .start(&envelope("from@example.org"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.code, e.enhanced.as_str()), (451, "4.4.1"));

    let (port, log) = serve_tcp(Script::smtp(&[])).await;
    let (target, _r) = load_target(&config(
        "smtp",
        &format!("tcp://127.0.0.1:{dead} tcp://127.0.0.1:{port}"),
        "",
    ))
    .await;
    deliver(&*target, "from@example.org", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    assert!(log.settled().await.contains(&"<data>".to_owned()));
}

#[tokio::test]
async fn named_block_with_targets_directive() {
    let (port, log) = serve_tcp(Script::smtp(&[])).await;
    let text = format!(
        "hostname mx.global\n\
         target.smtp relay {{\n    targets tcp://127.0.0.1:{port}\n    hostname relay.test\n    connect_timeout 5s\n    command_timeout 30s\n    submission_timeout 1m\n    attempt_starttls no\n    debug yes\n}}\n\
         capture tcp://127.0.0.1:1 {{\n    deliver_to &relay\n}}\n"
    );
    let (target, _r) = load_target(&text).await;
    deliver(&*target, "", &["a@example.net"], MESSAGE)
        .await
        .unwrap();
    let lines = log.settled().await;
    assert_eq!(lines[1], "EHLO relay.test");
    assert_eq!(lines[2], "MAIL FROM:<>");
}

#[test]
fn config_errors() {
    let wrap = |block: &str| {
        format!("hostname mx.test\ncapture tcp://127.0.0.1:1 {{\n    deliver_to smtp {block}\n}}\n")
    };
    assert_eq!(
        errors_of(&wrap("tcp://127.0.0.1:25 {\n        auth forward\n    }")),
        [
            "4:14: auth forward is not supported: madmail does not keep clients' passwords; use auth plain USER PASSWORD"
        ]
    );
    assert_eq!(
        errors_of(&wrap(
            "tcp://127.0.0.1:25 {\n        auth plain user\n    }"
        )),
        ["4:14: auth plain needs a user name and a password"]
    );
    assert_eq!(
        errors_of(&wrap("{\n    }")),
        ["3:5: target.smtp: no server to deliver to; give one with targets tcp://host:port"]
    );
    assert_eq!(
        errors_of(&wrap("smtp://x:25 tcp://:25")),
        [
            "3:21: targets: invalid address \"smtp://x:25\": unknown scheme \"smtp\" (use tcp, tls or unix)",
            "3:33: targets: tcp://:25 has no host",
        ]
    );
    assert_eq!(
        errors_of(
            "capture tcp://127.0.0.1:1 {\n    deliver_to lmtp unix:///run/x.sock {\n        require_tls\n    }\n}\n"
        ),
        [
            "2:5: deliver_to: directive hostname is required",
            "2:5: target.lmtp: require_tls can't be met over unix:// targets",
        ]
    );
    // tls_client is madmail-tls's; its errors come with their places.
    let errors = errors_of(&wrap(
        "tcp://127.0.0.1:25 {\n        tls_client {\n            root_ca /nonexistent.pem\n            cert /c.pem\n        }\n    }",
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("5:21: root_ca: /nonexistent.pem:"),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("6:"), "{errors:?}");
}

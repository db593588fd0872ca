//! `target.smtp` and `target.lmtp` against a real third-party server: Python's aiosmtpd
//! (tests/peers/aiosmtpd_server.py), over plain TCP and STARTTLS (Python's OpenSSL on the
//! server side).
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`); the tests fail, saying so, when
//! they are missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use common::{deliver, envelope, load_target};

struct Peer {
    _child: Child,
    port: u16,
    out: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn start(args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiosmtpd_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("this test needs python3 (with aiosmtpd: pip install aiosmtpd)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("aiosmtpd server did not start")
            .unwrap()
            .expect("aiosmtpd server exited: this test needs python3 with aiosmtpd (pip install aiosmtpd)");
        let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        Peer {
            _child: child,
            port,
            out,
        }
    }

    /// The next message the server received.
    async fn message(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.out.next_line())
            .await
            .expect("no message reached aiosmtpd")
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

fn config(module: &str, port: u16, extra: &str) -> String {
    format!(
        "hostname mx.test\n\
         capture tcp://127.0.0.1:1 {{\n    deliver_to {module} tcp://localhost:{port} {{\n{extra}\n    }}\n}}\n"
    )
}

const MESSAGE: &[u8] = b"From: a@example.org\r\nSubject: interop\r\n\r\n.dot line\r\nline two\r\n";

#[tokio::test]
async fn smtp_to_aiosmtpd() {
    let mut peer = Peer::start(&["smtp"]).await;
    let (target, _r) = load_target(&config("smtp", peer.port, "")).await;

    let mut delivery = target.start(&envelope("sender@example.org")).await.unwrap();
    let e = delivery.add_rcpt("unknown@example.net").await.unwrap_err();
    assert_eq!(
        (e.code, e.enhanced.as_str(), e.message.as_str()),
        (550, "5.1.1", "no such user")
    );
    delivery.add_rcpt("one@example.net").await.unwrap();
    delivery.add_rcpt("two@example.net").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    delivery.commit().await.unwrap();

    let got = peer.message().await;
    assert_eq!(got["mail_from"], "sender@example.org");
    assert_eq!(got["mail_options"], serde_json::json!(["BODY=8BITMIME"]));
    assert_eq!(
        got["rcpts"],
        serde_json::json!(["one@example.net", "two@example.net"])
    );
    assert_eq!(got["tls"], false);
    assert_eq!(got["content"], String::from_utf8_lossy(MESSAGE).as_ref());
}

#[tokio::test]
async fn smtp_starttls_to_aiosmtpd() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut peer = Peer::start(&[
        "smtp",
        cert_path.to_str().unwrap(),
        key_path.to_str().unwrap(),
    ])
    .await;
    let extra = format!(
        "        require_tls yes\n        tls_client {{\n            root_ca {}\n        }}",
        cert_path.display()
    );
    let (target, _r) = load_target(&config("smtp", peer.port, &extra)).await;
    deliver(
        &*target,
        "sender@example.org",
        &["one@example.net"],
        MESSAGE,
    )
    .await
    .unwrap();
    let got = peer.message().await;
    assert_eq!(got["tls"], true);
    assert_eq!(got["content"], String::from_utf8_lossy(MESSAGE).as_ref());
}

#[tokio::test]
async fn lmtp_to_aiosmtpd() {
    let mut peer = Peer::start(&["lmtp"]).await;
    let (target, _r) = load_target(&config("lmtp", peer.port, "")).await;

    deliver(&*target, "sender@example.org", &["a@example.org"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        peer.message().await["rcpts"],
        serde_json::json!(["a@example.org"])
    );

    let e = deliver(
        &*target,
        "sender@example.org",
        &["a@example.org", "full@example.org"],
        MESSAGE,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code, e.enhanced.as_str(), e.message.as_str()),
        (552, "5.2.2", "over quota")
    );
    peer.message().await;
}

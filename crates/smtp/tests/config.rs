//! The endpoints as a configuration builds them: directives, defaults and errors, the TLS
//! layer (`tls file`), the pipeline (an MX never relays), shared limits, unix sockets under
//! the runtime directory, and the counters capability.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madmail_config::{Environment, parse_str};
use madmail_module::auth::{AuthError, PlainAuth};
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Loaded, ModuleSpec, Registry,
    Running, load,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Messages committed by `test_target NAME`, by NAME.
static DELIVERED: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

fn delivered(name: &str) -> Vec<String> {
    DELIVERED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(name).cloned())
        .unwrap_or_default()
}

/// `test_target NAME` (or `test_relay NAME`, which says it relays): records recipients.
struct Target {
    name: String,
    relays: bool,
}

#[async_trait]
impl DeliveryTarget for Target {
    async fn start(&self, _: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        Ok(Box::new(TargetDelivery {
            name: self.name.clone(),
            rcpts: Vec::new(),
        }))
    }
    fn relays(&self) -> bool {
        self.relays
    }
}

struct TargetDelivery {
    name: String,
    rcpts: Vec<String>,
}

#[async_trait]
impl Delivery for TargetDelivery {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        self.rcpts.push(rcpt.to_owned());
        Ok(())
    }
    async fn body(&mut self, _: &[u8]) -> Result<(), DeliveryError> {
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        let mut map = DELIVERED.lock().unwrap();
        map.get_or_insert_with(HashMap::new)
            .entry(self.name.clone())
            .or_default()
            .extend(self.rcpts);
        Ok(())
    }
    async fn abort(self: Box<Self>) {}
}

fn build_target(def: &Definition<'_>, ctx: &mut Ctx<'_>, relays: bool) -> Result<Built, Errors> {
    Block::new(def.node, ctx.globals()).finish()?;
    let name = def
        .args
        .first()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    Ok(Built::new(Capabilities::new().with::<dyn DeliveryTarget>(
        Arc::new(Target { name, relays }),
    )))
}

struct Passwords;

#[async_trait]
impl PlainAuth for Passwords {
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthError> {
        if (user, password) == ("alice", "secret") {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_smtp::register(&mut r);
    madmail_tls::register(&mut r);
    r.register(ModuleSpec {
        name: "test_target",
        kind: Kind::Named,
        build: |d, c| build_target(d, c, false),
        summary: "records recipients",
    });
    r.register(ModuleSpec {
        name: "test_relay",
        kind: Kind::Named,
        build: |d, c| build_target(d, c, true),
        summary: "records recipients, says it relays",
    });
    r.register(ModuleSpec {
        name: "auth.test",
        kind: Kind::Named,
        build: |d, c| {
            Block::new(d.node, c.globals()).finish()?;
            Ok(Built::new(
                Capabilities::new().with::<dyn PlainAuth>(Arc::new(Passwords)),
            ))
        },
        summary: "alice/secret",
    });
    r
}

fn try_load(text: &str) -> Result<Loaded, Errors> {
    let nodes =
        parse_str("test.conf".as_ref(), text, &Environment::empty()).map_err(Errors::from)?;
    load(&registry(), &nodes)
}

fn errors_of(text: &str) -> String {
    match try_load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Self-signed certificate and key files for `localhost` in `dir`.
fn cert_files(dir: &std::path::Path) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn configuration_errors_are_reported_with_their_reasons() {
    let e = errors_of(
        "hostname mx.test\nsubmission tcp://127.0.0.1:1 {\n  tls off\n  deliver_to test_target x\n}\n",
    );
    assert!(e.contains("submission needs an auth provider"), "{e}");

    let e =
        errors_of("hostname mx.test\nsmtp tcp://127.0.0.1:1 {\n  deliver_to test_target x\n}\n");
    assert!(e.contains("directive tls is required"), "{e}");

    let e = errors_of("smtp tcp://127.0.0.1:1 {\n  tls off\n  deliver_to test_target x\n}\n");
    assert!(e.contains("directive hostname is required"), "{e}");

    let e = errors_of(
        "hostname mx.test\nsmtp tls://127.0.0.1:1 {\n  tls off\n  deliver_to test_target x\n}\n",
    );
    assert!(
        e.contains("can't listen on tls://127.0.0.1:1 (implicit TLS) without a tls configuration"),
        "{e}"
    );

    let e = errors_of(
        "hostname mx.test\ntls off\nsmtp tcp://127.0.0.1:1 udp://x:1 {\n  reverse_proxy_mode yes\n  auth_map identity\n  buffer fs /tmp\n  smtp_max_line_length 100\n  limits {\n    all rate x\n    everyone rate 1\n  }\n  auth &missing\n  deliver_to test_target x\n}\n",
    );
    for expected in [
        "test.conf:3:24: invalid address \"udp://x:1\"",
        "test.conf:4:3: reverse_proxy_mode is a maddy directive that madmail does not implement",
        "test.conf:5:3: auth_map is a maddy directive that madmail does not implement",
        "test.conf:6:10: buffer fs: file-backed message buffers are not implemented",
        "test.conf:7:24: smtp_max_line_length: expected a number of octets of at least 1000",
        "test.conf:9:14: all rate: expected a whole number, not \"x\"",
        "test.conf:10:5: unknown limit scope everyone",
        "test.conf:12:8: unknown instance &missing",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }

    // What is fine: lmtp without TLS, `buffer ram`, maddy's other directives.
    try_load(
        "hostname mx.test\nlmtp unix:///tmp/madmail-smtp-test-unused.sock {\n  buffer ram\n  defer_sender_reject no\n  max_logged_rcpt_errors 3\n  max_header_size 64K\n  io_debug no\n  debug yes\n  deliver_to test_target x\n}\n",
    )
    .unwrap();
}

async fn read_reply(r: &mut (impl AsyncBufReadExt + Unpin)) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Talks a whole plaintext transaction; returns each reply's first line.
async fn transaction(port: u16, auth: bool, rcpt: &str) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut s = BufReader::new(stream);
    let mut replies = vec![read_reply(&mut s).await];
    let mut cmds = vec!["EHLO client".to_owned()];
    if auth {
        cmds.push("AUTH PLAIN AGFsaWNlAHNlY3JldA==".to_owned());
    }
    cmds.push("MAIL FROM:<alice@mx.test>".to_owned());
    cmds.push(format!("RCPT TO:<{rcpt}>"));
    cmds.push("QUIT".to_owned());
    for cmd in cmds {
        s.get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        replies.push(read_reply(&mut s).await);
    }
    replies
        .iter()
        .map(|r| r.lines().last().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn mx_never_relays_but_submission_does() {
    let (mx, sub) = (free_port(), free_port());
    let loaded = try_load(&format!(
        "hostname mx.test\ntls off\n\
         smtp tcp://127.0.0.1:{mx} {{\n  deliver_to test_relay mx_out\n}}\n\
         submission tcp://127.0.0.1:{sub} {{\n  auth auth.test\n  deliver_to test_relay sub_out\n}}\n"
    ))
    .unwrap();
    let mut running = Running::start(&loaded.instances).await.unwrap();

    let mx_replies = transaction(mx, false, "someone@elsewhere.example").await;
    assert_eq!(mx_replies[3], "550 5.7.1 relaying denied", "{mx_replies:?}");
    // Without TLS (tls off), plaintext AUTH is allowed, as in maddy.
    let sub_replies = transaction(sub, true, "someone@elsewhere.example").await;
    assert_eq!(sub_replies[2], "235 2.7.0 Authentication succeeded");
    assert_eq!(sub_replies[4], "250 2.1.5 Recipient OK", "{sub_replies:?}");

    let counters = loaded.endpoints[0]
        .caps
        .get::<madmail_smtp::Counters>()
        .expect("endpoints offer their counters");
    assert_eq!(counters.snapshot().recipients_rejected, 1);
    running.stop().await;
}

#[tokio::test]
async fn tls_from_the_configuration_and_shared_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let port = free_port();
    let loaded = try_load(&format!(
        "hostname mx.test\ntls file {cert} {key}\n\
         limits shared {{\n  all concurrency 5\n  ip rate 100 1s\n}}\n\
         smtp tcp://127.0.0.1:{port} {{\n  limits &shared\n  max_message_size 1M\n  deliver_to test_target tls_in\n}}\n"
    ))
    .unwrap();
    let mut running = Running::start(&loaded.instances).await.unwrap();

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut s = BufReader::new(stream);
    read_reply(&mut s).await;
    s.get_mut().write_all(b"EHLO client\r\n").await.unwrap();
    let ehlo = read_reply(&mut s).await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    assert!(ehlo.contains("250-SIZE 1048576\r\n"), "{ehlo}");
    s.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("220 2.0.0"));

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).unwrap();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            s.into_inner(),
        )
        .await
        .unwrap();
    let mut s = BufReader::new(tls);
    for (cmd, code) in [
        ("EHLO client", "250 "),
        ("MAIL FROM:<a@example.org>", "250 "),
        ("RCPT TO:<u@mx.test>", "250 "),
        ("DATA", "354 "),
        ("Subject: over tls\r\n\r\nhi\r\n.", "250 "),
        ("QUIT", "221 "),
    ] {
        s.get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        let reply = read_reply(&mut s).await;
        assert!(
            reply.lines().last().unwrap().starts_with(code),
            "{cmd}: {reply}"
        );
    }
    assert_eq!(delivered("tls_in"), ["u@mx.test"]);
    running.stop().await;
}

#[tokio::test]
async fn lmtp_relative_socket_lives_in_the_runtime_dir() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let loaded = try_load(&format!(
        "hostname mx.test\nruntime_dir {}\nlmtp unix://lmtp.sock {{\n  deliver_to test_target lmtp_in\n}}\n",
        runtime.display()
    ))
    .unwrap();
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let path = runtime.join("lmtp.sock");
    assert!(path.exists());
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut s = BufReader::new(stream);
    assert!(read_reply(&mut s).await.starts_with("220 mx.test LMTP"));
    s.get_mut()
        .write_all(b"LHLO client\r\nMAIL FROM:<>\r\nRCPT TO:<a@mx.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
        .await
        .unwrap();
    for _ in 0..5 {
        read_reply(&mut s).await;
    }
    s.get_mut()
        .write_all(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        .await
        .unwrap();
    assert!(read_reply(&mut s).await.contains("<a@mx.test> OK"));
    assert!(read_reply(&mut s).await.contains("<b@mx.test> OK"));
    assert_eq!(delivered("lmtp_in"), ["a@mx.test", "b@mx.test"]);
    running.stop().await;
    assert!(!path.exists());
}

/// The value of the sample `name{labels}` in rendered metrics.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn endpoints_report_their_counters_as_metrics() {
    let (mx, sub) = (free_port(), free_port());
    let loaded = try_load(&format!(
        "hostname mx.test\ntls off\n\
         smtp tcp://127.0.0.1:{mx} unix:///tmp/madmail-smtp-metrics-{mx}.sock {{\n  deliver_to test_relay metrics_out\n}}\n\
         submission tcp://127.0.0.1:{sub} {{\n  auth auth.test\n  deliver_to test_relay metrics_sub\n}}\n"
    ))
    .unwrap();
    let smtp = format!(
        "{{endpoint=\"smtp\",listen=\"tcp://127.0.0.1:{mx},unix:///tmp/madmail-smtp-metrics-{mx}.sock\"}}"
    );
    let submission = format!("{{endpoint=\"submission\",listen=\"tcp://127.0.0.1:{sub}\"}}");
    let before = loaded.globals.metrics.render();
    for name in [
        "madmail_smtp_connections_total",
        "madmail_smtp_connections_refused_total",
        "madmail_smtp_tls_handshake_failures_total",
        "madmail_smtp_auth_failures_total",
        "madmail_smtp_messages_accepted_total",
        "madmail_smtp_messages_rejected_total",
        "madmail_smtp_recipients_rejected_total",
        "madmail_smtp_active_sessions",
    ] {
        assert_eq!(
            before.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{before}"
        );
        assert_eq!(
            sample(&before, &format!("{name}{smtp}")),
            Some(0.0),
            "{before}"
        );
        assert_eq!(sample(&before, &format!("{name}{submission}")), Some(0.0));
    }
    assert!(before.contains("# TYPE madmail_smtp_active_sessions gauge\n"));
    assert!(before.contains("# TYPE madmail_smtp_connections_total counter\n"));

    let mut running = Running::start(&loaded.instances).await.unwrap();
    // The MX refuses to relay: one rejected recipient.
    let replies = transaction(mx, false, "someone@elsewhere.example").await;
    assert_eq!(replies[3], "550 5.7.1 relaying denied", "{replies:?}");
    // A wrong password on submission: one auth failure.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", sub))
        .await
        .unwrap();
    let mut s = BufReader::new(stream);
    read_reply(&mut s).await;
    for (cmd, code) in [
        ("EHLO client", "250"),
        ("AUTH PLAIN AGFsaWNlAHdyb25n", "535"),
    ] {
        s.get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        let reply = read_reply(&mut s).await;
        assert!(reply.starts_with(code), "{cmd}: {reply}");
    }
    // This session is still open.
    let during = loaded.globals.metrics.render();
    assert_eq!(
        sample(
            &during,
            &format!("madmail_smtp_active_sessions{submission}")
        ),
        Some(1.0),
        "{during}"
    );
    drop(s);

    let after = loaded.globals.metrics.render();
    for (name, series, value) in [
        ("madmail_smtp_connections_total", &smtp, 1.0),
        ("madmail_smtp_recipients_rejected_total", &smtp, 1.0),
        ("madmail_smtp_messages_accepted_total", &smtp, 0.0),
        ("madmail_smtp_auth_failures_total", &smtp, 0.0),
        ("madmail_smtp_connections_total", &submission, 1.0),
        ("madmail_smtp_auth_failures_total", &submission, 1.0),
        ("madmail_smtp_recipients_rejected_total", &submission, 0.0),
    ] {
        assert_eq!(
            sample(&after, &format!("{name}{series}")),
            Some(value),
            "{name}{series} in:\n{after}"
        );
    }
    // The session ends once the server has seen the client go.
    let mut idle = false;
    for _ in 0..100 {
        let text = loaded.globals.metrics.render();
        if sample(&text, &format!("madmail_smtp_active_sessions{submission}")) == Some(0.0) {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(idle, "the submission session never ended");
    running.stop().await;
}

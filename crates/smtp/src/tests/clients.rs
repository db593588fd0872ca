//! Stock clients against the endpoints: swaks and Python's smtplib. Each test needs its tool
//! (`apt-get install -y swaks libio-socket-ssl-perl`, `python3`) and is skipped with a notice
//! without it.

use std::process::Command;

use super::harness::*;
use crate::config::Protocol;

/// Runs a command to completion off the async runtime (the server runs on it meanwhile).
async fn run(mut command: Command) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn submission_with_tls(implicit: bool) -> (Running, Recorder) {
    let recorder = Recorder::default();
    let (server_tls, _) = tls_pair();
    let mut s = settings(Protocol::Submission, &recorder);
    s.starttls = Some(server_tls.clone());
    s.tls = Some(server_tls);
    let running = Running::start(s, vec![tcp("127.0.0.1", implicit)]).await;
    (running, recorder)
}

fn swaks(port: u16, extra: &[&str]) -> Command {
    let mut c = Command::new("swaks");
    c.args([
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--ehlo",
        "client.test",
        "--from",
        "alice@mx.test",
        "--to",
        "friend@example.org",
        "--header",
        "Subject: from swaks",
        "--body",
        "hello from swaks",
        "--timeout",
        "10",
    ]);
    c.args(extra);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_and_auth_plain() {
    if !have("swaks") {
        return;
    }
    let (running, recorder) = submission_with_tls(false).await;
    let port = running.addr(0).port();
    let auth = [
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
    ];
    let (ok, out) = run(swaks(port, &auth)).await;
    assert!(ok, "swaks failed:\n{out}");
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains(" ~> AUTH PLAIN "), "{out}");
    let stored = recorder.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].envelope.auth_user.as_deref(), Some("alice"));
    assert!(stored[0].text().contains("hello from swaks"));
    assert!(stored[0].text().contains(" with ESMTPSA id "));

    // A wrong password: 535, nothing delivered.
    let wrong = [
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "guess",
    ];
    let (ok, out) = run(swaks(port, &wrong)).await;
    assert!(!ok);
    assert!(out.contains("535 5.7.8 Invalid credentials"), "{out}");

    // Without TLS, AUTH is not even offered, and forcing it is refused.
    let plain = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
        "--auth-optional-strict",
    ];
    let (ok, _) = run(swaks(port, &plain)).await;
    assert!(!ok);
    assert_eq!(recorder.messages().len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_implicit_tls_auth_login() {
    if !have("swaks") {
        return;
    }
    let (running, recorder) = submission_with_tls(true).await;
    let port = running.addr(0).port();
    let args = [
        "--tls-on-connect",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
    ];
    let (ok, out) = run(swaks(port, &args)).await;
    assert!(ok, "swaks failed:\n{out}");
    assert_eq!(recorder.messages().len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelining_and_chunking_to_the_mx() {
    if !have("swaks") {
        return;
    }
    let recorder = Recorder::default();
    let running = Running::start(
        settings(Protocol::Smtp, &recorder),
        vec![tcp("127.0.0.1", false)],
    )
    .await;
    let port = running.addr(0).port();
    let (ok, out) = run(swaks(port, &["--pipeline"])).await;
    assert!(ok, "swaks --pipeline failed:\n{out}");
    let (ok, out) = run(swaks(port, &["--pipeline", "--to", "x@reject.test"])).await;
    assert!(!ok);
    assert!(out.contains("550 5.1.1 No such user"), "{out}");
    assert_eq!(recorder.messages().len(), 1);
    running.stop().await;
}

const SMTPLIB_UTF8: &str = r#"
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg['From'] = 'jöran@example.org'
msg['To'] = 'ü@mx.test'
msg['Subject'] = 'grüße'
msg.set_content('hallo wörld\n.\nnot the end\n')
with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='python.test') as s:
    s.ehlo()
    assert s.has_extn('smtputf8'), s.esmtp_features
    refused = s.send_message(msg)
    assert refused == {}, refused
print('sent')
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_send_message_with_smtputf8() {
    if !have("python3") {
        return;
    }
    let recorder = Recorder::default();
    let running = Running::start(
        settings(Protocol::Smtp, &recorder),
        vec![tcp("127.0.0.1", false)],
    )
    .await;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SMTPLIB_UTF8, &running.addr(0).port().to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "smtplib failed:\n{out}");
    let stored = recorder.messages();
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert!(m.envelope.smtputf8);
    assert_eq!(m.envelope.mail_from, "jöran@example.org");
    assert_eq!(m.rcpts, ["ü@mx.test"]);
    let text = m.text();
    assert!(text.contains("Subject: grüße\r\n"), "{text}");
    // smtplib dot-stuffs the lone "." line; it arrives as content.
    assert!(
        text.contains("hallo wörld\r\n.\r\nnot the end\r\n"),
        "{text}"
    );
    running.stop().await;
}

const SMTPLIB_STARTTLS: &str = r#"
import smtplib, ssl, sys
ctx = ssl._create_unverified_context()
with smtplib.SMTP('127.0.0.1', int(sys.argv[1])) as s:
    s.ehlo()
    assert not s.has_extn('auth'), 'AUTH offered before TLS'
    s.starttls(context=ctx)
    s.ehlo()
    try:
        s.login('alice', 'wrong')
        raise SystemExit('wrong password accepted')
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535, e
    s.login('alice', 'secret')
    s.sendmail('alice@mx.test', ['friend@example.org'],
               'From: alice@mx.test\r\nSubject: py\r\n\r\nvia starttls\r\n')
print('sent')
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_starttls_and_login() {
    if !have("python3") {
        return;
    }
    let (running, recorder) = submission_with_tls(false).await;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SMTPLIB_STARTTLS, &running.addr(0).port().to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "smtplib failed:\n{out}");
    let stored = recorder.messages();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].envelope.tls);
    assert!(stored[0].text().contains("via starttls"));
    running.stop().await;
}

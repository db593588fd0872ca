//! Mail through the real binary with stock clients: the embedded default configuration
//! (examples/local.conf) receiving over STARTTLS, refusing relaying and bad AUTH, taking
//! submission from a `madmail creds` user; Dovecot reading what it delivered; a certificate
//! file replaced under a running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{Server, free_port, madmail, require_tool, tempdir, text, write};

/// examples/local.conf copied into a temporary tree (its state goes to `<tmp>/local-state`),
/// with its ports replaced by free ones.
struct LocalServer {
    _dir: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
    smtp: u16,
    submission_tls: u16,
    submission: u16,
    server: Option<Server>,
}

impl LocalServer {
    fn start() -> LocalServer {
        let dir = tempdir();
        let root = dir.path().to_owned();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local.conf");
        let original = std::fs::read_to_string(&example).unwrap();
        let (smtp, submission_tls, submission) = (free_port(), free_port(), free_port());
        let conf_text = original
            .replace("127.0.0.1:2525", &format!("127.0.0.1:{smtp}"))
            .replace("127.0.0.1:4465", &format!("127.0.0.1:{submission_tls}"))
            .replace("127.0.0.1:5587", &format!("127.0.0.1:{submission}"));
        std::fs::create_dir_all(root.join("examples")).unwrap();
        let conf = write(&root.join("examples"), "local.conf", &conf_text);
        let mut cmd = madmail();
        cmd.arg("--config").arg(&conf).arg("run");
        let mut server = Server::start(cmd);
        server.wait_for("server started");
        LocalServer {
            _dir: dir,
            root,
            conf,
            smtp,
            submission_tls,
            submission,
            server: Some(server),
        }
    }

    fn maildir(&self, address: &str) -> PathBuf {
        self.root.join("local-state/maildir").join(address)
    }

    /// The messages in a mailbox's new/.
    fn new_messages(&self, address: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir(address).join("new")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.signal("TERM");
            assert_eq!(server.wait_exit(), Some(0));
        }
    }
}

fn swaks(args: &[&str]) -> Output {
    Command::new("swaks")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("swaks: {e}"))
}

#[test]
fn embedded_default_with_stock_clients() {
    require_tool("command -v swaks", "swaks");
    require_tool("command -v openssl", "openssl");
    require_tool("command -v python3", "python3");
    let mut local = LocalServer::start();
    let smtp = format!("127.0.0.1:{}", local.smtp);

    // 1. MX over STARTTLS (the certificate is self-signed: no verification here).
    let out = swaks(&[
        "--server",
        &smtp,
        "--tls",
        "--from",
        "bob@remote.test",
        "--to",
        "alice@example.test",
        "--header",
        "Subject: over starttls",
        "--body",
        "hello alice",
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let inbox = local.new_messages("alice@example.test");
    assert_eq!(inbox.len(), 1, "alice's new/: {inbox:?}");
    assert!(inbox[0].contains("Subject: over starttls") && inbox[0].contains("hello alice"));
    assert!(
        inbox[0].contains("Received: from") && inbox[0].contains("with ESMTPS"),
        "{}",
        inbox[0]
    );

    // 2. Relaying to a foreign domain: 5xx, nothing stored.
    let out = swaks(&[
        "--server",
        &smtp,
        "--from",
        "bob@remote.test",
        "--to",
        "someone@foreign.test",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("550 5.7.1"),
        "{}",
        text(&out.stdout)
    );
    assert!(!local.maildir("someone@foreign.test").exists());

    // 3. The served certificate, seen by openssl s_client after STARTTLS.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            &smtp,
            "-servername",
            "mx.madmail.localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(shown.contains("mx.madmail.localhost"), "{shown}");
    assert!(shown.contains("TLSv1.3"), "{shown}");

    // 4. Submission: AUTH over plaintext is refused, a wrong password gets 535.
    let submission = format!("127.0.0.1:{}", local.submission);
    let status = madmail()
        .args([
            "--config",
            local.conf.to_str().unwrap(),
            "creds",
            "create",
            "--password",
            "s3cret",
            "carol@example.test",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = swaks(&[
        "--server",
        &submission,
        "--auth",
        "PLAIN",
        "--auth-user",
        "carol@example.test",
        "--auth-password",
        "s3cret",
        "--from",
        "carol@example.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(
        !out.status.success(),
        "AUTH over plaintext worked:\n{}",
        text(&out.stdout)
    );
    let out = swaks(&[
        "--server",
        &submission,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "carol@example.test",
        "--auth-password",
        "wrong",
        "--from",
        "carol@example.test",
        "--to",
        "alice@example.test",
    ]);
    assert!(
        text(&out.stdout).contains("535 5.7.8"),
        "{}",
        text(&out.stdout)
    );

    // 5. Implicit TLS submission as the `creds` user: accepted and delivered.
    let tls = format!("127.0.0.1:{}", local.submission_tls);
    let out = swaks(&[
        "--server",
        &tls,
        "--tls-on-connect",
        "--auth",
        "LOGIN",
        "--auth-user",
        "carol@example.test",
        "--auth-password",
        "s3cret",
        "--from",
        "carol@example.test",
        "--to",
        "Dave@Example.test",
        "--header",
        "Subject: from carol",
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let dave = local.new_messages("dave@example.test");
    assert_eq!(dave.len(), 1);
    assert!(dave[0].contains("Subject: from carol"));

    // 6. Python's smtplib: STARTTLS, login, an SMTPUTF8 message.
    let script = format!(
        r#"
import smtplib, ssl
from email.message import EmailMessage
msg = EmailMessage()
msg["From"] = "carol@example.test"
msg["To"] = "alice@example.test"
msg["Subject"] = "Grüße"
msg.set_content("ünïcödé body")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", {port}) as s:
    s.starttls(context=ctx)
    s.login("carol@example.test", "s3cret")
    s.send_message(msg, mail_options=["SMTPUTF8"])
"#,
        port = local.submission
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "smtplib: {}", text(&out.stderr));
    let inbox = local.new_messages("alice@example.test");
    assert_eq!(inbox.len(), 2);
    assert!(
        inbox
            .iter()
            .any(|m| m.contains("Grüße") || m.contains("=?utf-8?")),
        "{inbox:?}"
    );

    local.stop();
}

/// Dovecot, as a user's IMAP server would, reads the Maildir madmail wrote.
#[test]
fn dovecot_reads_the_maildir() {
    require_tool("command -v swaks", "swaks");
    require_tool("test -x /usr/lib/dovecot/imap", "dovecot-imapd");
    let mut local = LocalServer::start();
    let smtp = format!("127.0.0.1:{}", local.smtp);
    for subject in ["first", "second"] {
        let out = swaks(&[
            "--server",
            &smtp,
            "--from",
            "bob@remote.test",
            "--to",
            "erin@example.test",
            "--header",
            &format!("Subject: {subject}"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stdout));
    }
    local.stop();

    // Dovecot refuses to run as root: hand the maildir to nobody and run imap preauthenticated.
    let maildir_root = local.root.join("local-state/maildir");
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&maildir_root)
        .status()
        .unwrap();
    assert!(chown.success());
    for dir in [local.root.as_path(), &local.root.join("local-state")] {
        let chmod = Command::new("chmod").arg("a+x").arg(dir).status().unwrap();
        assert!(chmod.success());
    }
    let conf = write(
        &local.root,
        "dovecot.conf",
        &format!(
            "mail_location = maildir:{}/%Lu\nlog_path = /dev/stderr\nssl = no\nprotocols = imap\n",
            maildir_root.display()
        ),
    );
    let session = "a SELECT INBOX\nb FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])\nc LOGOUT\n";
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "env",
            "USER=erin@example.test",
            "HOME=/nonexistent",
        ])
        .arg("/usr/lib/dovecot/imap")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(session.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let imap = text(&out.stdout);
    assert!(
        imap.contains("* 2 EXISTS"),
        "dovecot said:\n{imap}\n{}",
        text(&out.stderr)
    );
    assert!(
        imap.contains("Subject: first") && imap.contains("Subject: second"),
        "{imap}"
    );
    assert!(imap.contains("b OK"), "{imap}");
}

/// A certificate file replaced under a running server is served within seconds, while a
/// client keeps connecting, and no handshake fails.
#[test]
fn replaced_certificate_file_is_served_without_failed_handshakes() {
    require_tool("command -v openssl", "openssl");
    let dir = tempdir();
    let make_cert = |name: &str| {
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=mx.example.test",
                "-addext",
                "subjectAltName=DNS:mx.example.test",
            ])
            .arg("-keyout")
            .arg(dir.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.path().join(format!("{name}.crt")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    make_cert("a");
    make_cert("b");
    let serial_of = |name: &str| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(dir.path().join(format!("{name}.crt")))
            .output()
            .unwrap();
        text(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_owned()
    };
    let (serial_a, serial_b) = (serial_of("a"), serial_of("b"));
    std::fs::copy(dir.path().join("a.crt"), dir.path().join("live.crt")).unwrap();
    std::fs::copy(dir.path().join("a.key"), dir.path().join("live.key")).unwrap();

    let port = free_port();
    let conf = write(
        dir.path(),
        "madmail.conf",
        &format!(
            "hostname mx.example.test\nstate_dir state\nruntime_dir run\ntls file live.crt live.key\nsmtp tcp://127.0.0.1:{port} {{\n    deliver_to dummy\n}}\n"
        ),
    );
    let mut cmd = madmail();
    cmd.arg("--config").arg(&conf).arg("run");
    let mut server = Server::start(cmd);
    server.wait_for("server started");

    let served_serial = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -starttls smtp -connect 127.0.0.1:{port} -servername mx.example.test </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ))
            .output()
            .unwrap();
        let serial = text(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_owned();
        assert!(!serial.is_empty(), "a handshake failed");
        serial
    };
    assert_eq!(served_serial(), serial_a);

    // Replace the pair the way an ACME client does: new files renamed over the old ones.
    std::fs::copy(dir.path().join("b.key"), dir.path().join("live.key.tmp")).unwrap();
    std::fs::copy(dir.path().join("b.crt"), dir.path().join("live.crt.tmp")).unwrap();
    std::fs::rename(dir.path().join("live.key.tmp"), dir.path().join("live.key")).unwrap();
    std::fs::rename(dir.path().join("live.crt.tmp"), dir.path().join("live.crt")).unwrap();

    let deadline = std::time::Instant::now() + crate::WAIT;
    let mut handshakes = 0;
    loop {
        let serial = served_serial();
        handshakes += 1;
        if serial == serial_b {
            break;
        }
        assert_eq!(serial, serial_a, "neither the old nor the new certificate");
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served after {handshakes} handshakes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0));
}

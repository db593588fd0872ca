//! ACME through the real binary against a real Pebble: a certificate obtained with http-01 is
//! served after STARTTLS and verifies against Pebble's root; `madmail cert renew --force`
//! changes the served certificate in the running process; a restart serves the stored
//! certificate at once, without a new order.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Server, WAIT, free_port, madmail, tempdir, text, write};

#[path = "../../crates/acme/tests/common/pebble.rs"]
pub(crate) mod pebble;

/// The serial of the certificate served for `mail.example.test` after STARTTLS, verified
/// against `ca_file` (`None` while verification fails, e.g. before the first certificate).
fn verified_serial(port: u16, ca_file: &std::path::Path) -> Option<String> {
    verified_serial_for(port, ca_file, "mail.example.test")
}

/// The serial of the certificate served for `name` (SNI, and the name it must be valid for)
/// after STARTTLS, verified against `ca_file`.
pub(crate) fn verified_serial_for(
    port: u16,
    ca_file: &std::path::Path,
    name: &str,
) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -starttls smtp -connect 127.0.0.1:{port} -servername {name} -verify_hostname {name} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ca_file.display()
        ))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let serial = text(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned();
    (!serial.is_empty()).then_some(serial)
}

pub(crate) fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_served_renewed_and_restored() {
    crate::require_tool("command -v openssl", "openssl");
    let pebble = pebble::Pebble::start(pebble::PebbleOptions::default()).await;
    let dir = tempdir();
    let root = write(dir.path(), "pebble-root.pem", &pebble.issuing_root().await);
    let smtp_port = free_port();
    let metrics_port = free_port();
    // Where the certificate's events go: a webhook receiver and a command hook.
    let webhook = madmail_libdns_http::testing::MockApi::start(|_| {
        madmail_libdns_http::testing::Response::empty(204)
    })
    .await;
    let hook_out = dir.path().join("hook.out");
    let hook = write(
        dir.path(),
        "hook.sh",
        &format!(
            "echo \"$MADMAIL_EVENT $MADMAIL_CERT_NAMES $MADMAIL_CERT_SERIAL $MADMAIL_CERT_PATH\" >> {}\n",
            hook_out.display()
        ),
    );
    let conf = write(
        dir.path(),
        "madmail.conf",
        &format!(
            "hostname mail.example.test\nstate_dir state\nruntime_dir run\n\
             tls.loader.acme local_tls {{\n    email admin@example.test\n    agreed\n    ca {ca}\n    trusted_roots {roots}\n    challenge http-01\n    http_listen tcp://127.0.0.1:{http}\n\
             \x20   notify_webhook {webhook}\n    notify_command /bin/sh {hook}\n    export_path export\n}}\n\
             tls &local_tls\n\
             smtp tcp://127.0.0.1:{smtp_port} {{\n    destination example.test {{\n        deliver_to dummy\n    }}\n    default_destination {{\n        reject\n    }}\n}}\n\
             openmetrics tcp://127.0.0.1:{metrics_port} {{ }}\n",
            ca = pebble.directory_url,
            roots = pebble.api_ca_file().display(),
            http = pebble.http_port,
            webhook = webhook.url("events"),
            hook = hook.display(),
        ),
    );
    let events = |count: usize| {
        wait_until(&format!("{count} webhook events"), || {
            let events: Vec<serde_json::Value> =
                webhook.requests().iter().map(|r| r.json()).collect();
            (events.len() >= count).then_some(events)
        })
    };
    let hook_lines = |count: usize| {
        wait_until(&format!("{count} hook runs"), || {
            let text = std::fs::read_to_string(&hook_out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (lines.len() >= count).then_some(lines)
        })
    };
    let export_serial = || {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(dir.path().join("export/mail.example.test/fullchain.pem"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        text(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_owned()
    };
    let conf_arg = conf.to_str().unwrap_or_default().to_owned();
    let cert_cli = move |args: &[&str]| {
        madmail()
            .args(["--config", &conf_arg, "cert"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };

    let start = || {
        let mut cmd = madmail();
        cmd.arg("--config").arg(&conf).arg("run");
        let mut server = Server::start(cmd);
        server.wait_for("server started");
        server
    };
    let mut server = tokio::task::block_in_place(start);

    // The first certificate: a placeholder until then, then Pebble's, verified.
    let first = tokio::task::block_in_place(|| {
        wait_until("a verified certificate", || {
            verified_serial(smtp_port, &root)
        })
    });
    let info = tokio::task::block_in_place(|| cert_cli(&["info", "--json"]));
    assert!(info.status.success(), "{}", text(&info.stderr));
    let certs: serde_json::Value = serde_json::from_slice(&info.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&info.stdout)));
    assert_eq!(certs[0]["status"], "valid", "{certs}");
    assert_eq!(certs[0]["names"], serde_json::json!(["mail.example.test"]));
    assert_eq!(
        certs[0]["serial"].as_str().map(str::to_uppercase),
        Some(first.clone())
    );

    // The events reached the webhook and the hook; the export holds the served certificate;
    // /metrics shows its expiry.
    let obtained = tokio::task::block_in_place(|| events(1));
    assert_eq!(obtained[0]["event"], "obtained");
    assert_eq!(obtained[0]["serial"].as_str(), Some(first.as_str()));
    let lines = tokio::task::block_in_place(|| hook_lines(1));
    let export_chain = dir.path().join("export/mail.example.test/fullchain.pem");
    assert_eq!(
        lines[0],
        format!(
            "obtained mail.example.test {first} {}",
            export_chain.display()
        )
    );
    assert_eq!(tokio::task::block_in_place(export_serial), first);
    let not_after = crate::scrape_metric(
        metrics_port,
        "madmail_tls_cert_not_after_seconds{loader=\"local_tls\",name=\"mail.example.test\"}",
    );
    let expected = Command::new("date")
        .args(["-u", "-d"])
        .arg(certs[0]["not_after"].as_str().unwrap_or_default())
        .arg("+%s")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(not_after, text(&expected.stdout).trim());

    // A forced renewal reaches the running endpoint.
    let renew =
        tokio::task::block_in_place(|| cert_cli(&["renew", "--force", "mail.example.test"]));
    assert!(
        renew.status.success(),
        "{}{}",
        text(&renew.stdout),
        text(&renew.stderr)
    );
    let second = tokio::task::block_in_place(|| {
        wait_until("the renewed certificate", || {
            verified_serial(smtp_port, &root).filter(|s| *s != first)
        })
    });
    let renewed = tokio::task::block_in_place(|| events(2));
    assert_eq!(renewed[1]["event"], "renewed");
    assert_eq!(renewed[1]["serial"].as_str(), Some(second.as_str()));
    let lines = tokio::task::block_in_place(|| hook_lines(2));
    assert!(
        lines[1].starts_with(&format!("renewed mail.example.test {second} ")),
        "{lines:?}"
    );
    assert_eq!(tokio::task::block_in_place(export_serial), second);

    // A restart serves the stored certificate immediately: no order, no placeholder.
    server.signal("TERM");
    assert_eq!(tokio::task::block_in_place(|| server.wait_exit()), Some(0));
    let orders_before = pebble.log().matches("POST /order-plz").count();
    assert!(
        orders_before >= 2,
        "the first order and the forced renewal:\n{}",
        pebble.log()
    );
    let mut server = tokio::task::block_in_place(start);
    assert_eq!(
        tokio::task::block_in_place(|| verified_serial(smtp_port, &root)),
        Some(second)
    );
    assert_eq!(
        pebble.log().matches("POST /order-plz").count(),
        orders_before,
        "a new order was placed"
    );
    server.signal("TERM");
    assert_eq!(tokio::task::block_in_place(|| server.wait_exit()), Some(0));
}

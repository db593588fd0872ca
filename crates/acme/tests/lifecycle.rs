//! Certificate events and where they go: the webhook, the command hook, the mail notice, and
//! `export_path`, against a real Pebble; `expiring` notices at each threshold exactly once,
//! across restarts, with a clock the test moves by days while renewals keep failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::pebble::{Pebble, PebbleOptions};
use common::*;
use madmail_acme::clock::ManualClock;
use madmail_acme::control::{self, Request, Response};
use madmail_libdns_http::testing::{MockApi, Response as HttpResponse};
use madmail_module::Running;
use madmail_tls::CertificateSource;

const DAY: Duration = Duration::from_secs(86_400);

/// One loader `acme` for `mail.example.test` at `ca` used by a `test_tls` endpoint; `body`
/// adds its directives.
fn config_text_for(dir: &Path, ca: &str, body: &str, roots: Option<&Path>) -> String {
    let roots = roots
        .map(|r| format!("trusted_roots {}\n    ", r.display()))
        .unwrap_or_default();
    format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mail.example.test\n\
         tls.loader.acme acme {{\n    email admin@example.test\n    agreed\n    ca {ca}\n    {roots}{body}\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n    tls &acme\n}}\n",
        state = dir.join("state").display(),
        run = dir.join("run").display(),
    )
}

/// A hook that appends `EVENT|NAMES|SERIAL|NOT_AFTER|CERT|KEY|THRESHOLD` to `out`.
fn hook_script(dir: &Path, out: &Path) -> std::path::PathBuf {
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$MADMAIL_EVENT|$MADMAIL_CERT_NAMES|$MADMAIL_CERT_SERIAL|$MADMAIL_NOT_AFTER|$MADMAIL_CERT_PATH|$MADMAIL_KEY_PATH|$MADMAIL_THRESHOLD\" >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    script
}

fn hook_lines(out: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

async fn webhook() -> MockApi {
    MockApi::start(|_| HttpResponse::empty(204)).await
}

fn webhook_events(api: &MockApi) -> Vec<serde_json::Value> {
    api.requests().iter().map(|r| r.json()).collect()
}

/// The messages in the Maildir of `rcpt` under `root`.
fn mails(root: &Path, rcpt: &str) -> Vec<String> {
    let new = root.join(rcpt).join("new");
    let Ok(entries) = std::fs::read_dir(new) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obtained_and_renewed_reach_every_channel_and_the_export() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let hook_out = dir.path().join("hook.out");
    let script = hook_script(dir.path(), &hook_out);
    let api = webhook().await;
    let export = dir.path().join("export");
    let body = format!(
        "challenge http-01\n    http_listen tcp://127.0.0.1:{http}\n    \
         notify_webhook {hook}\n    notify_webhook_secret s3cret\n    notify_command /bin/sh {script}\n    \
         export_path {export}\n    notify_to ops@example.test\n    notify_deliver_to &notices",
        http = pebble.http_port,
        hook = api.url("hooks/cert"),
        script = script.display(),
        export = export.display(),
    );
    let text = format!(
        "storage.maildir notices {{\n    root {}\n}}\n{}",
        dir.path().join("maildir").display(),
        config_text_for(
            dir.path(),
            &pebble.directory_url,
            &body,
            Some(&pebble.api_ca_file())
        )
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let status = wait_valid(&acme).await;
    let first = status[0].serial.clone().unwrap();
    // The certificate is served a moment before its event is sent (after the export).
    until("the obtained event", || {
        (!api.requests().is_empty() && !hook_lines(&hook_out).is_empty()).then_some(())
    })
    .await;
    acme.flush_notices().await;

    // The webhook: one JSON POST with cert info's encodings.
    let events = webhook_events(&api);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event"], "obtained");
    assert_eq!(events[0]["names"], serde_json::json!(["mail.example.test"]));
    assert_eq!(events[0]["serial"], first.as_str());
    assert_eq!(
        events[0]["not_after"],
        status[0].not_after.clone().unwrap().as_str()
    );
    let request = &api.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/cert");
    assert_eq!(request.header("content-type"), Some("application/json"));
    // Signed with the secret: HMAC-SHA256 of the exact body, hex.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"s3cret");
    let tag = aws_lc_rs::hmac::sign(&key, &request.body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        request.header("x-madmail-signature"),
        Some(format!("sha256={hex}").as_str())
    );

    // The command: the same facts in its environment, paths into the export.
    let export_dir = export.join("mail.example.test");
    let lines = hook_lines(&hook_out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0][0], "obtained");
    assert_eq!(lines[0][1], "mail.example.test");
    assert_eq!(lines[0][2], first);
    assert_eq!(lines[0][3], status[0].not_after.clone().unwrap());
    assert_eq!(
        lines[0][4],
        export_dir.join("fullchain.pem").display().to_string()
    );
    assert_eq!(
        lines[0][5],
        export_dir.join("privkey.pem").display().to_string()
    );

    // The export holds what is served.
    let root = pebble.issuing_root().await;
    let exported = |file: &str| std::fs::read(export_dir.join(file)).unwrap();
    let chain = rustls::pki_types::CertificateDer::from_pem_slice(&exported("fullchain.pem"));
    assert_eq!(serial_of(&chain.unwrap()), first);
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        first
    );
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(export_dir.join("privkey.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    // The mail notice, in the Maildir.
    let maildir = dir.path().join("maildir");
    let mail = until("the notice mail", || {
        mails(&maildir, "ops@example.test").pop()
    })
    .await;
    assert!(
        mail.contains("Subject: [madmail] certificate obtained for mail.example.test"),
        "{mail}"
    );
    assert!(
        mail.contains("From: madmail <postmaster@mail.example.test>"),
        "{mail}"
    );
    assert!(mail.contains(&format!("Serial:      {first}")), "{mail}");

    // A forced renewal, through the control socket as `madmail cert renew --force` does it.
    let socket = dir.path().join("run").join(control::SOCKET_NAME);
    let reply = control::request(
        &socket,
        &Request::Renew {
            loader: None,
            name: None,
            force: true,
        },
    )
    .await
    .unwrap();
    let second = match reply {
        Response::Renew { results } => match &results[0].outcome {
            madmail_acme::Outcome::Renewed { serial, .. } => serial.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_ne!(second, first);
    acme.flush_notices().await;
    let events = webhook_events(&api);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["event"], "renewed");
    assert_eq!(events[1]["serial"], second.as_str());
    let lines = hook_lines(&hook_out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1][0], "renewed");
    assert_eq!(lines[1][2], second);
    let chain = rustls::pki_types::CertificateDer::from_pem_slice(&exported("fullchain.pem"));
    assert_eq!(serial_of(&chain.unwrap()), second);
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        second
    );
    until("the second notice mail", || {
        (mails(&maildir, "ops@example.test").len() == 2).then_some(())
    })
    .await;

    // The metrics, as `/metrics` renders them, parsed by a Prometheus text parser.
    let text = loaded.globals.metrics.render();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let status = acme.status().await;
    let not_after = crate_time(status[0].not_after.as_deref().unwrap());
    assert_eq!(
        value(
            "madmail_tls_cert_not_after_seconds",
            &[("loader", "acme"), ("name", "mail.example.test")]
        ),
        not_after as f64
    );
    assert_eq!(
        value(
            "madmail_acme_renewals_total",
            &[("loader", "acme"), ("result", "success")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "madmail_acme_renewals_total",
            &[("loader", "acme"), ("result", "failure")]
        ),
        0.0
    );
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "madmail_acme_order_duration_seconds")
        .unwrap_or_else(|| panic!("no histogram in\n{text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 2.0, "{text}");
        }
        other => panic!("{other:?}"),
    }
    running.stop().await;
}

use rustls::pki_types::pem::PemObject;

/// Unix seconds of an RFC 3339 time.
fn crate_time(rfc3339: &str) -> u64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp() as u64
}

/// Writes a certificate for `mail.example.test` valid from `not_before` to `not_after` into
/// the store, where the loader for `ca` looks.
fn store_certificate(
    store: &Path,
    ca: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mail.example.test".to_owned()]).unwrap();
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0A, 0xBC, 0xDE]));
    let cert = params.self_signed(&key).unwrap();
    let safe = madmail_acme::safe_name("mail.example.test");
    let dir = store
        .join("certificates")
        .join(madmail_acme::issuer_key(ca))
        .join(&safe);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{safe}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{safe}.key")), key.serialize_pem()).unwrap();
    "0ABCDE".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_renewal_gives_each_expiring_notice_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let hook_out = dir.path().join("hook.out");
    let script = hook_script(dir.path(), &hook_out);
    // Nothing listens there: every attempt fails at once.
    let ca = "http://127.0.0.1:9/directory";
    let start = SystemTime::now();
    let serial = store_certificate(
        &dir.path().join("state").join("acme"),
        ca,
        start - DAY * 60,
        start + DAY * 29 + Duration::from_secs(3600),
    );
    let body = format!(
        "challenge http-01\n    http_listen tcp://127.0.0.1:0\n    check_interval 1s\n    \
         renewal_timeout 2s\n    notify_command /bin/sh {}",
        script.display()
    );
    let text = config_text_for(dir.path(), ca, &body, None);
    let clock = Arc::new(ManualClock::new(start));

    let run = |text: String, clock: Arc<ManualClock>| async move {
        let loaded = load_config(Path::new("/"), &text).unwrap();
        let acme = loader(&loaded);
        acme.set_clock(clock);
        let running = Running::start(&loaded.instances).await.unwrap();
        (loaded, acme, running)
    };
    let expiring = || -> Vec<String> {
        hook_lines(&hook_out)
            .into_iter()
            .filter(|l| l[0] == "expiring")
            .map(|l| l[6].clone())
            .collect()
    };
    let failures = || {
        hook_lines(&hook_out)
            .iter()
            .filter(|l| l[0] == "renewal_failed")
            .count()
    };

    let (_loaded, acme, mut running) = run(text.clone(), clock.clone()).await;
    // 29 days left and the renewal overdue: the 30-day notice, after the first failure.
    until("the 30d notice", || (expiring() == ["30d"]).then_some(())).await;
    let lines = hook_lines(&hook_out);
    assert_eq!(lines[0][0], "renewal_failed", "{lines:?}");
    assert_eq!(lines[0][2], serial);
    // Time passes in steps; each threshold is announced once, as it is crossed.
    for (days, expected) in [
        (5, vec!["30d"]),
        (11, vec!["30d", "14d"]),
        (7, vec!["30d", "14d", "7d"]),
        (4, vec!["30d", "14d", "7d", "3d"]),
    ] {
        let before = failures();
        clock.advance(DAY * days);
        // The retry after the failure is due now: another attempt, another failure.
        until("another failed attempt", || {
            (failures() > before).then_some(())
        })
        .await;
        // The notice follows the failure's (they are sent one after the other).
        until(&format!("the notices after {days} more days"), || {
            (expiring() == expected).then_some(())
        })
        .await;
        acme.flush_notices().await;
        assert_eq!(expiring(), expected, "after {days} more days");
    }
    running.stop().await;

    // A restart: the store remembers what was sent.
    let before = failures();
    let (_loaded, acme, mut running) = run(text.clone(), clock.clone()).await;
    until("a failed attempt after the restart", || {
        (failures() > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    acme.flush_notices().await;
    assert_eq!(
        expiring(),
        ["30d", "14d", "7d", "3d"],
        "no repeats after a restart"
    );
    // The last one, 1 day before the end.
    let before = failures();
    clock.advance(DAY * 2);
    until("another failed attempt", || {
        (failures() > before).then_some(())
    })
    .await;
    until("the 1d notice", || (expiring().len() == 5).then_some(())).await;
    acme.flush_notices().await;
    assert_eq!(expiring(), ["30d", "14d", "7d", "3d", "1d"]);
    running.stop().await;
    // Every notice was about the certificate in use.
    assert!(hook_lines(&hook_out).iter().all(|l| l[2] == serial));
}

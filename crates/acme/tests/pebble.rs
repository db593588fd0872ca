//! Against a real Pebble (needs the Debian package `pebble`: `apt-get install -y pebble`):
//! http-01 and tls-alpn-01 issuance served through the loader's resolver, forced renewal
//! through the control socket, restart from the store without a new order, `cert test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::pebble::{Pebble, PebbleOptions, free_port};
use common::*;
use madmail_acme::control::{self, Request, Response};
use madmail_acme::{Outcome, Status};
use madmail_module::Running;
use madmail_tls::CertificateSource;

fn config(dir: &Path, pebble: &Pebble, challenge: &str, extra: &str) -> String {
    format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mx.example.test\n\
         tls.loader.acme acme {{\n\
           email admin@example.test\n\
           agreed\n\
           ca {ca}\n\
           trusted_roots {roots}\n\
           challenge {challenge}\n\
           {extra}\n\
         }}\n\
         test_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n",
        state = dir.join("state").display(),
        run = dir.join("run").display(),
        ca = pebble.directory_url,
        roots = pebble.api_ca_file().display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_renews_and_restarts_from_the_store() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: 20,
        ..PebbleOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        "http-01",
        &format!(
            "extra_names imap.example.test\n http_listen tcp://127.0.0.1:{}",
            pebble.http_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    // Before start: the placeholder, which no real client accepts.
    let root = pebble.issuing_root().await;
    assert!(
        served_serial(server, "mx.example.test", &root)
            .await
            .is_err()
    );

    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    assert_eq!(statuses.len(), 2, "one certificate per name: {statuses:#?}");
    let mx = statuses
        .iter()
        .find(|s| s.names == ["mx.example.test"])
        .unwrap();
    let first_serial = mx.serial.clone().unwrap();
    assert_eq!(
        served_serial(server, "mx.example.test", &root)
            .await
            .unwrap(),
        first_serial
    );
    let imap = statuses
        .iter()
        .find(|s| s.names == ["imap.example.test"])
        .unwrap();
    assert_eq!(
        served_serial(server, "imap.example.test", &root)
            .await
            .unwrap(),
        imap.serial.clone().unwrap()
    );
    // No SNI: hostname's certificate.
    assert_eq!(served_serial_unverified(server).await, first_serial);
    assert!(mx.files.cert.exists() && mx.files.key.exists() && mx.files.meta.exists());
    assert!(mx.issuer.as_deref().unwrap().contains("Pebble"), "{mx:?}");

    // The control socket: info and a forced renewal served at once.
    let socket = dir.path().join("run").join(control::SOCKET_NAME);
    let info = control::request(
        &socket,
        &Request::Info {
            loader: None,
            name: Some("mx.example.test".into()),
        },
    )
    .await
    .unwrap();
    let Response::Info { certificates } = &info else {
        panic!("{info:?}")
    };
    assert_eq!(certificates.len(), 1);
    assert_eq!(
        certificates[0].serial.as_deref(),
        Some(first_serial.as_str())
    );
    let json: serde_json::Value = serde_json::from_str(&info.render(true)).unwrap();
    assert_eq!(json[0]["status"], "valid");
    assert_eq!(json[0]["next_renewal_reason"], "ratio");

    let renewed = control::request(
        &socket,
        &Request::Renew {
            loader: Some("acme".into()),
            name: Some("mx.example.test".into()),
            force: true,
        },
    )
    .await
    .unwrap();
    assert!(renewed.success(), "{renewed:?}");
    let Response::Renew { results } = &renewed else {
        panic!("{renewed:?}")
    };
    let Outcome::Renewed {
        serial: new_serial, ..
    } = &results[0].outcome
    else {
        panic!("{results:?}")
    };
    assert_ne!(*new_serial, first_serial);
    assert_eq!(
        served_serial(server, "mx.example.test", &root)
            .await
            .unwrap(),
        *new_serial
    );
    // Without --force nothing is due.
    let not_due = control::request(
        &socket,
        &Request::Renew {
            loader: None,
            name: None,
            force: false,
        },
    )
    .await
    .unwrap();
    let Response::Renew { results } = &not_due else {
        panic!("{not_due:?}")
    };
    assert!(
        results.iter().all(|r| r.outcome == Outcome::NotDue),
        "{results:?}"
    );
    running.stop().await;
    assert!(!socket.exists(), "the socket goes with the last loader");

    // Restart: the stored certificate is served at once, no new order.
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    assert_eq!(
        served_serial(server, "mx.example.test", &root)
            .await
            .unwrap(),
        *new_serial
    );
    let statuses = acme.status().await;
    assert!(
        statuses.iter().all(|s| s.status == Status::Valid),
        "{statuses:#?}"
    );
    running.stop().await;

    // Offline (no server): info from the store.
    let offline = control::run(
        &socket,
        &madmail_acme::loaders(&loaded),
        &Request::Info {
            loader: None,
            name: None,
        },
    )
    .await;
    let Response::Info { certificates } = &offline else {
        panic!("{offline:?}")
    };
    assert!(
        certificates
            .iter()
            .any(|c| c.serial.as_deref() == Some(new_serial.as_str()))
    );
    let text = offline.render(false);
    assert!(text.contains("status        valid"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_with_external_account_binding() {
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(PebbleOptions {
        eab: vec![("kid-1".into(), HMAC.into())],
        ..PebbleOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        "tls-alpn-01",
        &format!(
            "tls_alpn_listen tcp://127.0.0.1:{}\n key_type ecdsa-p384\n eab kid-1 {HMAC}",
            pebble.tls_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    let root = pebble.issuing_root().await;
    assert_eq!(
        served_serial(server, "mx.example.test", &root)
            .await
            .unwrap(),
        statuses[0].serial.clone().unwrap()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ca_serves_the_placeholder_and_reports_failing() {
    let dir = tempfile::tempdir().unwrap();
    let ca_port = free_port();
    let text = format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mx.example.test\n\
         tls.loader.acme acme {{\n agreed\n renewal_timeout 2s\n ca https://127.0.0.1:{ca_port}/dir\n challenge http-01\n http_listen tcp://127.0.0.1:{http}\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n",
        state = dir.path().join("state").display(),
        run = dir.path().join("run").display(),
        http = free_port(),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let started = std::time::Instant::now();
    let mut running = Running::start(&loaded.instances).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "start must not wait for the CA"
    );
    // The placeholder is served meanwhile (a self-signed certificate).
    let placeholder = served_serial_unverified(server).await;
    assert_eq!(placeholder.len(), 32);
    let statuses = wait_status(&acme, "a failed attempt", |s| s.status == Status::Failing).await;
    let error = statuses[0].last_error.clone().unwrap();
    assert!(error.contains("directory"), "{error}");
    assert!(statuses[0].serial.is_none());
    assert_eq!(served_serial_unverified(server).await, placeholder);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_and_dry_run() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        "http-01",
        &format!("http_listen tcp://127.0.0.1:{}", pebble.http_port),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    // No server runs: executed here, on a loader that was never started.
    let socket = dir.path().join("run").join(control::SOCKET_NAME);
    let response = control::run(
        &socket,
        &madmail_acme::loaders(&loaded),
        &Request::Test {
            loader: None,
            name: None,
            dry_run: true,
        },
    )
    .await;
    let Response::Test { checks } = &response else {
        panic!("{response:?}")
    };
    let text = response.render(false);
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c.check.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(find("directory").ok, "{text}");
    assert!(find("account").ok, "{text}");
    assert!(find("http-01 listener").ok, "{text}");
    assert!(find("dry run").ok, "{text}");
    // The dry run stored nothing.
    let acme = loader(&loaded);
    let statuses = acme.status().await;
    assert!(statuses[0].serial.is_none(), "{statuses:?}");
    assert!(!statuses[0].files.cert.exists());
}

//! Pebble's own ways of being difficult: half the nonces rejected, authorizations reused,
//! certificates that live seconds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::pebble::{Pebble, PebbleOptions, free_port};
use crate::common::proxy::{Mode, TcpProxy};
use crate::common::*;
use madmail_acme::{Outcome, RenewalReason};
use madmail_module::Running;
use madmail_tls::CertificateSource;

use crate::{config, status_of, time};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_nonces_rejected() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: 50,
        ..PebbleOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        &format!(
            "extra_names imap.example.test smtp.example.test\n    challenge http-01\n    http_listen tcp://127.0.0.1:{}",
            pebble.http_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    let root = pebble.issuing_root().await;
    assert_eq!(statuses.len(), 3);
    for name in [
        "mail.example.test",
        "imap.example.test",
        "smtp.example.test",
    ] {
        assert_eq!(
            served_serial(server, name, &root).await.unwrap(),
            status_of(&statuses, name).serial.clone().unwrap()
        );
    }
    // Pebble does not log rejections; a request it logs without the matching success line
    // was rejected (about half of them; with this many, none rejected is a 1 in 8000 chance).
    let log = pebble.log();
    assert!(
        log.contains("Configured to reject 50% of good nonces"),
        "{log}"
    );
    let rejected: usize = [
        ("POST /sign-me-up", "accounts in memory"),
        ("POST /order-plz", "Added order"),
        ("POST /chalZ/", "validations."),
        ("POST /finalize-order/", "Processing finalization"),
        ("POST /certZ/", "Issued certificate serial"),
    ]
    .iter()
    .map(|(request, success)| {
        pebble
            .log_count(request)
            .saturating_sub(pebble.log_count(success))
    })
    .sum();
    eprintln!("Pebble rejected at least {rejected} requests with badNonce");
    assert!(rejected > 0, "no request was rejected:\n{log}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_authorizations_are_reused() {
    let pebble = Pebble::start(PebbleOptions {
        authz_reuse: 100,
        ..PebbleOptions::default()
    })
    .await;
    // Pebble's http-01 validations reach the loader through a relay that counts them.
    let listen = free_port();
    let validations = TcpProxy::start(
        pebble.http_port,
        SocketAddr::from(([127, 0, 0, 1], listen)),
        Mode::Forward,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        &format!("challenge http-01\n    http_listen tcp://127.0.0.1:{listen}"),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let first = wait_valid(&acme).await[0].serial.clone().unwrap();
    let solved = validations.accepted();
    assert!(solved >= 1, "the first order was validated over http-01");
    let attempts = pebble.log_count("Attempting to validate w/ HTTP");
    assert!(attempts >= 1, "{}", pebble.log());
    let orders = pebble.log_count("POST /order-plz");

    let renewed = acme.renew(Some("mail.example.test"), true).await;
    let Outcome::Renewed { serial: second, .. } = &renewed[0].1 else {
        panic!("{renewed:?}")
    };
    assert_ne!(*second, first);
    assert_eq!(pebble.log_count("POST /order-plz"), orders + 1);
    // Counted twice: connections to the listener (a validator could keep one open, so
    // also) Pebble's own validation attempts.
    assert_eq!(
        (
            validations.accepted(),
            pebble.log_count("Attempting to validate w/ HTTP")
        ),
        (solved, attempts),
        "the second order reused the valid authorization: no challenge was validated"
    );
    let root = pebble.issuing_root().await;
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        *second
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lifetimes_renew_by_themselves() {
    // 15 s certificates and no renewal directive: renewed when a third of the lifetime is
    // left (the default policy), about 10 s after issuance, by the loader alone.
    let pebble = Pebble::start(PebbleOptions {
        certificate_validity: Some(15),
        ..PebbleOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        &format!(
            "challenge http-01\n    http_listen tcp://127.0.0.1:{}",
            pebble.http_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    let first = &statuses[0];
    let lifetime = time(first.not_after.as_deref().unwrap())
        .duration_since(time(first.not_before.as_deref().unwrap()))
        .unwrap();
    assert!(
        lifetime <= Duration::from_secs(15),
        "Pebble's certificateValidityPeriod applies: {first:#?}"
    );
    assert_eq!(first.next_renewal_reason, Some(RenewalReason::Ratio));
    let first_serial = first.serial.clone().unwrap();
    let root = pebble.issuing_root().await;

    // No command: the served certificate changes by itself (bounded wait).
    let mut renewed = None;
    for _ in 0..300 {
        let served = served_serial(server, "mail.example.test", &root)
            .await
            .unwrap();
        if served != first_serial {
            renewed = Some(served);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        renewed.is_some(),
        "the certificate was not renewed within a minute: {:#?}",
        acme.status().await
    );
    let now = acme.status().await;
    assert_ne!(now[0].serial, Some(first_serial), "{now:#?}");
    running.stop().await;
}

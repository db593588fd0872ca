//! Against the in-process ACME test double (tests/common/double.rs), for what Pebble 2.4 lacks
//! or can't be made to do on demand: ARI windows and `replaces`, `Retry-After` on rate limits
//! and on order polling, storms of `badNonce`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::double::Double;
use common::*;
use madmail_acme::{RenewalReason, Status};
use madmail_module::Running;
use madmail_tls::CertificateSource;

fn config(dir: &std::path::Path, ca: &str, extra: &str) -> String {
    format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mx.example.test\n\
         tls.loader.acme acme {{\n agreed\n ca {ca}\n challenge http-01\n http_listen tcp://127.0.0.1:{port}\n {extra}\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n",
        state = dir.join("state").display(),
        run = dir.join("run").display(),
        port = common::pebble::free_port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nonce_storm_and_retry_after() {
    let (double, ca) = Double::start(|s| {
        // More than instant-acme's own three retries per request.
        s.bad_nonces = 12;
        s.rate_limits = 1;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_config(dir.path(), &config(dir.path(), &ca, "")).unwrap();
    let acme = loader(&loaded);
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    assert!(statuses[0].issuer.as_deref().unwrap().contains("Double CA"));
    {
        let st = double.state();
        assert_eq!(st.bad_nonces_sent, 12);
        assert_eq!(st.rate_limited_at.len(), 1);
        assert_eq!(
            st.orders.len(),
            1,
            "the rate-limited order was retried, not doubled"
        );
        // The order answered "processing" with Retry-After: 1: the next poll waited for it.
        let after_processing: Vec<Duration> = st
            .polls
            .windows(2)
            .filter(|w| w[0].1 == "processing")
            .map(|w| w[1].0 - w[0].0)
            .collect();
        assert!(!after_processing.is_empty(), "{:?}", st.polls);
        assert!(
            after_processing
                .iter()
                .all(|gap| *gap >= Duration::from_millis(900)),
            "polled again after {after_processing:?}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_triggers_renewal_with_replaces() {
    let (double, ca) = Double::start(|s| {
        // The first certificate is to be replaced already (window in the past).
        let now = SystemTime::now();
        s.next_window = Some((
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        ));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Events to a file: the early replacement is announced once, between the two certificates.
    let events = dir.path().join("events");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "echo \"$MADMAIL_EVENT $MADMAIL_CERT_SERIAL\" >> {}\n",
            events.display()
        ),
    )
    .unwrap();
    let extra = format!(
        "check_interval 1s\n notify_command /bin/sh {}",
        hook.display()
    );
    let loaded = load_config(dir.path(), &config(dir.path(), &ca, &extra)).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    // First certificate, then its ARI window says "now": a second order replacing it.
    for _ in 0..300 {
        if double.state().orders.len() >= 2 && double.state().orders[1].cert.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (first_id, replaces) = {
        let st = double.state();
        assert!(
            st.orders.len() >= 2,
            "no renewal after the ARI window: {} orders",
            st.orders.len()
        );
        let first_pem = st.orders[0].cert.clone().unwrap();
        let der = rustls::pki_types::CertificateDer::from(pem_first_der(&first_pem));
        let id = instant_acme::CertificateIdentifier::try_from(&der)
            .unwrap()
            .to_string();
        (id, st.orders[1].replaces.clone())
    };
    assert_eq!(replaces.as_deref(), Some(first_id.as_str()));
    // The replacement gets a normal (future) window: renewal is then planned by ARI.
    let statuses = wait_status(&acme, "ARI-planned renewal", |s| {
        s.status == Status::Valid && s.next_renewal_reason == Some(RenewalReason::Ari)
    })
    .await;
    let serial = statuses[0].serial.clone().unwrap();
    assert_eq!(
        served_serial(server, "mx.example.test", &double.ca_pem)
            .await
            .unwrap(),
        serial
    );
    assert_eq!(double.state().orders.len(), 2);
    running.stop().await;
    let lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first_serial = lines[0].strip_prefix("obtained ").unwrap().to_owned();
    assert_eq!(lines[1], format!("revoked_or_replaced {first_serial}"));
    assert_eq!(lines[2], format!("renewed {serial}"));
}

fn pem_first_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

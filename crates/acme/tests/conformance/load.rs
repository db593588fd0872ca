//! A forced renewal while clients keep handshaking: every handshake verifies (Pebble's root,
//! the name), none fails, and the new certificate is what clients get afterwards.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::*;
use madmail_acme::Outcome;
use madmail_module::Running;
use madmail_tls::CertificateSource;

use crate::config;

const TASKS: usize = 8;
const HANDSHAKES: usize = 100;
/// Handshakes every task makes before the renewal starts, and at least after it is served.
const BEFORE: usize = 10;
const AFTER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_renewal_under_concurrent_handshakes() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
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
    let first = wait_valid(&acme).await[0].serial.clone().unwrap();
    let root: Arc<str> = pebble.issuing_root().await.into();

    let started = Arc::new(AtomicUsize::new(0));
    let renewed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (root, started, renewed) = (root.clone(), started.clone(), renewed.clone());
        tasks.push(tokio::spawn(async move {
            handshakes(server, &root, &started, &renewed).await
        }));
    }
    // Every task is handshaking when the renewal starts.
    for _ in 0..600 {
        if started.load(Ordering::SeqCst) == TASKS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(started.load(Ordering::SeqCst), TASKS, "tasks did not start");
    let outcome = acme.renew(Some("mail.example.test"), true).await;
    let Outcome::Renewed { serial: second, .. } = outcome[0].1.clone() else {
        panic!("{outcome:?}")
    };
    renewed.store(true, Ordering::SeqCst);

    let mut total = 0;
    for task in tasks {
        let (serials, failures, count, last) = task.await.unwrap();
        assert!(failures.is_empty(), "failed handshakes: {failures:?}");
        assert!(serials.contains(&first), "{serials:?}");
        assert_eq!(last, second, "after the renewal: the new certificate");
        total += count;
    }
    assert!(total >= TASKS * HANDSHAKES, "{total} handshakes");
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        second
    );
    running.stop().await;
}

/// Handshakes until at least [`HANDSHAKES`] are done and [`AFTER`] of them began after the
/// renewal was served; returns the serials seen, the failures, the count and the last serial.
async fn handshakes(
    server: SocketAddr,
    root: &str,
    started: &AtomicUsize,
    renewed: &AtomicBool,
) -> (HashSet<String>, Vec<String>, usize, String) {
    let mut serials = HashSet::new();
    let mut failures = Vec::new();
    let (mut count, mut after, mut last) = (0, 0, String::new());
    while count < HANDSHAKES || after < AFTER {
        let served_already = renewed.load(Ordering::SeqCst);
        match served_serial(server, "mail.example.test", root).await {
            Ok(serial) => {
                serials.insert(serial.clone());
                last = serial;
            }
            Err(e) => failures.push(e),
        }
        count += 1;
        if served_already {
            after += 1;
        }
        if count == BEFORE {
            started.fetch_add(1, Ordering::SeqCst);
        }
    }
    (serials, failures, count, last)
}

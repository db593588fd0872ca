//! A CA that goes away: unreachable during a renewal (a relay in front of Pebble's API that
//! refuses connections, then comes back), and a CA restarted with its memory wiped.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::common::double::Double;
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::proxy::{Mode, TcpProxy};
use crate::common::*;
use madmail_acme::{Outcome, RenewalReason, Status};
use madmail_module::Running;
use madmail_tls::CertificateSource;

use crate::{close, config, config_for, time};

/// `N failures since TIME` in a status's last error.
fn failures(last_error: &str) -> (u32, SystemTime) {
    let tail = last_error.rsplit_once(" (").unwrap().1;
    let (count, since) = tail.split_once(" failure").unwrap();
    let since = since.rsplit_once("since ").unwrap().1.trim_end_matches(')');
    (count.parse().unwrap(), time(since))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_unreachable_during_renewal_then_back() {
    // 1 h certificates due 10 s after issuance (renew_before), so the loader's own renewal
    // runs into the outage: the relay is switched off right after the first certificate,
    // well before that.
    let pebble = Pebble::start(PebbleOptions {
        certificate_validity: Some(3600),
        ..PebbleOptions::default()
    })
    .await;
    let api: SocketAddr = pebble
        .directory_url
        .trim_start_matches("https://")
        .trim_end_matches("/dir")
        .parse()
        .unwrap();
    let relay = TcpProxy::start(0, api, Mode::Forward).await;
    // The test CA rehearsals go to (certmagic's policy after a failure).
    let (test_ca, test_ca_url) = Double::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_for(
        dir.path(),
        &format!("https://127.0.0.1:{}/dir", relay.port()),
        &pebble.api_ca_file(),
        &format!(
            "test_ca {test_ca_url}\n    challenge http-01\n    http_listen tcp://127.0.0.1:{http}\n    \
             renew_before 3590s\n    renewal_timeout 5s",
            http = pebble.http_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let first = wait_valid(&acme).await[0].clone();
    let first_serial = first.serial.clone().unwrap();
    relay.set_mode(Mode::Refuse).await;
    let root = pebble.issuing_root().await;

    // The scheduled renewal fails: the old certificate stays, the retry is a minute later.
    let failing =
        wait_status(&acme, "a failed renewal", |s| s.status == Status::Failing).await[0].clone();
    assert_eq!(failing.serial.as_deref(), Some(first_serial.as_str()));
    assert_eq!(
        failing.next_renewal_reason,
        Some(RenewalReason::RenewBefore)
    );
    let error = failing.last_error.clone().unwrap();
    assert!(error.contains("refused"), "{error}");
    let (count, since) = failures(&error);
    assert_eq!(count, 1, "{error}");
    let retry = time(failing.next_renewal.as_deref().unwrap());
    assert!(
        close(
            retry,
            since + Duration::from_secs(60),
            Duration::from_secs(1)
        ),
        "first retry after 1 minute: {failing:#?}"
    );
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        first_serial
    );
    assert_eq!(
        test_ca.state().orders.len(),
        0,
        "no rehearsal before a failure"
    );

    // A forced renewal meanwhile fails too; the backoff grows (2 minutes). After a failure
    // every attempt first rehearses against test_ca, which is up.
    let before = SystemTime::now();
    let forced = acme.renew(None, true).await;
    let after = SystemTime::now();
    assert!(
        matches!(&forced[0].1, Outcome::Failed { error } if error.contains("refused")),
        "{forced:?}"
    );
    assert_eq!(test_ca.state().orders.len(), 1, "rehearsed against test_ca");
    let failing = acme.status().await[0].clone();
    assert_eq!(failing.status, Status::Failing);
    assert_eq!(failures(failing.last_error.as_deref().unwrap()).0, 2);
    let retry = time(failing.next_renewal.as_deref().unwrap());
    assert!(
        retry + Duration::from_secs(1) >= before + Duration::from_secs(120)
            && retry <= after + Duration::from_secs(120),
        "second retry after 2 minutes: {failing:#?}"
    );
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        first_serial
    );

    // The CA is back: the next attempt (not forced: it is due) rehearses, then succeeds.
    relay.set_mode(Mode::Forward).await;
    let renewed = acme.renew(None, false).await;
    let Outcome::Renewed { serial, .. } = &renewed[0].1 else {
        panic!("{renewed:?}")
    };
    assert_ne!(*serial, first_serial);
    assert_eq!(test_ca.state().orders.len(), 2);
    let valid = acme.status().await[0].clone();
    assert_eq!(valid.status, Status::Valid, "{valid:#?}");
    assert!(valid.last_error.is_none(), "{valid:#?}");
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        *serial
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ca_forgot_the_account() {
    let mut pebble = Pebble::start(PebbleOptions::default()).await;
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
    let account_file = dir
        .path()
        .join("state/acme/accounts")
        .join(madmail_acme::issuer_key(&pebble.directory_url))
        .join(madmail_acme::safe_name("admin@example.test"))
        .join("account.json");
    let first_account = std::fs::read(&account_file).unwrap();
    let first_root = pebble.issuing_root().await;

    // Same ports, same configuration, no memory; a new issuing root.
    pebble.restart().await;
    let root = pebble.issuing_root().await;
    assert_ne!(root, first_root);
    let renewed = acme.renew(None, true).await;
    let Outcome::Renewed { serial, .. } = &renewed[0].1 else {
        panic!("{renewed:?}\n{}", pebble.log())
    };
    assert_ne!(*serial, first);
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        *serial,
        "served and verified against the new root"
    );
    assert_eq!(
        pebble.log_count("POST /sign-me-up"),
        2,
        "registered once per Pebble"
    );
    let account = std::fs::read(&account_file).unwrap();
    assert_ne!(account, first_account, "the new account is stored");
    assert_eq!(acme.status().await[0].status, Status::Valid);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_never_answers_fails_the_attempt_within_renewal_timeout() {
    // Connections to the CA are accepted and never answered (a black hole, not a refusal):
    // the attempt must end when renewal_timeout says, not when the HTTP client gives up.
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let api: SocketAddr = pebble
        .directory_url
        .trim_start_matches("https://")
        .trim_end_matches("/dir")
        .parse()
        .unwrap();
    let relay = TcpProxy::start(0, api, Mode::Forward).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_for(
        dir.path(),
        &format!("https://127.0.0.1:{}/dir", relay.port()),
        &pebble.api_ca_file(),
        &format!(
            "challenge http-01\n    http_listen tcp://127.0.0.1:{}\n    renewal_timeout 4s",
            pebble.http_port
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let first = wait_valid(&acme).await[0].serial.clone().unwrap();
    relay.set_mode(Mode::Refuse).await;
    relay.set_mode(Mode::Hold).await;
    // Bounded generously; without the deadline an attempt lasts at least the client's 30 s
    // request timeout.
    let forced = tokio::time::timeout(Duration::from_secs(25), acme.renew(None, true))
        .await
        .expect("the attempt outlived renewal_timeout by far");
    assert!(
        matches!(&forced[0].1, Outcome::Failed { error } if error.contains("renewal_timeout")),
        "{forced:?}"
    );
    let root = pebble.issuing_root().await;
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        first
    );
    assert_eq!(acme.status().await[0].status, Status::Failing);
    relay.set_mode(Mode::Refuse).await;
    running.stop().await;
}

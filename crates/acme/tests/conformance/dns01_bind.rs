//! dns-01 through `libdns.rfc2136` to a real BIND 9, with Pebble's validators asking that
//! BIND 9 (`-dnsserver`): the TXT records the CA reads are the ones our TSIG-signed updates
//! put in the zone, and they are gone afterwards.

use crate::common::bind::{DELEGATED_KEY, EXAMPLE_KEY, Named};
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::*;
use madmail_module::Running;
use madmail_tls::CertificateSource;

use crate::{config, status_of};

async fn pebble_asking(named: &Named) -> Pebble {
    Pebble::start(PebbleOptions {
        dns_server: Some(named.addr().to_string()),
        ..PebbleOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_rfc2136_bind9_wildcard_and_apex() {
    let named = Named::start().await;
    let pebble = pebble_asking(&named).await;
    let dir = tempfile::tempdir().unwrap();
    // The propagation check can't be pointed at nameservers on a port other than 53 through
    // directives, so it asks BIND 9 as a resolver (it answers for its zones).
    let text = config(
        dir.path(),
        &pebble,
        &format!(
            "extra_names *.example.test example.test\n    challenge dns-01\n    {dns}\n    \
             propagation_timeout 20s\n    resolvers 127.0.0.1:{port}",
            dns = named.rfc2136_block(EXAMPLE_KEY),
            port = named.port,
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    assert_eq!(statuses.len(), 2, "{statuses:#?}");
    let mail = status_of(&statuses, "mail.example.test");
    let pair = status_of(&statuses, "*.example.test");
    assert_eq!(pair.names, ["example.test", "*.example.test"]);

    let root = pebble.issuing_root().await;
    let mail_serial = mail.serial.clone().unwrap();
    let pair_serial = pair.serial.clone().unwrap();
    assert_ne!(mail_serial, pair_serial);
    for (sni, serial) in [
        ("mail.example.test", &mail_serial),
        ("x.example.test", &pair_serial),
        ("example.test", &pair_serial),
    ] {
        assert_eq!(
            served_serial(server, sni, &root).await.unwrap(),
            *serial,
            "{sni}"
        );
    }

    // BIND 9 got both values of the shared name (appended) and every one was removed.
    let log = named.log();
    assert_eq!(
        log.matches("adding an RR at '_acme-challenge.example.test' TXT")
            .count(),
        2,
        "wildcard and apex each add their value:\n{log}"
    );
    assert!(
        log.contains("adding an RR at '_acme-challenge.mail.example.test' TXT"),
        "{log}"
    );
    for name in [
        "_acme-challenge.mail.example.test.",
        "_acme-challenge.example.test.",
    ] {
        assert_eq!(named.txt(name).await, Vec::<String>::new(), "{name}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_override_domain_follows_a_cname_delegation() {
    // `_acme-challenge.smtp.example.test` is a CNAME to `smtp.delegated.test`; the key may
    // only update `delegated.test`, so an update in `example.test` would be refused.
    let named = Named::start().await;
    let pebble = pebble_asking(&named).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        &format!(
            "hostname smtp.example.test\n    challenge dns-01\n    override_domain smtp.delegated.test\n    \
             {dns}\n    propagation_timeout 20s\n    resolvers 127.0.0.1:{port}",
            dns = named.rfc2136_block(DELEGATED_KEY),
            port = named.port,
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    let root = pebble.issuing_root().await;
    assert_eq!(
        served_serial(server, "smtp.example.test", &root)
            .await
            .unwrap(),
        statuses[0].serial.clone().unwrap()
    );
    let log = named.log();
    assert!(
        log.contains("adding an RR at 'smtp.delegated.test' TXT"),
        "{log}"
    );
    assert!(!log.contains("adding an RR at '_acme-challenge"), "{log}");
    assert_eq!(
        named.txt("smtp.delegated.test.").await,
        Vec::<String>::new()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_propagation_timeout_fails_the_attempt_and_cleans_up() {
    // A second "resolver" where nothing answers: the value is never visible everywhere, so
    // the attempt fails at the propagation check, before the CA is asked to validate, and
    // the record is removed all the same.
    let named = Named::start().await;
    let pebble = pebble_asking(&named).await;
    let silent = crate::common::pebble::free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &pebble,
        &format!(
            "challenge dns-01\n    {dns}\n    propagation_timeout 2s\n    \
             resolvers 127.0.0.1:{port} 127.0.0.1:{silent}",
            dns = named.rfc2136_block(EXAMPLE_KEY),
            port = named.port,
        ),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_status(&acme, "a failed attempt", |s| {
        s.status == madmail_acme::Status::Failing
    })
    .await;
    let error = statuses[0].last_error.clone().unwrap();
    assert!(error.contains("not visible after 2s"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{silent}")), "{error}");
    assert!(
        !error.contains(&format!("resolver 127.0.0.1:{} ", named.port)),
        "BIND 9 had the value: {error}"
    );
    assert_eq!(
        pebble.log_count("POST /chalZ/"),
        0,
        "the CA was not asked to validate"
    );
    let log = named.log();
    assert!(
        log.contains("adding an RR at '_acme-challenge.mail.example.test' TXT"),
        "{log}"
    );
    assert_eq!(
        named.txt("_acme-challenge.mail.example.test.").await,
        Vec::<String>::new()
    );
    running.stop().await;
}

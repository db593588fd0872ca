//! The one window a crash can leave in the store: the new key written, the chain not yet
//! (every file is written atomically, key first). The pair does not match; a restart must
//! notice, keep serving nothing broken, and order again.

use madmail_module::Running;
use madmail_tls::CertificateSource;

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::*;
use crate::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_its_chain_is_replaced_by_a_new_order() {
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
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let first = wait_valid(&acme).await[0].clone();
    running.stop().await;

    // The crash: a new key in place, the old chain still there.
    let new_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(&first.files.key, new_key).unwrap();
    let orders = pebble.log_count("POST /order-plz");

    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    let serial = statuses[0].serial.clone().unwrap();
    assert_ne!(Some(serial.clone()), first.serial);
    assert_eq!(pebble.log_count("POST /order-plz"), orders + 1);
    let root = pebble.issuing_root().await;
    assert_eq!(
        served_serial(server, "mail.example.test", &root)
            .await
            .unwrap(),
        serial
    );
    running.stop().await;
}

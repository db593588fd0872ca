//! Two loader instances sharing one `store_path` (two configurations, as two processes
//! would be): the certificate is ordered once, and both serve it.

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::*;
use madmail_module::Running;
use madmail_tls::CertificateSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loaders_sharing_a_store_order_once() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shared-store");
    let text = |instance: &str| {
        let dir = dir.path().join(instance);
        crate::config(
            &dir,
            &pebble,
            &format!(
                "store_path {store}\n    challenge http-01\n    http_listen tcp://127.0.0.1:{http}",
                store = store.display(),
                http = pebble.http_port
            ),
        )
    };
    let (a, b) = (
        load_config(dir.path(), &text("a")).unwrap(),
        load_config(dir.path(), &text("b")).unwrap(),
    );
    let (acme_a, acme_b) = (loader(&a), loader(&b));
    let (server_a, server_b) = (
        tls_server(acme_a.resolver()).await,
        tls_server(acme_b.resolver()).await,
    );
    // Both start with an empty store and find the certificate missing.
    let (running_a, running_b) =
        tokio::join!(Running::start(&a.instances), Running::start(&b.instances));
    let (mut running_a, mut running_b) = (running_a.unwrap(), running_b.unwrap());
    let serial_a = wait_valid(&acme_a).await[0].serial.clone().unwrap();
    let serial_b = wait_valid(&acme_b).await[0].serial.clone().unwrap();
    assert_eq!(serial_a, serial_b, "one certificate for both");
    assert_eq!(
        pebble.log_count("POST /order-plz"),
        1,
        "ordered once:\n{}",
        pebble.log()
    );
    let root = pebble.issuing_root().await;
    for server in [server_a, server_b] {
        assert_eq!(
            served_serial(server, "mail.example.test", &root)
                .await
                .unwrap(),
            serial_a
        );
    }

    running_a.stop().await;
    running_b.stop().await;
}

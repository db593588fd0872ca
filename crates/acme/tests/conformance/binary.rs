//! The real `madmail` binary: killed with SIGKILL in the middle of an order (and of a
//! renewal) and restarted; tls-alpn-01 answered by an implicit-TLS mail endpoint that keeps
//! serving mail on the same port.
//!
//! An order is held "in the middle" by a relay between Pebble's validators and the server's
//! http-01 listener: in `Hold` mode it accepts Pebble's validation connection and sends
//! nothing, so Pebble keeps the challenge `processing` and the server keeps polling the order,
//! holding the store's issuance lock, for as long as the test wants. The first accepted
//! connection is the signal that the order has reached that point.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::madmail::{Server, cert_info};
use crate::common::pebble::{Pebble, PebbleOptions, free_port};
use crate::common::proxy::{Mode, TcpProxy};
use crate::common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, BufReader};

fn write_config(dir: &Path, pebble: &Pebble, loader: &str, smtps: u16) -> PathBuf {
    let text = format!(
        "hostname mail.example.test\nstate_dir {d}/state\nruntime_dir {d}/run\n\
         tls.loader.acme local_tls {{\n    email admin@example.test\n    agreed\n    ca {ca}\n    \
         trusted_roots {roots}\n    store_path {d}/store\n    {loader}\n}}\n\
         tls &local_tls\n\
         smtp tls://127.0.0.1:{smtps} {{\n    destination example.test {{\n        deliver_to dummy\n    }}\n    \
         default_destination {{\n        reject\n    }}\n}}\n",
        d = dir.display(),
        ca = pebble.directory_url,
        roots = pebble.api_ca_file().display(),
    );
    let path = dir.join("madmail.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path, log: &Path) -> Server {
    tokio::task::block_in_place(|| Server::start(config, log))
}

/// Waits (bounded) until the endpoint serves a certificate that verifies against `root`.
async fn wait_verified(addr: SocketAddr, root: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        match served_serial(addr, "mail.example.test", root).await {
            Ok(serial) => return serial,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no verified certificate at {addr}: {last}");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether another process holds the `flock` of `file`.
fn locked(file: &Path) -> bool {
    let file = OpenOptions::new().write(true).open(file).unwrap();
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The store after a crash: no temporary file, every JSON file whole, no lock left held; the
/// certificate files, when there are any, hold a certificate for the name and its key.
/// Returns the stored certificate's serial.
fn check_store(store: &Path) -> Option<String> {
    let all = files(store);
    for file in &all {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(!name.ends_with(".tmp"), "left behind: {}", file.display());
        if name.ends_with(".json") {
            let bytes = std::fs::read(file).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        if name.ends_with(".lock") {
            assert!(!locked(file), "{} is still locked", file.display());
        }
    }
    assert!(
        all.iter().any(|f| f.ends_with("account.json")),
        "the account was stored before the order: {all:?}"
    );
    let cert = all.iter().find(|f| f.ends_with("mail.example.test.crt"))?;
    let key = cert.with_extension("key");
    let loaded = madmail_tls::parse_pem(
        &std::fs::read(cert).unwrap(),
        &std::fs::read(&key).unwrap(),
        cert,
        &key,
    )
    .unwrap_or_else(|e| panic!("the stored pair is unusable: {e}"));
    assert!(loaded.names.iter().any(|n| n == "mail.example.test"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    Some(loaded.serial)
}

fn lock_file(store: &Path) -> PathBuf {
    files(store)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "lock"))
        .expect("a lock file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_an_order_then_restart() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let listen = free_port();
    let validations = TcpProxy::start(
        pebble.http_port,
        SocketAddr::from(([127, 0, 0, 1], listen)),
        Mode::Hold,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let smtps = free_port();
    let config = write_config(
        dir.path(),
        &pebble,
        &format!("challenge http-01\n    http_listen tcp://127.0.0.1:{listen}"),
        smtps,
    );
    let log = dir.path().join("madmail.log");
    let store = dir.path().join("store");
    let smtps = SocketAddr::from(([127, 0, 0, 1], smtps));

    // The first order, killed while Pebble is validating it.
    let server = start(&config, &log);
    validations.wait_accepted(1).await;
    assert!(
        locked(&lock_file(&store)),
        "the order holds the store's lock"
    );
    server.kill9();
    assert_eq!(check_store(&store), None, "no certificate yet");

    // Restarted: a new order succeeds (the killed one's lock did not survive the process).
    validations.set_mode(Mode::Forward).await;
    let server = start(&config, &log);
    let root = pebble.issuing_root().await;
    let first = wait_verified(smtps, &root).await;
    let info = tokio::task::block_in_place(|| cert_info(&config));
    assert_eq!(info[0]["status"], "valid", "{info}");
    assert_eq!(info[0]["serial"], first.as_str(), "{info}");
    assert_eq!(check_store(&store).as_deref(), Some(first.as_str()));
    assert_eq!(
        pebble.log_count("POST /sign-me-up"),
        1,
        "the account stored before the kill was used again"
    );

    // A forced renewal, killed in the middle: the stored certificate is intact and served at
    // once after the restart, without a new order (it is not due).
    validations.set_mode(Mode::Hold).await;
    let held = validations.accepted();
    let renew = {
        let config = config.clone();
        std::thread::spawn(move || {
            crate::common::madmail::cert(&config, &["renew", "--force", "mail.example.test"])
        })
    };
    validations.wait_accepted(held + 1).await;
    assert!(locked(&lock_file(&store)));
    server.kill9();
    let renew = tokio::task::block_in_place(|| renew.join().unwrap());
    assert!(
        !renew.status.success(),
        "the renewal died with the server: {}",
        String::from_utf8_lossy(&renew.stdout)
    );
    assert_eq!(check_store(&store).as_deref(), Some(first.as_str()));
    let orders = pebble.log_count("POST /order-plz");
    validations.set_mode(Mode::Forward).await;
    let _server = start(&config, &log);
    assert_eq!(
        served_serial(smtps, "mail.example.test", &root)
            .await
            .unwrap(),
        first,
        "the stored certificate is served from the start"
    );
    let info = tokio::task::block_in_place(|| cert_info(&config));
    assert_eq!(info[0]["status"], "valid", "{info}");
    assert_eq!(pebble.log_count("POST /order-plz"), orders);
    // Each restart took over the socket the killed process left behind (`cert info` above
    // asked the server, not the store).
    let log = server_log(&log);
    assert!(log.contains("serving stored certificate"), "{log}");
    assert!(!log.contains("no control socket"), "{log}");
}

fn server_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_an_implicit_tls_mail_endpoint() {
    // No tls_alpn_listen: Pebble's tls-alpn-01 validation connects to the SMTP endpoint
    // itself (implicit TLS), which answers `acme-tls/1` from the loader's challenge map and
    // serves mail to everyone else.
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &pebble,
        "challenge tls-alpn-01",
        pebble.tls_port,
    );
    let smtps = SocketAddr::from(([127, 0, 0, 1], pebble.tls_port));
    let _server = start(&config, &dir.path().join("madmail.log"));
    let root = pebble.issuing_root().await;
    let serial = wait_verified(smtps, &root).await;
    let info = tokio::task::block_in_place(|| cert_info(&config));
    assert_eq!(info[0]["status"], "valid", "{info}");
    assert_eq!(info[0]["serial"], serial.as_str(), "{info}");
    assert_eq!(
        smtp_banner(smtps, &root).await,
        "220 mail.example.test ESMTP madmail ready",
    );
}

/// The first line an implicit-TLS SMTP server sends, over a verified TLS connection.
async fn smtp_banner(addr: SocketAddr, root_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("mail.example.test").unwrap(), tcp)
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(tls).read_line(&mut line),
    )
    .await
    .unwrap()
    .unwrap();
    line.trim_end().to_owned()
}

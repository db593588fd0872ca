//! Real TLS handshakes (tokio-rustls client, and `openssl s_client` when installed) against
//! servers built from the `tls` directive and the resolver: SNI selection, hot swap under
//! load, file reloads (rename and certbot-style symlink swap), broken replacements, key
//! formats, protocol and cipher restrictions, the tls-alpn-01 challenge hook.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, TestCa, endpoint_tls, eventually, load_config, make_cert, serve};
use madmail_module::Running;
use madmail_tls::{ACME_TLS_ALPN, CertSet, SniResolver, parse_pem};
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::pki_types::CertificateDer;

/// How long a reload may take to show (it normally takes well under a second).
const RELOAD_LIMIT: Duration = Duration::from_secs(15);

fn server_config(resolver: Arc<SniResolver>) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(madmail_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Arc::new(config)
}

fn loaded(cert: &common::TestCert) -> madmail_tls::LoadedCert {
    parse_pem(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        "c".as_ref(),
        "k".as_ref(),
    )
    .unwrap()
}

async fn served(addr: std::net::SocketAddr, client: &Client) -> CertificateDer<'static> {
    client.connect(addr).await.unwrap().cert
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_exact_then_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let default = make_cert(&["default.test"], 1, None);
    let exact = make_cert(&["mx.example.org"], 2, None);
    let wildcard = make_cert(&["*.example.org"], 3, None);
    default.write(dir.path(), "default");
    exact.write(dir.path(), "exact");
    wildcard.write(dir.path(), "wildcard");
    let config = load_config(
        dir.path(),
        "test_tls {\n  tls file default.crt default.key wildcard.crt wildcard.key exact.crt exact.key\n}\n",
    )
    .unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;

    assert_eq!(
        served(addr, &Client::sni("mx.example.org")).await,
        exact.der
    );
    assert_eq!(
        served(addr, &Client::sni("MX.Example.ORG")).await,
        exact.der
    );
    assert_eq!(
        served(addr, &Client::sni("imap.example.org")).await,
        wildcard.der
    );
    assert_eq!(
        served(addr, &Client::sni("a.b.example.org")).await,
        default.der
    );
    assert_eq!(
        served(addr, &Client::sni("default.test")).await,
        default.der
    );
    assert_eq!(
        served(addr, &Client::sni("unknown.test")).await,
        default.der
    );
    assert_eq!(
        served(addr, &Client::default()).await,
        default.der,
        "no SNI"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_concurrent_handshakes() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    let (old, new) = (
        make_cert(&["mx.test"], 10, None),
        make_cert(&["mx.test"], 11, None),
    );
    let mut set = CertSet::new();
    set.set_default(loaded(&old).key);
    let resolver = Arc::new(SniResolver::new(set));
    let addr = serve(server_config(resolver.clone())).await;

    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (done, old, new) = (done.clone(), old.der.clone(), new.der.clone());
        tasks.push(tokio::spawn(async move {
            let client = if i % 2 == 0 {
                Client::sni("mx.test")
            } else {
                Client::default()
            };
            let mut seen_new = 0;
            for _ in 0..PER_TASK {
                let cert = client.connect(addr).await.expect("handshake failed").cert;
                if cert == new {
                    seen_new += 1;
                } else {
                    assert_eq!(cert, old);
                    // Once this task saw the new certificate, the old one never comes back.
                    assert_eq!(seen_new, 0, "old certificate served after the new one");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            seen_new
        }));
    }
    // Swap once a good part of the handshakes has happened, while the rest are running.
    assert!(
        eventually(Duration::from_secs(60), || {
            let n = done.load(Ordering::Relaxed);
            async move { n >= TASKS * PER_TASK / 4 }
        })
        .await
    );
    let mut next = CertSet::new();
    next.set_default(loaded(&new).key);
    resolver.replace(next);
    let mut seen_new = 0;
    for task in tasks {
        seen_new += task.await.unwrap();
    }
    assert!(seen_new > 0, "no handshake saw the new certificate");
    assert_eq!(served(addr, &Client::default()).await, new.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_alpn_challenge_certificates() {
    let (normal, challenge) = (
        make_cert(&["mx.test"], 20, None),
        make_cert(&["mx.test"], 21, None),
    );
    let mut set = CertSet::new();
    set.set_default(loaded(&normal).key);
    let resolver = Arc::new(SniResolver::new(set));
    let config = madmail_tls::with_alpn(&server_config(resolver.clone()), &[ACME_TLS_ALPN]);
    let addr = serve(config).await;
    let acme = Client {
        alpn: vec![ACME_TLS_ALPN.to_vec()],
        ..Client::sni("mx.test")
    };

    // No challenge certificate yet: the acme-tls/1 handshake fails rather than getting the
    // regular certificate.
    assert!(acme.connect(addr).await.is_err());
    resolver.set_challenge("mx.test", loaded(&challenge).key);
    let got = acme.connect(addr).await.unwrap();
    assert_eq!(got.cert, challenge.der);
    assert_eq!(got.alpn.as_deref(), Some(ACME_TLS_ALPN));
    // Regular clients still get the regular certificate.
    assert_eq!(served(addr, &Client::sni("mx.test")).await, normal.der);
    resolver.clear_challenge("mx.test");
    assert!(acme.connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_file_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (
        make_cert(&["mx.test"], 30, None),
        make_cert(&["mx.test"], 31, None),
    );
    let (cert, key) = v1.write(dir.path(), "mx");
    // A long reload_interval: the change must be seen by watching the directory.
    let config = load_config(
        dir.path(),
        "tls.loader.file certs {\n  certs mx.crt\n  keys mx.key\n  reload_interval 1h\n}\ntest_tls {\n  tls &certs\n}\n",
    )
    .unwrap();
    let mut running = Running::start(&config.instances).await.unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;
    assert_eq!(served(addr, &Client::default()).await, v1.der);

    v2.replace(&cert, &key);
    let client = Client::default();
    assert!(
        eventually(RELOAD_LIMIT, || async {
            served(addr, &client).await == v2.der
        })
        .await,
        "the replaced certificate was not served"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_symlink_swap_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive/mx.test");
    let live = dir.path().join("live/mx.test");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let (v1, v2) = (
        make_cert(&["mx.test"], 40, None),
        make_cert(&["mx.test"], 41, None),
    );
    let install = |cert: &common::TestCert, n: u32| {
        std::fs::write(archive.join(format!("fullchain{n}.pem")), &cert.cert_pem).unwrap();
        std::fs::write(archive.join(format!("privkey{n}.pem")), &cert.key_pem).unwrap();
        // certbot's way: a new link next to the old one, renamed over it.
        for file in ["fullchain", "privkey"] {
            let tmp = live.join(format!("{file}.pem.new"));
            std::os::unix::fs::symlink(format!("../../archive/mx.test/{file}{n}.pem"), &tmp)
                .unwrap();
            std::fs::rename(&tmp, live.join(format!("{file}.pem"))).unwrap();
        }
    };
    install(&v1, 1);
    let config = load_config(
        dir.path(),
        "tls.loader.file certs {\n  certs live/mx.test/fullchain.pem\n  keys live/mx.test/privkey.pem\n  reload_interval 1h\n}\ntest_tls {\n  tls &certs\n}\n",
    )
    .unwrap();
    let mut running = Running::start(&config.instances).await.unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;
    assert_eq!(served(addr, &Client::sni("mx.test")).await, v1.der);

    install(&v2, 2);
    let client = Client::sni("mx.test");
    assert!(
        eventually(RELOAD_LIMIT, || async {
            served(addr, &client).await == v2.der
        })
        .await,
        "the renewed certificate was not served"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replacement_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = make_cert(&["a.test"], 50, None);
    let (b1, b2) = (
        make_cert(&["b.test"], 51, None),
        make_cert(&["b.test"], 52, None),
    );
    let (a_cert, a_key) = a1.write(dir.path(), "a");
    let (b_cert, b_key) = b1.write(dir.path(), "b");
    let config = load_config(
        dir.path(),
        "tls.loader.file certs {\n  certs a.crt b.crt\n  keys a.key b.key\n  reload_interval 1h\n}\ntest_tls {\n  tls &certs\n}\n",
    )
    .unwrap();
    let mut running = Running::start(&config.instances).await.unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;

    // a.test gets a certificate whose key is another one's, then a truncated file;
    // afterwards b.test gets a good new certificate. Once b's is served, the loader has also
    // read a's broken files, and must have kept a's old certificate.
    let stranger = make_cert(&["a.test"], 53, None);
    common::TestCert {
        cert_pem: stranger.cert_pem.clone(),
        key_pem: a1.key_pem.clone(),
        der: stranger.der.clone(),
    }
    .replace(&a_cert, &a_key);
    std::fs::write(&a_cert, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    b2.replace(&b_cert, &b_key);
    let client_b = Client::sni("b.test");
    assert!(
        eventually(RELOAD_LIMIT, || async {
            served(addr, &client_b).await == b2.der
        })
        .await
    );
    assert_eq!(served(addr, &Client::sni("a.test")).await, a1.der);
    running.stop().await;
}

/// PKCS#8 (what rcgen writes), SEC1 and PKCS#1 keys are all usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_formats() {
    use aws_lc_rs::encoding::AsDer;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivatePkcs1KeyDer, PrivateSec1KeyDer};

    // SEC1: the EC key in RFC 5915 form, with its curve.
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ec_pkcs8 = ec.serialize_der();
    let ec_cert = common::make_cert_with_key(&["ec.test"], 60, None, ec);
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ec_pkcs8,
    )
    .unwrap();
    let sec1 = pair.private_key().as_der().unwrap();
    let sec1_pem = pem_text("EC PRIVATE KEY", sec1.as_ref());
    assert!(PrivateSec1KeyDer::from_pem_slice(sec1_pem.as_bytes()).is_ok());

    // PKCS#1: the RSAPrivateKey inside the PKCS#8 structure's OCTET STRING.
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let pkcs1 = pkcs8_inner_key(&rsa.serialize_der());
    let rsa_cert = common::make_cert_with_key(&["rsa.test"], 61, None, rsa);
    let pkcs1_pem = pem_text("RSA PRIVATE KEY", &pkcs1);
    assert!(PrivatePkcs1KeyDer::from_pem_slice(pkcs1_pem.as_bytes()).is_ok());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ec.crt"), &ec_cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("ec.key"), &sec1_pem).unwrap();
    std::fs::write(dir.path().join("rsa.crt"), &rsa_cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("rsa.key"), &pkcs1_pem).unwrap();
    std::fs::write(dir.path().join("p8.key"), &ec_cert.key_pem).unwrap();
    let config = load_config(
        dir.path(),
        "test_tls {\n  tls file ec.crt ec.key rsa.crt rsa.key\n}\ntest_tls {\n  tls file ec.crt p8.key\n}\n",
    )
    .unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;
    assert_eq!(served(addr, &Client::sni("ec.test")).await, ec_cert.der);
    assert_eq!(served(addr, &Client::sni("rsa.test")).await, rsa_cert.der);
    let tls12 = Client {
        only_version: Some(12),
        ..Client::sni("rsa.test")
    };
    assert_eq!(served(addr, &tls12).await, rsa_cert.der);
}

fn pem_text(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// The privateKey OCTET STRING of a PKCS#8 PrivateKeyInfo (for RSA: the PKCS#1 key).
fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
    use x509_parser::der_parser::der::parse_der_sequence;
    let (_, seq) = parse_der_sequence(pkcs8).unwrap();
    let items = seq.as_sequence().unwrap();
    items[2].as_slice().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_restrict_versions() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(&["mx.test"], 70, None).write(dir.path(), "mx");
    let config = load_config(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key { protocols tls1.3 }\n}\ntest_tls {\n  tls file mx.crt mx.key { protocols tls1.0 tls1.2 }\n}\n",
    )
    .unwrap();
    let only13 = serve(endpoint_tls(&config).unwrap()).await;
    let upto12 = serve(
        config.endpoints[1]
            .caps
            .get::<common::Decoded>()
            .unwrap()
            .0
            .clone()
            .unwrap(),
    )
    .await;
    let client12 = Client {
        only_version: Some(12),
        ..Client::default()
    };
    let client13 = Client {
        only_version: Some(13),
        ..Client::default()
    };
    assert!(
        client12.connect(only13).await.is_err(),
        "TLS 1.2 client got through a 1.3-only server"
    );
    assert!(client13.connect(only13).await.is_ok());
    assert!(
        client13.connect(upto12).await.is_err(),
        "TLS 1.3 client got through a 1.2-only server"
    );
    assert!(client12.connect(upto12).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphers_restrict_suites() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(&["mx.test"], 80, None).write(dir.path(), "mx");
    // The CBC suite is dropped with a warning; AES-128-GCM stays.
    let config = load_config(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key {\n    protocols tls1.2\n    ciphers ECDHE-ECDSA-WITH-AES128-CBC-SHA ECDHE-ECDSA-WITH-AES128-GCM-SHA256\n    curves p521 p256\n  }\n}\n",
    )
    .unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;
    let with = |suite| Client {
        suites: Some(vec![suite]),
        only_version: Some(12),
        ..Client::default()
    };
    assert!(
        with(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
            .connect(addr)
            .await
            .is_ok()
    );
    assert!(
        with(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
            .connect(addr)
            .await
            .is_err()
    );
}

/// A `tls_client` with `root_ca` verifies a server whose certificate that CA issued; the
/// default client configuration (system roots) does not trust it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_root_ca_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let leaf = make_cert(&["mx.example.org"], 90, Some(&ca));
    leaf.write(dir.path(), "mx");
    let config = load_config(dir.path(), "test_tls {\n  tls file mx.crt mx.key\n}\n").unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;

    let nodes = madmail_config::parse_str(
        &dir.path().join("client.conf"),
        "tls_client {\n  root_ca ca.pem\n  protocols tls1.2 tls1.3\n}\n",
        &madmail_config::Environment::empty(),
    )
    .unwrap();
    let client_config = madmail_tls::client_tls(&nodes[0]).unwrap();
    let verifying = Client {
        verifying: Some(client_config),
        ..Client::sni("mx.example.org")
    };
    assert_eq!(verifying.connect(addr).await.unwrap().cert, leaf.der);
    let wrong_name = Client {
        sni: Some("other.example.org".into()),
        ..verifying.clone()
    };
    assert!(wrong_name.connect(addr).await.is_err());
    let system = Client {
        verifying: Some(madmail_tls::client_tls_default()),
        ..Client::sni("mx.example.org")
    };
    assert!(system.connect(addr).await.is_err());
}

/// `openssl s_client` (a stock client) gets the certificate for the name it asks for.
/// Needs the `openssl` command (Debian package `openssl`); skipped with a notice without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_sni_certificates() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!(
            "NOTICE: openssl not installed; skipping the s_client test (apt-get install openssl)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let default = make_cert(&["mx.example.org"], 100, None);
    let other = make_cert(&["other.example.net"], 101, None);
    default.write(dir.path(), "default");
    other.write(dir.path(), "other");
    let config = load_config(
        dir.path(),
        "test_tls {\n  tls file default.crt default.key other.crt other.key\n}\n",
    )
    .unwrap();
    let addr = serve(endpoint_tls(&config).unwrap()).await;
    let s_client = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("openssl")
                .arg("s_client")
                .arg("-connect")
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let cert = CertificateDer::pem_slice_iter(text.as_bytes())
                .next()
                .unwrap_or_else(|| panic!("no certificate in s_client output:\n{text}"))
                .unwrap();
            (cert, text)
        })
    };
    use rustls::pki_types::pem::PemObject;
    let (cert, _) = s_client(vec![
        addr.to_string(),
        "-servername".into(),
        "other.example.net".into(),
    ])
    .await
    .unwrap();
    assert_eq!(cert, other.der);
    let (cert, text) = s_client(vec![
        addr.to_string(),
        "-noservername".into(),
        "-tls1_2".into(),
    ])
    .await
    .unwrap();
    assert_eq!(cert, default.der);
    assert!(text.contains("TLSv1.2"), "{text}");
}

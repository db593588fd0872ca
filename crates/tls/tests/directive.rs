//! The `tls` and `tls_client` directives as a configuration states them: every form, and
//! the errors (with their positions) for what can't work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{config_errors, endpoint_tls, load_config, make_cert};
use madmail_config::{Environment, parse_str};

fn dir_with_cert() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_cert(&["mx.test"], 1, None).write(dir.path(), "mx");
    dir
}

#[test]
fn tls_off_disables_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_config(dir.path(), "test_tls {\n  tls off\n}\n").unwrap();
    assert!(endpoint_tls(&config).is_none());
    // Inherited from the globals too.
    let config = load_config(dir.path(), "tls off\ntest_tls {}\n").unwrap();
    assert!(endpoint_tls(&config).is_none());
    let errors = config_errors(dir.path(), "test_tls {\n  tls off extra\n}\n");
    assert!(
        errors.contains("test.conf:2:11: tls off takes no other arguments"),
        "{errors}"
    );
}

#[test]
fn every_form_builds() {
    let dir = dir_with_cert();
    for text in [
        "test_tls {\n  tls file mx.crt mx.key\n}\n",
        "test_tls {\n  tls file mx.crt mx.key { protocols tls1.2 tls1.3; curves X25519 p256 }\n}\n",
        "tls.loader.file local { certs mx.crt; keys mx.key }\ntest_tls {\n  tls &local { protocols tls1.3 }\n}\n",
        "test_tls {\n  tls { loader file mx.crt mx.key; ciphers ECDHE-ECDSA-WITH-AES256-GCM-SHA384 }\n}\n",
        "test_tls {\n  tls {\n    loader file {\n      certs mx.crt\n      keys mx.key\n      reload_interval 5m\n    }\n  }\n}\n",
        "test_tls {\n  tls self_signed mx.test 127.0.0.1\n}\n",
        "tls file mx.crt mx.key\ntest_tls {}\n",
        "tls.loader.file local { certs mx.crt; keys mx.key }\ntls &local\ntest_tls {}\n",
    ] {
        let config = load_config(dir.path(), text).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let tls = endpoint_tls(&config).unwrap_or_else(|| panic!("no TLS for {text}"));
        assert!(tls.alpn_protocols.is_empty());
    }
}

fn dns_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_names() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "hostname mx.example.org\ntest_tls {\n  tls self_signed\n}\n",
            vec!["mx.example.org"],
        ),
        ("test_tls {\n  tls self_signed\n}\n", vec!["localhost"]),
        (
            "test_tls {\n  tls self_signed a.test *.b.test\n}\n",
            vec!["a.test", "*.b.test"],
        ),
    ] {
        let config = load_config(dir.path(), text).unwrap();
        let addr = common::serve(endpoint_tls(&config).unwrap()).await;
        let served = common::Client::default().connect(addr).await.unwrap();
        assert_eq!(dns_names(&served.cert), expected, "{text}");
    }
    let errors = config_errors(dir.path(), "test_tls {\n  tls self_signed bad/name\n}\n");
    assert!(
        errors.contains("test.conf:2:19: tls.loader.self_signed:"),
        "{errors}"
    );
}

#[test]
fn needs_a_loader() {
    let dir = tempfile::tempdir().unwrap();
    let errors = config_errors(dir.path(), "test_tls {\n  tls { protocols tls1.3 }\n}\n");
    assert!(
        errors.contains("tls needs a certificate loader"),
        "{errors}"
    );
    let errors = config_errors(dir.path(), "test_tls {}\n");
    assert!(errors.contains("directive tls is required"), "{errors}");
    let errors = config_errors(dir.path(), "test_tls {\n  tls nosuch\n}\n");
    assert!(
        errors.contains("test.conf:2:7: unknown module nosuch"),
        "{errors}"
    );
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file a b { loader file c d }\n}\n",
    );
    assert!(errors.contains("already given on the tls line"), "{errors}");
}

#[test]
fn unknown_names_are_errors_with_positions() {
    let dir = dir_with_cert();
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key {\n    ciphers ECDHE-RSA-WITH-AES128-GCM-SHA256 NOPE-CIPHER\n    curves X25519 p999\n    protocols tls1.2 tls1.4\n    colour blue\n  }\n}\n",
    );
    assert!(
        errors.contains("test.conf:3:46: unknown cipher NOPE-CIPHER"),
        "{errors}"
    );
    assert!(
        errors.contains("test.conf:4:19: unknown curve p999"),
        "{errors}"
    );
    assert!(
        errors.contains("test.conf:5:22: unknown TLS version \"tls1.4\""),
        "{errors}"
    );
    assert!(
        errors.contains("test.conf:6:5: unknown directive colour"),
        "{errors}"
    );
}

#[test]
fn nothing_usable_left_is_an_error() {
    let dir = dir_with_cert();
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key {\n    ciphers RSA-WITH-AES128-CBC-SHA ECDHE-RSA-WITH-3DES-EDE-CBC-SHA RSA-WITH-AES128-GCM-SHA256\n  }\n}\n",
    );
    assert!(
        errors.contains("test.conf:3:5: none of these ciphers can be used"),
        "{errors}"
    );
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key { curves p521 }\n}\n",
    );
    assert!(
        errors.contains("none of these curves can be used"),
        "{errors}"
    );
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key { protocols tls1.0 tls1.1 }\n}\n",
    );
    assert!(
        errors.contains("TLS 1.0 and 1.1 are not supported"),
        "{errors}"
    );
    // Only TLS 1.3 suites listed, but only TLS 1.2 allowed.
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key { protocols tls1.2; ciphers TLS_AES_128_GCM_SHA256 }\n}\n",
    );
    assert!(errors.contains("leave nothing usable"), "{errors}");
    // Dropped values with something usable left are fine, and warned about.
    let (result, logs) = common::logs_of(|| {
        load_config(
            dir.path(),
            "test_tls {\n  tls file mx.crt mx.key { protocols tls1.0 tls1.3; curves p521 X25519; ciphers ECDHE-RSA-WITH-AES128-CBC-SHA ECDHE-RSA-WITH-AES128-GCM-SHA256 }\n}\n",
        )
    });
    result.unwrap();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("the lowest version is tls1.2"), "{logs}");
    assert!(
        logs.contains("curve dropped: P-521 is not implemented by rustls"),
        "{logs}"
    );
    assert!(logs.contains("cipher dropped: CBC mode"), "{logs}");
    assert!(logs.contains("ECDHE-RSA-WITH-AES128-CBC-SHA"), "{logs}");
}

#[test]
fn file_loader_errors() {
    let dir = dir_with_cert();
    let errors = config_errors(
        dir.path(),
        "test_tls {\n  tls file mx.crt mx.key extra.crt\n}\n",
    );
    assert!(
        errors.contains("test.conf:2:26: tls.loader.file: odd number of arguments"),
        "{errors}"
    );
    let errors = config_errors(dir.path(), "test_tls {\n  tls file missing.crt mx.key\n}\n");
    assert!(
        errors.contains("test.conf:2:12: tls.loader.file: "),
        "{errors}"
    );
    assert!(errors.contains("missing.crt: No such file"), "{errors}");
    let errors = config_errors(
        dir.path(),
        "tls.loader.file x {\n  certs mx.crt mx.crt\n  keys mx.key\n}\ntest_tls {\n  tls &x\n}\n",
    );
    assert!(
        errors.contains("certs and keys differ in length"),
        "{errors}"
    );
    let errors = config_errors(
        dir.path(),
        "tls.loader.file x {}\ntest_tls {\n  tls &x\n}\n",
    );
    assert!(
        errors.contains("needs at least one certificate"),
        "{errors}"
    );

    // A key from another certificate.
    make_cert(&["other.test"], 2, None).write(dir.path(), "other");
    let errors = config_errors(dir.path(), "test_tls {\n  tls file mx.crt other.key\n}\n");
    assert!(errors.contains("test.conf:2:12:"), "{errors}");
    assert!(
        errors.contains("does not match the certificate"),
        "{errors}"
    );

    std::fs::write(dir.path().join("garbage.crt"), "not a certificate").unwrap();
    let errors = config_errors(dir.path(), "test_tls {\n  tls file garbage.crt mx.key\n}\n");
    assert!(errors.contains("no certificate found"), "{errors}");
    let errors = config_errors(dir.path(), "test_tls {\n  tls file mx.crt mx.crt\n}\n");
    assert!(errors.contains("no private key found"), "{errors}");
}

fn client_config(dir: &std::path::Path, text: &str) -> Result<(), String> {
    let nodes = parse_str(
        &dir.join("test.conf"),
        &common::conf(text),
        &Environment::empty(),
    )
    .unwrap();
    madmail_tls::client_tls(&nodes[0])
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn tls_client_block() {
    let dir = dir_with_cert();
    let ca = common::TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    client_config(
        dir.path(),
        "tls_client {\n  root_ca ca.pem\n  cert mx.crt\n  key mx.key\n  curves X25519\n}\n",
    )
    .unwrap();
    client_config(dir.path(), "tls_client {}\n").unwrap();

    let e = client_config(dir.path(), "tls_client {\n  root_ca missing.pem\n}\n").unwrap_err();
    assert!(e.contains("test.conf:2:11: root_ca:"), "{e}");
    let e = client_config(dir.path(), "tls_client {\n  root_ca mx.key\n}\n").unwrap_err();
    assert!(e.contains("no certificates loaded"), "{e}");
    let e = client_config(dir.path(), "tls_client {\n  cert mx.crt\n}\n").unwrap_err();
    assert!(
        e.contains("test.conf:2:8: cert and key must be given together"),
        "{e}"
    );
    let e = client_config(dir.path(), "tls_client\n").unwrap_err();
    assert!(e.contains("tls_client needs a block"), "{e}");
    let e = client_config(dir.path(), "tls_client {\n  ciphers BOGUS\n}\n").unwrap_err();
    assert!(e.contains("unknown cipher BOGUS"), "{e}");
}

#[test]
fn crypto_provider_install_is_idempotent() {
    madmail_tls::install_crypto_provider();
    madmail_tls::install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

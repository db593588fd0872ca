//! Start-up from an existing store: a certificate maddy (certmagic) left under
//! `store_path` is served at once, without contacting the CA (here unreachable), and
//! `cert info` reports it. No network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::*;
use madmail_acme::Status;
use madmail_module::Running;
use madmail_tls::CertificateSource;

/// A CA-signed certificate for `names` and its key as certmagic writes it (SEC1 "EC PRIVATE
/// KEY"), plus the CA's PEM.
fn certmagic_pair(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Old CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
    )
    .unwrap();
    use aws_lc_rs::encoding::AsDer;
    let sec1 = pair.private_key().as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(sec1.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let key_pem = format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    );
    (cert.pem(), key_pem, ca_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maddy_store_is_served_without_a_new_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::pebble::free_port();
    let ca = format!("https://127.0.0.1:{port}/directory");
    // maddy's default store_path is state_dir/acme, as ours.
    let site = dir
        .path()
        .join("state/acme/certificates")
        .join(format!("127.0.0.1-{port}-directory"))
        .join("mx.example.test");
    std::fs::create_dir_all(&site).unwrap();
    let (cert_pem, key_pem, ca_pem) = certmagic_pair(&["mx.example.test"]);
    std::fs::write(site.join("mx.example.test.crt"), &cert_pem).unwrap();
    std::fs::write(site.join("mx.example.test.key"), &key_pem).unwrap();
    std::fs::write(
        site.join("mx.example.test.json"),
        format!(
            r#"{{"sans":["mx.example.test"],"issuer_data":{{"url":"{ca}/cert/1","ca":"{ca}"}}}}"#
        ),
    )
    .unwrap();
    let text = format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mx.example.test\n\
         tls.loader.acme acme {{\n agreed\n ca {ca}\n challenge http-01\n http_listen tcp://127.0.0.1:{http}\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n",
        state = dir.path().join("state").display(),
        run = dir.path().join("run").display(),
        http = common::pebble::free_port(),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    // Offline (nothing started): read from the store.
    let statuses = acme.status().await;
    assert_eq!(statuses[0].status, Status::Valid, "{statuses:#?}");
    assert_eq!(statuses[0].issuer.as_deref(), Some("CN=Old CA"));
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let serial = statuses[0].serial.clone().unwrap();
    // Served right after start, verified against the old CA.
    assert_eq!(
        served_serial(server, "mx.example.test", &ca_pem)
            .await
            .unwrap(),
        serial
    );
    let live = acme.status().await;
    assert_eq!(
        (live[0].status, live[0].serial.clone()),
        (Status::Valid, Some(serial))
    );
    assert!(
        live[0].last_error.is_none(),
        "no attempt was made: {live:#?}"
    );
    running.stop().await;
}

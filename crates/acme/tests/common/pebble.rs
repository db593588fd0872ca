//! A real Pebble (Let's Encrypt's ACME test server, Debian package `pebble` 2.4) and its
//! `pebble-challtestsrv` as DNS server, one pair per test, on free loopback ports.
//!
//! Self-contained (tokio, rustls, tokio-rustls, rcgen, tempfile) so that other harnesses
//! (xtask) can include it with `#[path = ".../crates/acme/tests/common/pebble.rs"] mod pebble;`.
//!
//! Debian ships no test certificates: the HTTPS certificate of Pebble's API is generated here
//! (a CA and a `127.0.0.1`/`localhost` certificate); clients trust [`Pebble::api_ca_file`].
//! The CA that *issues* (different at every start) is fetched from the management port
//! (`/roots/0`). Names in orders resolve through challtestsrv, which answers every A query
//! with 127.0.0.1 (and no AAAA), so Pebble's validators connect to the test's listeners on
//! [`Pebble::http_port`] (http-01) and [`Pebble::tls_port`] (tls-alpn-01).
//!
//! [`PebbleOptions`] sets Pebble's test knobs (nonce rejection, authorization reuse, EAB,
//! certificate lifetime, another DNS server); [`Pebble::restart`] gives a CA that forgot
//! everything on the same ports; [`Pebble::log_count`] counts what Pebble logged (orders,
//! registrations, validations).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How Pebble should behave.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `PEBBLE_WFE_NONCEREJECT`: percentage of good nonces rejected with badNonce.
    pub nonce_reject: u8,
    /// `PEBBLE_AUTHZREUSE`: percentage of valid authorizations reused.
    pub authz_reuse: u8,
    /// Require external account binding with these `(key id, base64url HMAC key)`.
    pub eab: Vec<(String, String)>,
    /// `certificateValidityPeriod` in seconds (Pebble's default is 5 years).
    pub certificate_validity: Option<u64>,
    /// The DNS server Pebble's validators ask (`-dnsserver`), instead of challtestsrv (for
    /// instance a BIND9 started by the test, for dns-01 through RFC 2136).
    pub dns_server: Option<String>,
}

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT/dir`.
    pub directory_url: String,
    pub management: String,
    /// Where Pebble's validators connect for http-01 and tls-alpn-01 (on 127.0.0.1).
    pub http_port: u16,
    pub tls_port: u16,
    /// challtestsrv's DNS server (`127.0.0.1:PORT`) and management API.
    pub dns: String,
    pub dns_management: String,
    api_ca_pem: String,
    options: PebbleOptions,
    pebble: Child,
    challtestsrv: Child,
}

/// A free TCP port on 127.0.0.1 (free when asked; tests accept the small race).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP+TCP port for a DNS server.
fn free_dns_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether the Pebble binaries are installed (`apt-get install pebble`).
pub fn installed() -> bool {
    ["pebble", "pebble-challtestsrv"].iter().all(|b| {
        std::process::Command::new(b)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

impl Pebble {
    /// Starts Pebble and its DNS server on free ports. Ports are picked before they are bound,
    /// so another test may take one in between: a start that does not listen is retried on
    /// new ports (three times at most).
    pub async fn start(options: PebbleOptions) -> Pebble {
        assert!(
            installed(),
            "these tests need Pebble: apt-get install -y pebble (Debian package, 2.4)"
        );
        let mut attempts = 0;
        loop {
            let mut pebble = Self::start_once(options.clone());
            if pebble.listening().await {
                return pebble;
            }
            attempts += 1;
            let log = pebble.log();
            pebble.kill().await;
            assert!(
                attempts < 3,
                "Pebble did not start listening; its log:\n{log}"
            );
        }
    }

    fn start_once(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = api_certificate();
        std::fs::write(dir.path().join("api-ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.path().join("api-cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("api-key.pem"), key_pem).unwrap();

        let (dns_port, dns_mgmt) = (free_dns_port(), free_port());
        let (api, mgmt, http_port, tls_port) = (free_port(), free_port(), free_port(), free_port());
        let eab: serde_json::Map<String, serde_json::Value> = options
            .eab
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{api}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": dir.path().join("api-cert.pem"),
                "privateKey": dir.path().join("api-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !options.eab.is_empty(),
                "externalAccountMACKeys": eab,
            }
        });
        if let Some(seconds) = options.certificate_validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let dns = format!("127.0.0.1:{dns_port}");
        let dns_management = format!("127.0.0.1:{dns_mgmt}");
        let challtestsrv = spawn_challtestsrv(&dns, &dns_management);
        let pebble = spawn_pebble(
            dir.path(),
            options.dns_server.as_deref().unwrap_or(&dns),
            &options,
        );
        Pebble {
            directory_url: format!("https://127.0.0.1:{api}/dir"),
            management: format!("127.0.0.1:{mgmt}"),
            http_port,
            tls_port,
            dns,
            dns_management,
            api_ca_pem: ca_pem,
            options,
            dir,
            pebble,
            challtestsrv,
        }
    }

    /// Whether the API, the management API and the DNS server's management API all accept
    /// connections within 10 seconds each.
    async fn listening(&self) -> bool {
        let api = self
            .directory_url
            .trim_start_matches("https://")
            .trim_end_matches("/dir")
            .to_owned();
        for addr in [api, self.management.clone(), self.dns_management.clone()] {
            if !wait_for_port(&addr).await {
                return false;
            }
        }
        true
    }

    async fn wait_until_listening(&self) {
        assert!(
            self.listening().await,
            "Pebble did not start listening again:\n{}",
            self.log()
        );
    }

    /// Stops Pebble and starts it again on the same ports with the same configuration: a CA
    /// that forgot every account, order and authorization, and issues from a new root.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.challtestsrv = spawn_challtestsrv(&self.dns, &self.dns_management);
        let dns = self
            .options
            .dns_server
            .clone()
            .unwrap_or_else(|| self.dns.clone());
        self.pebble = spawn_pebble(self.dir.path(), &dns, &self.options);
        self.wait_until_listening().await;
    }

    /// How many times the log shows `needle` (e.g. `"POST /order-plz"`: new orders).
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The PEM file with the CA of Pebble's own HTTPS certificate (for `trusted_roots`).
    pub fn api_ca_file(&self) -> PathBuf {
        self.dir.path().join("api-ca.pem")
    }

    /// Pebble's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root that issues certificates (PEM), from the management port.
    pub async fn issuing_root(&self) -> String {
        let (status, body) = self.management_request("GET", "/roots/0", "").await;
        assert!(status.contains("200"), "{status}: {body}");
        body
    }

    /// An HTTPS request to the management port; returns the status line and body.
    pub async fn management_request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (String, String) {
        https_request(&self.management, &self.api_ca_pem, method, path, body).await
    }

    /// Adds a TXT value in challtestsrv's DNS (for dns-01 tests).
    pub async fn set_txt(&self, fqdn: &str, value: &str) {
        let body = serde_json::json!({"host": fqdn, "value": value}).to_string();
        http_post(&self.dns_management, "/set-txt", &body).await;
    }

    /// Removes every TXT value of `fqdn` in challtestsrv's DNS.
    pub async fn clear_txt(&self, fqdn: &str) {
        let body = serde_json::json!({"host": fqdn}).to_string();
        http_post(&self.dns_management, "/clear-txt", &body).await;
    }

    /// Stops Pebble (it forgets everything: accounts, orders, its issuing CA).
    pub async fn kill(&mut self) {
        let _ = self.pebble.kill().await;
        let _ = self.challtestsrv.kill().await;
    }
}

fn spawn_challtestsrv(dns: &str, management: &str) -> Child {
    Command::new("pebble-challtestsrv")
        .args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            dns,
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            management,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Pebble with `dir/pebble-config.json`, logging to `dir/pebble.log` (appended to, so a
/// restart keeps the earlier lines).
fn spawn_pebble(dir: &Path, dns_server: &str, options: &PebbleOptions) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pebble.log"))
        .unwrap();
    Command::new("pebble")
        // Go flags: `-strict false` would turn strict mode on.
        .arg("-strict=false")
        .arg("-config")
        .arg(dir.join("pebble-config.json"))
        .arg("-dnsserver")
        .arg(dns_server)
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_VA_ALWAYS_VALID", "0")
        .env("PEBBLE_WFE_NONCEREJECT", options.nonce_reject.to_string())
        .env("PEBBLE_AUTHZREUSE", options.authz_reuse.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_for_port(addr: &str) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, as PEM.
fn api_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test Pebble API CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble");
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn tls_client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A one-shot HTTP/1.0 request over TLS (HTTP/1.0 so the answer is never chunked).
async fn https_request(
    addr: &str,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (String, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tls_client(ca_pem).connect(name, tcp).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // Go closes without close_notify sometimes; what was read counts.
    let _ = tls.read_to_end(&mut raw).await;
    split_response(&raw)
}

async fn http_post(addr: &str, path: &str, body: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw).await;
    let (status, body) = split_response(&raw);
    assert!(status.contains("200"), "{path}: {status} {body}");
    (status, body)
}

fn split_response(raw: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned())
}

/// Writes `pem` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

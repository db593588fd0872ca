//! A real Pebble (Let's Encrypt's ACME test server, Debian package `pebble` 2.4) and its
//! `pebble-challtestsrv` as DNS server, started fresh for one benchmark scenario on free
//! loopback ports, and stopped (with everything they remember) when dropped.
//!
//! The logic of crates/acme/tests/common/pebble.rs, reworked for a benchmark: synchronous,
//! errors instead of panics, children stopped by `Drop` on error and on interrupt. Debian
//! ships no test certificates, so the HTTPS certificate of Pebble's API is generated here;
//! clients trust [`Pebble::api_ca_file`]. The CA that *issues* is new at every start and
//! comes from the management port (`/roots/0`). challtestsrv answers every A query with
//! 127.0.0.1 (and no AAAA), so Pebble's validator connects to [`Pebble::http_port`] on
//! loopback for every name's http-01 challenge.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::cleanup;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pebble {
    dir: PathBuf,
    api: SocketAddr,
    management: SocketAddr,
    management_tls: Arc<rustls::ClientConfig>,
    http_port: u16,
    tls_port: u16,
    /// The issuing root, fetched once Pebble listens.
    issuing_root: CertificateDer<'static>,
    pebble: Child,
    challtestsrv: Child,
}

impl Pebble {
    /// Starts challtestsrv and Pebble with their files in `dir` (which must exist); returns
    /// once both answer and the issuing root is known.
    pub fn start(dir: &Path) -> Result<Pebble, String> {
        // The ports are free when chosen but not held until the programs bind them; another
        // process may take one in between. Rare, and worth another try.
        let mut attempt = 1;
        loop {
            match Pebble::start_once(dir) {
                Err(e) if e.contains("address already in use") && attempt < 3 => {
                    eprintln!("xtask: a port Pebble was given was taken meanwhile; trying again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(dir: &Path) -> Result<Pebble, String> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<PathBuf, String>(path)
        };
        let api_cert = ApiCertificate::generate()?;
        write("api-ca.pem", &api_cert.ca_pem)?;
        let cert_file = write("api-cert.pem", &api_cert.cert_pem)?;
        let key_file = write("api-key.pem", &api_cert.key_pem)?;

        let ports = Ports::choose()?;
        let (dns_port, dns_management) = (ports.dns, ports.dns_management);
        let log = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let challtestsrv_log = log("challtestsrv.log")?;
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdin(Stdio::null())
            .stdout(
                challtestsrv_log
                    .try_clone()
                    .map_err(|e| format!("challtestsrv.log: {e}"))?,
            )
            .stderr(challtestsrv_log)
            .spawn()
            .map_err(|e| format!("cannot run pebble-challtestsrv: {e}"))?;
        // From here on `Drop` stops whatever was started.
        let mut challtestsrv = KillOnDrop(Some(challtestsrv));

        let api = SocketAddr::from(([127, 0, 0, 1], ports.api));
        let management = SocketAddr::from(([127, 0, 0, 1], ports.management));
        let (http_port, tls_port) = (ports.http, ports.tls);
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": api.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert_file,
                "privateKey": key_file,
                "httpPort": http_port,
                // Unused (http-01 only), but Pebble wants a port.
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_text = serde_json::to_string_pretty(&config)
            .map_err(|e| format!("Pebble's configuration: {e}"))?;
        let config_file = write("pebble-config.json", &config_text)?;
        let pebble_log = log("pebble.log")?;
        let pebble = Command::new("pebble")
            // A Go flag: `-strict false` would switch strict mode on.
            .arg("-strict=false")
            .arg("-config")
            .arg(&config_file)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            // The settings: no artificial validation delay, no rejected nonces, no
            // authorization reuse (every order validates every name).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(
                pebble_log
                    .try_clone()
                    .map_err(|e| format!("pebble.log: {e}"))?,
            )
            .stderr(pebble_log)
            .spawn()
            .map_err(|e| format!("cannot run pebble: {e}"))?;
        let mut pebble = KillOnDrop(Some(pebble));

        let deadline = Instant::now() + START_TIMEOUT;
        for (addr, who) in [
            (api, "Pebble's API"),
            (management, "Pebble's management API"),
            (
                SocketAddr::from(([127, 0, 0, 1], dns_management)),
                "challtestsrv's management API",
            ),
        ] {
            wait_for_port(addr, deadline, who, || {
                let log = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
                [&mut pebble, &mut challtestsrv]
                    .iter_mut()
                    .find_map(|c| c.exited())
                    .map(|status| format!("a Pebble process exited ({status}); pebble.log:\n{log}"))
            })?;
        }
        let tls = api_client(&api_cert.ca_pem)?;
        let (status, body) = https_get(&tls, management, "/roots/0", REQUEST_TIMEOUT)?;
        if !status.contains(" 200") {
            return Err(format!(
                "Pebble's /roots/0 answered {status:?}: {}",
                body.trim()
            ));
        }
        let issuing_root = CertificateDer::from_pem_slice(body.as_bytes())
            .map_err(|e| format!("Pebble's /roots/0 is not a PEM certificate: {e}"))?;
        let (Some(pebble), Some(challtestsrv)) = (pebble.0.take(), challtestsrv.0.take()) else {
            return Err("Pebble's processes vanished".into());
        };
        Ok(Pebble {
            dir: dir.to_owned(),
            api,
            management,
            management_tls: tls,
            http_port,
            tls_port,
            issuing_root,
            pebble,
            challtestsrv,
        })
    }

    /// `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.api)
    }

    /// The CA of Pebble's own HTTPS certificate (PEM): what ACME clients must trust.
    pub fn api_ca_file(&self) -> PathBuf {
        self.dir.join("api-ca.pem")
    }

    /// The root every certificate of this Pebble chains to.
    pub fn issuing_root(&self) -> &CertificateDer<'static> {
        &self.issuing_root
    }

    /// Where Pebble's validator connects for http-01 (on 127.0.0.1).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Whether Pebble's validator connects to `port` (which nobody listens on until a
    /// client does): not a port for anything else.
    pub fn validates_on(&self, port: u16) -> bool {
        port == self.http_port || port == self.tls_port
    }

    /// The end of Pebble's log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        // Both keep nothing worth a graceful stop: Pebble forgets everything anyway.
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Why a scenario did not produce figures.
#[derive(Debug)]
pub enum ScenarioError {
    /// Pebble stopped answering. Pebble 2.4's in-memory store deadlocks now and then under a
    /// hundred concurrent orders, from madmail and from lego alike: a goroutine dump shows a
    /// request holding the store's read lock while it waits for an authorization's lock
    /// that no goroutine holds any more (leaked), and every other request queued behind it,
    /// with Pebble idle. Not the client's doing; the scenario is worth another try with a
    /// fresh Pebble.
    PebbleStuck(String),
    Failed(String),
}

impl From<String> for ScenarioError {
    fn from(error: String) -> ScenarioError {
        ScenarioError::Failed(error)
    }
}

/// Asks Pebble's management API every [`WATCH_INTERVAL`] for something that takes its
/// store's lock (the status of a certificate that does not exist), in a thread of its own
/// so that the measurements never wait for it.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    /// Since when Pebble has not answered (None: it answered the last probe).
    silent_since: Arc<Mutex<Option<Instant>>>,
    thread: Option<JoinHandle<()>>,
}

const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long one probe may take: a hundred lego processes starting at once leave Pebble
/// little CPU, and it can take seconds to answer without being stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Silent this long, Pebble counts as stuck: a deadlock never ends by itself, while a busy
/// Pebble answers within a second or two (probed during a hundred lego processes).
const STUCK_AFTER: Duration = Duration::from_secs(10);

impl Watchdog {
    pub fn start(pebble: &Pebble) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let silent_since = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, silent_since) = (stop.clone(), silent_since.clone());
            let (tls, addr) = (pebble.management_tls.clone(), pebble.management);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let probe = https_get(&tls, addr, "/cert-status-by-serial/00", PROBE_TIMEOUT);
                    let mut silent = silent_since.lock().unwrap_or_else(PoisonError::into_inner);
                    match probe {
                        Ok(_) => *silent = None,
                        Err(_) => {
                            silent.get_or_insert_with(Instant::now);
                        }
                    }
                    drop(silent);
                    std::thread::sleep(WATCH_INTERVAL);
                }
            })
        };
        Watchdog {
            stop,
            silent_since,
            thread: Some(thread),
        }
    }

    /// Why Pebble counts as stuck, if it does.
    pub fn stuck(&self) -> Option<String> {
        let silent = *self
            .silent_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        silent
            .map(|since| since.elapsed())
            .filter(|&silent| silent >= STUCK_AFTER)
            .map(|silent| {
                format!(
                    "Pebble has not answered its management API for {}s (deadlocked)",
                    silent.as_secs()
                )
            })
    }

    /// Fails once Pebble is stuck.
    pub fn check(&self) -> Result<(), ScenarioError> {
        match self.stuck() {
            Some(why) => Err(ScenarioError::PebbleStuck(why)),
            None => Ok(()),
        }
    }

    /// Blames a failure on Pebble when it is stuck.
    pub fn blame(&self, error: String) -> ScenarioError {
        match self.stuck() {
            Some(why) => {
                let first = error.lines().next().unwrap_or_default();
                ScenarioError::PebbleStuck(format!("{why}; the client saw: {first}"))
            }
            None => ScenarioError::Failed(error),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A child that is killed unless handed over (`.0.take()`).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The loopback ports of one Pebble and its challtestsrv, all different: each is held while
/// the next is chosen.
struct Ports {
    api: u16,
    management: u16,
    http: u16,
    tls: u16,
    /// Free on both TCP and UDP (challtestsrv's DNS server listens on both).
    dns: u16,
    dns_management: u16,
}

impl Ports {
    fn choose() -> Result<Ports, String> {
        let error = |e: std::io::Error| format!("no free loopback port: {e}");
        let mut held = Vec::new();
        let mut next = || {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(error)?;
            let port = listener.local_addr().map_err(error)?.port();
            held.push(listener);
            Ok::<u16, String>(port)
        };
        let (api, management, http, tls, dns_management) =
            (next()?, next()?, next()?, next()?, next()?);
        let mut dns = None;
        for _ in 0..50 {
            let port = next()?;
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                dns = Some(port);
                break;
            }
        }
        let dns = dns.ok_or("no loopback port free for both TCP and UDP")?;
        Ok(Ports {
            api,
            management,
            http,
            tls,
            dns,
            dns_management,
        })
    }
}

fn wait_for_port(
    addr: SocketAddr,
    deadline: Instant,
    who: &str,
    mut died: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    loop {
        cleanup::check()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(why) = died() {
            return Err(why);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{who} did not listen on {addr} within {}s",
                START_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The HTTPS certificate of Pebble's API: a CA, and a certificate for 127.0.0.1 (as an IP
/// address, which Go's clients such as lego require) and localhost signed by it.
struct ApiCertificate {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl ApiCertificate {
    fn generate() -> Result<ApiCertificate, String> {
        let error = |e: rcgen::Error| format!("generating Pebble's API certificate: {e}");
        let ca_key = rcgen::KeyPair::generate().map_err(error)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(error)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "madmail benchmark: Pebble API CA",
        );
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).map_err(error)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(error)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(error)?;
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble");
        let cert = params.signed_by(&key, &issuer).map_err(error)?;
        Ok(ApiCertificate {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn api_client(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("Pebble's API CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("Pebble's API CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// One HTTP/1.0 GET over TLS (HTTP/1.0 so that the answer is never chunked); returns the
/// status line and the body.
fn https_get(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(String, String), String> {
    let error = |e: std::io::Error| format!("GET https://{addr}{path}: {e}");
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(error)?;
    tcp.set_read_timeout(Some(timeout)).map_err(error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(error)?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(tls.clone(), name)
        .map_err(|e| format!("GET https://{addr}{path}: {e}"))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(error)?;
    let mut raw = Vec::new();
    // Go's server may close without close_notify: what arrived counts.
    if let Err(e) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(error(e));
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    Ok((status, body.to_owned()))
}

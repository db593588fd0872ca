//! What the loader keeps under `store_path`, in certmagic's layout so that a maddy store is read
//! as it is (and maddy could read ours):
//!
//! ```text
//! store_path/                                         0700
//!   certificates/<ca>/<name>/<name>.crt              chain, end-entity first (PEM)
//!   certificates/<ca>/<name>/<name>.key              private key (PEM), 0600
//!   certificates/<ca>/<name>/<name>.json             metadata (certmagic's "sans" plus ours)
//!   accounts/<ca>/<email or "default">/account.json  ACME account credentials, 0600
//!   locks/<ca>/<name>.lock                           held while a certificate is ordered
//! ```
//!
//! `<ca>` is certmagic's issuer key (the directory URL's host and path,
//! `acme-v02.api.letsencrypt.org-directory`), `<name>` its "safe" form of the certificate's
//! first name (`*.example.org` becomes `wildcard_.example.org`). Every write goes to a
//! temporary file that is synced, renamed over the target and followed by a sync of the
//! directory: a crash leaves either the old or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::schedule::RenewalReason;
use crate::time_fmt;

/// Why the store could not be read or written; messages name the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: still locked by another process after {waited:?}", path.display())]
    LockTimeout { path: PathBuf, waited: Duration },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// certmagic's `KeyBuilder.Safe`: a name made usable as one path component.
pub fn safe_name(s: &str) -> String {
    let s = s.trim().to_lowercase();
    let s = s
        .replace(' ', "_")
        .replace('+', "_plus_")
        .replace('*', "wildcard_")
        .replace(':', "-")
        .replace("..", "");
    s.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '@' | '.' | '-'))
        .collect()
}

/// certmagic's issuer key of a directory URL: host, then the path with `/` as `-`.
pub fn issuer_key(ca: &str) -> String {
    let rest = ca.split_once("://").map_or(ca, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.replace(['/', '\\'], "-");
    let path = path.trim_matches('-');
    let key = if path.is_empty() {
        host.to_owned()
    } else {
        format!("{host}-{path}")
    };
    safe_name(&key)
}

/// The ARI (RFC 9773) window the CA suggested, and the moment picked inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    #[serde(with = "time_fmt::rfc3339")]
    pub start: SystemTime,
    #[serde(with = "time_fmt::rfc3339")]
    pub end: SystemTime,
    /// Uniformly random inside the window, kept so restarts do not pick again.
    #[serde(with = "time_fmt::rfc3339")]
    pub chosen: SystemTime,
    /// When to ask the CA again (its Retry-After).
    #[serde(with = "time_fmt::rfc3339")]
    pub refresh_after: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
}

/// The last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(with = "time_fmt::rfc3339")]
    pub time: SystemTime,
    pub message: String,
    /// Consecutive failures so far.
    pub failures: u32,
    #[serde(with = "time_fmt::rfc3339")]
    pub first_failure: SystemTime,
}

/// `<name>.json`: certmagic's fields (`sans`, `issuer_data`) and madmail's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The names the certificate is for (certmagic's field).
    #[serde(default)]
    pub sans: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_data: Option<IssuerData>,
    /// The issuer's distinguished name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Uppercase hex, as `openssl x509 -serial` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(
        default,
        with = "time_fmt::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<SystemTime>,
    #[serde(
        default,
        with = "time_fmt::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari: Option<AriWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(
        default,
        with = "time_fmt::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_renewal: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal_reason: Option<RenewalReason>,
    /// Notices sent about this certificate (madmail's own field; certmagic ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notices: Option<Notices>,
}

/// Which one-time notices were sent for the certificate with `serial`, so that none repeats
/// after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notices {
    pub serial: String,
    /// `expiring` thresholds sent, in seconds.
    #[serde(default)]
    pub expiring: Vec<u64>,
    /// `revoked_or_replaced` was sent.
    #[serde(default)]
    pub replace_early: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerData {
    /// The directory URL of the CA that issued the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Where the CA serves the certificate (certmagic's `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The files of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub meta: PathBuf,
}

/// A certificate read from the store (chain and key as PEM).
#[derive(Debug, Clone)]
pub struct StoredCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// One `store_path`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// The files of the certificate `name` (its first name) from the CA `ca`.
    pub fn cert_files(&self, ca: &str, name: &str) -> CertFiles {
        let safe = safe_name(name);
        let dir = self
            .root
            .join("certificates")
            .join(issuer_key(ca))
            .join(&safe);
        CertFiles {
            cert: dir.join(format!("{safe}.crt")),
            key: dir.join(format!("{safe}.key")),
            meta: dir.join(format!("{safe}.json")),
        }
    }

    fn account_file(&self, ca: &str, email: Option<&str>) -> PathBuf {
        self.root
            .join("accounts")
            .join(issuer_key(ca))
            .join(safe_name(email.unwrap_or("default")))
            .join("account.json")
    }

    fn lock_file(&self, ca: &str, name: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(issuer_key(ca))
            .join(format!("{}.lock", safe_name(name)))
    }

    /// The stored certificate, or `None` when there is none (missing files are not an error).
    pub fn load_cert(&self, ca: &str, name: &str) -> Result<Option<StoredCert>, StoreError> {
        let files = self.cert_files(ca, name);
        let Some(cert_pem) = read_optional(&files.cert)? else {
            return Ok(None);
        };
        let Some(key_pem) = read_optional(&files.key)? else {
            return Ok(None);
        };
        Ok(Some(StoredCert { cert_pem, key_pem }))
    }

    /// The metadata, or the default when there is none.
    pub fn load_meta(&self, ca: &str, name: &str) -> Result<Meta, StoreError> {
        let path = self.cert_files(ca, name).meta;
        match read_optional(&path)? {
            None => Ok(Meta::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Stores a new certificate: key first, then chain, then metadata. A crash in between
    /// leaves a key that does not match the chain, which loading detects (and a new order
    /// follows); it never leaves a torn file.
    pub fn save_cert(
        &self,
        ca: &str,
        name: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
        meta: &Meta,
    ) -> Result<(), StoreError> {
        let files = self.cert_files(ca, name);
        write_atomic(&files.key, key_pem, 0o600)?;
        write_atomic(&files.cert, cert_pem, 0o644)?;
        self.save_meta(ca, name, meta)
    }

    pub fn save_meta(&self, ca: &str, name: &str, meta: &Meta) -> Result<(), StoreError> {
        let path = self.cert_files(ca, name).meta;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json, 0o644)
    }

    /// The stored account credentials (instant-acme's JSON), if any.
    pub fn load_account(
        &self,
        ca: &str,
        email: Option<&str>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        read_optional(&self.account_file(ca, email))
    }

    pub fn save_account(
        &self,
        ca: &str,
        email: Option<&str>,
        json: &[u8],
    ) -> Result<(), StoreError> {
        write_atomic(&self.account_file(ca, email), json, 0o600)
    }

    pub fn remove_account(&self, ca: &str, email: Option<&str>) -> Result<(), StoreError> {
        let path = self.account_file(ca, email);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Takes the issuance lock of `name`, waiting up to `wait` for another process to release
    /// it. The lock (`flock`) goes with the returned guard, and with the process if it dies.
    pub async fn lock(
        &self,
        ca: &str,
        name: &str,
        wait: Duration,
    ) -> Result<IssueLock, StoreError> {
        let path = self.lock_file(ca, name);
        let file = {
            let path = path.clone();
            blocking(move || {
                if let Some(dir) = path.parent() {
                    create_dirs(dir)?;
                }
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_err(&path))
            })
            .await?
        };
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(IssueLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
            if started.elapsed() >= wait {
                return Err(StoreError::LockTimeout {
                    path,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether some process holds the issuance lock of `name` now.
    pub fn is_locked(&self, ca: &str, name: &str) -> bool {
        let path = self.lock_file(ca, name);
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
    }
}

/// Held while a certificate is being ordered; dropping it releases the lock.
#[derive(Debug)]
pub struct IssueLock {
    _file: File,
}

/// Runs blocking file work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })
    })
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Creates `dir` and its missing parents with mode 0700 (existing ones are left as they are).
fn create_dirs(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Writes `data` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = path.parent().ok_or_else(|| StoreError::Invalid {
        path: path.to_owned(),
        reason: "no parent directory".into(),
    })?;
    create_dirs(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut random = [0u8; 6];
    // Without randomness the pid alone still separates processes.
    let _ = aws_lc_rs::rand::fill(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{file_name}.{}.{suffix}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // The umask may have narrowed the mode; a public certificate should stay readable.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        file.write_all(data).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certmagic_names() {
        assert_eq!(safe_name("*.Example.org"), "wildcard_.example.org");
        assert_eq!(safe_name("a+b c:d/../e"), "a_plus_b_c-de");
        assert_eq!(
            issuer_key("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org-directory"
        );
        assert_eq!(
            issuer_key("https://127.0.0.1:14000/dir"),
            "127.0.0.1-14000-dir"
        );
        assert_eq!(issuer_key("https://ca.test/"), "ca.test");
    }

    #[test]
    fn atomic_writes_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("acme"));
        let meta = Meta {
            sans: vec!["mx.example.org".into()],
            serial: Some("0A".into()),
            ..Meta::default()
        };
        store
            .save_cert(
                "https://ca.test/dir",
                "mx.example.org",
                b"CERT",
                b"KEY",
                &meta,
            )
            .unwrap();
        let files = store.cert_files("https://ca.test/dir", "mx.example.org");
        assert!(
            files
                .cert
                .ends_with("certificates/ca.test-dir/mx.example.org/mx.example.org.crt")
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o644);
        assert_eq!(mode(files.cert.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("acme")), 0o700);
        let stored = store
            .load_cert("https://ca.test/dir", "mx.example.org")
            .unwrap()
            .unwrap();
        assert_eq!(stored.cert_pem, b"CERT");
        assert_eq!(stored.key_pem, b"KEY");
        assert_eq!(
            store
                .load_meta("https://ca.test/dir", "mx.example.org")
                .unwrap(),
            meta
        );
        // Overwriting leaves no temporary files behind.
        store
            .save_cert("https://ca.test/dir", "mx.example.org", b"C2", b"K2", &meta)
            .unwrap();
        let names: Vec<_> = fs::read_dir(files.cert.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(
            store
                .load_cert("https://ca.test/dir", "other")
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        let first = store
            .lock("https://ca.test/dir", "a.test", Duration::ZERO)
            .await
            .unwrap();
        assert!(store.is_locked("https://ca.test/dir", "a.test"));
        let second = store
            .lock("https://ca.test/dir", "a.test", Duration::from_millis(300))
            .await;
        assert!(matches!(second, Err(StoreError::LockTimeout { .. })));
        drop(first);
        assert!(!store.is_locked("https://ca.test/dir", "a.test"));
        store
            .lock("https://ca.test/dir", "a.test", Duration::ZERO)
            .await
            .unwrap();
    }
}

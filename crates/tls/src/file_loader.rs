//! `tls.loader.file`: certificates and keys from PEM files, reloaded when they change.
//!
//! ```text
//! tls file CERT KEY [CERT KEY...]
//! tls.loader.file NAME { certs CERT...; keys KEY...; reload_interval 1m }
//! ```
//!
//! Files are read and checked while building (so `config check` reports a missing or broken
//! file at its place in the configuration). Once started, the loader watches the directories
//! holding the files (the parent directory, so a certbot-style symlink swap or an atomic
//! rename is seen, not only writes to the file) and also checks them every
//! `reload_interval`. A replacement that does not load (unreadable, malformed, key not
//! matching) is logged and the current certificate stays in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use madmail_config::{Arg, Error, Node, Pos};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec,
};
use notify::Watcher;
use tokio::sync::Notify;

use crate::certs::{LoadedCert, parse_pem, read_pair};
use crate::{CertSet, CertificateSource, SniResolver};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "tls.loader.file",
    kind: Kind::Named,
    build,
    summary: "TLS certificate loader: PEM certificate and key files, reloaded on change",
};

const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// After a change is seen, wait this long for related changes before reading: certbot swaps
/// the certificate and key links one after the other.
const SETTLE: Duration = Duration::from_millis(300);

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    let mut certs: Vec<(PathBuf, Pos)> = Vec::new();
    let mut keys: Vec<(PathBuf, Pos)> = Vec::new();
    if !def.args.len().is_multiple_of(2)
        && let Some(last) = def.args.last()
    {
        errors.push(Error::at(
            &last.pos,
            format!(
                "{}: odd number of arguments: certificates and keys go in pairs, CERT KEY [CERT KEY...]",
                SPEC.name
            ),
        ));
    }
    for pair in def.args.chunks_exact(2) {
        for (arg, list) in pair.iter().zip([&mut certs, &mut keys]) {
            match resolve(arg) {
                Ok(p) => list.push((p, arg.pos.clone())),
                Err(e) => errors.push(e),
            }
        }
    }

    let mut block = Block::new(def.node, ctx.globals());
    let block_certs = block.custom("certs", paths).optional();
    let block_keys = block.custom("keys", paths).optional();
    let interval = block
        .duration("reload_interval")
        .default(DEFAULT_RELOAD_INTERVAL);
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let (block_certs, block_keys) = (
        block_certs.unwrap_or_default(),
        block_keys.unwrap_or_default(),
    );
    if block_certs.len() != block_keys.len() {
        errors.push(Error::at(
            &def.node.pos,
            format!(
                "{}: certs and keys differ in length ({} certificates, {} keys)",
                SPEC.name,
                block_certs.len(),
                block_keys.len()
            ),
        ));
    }
    certs.extend(block_certs);
    keys.extend(block_keys);
    if certs.is_empty() && errors.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            format!(
                "{} needs at least one certificate: tls file CERT KEY, or certs and keys directives",
                SPEC.name
            ),
        ));
    }
    errors.into_result(())?;

    let mut errors = Errors::new();
    let mut pairs = Vec::new();
    for ((cert, cert_pos), (key, _)) in certs.into_iter().zip(keys) {
        // The fingerprint is of the very bytes loaded, so a change made meanwhile is seen.
        let loaded = read_pair(&cert, &key).and_then(|(cert_pem, key_pem)| {
            let loaded = parse_pem(&cert_pem, &key_pem, &cert, &key)?;
            Ok((loaded, fingerprint(&cert_pem, &key_pem)))
        });
        match loaded {
            Ok((loaded, fingerprint)) => {
                warn_if_not_current(&cert, &loaded);
                pairs.push(PairState {
                    cert,
                    key,
                    current: loaded,
                    fingerprint,
                    last_failure: None,
                });
            }
            Err(e) => errors.push(Error::at(&cert_pos, format!("{}: {e}", SPEC.name))),
        }
    }
    errors.into_result(())?;

    let resolver = Arc::new(SniResolver::new(cert_set(&pairs)));
    let loader = Arc::new(FileLoader {
        reloader: Arc::new(Reloader {
            resolver,
            pairs: Mutex::new(pairs),
        }),
        interval,
        running: Mutex::new(None),
    });
    Ok(
        Built::new(Capabilities::new().with::<dyn CertificateSource>(loader.clone()))
            .with_lifecycle(loader),
    )
}

/// A path argument; relative paths are taken relative to the configuration file's directory.
fn resolve(arg: &Arg) -> Result<PathBuf, Error> {
    let path = Path::new(&arg.value);
    if arg.value.is_empty() {
        return Err(Error::at(&arg.pos, format!("{}: empty path", SPEC.name)));
    }
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let base = arg.pos.file().parent().unwrap_or(Path::new(""));
    std::path::absolute(base.join(path))
        .map_err(|e| Error::at(&arg.pos, format!("{}: {e}", SPEC.name)))
}

fn paths(n: &Node) -> Result<Vec<(PathBuf, Pos)>, Errors> {
    madmail_module::decode::no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(
            &n.pos,
            format!("{} needs at least one file", n.name),
        ));
    }
    let mut errors = Errors::new();
    let mut out = Vec::new();
    for arg in &n.args {
        match resolve(arg) {
            Ok(p) => out.push((p, arg.pos.clone())),
            Err(e) => errors.push(e),
        }
    }
    errors.into_result(out)
}

fn warn_if_not_current(path: &Path, cert: &LoadedCert) {
    let now = SystemTime::now();
    if cert.not_after < now {
        tracing::warn!(cert = %path.display(), serial = %cert.serial, "certificate has expired");
    } else if cert.not_before > now {
        tracing::warn!(cert = %path.display(), serial = %cert.serial, "certificate is not valid yet");
    }
}

/// SHA-256 of both files: tells whether anything changed since the last load.
fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&(cert.len() as u64).to_be_bytes());
    ctx.update(cert);
    ctx.update(key);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The first pair is the default; each name goes to the first pair that has it.
fn cert_set(pairs: &[PairState]) -> CertSet {
    let mut set = CertSet::new();
    if let Some(first) = pairs.first() {
        set.set_default(first.current.key.clone());
    }
    let mut taken = std::collections::HashSet::new();
    for pair in pairs {
        for name in &pair.current.names {
            if taken.insert(name) {
                set.insert(name, pair.current.key.clone());
            }
        }
    }
    set
}

struct PairState {
    cert: PathBuf,
    key: PathBuf,
    current: LoadedCert,
    /// Of the files `current` came from.
    fingerprint: [u8; 32],
    /// The last failure logged, so that an unchanged broken file is not logged every time.
    last_failure: Option<String>,
}

struct Reloader {
    resolver: Arc<SniResolver>,
    pairs: Mutex<Vec<PairState>>,
}

impl Reloader {
    fn pairs(&self) -> MutexGuard<'_, Vec<PairState>> {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every pair again and swaps in those that changed and load. Returns whether the
    /// served set changed.
    fn reload(&self) -> bool {
        let mut pairs = self.pairs();
        let mut changed = false;
        for pair in pairs.iter_mut() {
            changed |= pair.reload();
        }
        if changed {
            self.resolver.replace(cert_set(&pairs));
        }
        changed
    }
}

impl PairState {
    fn reload(&mut self) -> bool {
        let (cert_pem, key_pem) = match read_pair(&self.cert, &self.key) {
            Ok(files) => files,
            Err(e) => {
                self.failed(e.to_string(), &e);
                return false;
            }
        };
        let fingerprint = fingerprint(&cert_pem, &key_pem);
        if fingerprint == self.fingerprint {
            self.last_failure = None;
            return false;
        }
        let failure_key: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        if self.last_failure.as_deref() == Some(failure_key.as_str()) {
            return false;
        }
        match parse_pem(&cert_pem, &key_pem, &self.cert, &self.key) {
            Ok(loaded) => {
                tracing::info!(
                    cert = %self.cert.display(),
                    names = ?loaded.names,
                    serial = %loaded.serial,
                    "certificate reloaded"
                );
                warn_if_not_current(&self.cert, &loaded);
                self.current = loaded;
                self.fingerprint = fingerprint;
                self.last_failure = None;
                true
            }
            Err(e) => {
                self.failed(failure_key, &e);
                false
            }
        }
    }

    fn failed(&mut self, key: String, error: &crate::CertError) {
        if self.last_failure.as_deref() != Some(key.as_str()) {
            tracing::error!(
                cert = %self.cert.display(),
                key = %self.key.display(),
                error = %error,
                serial = %self.current.serial,
                "certificate files changed but can't be loaded; still serving the previous certificate"
            );
            self.last_failure = Some(key);
        }
    }

    /// Directories whose changes may change what the files contain.
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for path in [&self.cert, &self.key] {
            // The directory of the configured path sees link swaps and renames; the one of
            // the link's target sees in-place rewrites of the real file.
            let target = std::fs::canonicalize(path).ok();
            for p in std::iter::once(path.as_path()).chain(target.as_deref()) {
                if let Some(dir) = p.parent() {
                    dirs.push(dir.to_owned());
                }
            }
        }
        dirs
    }
}

struct FileLoader {
    reloader: Arc<Reloader>,
    interval: Duration,
    running: Mutex<Option<Running>>,
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    /// Dropping it stops watching.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl CertificateSource for FileLoader {
    fn resolver(&self) -> Arc<SniResolver> {
        self.reloader.resolver.clone()
    }
}

#[async_trait]
impl Lifecycle for FileLoader {
    async fn start(&self) -> Result<(), String> {
        let wake = Arc::new(Notify::new());
        let mut dirs: Vec<PathBuf> = self
            .reloader
            .pairs()
            .iter()
            .flat_map(PairState::watched_dirs)
            .collect();
        dirs.sort();
        dirs.dedup();
        let watcher = watch(&dirs, wake.clone());
        let task = tokio::spawn(reload_loop(self.reloader.clone(), wake, self.interval));
        let previous = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Running {
                task,
                _watcher: watcher,
            });
        if let Some(previous) = previous {
            previous.task.abort();
        }
        Ok(())
    }

    async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(running) = running {
            running.task.abort();
        }
    }
}

/// Watches `dirs`; a failure (e.g. the inotify limit) leaves only the periodic check.
fn watch(dirs: &[PathBuf], wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            wake.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "can't watch certificate files; relying on reload_interval");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "can't watch certificate directory; relying on reload_interval"
            );
        }
    }
    Some(watcher)
}

async fn reload_loop(reloader: Arc<Reloader>, wake: Arc<Notify>, interval: Duration) {
    // A zero interval turns the periodic check off.
    let mut ticker = (!interval.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        // The files may have changed between building and starting.
        let r = reloader.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || r.reload()).await {
            tracing::error!(error = %e, "certificate reload failed");
        }
        tokio::select! {
            () = wake.notified() => tokio::time::sleep(SETTLE).await,
            () = tick(ticker.as_mut()) => {}
        }
    }
}

async fn tick(ticker: Option<&mut tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::load_pem_files;
    use crate::generate_self_signed;

    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
    }

    fn write_pair(dir: &Path, name: &str, file: &str) -> (PathBuf, PathBuf, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let serial = crate::load_pem_files(&c, &k).unwrap().serial;
        (c, k, serial)
    }

    fn reloader(cert: &Path, key: &Path) -> Reloader {
        let current = load_pem_files(cert, key).unwrap();
        let (c, k) = read_pair(cert, key).unwrap();
        let pairs = vec![PairState {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            fingerprint: fingerprint(&c, &k),
            last_failure: None,
        }];
        Reloader {
            resolver: Arc::new(SniResolver::new(cert_set(&pairs))),
            pairs: Mutex::new(pairs),
        }
    }

    fn served_serial(r: &Reloader) -> String {
        let key = r.resolver.current().select(None).unwrap();
        crate::certs::inspect(key.end_entity_cert().unwrap())
            .unwrap()
            .serial
    }

    #[test]
    fn periodic_reload_picks_up_changes_and_keeps_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, first) = write_pair(dir.path(), "a.test", "a");
        let r = reloader(&cert, &key);
        assert!(!r.reload(), "nothing changed");

        // A truncated certificate: the old one stays, and the log says why, once.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let logs = logs_of(|| assert!(!r.reload()));
        assert_eq!(served_serial(&r), first);
        assert!(logs.contains("ERROR"), "{logs}");
        assert!(logs.contains(&format!("cert={}", cert.display())), "{logs}");
        assert!(logs.contains("malformed PEM"), "{logs}");
        assert!(
            logs.contains("still serving the previous certificate"),
            "{logs}"
        );
        assert_eq!(logs_of(|| assert!(!r.reload())), "", "logged again");

        // A key that belongs to another certificate: the old one stays.
        let (other_cert, _, _) = write_pair(dir.path(), "a.test", "other");
        std::fs::copy(&other_cert, &cert).unwrap();
        assert!(!r.reload());
        assert_eq!(served_serial(&r), first);

        // A missing file: the old one stays.
        std::fs::remove_file(&key).unwrap();
        assert!(!r.reload());
        assert_eq!(served_serial(&r), first);

        // A good new pair is served.
        let (new_cert, new_key, second) = write_pair(dir.path(), "a.test", "new");
        std::fs::rename(&new_cert, &cert).unwrap();
        std::fs::rename(&new_key, &key).unwrap();
        assert!(r.reload());
        assert_eq!(served_serial(&r), second);
        assert!(r.pairs()[0].last_failure.is_none());
    }

    /// The periodic check alone (no watcher) picks up a change.
    #[tokio::test]
    async fn periodic_check_without_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = write_pair(dir.path(), "a.test", "a");
        let r = Arc::new(reloader(&cert, &key));
        let task = tokio::spawn(reload_loop(
            r.clone(),
            Arc::new(Notify::new()),
            Duration::from_millis(50),
        ));
        let (new_cert, new_key, second) = write_pair(dir.path(), "a.test", "new");
        std::fs::rename(&new_cert, &cert).unwrap();
        std::fs::rename(&new_key, &key).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while served_serial(&r) != second {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }

    #[test]
    fn first_pair_is_default_and_names_index() {
        let a = generate_self_signed(&["a.test".into(), "shared.test".into()]).unwrap();
        let b = generate_self_signed(&["b.test".into(), "shared.test".into()]).unwrap();
        let pair = |c: LoadedCert| PairState {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            current: c,
            fingerprint: [0; 32],
            last_failure: None,
        };
        let set = cert_set(&[pair(a.clone()), pair(b.clone())]);
        assert!(Arc::ptr_eq(&set.select(None).unwrap(), &a.key));
        assert!(Arc::ptr_eq(&set.select(Some("b.test")).unwrap(), &b.key));
        assert!(Arc::ptr_eq(
            &set.select(Some("shared.test")).unwrap(),
            &a.key
        ));
    }
}

//! The `tls.loader.acme` module: certificates per name (a wildcard and its apex share one),
//! served from an [`SniResolver`] every endpoint using the loader reads, renewed in the
//! background.
//!
//! Until a name has a certificate, a self-signed placeholder made at build time is served.
//! `Lifecycle::start` serves what the store holds (no network), binds the challenge
//! listeners and starts one scheduler task per certificate; `stop` cancels them (an
//! abandoned order withdraws its challenge responses).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use madmail_module::metrics::{Collector, Histogram, MetricsWriter};
use madmail_module::{Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec};
use madmail_tls::{CertSet, CertificateSource, LoadedCert, SniResolver};
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, AcmeConfig};
use crate::engine::{Engine, issuer_name};
use crate::events::{Event, EventKind};
use crate::notify::Notifier;
use crate::schedule::{self, retry_delay};
use crate::status::{self, CertFacts, CertStatus};
use crate::storage::{AriWindow, IssuerData, LastError, Meta, Notices, StoreError, blocking};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "tls.loader.acme",
    kind: Kind::Named,
    build,
    summary: "TLS certificate loader: certificates from an ACME CA (Let's Encrypt...), renewed automatically",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let cfg = config::decode(def, ctx)?;
    let loader = AcmeLoader::new(cfg).map_err(|e| Errors::at(&def.node.pos, e))?;
    let loader = Arc::new(loader);
    ctx.globals()
        .metrics
        .register(Arc::new(LoaderMetrics(loader.inner.clone())));
    Ok(Built::new(
        Capabilities::new()
            .with::<dyn CertificateSource>(loader.clone())
            .with::<AcmeLoader>(loader.clone()),
    )
    .with_lifecycle(loader))
}

/// One managed certificate: its names (the first names the files) and what is known of it.
pub(crate) struct Group {
    pub names: Vec<String>,
    state: Mutex<GroupState>,
    /// One attempt at a time in this process (the file lock covers other processes).
    attempt: tokio::sync::Mutex<()>,
    wake: Notify,
}

#[derive(Default)]
struct GroupState {
    current: Option<Current>,
    meta: Meta,
    renewing: bool,
    /// After a failure: not before this time.
    retry_at: Option<SystemTime>,
}

#[derive(Clone)]
struct Current {
    facts: CertFacts,
    key: Arc<CertifiedKey>,
    end_entity: CertificateDer<'static>,
    key_pem: String,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Not due, nothing done (renew without --force).
    NotDue,
    /// A new certificate is served.
    Renewed {
        serial: String,
        not_after: String,
    },
    /// Another process sharing the store had renewed it; that one is served now.
    FromStore {
        serial: String,
    },
    /// A dry run obtained a certificate from `ca` (not stored, not served).
    DryRun {
        ca: String,
        serial: String,
    },
    Failed {
        error: String,
    },
}

struct Inner {
    engine: Arc<Engine>,
    groups: Vec<Arc<Group>>,
    run: Mutex<Option<(CancellationToken, Vec<JoinHandle<()>>)>>,
    clock: Mutex<Arc<dyn Clock>>,
    notifier: Notifier,
    renewals_succeeded: AtomicU64,
    renewals_failed: AtomicU64,
    order_duration: Histogram,
}

/// Order durations in seconds: a Pebble order takes well under a second, a dns-01 order with
/// a slow provider minutes.
const ORDER_DURATION_BUCKETS: [f64; 10] =
    [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The loader's side of `/metrics`.
struct LoaderMetrics(Arc<Inner>);

impl Collector for LoaderMetrics {
    fn collect(&self, out: &mut MetricsWriter) {
        let inner = &self.0;
        let label = inner.engine.cfg.label.as_str();
        let seconds = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        for group in &inner.groups {
            let state = lock(&group.state);
            let name = group.names[0].as_str();
            let labels = [("loader", label), ("name", name)];
            if let Some(current) = &state.current {
                out.gauge(
                    "madmail_tls_cert_not_after_seconds",
                    "When the certificate in use expires (Unix time).",
                    &labels,
                    seconds(current.facts.not_after),
                );
                out.gauge(
                    "madmail_tls_cert_not_before_seconds",
                    "When the certificate in use became valid (Unix time).",
                    &labels,
                    seconds(current.facts.not_before),
                );
            }
            if let Some(error) = &state.meta.last_error {
                out.gauge(
                    "madmail_acme_last_error_timestamp_seconds",
                    "When the last failed attempt for the certificate happened (Unix time); absent after a success.",
                    &labels,
                    seconds(error.time),
                );
            }
        }
        let help = "Certificate orders by result (success: a new certificate is in use).";
        out.counter(
            "madmail_acme_renewals_total",
            help,
            &[("loader", label), ("result", "success")],
            inner.renewals_succeeded.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "madmail_acme_renewals_total",
            help,
            &[("loader", label), ("result", "failure")],
            inner.renewals_failed.load(Ordering::Relaxed) as f64,
        );
        out.histogram(
            "madmail_acme_order_duration_seconds",
            "How long certificate orders took, successful or not.",
            &[("loader", label)],
            &inner.order_duration.snapshot(),
        );
    }
}

/// A `tls.loader.acme` instance. Besides [`CertificateSource`] it is offered as itself, so
/// that `madmail cert` can find the loaders of a configuration (see [`crate::loaders`]).
pub struct AcmeLoader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AcmeLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeLoader")
            .field("label", &self.inner.engine.cfg.label)
            .finish_non_exhaustive()
    }
}

impl madmail_module::Capability for AcmeLoader {
    const DESCRIPTION: &'static str = "an ACME certificate loader";
}

impl CertificateSource for AcmeLoader {
    fn resolver(&self) -> Arc<SniResolver> {
        self.inner.engine.resolver.clone()
    }

    fn alpn_protocols(&self) -> Vec<Vec<u8>> {
        let cfg = &self.inner.engine.cfg;
        if cfg
            .challenges
            .contains(&crate::config::ChallengeKind::TlsAlpn01)
        {
            vec![madmail_tls::ACME_TLS_ALPN.to_vec()]
        } else {
            Vec::new()
        }
    }
}

/// The notices record of the certificate `serial`, started afresh for a new certificate.
fn notices_for<'a>(meta: &'a mut Meta, serial: &str) -> &'a mut Notices {
    if meta.notices.as_ref().is_none_or(|n| n.serial != serial) {
        meta.notices = Some(Notices {
            serial: serial.to_owned(),
            ..Notices::default()
        });
    }
    meta.notices.get_or_insert_with(Notices::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Names grouped into certificates: `*.D` goes with `D` when both are listed.
pub(crate) fn group_names(names: &[String]) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for name in names {
        if groups.iter().any(|g| g.contains(name)) {
            continue;
        }
        let partner = match name.strip_prefix("*.") {
            Some(apex) => apex.to_owned(),
            None => format!("*.{name}"),
        };
        if names.contains(&partner) {
            // The apex names the pair (and its files).
            let (apex, wildcard) = if name.starts_with("*.") {
                (partner, name.clone())
            } else {
                (name.clone(), partner)
            };
            groups.push(vec![apex, wildcard]);
        } else {
            groups.push(vec![name.clone()]);
        }
    }
    groups
}

impl AcmeLoader {
    pub(crate) fn new(cfg: AcmeConfig) -> Result<AcmeLoader, String> {
        let placeholder = madmail_tls::generate_self_signed(&cfg.names)
            .map_err(|e| format!("tls.loader.acme: placeholder certificate: {e}"))?;
        let mut set = CertSet::new();
        set.set_default(placeholder.key.clone());
        for name in &cfg.names {
            set.insert(name, placeholder.key.clone());
        }
        let resolver = Arc::new(SniResolver::new(set));
        let groups = group_names(&cfg.names)
            .into_iter()
            .map(|names| {
                Arc::new(Group {
                    names,
                    state: Mutex::new(GroupState::default()),
                    attempt: tokio::sync::Mutex::new(()),
                    wake: Notify::new(),
                })
            })
            .collect();
        let webhook_client = match &cfg.notify.webhook {
            Some(_) => Some(crate::client::AcmeHttp::new(
                crate::client::AcmeHttp::tls_config(&cfg.trusted_roots)
                    .map_err(|e| format!("tls.loader.acme: notify_webhook: {e}"))?,
            )),
            None => None,
        };
        let notifier = Notifier::new(cfg.notify.clone(), webhook_client);
        let engine = Arc::new(Engine::new(Arc::new(cfg), resolver));
        Ok(AcmeLoader {
            inner: Arc::new(Inner {
                engine,
                groups,
                run: Mutex::new(None),
                clock: Mutex::new(Arc::new(SystemClock)),
                notifier,
                renewals_succeeded: AtomicU64::new(0),
                renewals_failed: AtomicU64::new(0),
                order_duration: Histogram::new(&ORDER_DURATION_BUCKETS),
            }),
        })
    }

    /// Replaces the clock renewals and notices go by (tests move it by days).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *lock(&self.inner.clock) = clock;
    }

    /// Waits until every notice sent so far has been delivered or given up on.
    pub async fn flush_notices(&self) {
        self.inner.notifier.flush().await;
    }

    /// The instance name (`--loader`).
    pub fn label(&self) -> &str {
        &self.inner.engine.cfg.label
    }

    pub fn config(&self) -> &AcmeConfig {
        &self.inner.engine.cfg
    }

    /// Every certificate of this loader and where it stands. In a started loader this is
    /// live state; otherwise (the CLI without a running server) it is read from the store.
    pub async fn status(&self) -> Vec<CertStatus> {
        let inner = self.inner.clone();
        let running = lock(&inner.run).is_some();
        if !running {
            return tokio::task::spawn_blocking(move || inner.offline_status())
                .await
                .unwrap_or_default();
        }
        let now = inner.now();
        inner
            .groups
            .iter()
            .map(|g| inner.group_status(g, now))
            .collect()
    }

    /// Renews the certificates whose names include `name` (all when `None`): with `force`
    /// now, otherwise only those due. Works in a started loader (the new certificate is
    /// served at once) and in a stopped one (the CLI; it is only stored).
    pub async fn renew(&self, name: Option<&str>, force: bool) -> Vec<(Vec<String>, Outcome)> {
        let mut out = Vec::new();
        let running = lock(&self.inner.run).is_some();
        if !running && let Err(e) = self.inner.load_all().await {
            tracing::warn!(error = %e, "reading the certificate store");
        }
        for group in self.inner.select(name) {
            let outcome = self.inner.attempt(&group, force).await;
            out.push((group.names.clone(), outcome));
        }
        if !running {
            self.inner.engine.release_listeners().await;
        }
        out
    }

    /// Orders the certificates whose names include `name` from the test CA (or the CA when
    /// there is none), without storing or serving them.
    pub async fn dry_run(&self, name: Option<&str>) -> Vec<(Vec<String>, Outcome)> {
        let mut out = Vec::new();
        let running = lock(&self.inner.run).is_some();
        for group in self.inner.select(name) {
            out.push((group.names.clone(), self.inner.dry_run(&group).await));
        }
        if !running {
            self.inner.engine.release_listeners().await;
        }
        out
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    pub(crate) fn groups(&self, name: Option<&str>) -> Vec<Arc<Group>> {
        self.inner.select(name)
    }
}

#[async_trait]
impl Lifecycle for AcmeLoader {
    async fn start(&self) -> Result<(), String> {
        let inner = self.inner.clone();
        // Stored certificates first: served before any endpoint accepts a connection.
        if let Err(e) = inner.load_all().await {
            tracing::warn!(loader = %inner.engine.cfg.label, error = %e, "reading the certificate store");
        }
        if let Err(e) = inner.engine.bind_listeners().await {
            // Not fatal: stored certificates keep being served, and every attempt binds
            // again (the error shows in `madmail cert info` and `cert test`).
            tracing::error!(loader = %inner.engine.cfg.label, error = %e, "ACME challenge listener");
        }
        let stop = CancellationToken::new();
        let tasks = inner
            .groups
            .iter()
            .map(|g| tokio::spawn(inner.clone().run_group(g.clone(), stop.clone())))
            .collect();
        *lock(&inner.run) = Some((stop, tasks));
        crate::control::register(
            self.inner
                .engine
                .cfg
                .runtime_dir
                .join(crate::control::SOCKET_NAME),
            self.handle(),
        )
        .await;
        Ok(())
    }

    async fn stop(&self) {
        crate::control::unregister(
            &self
                .inner
                .engine
                .cfg
                .runtime_dir
                .join(crate::control::SOCKET_NAME),
            &self.handle(),
        )
        .await;
        let run = lock(&self.inner.run).take();
        if let Some((stop, tasks)) = run {
            stop.cancel();
            for task in tasks {
                let _ = task.await;
            }
        }
        self.inner.engine.release_listeners().await;
        self.inner.notifier.flush().await;
    }
}

impl AcmeLoader {
    fn handle(&self) -> Arc<AcmeLoader> {
        Arc::new(AcmeLoader {
            inner: self.inner.clone(),
        })
    }

    /// Whether two handles are the same loader.
    pub fn same(&self, other: &AcmeLoader) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Inner {
    fn now(&self) -> SystemTime {
        lock(&self.clock).now()
    }

    fn select(&self, name: Option<&str>) -> Vec<Arc<Group>> {
        let wanted = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        self.groups
            .iter()
            .filter(|g| wanted.as_ref().is_none_or(|w| g.names.contains(w)))
            .cloned()
            .collect()
    }

    fn ca(&self) -> &str {
        self.engine.cfg.issuing_ca()
    }

    /// Reads every stored certificate and serves the valid ones.
    async fn load_all(self: &Arc<Self>) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || {
            for group in &this.groups {
                this.load_group(group)?;
            }
            Ok(())
        })
        .await
    }

    /// Reads the stored certificate of `group`; serves it when it is valid and newer than
    /// what is served. (Blocking file reads.)
    fn load_group(&self, group: &Group) -> Result<bool, StoreError> {
        let ca = self.ca();
        let name = &group.names[0];
        let meta = self.engine.store.load_meta(ca, name)?;
        let stored = self.engine.store.load_cert(ca, name)?;
        {
            let mut state = lock(&group.state);
            if state.current.is_none() || state.meta.serial != meta.serial {
                state.meta = meta.clone();
            }
        }
        let Some(stored) = stored else {
            return Ok(false);
        };
        let files = self.engine.store.cert_files(ca, name);
        let loaded = match madmail_tls::parse_pem(
            &stored.cert_pem,
            &stored.key_pem,
            &files.cert,
            &files.key,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unusable stored certificate; a new one will be ordered");
                return Ok(false);
            }
        };
        if !group.names.iter().all(|n| loaded.names.contains(n)) {
            tracing::info!(names = ?group.names, has = ?loaded.names, "the stored certificate does not cover every name; a new one will be ordered");
            return Ok(false);
        }
        if loaded.not_after <= self.now() {
            tracing::warn!(names = ?group.names, "the stored certificate has expired");
            return Ok(false);
        }
        let same = lock(&group.state)
            .current
            .as_ref()
            .is_some_and(|c| c.facts.serial == loaded.serial);
        if same {
            return Ok(false);
        }
        let key_pem = String::from_utf8_lossy(&stored.key_pem).into_owned();
        let current = current_from(&loaded, key_pem, meta.issuer.clone());
        tracing::info!(names = ?group.names, serial = %loaded.serial, not_after = %crate::time_fmt::format(loaded.not_after), "serving stored certificate");
        self.serve(group, current);
        if let Some(export) = &self.engine.cfg.export {
            match crate::export::export(
                export,
                name,
                &loaded.serial,
                &stored.cert_pem,
                &stored.key_pem,
            ) {
                Ok(true) => tracing::info!(names = ?group.names, "certificate exported"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(names = ?group.names, error = %e, "exporting the certificate failed")
                }
            }
        }
        Ok(true)
    }

    fn serve(&self, group: &Group, current: Current) {
        let hostname = &self.engine.cfg.hostname;
        let key = current.key.clone();
        self.engine.resolver.update(|set| {
            for name in &group.names {
                set.insert(name, key.clone());
            }
            if group.names.contains(hostname) {
                set.set_default(key.clone());
            }
        });
        lock(&group.state).current = Some(current);
    }

    fn group_status(&self, group: &Group, now: SystemTime) -> CertStatus {
        let state = lock(&group.state);
        let facts = state.current.as_ref().map(|c| c.facts.clone());
        let next = status::next_attempt(
            facts.as_ref(),
            &state.meta,
            self.engine.cfg.renew_before,
            state.retry_at,
            now,
        );
        status::describe(
            &self.engine.cfg.label,
            &group.names,
            self.ca(),
            facts.as_ref(),
            &state.meta,
            state.renewing,
            next,
            self.engine.store.cert_files(self.ca(), &group.names[0]),
            now,
        )
    }

    /// Status from the store alone (blocking reads).
    fn offline_status(&self) -> Vec<CertStatus> {
        let now = self.now();
        let ca = self.ca();
        self.groups
            .iter()
            .map(|group| {
                let name = &group.names[0];
                let files = self.engine.store.cert_files(ca, name);
                let meta = self.engine.store.load_meta(ca, name).unwrap_or_default();
                let facts = self
                    .engine
                    .store
                    .load_cert(ca, name)
                    .ok()
                    .flatten()
                    .and_then(|s| {
                        madmail_tls::parse_pem(&s.cert_pem, &s.key_pem, &files.cert, &files.key)
                            .ok()
                    })
                    .filter(|l| group.names.iter().all(|n| l.names.contains(n)))
                    .map(|l| facts_of(&l, meta.issuer.clone()));
                let retry_at = meta.last_error.as_ref().and(meta.next_renewal);
                let next = status::next_attempt(
                    facts.as_ref(),
                    &meta,
                    self.engine.cfg.renew_before,
                    retry_at,
                    now,
                );
                let renewing = self.engine.store.is_locked(ca, name);
                status::describe(
                    &self.engine.cfg.label,
                    &group.names,
                    ca,
                    facts.as_ref(),
                    &meta,
                    renewing,
                    next,
                    files,
                    now,
                )
            })
            .collect()
    }

    /// The scheduler of one certificate.
    async fn run_group(self: Arc<Self>, group: Arc<Group>, stop: CancellationToken) {
        let interval = self.engine.cfg.check_interval;
        loop {
            // Another process sharing the store may have renewed it.
            let this = self.clone();
            let g = group.clone();
            let _ = blocking(move || this.load_group(&g)).await;
            self.refresh_ari(&group, &stop).await;
            let now = self.now();
            let (due, _) = {
                let state = lock(&group.state);
                let facts = state.current.as_ref().map(|c| c.facts.clone());
                status::next_attempt(
                    facts.as_ref(),
                    &state.meta,
                    self.engine.cfg.renew_before,
                    state.retry_at,
                    now,
                )
            };
            if due <= now {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = self.attempt(&group, false) => {}
                }
                continue;
            }
            // Waiting for a retry after failures: the certificate may be running out.
            self.check_expiring(&group).await;
            let mut sleep = due.duration_since(now).unwrap_or_default().min(interval);
            let ari_refresh = lock(&group.state)
                .meta
                .ari
                .as_ref()
                .map(|a| a.refresh_after);
            if let Some(refresh) = ari_refresh {
                sleep = sleep.min(refresh.duration_since(now).unwrap_or_default());
            }
            // Never spin: at least a second between two rounds.
            let sleep = sleep.max(Duration::from_secs(1));
            tokio::select! {
                () = stop.cancelled() => return,
                () = group.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Asks the CA for the renewal window of the served certificate when it is time to
    /// (errors are logged; they do not count as failed renewals).
    async fn refresh_ari(&self, group: &Group, stop: &CancellationToken) {
        let (cert, due) = {
            let state = lock(&group.state);
            let Some(current) = &state.current else {
                return;
            };
            let due = match &state.meta.ari {
                Some(ari)
                    if state.meta.serial.as_deref() == Some(current.facts.serial.as_str()) =>
                {
                    ari.refresh_after <= self.now()
                }
                _ => true,
            };
            (current.end_entity.clone(), due)
        };
        if !due {
            return;
        }
        // No longer than an attempt may take: a CA that is down must not hold up the round.
        let deadline =
            Instant::now() + self.engine.cfg.renewal_timeout.min(Duration::from_secs(60));
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = self.engine.renewal_info(self.ca(), &cert, deadline) => r,
        };
        let info = match result {
            Ok(Some(info)) => info,
            Ok(None) => {
                // No ARI at this CA: remember not to ask before the next check.
                let mut state = lock(&group.state);
                state.meta.ari = None;
                return;
            }
            Err(e) => {
                tracing::debug!(names = ?group.names, error = %e, "renewal information");
                return;
            }
        };
        let meta = {
            let mut state = lock(&group.state);
            let chosen = match &state.meta.ari {
                Some(old) if old.start == info.start && old.end == info.end => old.chosen,
                _ => schedule::pick_in_window(info.start, info.end, schedule::random_u64()),
            };
            let (window_start, window_end) = (info.start, info.end);
            state.meta.ari = Some(AriWindow {
                start: info.start,
                end: info.end,
                chosen,
                refresh_after: info.refresh_after,
                explanation_url: info.explanation_url,
            });
            let facts = state.current.as_ref().map(|c| c.facts.clone());
            let (next, reason) = status::next_attempt(
                facts.as_ref(),
                &state.meta,
                self.engine.cfg.renew_before,
                state.retry_at,
                self.now(),
            );
            state.meta.next_renewal = Some(next);
            state.meta.next_renewal_reason = reason;
            tracing::debug!(names = ?group.names, chosen = %crate::time_fmt::format(chosen), "renewal window from the CA");
            // The CA wants it replaced before it would be renewed anyway: revoked, or a
            // problem at the CA. Told once per certificate.
            let now = self.now();
            let early = facts.as_ref().filter(|f| {
                let (normal, _) = schedule::renewal_time(
                    f.not_before,
                    f.not_after,
                    self.engine.cfg.renew_before,
                    None,
                );
                // The window is open already and closes before the certificate would be
                // renewed anyway: not a scheduling hint but "replace it now".
                window_start <= now && window_end < normal
            });
            let tell = match early {
                Some(f) => {
                    let notices = notices_for(&mut state.meta, &f.serial);
                    !std::mem::replace(&mut notices.replace_early, true)
                }
                None => false,
            };
            (state.meta.clone(), tell)
        };
        let (meta, tell) = meta;
        self.save_meta(group, meta).await;
        if tell {
            self.notifier
                .notify(self.event(group, EventKind::RevokedOrReplaced));
        }
    }

    async fn save_meta(&self, group: &Group, meta: Meta) {
        let store = self.engine.store.clone();
        let (ca, name) = (self.ca().to_owned(), group.names[0].clone());
        if let Err(e) = blocking(move || store.save_meta(&ca, &name, &meta)).await {
            tracing::warn!(error = %e, "saving certificate metadata");
        }
    }

    fn is_due(&self, group: &Group) -> bool {
        let state = lock(&group.state);
        let facts = state.current.as_ref().map(|c| c.facts.clone());
        let (due, _) = status::next_attempt(
            facts.as_ref(),
            &state.meta,
            self.engine.cfg.renew_before,
            None,
            self.now(),
        );
        due <= self.now()
    }

    /// One attempt to renew (or first obtain) `group`'s certificate.
    async fn attempt(&self, group: &Group, force: bool) -> Outcome {
        let _one = group.attempt.lock().await;
        if !force && !self.is_due(group) {
            return Outcome::NotDue;
        }
        lock(&group.state).renewing = true;
        let started = Instant::now();
        let outcome = self.attempt_locked(group, force).await;
        lock(&group.state).renewing = false;
        match &outcome {
            Outcome::Renewed { .. } => {
                self.renewals_succeeded.fetch_add(1, Ordering::Relaxed);
                self.order_duration.observe(started.elapsed().as_secs_f64());
            }
            Outcome::Failed { .. } => {
                self.renewals_failed.fetch_add(1, Ordering::Relaxed);
                self.order_duration.observe(started.elapsed().as_secs_f64());
            }
            _ => {}
        }
        outcome
    }

    async fn attempt_locked(&self, group: &Group, force: bool) -> Outcome {
        let cfg = &self.engine.cfg;
        let ca = self.ca().to_owned();
        let name = group.names[0].clone();
        let started = Instant::now();
        let deadline = started + cfg.renewal_timeout;
        let _file_lock = match self
            .engine
            .store
            .lock(&ca, &name, cfg.renewal_timeout)
            .await
        {
            Ok(l) => l,
            Err(e) => return self.failed(group, e.to_string(), None).await,
        };
        // Whoever held the lock may have renewed it.
        let this_names = group.names.clone();
        let reloaded = {
            let store = self.engine.store.clone();
            let (ca, name) = (ca.clone(), name.clone());
            blocking(move || Ok((store.load_cert(&ca, &name)?, store.load_meta(&ca, &name)?))).await
        };
        if !force && let Ok((Some(stored), _)) = &reloaded {
            let files = self.engine.store.cert_files(&ca, &name);
            let newer =
                madmail_tls::parse_pem(&stored.cert_pem, &stored.key_pem, &files.cert, &files.key)
                    .ok()
                    .filter(|l| this_names.iter().all(|n| l.names.contains(n)));
            let served = lock(&group.state)
                .current
                .as_ref()
                .map(|c| c.facts.serial.clone());
            if let Some(l) = newer
                && served.as_deref() != Some(l.serial.as_str())
            {
                let key_pem = String::from_utf8_lossy(&stored.key_pem).into_owned();
                let issuer = reloaded.as_ref().ok().and_then(|(_, m)| m.issuer.clone());
                let serial = l.serial.clone();
                self.serve(group, current_from(&l, key_pem, issuer));
                if let Ok((_, meta)) = reloaded {
                    lock(&group.state).meta = meta;
                }
                if !self.is_due(group) {
                    tracing::info!(names = ?group.names, serial, "certificate renewed by another process");
                    return Outcome::FromStore { serial };
                }
            }
        }

        let (key_pem, replaces, failures) = {
            let state = lock(&group.state);
            (
                state
                    .current
                    .as_ref()
                    .filter(|_| cfg.reuse_key)
                    .map(|c| c.key_pem.clone()),
                state.current.as_ref().map(|c| c.end_entity.clone()),
                state.meta.last_error.as_ref().map_or(0, |e| e.failures),
            )
        };
        tracing::info!(names = ?group.names, ca, forced = force, "ordering certificate");
        // certmagic's policy: after a failure, rehearse against the test CA first so a
        // persisting problem does not eat into the CA's rate limits.
        if failures > 0
            && let Some(test) = cfg.rehearsal_ca()
        {
            if let Err(e) = self
                .engine
                .obtain(test, &group.names, None, None, deadline)
                .await
            {
                return self
                    .failed(
                        group,
                        format!("rehearsal against the test CA {test}: {e}"),
                        e.retry_at,
                    )
                    .await;
            }
            tracing::info!(names = ?group.names, test_ca = test, "rehearsal succeeded; ordering from the CA");
        }
        let issued = match self
            .engine
            .obtain(
                &ca,
                &group.names,
                key_pem.as_deref(),
                replaces.as_ref(),
                deadline,
            )
            .await
        {
            Ok(i) => i,
            Err(e) => return self.failed(group, e.to_string(), e.retry_at).await,
        };
        let current = current_from(
            &issued.loaded,
            issued.key_pem.clone(),
            Some(issued.issuer.clone()),
        );
        let facts = current.facts.clone();
        let mut meta = Meta {
            sans: group.names.clone(),
            issuer_data: Some(IssuerData {
                ca: Some(ca.clone()),
                url: None,
            }),
            issuer: Some(issued.issuer.clone()),
            serial: Some(facts.serial.clone()),
            not_before: Some(facts.not_before),
            not_after: Some(facts.not_after),
            ..Meta::default()
        };
        let (next, reason) =
            status::next_attempt(Some(&facts), &meta, cfg.renew_before, None, self.now());
        meta.next_renewal = Some(next);
        meta.next_renewal_reason = reason;
        let saved = {
            let store = self.engine.store.clone();
            let (ca, name, meta) = (ca.clone(), name.clone(), meta.clone());
            let (cert_pem, key_pem) = (issued.cert_pem.clone(), issued.key_pem.clone());
            blocking(move || {
                store.save_cert(&ca, &name, cert_pem.as_bytes(), key_pem.as_bytes(), &meta)
            })
            .await
        };
        if let Err(e) = &saved {
            // Served anyway: it is valid, and losing it at the next restart only costs an order.
            tracing::error!(names = ?group.names, error = %e, "storing the new certificate failed");
        }
        let first = lock(&group.state).current.is_none();
        self.serve(group, current);
        {
            let mut state = lock(&group.state);
            state.meta = meta;
            state.retry_at = None;
        }
        self.export(group, &facts.serial, &issued.cert_pem, &issued.key_pem)
            .await;
        let kind = if first {
            EventKind::Obtained
        } else {
            EventKind::Renewed
        };
        self.notifier.notify(self.event(group, kind));
        tracing::info!(
            names = ?group.names,
            serial = %facts.serial,
            not_after = %crate::time_fmt::format(facts.not_after),
            took = ?started.elapsed(),
            "certificate obtained"
        );
        group.wake.notify_one();
        Outcome::Renewed {
            serial: facts.serial,
            not_after: crate::time_fmt::format(facts.not_after),
        }
    }

    /// Records a failed attempt: backoff, last error, metadata.
    async fn failed(&self, group: &Group, error: String, retry_at: Option<SystemTime>) -> Outcome {
        let now = self.now();
        let meta = {
            let mut state = lock(&group.state);
            let (failures, first) = match &state.meta.last_error {
                Some(e) => (e.failures.saturating_add(1), e.first_failure),
                None => (1, now),
            };
            let mut next = now + retry_delay(failures);
            if let Some(at) = retry_at {
                next = next.max(at);
            }
            state.retry_at = Some(next);
            state.meta.last_error = Some(LastError {
                time: now,
                message: error.clone(),
                failures,
                first_failure: first,
            });
            let facts = state.current.as_ref().map(|c| c.facts.clone());
            let (at, reason) = status::next_attempt(
                facts.as_ref(),
                &state.meta,
                self.engine.cfg.renew_before,
                Some(next),
                now,
            );
            state.meta.next_renewal = Some(at);
            state.meta.next_renewal_reason = reason;
            if state.meta.sans.is_empty() {
                state.meta.sans = group.names.clone();
            }
            let long = now.duration_since(first).unwrap_or_default() >= schedule::FAILING_FOR_LONG;
            if long {
                tracing::error!(names = ?group.names, failures, error, retry = %crate::time_fmt::format(at), "obtaining a certificate has failed for more than 30 days");
            } else {
                tracing::warn!(names = ?group.names, failures, error, retry = %crate::time_fmt::format(at), "obtaining a certificate failed; the current certificate stays in use");
            }
            state.meta.clone()
        };
        self.save_meta(group, meta).await;
        let mut event = self.event(group, EventKind::RenewalFailed);
        event.error = Some(error.clone());
        self.notifier.notify(event);
        self.check_expiring(group).await;
        Outcome::Failed { error }
    }

    /// The event `kind` about `group`'s certificate in use, as things stand.
    fn event(&self, group: &Group, kind: EventKind) -> Event {
        let state = lock(&group.state);
        let facts = state.current.as_ref().map(|c| c.facts.clone());
        let (cert_path, key_path) = match &self.engine.cfg.export {
            Some(export) => crate::export::paths(&export.dir, &group.names[0]),
            None => {
                let files = self.engine.store.cert_files(self.ca(), &group.names[0]);
                (files.cert, files.key)
            }
        };
        Event {
            kind,
            loader: self.engine.cfg.label.clone(),
            names: group.names.clone(),
            serial: facts.as_ref().map(|f| f.serial.clone()),
            not_before: facts.as_ref().map(|f| f.not_before),
            not_after: facts.as_ref().map(|f| f.not_after),
            error: None,
            next_retry: state.retry_at,
            threshold: None,
            time: self.now(),
            cert_path,
            key_path,
        }
    }

    /// Sends the `expiring` notice that is due, if one is (see [`crate::events::expiring_due`]),
    /// and records it in the metadata first, so no restart repeats it.
    async fn check_expiring(&self, group: &Group) {
        let now = self.now();
        let due = {
            let mut state = lock(&group.state);
            let Some(facts) = state.current.as_ref().map(|c| c.facts.clone()) else {
                return;
            };
            let (renewal, _) = schedule::renewal_time(
                facts.not_before,
                facts.not_after,
                self.engine.cfg.renew_before,
                state.meta.ari.as_ref().map(|a| a.chosen),
            );
            let notices = notices_for(&mut state.meta, &facts.serial);
            let due = crate::events::expiring_due(
                facts.not_after,
                renewal,
                &self.notifier.config().before,
                &notices.expiring,
                now,
            );
            match due {
                Some((threshold, record)) => {
                    notices.expiring = record;
                    Some((threshold, state.meta.clone()))
                }
                None => None,
            }
        };
        let Some((threshold, meta)) = due else {
            return;
        };
        self.save_meta(group, meta).await;
        let mut event = self.event(group, EventKind::Expiring);
        event.threshold = Some(threshold);
        self.notifier.notify(event);
    }

    /// Writes the certificate to `export_path`, if set (errors are logged: the certificate
    /// is served regardless).
    async fn export(&self, group: &Group, serial: &str, chain_pem: &str, key_pem: &str) {
        let Some(export) = self.engine.cfg.export.clone() else {
            return;
        };
        let name = group.names[0].clone();
        let (serial, chain, key) = (
            serial.to_owned(),
            chain_pem.as_bytes().to_vec(),
            key_pem.as_bytes().to_vec(),
        );
        let result = tokio::task::spawn_blocking(move || {
            crate::export::export(&export, &name, &serial, &chain, &key)
        })
        .await;
        match result {
            Ok(Ok(true)) => tracing::info!(names = ?group.names, "certificate exported"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!(names = ?group.names, error = %e, "exporting the certificate failed")
            }
            Err(e) => {
                tracing::error!(names = ?group.names, error = %e, "exporting the certificate failed")
            }
        }
    }

    async fn dry_run(&self, group: &Group) -> Outcome {
        let cfg = &self.engine.cfg;
        let ca = cfg.test_ca.clone().unwrap_or_else(|| cfg.ca.clone());
        let deadline = Instant::now() + cfg.renewal_timeout;
        match self
            .engine
            .obtain(&ca, &group.names, None, None, deadline)
            .await
        {
            Ok(issued) => Outcome::DryRun {
                ca,
                serial: issued.loaded.serial,
            },
            Err(e) => Outcome::Failed {
                error: e.to_string(),
            },
        }
    }
}

fn facts_of(loaded: &LoadedCert, issuer: Option<String>) -> CertFacts {
    let issuer = issuer
        .filter(|i| !i.is_empty())
        .or_else(|| loaded.key.end_entity_cert().ok().and_then(issuer_name))
        .unwrap_or_default();
    CertFacts {
        serial: loaded.serial.clone(),
        issuer,
        not_before: loaded.not_before,
        not_after: loaded.not_after,
    }
}

fn current_from(loaded: &LoadedCert, key_pem: String, issuer: Option<String>) -> Current {
    let end_entity = loaded
        .key
        .end_entity_cert()
        .map(|c| c.clone().into_owned())
        .unwrap_or_else(|_| CertificateDer::from(Vec::new()));
    Current {
        facts: facts_of(loaded, issuer),
        key: loaded.key.clone(),
        end_entity,
        key_pem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn wildcard_and_apex_share_a_certificate() {
        assert_eq!(
            group_names(&v(&[
                "mx.example.org",
                "*.example.org",
                "example.org",
                "a.test"
            ])),
            vec![
                v(&["mx.example.org"]),
                v(&["example.org", "*.example.org"]),
                v(&["a.test"])
            ]
        );
        assert_eq!(
            group_names(&v(&["*.example.org"])),
            vec![v(&["*.example.org"])]
        );
    }
}

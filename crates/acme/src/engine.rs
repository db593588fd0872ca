//! One ACME conversation per certificate: account, order, authorizations, challenges,
//! finalization, download. Also the CA's directory and renewal information (ARI).
//!
//! Every step goes through [`retry!`](crate::client::retry) (badNonce, Retry-After, transient errors) and the
//! attempt's deadline. Challenge responses are always withdrawn, whether the order succeeds,
//! fails or is abandoned (dropped) half-way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, CertificateIdentifier, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use madmail_dns::{DnsProvider, PropagationOptions, TxtRecord};
use madmail_tls::{LoadedCert, SniResolver};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::{AcmeHttp, StepError, chain, retry};
use crate::config::{AcmeConfig, ChallengeKind, KeyType};
use crate::http01::HttpListener;
use crate::storage::{Store, blocking};
use crate::tls_alpn::{TlsAlpnListener, challenge_certificate};

/// What a CA's directory tells beyond what instant-acme needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    #[serde(default)]
    pub renewal_info: Option<String>,
    #[serde(default)]
    pub meta: DirectoryMeta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMeta {
    #[serde(default)]
    pub terms_of_service: Option<String>,
    #[serde(default)]
    pub caa_identities: Vec<String>,
    #[serde(default)]
    pub external_account_required: bool,
}

/// The CA's suggested renewal window (RFC 9773) with its Retry-After.
#[derive(Debug, Clone)]
pub struct RenewalInfo {
    pub start: SystemTime,
    pub end: SystemTime,
    pub refresh_after: SystemTime,
    pub explanation_url: Option<String>,
}

/// A certificate just issued.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub loaded: LoadedCert,
    pub issuer: String,
}

/// What one loader needs to talk to its CAs and answer challenges.
pub struct Engine {
    pub cfg: Arc<AcmeConfig>,
    pub store: Store,
    pub resolver: Arc<SniResolver>,
    tls: OnceLock<Result<rustls::ClientConfig, String>>,
    accounts: tokio::sync::Mutex<HashMap<String, Account>>,
    directories: Mutex<HashMap<String, Directory>>,
    http_listener: tokio::sync::Mutex<Option<Arc<HttpListener>>>,
    alpn_listener: tokio::sync::Mutex<Option<Arc<TlsAlpnListener>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn step(step: &str, message: impl Into<String>) -> StepError {
    StepError {
        step: step.to_owned(),
        message: message.into(),
        problem: None,
        retry_at: None,
    }
}

impl Engine {
    pub fn new(cfg: Arc<AcmeConfig>, resolver: Arc<SniResolver>) -> Engine {
        Engine {
            store: Store::new(cfg.store_path.clone()),
            cfg,
            resolver,
            tls: OnceLock::new(),
            accounts: tokio::sync::Mutex::new(HashMap::new()),
            directories: Mutex::new(HashMap::new()),
            http_listener: tokio::sync::Mutex::new(None),
            alpn_listener: tokio::sync::Mutex::new(None),
        }
    }

    fn http(&self) -> Result<AcmeHttp, StepError> {
        let tls = self
            .tls
            .get_or_init(|| AcmeHttp::tls_config(&self.cfg.trusted_roots))
            .clone()
            .map_err(|e| step("HTTPS client", e))?;
        Ok(AcmeHttp::new(tls))
    }

    /// Binds the challenge listeners the configuration asks for (idempotent).
    pub async fn bind_listeners(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.cfg.challenges.contains(&ChallengeKind::Http01) {
            let mut slot = self.http_listener.lock().await;
            if slot.is_none() {
                match HttpListener::acquire(&self.cfg.http_listen).await {
                    Ok(l) => *slot = Some(l),
                    Err(e) => problems.push(format!(
                        "http-01: can't listen on {}: {e}",
                        self.cfg.http_listen
                    )),
                }
            }
        }
        if let (true, Some(addr)) = (
            self.cfg.challenges.contains(&ChallengeKind::TlsAlpn01),
            &self.cfg.tls_alpn_listen,
        ) {
            let mut slot = self.alpn_listener.lock().await;
            if slot.is_none() {
                match TlsAlpnListener::acquire(addr, &self.resolver).await {
                    Ok(l) => *slot = Some(l),
                    Err(e) => {
                        problems.push(format!("tls-alpn-01: can't listen on {addr}: {e}"));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Lets the listeners go (the last holder of an address closes it).
    pub async fn release_listeners(&self) {
        self.http_listener.lock().await.take();
        self.alpn_listener.lock().await.take();
    }

    /// The CA's directory (fetched once per engine).
    pub async fn directory(&self, ca: &str, deadline: Instant) -> Result<Directory, StepError> {
        if let Some(d) = lock(&self.directories).get(ca) {
            return Ok(d.clone());
        }
        let http = self.http()?;
        let ((status, _, body), _) = retry!(
            "directory",
            deadline,
            http.get(ca)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))
        )?;
        if !status.is_success() {
            return Err(step(
                "directory",
                format!("{ca} answered HTTP {status}; is ca the URL of an ACME directory?"),
            ));
        }
        let directory: Directory = serde_json::from_slice(&body).map_err(|e| {
            step(
                "directory",
                format!("{ca} is not an ACME directory (its JSON: {e})"),
            )
        })?;
        lock(&self.directories).insert(ca.to_owned(), directory.clone());
        Ok(directory)
    }

    /// The account at `ca`: cached, else from the store, else registered now.
    pub async fn account(&self, ca: &str, deadline: Instant) -> Result<Account, StepError> {
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(ca) {
            return Ok(a.clone());
        }
        let email = self.cfg.email.clone();
        let store = self.store.clone();
        let stored = {
            let (ca, email) = (ca.to_owned(), email.clone());
            blocking(move || store.load_account(&ca, email.as_deref()))
                .await
                .map_err(|e| step("account", e.to_string()))?
        };
        let account = match stored {
            Some(json) if serde_json::from_slice::<AccountCredentials>(&json).is_ok() => {
                retry!("account", deadline, {
                    let credentials: AccountCredentials = serde_json::from_slice(&json)?;
                    Account::builder_with_http(Box::new(self.http().map_err(other)?))
                        .from_credentials(credentials)
                        .await
                })?
                .0
            }
            stored => {
                if stored.is_some() {
                    tracing::warn!(
                        ca,
                        "stored ACME account credentials are unreadable; registering a new account"
                    );
                }
                self.register(ca, deadline).await?
            }
        };
        accounts.insert(ca.to_owned(), account.clone());
        Ok(account)
    }

    async fn register(&self, ca: &str, deadline: Instant) -> Result<Account, StepError> {
        let contact: Vec<String> = self
            .cfg
            .email
            .iter()
            .map(|e| format!("mailto:{e}"))
            .collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        // External account binding belongs to the CA that handed it out.
        let eab = self
            .cfg
            .eab
            .as_ref()
            .filter(|_| ca == self.cfg.ca)
            .map(|e| ExternalAccountKey::new(e.key_id.clone(), &e.hmac_key));
        let ((account, credentials), _) = retry!("register account", deadline, {
            Account::builder_with_http(Box::new(self.http().map_err(other)?))
                .create(&new, ca.to_owned(), eab.as_ref())
                .await
        })?;
        let json = serde_json::to_vec_pretty(&credentials)
            .map_err(|e| step("register account", e.to_string()))?;
        let store = self.store.clone();
        let (ca_owned, email) = (ca.to_owned(), self.cfg.email.clone());
        blocking(move || store.save_account(&ca_owned, email.as_deref(), &json))
            .await
            .map_err(|e| step("register account", e.to_string()))?;
        tracing::info!(ca, account = account.id(), "registered ACME account");
        Ok(account)
    }

    /// Forgets the account at `ca` (the CA no longer knows it).
    async fn forget_account(&self, ca: &str) {
        self.accounts.lock().await.remove(ca);
        let store = self.store.clone();
        let (ca, email) = (ca.to_owned(), self.cfg.email.clone());
        if let Err(e) = blocking(move || store.remove_account(&ca, email.as_deref())).await {
            tracing::warn!(error = %e, "removing stale ACME account credentials");
        }
    }

    /// The CA's renewal window for `cert` (None when the CA offers no ARI or the
    /// certificate can't be identified).
    pub async fn renewal_info(
        &self,
        ca: &str,
        cert: &CertificateDer<'_>,
        deadline: Instant,
    ) -> Result<Option<RenewalInfo>, StepError> {
        let directory = self.directory(ca, deadline).await?;
        let Some(base) = directory.renewal_info else {
            return Ok(None);
        };
        let Ok(id) = CertificateIdentifier::try_from(cert) else {
            return Ok(None);
        };
        let url = format!("{}/{id}", base.trim_end_matches('/'));
        let http = self.http()?;
        let ((status, headers, body), _) = retry!(
            "renewal info",
            deadline,
            http.get(&url)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))
        )?;
        if !status.is_success() {
            return Err(step(
                "renewal info",
                format!("{url} answered HTTP {status}"),
            ));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            suggested_window: Window,
            #[serde(rename = "explanationURL", default)]
            explanation_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct Window {
            start: String,
            end: String,
        }
        let info: Info = serde_json::from_slice(&body)
            .map_err(|e| step("renewal info", format!("{url}: {e}")))?;
        let start = crate::time_fmt::parse(&info.suggested_window.start)
            .map_err(|e| step("renewal info", e))?;
        let end = crate::time_fmt::parse(&info.suggested_window.end)
            .map_err(|e| step("renewal info", e))?;
        // RFC 9773 §4.3: poll again when Retry-After says, within reason.
        let now = SystemTime::now();
        let refresh_after = crate::client::retry_after(&headers)
            .unwrap_or(now + Duration::from_secs(6 * 3600))
            .clamp(
                now + Duration::from_secs(60),
                now + Duration::from_secs(24 * 3600),
            );
        Ok(Some(RenewalInfo {
            start,
            end,
            refresh_after,
            explanation_url: info.explanation_url,
        }))
    }

    /// Orders a certificate for `names` from `ca`. `key_pem` is the key to keep (reuse_key);
    /// `replaces` the certificate being replaced (sent when the CA offers ARI). Gives up at
    /// `deadline`, also in the middle of a request (the steps only look at it between
    /// requests, and a CA that accepts connections but never answers holds one for the HTTP
    /// client's whole timeout); what was presented is withdrawn then.
    pub async fn obtain(
        &self,
        ca: &str,
        names: &[String],
        key_pem: Option<&str>,
        replaces: Option<&CertificateDer<'_>>,
        deadline: Instant,
    ) -> Result<Issued, StepError> {
        tokio::time::timeout_at(deadline, self.order(ca, names, key_pem, replaces, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(step(
                    "order",
                    "the attempt took longer than renewal_timeout (the CA did not answer in time)",
                ))
            })
    }

    async fn order(
        &self,
        ca: &str,
        names: &[String],
        key_pem: Option<&str>,
        replaces: Option<&CertificateDer<'_>>,
        deadline: Instant,
    ) -> Result<Issued, StepError> {
        let directory = self.directory(ca, deadline).await?;
        let replaces = replaces
            .filter(|_| directory.renewal_info.is_some())
            .and_then(|c| CertificateIdentifier::try_from(c).ok())
            .map(CertificateIdentifier::into_owned);
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut account = self.account(ca, deadline).await?;
        let mut replaces_sent = replaces.clone();
        let mut reregistered = false;
        let mut order = loop {
            let mut request = NewOrder::new(&identifiers);
            if let Some(r) = &replaces_sent {
                request = request.replaces(r.clone());
            }
            match retry!("new order", deadline, account.new_order(&request).await) {
                Ok((order, _)) => break order,
                Err(e) if e.is_problem("accountDoesNotExist") && !reregistered => {
                    tracing::warn!(
                        ca,
                        "the CA does not know our account any more; registering again"
                    );
                    self.forget_account(ca).await;
                    account = self.account(ca, deadline).await?;
                    reregistered = true;
                }
                Err(e)
                    if replaces_sent.is_some()
                        && (e.is_problem("alreadyReplaced")
                            || e.is_problem("conflict")
                            || e.is_problem("malformed")) =>
                {
                    tracing::debug!(error = %e, "order with replaces refused; ordering without");
                    replaces_sent = None;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::debug!(ca, names = ?names, order = order.url(), "order created");

        // Every authorization's state (fetching those not yet known; retries resume).
        retry!("authorizations", deadline, {
            let mut stream = order.authorizations();
            while let Some(result) = stream.next().await {
                result?;
            }
            Ok::<(), instant_acme::Error>(())
        })?;

        let mut presented = Presented::new(self);
        let validated = self.validate(&mut order, &mut presented, deadline).await;
        presented.cleanup().await;
        validated?;

        let key = match key_pem.map(rcgen::KeyPair::from_pem) {
            Some(Ok(key)) if key_fits(&key, self.cfg.key_type) => key,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the stored key is unusable; generating a new one");
                generate_key(self.cfg.key_type).map_err(|e| step("key", e.to_string()))?
            }
            _ => generate_key(self.cfg.key_type).map_err(|e| step("key", e.to_string()))?,
        };
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| step("CSR", e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| step("CSR", e.to_string()))?;
        retry!("finalize", deadline, {
            // A retried finalize after a lost answer finds the order already processing.
            if matches!(
                order.state().status,
                OrderStatus::Processing | OrderStatus::Valid
            ) {
                Ok(())
            } else {
                order.finalize_csr(csr.der()).await
            }
        })?;
        // Poll soon, then back off (doubling up to 5 s; a CA's Retry-After wins): a fixed
        // quarter second here was most of the time to a first certificate.
        let mut delay = Duration::from_millis(20);
        let cert_pem = loop {
            let (cert, hint) = retry!("certificate", deadline, order.certificate().await)?;
            if let Some(pem) = cert {
                break pem;
            }
            delay = wait(hint, delay, deadline, "certificate").await?;
        };
        let key_pem = key.serialize_pem();
        let loaded = madmail_tls::parse_pem(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            "issued certificate".as_ref(),
            "its key".as_ref(),
        )
        .map_err(|e| step("certificate", e.to_string()))?;
        for name in names {
            if !loaded.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(step(
                    "certificate",
                    format!("the CA issued a certificate without {name}"),
                ));
            }
        }
        let issuer = loaded
            .key
            .end_entity_cert()
            .ok()
            .and_then(issuer_name)
            .unwrap_or_default();
        Ok(Issued {
            cert_pem,
            key_pem,
            loaded,
            issuer,
        })
    }

    /// Answers the pending authorizations of `order` and waits until it is ready.
    async fn validate(
        &self,
        order: &mut instant_acme::Order,
        presented: &mut Presented,
        deadline: Instant,
    ) -> Result<(), StepError> {
        struct Todo {
            name: String,
            base: String,
            kind: ChallengeKind,
            token: String,
            key_authorization: String,
            digest: Vec<u8>,
            dns_value: String,
        }
        let mut todo = Vec::new();
        {
            let mut stream = order.authorizations();
            while let Some(result) = stream.next().await {
                let mut authz =
                    result.map_err(|e| crate::client::step_error("authorizations", &e, None))?;
                let identifier = authz.identifier();
                let name = identifier.to_string();
                let wildcard = identifier.wildcard;
                let base = match identifier.identifier {
                    Identifier::Dns(d) => d.clone(),
                    other => {
                        return Err(step(
                            "authorizations",
                            format!("unexpected identifier {other:?}"),
                        ));
                    }
                };
                match authz.status {
                    instant_acme::AuthorizationStatus::Valid => {
                        tracing::debug!(name, "authorization already valid");
                        continue;
                    }
                    instant_acme::AuthorizationStatus::Pending => {}
                    other => {
                        return Err(step(
                            "authorizations",
                            format!("the authorization for {name} is {other:?}"),
                        ));
                    }
                }
                let offered: Vec<_> = authz.challenges.iter().map(|c| c.r#type.clone()).collect();
                let Some(kind) = self.cfg.challenges.iter().copied().find(|k| {
                    (!wildcard || *k == ChallengeKind::Dns01) && offered.contains(&k.acme())
                }) else {
                    return Err(step(
                        "authorizations",
                        format!(
                            "the CA offers none of the configured challenges for {name} (it offers {offered:?})"
                        ),
                    ));
                };
                let Some(challenge) = authz.challenge(kind.acme()) else {
                    continue;
                };
                let key_authorization = challenge.key_authorization();
                todo.push(Todo {
                    name,
                    base,
                    kind,
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_owned(),
                    digest: key_authorization.digest().as_ref().to_vec(),
                    dns_value: key_authorization.dns_value(),
                });
            }
        }

        // Present every response, then wait for DNS once for all of them.
        let mut dns_checks = Vec::new();
        for t in &todo {
            match t.kind {
                ChallengeKind::Http01 => {
                    self.bind_listeners()
                        .await
                        .map_err(|e| step("http-01", e))?;
                    let listener = self
                        .http_listener
                        .lock()
                        .await
                        .clone()
                        .ok_or_else(|| step("http-01", "no listener (http_listen)"))?;
                    listener.insert(&t.token, &t.key_authorization);
                    presented.http.push((listener, t.token.clone()));
                }
                ChallengeKind::TlsAlpn01 => {
                    if self.cfg.tls_alpn_listen.is_some() {
                        self.bind_listeners()
                            .await
                            .map_err(|e| step("tls-alpn-01", e))?;
                    }
                    let key = challenge_certificate(&t.base, &t.digest)
                        .map_err(|e| step("tls-alpn-01", e))?;
                    self.resolver.set_challenge(&t.base, key);
                    presented.alpn.push(t.base.clone());
                }
                ChallengeKind::Dns01 => {
                    let provider = self
                        .cfg
                        .dns
                        .clone()
                        .ok_or_else(|| step("dns-01", "no DNS provider configured"))?;
                    let checked = format!("_acme-challenge.{}.", t.base);
                    let fqdn = match &self.cfg.override_domain {
                        Some(d) => format!("{d}."),
                        None => checked.clone(),
                    };
                    let zone = provider
                        .zone_for(&fqdn)
                        .await
                        .map_err(|e| step("dns-01", e.to_string()))?;
                    let record = TxtRecord {
                        fqdn: fqdn.clone(),
                        value: t.dns_value.clone(),
                        ttl: Duration::from_secs(60),
                    };
                    provider
                        .append(&zone, &record)
                        .await
                        .map_err(|e| step("dns-01", e.to_string()))?;
                    tracing::debug!(name = %fqdn, zone, "TXT record presented");
                    presented.dns.push((provider, zone, record));
                    dns_checks.push((checked, t.dns_value.clone()));
                }
            }
        }
        if !dns_checks.is_empty() {
            let options = PropagationOptions {
                timeout: self.cfg.propagation_timeout,
                delay: self.cfg.propagation_delay,
                resolvers: self.cfg.resolvers.clone(),
                ..PropagationOptions::default()
            };
            let checks = dns_checks
                .iter()
                .map(|(name, value)| madmail_dns::wait_until_visible(name, value, &options));
            let remaining = deadline.saturating_duration_since(Instant::now());
            let results = tokio::time::timeout(remaining, futures_util::future::join_all(checks))
                .await
                .map_err(|_| step("dns-01", "the attempt ran out of time waiting for DNS"))?;
            for result in results {
                result.map_err(|e| step("dns-01 propagation", e.to_string()))?;
            }
        }

        for t in &todo {
            retry!("challenge", deadline, {
                let mut stream = order.authorizations();
                let mut result = Err(instant_acme::Error::Str("authorization vanished"));
                while let Some(next) = stream.next().await {
                    let mut authz = next?;
                    if authz.identifier().to_string() != t.name {
                        continue;
                    }
                    result = match authz.challenge(t.kind.acme()) {
                        Some(mut challenge) => challenge.set_ready().await,
                        None => Err(instant_acme::Error::Str("challenge vanished")),
                    };
                    break;
                }
                result
            })?;
            tracing::debug!(
                name = t.name,
                challenge = t.kind.as_str(),
                "challenge ready"
            );
        }

        // As for the certificate below: poll soon, then back off.
        let mut delay = Duration::from_millis(20);
        loop {
            let ((status, error), hint) = retry!(
                "order status",
                deadline,
                order.refresh().await.map(|s| (s.status, s.error.clone()))
            )?;
            match status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => return Ok(()),
                OrderStatus::Invalid => {
                    let mut why: Vec<String> =
                        error.iter().map(crate::client::problem_text).collect();
                    why.extend(self.challenge_errors(order, deadline).await);
                    if why.is_empty() {
                        why.push("no reason given".into());
                    }
                    return Err(step(
                        "validation",
                        format!("the order is invalid: {}", why.join("; ")),
                    ));
                }
                OrderStatus::Pending => {
                    delay = wait(hint, delay, deadline, "validation").await?;
                }
            }
        }
    }

    /// The errors the CA recorded on challenges, for a failed validation.
    async fn challenge_errors(
        &self,
        order: &mut instant_acme::Order,
        deadline: Instant,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = order.authorizations();
        while let Some(Ok(mut authz)) = stream.next().await {
            if Instant::now() >= deadline {
                break;
            }
            let name = authz.identifier().to_string();
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(e) = &c.error {
                        out.push(format!("{name}: {}", crate::client::problem_text(e)));
                    }
                }
            }
        }
        out
    }
}

fn other(e: StepError) -> instant_acme::Error {
    instant_acme::Error::Other(e.message.into())
}

fn fresh_presented() -> Presented {
    Presented {
        resolver: None,
        http: Vec::new(),
        alpn: Vec::new(),
        dns: Vec::new(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sleeps before polling again: as long as the CA asked (Retry-After) or the growing
/// `delay`; fails when that would pass the deadline. Returns the next delay.
async fn wait(
    hint: Option<SystemTime>,
    delay: Duration,
    deadline: Instant,
    what: &str,
) -> Result<Duration, StepError> {
    let pause = hint
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .unwrap_or(delay);
    if Instant::now() + pause >= deadline {
        return Err(StepError {
            step: what.to_owned(),
            message: "the attempt ran out of time waiting for the CA".into(),
            problem: None,
            retry_at: hint,
        });
    }
    tokio::time::sleep(pause).await;
    Ok((delay * 2).min(Duration::from_secs(5)))
}

fn generate_key(kind: KeyType) -> Result<rcgen::KeyPair, rcgen::Error> {
    match kind {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    }
}

/// Whether a stored key is of the configured type (after a change of `key_type` it is not,
/// and `reuse_key` yields to the new type).
fn key_fits(key: &rcgen::KeyPair, kind: KeyType) -> bool {
    let alg = key.algorithm();
    match kind {
        KeyType::EcdsaP256 => alg == &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => alg == &rcgen::PKCS_ECDSA_P384_SHA384,
        // An RSA SubjectPublicKeyInfo is about 294 bytes for 2048 bits, 550 for 4096.
        KeyType::Rsa2048 => {
            alg == &rcgen::PKCS_RSA_SHA256 && rcgen::PublicKeyData::der_bytes(key).len() < 400
        }
        KeyType::Rsa4096 => {
            alg == &rcgen::PKCS_RSA_SHA256 && rcgen::PublicKeyData::der_bytes(key).len() >= 400
        }
    }
}

/// The issuer's distinguished name, as OpenSSL-like text.
pub fn issuer_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.issuer().to_string())
}

/// Challenge responses being presented; withdrawn by [`Presented::cleanup`], or when dropped
/// (an attempt abandoned by a stop or a timeout) in the background.
struct Presented {
    resolver: Option<Arc<SniResolver>>,
    http: Vec<(Arc<HttpListener>, String)>,
    alpn: Vec<String>,
    dns: Vec<(Arc<dyn DnsProvider>, String, TxtRecord)>,
}

impl Presented {
    fn new(engine: &Engine) -> Presented {
        let mut p = fresh_presented();
        p.resolver = Some(engine.resolver.clone());
        p
    }

    fn withdraw_local(&mut self) {
        for (listener, token) in self.http.drain(..) {
            listener.remove(&token);
        }
        if let Some(resolver) = &self.resolver {
            for name in self.alpn.drain(..) {
                resolver.clear_challenge(&name);
            }
        }
    }

    async fn cleanup(&mut self) {
        self.withdraw_local();
        for (provider, zone, record) in self.dns.drain(..) {
            delete_record(provider, zone, record).await;
        }
    }
}

impl Drop for Presented {
    fn drop(&mut self) {
        self.withdraw_local();
        if self.dns.is_empty() {
            return;
        }
        let records: Vec<_> = self.dns.drain(..).collect();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (provider, zone, record) in records {
                    delete_record(provider, zone, record).await;
                }
            });
        } else {
            for (_, _, record) in records {
                tracing::warn!(name = %record.fqdn, "could not remove the dns-01 TXT record (no runtime)");
            }
        }
    }
}

async fn delete_record(provider: Arc<dyn DnsProvider>, zone: String, record: TxtRecord) {
    match tokio::time::timeout(Duration::from_secs(60), provider.delete(&zone, &record)).await {
        Ok(Ok(())) => tracing::debug!(name = %record.fqdn, "TXT record removed"),
        Ok(Err(e)) => {
            tracing::warn!(name = %record.fqdn, error = %chain(&e), "removing the dns-01 TXT record failed; remove it by hand")
        }
        Err(_) => {
            tracing::warn!(name = %record.fqdn, "removing the dns-01 TXT record timed out; remove it by hand")
        }
    }
}

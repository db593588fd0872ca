//! Talking to the CA: the HTTPS client instant-acme sends its requests through, and the retry
//! layer around every protocol step.
//!
//! The client trusts the system's roots plus `trusted_roots` (instant-acme's own
//! `builder_with_root` would replace the system's roots), speaks rustls on aws-lc-rs, and
//! remembers the `Retry-After` of the responses a step received. instant-acme retries a
//! `badNonce` only three times and never waits for `Retry-After`; [`retry!`] does both.

use std::cell::Cell;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

/// One HTTP exchange with the CA may take this long (connect, TLS, response).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `badNonce` answers retried per step, on top of instant-acme's own three.
const NONCE_RETRIES: u32 = 30;
/// Network errors and 5xx answers retried per step (with 1s, 2s, 4s... pauses).
const TRANSIENT_RETRIES: u32 = 4;

tokio::task_local! {
    /// The latest `Retry-After` a response gave during the current step.
    static RETRY_AFTER: Cell<Option<SystemTime>>;
}

/// Why a protocol step failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {message}")]
pub struct StepError {
    pub step: String,
    pub message: String,
    /// The ACME problem type (`urn:ietf:params:acme:error:...`), if the CA sent one.
    pub problem: Option<String>,
    /// Not before this time, says the CA (`Retry-After`).
    pub retry_at: Option<SystemTime>,
}

impl StepError {
    pub fn is_problem(&self, short: &str) -> bool {
        self.problem
            .as_deref()
            .is_some_and(|p| p.strip_prefix("urn:ietf:params:acme:error:") == Some(short))
    }
}

/// The HTTPS client for one CA.
#[derive(Clone)]
pub struct AcmeHttp {
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl AcmeHttp {
    /// The TLS configuration: the system's roots and `extra_roots`.
    pub fn tls_config(
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<rustls::ClientConfig, String> {
        let mut roots = system_roots();
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| format!("trusted_roots: unusable certificate: {e}"))?;
        }
        Ok(
            rustls::ClientConfig::builder_with_provider(madmail_tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    pub fn new(tls: rustls::ClientConfig) -> AcmeHttp {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            // Plain http is refused by the configuration except for loopback test CAs.
            .https_or_http()
            .enable_http1()
            .build();
        AcmeHttp {
            client: HyperClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// A plain GET (the directory, ARI), outside instant-acme.
    pub async fn get(
        &self,
        url: &str,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
        let request = Request::get(url)
            .header(http::header::USER_AGENT, user_agent())
            .body(BodyWrapper::default())
            .map_err(|e| format!("{url}: {e}"))?;
        let mut response = self
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        let body = response
            .body
            .into_bytes()
            .await
            .map_err(|e| format!("{url}: {}", chain(e.as_ref())))?;
        Ok((response.parts.status, response.parts.headers, body))
    }
}

impl AcmeHttp {
    /// A JSON POST outside ACME (the `notify_webhook`): the reply's status.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        signature: Option<&str>,
    ) -> Result<http::StatusCode, String> {
        let mut request = Request::post(url)
            .header(http::header::USER_AGENT, user_agent())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(signature) = signature {
            request = request.header("x-madmail-signature", signature);
        }
        let request = request
            .body(BodyWrapper::from(body))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = self
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        Ok(response.parts.status)
    }
}

fn user_agent() -> String {
    format!("madmail/{}", env!("CARGO_PKG_VERSION"))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().to_string();
        let future = self.client.request(req);
        Box::pin(async move {
            let response = match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return Err(instant_acme::Error::Other(
                        format!("{uri}: {}", chain(&e)).into(),
                    ));
                }
                Err(_) => {
                    return Err(instant_acme::Error::Other(
                        format!("{uri}: no answer within {REQUEST_TIMEOUT:?}").into(),
                    ));
                }
            };
            if let Some(at) = retry_after(response.headers()) {
                // Outside a step (no scope) there is nobody to tell.
                let _ = RETRY_AFTER.try_with(|slot| slot.set(Some(at)));
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// `Retry-After`: seconds or an HTTP date.
pub fn retry_after(headers: &http::HeaderMap) -> Option<SystemTime> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(seconds));
    }
    httpdate::parse_http_date(value).ok()
}

/// The message of `e` and its sources (hyper's errors say little at the top).
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no trusted root certificates in the system store; using the Mozilla roots built into madmail for the ACME server"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Runs one protocol step (an expression evaluating to `Result<T, instant_acme::Error>`,
/// which may `.await`), retrying as [`Retry`] decides. Evaluates to
/// `Result<(T, Option<SystemTime>), StepError>`: the value with the `Retry-After` of its
/// answer (when to poll again). A macro rather than a function taking an async closure so the
/// step may borrow the order mutably and the future stays `Send`.
macro_rules! retry {
    ($step:expr, $deadline:expr, $body:expr) => {{
        let mut retry = $crate::client::Retry::new($step, $deadline);
        loop {
            let (result, hint) = $crate::client::capture(async { $body }).await;
            match result {
                Ok(value) => break Ok((value, hint)),
                Err(e) => {
                    if let Err(failed) = retry.again(e, hint).await {
                        break Err(failed);
                    }
                }
            }
        }
    }};
}
pub(crate) use retry;

/// Runs `f`, noting the `Retry-After` of the responses it receives.
pub async fn capture<F: Future>(f: F) -> (F::Output, Option<SystemTime>) {
    RETRY_AFTER
        .scope(Cell::new(None), async {
            let out = f.await;
            (out, RETRY_AFTER.with(Cell::get))
        })
        .await
}

/// The retry policy of one step: `badNonce` up to [`NONCE_RETRIES`] more times at once;
/// network errors, server errors and rate limits with short pauses, or as long as
/// `Retry-After` says when that ends before the deadline. Anything else, or a `Retry-After`
/// past the deadline, fails the step (with `retry_at` for the scheduler).
pub struct Retry {
    step: &'static str,
    deadline: Instant,
    nonce_retries: u32,
    transient_retries: u32,
}

impl Retry {
    pub fn new(step: &'static str, deadline: Instant) -> Retry {
        Retry {
            step,
            deadline,
            nonce_retries: 0,
            transient_retries: 0,
        }
    }

    /// Decides about `error`: waits and returns `Ok` to try again, or gives up.
    pub async fn again(
        &mut self,
        error: instant_acme::Error,
        retry_at: Option<SystemTime>,
    ) -> Result<(), StepError> {
        let step = self.step;
        let failed = step_error(step, &error, retry_at);
        let (retry, pause) = match &error {
            instant_acme::Error::Api(problem) => {
                let kind = problem.r#type.as_deref().unwrap_or("");
                let server_error =
                    problem.status.is_some_and(|s| s >= 500) || kind.ends_with(":serverInternal");
                if kind.ends_with(":badNonce") && self.nonce_retries < NONCE_RETRIES {
                    self.nonce_retries += 1;
                    (true, Duration::ZERO)
                } else if (server_error || kind.ends_with(":rateLimited"))
                    && self.transient_retries < TRANSIENT_RETRIES
                {
                    self.transient_retries += 1;
                    (true, backoff(self.transient_retries))
                } else {
                    (false, Duration::ZERO)
                }
            }
            instant_acme::Error::Other(_) | instant_acme::Error::Timeout(_)
                if self.transient_retries < TRANSIENT_RETRIES =>
            {
                self.transient_retries += 1;
                (true, backoff(self.transient_retries))
            }
            _ => (false, Duration::ZERO),
        };
        if !retry {
            return Err(failed);
        }
        let wait = match retry_at {
            Some(at) => at.duration_since(SystemTime::now()).unwrap_or_default(),
            None => pause,
        };
        if Instant::now() + wait >= self.deadline {
            return Err(failed);
        }
        tracing::debug!(step, wait = ?wait, error = %failed.message, "retrying ACME request");
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(5))
}

pub fn step_error(step: &str, e: &instant_acme::Error, retry_at: Option<SystemTime>) -> StepError {
    let problem = match e {
        instant_acme::Error::Api(p) => p.r#type.clone(),
        _ => None,
    };
    let message = match e {
        instant_acme::Error::Api(p) => problem_text(p),
        other => chain(other),
    };
    StepError {
        step: step.to_owned(),
        message,
        problem,
        retry_at,
    }
}

/// A problem document as one line: detail, type and the subproblems' details.
pub fn problem_text(p: &instant_acme::Problem) -> String {
    let mut text = p.detail.clone().unwrap_or_else(|| "error".to_owned());
    if let Some(kind) = &p.r#type {
        let short = kind
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(kind);
        text.push_str(&format!(" ({short})"));
    }
    for sub in &p.subproblems {
        if let Some(detail) = &sub.detail {
            text.push_str("; ");
            text.push_str(detail);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        let at = retry_after(&headers).unwrap();
        let secs = at.duration_since(SystemTime::now()).unwrap().as_secs();
        assert!((118..=120).contains(&secs));
        headers.insert(
            http::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784111777))
        );
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}

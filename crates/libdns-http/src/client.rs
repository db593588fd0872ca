//! One API call, with the retries every provider needs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use madmail_dns::DnsError;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::HttpOptions;

/// The first wait after a server error or a lost connection; it doubles with each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts that this client chooses itself.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured; a provider asking for more fails the call now (the ACME
/// loader retries the whole order later) rather than hold an order open for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Replies larger than this are refused: no DNS API answers with more for one zone page.
const MAX_BODY: usize = 32 << 20;
/// How much of an error body goes into an error message when the provider cannot parse it.
const BODY_EXCERPT: usize = 300;

/// What a call is doing, for errors and logs: `Call::new("create TXT record", "example.org.")`.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub operation: &'a str,
    pub zone: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(operation: &'a str, zone: &'a str) -> Call<'a> {
        Call { operation, zone }
    }
}

/// A successful (2xx) reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A call that failed for good: a non-2xx status that is not retried, or retries used up.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The last HTTP status, if a reply came.
    pub status: Option<StatusCode>,
    pub body: Bytes,
    /// What went wrong, ready for an error message (no secrets: URLs are left out).
    pub message: String,
}

/// An HTTP client for one provider's API.
#[derive(Clone)]
pub struct ApiClient {
    provider: &'static str,
    http: reqwest::Client,
    base: Url,
    retries: u32,
    error_message: fn(&[u8]) -> Option<String>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `provider` (its name in errors) calling the API at `options.endpoint`.
    pub fn new(provider: &'static str, options: &HttpOptions) -> Result<ApiClient, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("madmail/", env!("CARGO_PKG_VERSION")))
            // An API call that redirects is a misconfigured endpoint; following it could send
            // credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(ApiClient {
            provider,
            http,
            base: options.endpoint.clone(),
            retries: options.retries,
            error_message: |_| None,
        })
    }

    /// How to find the provider's own error message in an error body (for example
    /// `errors[0].message` of a JSON body); without it, errors quote the body's start.
    pub fn with_error_message(mut self, parse: fn(&[u8]) -> Option<String>) -> ApiClient {
        self.error_message = parse;
        self
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The API's base URL (ends with `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` (relative, without a leading `/`) under the API's base URL.
    pub fn url(&self, call: &Call<'_>, path: &str) -> Result<Url, DnsError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| self.failed(call, format!("bad request path {path:?}: {e}")))
    }

    /// Sends the request `build` makes (called again for each attempt, so signed requests get
    /// a fresh timestamp) until it succeeds or fails for good. Rate limits (429) wait for
    /// `Retry-After` (or back off), server errors (5xx) and lost connections back off
    /// (0.5 s, 1 s, 2 s, ... at most 10 s); at most `retries` retries.
    pub async fn send<F>(&self, call: &Call<'_>, build: F) -> Result<Reply, Failure>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let mut attempt = 0;
        loop {
            let (failure, wait) = match build(&self.http).send().await {
                Err(e) => {
                    let e = e.without_url();
                    let failure = Failure {
                        status: None,
                        body: Bytes::new(),
                        message: format!("request failed: {}", error_chain(&e)),
                    };
                    (failure, backoff(attempt))
                }
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = match read_body(response).await {
                        Ok(body) => body,
                        Err(message) => {
                            return Err(Failure {
                                status: Some(status),
                                body: Bytes::new(),
                                message,
                            });
                        }
                    };
                    if status.is_success() {
                        return Ok(Reply {
                            status,
                            headers,
                            body,
                        });
                    }
                    let failure = Failure {
                        status: Some(status),
                        message: self.describe(status, &body),
                        body,
                    };
                    let retry_after = retry_after(&headers, SystemTime::now());
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after.unwrap_or_else(|| backoff(attempt));
                        if wait > MAX_RETRY_AFTER {
                            return Err(Failure {
                                message: format!(
                                    "{} (rate limited; the provider asks to wait {} s)",
                                    failure.message,
                                    wait.as_secs()
                                ),
                                ..failure
                            });
                        }
                        (failure, wait)
                    } else if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                        let wait = retry_after
                            .filter(|wait| *wait <= MAX_RETRY_AFTER)
                            .unwrap_or_else(|| backoff(attempt));
                        (failure, wait)
                    } else {
                        return Err(failure);
                    }
                }
            };
            if attempt >= self.retries {
                let tries = attempt + 1;
                return Err(Failure {
                    message: format!(
                        "{} (gave up after {tries} attempt{})",
                        failure.message,
                        if tries == 1 { "" } else { "s" }
                    ),
                    ..failure
                });
            }
            tracing::debug!(
                provider = self.provider,
                operation = call.operation,
                zone = call.zone,
                error = %failure.message,
                wait_ms = wait.as_millis() as u64,
                "DNS provider call failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// [`ApiClient::send`], then the reply's JSON body as `T`; every failure as a [`DnsError`].
    pub async fn json<T, F>(&self, call: &Call<'_>, build: F) -> Result<T, DnsError>
    where
        T: DeserializeOwned,
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let reply = self
            .send(call, build)
            .await
            .map_err(|f| self.error(call, f))?;
        self.decode(call, &reply.body)
    }

    /// The JSON `body` as `T`, or an error naming what did not fit.
    pub fn decode<T: DeserializeOwned>(&self, call: &Call<'_>, body: &[u8]) -> Result<T, DnsError> {
        serde_json::from_slice(body)
            .map_err(|e| self.failed(call, format!("unexpected reply from the API: {e}")))
    }

    /// `failure` as a [`DnsError`]: 401 and 403 are [`DnsError::Unauthorized`].
    pub fn error(&self, call: &Call<'_>, failure: Failure) -> DnsError {
        match failure.status {
            Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => DnsError::Unauthorized {
                provider: self.provider.into(),
                zone: call.zone.into(),
                operation: call.operation.into(),
                message: failure.message,
            },
            _ => self.failed(call, failure.message),
        }
    }

    /// `result` with "404 Not Found" as `None`: a record or RRset that is gone already, which
    /// removing it must accept and a lookup reports as absent. Every other failure becomes a
    /// [`DnsError`] (see [`ApiClient::error`]).
    pub fn unless_gone<T>(
        &self,
        call: &Call<'_>,
        result: Result<T, Failure>,
    ) -> Result<Option<T>, DnsError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(failure) => Err(self.error(call, failure)),
        }
    }

    /// A [`DnsError::Failed`] for `call` with `message`.
    pub fn failed(&self, call: &Call<'_>, message: impl Into<String>) -> DnsError {
        DnsError::Failed {
            provider: self.provider.into(),
            zone: call.zone.into(),
            operation: call.operation.into(),
            message: message.into(),
        }
    }

    /// A [`DnsError::Unauthorized`] for `call`: for APIs that report bad credentials in a 200
    /// reply's body.
    pub fn unauthorized(&self, call: &Call<'_>, message: impl Into<String>) -> DnsError {
        DnsError::Unauthorized {
            provider: self.provider.into(),
            zone: call.zone.into(),
            operation: call.operation.into(),
            message: message.into(),
        }
    }

    fn describe(&self, status: StatusCode, body: &[u8]) -> String {
        let detail = (self.error_message)(body).unwrap_or_else(|| excerpt(body));
        if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        }
    }
}

/// The TLS configuration of API clients: the aws-lc-rs backend handed over explicitly (other
/// crates in the build may enable ring too, and then rustls cannot pick one by itself), and the
/// system's trust store plus Mozilla's roots (a container may have no CA bundle).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(10))
        .min(MAX_BACKOFF)
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 section 10.2.3).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(format!("reply larger than {} MiB", MAX_BODY >> 20));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                let e = e.without_url();
                return Err(format!("reading the reply: {}", error_chain(&e)));
            }
        }
    }
}

/// The error followed by its sources (reqwest's own message is often just "error sending
/// request").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of a body, on one line, without control characters.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_EXCERPT)
        .collect();
    if text.chars().count() > BODY_EXCERPT {
        line.push_str("...");
    }
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_as_seconds_or_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        headers.insert(RETRY_AFTER, past.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_limit() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt(b"bad\r\nthing"), "bad  thing");
        let long = vec![b'x'; 1000];
        assert_eq!(excerpt(&long).len(), BODY_EXCERPT + 3);
    }
}

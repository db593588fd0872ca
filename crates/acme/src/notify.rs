//! Telling the operator about [`Event`]s through the channels of `tls.loader.acme`: the log
//! (always), a mail through a delivery target (`notify_to`, `notify_deliver_to`), a webhook
//! (`notify_webhook`) and a command (`notify_command`). Every channel but the log runs in the
//! background and retries on its own; none can hold up or fail a renewal.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use madmail_module::delivery::{DeliveryTarget, Envelope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tokio::io::AsyncReadExt;
use tokio_util::task::TaskTracker;

use crate::client::AcmeHttp;
use crate::events::Event;

/// Webhook attempts (1 s, 2 s, 4 s, 8 s apart) before the event is given up on that channel.
const WEBHOOK_ATTEMPTS: u32 = 5;
/// Mail delivery attempts (5 s, 30 s apart) on temporary failures.
const MAIL_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];
/// How much of a command's output is logged.
const OUTPUT_LOGGED: usize = 2000;

/// The `notify_*` directives.
#[derive(Clone)]
pub struct NotifyConfig {
    /// `notify_before`: thresholds, largest first.
    pub before: Vec<Duration>,
    /// `notify_to`.
    pub to: Vec<String>,
    /// `notify_deliver_to`.
    pub deliver_to: Option<Arc<dyn DeliveryTarget>>,
    /// The sender of notices: `postmaster@` the host name.
    pub from: String,
    pub hostname: String,
    /// `notify_webhook`.
    pub webhook: Option<String>,
    /// `notify_webhook_secret`: the key of the body's HMAC-SHA256 signature.
    pub webhook_secret: Option<Vec<u8>>,
    /// `notify_command`: the program and its arguments.
    pub command: Option<Vec<String>>,
    /// `notify_command_timeout`.
    pub command_timeout: Duration,
}

impl NotifyConfig {
    pub const DEFAULT_BEFORE_DAYS: [u64; 5] = [30, 14, 7, 3, 1];
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("before", &self.before)
            .field("to", &self.to)
            .field("webhook", &self.webhook.is_some())
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// Sends events to the configured channels.
pub struct Notifier {
    cfg: NotifyConfig,
    http: Option<AcmeHttp>,
    tasks: TaskTracker,
    mail: Queue,
    webhook: Queue,
    command: Queue,
}

/// One channel's deliveries, in the order of the events: each waits for the one before (a
/// deploy hook must not see `renewed` before `obtained`).
#[derive(Default)]
struct Queue {
    last: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Queue {
    fn push<F>(&self, tasks: &TaskTracker, delivery: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.take();
        *last = Some(tasks.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            delivery.await;
        }));
    }
}

impl Notifier {
    pub fn new(cfg: NotifyConfig, http: Option<AcmeHttp>) -> Notifier {
        Notifier {
            cfg,
            http,
            tasks: TaskTracker::new(),
            mail: Queue::default(),
            webhook: Queue::default(),
            command: Queue::default(),
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.cfg
    }

    /// Logs `event` and hands it to every other channel in the background.
    pub fn notify(&self, event: Event) {
        log(&event);
        let event = Arc::new(event);
        if let (false, Some(target)) = (self.cfg.to.is_empty(), &self.cfg.deliver_to) {
            let (target, event) = (target.clone(), event.clone());
            let cfg = self.cfg.clone();
            self.mail.push(&self.tasks, async move {
                send_mail(&cfg, target.as_ref(), &event).await;
            });
        }
        if let (Some(url), Some(http)) = (&self.cfg.webhook, &self.http) {
            let (url, http, event) = (url.clone(), http.clone(), event.clone());
            let secret = self.cfg.webhook_secret.clone();
            self.webhook.push(&self.tasks, async move {
                post_webhook(&http, &url, secret.as_deref(), &event).await;
            });
        }
        if let Some(command) = &self.cfg.command {
            let (command, event) = (command.clone(), event.clone());
            let timeout = self.cfg.command_timeout;
            self.command.push(&self.tasks, async move {
                run_command(&command, timeout, &event).await;
            });
        }
    }

    /// Waits until every channel is done with the events so far (at stop, and in tests).
    pub async fn flush(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}

fn log(event: &Event) {
    let serial = event.serial.as_deref().unwrap_or("-");
    let not_after = event
        .not_after
        .map(crate::time_fmt::format)
        .unwrap_or_default();
    let error = event.error.as_deref().unwrap_or("");
    if event.kind.is_problem() {
        tracing::warn!(event = event.kind.as_str(), loader = %event.loader, names = ?event.names, serial, not_after, error, "{}", event.summary());
    } else {
        tracing::info!(event = event.kind.as_str(), loader = %event.loader, names = ?event.names, serial, not_after, "{}", event.summary());
    }
}

/// The notice as an RFC 5322 message (CRLF line endings).
pub fn message(cfg: &NotifyConfig, event: &Event, id: &str) -> String {
    let date = OffsetDateTime::from(event.time)
        .format(&Rfc2822)
        .unwrap_or_default();
    let prefix = if event.kind.is_problem() {
        "[madmail] Warning: "
    } else {
        "[madmail] "
    };
    let mut text = String::new();
    for (name, value) in [
        ("From", format!("madmail <{}>", cfg.from)),
        ("To", cfg.to.join(", ")),
        ("Subject", format!("{prefix}{}", event.summary())),
        ("Date", date),
        ("Message-ID", format!("<{id}@{}>", cfg.hostname)),
        ("Auto-Submitted", "auto-generated".into()),
        ("MIME-Version", "1.0".into()),
        ("Content-Type", "text/plain; charset=utf-8".into()),
        ("Content-Transfer-Encoding", "8bit".into()),
        ("X-Madmail-Event", event.kind.as_str().into()),
    ] {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    for line in event.text().lines() {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text
}

async fn send_mail(cfg: &NotifyConfig, target: &dyn DeliveryTarget, event: &Event) {
    let id = format!(
        "cert-{}-{}-{:x}",
        event.kind.as_str(),
        event
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        crate::schedule::random_u64() & 0xffff_ffff
    );
    let body = message(cfg, event, &id);
    let mut attempt = 0;
    loop {
        match deliver(cfg, target, &id, body.as_bytes()).await {
            Ok(()) => {
                tracing::info!(event = event.kind.as_str(), to = ?cfg.to, "certificate notice mailed");
                return;
            }
            Err(e) if e.is_temporary() && attempt < MAIL_RETRY_DELAYS.len() => {
                tracing::debug!(error = %e, "certificate notice: delivery failed; retrying");
                tokio::time::sleep(MAIL_RETRY_DELAYS[attempt]).await;
                attempt += 1;
            }
            Err(e) => {
                tracing::error!(event = event.kind.as_str(), to = ?cfg.to, error = %e, "certificate notice could not be delivered");
                return;
            }
        }
    }
}

async fn deliver(
    cfg: &NotifyConfig,
    target: &dyn DeliveryTarget,
    id: &str,
    body: &[u8],
) -> Result<(), madmail_module::delivery::DeliveryError> {
    let envelope = Envelope {
        id: id.to_owned(),
        mail_from: cfg.from.clone(),
        endpoint: "tls.loader.acme".into(),
        ..Envelope::default()
    };
    let mut delivery = target.start(&envelope).await?;
    let mut accepted = 0;
    for rcpt in &cfg.to {
        match delivery.add_rcpt(rcpt).await {
            Ok(()) => accepted += 1,
            Err(e) => tracing::warn!(rcpt, error = %e, "certificate notice: recipient refused"),
        }
    }
    if accepted == 0 {
        delivery.abort().await;
        return Err(madmail_module::delivery::DeliveryError::permanent(
            "every recipient was refused",
        ));
    }
    if let Err(e) = delivery.body(body).await {
        delivery.abort().await;
        return Err(e);
    }
    delivery.commit().await
}

/// The webhook URL as logs may show it: scheme and host only (chat services put their secret in
/// the path).
fn redacted(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => format!(
            "{}://{}/...",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.host()).unwrap_or("?")
        ),
        Err(_) => "the webhook".to_owned(),
    }
}

/// The `X-Madmail-Signature` header of a webhook body: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the body under the secret (the scheme GitHub's webhooks use).
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn post_webhook(http: &AcmeHttp, url: &str, secret: Option<&[u8]>, event: &Event) {
    let body = event.to_json().to_string().into_bytes();
    let signature = secret.map(|s| webhook_signature(s, &body));
    let shown = redacted(url);
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let outcome = http
            .post_json(url, body.clone(), signature.as_deref())
            .await;
        match outcome {
            Ok(status) if status.is_success() => {
                tracing::debug!(event = event.kind.as_str(), "webhook notified");
                return;
            }
            // A refusal other than overload or a server error will not change on retry.
            Ok(status)
                if status.is_client_error()
                    && status != http::StatusCode::TOO_MANY_REQUESTS
                    && status != http::StatusCode::REQUEST_TIMEOUT =>
            {
                tracing::error!(event = event.kind.as_str(), webhook = %shown, %status, "notify_webhook refused the event");
                return;
            }
            other => {
                let error = match other {
                    Ok(status) => format!("HTTP {status}"),
                    Err(e) => e.replace(url, &shown),
                };
                if attempt == WEBHOOK_ATTEMPTS {
                    tracing::error!(
                        event = event.kind.as_str(),
                        error,
                        attempts = attempt,
                        "notify_webhook failed"
                    );
                    return;
                }
                tracing::debug!(
                    event = event.kind.as_str(),
                    error,
                    "notify_webhook failed; retrying"
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

async fn run_command(command: &[String], timeout: Duration, event: &Event) {
    let Some((program, args)) = command.split_first() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(event.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(event = event.kind.as_str(), program, error = %e, "notify_command could not be started");
            return;
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
        let status = child.wait().await;
        (status, out, err)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            // Dropping the future drops the child: kill_on_drop ends it.
            tracing::error!(
                event = event.kind.as_str(),
                program,
                ?timeout,
                "notify_command did not finish in time and was killed"
            );
        }
        Ok((Err(e), _, _)) => {
            tracing::error!(event = event.kind.as_str(), program, error = %e, "notify_command");
        }
        Ok((Ok(status), out, err)) => {
            let output = excerpt(&out, &err);
            if status.success() {
                tracing::info!(
                    event = event.kind.as_str(),
                    program,
                    output,
                    "notify_command ran"
                );
            } else {
                tracing::error!(event = event.kind.as_str(), program, %status, output, "notify_command failed");
            }
        }
    }
}

fn excerpt(out: &[u8], err: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(out).into_owned();
    text.push_str(&String::from_utf8_lossy(err));
    let text = text.trim();
    match text.char_indices().nth(OUTPUT_LOGGED) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn webhook_secrets_stay_out_of_logs() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T00/B00/secret"),
            "https://hooks.slack.com/..."
        );
        assert_eq!(
            redacted("http://127.0.0.1:8080/x?token=s"),
            "http://127.0.0.1/..."
        );
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            webhook_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn notice_mail_is_a_valid_message() {
        let cfg = NotifyConfig {
            before: Vec::new(),
            to: vec!["a@example.org".into(), "b@example.org".into()],
            deliver_to: None,
            from: "postmaster@mx.example.org".into(),
            hostname: "mx.example.org".into(),
            webhook: None,
            webhook_secret: None,
            command: None,
            command_timeout: Duration::from_secs(1),
        };
        let event = Event {
            kind: EventKind::Expiring,
            loader: "acme".into(),
            names: vec!["mx.example.org".into()],
            serial: Some("01".into()),
            not_before: None,
            not_after: Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 3 * 86_400 + 60),
            ),
            error: None,
            next_retry: None,
            threshold: Some(Duration::from_secs(3 * 86_400)),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            cert_path: "/c".into(),
            key_path: "/k".into(),
        };
        let text = message(&cfg, &event, "id1");
        assert!(
            text.starts_with(
                "From: madmail <postmaster@mx.example.org>\r\nTo: a@example.org, b@example.org\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("\r\nSubject: [madmail] Warning: certificate for mx.example.org expires in 3 days and is not renewed\r\n"), "{text}");
        assert!(
            text.contains("\r\nDate: Fri, 15 Jan 2027 08:00:00 +0000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nMessage-ID: <id1@mx.example.org>\r\n"),
            "{text}"
        );
        // Header and body apart; every line ends in CRLF.
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.lines().all(|l| l.contains(": ")));
        assert!(body.starts_with("certificate for mx.example.org expires in 3 days"));
        assert!(!text.replace("\r\n", "").contains('\n'));
    }
}

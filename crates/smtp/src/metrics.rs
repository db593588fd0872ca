//! Counters an endpoint keeps for monitoring. They are plain atomics so that updating them costs
//! next to nothing on the hot path; an exporter reads them with [`Counters::snapshot`], and the
//! endpoint's [`EndpointCollector`] writes them as `madmail_smtp_*` metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use madmail_module::metrics::{Collector, MetricsWriter};

/// What one endpoint (one `smtp`, `submission` or `lmtp` block) has seen since it was built.
/// An endpoint offers its `Arc<Counters>` as a capability of its instance.
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    active_sessions: AtomicU64,
    connections_refused: AtomicU64,
    tls_handshake_failures: AtomicU64,
    auth_failures: AtomicU64,
    messages_accepted: AtomicU64,
    messages_rejected: AtomicU64,
    recipients_rejected: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Connections accepted by the listeners (including refused ones).
    pub connections: u64,
    /// Sessions open now.
    pub active_sessions: u64,
    /// Connections closed at once because of `max_connections` / `max_connections_per_ip`.
    pub connections_refused: u64,
    /// TLS handshakes (implicit TLS or STARTTLS) that failed or timed out.
    pub tls_handshake_failures: u64,
    /// AUTH attempts refused (wrong credentials or backend failure).
    pub auth_failures: u64,
    /// Messages the endpoint took responsibility for (for LMTP: per recipient).
    pub messages_accepted: u64,
    /// Message transfers (DATA/BDAT) that ended with an error reply (for LMTP: per recipient).
    pub messages_rejected: u64,
    /// RCPT commands answered with an error.
    pub recipients_rejected: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            connections: get(&self.connections),
            active_sessions: get(&self.active_sessions),
            connections_refused: get(&self.connections_refused),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            auth_failures: get(&self.auth_failures),
            messages_accepted: get(&self.messages_accepted),
            messages_rejected: get(&self.messages_rejected),
            recipients_rejected: get(&self.recipients_rejected),
        }
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_accepted(&self) {
        self.messages_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_rejected(&self) {
        self.messages_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recipient_rejected(&self) {
        self.recipients_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session as active until the guard is dropped.
    pub(crate) fn session(self: &std::sync::Arc<Self>) -> SessionGuard {
        self.active_sessions.fetch_add(1, Ordering::Relaxed);
        SessionGuard(self.clone())
    }
}

pub(crate) struct SessionGuard(std::sync::Arc<Counters>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes one endpoint's counters as metrics, labelled with the module (`endpoint`: smtp,
/// submission or lmtp) and its listen addresses as written (`listen`, comma-joined).
pub(crate) struct EndpointCollector {
    endpoint: &'static str,
    listen: String,
    counters: Arc<Counters>,
}

impl EndpointCollector {
    pub(crate) fn new(endpoint: &'static str, listen: String, counters: Arc<Counters>) -> Self {
        EndpointCollector {
            endpoint,
            listen,
            counters,
        }
    }
}

/// Reads one counter from a snapshot.
type Read = fn(&CountersSnapshot) -> u64;

/// The counters, with their metric names and help texts.
const COUNTERS: &[(&str, &str, Read)] = &[
    (
        "madmail_smtp_connections_total",
        "Connections accepted by the listeners, including refused ones.",
        |s| s.connections,
    ),
    (
        "madmail_smtp_connections_refused_total",
        "Connections closed at once because of max_connections or max_connections_per_ip.",
        |s| s.connections_refused,
    ),
    (
        "madmail_smtp_tls_handshake_failures_total",
        "TLS handshakes (implicit TLS or STARTTLS) that failed or timed out.",
        |s| s.tls_handshake_failures,
    ),
    (
        "madmail_smtp_auth_failures_total",
        "AUTH attempts refused (wrong credentials or backend failure).",
        |s| s.auth_failures,
    ),
    (
        "madmail_smtp_messages_accepted_total",
        "Messages accepted (LMTP: per recipient).",
        |s| s.messages_accepted,
    ),
    (
        "madmail_smtp_messages_rejected_total",
        "Message transfers (DATA/BDAT) answered with an error (LMTP: per recipient).",
        |s| s.messages_rejected,
    ),
    (
        "madmail_smtp_recipients_rejected_total",
        "RCPT commands answered with an error.",
        |s| s.recipients_rejected,
    ),
];

impl Collector for EndpointCollector {
    fn collect(&self, out: &mut MetricsWriter) {
        let snapshot = self.counters.snapshot();
        let labels = [
            ("endpoint", self.endpoint),
            ("listen", self.listen.as_str()),
        ];
        // `as f64` is exact below 2^53.
        for (name, help, value) in COUNTERS {
            out.counter(name, help, &labels, value(&snapshot) as f64);
        }
        out.gauge(
            "madmail_smtp_active_sessions",
            "Sessions open now.",
            &labels,
            snapshot.active_sessions as f64,
        );
    }
}

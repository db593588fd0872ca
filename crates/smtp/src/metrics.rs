//! Counters an endpoint keeps for monitoring. They are plain atomics so that updating them costs
//! next to nothing on the hot path; an exporter reads them with [`Counters::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

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

//! The delivery target interface: where accepted messages go (a Maildir, another server, the
//! bin, a pipeline that picks among those). Endpoints, pipelines and targets talk to each other
//! only through these traits.

use std::net::IpAddr;

use async_trait::async_trait;

use crate::caps::Capability;

/// A failed delivery step, with the SMTP reply it should produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {enhanced} {message}")]
pub struct DeliveryError {
    /// SMTP reply code: 4xx temporary, 5xx permanent.
    pub code: u16,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub enhanced: String,
    pub message: String,
}

impl DeliveryError {
    pub fn new(
        code: u16,
        enhanced: impl Into<String>,
        message: impl Into<String>,
    ) -> DeliveryError {
        DeliveryError {
            code,
            enhanced: enhanced.into(),
            message: message.into(),
        }
    }

    /// 451 4.0.0: try again later.
    pub fn temporary(message: impl Into<String>) -> DeliveryError {
        DeliveryError::new(451, "4.0.0", message)
    }

    /// 554 5.0.0: do not try again.
    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError::new(554, "5.0.0", message)
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

/// What is known about a message and its sender when its delivery starts.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// A unique ID for logs and headers.
    pub id: String,
    /// The reverse path (`MAIL FROM`), empty for bounces.
    pub mail_from: String,
    /// The client's address, when it came over the network.
    pub src_ip: Option<IpAddr>,
    /// The name the client gave in HELO/EHLO/LHLO.
    pub src_helo: String,
    /// The authenticated user (submission), if any.
    pub auth_user: Option<String>,
    /// Whether the session was TLS-protected.
    pub tls: bool,
    /// `SMTPUTF8` was given with `MAIL FROM`.
    pub smtputf8: bool,
    /// The endpoint that received it, for logs (`smtp`, `submission`, `lmtp`).
    pub endpoint: String,
}

/// Something that accepts messages.
#[async_trait]
pub trait DeliveryTarget: Send + Sync {
    /// Starts delivering one message.
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError>;

    /// Whether this target sends mail on to other servers (`target.smtp`, `target.remote`).
    /// An MX endpoint only routes a recipient to such a target when a `destination` rule
    /// names the recipient's domain explicitly, so no configuration makes it an open relay.
    fn relays(&self) -> bool {
        false
    }
}

/// One message on its way into a target: recipients, then the body, then commit or abort.
#[async_trait]
pub trait Delivery: Send {
    /// Adds a recipient; an error rejects only this recipient.
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError>;
    /// The whole message (header and body, CRLF line endings, dot-unstuffed) as received, with
    /// any trace headers the endpoint prepends.
    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError>;
    /// Makes the delivery durable; only after `Ok` may the sender be told the message is taken.
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError>;
    /// Drops the message; nothing of it must remain.
    async fn abort(self: Box<Self>);
}

impl Capability for dyn DeliveryTarget {
    const DESCRIPTION: &'static str = "a delivery target";
}

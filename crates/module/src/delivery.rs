//! The delivery target interface: where accepted messages go (a Maildir, another server, the
//! bin). Endpoints and the message pipeline talk to targets only through these traits.

use async_trait::async_trait;

use crate::caps::Capability;

/// A failed delivery step, with the SMTP reply it should produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {enhanced} {message}")]
pub struct DeliveryError {
    pub code: u16,
    /// Enhanced status code, e.g. `5.1.1`.
    pub enhanced: String,
    pub message: String,
}

impl DeliveryError {
    pub fn temporary(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            code: 451,
            enhanced: "4.0.0".into(),
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            code: 554,
            enhanced: "5.0.0".into(),
            message: message.into(),
        }
    }
}

/// The envelope and origin of a message being delivered.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// A unique ID for logs.
    pub id: String,
    pub mail_from: String,
}

/// Something that accepts messages.
#[async_trait]
pub trait DeliveryTarget: Send + Sync {
    /// Starts delivering one message.
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError>;
}

/// One message on its way into a target: recipients, then the body, then commit or abort.
#[async_trait]
pub trait Delivery: Send {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError>;
    /// The whole message (header and body) as received.
    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError>;
    /// Makes the delivery durable; only after `Ok` may the sender be told the message is taken.
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError>;
    async fn abort(self: Box<Self>);
}

impl Capability for dyn DeliveryTarget {
    const DESCRIPTION: &'static str = "a delivery target";
}

//! The modifier interface: rewriting a message's envelope on its way through the pipeline
//! (alias expansion with `replace_rcpt`, `replace_sender`; later DKIM signing).

use async_trait::async_trait;

use crate::caps::Capability;
use crate::delivery::DeliveryError;

#[async_trait]
pub trait Modifier: Send + Sync {
    /// The new reverse path for `sender`.
    async fn rewrite_sender(&self, sender: &str) -> Result<String, DeliveryError> {
        Ok(sender.to_owned())
    }

    /// The recipients `rcpt` becomes (one or more; an alias may expand to several).
    async fn rewrite_rcpt(&self, rcpt: &str) -> Result<Vec<String>, DeliveryError> {
        Ok(vec![rcpt.to_owned()])
    }
}

impl Capability for dyn Modifier {
    const DESCRIPTION: &'static str = "a message modifier";
}

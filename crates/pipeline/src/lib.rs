//! The message pipeline, maddy's `msgpipeline`: the directives of an endpoint's block that
//! decide where each message and recipient goes (`source`, `destination`, `deliver_to`,
//! `reject`, `modify`, ...). A pipeline is itself a [`DeliveryTarget`], so an endpoint hands
//! every message to it and knows nothing of routing.
//!
//! It must not speak SMTP or store mail: endpoints and targets do that.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Node;
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{Ctx, Errors};

/// How the pipeline is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// For MX endpoints: a recipient may only reach a relaying target (see
    /// [`DeliveryTarget::relays`]) through a `destination` rule that names it explicitly.
    pub explicit_relay_only: bool,
}

/// Builds a pipeline from `directives` (the part of `owner`'s block that is about routing).
pub fn build(
    owner: &Node,
    directives: &[&Node],
    options: Options,
    ctx: &mut Ctx<'_>,
) -> Result<Arc<dyn DeliveryTarget>, Errors> {
    let mut errors = Errors::new();
    let mut targets = Vec::new();
    for node in directives {
        match node.name.as_str() {
            "deliver_to" => match ctx.module_from::<dyn DeliveryTarget>(node, 0, "target") {
                Ok(t) => targets.push(t),
                Err(e) => errors.extend(e),
            },
            other => errors.push(madmail_config::Error::at(
                &node.pos,
                format!("unknown directive {other}"),
            )),
        }
    }
    if targets.is_empty() && errors.is_empty() {
        errors.push(madmail_config::Error::at(
            &owner.pos,
            format!("{}: no deliver_to: messages would go nowhere", owner.name),
        ));
    }
    errors.into_result(())?;
    Ok(Arc::new(Pipeline { targets, options }))
}

struct Pipeline {
    targets: Vec<Arc<dyn DeliveryTarget>>,
    options: Options,
}

#[async_trait]
impl DeliveryTarget for Pipeline {
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        let mut deliveries = Vec::new();
        for target in &self.targets {
            if self.options.explicit_relay_only && target.relays() {
                continue;
            }
            deliveries.push(target.start(envelope).await?);
        }
        Ok(Box::new(Fanout { deliveries }))
    }
}

/// One message going to every target of a pipeline.
struct Fanout {
    deliveries: Vec<Box<dyn Delivery>>,
}

#[async_trait]
impl Delivery for Fanout {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        if self.deliveries.is_empty() {
            return Err(DeliveryError::new(550, "5.7.1", "relaying denied"));
        }
        for d in &mut self.deliveries {
            d.add_rcpt(rcpt).await?;
        }
        Ok(())
    }

    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        for d in &mut self.deliveries {
            d.body(message).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        for d in self.deliveries {
            d.commit().await?;
        }
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        for d in self.deliveries {
            d.abort().await;
        }
    }
}

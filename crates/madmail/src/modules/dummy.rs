//! `dummy`: a delivery target that accepts every message and discards it (as maddy's). Useful
//! in tests and as a placeholder while building a configuration.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "dummy",
    kind: Kind::Named,
    build,
    summary: "delivery target that accepts and discards messages",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    if let Some(extra) = def.args.first() {
        return Err(Errors::at(&extra.pos, "dummy takes no arguments"));
    }
    Block::new(def.node, ctx.globals()).finish()?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(Arc::new(Dummy)),
    ))
}

struct Dummy;

#[async_trait]
impl DeliveryTarget for Dummy {
    async fn start(&self, _envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        Ok(Box::new(DummyDelivery))
    }
}

struct DummyDelivery;

#[async_trait]
impl Delivery for DummyDelivery {
    async fn add_rcpt(&mut self, _rcpt: &str) -> Result<(), DeliveryError> {
        Ok(())
    }
    async fn body(&mut self, _message: &[u8]) -> Result<(), DeliveryError> {
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        Ok(())
    }
    async fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_and_discards() -> Result<(), DeliveryError> {
        let mut delivery = Dummy.start(&Envelope::default()).await?;
        delivery.add_rcpt("a@example.org").await?;
        delivery.body(b"Subject: x\r\n\r\nhello\r\n").await?;
        delivery.commit().await
    }
}

//! Loading a configuration with this crate's modules, and getting at a target.
//!
//! Named blocks must be used by something, so configurations put the target under
//! `capture ADDR { deliver_to ... }`, a test endpoint that offers what `deliver_to` names.

#![allow(dead_code)]

use std::sync::Arc;

use madmail_module::delivery::{DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Loaded, ModuleSpec, Registry,
};

fn build_capture(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let deliver_to = block.all("deliver_to");
    block.finish()?;
    let Some(node) = deliver_to.first() else {
        return Err(Errors::at(&def.node.pos, "capture needs deliver_to"));
    };
    let target = ctx.module_from::<dyn DeliveryTarget>(node, 0, "target")?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(target),
    ))
}

pub fn registry() -> Registry {
    let mut registry = Registry::new();
    madmail_target::register(&mut registry);
    registry.register(ModuleSpec {
        name: "capture",
        kind: Kind::Endpoint,
        build: build_capture,
        summary: "test endpoint",
    });
    registry
}

pub fn try_load(text: &str) -> Result<Loaded, Errors> {
    madmail_module::testing::load_str(&registry(), text)
}

/// The errors of a configuration that must not load, as `line:col: message`.
pub fn errors_of(text: &str) -> Vec<String> {
    match try_load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => madmail_module::testing::error_lines(e),
    }
}

/// The target of the first `capture` endpoint, with every instance started.
pub async fn load_target(text: &str) -> (Arc<dyn DeliveryTarget>, madmail_module::Running) {
    let loaded = try_load(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = madmail_module::Running::start(&loaded.instances)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target = loaded.endpoints[0]
        .caps
        .get::<dyn DeliveryTarget>()
        .expect("capture offers a target");
    (target, running)
}

pub fn envelope(from: &str) -> Envelope {
    Envelope {
        id: "test-msg".into(),
        mail_from: from.into(),
        ..Envelope::default()
    }
}

/// Delivers one message to `rcpts` and commits.
pub async fn deliver(
    target: &dyn DeliveryTarget,
    from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> Result<(), DeliveryError> {
    let mut delivery = target.start(&envelope(from)).await?;
    for rcpt in rcpts {
        delivery.add_rcpt(rcpt).await?;
    }
    delivery.body(message).await?;
    delivery.commit().await
}

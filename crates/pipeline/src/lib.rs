//! The message pipeline, maddy's `msgpipeline`: the directives of an endpoint's block that
//! decide where each message and recipient goes (`source`, `destination`, `source_in`,
//! `destination_in`, `default_*`, `deliver_to`, `reject`, `modify`, `reroute`, `check`). A
//! pipeline is itself a [`DeliveryTarget`], so an endpoint hands every message to it and knows
//! nothing of routing. Also the modules `msgpipeline` (a named, reusable pipeline),
//! `modify.replace_rcpt`, `modify.replace_sender` and `modifiers`.
//!
//! It must not speak SMTP or store mail: endpoints and targets do that.

use std::sync::Arc;

use madmail_config::Node;
use madmail_module::delivery::DeliveryTarget;
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};

mod address;
mod config;
mod modifiers;
mod route;

/// How the pipeline is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// For MX endpoints: a recipient may only reach a relaying target (see
    /// [`DeliveryTarget::relays`]) through a `destination`/`destination_in` rule that names it,
    /// so no configuration turns an MX into an open relay.
    pub explicit_relay_only: bool,
}

/// Builds a pipeline from `directives` (the routing part of `owner`'s block).
pub fn build(
    owner: &Node,
    directives: &[&Node],
    options: Options,
    ctx: &mut Ctx<'_>,
) -> Result<Arc<dyn DeliveryTarget>, Errors> {
    let mut errors = Errors::new();
    let root = config::parse(&owner.pos, directives, config::Level::Top, ctx, &mut errors);
    errors.into_result(())?;
    Ok(Arc::new(route::Pipeline {
        root: Arc::new(root),
        options,
    }))
}

pub const MSGPIPELINE: ModuleSpec = ModuleSpec {
    name: "msgpipeline",
    kind: Kind::Named,
    build: build_msgpipeline,
    summary: "a named message pipeline, usable as a delivery target",
};

fn build_msgpipeline(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    if let Some(extra) = def.args.first() {
        return Err(Errors::at(&extra.pos, "msgpipeline takes no arguments"));
    }
    let (rest, errors) = Block::new(def.node, ctx.globals()).finish_with_rest();
    errors.into_result(())?;
    // A named pipeline is reached from other pipelines, which apply their own relay policy.
    let pipeline = build(def.node, &rest, Options::default(), ctx)?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(pipeline),
    ))
}

pub fn register(registry: &mut Registry) {
    registry.register(MSGPIPELINE);
    registry.register(modifiers::REPLACE_RCPT);
    registry.register(modifiers::REPLACE_SENDER);
    registry.register(modifiers::GROUP);
}

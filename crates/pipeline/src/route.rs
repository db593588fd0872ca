//! Routing one message: the source block is chosen by the sender when the delivery starts,
//! each recipient then finds its destination block and, through it, its targets. Each target
//! sees only the recipients routed to it, in one delivery per message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::modify::Modifier;

use crate::Options;
use crate::address::fold;
use crate::config::{Action, RouteBlock};

pub(crate) struct Pipeline {
    pub root: Arc<RouteBlock>,
    pub options: Options,
}

/// Reroute blocks nest only as deep as the configuration; this bounds a misconfiguration.
const MAX_REROUTE_DEPTH: usize = 16;

fn table_error(e: madmail_module::table::TableError) -> DeliveryError {
    tracing::error!(error = %e, "table lookup failed during routing");
    DeliveryError::new(451, "4.3.0", "internal error while routing the message")
}

/// The source block for `sender` inside `block`, or `block` itself when it has no source rules.
async fn select_source(
    block: &Arc<RouteBlock>,
    sender: &str,
) -> Result<Arc<RouteBlock>, DeliveryError> {
    if !block.has_source_rules() {
        return Ok(block.clone());
    }
    let folded = fold(sender);
    for (table, sub) in &block.source_in {
        if table.lookup(&folded).await.map_err(table_error)?.is_some() {
            return Ok(sub.clone());
        }
    }
    for (rules, sub) in &block.sources {
        if rules.iter().any(|r| r.matches(&folded)) {
            return Ok(sub.clone());
        }
    }
    // Validated: a block with source rules has a default_source.
    Ok(block
        .default_source
        .clone()
        .unwrap_or_else(|| block.clone()))
}

/// The destination block for `rcpt` inside `block`, and whether a rule named it explicitly.
async fn select_destination(
    block: &Arc<RouteBlock>,
    rcpt: &str,
) -> Result<(Arc<RouteBlock>, bool), DeliveryError> {
    if !block.has_destination_rules() {
        return Ok((block.clone(), false));
    }
    let folded = fold(rcpt);
    for (table, sub) in &block.destination_in {
        if table.lookup(&folded).await.map_err(table_error)?.is_some() {
            return Ok((sub.clone(), true));
        }
    }
    for (rules, sub) in &block.destinations {
        if rules.iter().any(|r| r.matches(&folded)) {
            return Ok((sub.clone(), true));
        }
    }
    Ok((
        block
            .default_destination
            .clone()
            .unwrap_or_else(|| block.clone()),
        false,
    ))
}

async fn rewrite_rcpts(
    modifiers: &[Arc<dyn Modifier>],
    rcpts: Vec<String>,
) -> Result<Vec<String>, DeliveryError> {
    let mut current = rcpts;
    for m in modifiers {
        let mut next = Vec::with_capacity(current.len());
        for r in &current {
            next.extend(m.rewrite_rcpt(r).await?);
        }
        current = next;
    }
    Ok(current)
}

#[async_trait]
impl DeliveryTarget for Pipeline {
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        let source = select_source(&self.root, &envelope.mail_from).await?;
        // A sender whose block rejects without looking at recipients is refused at MAIL FROM.
        if !source.has_destination_rules()
            && source.reroute.is_none()
            && let Action::Reject(e) = &source.action
        {
            return Err(e.clone());
        }
        let mut sender = envelope.mail_from.clone();
        for m in modifier_chain(&self.root, &source) {
            sender = m.rewrite_sender(&sender).await?;
        }
        let mut envelope = envelope.clone();
        envelope.mail_from = sender;
        Ok(Box::new(Routed {
            root: self.root.clone(),
            source,
            envelope,
            options: self.options,
            deliveries: Vec::new(),
        }))
    }
}

/// The modifiers that apply at the source level: the pipeline's, then the source block's.
fn modifier_chain<'a>(
    root: &'a Arc<RouteBlock>,
    source: &'a Arc<RouteBlock>,
) -> Vec<Arc<dyn Modifier>> {
    let mut all = root.modifiers.clone();
    if !Arc::ptr_eq(root, source) {
        all.extend(source.modifiers.iter().cloned());
    }
    all
}

struct Routed {
    root: Arc<RouteBlock>,
    source: Arc<RouteBlock>,
    envelope: Envelope,
    options: Options,
    /// One delivery per target, in the order targets were first used.
    deliveries: Vec<(Arc<dyn DeliveryTarget>, Box<dyn Delivery>)>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Routed {
    async fn delivery_for(
        &mut self,
        target: &Arc<dyn DeliveryTarget>,
    ) -> Result<&mut Box<dyn Delivery>, DeliveryError> {
        let same =
            |t: &Arc<dyn DeliveryTarget>| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(target));
        // Computed before any await: the iterator over deliveries is not Send.
        let existing = self.deliveries.iter().position(|(t, _)| same(t));
        let index = match existing {
            Some(i) => i,
            None => {
                let d = target.start(&self.envelope).await?;
                self.deliveries.push((target.clone(), d));
                self.deliveries.len() - 1
            }
        };
        Ok(&mut self.deliveries[index].1)
    }

    /// Routes one (already rewritten) recipient through `block`'s destination rules.
    fn route<'a>(
        &'a mut self,
        block: Arc<RouteBlock>,
        rcpt: String,
        depth: usize,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let (dest, explicit) = select_destination(&block, &rcpt).await?;
            let rcpts = if Arc::ptr_eq(&dest, &block) {
                vec![rcpt]
            } else {
                rewrite_rcpts(&dest.modifiers, vec![rcpt]).await?
            };
            for rcpt in rcpts {
                if let Some(reroute) = &dest.reroute {
                    if depth >= MAX_REROUTE_DEPTH {
                        return Err(DeliveryError::new(554, "5.4.6", "routing loop"));
                    }
                    // A reroute block routes the final addresses afresh, sender rules included.
                    let source = select_source(reroute, &self.envelope.mail_from).await?;
                    let rcpts =
                        rewrite_rcpts(&modifier_chain(reroute, &source), vec![rcpt]).await?;
                    for r in rcpts {
                        self.route(source.clone(), r, depth + 1).await?;
                    }
                    continue;
                }
                match &dest.action {
                    Action::Reject(e) => return Err(e.clone()),
                    Action::None => {
                        return Err(DeliveryError::new(
                            550,
                            "5.7.1",
                            "no route for this recipient",
                        ));
                    }
                    Action::Deliver(targets) => {
                        let targets = targets.clone();
                        for target in &targets {
                            if self.options.explicit_relay_only && target.relays() && !explicit {
                                tracing::info!(rcpt = %rcpt, "relaying denied: no destination rule names this recipient");
                                return Err(DeliveryError::new(550, "5.7.1", "relaying denied"));
                            }
                        }
                        for target in &targets {
                            self.delivery_for(target).await?.add_rcpt(&rcpt).await?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

#[async_trait]
impl Delivery for Routed {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        let chain = modifier_chain(&self.root, &self.source);
        let rcpts = rewrite_rcpts(&chain, vec![rcpt.to_owned()]).await?;
        let source = self.source.clone();
        for r in rcpts {
            self.route(source.clone(), r, 0).await?;
        }
        Ok(())
    }

    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        for (_, d) in &mut self.deliveries {
            d.body(message).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        let mut first_error = None;
        let mut committed = 0;
        for (_, d) in self.deliveries {
            match d.commit().await {
                Ok(()) => committed += 1,
                Err(e) => {
                    if committed > 0 {
                        tracing::warn!(id = %self.envelope.id, error = %e, "a target failed after others accepted the message");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn abort(self: Box<Self>) {
        for (_, d) in self.deliveries {
            d.abort().await;
        }
    }
}

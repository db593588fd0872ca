//! Envelope modifiers: `replace_rcpt` and `replace_sender` (address rewriting through a table,
//! maddy's semantics) and `modifiers`, a named group of modifiers.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::delivery::DeliveryError;
use madmail_module::modify::Modifier;
use madmail_module::table::Table;
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

use crate::address::{domain, fold, local_part};
use crate::config::as_inline;

pub const REPLACE_RCPT: ModuleSpec = ModuleSpec {
    name: "modify.replace_rcpt",
    kind: Kind::Named,
    build: build_replace_rcpt,
    summary: "rewrites recipients through a table (aliases)",
};

pub const REPLACE_SENDER: ModuleSpec = ModuleSpec {
    name: "modify.replace_sender",
    kind: Kind::Named,
    build: build_replace_sender,
    summary: "rewrites the sender through a table",
};

pub const GROUP: ModuleSpec = ModuleSpec {
    name: "modifiers",
    kind: Kind::Named,
    build: build_group,
    summary: "a named list of modifiers",
};

fn build_replace_rcpt(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let table = table_of(def, ctx)?;
    Ok(Built::new(Capabilities::new().with::<dyn Modifier>(
        Arc::new(Replace {
            table,
            what: What::Rcpt,
        }),
    )))
}

fn build_replace_sender(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let table = table_of(def, ctx)?;
    Ok(Built::new(Capabilities::new().with::<dyn Modifier>(
        Arc::new(Replace {
            table,
            what: What::Sender,
        }),
    )))
}

/// `replace_rcpt TABLE [ARGS...] [{ table block }]`: the table is an inline definition (or a
/// `&reference`) starting at the module's first argument.
fn table_of(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Arc<dyn Table>, Errors> {
    if def.args.is_empty() {
        return Err(Errors::at(
            &def.node.pos,
            format!(
                "{} needs a table: {} TABLE [ARGS...]",
                def.module, def.module
            ),
        ));
    }
    let first = def.node.args.len() - def.args.len();
    ctx.module_from::<dyn Table>(def.node, first, "table")
}

#[derive(Clone, Copy)]
enum What {
    Rcpt,
    Sender,
}

struct Replace {
    table: Arc<dyn Table>,
    what: What,
}

impl Replace {
    /// The whole address is looked up first; failing that, the local part, whose replacement
    /// keeps the domain. Replacements are not looked up again.
    async fn replace(&self, addr: &str) -> Result<Vec<String>, DeliveryError> {
        let folded = fold(addr);
        let lookup_failed = |e: madmail_module::table::TableError| {
            tracing::error!(error = %e, "address rewriting table failed");
            DeliveryError::new(451, "4.3.0", "internal error while rewriting the address")
        };
        let whole = self
            .table
            .lookup_multi(&folded)
            .await
            .map_err(lookup_failed)?;
        if !whole.is_empty() {
            return Ok(whole);
        }
        let Some(dom) = domain(&folded) else {
            return Ok(vec![addr.to_owned()]);
        };
        let local = self
            .table
            .lookup_multi(local_part(&folded))
            .await
            .map_err(lookup_failed)?;
        if local.is_empty() {
            return Ok(vec![addr.to_owned()]);
        }
        Ok(local
            .into_iter()
            .map(|l| {
                if l.contains('@') {
                    l
                } else {
                    format!("{l}@{dom}")
                }
            })
            .collect())
    }
}

#[async_trait]
impl Modifier for Replace {
    async fn rewrite_sender(&self, sender: &str) -> Result<String, DeliveryError> {
        if !matches!(self.what, What::Sender) || sender.is_empty() {
            return Ok(sender.to_owned());
        }
        let mut replaced = self.replace(sender).await?;
        if replaced.len() > 1 {
            tracing::error!(
                sender,
                "replace_sender: the table maps the sender to several addresses"
            );
            return Err(DeliveryError::new(
                451,
                "4.3.0",
                "internal error while rewriting the sender",
            ));
        }
        Ok(replaced.pop().unwrap_or_else(|| sender.to_owned()))
    }

    async fn rewrite_rcpt(&self, rcpt: &str) -> Result<Vec<String>, DeliveryError> {
        match self.what {
            What::Rcpt => self.replace(rcpt).await,
            What::Sender => Ok(vec![rcpt.to_owned()]),
        }
    }
}

/// `modifiers NAME { replace_rcpt ...; replace_sender ... }`.
fn build_group(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    if let Some(extra) = def.args.first() {
        return Err(Errors::at(&extra.pos, "modifiers takes no arguments"));
    }
    let block = Block::new(def.node, ctx.globals());
    let (children, mut errors) = block.finish_with_rest();
    let mut list = Vec::new();
    for child in children {
        match ctx.module_from::<dyn Modifier>(&as_inline(child), 0, "modify") {
            Ok(m) => list.push(m),
            Err(e) => errors.extend(e),
        }
    }
    if list.is_empty() && errors.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            "modifiers: the block lists no modifiers",
        ));
    }
    errors.into_result(())?;
    Ok(Built::new(
        Capabilities::new().with::<dyn Modifier>(Arc::new(Group(list))),
    ))
}

struct Group(Vec<Arc<dyn Modifier>>);

#[async_trait]
impl Modifier for Group {
    async fn rewrite_sender(&self, sender: &str) -> Result<String, DeliveryError> {
        let mut s = sender.to_owned();
        for m in &self.0 {
            s = m.rewrite_sender(&s).await?;
        }
        Ok(s)
    }

    async fn rewrite_rcpt(&self, rcpt: &str) -> Result<Vec<String>, DeliveryError> {
        let mut current = vec![rcpt.to_owned()];
        for m in &self.0 {
            let mut next = Vec::new();
            for r in &current {
                next.extend(m.rewrite_rcpt(r).await?);
            }
            current = next;
        }
        Ok(current)
    }
}

//! `table.chain { step TABLE; optional_step TABLE }`: each step looks up the values the previous
//! step produced (all of them, for tables with several values per key). A key missing from a
//! `step` ends the lookup with no result; a key missing from an `optional_step` goes on to the
//! next step unchanged.
//!
//! With several keys in flight, maddy skips a whole optional step as soon as one key is
//! missing from it (dropping the values the other keys had); here each key is passed through
//! on its own.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::table::{Table, TableError};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "table.chain",
    kind: Kind::Named,
    build,
    summary: "table looking keys up through several tables in turn",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = crate::no_args(def).err().unwrap_or_default();
    let mut block = Block::new(def.node, ctx.globals());
    block.all("step");
    block.all("optional_step");
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    // The steps run in the order they are written, whichever kind they are.
    let nodes = def
        .node
        .children()
        .iter()
        .filter(|n| n.name == "step" || n.name == "optional_step");
    let mut steps = Vec::new();
    for node in nodes {
        match ctx.module_from::<dyn Table>(node, 0, "table") {
            Ok(table) => steps.push(Step {
                table,
                optional: node.name == "optional_step",
            }),
            Err(e) => errors.extend(e),
        }
    }
    if steps.is_empty() && errors.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            "table.chain needs at least one step or optional_step",
        ));
    }
    errors.into_result(())?;
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(ChainTable { steps })),
    ))
}

struct Step {
    table: Arc<dyn Table>,
    optional: bool,
}

struct ChainTable {
    steps: Vec<Step>,
}

#[async_trait]
impl Table for ChainTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.lookup_multi(key).await?.into_iter().next())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        let mut keys = vec![key.to_owned()];
        for step in &self.steps {
            let mut next = Vec::with_capacity(keys.len());
            for key in keys {
                let values = step.table.lookup_multi(&key).await?;
                if !values.is_empty() {
                    next.extend(values);
                } else if step.optional {
                    next.push(key);
                } else {
                    return Ok(Vec::new());
                }
            }
            keys = next;
        }
        Ok(keys)
    }
}

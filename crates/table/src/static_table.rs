//! `table.static { entry KEY VALUE... }`: a map written in the configuration.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::table::{Table, TableError};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "table.static",
    kind: Kind::Named,
    build,
    summary: "table of entries written in the configuration",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = crate::no_args(def).err().unwrap_or_default();
    let mut block = Block::new(def.node, ctx.globals());
    let mut map = HashMap::new();
    for entry in block.all("entry") {
        if entry.children.is_some() {
            errors.push(Error::at(&entry.pos, "entry does not take a block"));
            continue;
        }
        match entry.args.as_slice() {
            [key, values @ ..] if !values.is_empty() => {
                // As in maddy, a repeated key replaces the earlier entry.
                map.insert(
                    key.value.clone(),
                    values.iter().map(|v| v.value.clone()).collect(),
                );
            }
            _ => errors.push(Error::at(
                &entry.pos,
                "entry needs a key and at least one value: entry KEY VALUE...",
            )),
        }
    }
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(StaticTable { map })),
    ))
}

struct StaticTable {
    map: HashMap<String, Vec<String>>,
}

#[async_trait]
impl Table for StaticTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.map.get(key).and_then(|v| v.first()).cloned())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        Ok(self.map.get(key).cloned().unwrap_or_default())
    }
}

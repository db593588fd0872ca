//! `auth.pass_table`: checks passwords against hashes stored in any table, as maddy's.
//!
//! ```text
//! auth.pass_table local_authdb {
//!     table sql_table {
//!         driver sqlite3
//!         dsn credentials.db
//!         table_name passwords
//!     }
//! }
//! ```
//!
//! or inline, where the arguments name the table and the block configures it:
//! `auth pass_table file /etc/madmail/passwd`.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Node;
use madmail_module::auth::{AuthError, PlainAuth};
use madmail_module::table::{MutableTable, Table};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

use crate::{CredentialStore, hash, username};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "auth.pass_table",
    kind: Kind::Named,
    build,
    summary: "password authentication against hashes stored in a table",
};

/// A bcrypt hash (cost 10, like the hashes maddy writes) of a random password nobody knows.
/// Checking a password for an unknown user against it takes as long as for a real user, so
/// response times do not tell which users exist.
const DUMMY_HASH: &str = "bcrypt:$2a$10$QwvA4NUdqr6iLx15lzXFkeKjO1q47gGJWzEDd5JoB/aqyQvFdImgS";

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let (table, store) = if def.args.is_empty() {
        let mut block = Block::new(def.node, ctx.globals());
        let tables = block
            .custom("table", |n| resolve_table(ctx, n, 0))
            .required();
        match (tables, block.finish()) {
            (Some(tables), Ok(())) => tables,
            (_, Err(e)) => return Err(e),
            (None, Ok(())) => return Err(Errors::new()), // `required` recorded why
        }
    } else {
        // Inline: `auth pass_table TABLE ARGS... { table's block }`.
        let first = def.node.args.len() - def.args.len();
        resolve_table(ctx, def.node, first)?
    };
    let auth = Arc::new(PassTable {
        label: def.label(),
        table,
        store,
    });
    Ok(Built::new(
        Capabilities::new()
            .with::<dyn PlainAuth>(auth.clone())
            .with::<dyn CredentialStore>(auth),
    ))
}

/// A password table, and the same table as a modifiable one when it is.
type Tables = (Arc<dyn Table>, Option<Arc<dyn MutableTable>>);

/// The table named at `node`'s argument `first`.
fn resolve_table(ctx: &mut Ctx<'_>, node: &Node, first: usize) -> Result<Tables, Errors> {
    let instance = ctx.instance_from(node, first, "table")?;
    let Some(table) = instance.caps.get::<dyn Table>() else {
        let what = match node.args.get(first) {
            Some(a) if a.value.starts_with('&') => {
                format!("{} is a {} module", a.value, instance.module)
            }
            _ => instance.module.to_owned(),
        };
        return Err(Errors::at(
            node.arg_pos(first),
            format!("{what}, which can't be used as a table"),
        ));
    };
    Ok((table, instance.caps.get::<dyn MutableTable>()))
}

struct PassTable {
    label: String,
    table: Arc<dyn Table>,
    store: Option<Arc<dyn MutableTable>>,
}

#[async_trait]
impl PlainAuth for PassTable {
    async fn authenticate(&self, username: &str, password: &str) -> Result<(), AuthError> {
        let stored = match username::normalize(username) {
            Ok(key) => self.table.lookup(&key).await.map_err(|e| {
                tracing::error!(module = "auth.pass_table", instance = %self.label, error = %e, "password table lookup failed");
                AuthError::Temporary(e.to_string())
            })?,
            Err(_) => None,
        };
        let known = stored.is_some();
        let password = password.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            hash::verify(stored.as_deref().unwrap_or(DUMMY_HASH), &password)
        })
        .await
        .map_err(|e| AuthError::Temporary(format!("password check failed: {e}")))?;
        match checked {
            Ok(true) if known => Ok(()),
            Ok(_) => Err(AuthError::InvalidCredentials),
            Err(e) => {
                // The stored value is broken: the operator must fix it. The client just fails.
                tracing::error!(
                    module = "auth.pass_table",
                    instance = %self.label,
                    username,
                    error = %e,
                    "can't check the password"
                );
                Err(AuthError::InvalidCredentials)
            }
        }
    }
}

impl CredentialStore for PassTable {
    fn password_table(&self) -> Option<Arc<dyn MutableTable>> {
        self.store.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_costs_what_real_ones_cost() {
        // Same algorithm and cost as the hashes `madmail creds` writes, and no password
        // anyone could send matches it in practice.
        assert!(DUMMY_HASH.starts_with("bcrypt:$2a$10$"));
        assert_eq!(hash::verify(DUMMY_HASH, ""), Ok(false));
        assert_eq!(hash::verify(DUMMY_HASH, "password"), Ok(false));
    }
}

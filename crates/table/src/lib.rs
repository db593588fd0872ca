//! Table modules, maddy's `table.*`: string lookups that other modules use for address
//! rewriting, domain lists, recipient checks and password storage.
//!
//! - `table.static { entry KEY VALUE... }`: a map written in the configuration.
//! - `table.file PATH`: maddy's `key: value` file, reloaded when it changes.
//! - `table.regexp REGEX [REPLACEMENT...]`: a regular expression with `$1` replacements.
//! - `table.chain { step ...; optional_step ... }`: tables applied one after another.
//! - `table.identity`, `table.email_localpart`, `table.email_localpart_optional`,
//!   `table.email_with_domain DOMAIN...`: small computed mappings.
//! - `table.sql_query` and `table.sql_table`: SQLite-backed tables; `sql_table` can be
//!   modified (it is where `madmail creds` stores password hashes).
//!
//! Every module offers [`madmail_module::table::Table`]; the SQL ones also offer
//! [`madmail_module::table::MutableTable`]. This crate must not know what the values mean (that
//! is the business of the modules using a table) and must not block the async runtime: SQLite
//! runs on blocking threads, file reloads read on blocking threads.

mod chain;
mod computed;
mod file;
mod regexp;
mod sql;
mod static_table;

use madmail_module::{Definition, Errors, Registry};

/// Registers every table module.
pub fn register(registry: &mut Registry) {
    registry.register(static_table::SPEC);
    registry.register(file::SPEC);
    registry.register(regexp::SPEC);
    registry.register(chain::SPEC);
    for spec in computed::SPECS {
        registry.register(spec);
    }
    registry.register(sql::SQL_QUERY_SPEC);
    registry.register(sql::SQL_TABLE_SPEC);
}

/// The module takes no inline arguments (`table.static` but not `table.static x`).
fn no_args(def: &Definition<'_>) -> Result<(), Errors> {
    match def.args.first() {
        Some(extra) => Err(Errors::at(
            &extra.pos,
            format!("{} takes no arguments", def.module),
        )),
        None => Ok(()),
    }
}

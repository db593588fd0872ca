//! Authentication against stored password hashes: maddy's `auth.pass_table` module, and the
//! credentials API behind `madmail creds` ([`creds`]).
//!
//! Hashes are maddy's formats byte for byte ([`hash`]), and usernames are normalised the way
//! maddy does (PRECIS `UsernameCaseMapped`), so a maddy `credentials.db` works unchanged.
//!
//! This crate must not store anything itself (tables do: `madmail-table`) and must not hash on
//! the async runtime: bcrypt and Argon2 run on blocking threads.

pub mod creds;
pub mod hash;
mod pass_table;
pub mod username;

use std::sync::Arc;

use madmail_module::table::MutableTable;
use madmail_module::{Capability, Registry};

/// Registers `auth.pass_table`.
pub fn register(registry: &mut Registry) {
    registry.register(pass_table::SPEC);
}

/// A capability of authentication modules whose passwords live in a table that `madmail creds`
/// can change (`auth.pass_table`). The table holds `username key → stored hash`; change it
/// through [`creds`], which hashes and normalises usernames.
pub trait CredentialStore: Send + Sync {
    /// The table of password hashes, or `None` when it can't be modified (e.g. `table.file`).
    fn password_table(&self) -> Option<Arc<dyn MutableTable>>;
}

impl Capability for dyn CredentialStore {
    const DESCRIPTION: &'static str = "a credentials store";
}

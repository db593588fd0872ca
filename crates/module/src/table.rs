//! The table interface: string-to-string lookups (static maps, files, regexps, SQL), used for
//! address rewriting, domain lists and password storage.

use async_trait::async_trait;

use crate::caps::Capability;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TableError(pub String);

#[async_trait]
pub trait Table: Send + Sync {
    /// The value for `key`, if there is one.
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError>;

    /// Every value for `key` (tables that map one key to several values override this).
    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        Ok(self.lookup(key).await?.into_iter().collect())
    }
}

/// A table that can be changed (used by `madmail creds`).
#[async_trait]
pub trait MutableTable: Table {
    async fn keys(&self) -> Result<Vec<String>, TableError>;
    async fn set(&self, key: &str, value: &str) -> Result<(), TableError>;
    /// Removes `key`; removing a key that does not exist is not an error.
    async fn remove(&self, key: &str) -> Result<(), TableError>;
}

impl Capability for dyn Table {
    const DESCRIPTION: &'static str = "a table";
}

impl Capability for dyn MutableTable {
    const DESCRIPTION: &'static str = "a modifiable table";
}

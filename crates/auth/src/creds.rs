//! Managing stored credentials, for `madmail creds create|list|remove|password`: maddy's
//! `creds` semantics over any modifiable table.
//!
//! ```ignore
//! let instance = /* the instance named by --cfg-block, default DEFAULT_BLOCK */;
//! let table = creds::table_of(&instance)?;
//! let user = creds::create(&*table, "Alice@example.org", &password).await?; // "alice@example.org"
//! ```
//!
//! Usernames are normalised as `auth.pass_table` does before they are used as keys; new
//! passwords are hashed with maddy's default (bcrypt, cost 10) unless [`create_with`] says
//! otherwise. Hashing runs on a blocking thread.

use std::sync::Arc;

use madmail_module::Instance;
use madmail_module::table::{MutableTable, TableError};

use crate::CredentialStore;
use crate::hash::{self, Hash, HashError};
use crate::username;

/// The configuration block `madmail creds` uses without `--cfg-block` (maddy's default).
pub const DEFAULT_BLOCK: &str = "local_authdb";

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("{0} is not a credentials store: name an auth.pass_table block or a modifiable table")]
    NotAStore(String),
    #[error(
        "the password table of {0} can't be modified (use table.sql_table, or table.sql_query with add, list, set and del queries)"
    )]
    ReadOnly(String),
    #[error("invalid username {username:?}: {reason}")]
    InvalidUsername { username: String, reason: String },
    #[error("user already exists: {0}")]
    AlreadyExists(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("password hashing failed: {0}")]
    Task(String),
}

/// The table `madmail creds` changes for `instance`: the password table of an
/// `auth.pass_table` block, or the instance itself if it is a modifiable table.
pub fn table_of(instance: &Instance) -> Result<Arc<dyn MutableTable>, CredsError> {
    let name = || format!("{} ({})", instance.label, instance.module);
    if let Some(store) = instance.caps.get::<dyn CredentialStore>() {
        return store
            .password_table()
            .ok_or_else(|| CredsError::ReadOnly(name()));
    }
    instance
        .caps
        .get::<dyn MutableTable>()
        .ok_or_else(|| CredsError::NotAStore(name()))
}

fn key(user: &str) -> Result<String, CredsError> {
    username::normalize(user).map_err(|reason| CredsError::InvalidUsername {
        username: user.to_owned(),
        reason,
    })
}

async fn compute(algorithm: Hash, password: &str) -> Result<String, CredsError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash::compute(algorithm, &password))
        .await
        .map_err(|e| CredsError::Task(e.to_string()))?
        .map_err(CredsError::from)
}

/// The users, sorted.
pub async fn list(table: &dyn MutableTable) -> Result<Vec<String>, CredsError> {
    let mut users = table.keys().await?;
    users.sort();
    Ok(users)
}

/// Adds `user` with `password` (bcrypt, cost 10); returns the stored username.
pub async fn create(
    table: &dyn MutableTable,
    user: &str,
    password: &str,
) -> Result<String, CredsError> {
    create_with(table, user, password, Hash::DEFAULT).await
}

/// [`create`] with another hash (maddy's `creds create --hash`).
pub async fn create_with(
    table: &dyn MutableTable,
    user: &str,
    password: &str,
    algorithm: Hash,
) -> Result<String, CredsError> {
    let key = key(user)?;
    if table.lookup(&key).await?.is_some() {
        return Err(CredsError::AlreadyExists(key));
    }
    let stored = compute(algorithm, password).await?;
    table.set(&key, &stored).await?;
    Ok(key)
}

/// Replaces the password of an existing user (bcrypt, cost 10, as maddy).
pub async fn set_password(
    table: &dyn MutableTable,
    user: &str,
    password: &str,
) -> Result<(), CredsError> {
    let key = existing(table, user).await?;
    let stored = compute(Hash::DEFAULT, password).await?;
    table.set(&key, &stored).await?;
    Ok(())
}

/// Removes an existing user.
pub async fn remove(table: &dyn MutableTable, user: &str) -> Result<(), CredsError> {
    let key = existing(table, user).await?;
    table.remove(&key).await?;
    Ok(())
}

async fn existing(table: &dyn MutableTable, user: &str) -> Result<String, CredsError> {
    let key = key(user)?;
    match table.lookup(&key).await? {
        Some(_) => Ok(key),
        None => Err(CredsError::NoSuchUser(key)),
    }
}

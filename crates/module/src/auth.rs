//! The authentication interface: checking a username and password (SMTP AUTH PLAIN/LOGIN).

use async_trait::async_trait;

use crate::caps::Capability;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong username or password (535 5.7.8). Never says which.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The backend failed (454 4.7.0): try again later.
    #[error("authentication backend failed: {0}")]
    Temporary(String),
}

#[async_trait]
pub trait PlainAuth: Send + Sync {
    async fn authenticate(&self, username: &str, password: &str) -> Result<(), AuthError>;
}

impl Capability for dyn PlainAuth {
    const DESCRIPTION: &'static str = "an authentication provider";
}

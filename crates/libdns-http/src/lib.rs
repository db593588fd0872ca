//! What every `libdns.<provider>` module that talks to an HTTP API shares, so each provider crate
//! holds only what is particular to its API:
//!
//! - [`HttpOptions`]: the `endpoint`, `timeout` and `retries` directives every HTTP provider
//!   takes, validated at configuration time;
//! - [`ApiClient`]: sends one API call, retrying rate limits (honouring `Retry-After`), server
//!   errors and lost connections with backoff, and turns what still fails into a
//!   [`DnsError`](madmail_dns::DnsError) naming the provider, the zone and the operation;
//! - [`build_provider`]: a module's build function around the provider's credentials;
//! - [`Secret`]: a credential that never reaches a log line or an error message;
//! - [`names`]: the longest zone holding a name, names relative to a zone, TXT quoting;
//! - `testing` (cargo feature `testing`, for tests only): a stand-in HTTP server that records
//!   every request, an in-memory zone store the stand-ins translate their API to, and the
//!   checks every provider must pass.
//!
//! It must not know any particular provider's API, and must not decide what a reply means
//! beyond its HTTP status: a provider decides whether "already exists" is success.

mod client;
mod module;
pub mod names;
mod options;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{ApiClient, Call, Failure, Reply};
pub use module::{ApiEndpoint, build_provider};
pub use options::{HttpOptions, parse_endpoint};
pub use secret::Secret;

/// Re-exported so provider crates build requests with the same reqwest as the client.
pub use reqwest;
pub use url::Url;

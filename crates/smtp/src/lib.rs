//! madmail's mail-receiving endpoints, configured as maddy's:
//!
//! - `smtp ADDR...` — the MX: ESMTP for mail addressed to this server; it never relays (its
//!   pipeline only reaches relaying targets through explicit `destination` rules) and offers
//!   AUTH only when an `auth` provider is configured;
//! - `submission ADDR...` — mail from users: AUTH is required before MAIL;
//! - `lmtp ADDR...` — LMTP (RFC 2033): one reply per recipient after the message;
//! - `limits NAME { ... }` — rate and concurrency limits shared by endpoints (`limits &NAME`).
//!
//! Each endpoint speaks ESMTP with PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, SIZE,
//! CHUNKING (BDAT), STARTTLS (`tcp://`) or implicit TLS (`tls://`), AUTH PLAIN and LOGIN and
//! LIMITS (RFC 9422), then hands every message, with a `Received:` trace header, to its
//! message pipeline (`madmail-pipeline`) built from the rest of its block. Each endpoint
//! registers its [`Counters`] with the configuration's metrics (`madmail_smtp_*`, labelled
//! `endpoint` and `listen`), which the `openmetrics` endpoint serves.
//!
//! This crate must not route or store mail (the pipeline and targets do) nor build TLS
//! configurations itself (`madmail-tls` does); it owns the protocol and its defences: bounded
//! lines and messages, plaintext dropped at STARTTLS, error budgets, connection and message
//! limits, timeouts.

mod config;
mod conn;
mod limits;
mod message;
mod metrics;
mod server;
mod session;
mod tls;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use madmail_module::{Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};

pub use limits::Limits;
pub use metrics::{Counters, CountersSnapshot};

use config::Protocol;

/// Registers `smtp`, `submission`, `lmtp` and `limits`.
pub fn register(registry: &mut Registry) {
    registry.register(ModuleSpec {
        name: "smtp",
        kind: Kind::Endpoint,
        build: build_smtp,
        summary: "SMTP server for incoming mail (MX)",
    });
    registry.register(ModuleSpec {
        name: "submission",
        kind: Kind::Endpoint,
        build: build_submission,
        summary: "SMTP message submission server (authentication required)",
    });
    registry.register(ModuleSpec {
        name: "lmtp",
        kind: Kind::Endpoint,
        build: build_lmtp,
        summary: "LMTP server (per-recipient delivery status)",
    });
    registry.register(limits::SPEC);
}

fn build_smtp(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build(Protocol::Smtp, def, ctx)
}

fn build_submission(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build(Protocol::Submission, def, ctx)
}

fn build_lmtp(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build(Protocol::Lmtp, def, ctx)
}

fn build(protocol: Protocol, def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let runtime_dir = ctx.globals().runtime_dir.clone();
    let addrs = config::listen_addresses(def, &runtime_dir);
    let settings = config::decode(protocol, def, addrs.as_deref().unwrap_or(&[]), ctx);
    let (addrs, settings) = match (addrs, settings) {
        (Ok(a), Ok(s)) => (a, s),
        (a, s) => {
            let mut errors = Errors::new();
            if let Err(e) = a {
                errors.extend(e);
            }
            if let Err(e) = s {
                errors.extend(e);
            }
            return Err(errors);
        }
    };
    let counters = settings.counters.clone();
    let listen = def
        .args
        .iter()
        .map(|a| a.value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    ctx.globals()
        .metrics
        .register(Arc::new(metrics::EndpointCollector::new(
            protocol.name(),
            listen,
            counters.clone(),
        )));
    let endpoint = Arc::new(server::Endpoint::new(Arc::new(settings), addrs));
    Ok(Built::new(Capabilities::new().with::<Counters>(counters)).with_lifecycle(endpoint))
}

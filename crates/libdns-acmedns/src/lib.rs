//! `libdns.acmedns`: publishes dns-01 TXT values through an [acme-dns] server, as maddy's
//! module of the same name:
//!
//! ```text
//! dns acmedns {
//!     username 8e5700ea-a4bf-41c7-8a77-e990661dcc6a
//!     password {env:ACMEDNS_PASSWORD}
//!     subdomain 145bd2ca-1e0a-4b1a-8ac0-dd3d2fb3e1d5
//!     server_url https://auth.acme-dns.io
//! }
//! ```
//!
//! The credentials are those `POST /register` returned; every name of the certificate needs
//! `_acme-challenge.NAME. CNAME SUBDOMAIN.ACME-DNS-DOMAIN.` in its own zone, and the
//! propagation check follows that CNAME. acme-dns serves one fixed name per account with the
//! two values posted last, and has no listing and no deletion: `zone_for` names the
//! challenge name itself (no lookup), `delete` only forgets the value (a later update replaces
//! it), and `append` refuses to push out a value still in use.
//!
//! It only posts TXT values to `/update` and never logs the password.
//!
//! [acme-dns]: https://github.com/acme-dns/acme-dns

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use madmail_config::{Error, Node};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{ApiClient, Call, HttpOptions, Secret, Url, names, parse_endpoint};
use madmail_module::decode::single;
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};
use serde::{Deserialize, Serialize};

const PROVIDER: &str = "acmedns";
/// How many TXT values an acme-dns account serves at once: each update replaces the older.
const SLOTS: usize = 2;
/// acme-dns dates updates in whole seconds and replaces the value with the earliest date; two
/// updates within one second tie, and then the one replaced is not necessarily the older. An
/// update is sent at least this long after the reply to the one before, so dates always differ.
const UPDATE_SPACING: Duration = Duration::from_secs(1);

/// Registers `libdns.acmedns`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.acmedns",
    kind: Kind::Named,
    build,
    summary: "DNS provider: acme-dns server (account from /register)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    if let Some(extra) = def.args.first() {
        errors.push(Error::at(
            &extra.pos,
            format!("{} takes no arguments, only a block", def.module),
        ));
    }
    let mut block = Block::new(def.node, ctx.globals());
    let username = block.custom("username", Secret::from_node).required();
    let password = block.custom("password", Secret::from_node).required();
    let subdomain = block.custom("subdomain", parse_subdomain).required();
    // maddy's name for the server; `endpoint` is not accepted, so a block means the same to
    // both.
    let server_url = block.custom("server_url", parse_server_url).required();
    let timeout = block.duration("timeout").optional();
    let retries = block.int::<u32>("retries").optional();
    if timeout.is_some_and(|t| t.is_zero())
        && let Some(node) = def.node.children().iter().find(|n| n.name == "timeout")
    {
        block.error(Error::at(node.arg_pos(0), "timeout must be longer than 0"));
    }
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let (Some(username), Some(password), Some(subdomain), Some(server_url)) =
        (username, password, subdomain, server_url)
    else {
        return Err(errors);
    };
    errors.into_result(())?;
    let mut options = HttpOptions::with_endpoint(server_url);
    options.timeout = timeout.unwrap_or(options.timeout);
    options.retries = retries.unwrap_or(options.retries);
    let account = Account {
        username,
        password,
        subdomain,
    };
    let provider = AcmeDns::new(account, &options)
        .map_err(|e| Errors::at(&def.node.pos, format!("{}: {e}", def.module)))?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(Arc::new(provider)),
    ))
}

fn parse_server_url(node: &Node) -> Result<Url, Error> {
    parse_endpoint(single(node)?).map_err(|e| {
        Error::at(
            node.arg_pos(0),
            format!("server_url: {e}; expected the acme-dns server's URL such as https://auth.acme-dns.io"),
        )
    })
}

/// The account's subdomain: one DNS label, as acme-dns checks it
/// (`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`).
fn parse_subdomain(node: &Node) -> Result<String, Error> {
    let value = single(node)?;
    let bytes = value.as_bytes();
    let valid = (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if valid {
        Ok(value.to_owned())
    } else {
        Err(Error::at(
            node.arg_pos(0),
            format!(
                "subdomain {value:?} is not a DNS label: expected the subdomain acme-dns returned at registration"
            ),
        ))
    }
}

/// An acme-dns account, as `POST /register` returned it.
#[derive(Debug, Clone)]
pub struct Account {
    /// `X-Api-User` (a UUID).
    pub username: Secret,
    /// `X-Api-Key` (40 characters).
    pub password: Secret,
    /// The label under the acme-dns server's domain that serves the values.
    pub subdomain: String,
}

/// One acme-dns account on one server.
#[derive(Debug)]
pub struct AcmeDns {
    client: ApiClient,
    account: Account,
    /// Held across an update, so updates of one account go one at a time.
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// What the account serves, as far as this process knows: the values posted last, oldest
    /// first.
    slots: VecDeque<Slot>,
    /// When the last update's reply came.
    last_update: Option<tokio::time::Instant>,
}

#[derive(Debug)]
struct Slot {
    value: String,
    /// Presented and not yet cleaned up: a challenge may be reading it.
    in_use: bool,
}

#[derive(Debug, Serialize)]
struct Update<'a> {
    subdomain: &'a str,
    txt: &'a str,
}

#[derive(Debug, Deserialize)]
struct Updated {
    txt: String,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    error: String,
}

impl AcmeDns {
    pub fn new(account: Account, options: &HttpOptions) -> Result<AcmeDns, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(AcmeDns {
            client,
            account,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// `POST /update` with `value`.
    async fn update(&self, call: &Call<'_>, value: &str) -> Result<(), DnsError> {
        let url = self.client.url(call, "update")?;
        let body = serde_json::to_vec(&Update {
            subdomain: &self.account.subdomain,
            txt: value,
        })
        .map_err(|e| {
            self.client
                .failed(call, format!("encoding the update: {e}"))
        })?;
        let updated: Updated = self
            .client
            .json(call, |http| {
                http.post(url.clone())
                    .header("x-api-user", self.account.username.expose())
                    .header("x-api-key", self.account.password.expose())
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        if updated.txt != value {
            return Err(self
                .client
                .failed(call, format!("the server stored {:?} instead", updated.txt)));
        }
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for AcmeDns {
    fn name(&self) -> &str {
        PROVIDER
    }

    /// The name itself: acme-dns has no zones to choose from (the value goes to the account's
    /// one name whatever the zone), and the name is what the CNAME delegates.
    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = names::bare(fqdn);
        if name.is_empty() {
            return Err(DnsError::NoZone {
                provider: PROVIDER.into(),
                name: fqdn.into(),
            });
        }
        Ok(format!("{name}."))
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("update TXT value", zone);
        let mut state = self.state.lock().await;
        if let Some(slot) = state.slots.iter_mut().find(|s| s.value == record.value) {
            // Served already: posting it again would push out the other value.
            slot.in_use = true;
            return Ok(());
        }
        if state.slots.len() >= SLOTS && state.slots.front().is_some_and(|s| s.in_use) {
            return Err(self.client.failed(
                &call,
                format!(
                    "an acme-dns account serves {SLOTS} TXT values at once and updating it now \
                     would replace one still in use; give at most {SLOTS} names of a certificate \
                     to one account"
                ),
            ));
        }
        if let Some(last) = state.last_update {
            tokio::time::sleep_until(last + UPDATE_SPACING).await;
        }
        let updated = self.update(&call, &record.value).await;
        // Also after a failure: the update may have been stored all the same.
        state.last_update = Some(tokio::time::Instant::now());
        updated?;
        tracing::debug!(
            provider = PROVIDER,
            name = %record.fqdn,
            subdomain = self.account.subdomain,
            "TXT value posted"
        );
        state.slots.push_back(Slot {
            value: record.value.clone(),
            in_use: true,
        });
        while state.slots.len() > SLOTS {
            state.slots.pop_front();
        }
        Ok(())
    }

    /// acme-dns cannot delete a value: it stays until a later update replaces it. This only
    /// lets that update happen.
    async fn delete(&self, _zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let mut state = self.state.lock().await;
        if let Some(slot) = state
            .slots
            .iter_mut()
            .find(|s| s.in_use && s.value == record.value)
        {
            slot.in_use = false;
        }
        Ok(())
    }
}

/// acme-dns's error codes (`{"error": "forbidden"}`) with what they mean.
fn error_message(body: &[u8]) -> Option<String> {
    let code = serde_json::from_slice::<ApiError>(body).ok()?.error;
    let meaning = match code.as_str() {
        "forbidden" => {
            "wrong username or password, a subdomain of another account, or a client address \
             outside the account's allowfrom"
        }
        "bad_txt" => {
            "acme-dns takes only ACME challenge values (43 characters of A-Z, a-z, 0-9, - and _)"
        }
        "bad_subdomain" => "the subdomain is not a valid DNS label",
        "db_error" => "the server could not write its database",
        _ => return Some(code),
    };
    Some(format!("{code}: {meaning}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error": "bad_txt"}"#).as_deref(),
            Some(
                "bad_txt: acme-dns takes only ACME challenge values (43 characters of A-Z, a-z, 0-9, - and _)"
            )
        );
        assert_eq!(
            error_message(br#"{"error": "new_code"}"#).as_deref(),
            Some("new_code")
        );
        assert_eq!(error_message(b"404 page not found"), None);
    }
}

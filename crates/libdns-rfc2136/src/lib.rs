//! `libdns.rfc2136`: a DNS provider for dns-01 that publishes TXT records with RFC 2136 dynamic
//! updates, signed with a TSIG key (RFC 8945), to any server accepting them (BIND, Knot,
//! PowerDNS, Windows DNS...). Configured like maddy's module of the same name:
//!
//! ```text
//! dns rfc2136 {
//!     server ns1.example.org:53
//!     key_name acme.
//!     key "base64 secret from tsig-keygen"
//!     key_alg hmac-sha256
//! }
//! ```
//!
//! It only adds and removes single TXT records: it must never replace or delete other data of
//! a zone, and never log or print the key.
//!
//! With the cargo feature `testing` (for tests only), the module `testing` starts a real
//! BIND 9 to update: the zones and TSIG keys a test describes, on a random loopback port.

#[cfg(feature = "testing")]
pub mod testing;
mod update;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use madmail_config::{Error, Node};
use madmail_dns::{DnsProvider, ServerAddr};
use madmail_module::decode::single;
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};

use crate::update::Rfc2136;

/// Registers `libdns.rfc2136`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.rfc2136",
    kind: Kind::Named,
    build,
    summary: "DNS provider: RFC 2136 dynamic updates signed with TSIG",
};

/// How long one update may take when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// TSIG's allowed clock difference between us and the server (RFC 8945 recommends 300 s).
const FUDGE_SECONDS: u16 = 300;

/// The secret in the configuration: standard base64, as `tsig-keygen` prints it, with or
/// without padding.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    if let Some(extra) = def.args.first() {
        errors.push(Error::at(
            &extra.pos,
            format!("{} takes no arguments, only a block", def.module),
        ));
    }
    let mut block = Block::new(def.node, ctx.globals());
    let server = block
        .custom("server", |n| {
            let value = single(n)?;
            ServerAddr::parse(value).map_err(|e| Error::at(n.arg_pos(0), format!("server: {e}")))
        })
        .required();
    let key_name = block.custom("key_name", parse_key_name).optional();
    let key = block.custom("key", parse_key).optional();
    let key_alg = block.custom("key_alg", parse_algorithm).optional();
    let zone = block
        .custom("zone", |n| {
            let value = single(n)?;
            madmail_dns::absolute_name(value)
                .map_err(|e| Error::at(n.arg_pos(0), format!("zone: {e}")))
        })
        .optional();
    let timeout = block.duration("timeout").default(DEFAULT_TIMEOUT);
    if let Err(e) = block.finish() {
        errors.extend(e);
    }

    let directive = |name: &str| def.node.children().iter().find(|n| n.name == name);
    if timeout.is_zero()
        && let Some(node) = directive("timeout")
    {
        errors.push(Error::at(node.arg_pos(0), "timeout must be longer than 0"));
    }
    // The key's parts go together. Whether each is present (valid or not) decides, so a bad
    // value is reported once, not also as missing.
    let present = |name: &str| directive(name).map(|n| n.pos.clone());
    match (present("key_name"), present("key")) {
        (None, Some(pos)) => errors.push(Error::at(
            &pos,
            "key needs key_name: the name the server knows the key by (e.g. acme.)",
        )),
        (Some(pos), None) => errors.push(Error::at(&pos, "key_name needs key: the key's secret")),
        (None, None) => {
            if let Some(pos) = present("key_alg") {
                errors.push(Error::at(&pos, "key_alg needs key and key_name"));
            }
        }
        (Some(_), Some(_)) => {}
    }
    let signer = match (key_name, key) {
        (Some(name), Some(secret)) => {
            let algorithm = key_alg.unwrap_or(TsigAlgorithm::HmacSha256);
            match TSigner::new(secret, algorithm, name, FUDGE_SECONDS) {
                Ok(signer) => Some(signer),
                Err(e) => {
                    errors.push(Error::at(&def.node.pos, format!("TSIG key: {e}")));
                    None
                }
            }
        }
        _ => None,
    };
    let Some(server) = server else {
        return Err(errors);
    };
    errors.into_result(())?;
    let provider = Rfc2136::new(server, signer, zone, timeout);
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(Arc::new(provider)),
    ))
}

fn parse_key_name(n: &Node) -> Result<Name, Error> {
    let value = single(n)?;
    madmail_dns::absolute_name(value)
        .and_then(|name| Name::from_ascii(&name).map_err(|e| e.to_string()))
        .map_err(|e| Error::at(n.arg_pos(0), format!("key_name: {e}")))
}

/// Decodes the secret. Errors never quote it.
fn parse_key(n: &Node) -> Result<Vec<u8>, Error> {
    let value = single(n)?;
    match KEY_BASE64.decode(value.trim()) {
        Ok(secret) if secret.is_empty() => Err(Error::at(n.arg_pos(0), "key is empty")),
        Ok(secret) => Ok(secret),
        Err(e) => Err(Error::at(
            n.arg_pos(0),
            format!(
                "key is not valid base64 ({}); use the secret tsig-keygen prints",
                base64_problem(&e)
            ),
        )),
    }
}

/// What is wrong with the base64, without the offending byte (it is part of the secret).
fn base64_problem(e: &base64::DecodeError) -> &'static str {
    match e {
        base64::DecodeError::InvalidByte(..) => "a character outside the base64 alphabet",
        base64::DecodeError::InvalidLength(_) => "wrong length",
        base64::DecodeError::InvalidLastSymbol(..) => "bad last character",
        base64::DecodeError::InvalidPadding => "bad padding",
    }
}

/// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`, in any case, with or without the trailing dot
/// of the DNS name form (`hmac-sha256.`), as maddy (through libdns) accepts them.
fn parse_algorithm(n: &Node) -> Result<TsigAlgorithm, Error> {
    let value = single(n)?;
    let normalized = value.to_ascii_lowercase();
    let normalized = normalized.strip_suffix('.').unwrap_or(&normalized);
    match normalized {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        "hmac-md5" | "hmac-md5.sig-alg.reg.int" | "hmac-sha1" | "hmac-sha224" => Err(Error::at(
            n.arg_pos(0),
            format!(
                "key_alg {value} is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512 \
                 (tsig-keygen -a hmac-sha256 NAME makes a new key)"
            ),
        )),
        _ => Err(Error::at(
            n.arg_pos(0),
            format!("unknown key_alg {value:?}; use hmac-sha256, hmac-sha384 or hmac-sha512"),
        )),
    }
}

//! Tables that compute their value from the key: `table.identity`, `table.email_localpart`,
//! `table.email_localpart_optional` and `table.email_with_domain DOMAIN...`.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::table::{Table, TableError};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};

pub const SPECS: [ModuleSpec; 4] = [
    ModuleSpec {
        name: "table.identity",
        kind: Kind::Named,
        build: build_identity,
        summary: "table mapping every key to itself",
    },
    ModuleSpec {
        name: "table.email_localpart",
        kind: Kind::Named,
        build: build_localpart,
        summary: "table mapping an address to its local part",
    },
    ModuleSpec {
        name: "table.email_localpart_optional",
        kind: Kind::Named,
        build: build_localpart,
        summary: "table mapping an address to its local part, other keys to themselves",
    },
    ModuleSpec {
        name: "table.email_with_domain",
        kind: Kind::Named,
        build: build_with_domain,
        summary: "table mapping a local part to addresses at the given domains",
    },
];

fn no_directives(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<(), Errors> {
    let mut errors = Errors::new();
    if let Err(e) = crate::no_args(def) {
        errors.extend(e);
    }
    if let Err(e) = Block::new(def.node, ctx.globals()).finish() {
        errors.extend(e);
    }
    errors.into_result(())
}

fn build_identity(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    no_directives(def, ctx)?;
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(Identity)),
    ))
}

fn build_localpart(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    no_directives(def, ctx)?;
    let table = EmailLocalpart {
        keep_non_email: def.module == "table.email_localpart_optional",
    };
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(table)),
    ))
}

fn build_with_domain(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    if let Err(e) = Block::new(def.node, ctx.globals()).finish() {
        errors.extend(e);
    }
    if def.args.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            "table.email_with_domain needs at least one domain: table.email_with_domain DOMAIN...",
        ));
    }
    for arg in def.args {
        if !valid_domain(arg) {
            errors.push(Error::at(
                &arg.pos,
                format!("invalid domain {:?}", arg.value),
            ));
        }
    }
    errors.into_result(())?;
    let table = EmailWithDomain {
        domains: def.args.iter().map(|a| a.value.clone()).collect(),
    };
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(table)),
    ))
}

struct Identity;

#[async_trait]
impl Table for Identity {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(Some(key.to_owned()))
    }
}

struct EmailLocalpart {
    /// `table.email_localpart_optional`: a key that is not an address maps to itself.
    keep_non_email: bool,
}

#[async_trait]
impl Table for EmailLocalpart {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        match split(key).and_then(|(local, _)| unquote_local(local)) {
            Some(local) => Ok(Some(local)),
            None if self.keep_non_email => Ok(Some(key.to_owned())),
            None => Ok(None),
        }
    }
}

struct EmailWithDomain {
    domains: Vec<String>,
}

#[async_trait]
impl Table for EmailWithDomain {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.lookup_multi(key).await?.into_iter().next())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        let local = quote_local(key);
        Ok(self
            .domains
            .iter()
            .map(|domain| format!("{local}@{domain}"))
            .collect())
    }
}

/// Splits an address at its last `@` (maddy's `address.Split`): `postmaster` alone is an
/// address without a domain; otherwise both parts must be non-empty.
fn split(address: &str) -> Option<(&str, &str)> {
    if address.eq_ignore_ascii_case("postmaster") {
        return Some((address, ""));
    }
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
}

/// Undoes the quoting of a local part (`"a b"` to `a b`, `"a\"b"` to `a"b`), as maddy's
/// `address.UnquoteMbox`. `None` for malformed quoting.
fn unquote_local(local: &str) -> Option<String> {
    let mut out = String::with_capacity(local.len());
    let (mut quoted, mut escaped, mut closed) = (false, false, false);
    for ch in local.chars() {
        if closed {
            return None; // the closing quote must end the local part
        }
        match ch {
            '"' if !escaped => {
                quoted = !quoted;
                closed = !quoted;
                continue;
            }
            '\\' if !escaped => {
                if !quoted {
                    return None;
                }
                escaped = true;
                continue;
            }
            '@' if !quoted => return None,
            _ => {}
        }
        escaped = false;
        out.push(ch);
    }
    (!out.is_empty()).then_some(out)
}

/// Quotes a local part when it contains specials (maddy's `address.QuoteMbox`).
fn quote_local(local: &str) -> String {
    const SPECIALS: &[char] = &[
        '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"', ' ',
    ];
    if !local.contains(SPECIALS) {
        return local.to_owned();
    }
    let mut out = String::with_capacity(local.len() + 2);
    out.push('"');
    for ch in local.chars() {
        if ch == '\\' || ch == '"' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// maddy's `address.ValidDomain`, without IDNA conversion for the label lengths.
fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && !domain.starts_with('.')
        && !domain.contains("..")
        && domain.split('.').all(|label| label.len() <= 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_helpers() {
        assert_eq!(split("a@b@example.org"), Some(("a@b", "example.org")));
        assert_eq!(split("PostMaster"), Some(("PostMaster", "")));
        assert_eq!(split("@example.org"), None);
        assert_eq!(split("user@"), None);
        assert_eq!(split("user"), None);
        assert_eq!(unquote_local("test").as_deref(), Some("test"));
        assert_eq!(unquote_local("\"test @ a\"").as_deref(), Some("test @ a"));
        assert_eq!(unquote_local("\"a\\\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(unquote_local("\"a\"b"), None);
        assert_eq!(unquote_local("a\\b"), None);
        assert_eq!(quote_local("user"), "user");
        assert_eq!(quote_local("a b"), "\"a b\"");
        assert_eq!(quote_local("a\"b"), "\"a\\\"b\"");
        assert!(valid_domain("example.org"));
        assert!(!valid_domain(".example.org"));
        assert!(!valid_domain("a..b"));
        assert!(!valid_domain(""));
    }
}

//! `table.regexp REGEX [REPLACEMENT...] { full_match; case_insensitive; expand_replaceholders }`:
//! a key that matches the regular expression maps to the replacements, with `$1`, `${name}`
//! expanded from the match (Go's `Regexp.Expand` rules, which the `regex` crate shares).
//!
//! Two deliberate differences from maddy 0.9's code, both following maddy's documentation:
//! without a replacement a matching key maps to itself (maddy's code returns nothing, which
//! makes the documented "match check" use impossible), and `full_match` anchors the whole
//! expression (`^(?:a|b)$`), where maddy's prepends `^` and appends `$` textually, so that
//! `a|b` became `^a|b$`. The directive is `expand_replaceholders` in maddy's code and
//! `expand_placeholders` in its documentation; both are accepted.

use std::sync::Arc;

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::table::{Table, TableError};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};
use regex::{Regex, RegexBuilder};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "table.regexp",
    kind: Kind::Named,
    build,
    summary: "table matching keys against a regular expression, with $1 replacements",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    let mut block = Block::new(def.node, ctx.globals());
    let full_match = block.flag("full_match").default(true);
    let case_insensitive = block.flag("case_insensitive").default(true);
    let expand_code = block.flag("expand_replaceholders").optional();
    let expand_docs = block.flag("expand_placeholders").optional();
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    if expand_code.is_some() && expand_docs.is_some() {
        errors.push(Error::at(
            &def.node.pos,
            "give only one of expand_replaceholders and expand_placeholders (they are the same)",
        ));
    }
    let expand = expand_code.or(expand_docs).unwrap_or(true);

    let Some((pattern, replacements)) = def.args.split_first() else {
        errors.push(Error::at(
            &def.node.pos,
            "table.regexp needs a regular expression: table.regexp REGEX [REPLACEMENT...]",
        ));
        return Err(errors);
    };
    // The pattern alone first, so that an error quotes what the operator wrote.
    let regex = match Regex::new(&pattern.value) {
        Ok(_) => {
            let source = if full_match {
                format!("^(?:{})$", pattern.value)
            } else {
                pattern.value.clone()
            };
            RegexBuilder::new(&source)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let regex = match regex {
        Ok(regex) => Some(regex),
        Err(e) => {
            errors.push(Error::at(
                &pattern.pos,
                format!("invalid regular expression: {e}"),
            ));
            None
        }
    };
    errors.into_result(())?;
    let Some(regex) = regex else {
        return Err(Errors::new());
    };
    let table = RegexpTable {
        regex,
        replacements: replacements.iter().map(|r| r.value.clone()).collect(),
        expand,
    };
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(table)),
    ))
}

struct RegexpTable {
    regex: Regex,
    /// Empty: a matching key maps to itself.
    replacements: Vec<String>,
    expand: bool,
}

impl RegexpTable {
    fn values(&self, key: &str) -> Vec<String> {
        let Some(captures) = self.regex.captures(key) else {
            return Vec::new();
        };
        if self.replacements.is_empty() {
            return vec![key.to_owned()];
        }
        self.replacements
            .iter()
            .map(|replacement| {
                if self.expand {
                    let mut out = String::new();
                    captures.expand(replacement, &mut out);
                    out
                } else {
                    replacement.clone()
                }
            })
            .collect()
    }
}

#[async_trait]
impl Table for RegexpTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.values(key).into_iter().next())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        Ok(self.values(key))
    }
}

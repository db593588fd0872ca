//! Helpers for testing modules against configuration text, shared by every module crate's tests.

use madmail_config::{Environment, parse_str};

use crate::{Errors, Loaded, Registry, load};

/// Parses `text` as the file `test.conf` (with an empty environment) and builds it.
pub fn load_str(registry: &Registry, text: &str) -> Result<Loaded, Errors> {
    let nodes =
        parse_str("test.conf".as_ref(), text, &Environment::empty()).map_err(Errors::from)?;
    load(registry, &nodes)
}

/// Errors as `LINE:COL: message` lines, in file order: what tests compare.
pub fn error_lines(errors: Errors) -> Vec<String> {
    errors
        .into_sorted()
        .into_iter()
        .map(|e| {
            let pos = e
                .pos()
                .map(|p| format!("{}:{}", p.line(), p.col()))
                .unwrap_or_default();
            format!("{pos}: {}", e.message())
        })
        .collect()
}

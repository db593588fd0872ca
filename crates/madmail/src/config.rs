//! Reading and building the configuration file, and reporting its errors.

use std::path::Path;

use madmail_config::{Environment, Error, Node, parse_file};
use madmail_module::{Loaded, load};

use crate::modules;

pub struct Config {
    pub nodes: Vec<Node>,
    pub loaded: Loaded,
}

/// Parses and builds the configuration at `path`: every error found, sorted by position.
pub fn read(path: &Path) -> Result<Config, Vec<Error>> {
    let nodes = parse_file(path, &Environment::Process).map_err(|e| vec![e])?;
    let loaded = load(&modules::registry(), &nodes).map_err(|e| e.into_sorted())?;
    Ok(Config { nodes, loaded })
}

/// Errors as a compiler prints them: `FILE:LINE:COL: message`, the line, a caret.
pub fn render(errors: &[Error]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str("error: ");
        out.push_str(&e.render());
        out.push('\n');
    }
    if errors.len() > 1 {
        out.push_str(&format!("{} errors\n", errors.len()));
    }
    out
}

//! Writing a tree back out: the JSON form maddy's conformance corpus uses, and canonical
//! configuration text that parses back to the same tree.

use serde::Serialize;

use crate::{Error, Node};

#[derive(Serialize)]
struct JsonNode<'a> {
    name: &'a str,
    args: Vec<&'a str>,
    children: Option<Vec<JsonNode<'a>>>,
    line: u32,
}

fn json_nodes(nodes: &[Node]) -> Vec<JsonNode<'_>> {
    nodes
        .iter()
        .map(|n| JsonNode {
            name: &n.name,
            args: n.arg_values(),
            children: n.children.as_deref().map(json_nodes),
            line: n.pos.line(),
        })
        .collect()
}

/// The tree as a JSON array of `{"name", "args", "children", "line"}` objects (`children` is
/// null for a directive without a block).
pub fn to_json(nodes: &[Node]) -> serde_json::Value {
    serde_json::to_value(json_nodes(nodes)).unwrap_or(serde_json::Value::Null)
}

/// Canonical configuration text: one directive per line, blocks indented by a tab, arguments
/// quoted only when they must be. Fails for an argument the language cannot express: a `{` or
/// `}` argument, a lone `\` as the last argument (before a block too: the parser looks at the
/// arguments after the block is read), or one that must be quoted but has an odd run of
/// backslashes before a `"` or at its end.
pub fn to_text(nodes: &[Node]) -> Result<String, Error> {
    let mut out = String::new();
    write_nodes(&mut out, nodes, 0)?;
    Ok(out)
}

fn write_nodes(out: &mut String, nodes: &[Node], depth: usize) -> Result<(), Error> {
    for node in nodes {
        out.push_str(&"\t".repeat(depth));
        out.push_str(&node.name);
        for (i, arg) in node.args.iter().enumerate() {
            let last = i + 1 == node.args.len();
            out.push(' ');
            out.push_str(&quote(&arg.value, last).ok_or_else(|| {
                Error::at(
                    &arg.pos,
                    format!(
                        "argument {:?} can't be written as configuration text",
                        arg.value
                    ),
                )
            })?);
        }
        match &node.children {
            None => out.push('\n'),
            Some(children) => {
                out.push_str(" {\n");
                write_nodes(out, children, depth + 1)?;
                out.push_str(&"\t".repeat(depth));
                out.push_str("}\n");
            }
        }
    }
    Ok(())
}

fn quote(value: &str, last: bool) -> Option<String> {
    if value == "{" || value == "}" || (value == "\\" && last) {
        return None;
    }
    let needs_quotes = value.is_empty()
        || value.starts_with('"')
        || value.contains(|c: char| c.is_whitespace() || c == '#');
    if !needs_quotes {
        return Some(value.to_owned());
    }
    // Inside quotes `\"` is the only escape and any other backslash is kept together with the
    // character after it, so a run of backslashes comes through intact before an (escaped) `"`
    // or the closing quote only if its length is even.
    let mut run = 0;
    for c in value.chars().chain(std::iter::once('"')) {
        match c {
            '\\' => run += 1,
            '"' if run % 2 == 1 => return None,
            _ => run = 0,
        }
    }
    Some(format!("\"{}\"", value.replace('"', "\\\"")))
}

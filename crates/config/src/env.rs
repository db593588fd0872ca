//! `{env:NAME}` expansion, the last step of reading a configuration, as maddy does it: every
//! `{env:NAME}` of a set variable is replaced by its value; what remains of the form
//! `{env:...}` is then removed (so an unset variable is an empty string).

use std::collections::HashMap;

use crate::Node;

pub(crate) fn expand(nodes: Vec<Node>, env: &HashMap<String, String>) -> Vec<Node> {
    nodes
        .into_iter()
        .map(|mut node| {
            node.name = expand_str(&node.name, env);
            for arg in &mut node.args {
                if arg.value.contains("{env:") {
                    arg.value = expand_str(&arg.value, env);
                }
            }
            node.children = node.children.map(|c| expand(c, env));
            node
        })
        .collect()
}

const OPEN: &str = "{env:";

pub(crate) fn expand_str(s: &str, env: &HashMap<String, String>) -> String {
    remove_unexpanded(&substitute(s, env))
}

/// Replaces `{env:NAME}` where NAME is set. Replaced text is not scanned again.
fn substitute(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let value = after
            .find('}')
            .and_then(|end| Some((end, env.get(&after[..end])?)));
        match value {
            Some((end, value)) => {
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes what maddy's `{env:([^\$]+)}` matches: from `{env:` to the last `}` before the next
/// `$` (the regex is greedy), with at least one character in between.
fn remove_unexpanded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let run = &after[..after.find('$').unwrap_or(after.len())];
        match run.rfind('}') {
            Some(end) if end > 0 => {
                out.push_str(&rest[..start]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_unset_and_greedy_removal() {
        let env = HashMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand_str("x{env:A}y", &env), "x1y");
        assert_eq!(expand_str("x{env:B}y", &env), "xy");
        // The removal regex is greedy: it runs to the last `}` before a `$`.
        assert_eq!(expand_str("{env:B}-{env:C}", &env), "");
        assert_eq!(expand_str("{env:B}$x}", &env), "$x}");
        assert_eq!(expand_str("{env:}", &env), "{env:}");
        assert_eq!(expand_str("{env:A}{env:B}", &env), "1");
    }
}

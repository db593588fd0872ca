//! Property tests: `dump::to_text` round-trips every tree the language can express, refuses
//! exactly the ones it cannot, and the parser turns arbitrary token soup into a tree or an
//! error that points at a place, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure should just fail them

use std::path::{Path, PathBuf};

use madmail_config::{Arg, Environment, Node, Pos, dump, parse_str};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Trees without positions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    name: String,
    args: Vec<String>,
    children: Option<Vec<Tree>>,
}

fn to_nodes(trees: &[Tree]) -> Vec<Node> {
    let pos = Pos::synthetic("generated");
    trees
        .iter()
        .map(|t| Node {
            name: t.name.clone(),
            args: t
                .args
                .iter()
                .map(|a| Arg {
                    value: a.clone(),
                    pos: pos.clone(),
                })
                .collect(),
            children: t.children.as_deref().map(to_nodes),
            pos: pos.clone(),
        })
        .collect()
}

fn from_nodes(nodes: &[Node]) -> Vec<Tree> {
    nodes
        .iter()
        .map(|n| Tree {
            name: n.name.clone(),
            args: n.args.iter().map(|a| a.value.clone()).collect(),
            children: n.children.as_deref().map(from_nodes),
        })
        .collect()
}

fn all_args(trees: &[Tree]) -> Vec<&str> {
    let mut out = Vec::new();
    for t in trees {
        out.extend(t.args.iter().map(String::as_str));
        if let Some(c) = &t.children {
            out.extend(all_args(c));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Characters arguments are made of: the language's special characters (repeated, to make
/// their combinations likely), Unicode whitespace, and non-ASCII letters.
const ALPHABET: &[char] = &[
    'a', 'b', 'Z', '0', '9', '.', ' ', ' ', '\t', '\n', '\r', '\u{3000}', '\u{a0}', '#', '#', '"',
    '"', '"', '\\', '\\', '\\', '{', '}', '(', ')', '$', '-', ':', '/', '=', 'e', 'n', 'v', 'é',
    '日', '\u{feff}',
];

/// Whole values with a meaning of their own.
const SPECIAL: &[&str] = &[
    "", "\\", "{", "}", "\"", "\\\\", "#", "=", "import", "a\\", "\\\"",
];

fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(prop::sample::select(ALPHABET), 0..8)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => prop::sample::select(SPECIAL).prop_map(str::to_owned),
    ]
}

/// Macro uses and `{env:...}` have no escape in the language: `$(x)` in any argument is
/// expanded (an undefined macro to nothing) and `{env:X}` is replaced (unset: removed) on every
/// parse, so such values cannot come back from text. `dump::to_text` writes them as they are
/// (a tree read from a file has them expanded already), so they are left out here.
fn free_of_expansions(v: &str) -> bool {
    !v.contains("$(") && !v.contains("{env:")
}

/// `dump.rs`'s rule for when an argument has to be written in quotes.
fn needs_quotes(v: &str) -> bool {
    v.is_empty() || v.starts_with('"') || v.contains(|c: char| c.is_whitespace() || c == '#')
}

/// The conservative filter: values that are expressible without thinking about backslashes.
/// A `{` or `}` argument is always read as a brace; `\` is the line continuation; in quotes
/// `\"` is the only escape, so a quoted value ending in `\` would escape its closing quote.
fn plainly_expressible(v: &str) -> bool {
    free_of_expansions(v)
        && v != "{"
        && v != "}"
        && v != "\\"
        && !v.contains("\\\"")
        && !(needs_quotes(v) && v.ends_with('\\'))
}

/// The exact rule, from the lexer and the parser: `{`/`}` are braces however they are written;
/// a lone `\` as the last argument (even before a block) continues the directive; and inside
/// quotes a backslash always takes the next character with it (`\"` giving `"`, anything else
/// kept as is), so a run of backslashes survives before a `"` or the closing quote only if it
/// is even.
fn expressible(v: &str, last: bool) -> bool {
    if v == "{" || v == "}" || (v == "\\" && last) {
        return false;
    }
    if !needs_quotes(v) {
        return true;
    }
    let mut run = 0;
    for c in v.chars().chain(std::iter::once('"')) {
        match c {
            '\\' => run += 1,
            '"' if run % 2 == 1 => return false,
            _ => run = 0,
        }
    }
    true
}

fn tree_expressible(trees: &[Tree]) -> bool {
    trees.iter().all(|t| {
        t.args
            .iter()
            .enumerate()
            .all(|(i, a)| expressible(a, i + 1 == t.args.len()))
            && t.children.as_deref().is_none_or(tree_expressible)
    })
}

fn name() -> impl Strategy<Value = String> {
    // `import` would be expanded; `(x)` and `$(x)` are declarations, which the pattern
    // already cannot produce.
    "[a-zA-Z_][a-zA-Z0-9._-]{0,10}".prop_filter("import is expanded", |n| n != "import")
}

fn trees(depth: u32, arg: BoxedStrategy<String>) -> BoxedStrategy<Vec<Tree>> {
    let children = if depth == 0 {
        Just(None).boxed()
    } else {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(Vec::new())),
            2 => trees(depth - 1, arg.clone()).prop_map(Some),
        ]
        .boxed()
    };
    let node =
        (name(), prop::collection::vec(arg, 0..5), children).prop_map(|(name, args, children)| {
            Tree {
                name,
                args,
                children,
            }
        });
    prop::collection::vec(node, 0..=6).boxed()
}

/// Depth 4: top level plus up to three levels of blocks.
fn expressible_trees() -> BoxedStrategy<Vec<Tree>> {
    trees(3, plain_value())
}

fn plain_value() -> BoxedStrategy<String> {
    raw_value()
        .prop_filter("not expressible", |v| plainly_expressible(v))
        .boxed()
}

fn any_value() -> BoxedStrategy<String> {
    raw_value()
        .prop_filter("expansion syntax", |v| free_of_expansions(v))
        .boxed()
}

/// Mostly plain values with a few arbitrary ones, so that a tree is often expressible as a
/// whole yet every kind of value meets every position.
fn any_trees() -> BoxedStrategy<Vec<Tree>> {
    trees(3, prop_oneof![6 => plain_value(), 1 => any_value()].boxed())
}

fn reparse(text: &str) -> Result<Vec<Tree>, TestCaseError> {
    parse_str(Path::new("/dump/out.conf"), text, &Environment::empty())
        .map(|n| from_nodes(&n))
        .map_err(|e| {
            TestCaseError::fail(format!(
                "dump output does not parse: {}\n{text}",
                e.render()
            ))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every tree of plainly expressible values is written and read back unchanged.
    #[test]
    fn dump_round_trips(trees in expressible_trees()) {
        let text = dump::to_text(&to_nodes(&trees))
            .map_err(|e| TestCaseError::fail(format!("to_text refused: {e}")))?;
        prop_assert_eq!(reparse(&text)?, trees, "text:\n{}", text);
    }

    /// With any values at all (backslashes, quotes and braces included), `to_text` refuses
    /// exactly the trees the language can't express, and what it writes reads back unchanged.
    #[test]
    fn dump_refuses_exactly_the_inexpressible(trees in any_trees()) {
        match dump::to_text(&to_nodes(&trees)) {
            Ok(text) => {
                prop_assert!(tree_expressible(&trees), "wrote an inexpressible tree:\n{}", text);
                prop_assert_eq!(reparse(&text)?, trees, "text:\n{}", text);
            }
            Err(e) => prop_assert!(
                !tree_expressible(&trees),
                "refused an expressible tree: {}; args {:?}", e, all_args(&trees)
            ),
        }
    }

    /// One arbitrary value in every position that matters: first, middle or last argument,
    /// with or without a block, followed by a sibling, at the top level or inside a block.
    #[test]
    fn one_value_in_context(
        value in any_value(),
        before in prop::collection::vec(plain_value(), 0..2),
        after in prop::collection::vec(plain_value(), 0..2),
        block in prop::option::of(prop::collection::vec(Just(Tree { name: "c".into(), args: vec![], children: None }), 0..2)),
        nested in any::<bool>(),
    ) {
        let last = after.is_empty();
        let mut args = before;
        args.push(value.clone());
        args.extend(after);
        let mut trees = vec![
            Tree { name: "x".into(), args, children: block },
            Tree { name: "y".into(), args: vec!["1".into()], children: None },
        ];
        if nested {
            trees = vec![Tree { name: "p".into(), args: vec![], children: Some(trees) }];
        }
        match dump::to_text(&to_nodes(&trees)) {
            Ok(text) => {
                prop_assert!(expressible(&value, last), "wrote {:?}:\n{}", value, text);
                prop_assert_eq!(reparse(&text)?, trees, "text:\n{}", text);
            }
            Err(e) => prop_assert!(!expressible(&value, last), "refused {:?}: {}", value, e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

const TOKENS: &[&str] = &[
    "{",
    "}",
    "\"",
    "\\",
    "#",
    "\n",
    "\n",
    "\n",
    " ",
    " ",
    "\t",
    "\r",
    "a",
    "b c",
    "x.y-z_1",
    "9a",
    "=",
    "$(m)",
    "$(m) = x",
    "$(m) = x y",
    "$(n) = $(m) z",
    "pre$(m)post",
    "$(m",
    "(snip)",
    "(snip) {",
    "import snip",
    "import isnip",
    "import nofile",
    "import inc",
    "import inc.conf",
    "import dir",
    "import di*/*.conf",
    "import none/*",
    "import loop",
    "import back",
    "import bad",
    "import [",
    "import",
    "{env:X}",
    "{env:}",
    "\"quoted str\"",
    "\"multi\nline\"",
    "\"esc\\\"aped\"",
    "}\n",
    " }\n",
    "é",
    "日本",
    "\u{3000}",
    "\u{feff}",
    "\u{fffd}",
];

/// Files the token soup can import, next to the parsed text.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("main.conf", "");
    write(
        "inc.conf",
        "inc_directive a b\n(isnip) {\n\tfrom_snippet\n}\n$(m) = imported\n",
    );
    write("loop.conf", "import loop\n");
    write("back.conf", "import main\n");
    write("bad.conf", "broken {\n");
    write("dir/10-a.conf", "a 1\n");
    write("dir/20-b.conf", "b 2 {\n\timport isnip\n}\n");
    let main = root.join("main.conf");
    (dir, main)
}

/// Directive-like lines of tokens separated by spaces, so that parsing gets past the first
/// token often; or the tokens glued together as they come.
fn token_soup() -> impl Strategy<Value = String> {
    const HEADS: &[&str] = &[
        "a",
        "b",
        "x.y-z_1",
        "}",
        "(snip) {",
        "$(m) = x",
        "$(m) = x y",
        "$(n) = $(m) z",
        "import snip",
        "import isnip",
        "import inc",
        "import dir",
        "import loop",
        "import back",
    ];
    let token = prop_oneof![
        2 => prop::sample::select(TOKENS),
        1 => prop::sample::select(&["a", "b", "c d", "{", "}", "$(m)", "x$(n)"][..]),
    ];
    let head = prop_oneof![3 => prop::sample::select(HEADS), 1 => prop::sample::select(TOKENS)];
    let line = (head, prop::collection::vec(token.clone(), 0..4))
        .prop_map(|(h, ts)| std::iter::once(h).chain(ts).collect::<Vec<_>>().join(" "));
    prop_oneof![
        3 => prop::collection::vec(line, 0..16).prop_map(|ls| ls.join("\n")),
        1 => prop::collection::vec(token, 0..40).prop_map(|ts| ts.concat()),
    ]
}

fn has_expansion_syntax(trees: &[Tree]) -> bool {
    all_args(trees).iter().any(|a| !free_of_expansions(a))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_and_errors_point_somewhere(text in token_soup()) {
        let (dir, main) = fixture();
        match parse_str(&main, &text, &Environment::empty()) {
            Ok(nodes) => {
                let _ = dump::to_json(&nodes);
                // A parsed tree, written out, reads back the same (when it can be written).
                let trees = from_nodes(&nodes);
                if let Ok(out) = dump::to_text(&nodes)
                    && !has_expansion_syntax(&trees)
                {
                    prop_assert_eq!(reparse(&out)?, trees, "input:\n{:?}\ndump:\n{}", text, out);
                }
            }
            Err(e) => {
                // parse_str reads no file itself, so every error has a position: in the text
                // or in a file it imports, all of which are in `dir`.
                let shown = e.to_string();
                let pos = e.pos();
                prop_assert!(pos.is_some(), "error without a position: {}", shown);
                let pos = pos.unwrap();
                prop_assert!(pos.file().starts_with(dir.path()), "error in {:?}", pos.file());
                prop_assert!(shown.starts_with(&pos.file().display().to_string()), "{}", shown);
                prop_assert_eq!(&shown, &format!("{}:{}:{}: {}", pos.file().display(), pos.line(), pos.col(), e.message()));
                prop_assert!(pos.line() >= 1 && pos.col() >= 1, "{}", shown);
                let line = pos.line_text();
                prop_assert!(line.is_some(), "position past the end of its file: {}", shown);
                prop_assert!(pos.col() as usize <= line.unwrap().chars().count() + 1, "{}", shown);
                prop_assert!(e.render().ends_with('^'), "{}", e.render());
            }
        }
    }
}

//! Hand-written checks of the language's documented semantics (docs/reference/config-syntax.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure should just fail them

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use madmail_config::{Arg, Environment, Error, Node, Pos, dump, parse_file, parse_str};

const MAIN: &str = "/etc/madmail/madmail.conf";

fn parse(text: &str) -> Result<Vec<Node>, Error> {
    parse_str(Path::new(MAIN), text, &Environment::empty())
}

fn ok(text: &str) -> Vec<Node> {
    parse(text).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn err(text: &str) -> Error {
    match parse(text) {
        Ok(nodes) => panic!("parsed, expected an error: {}", dump::to_json(&nodes)),
        Err(e) => e,
    }
}

/// `name arg arg` per directive, children indented, as a compact picture of a tree.
fn outline(nodes: &[Node]) -> Vec<String> {
    fn walk(nodes: &[Node], depth: usize, out: &mut Vec<String>) {
        for n in nodes {
            let mut line = format!("{}{}", "  ".repeat(depth), n.name);
            for a in &n.args {
                line.push_str(&format!(" {:?}", a.value));
            }
            if n.children.is_some() {
                line.push_str(" {}");
            }
            out.push(line);
            walk(n.children(), depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(nodes, 0, &mut out);
    out
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn parse_at(path: &Path) -> Result<Vec<Node>, Error> {
    parse_file(path, &Environment::empty())
}

// --- tokens, comments, quoting ---------------------------------------------------------------

#[test]
fn hash_inside_a_token_ends_it_and_skips_to_whitespace() {
    let nodes = ok("dir foo#bar baz\n# a comment line\nnext a # trailing comment\n");
    assert_eq!(outline(&nodes), [r#"dir "foo" "baz""#, r#"next "a""#]);
}

#[test]
fn quoting_and_the_only_escape() {
    let nodes = ok(r##"q "a b" "" "say \"hi\"" "c:\dir\n" "#foo" x"y"##);
    assert_eq!(
        nodes[0].arg_values(),
        ["a b", "", "say \"hi\"", r"c:\dir\n", "#foo", "x\"y"]
    );
    // A quoted token may span lines; the directive goes on after it.
    let nodes = ok("q \"one\ntwo\" three\nnext\n");
    assert_eq!(outline(&nodes), [r#"q "one\ntwo" "three""#, "next"]);
}

#[test]
fn lone_backslash_continues_the_line() {
    let nodes = ok("dir a b \\\n    c d\nnext\n");
    assert_eq!(outline(&nodes), [r#"dir "a" "b" "c" "d""#, "next"]);
    // Only a lone backslash does: one glued to a word is an ordinary argument.
    let nodes = ok("dir a\\\nnext\n");
    assert_eq!(outline(&nodes), [r#"dir "a\\""#, "next"]);
}

// --- blocks ------------------------------------------------------------------------------------

#[test]
fn blocks_and_empty_blocks() {
    let nodes = ok("outer arg {\n\tinner 1\n\tempty { }\n\tnone\n}\n");
    assert_eq!(
        outline(&nodes),
        [
            r#"outer "arg" {}"#,
            r#"  inner "1""#,
            "  empty {}",
            "  none"
        ]
    );
    assert_eq!(nodes[0].children()[1].children, Some(vec![]));
    assert_eq!(nodes[0].children()[2].children, None);
    // `{}` without a space is one token: an ordinary argument, not a block.
    assert_eq!(outline(&ok("a {}\n")), [r#"a "{}""#]);
}

#[test]
fn closing_brace_at_the_end_of_a_child_line_closes_the_block() {
    let nodes = ok("a {\n\tb c }\nd\n");
    assert_eq!(outline(&nodes), ["a {}", r#"  b "c""#, "d"]);
}

#[test]
fn newline_required_after_closing_brace() {
    let e = err("a {\n\tb\n} c\n");
    assert_eq!(
        e.to_string(),
        format!("{MAIN}:3:3: a newline is required after a closing brace")
    );
    assert_eq!(e.pos().map(|p| (p.line(), p.col())), Some((3, 3)));
}

#[test]
fn brace_rules() {
    assert!(err("a\n{\n}\n").message().contains("unexpected '{'"));
    assert!(err("}\n").message().contains("unexpected }"));
    assert!(err("a {\n\tb\n").message().contains("not closed"));
}

#[test]
fn directive_names() {
    assert_eq!(
        outline(&ok("tls.loader-x_1 a\nété b\n")),
        [r#"tls.loader-x_1 "a""#, r#"été "b""#]
    );
    let e = err("a\n9lives x\n");
    assert_eq!(e.pos().map(Pos::line), Some(2));
    assert!(e.message().contains("can't start with a digit"), "{e}");
    assert!(err("bad:name x\n").message().contains("not allowed"));
}

#[test]
fn nesting_limit() {
    let nested = |n: usize| format!("{}{}", "a {\n".repeat(n), "}\n".repeat(n));
    assert_eq!(ok(&nested(256)).len(), 1);
    let e = err(&nested(257));
    assert_eq!(e.message(), "nesting limit reached");
    assert_eq!(e.pos().map(Pos::line), Some(257));
}

// --- snippets, macros, environment -------------------------------------------------------------

#[test]
fn snippets_and_import() {
    let text = "(common) {\n\tx 1\n\ty\n}\nblock {\n\timport common\n\tz\n}\nimport common\n";
    assert_eq!(
        outline(&ok(text)),
        ["block {}", r#"  x "1""#, "  y", "  z", r#"x "1""#, "y"]
    );
    assert!(
        err("a {\n\t(s) {\n\t}\n}\n")
            .message()
            .contains("only allowed at top level")
    );
}

#[test]
fn macro_whole_argument_splices_all_values() {
    let nodes =
        ok("$(hosts) = a.example b.example\nlisten first $(hosts) last\nnone $(undefined)\n");
    assert_eq!(
        outline(&nodes),
        [r#"listen "first" "a.example" "b.example" "last""#, "none"]
    );
}

#[test]
fn macro_inline_takes_single_values_only() {
    let nodes =
        ok("$(domain) = example.org\n$(host) = mx.$(domain)\nhostname $(host) smtp.$(domain):25\n");
    assert_eq!(
        outline(&nodes),
        [r#"hostname "mx.example.org" "smtp.example.org:25""#]
    );

    let e = err("$(pair) = a b\nx pre$(pair)\n");
    assert_eq!(e.pos().map(Pos::line), Some(2));
    assert!(e.message().contains("$(pair) has several values"), "{e}");
}

#[test]
fn macros_are_top_level_and_used_after_their_declaration() {
    assert!(
        err("a {\n\t$(m) = 1\n}\n")
            .message()
            .contains("only allowed at top level")
    );
    assert_eq!(
        outline(&ok("early $(m)\n$(m) = 1\nlate $(m)\n")),
        ["early", r#"late "1""#]
    );
}

#[test]
fn env_expansion() {
    let env = Environment::Map(HashMap::from([("STATE".to_owned(), "/srv".to_owned())]));
    let text = "state_dir {env:STATE}/state\nx {env:UNSET}y\n$(m) = {env:STATE}\ny $(m)\n";
    let nodes = parse_str(Path::new(MAIN), text, &env).unwrap();
    assert_eq!(
        outline(&nodes),
        [r#"state_dir "/srv/state""#, r#"x "y""#, r#"y "/srv""#]
    );
}

// --- imports -----------------------------------------------------------------------------------

#[test]
fn import_file_relative_to_the_importing_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "etc/main.conf", "import sub/one.conf\nlast\n");
    write(dir.path(), "etc/sub/one.conf", "one\nimport two.conf\n");
    write(dir.path(), "etc/sub/two.conf", "two\n");
    assert_eq!(outline(&parse_at(&main).unwrap()), ["one", "two", "last"]);
}

#[test]
fn import_falls_back_to_dot_conf() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "import extra\n");
    write(dir.path(), "extra.conf", "from_extra 1\n");
    assert_eq!(outline(&parse_at(&main).unwrap()), [r#"from_extra "1""#]);
}

/// Snippets of an imported file can be used by the importer; its macros can't: macros are
/// expanded while a file is read, before its imports are.
#[test]
fn imported_snippets_are_visible_but_macros_are_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        "import defs\nimport snip\nv $(m)\n",
    );
    write(
        dir.path(),
        "defs.conf",
        "$(m) = 42\n(snip) {\n\tfrom_snippet $(m)\n}\n",
    );
    assert_eq!(
        outline(&parse_at(&main).unwrap()),
        [r#"from_snippet "42""#, "v"]
    );
}

#[test]
fn import_directory_reads_its_conf_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "import conf.d\n");
    write(dir.path(), "conf.d/20-b.conf", "b\n");
    write(dir.path(), "conf.d/10-a.conf", "a\n");
    write(dir.path(), "conf.d/notes.txt", "ignored\n");
    assert_eq!(outline(&parse_at(&main).unwrap()), ["a", "b"]);
}

#[test]
fn import_glob_is_sorted_and_may_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        "import parts/*.conf\nimport nothing/*.conf\nend\n",
    );
    write(dir.path(), "parts/b.conf", "b\n");
    write(dir.path(), "parts/a.conf", "a\n");
    write(dir.path(), "parts/c.txt", "c\n");
    assert_eq!(outline(&parse_at(&main).unwrap()), ["a", "b", "end"]);
}

#[test]
fn missing_import_names_the_import_line() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "a\n\nimport missing\n");
    let e = parse_at(&main).unwrap_err();
    assert_eq!(
        e.pos().map(|p| (p.file().to_owned(), p.line(), p.col())),
        Some((main.clone(), 3, 1))
    );
    assert!(e.message().contains("unknown import: missing"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:1: ", main.display())),
        "{e}"
    );
}

#[test]
fn import_cycle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "a.conf", "import b\n");
    write(dir.path(), "b.conf", "x\nimport a.conf\n");
    let e = parse_at(&main).unwrap_err();
    assert!(e.message().starts_with("import cycle: "), "{e}");
    // Reported where the cycle closes: b.conf's import of a.conf.
    let pos = e.pos().unwrap();
    assert_eq!(
        (pos.file(), pos.line()),
        (dir.path().join("b.conf").as_path(), 2)
    );
}

#[test]
fn unreadable_main_file_has_no_position() {
    let dir = tempfile::tempdir().unwrap();
    let e = parse_at(&dir.path().join("absent.conf")).unwrap_err();
    assert!(e.pos().is_none());
    assert!(e.to_string().contains("absent.conf: cannot read"), "{e}");
}

// --- errors and dumps --------------------------------------------------------------------------

#[test]
fn render_shows_the_line_and_a_caret() {
    let e = err("a {\n\tb\n} c\n");
    let expected =
        format!("{MAIN}:3:3: a newline is required after a closing brace\n  |\n3 | }} c\n  |   ^");
    assert_eq!(e.render(), expected);
    // Tabs before the column are kept so the caret lines up.
    let e = err("a {\n\t9b\n}\n");
    assert!(e.render().ends_with("2 | \t9b\n  | \t^"), "{}", e.render());
}

#[test]
fn dump_json_shape() {
    let nodes = ok("a x \"y z\" {\n\tb\n}\nc {\n}\n");
    assert_eq!(
        dump::to_json(&nodes),
        serde_json::json!([
            {"name": "a", "args": ["x", "y z"], "children": [
                {"name": "b", "args": [], "children": null, "line": 2}
            ], "line": 1},
            {"name": "c", "args": [], "children": [], "line": 4}
        ])
    );
}

#[test]
fn dump_text_quotes_only_when_needed() {
    let nodes = ok("a x \"y z\" \"\" \"#c\" \"q\\\"uote\" \"\\\"q\" {\n\tb \"tab\there\"\n}\n");
    let text = dump::to_text(&nodes).unwrap();
    assert_eq!(
        text,
        "a x \"y z\" \"\" \"#c\" q\"uote \"\\\"q\" {\n\tb \"tab\there\"\n}\n"
    );
}

fn node(name: &str, args: &[&str], children: Option<Vec<Node>>) -> Node {
    let pos = Pos::synthetic("test");
    Node {
        name: name.to_owned(),
        args: args
            .iter()
            .map(|a| Arg {
                value: (*a).to_owned(),
                pos: pos.clone(),
            })
            .collect(),
        children,
        pos,
    }
}

/// Regression: a lone `\` as the last argument of a directive with a block used to be written
/// as `a \ {`, which reads back as a line continuation that swallows the next directive.
#[test]
fn dump_refuses_backslash_before_a_block() {
    assert_eq!(outline(&ok("a \\ {\n}\nb\n")), ["a \"b\" {}"]);
    let tree = [node("a", &["\\"], Some(vec![])), node("b", &[], None)];
    assert!(dump::to_text(&tree).is_err());
    // In any other place a lone backslash is fine.
    let tree = [node("a", &["\\", "x"], Some(vec![]))];
    let text = dump::to_text(&tree).unwrap();
    assert_eq!(outline(&ok(&text)), [r#"a "\\" "x" {}"#]);
}

/// Inside quotes a backslash pairs with the next character, so an even run of backslashes
/// before a quote (or the closing quote) is expressible and an odd one is not.
#[test]
fn dump_backslashes_in_quoted_values() {
    for value in ["a b\\\\", "a \\\\\"b", "x\\ny z", "\\\\\\\\ \""] {
        let text = dump::to_text(&[node("v", &[value], None)]).unwrap();
        assert_eq!(ok(&text)[0].arg_values(), [value], "{text}");
    }
    for value in ["a b\\", "a \\\"b", "\\\\\\\" x"] {
        assert!(
            dump::to_text(&[node("v", &[value], None)]).is_err(),
            "{value:?}"
        );
    }
}

//! The table modules configured as an operator writes them: lookups, multiple values,
//! SQLite tables on a temporary file, and configuration errors with their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::Arc;

use madmail_module::table::{MutableTable, Table};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Loaded, ModuleSpec, Registry,
    Running,
};

/// What the `probe` endpoint resolved: `use NAME TABLE...` directives, by NAME.
struct Probe {
    tables: HashMap<String, Arc<dyn Table>>,
    mutable: HashMap<String, Arc<dyn MutableTable>>,
}

/// `probe ADDR { use NAME &table | use NAME MODULE ARGS { ... } }`: resolves tables the way
/// modules using tables do (inline definitions in the `table` namespace).
fn build_probe(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let uses = block.all("use");
    let mut errors = block.finish().err().unwrap_or_default();
    let mut probe = Probe {
        tables: HashMap::new(),
        mutable: HashMap::new(),
    };
    for node in uses {
        let name = node.args[0].value.clone();
        match ctx.instance_from(node, 1, "table") {
            Ok(instance) => {
                match instance.caps.get::<dyn Table>() {
                    Some(t) => {
                        probe.tables.insert(name.clone(), t);
                    }
                    None => errors.push(madmail_config::Error::at(
                        node.arg_pos(1),
                        format!("{} is not a table", instance.module),
                    )),
                }
                if let Some(t) = instance.caps.get::<dyn MutableTable>() {
                    probe.mutable.insert(name, t);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    errors.into_result(())?;
    Ok(Built::new(
        Capabilities::new().with::<Probe>(Arc::new(probe)),
    ))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_table::register(&mut r);
    r.register(ModuleSpec {
        name: "probe",
        kind: Kind::Endpoint,
        build: build_probe,
        summary: "test endpoint",
    });
    r
}

fn try_load(text: &str) -> Result<Loaded, Errors> {
    madmail_module::testing::load_str(&registry(), text)
}

fn probe(text: &str) -> (Loaded, Arc<Probe>) {
    let loaded = try_load(text).unwrap_or_else(|e| panic!("{e}"));
    let probe = loaded.endpoints[0].caps.get::<Probe>().unwrap();
    (loaded, probe)
}

fn table(probe: &Probe, name: &str) -> Arc<dyn Table> {
    probe.tables[name].clone()
}

/// The errors as `line:col: message` lines.
fn errors_of(text: &str) -> Vec<String> {
    match try_load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => madmail_module::testing::error_lines(e),
    }
}

async fn get(t: &Arc<dyn Table>, key: &str) -> Option<String> {
    t.lookup(key).await.unwrap()
}

async fn multi(t: &Arc<dyn Table>, key: &str) -> Vec<String> {
    t.lookup_multi(key).await.unwrap()
}

#[tokio::test]
async fn static_table_multi_values_and_last_entry_wins() {
    let (_l, p) = probe(
        "table.static aliases {\n\
         \x20   entry postmaster admin@example.org\n\
         \x20   entry team alice@example.org bob@example.org\n\
         \x20   entry dup first\n\
         \x20   entry dup second\n\
         }\n\
         probe tcp://127.0.0.1:1 {\n\
         \x20   use named &aliases\n\
         \x20   use inline static {\n\
         \x20       entry a b\n\
         \x20   }\n\
         }\n",
    );
    let t = table(&p, "named");
    assert_eq!(
        get(&t, "postmaster").await.as_deref(),
        Some("admin@example.org")
    );
    assert_eq!(
        multi(&t, "team").await,
        ["alice@example.org", "bob@example.org"]
    );
    assert_eq!(get(&t, "team").await.as_deref(), Some("alice@example.org"));
    assert_eq!(multi(&t, "dup").await, ["second"]);
    assert_eq!(get(&t, "missing").await, None);
    assert!(multi(&t, "missing").await.is_empty());
    assert_eq!(get(&table(&p, "inline"), "a").await.as_deref(), Some("b"));
    assert!(!p.mutable.contains_key("named"));
}

#[tokio::test]
async fn regexp_replacements_and_options() {
    let (_l, p) = probe(
        r#"probe tcp://127.0.0.1:1 {
    use strip regexp "(.+)\+[^@]+@(.+)" "$1@$2"
    use named regexp "(?P<user>[a-z]+)@old\.example" "${user}@new.example" "${user}_copy@new.example"
    use check regexp ".*-bounce@example\.org"
    use partial regexp "bounce" "yes" {
        full_match no
    }
    use sensitive regexp "ABC" "x" {
        case_insensitive no
    }
    use literal regexp "(a)" "$1$$" {
        expand_replaceholders no
    }
    use documented regexp "(a)" "<$1>" {
        expand_placeholders yes
    }
    use alternation regexp "a|b" "matched"
}
"#,
    );
    let strip = table(&p, "strip");
    assert_eq!(
        get(&strip, "user+tag@example.org").await.as_deref(),
        Some("user@example.org")
    );
    assert_eq!(get(&strip, "user@example.org").await, None);
    // Case-insensitive by default.
    assert_eq!(
        get(&strip, "User+Tag@Example.org").await.as_deref(),
        Some("User@Example.org")
    );
    assert_eq!(
        multi(&table(&p, "named"), "joe@old.example").await,
        ["joe@new.example", "joe_copy@new.example"]
    );
    // No replacement: the key itself, as a match check.
    let check = table(&p, "check");
    assert_eq!(
        get(&check, "list-bounce@example.org").await.as_deref(),
        Some("list-bounce@example.org")
    );
    assert_eq!(get(&check, "list@example.org").await, None);
    // full_match (default yes) anchors the whole expression.
    assert_eq!(
        get(&table(&p, "partial"), "a-bounce-b").await.as_deref(),
        Some("yes")
    );
    let alternation = table(&p, "alternation");
    assert_eq!(get(&alternation, "a").await.as_deref(), Some("matched"));
    assert_eq!(get(&alternation, "ab").await, None);
    assert_eq!(get(&alternation, "xb").await, None);
    let sensitive = table(&p, "sensitive");
    assert_eq!(get(&sensitive, "abc").await, None);
    assert_eq!(get(&sensitive, "ABC").await.as_deref(), Some("x"));
    assert_eq!(
        get(&table(&p, "literal"), "a").await.as_deref(),
        Some("$1$$")
    );
    assert_eq!(
        get(&table(&p, "documented"), "a").await.as_deref(),
        Some("<a>")
    );
}

#[tokio::test]
async fn chain_steps_and_optional_steps() {
    let (_l, p) = probe(
        r#"table.static aliases {
    entry info@example.org alice@example.org
    entry team@example.org alice@example.org bob@example.org
}
table.chain mailboxes {
    optional_step &aliases
    step email_localpart
    step static {
        entry alice Alice
        entry bob Bob
    }
}
table.chain strict {
    step &aliases
    step email_localpart
}
probe tcp://127.0.0.1:1 {
    use mailboxes &mailboxes
    use strict &strict
}
"#,
    );
    let mailboxes = table(&p, "mailboxes");
    assert_eq!(
        get(&mailboxes, "info@example.org").await.as_deref(),
        Some("Alice")
    );
    // Not an alias: the optional step passes the key on.
    assert_eq!(
        get(&mailboxes, "bob@example.org").await.as_deref(),
        Some("Bob")
    );
    assert_eq!(
        multi(&mailboxes, "team@example.org").await,
        ["Alice", "Bob"]
    );
    // Missing from a required step: no value.
    assert_eq!(get(&mailboxes, "carol@example.org").await, None);
    let strict = table(&p, "strict");
    assert_eq!(get(&strict, "bob@example.org").await, None);
    assert_eq!(
        get(&strict, "info@example.org").await.as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn computed_tables() {
    let (_l, p) = probe(
        r#"probe tcp://127.0.0.1:1 {
    use identity identity
    use localpart email_localpart
    use localpart_optional email_localpart_optional
    use with_domain email_with_domain example.org example.com
}
"#,
    );
    assert_eq!(
        get(&table(&p, "identity"), "Any Thing").await.as_deref(),
        Some("Any Thing")
    );
    let localpart = table(&p, "localpart");
    assert_eq!(
        get(&localpart, "test@example.org").await.as_deref(),
        Some("test")
    );
    assert_eq!(
        get(&localpart, "\"test @ a\"@example.org").await.as_deref(),
        Some("test @ a")
    );
    assert_eq!(get(&localpart, "not-an-address").await, None);
    assert_eq!(
        get(&table(&p, "localpart_optional"), "not-an-address")
            .await
            .as_deref(),
        Some("not-an-address")
    );
    let with_domain = table(&p, "with_domain");
    assert_eq!(
        multi(&with_domain, "user").await,
        ["user@example.org", "user@example.com"]
    );
    assert_eq!(
        get(&with_domain, "a b").await.as_deref(),
        Some("\"a b\"@example.org")
    );
}

#[tokio::test]
async fn file_table_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    std::fs::write(
        &aliases,
        "# aliases\npostmaster: root@example.org\nteam: a@example.org, b@example.org\n",
    )
    .unwrap();
    let missing = dir.path().join("missing");
    let (loaded, p) = probe(&format!(
        "probe tcp://127.0.0.1:1 {{\n    use a file {}\n    use b file {{\n        file {}\n    }}\n}}\n",
        aliases.display(),
        missing.display()
    ));
    let a = table(&p, "a");
    assert_eq!(
        get(&a, "postmaster").await.as_deref(),
        Some("root@example.org")
    );
    assert_eq!(multi(&a, "team").await, ["a@example.org", "b@example.org"]);
    // A missing file is an empty table (maddy logs and goes on).
    assert_eq!(get(&table(&p, "b"), "postmaster").await, None);
    let mut running = Running::start(&loaded.instances).await.unwrap();
    running.stop().await;
}

#[test]
fn file_table_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "ok: 1\n: no key\n").unwrap();
    let text = format!(
        "probe tcp://127.0.0.1:1 {{\n    use a file {b}\n    use b file {b} {b}\n    use c file\n    use d file {b} {{\n        file {b}\n    }}\n}}\n",
        b = broken.display()
    );
    let col = 16 + broken.display().to_string().len();
    assert_eq!(
        errors_of(&text),
        [
            format!(
                "2:16: table.file: {}:2: empty key before colon",
                broken.display()
            ),
            format!(
                "3:{}: table.file reads one file; use one table.file per file (a table.chain can combine them)",
                col + 1
            ),
            "4:5: table.file needs a file: table.file PATH, or a file directive in its block"
                .to_owned(),
            "6:9: the file is given both as an argument and with the file directive; give it once"
                .to_owned(),
        ]
    );
}

#[test]
fn config_errors_have_positions() {
    let text = r#"table.static s {
    entry lonely
    entri a b
}
table.chain c {
}
probe tcp://127.0.0.1:1 {
    use s &s
    use c &c
    use r regexp "(unclosed"
    use e regexp
    use i identity extra
    use d email_with_domain ..bad good.example
    use both regexp a {
        expand_placeholders
        expand_replaceholders
    }
}
"#;
    assert_eq!(
        errors_of(text),
        [
            "2:5: entry needs a key and at least one value: entry KEY VALUE...",
            "3:5: unknown directive entri; did you mean entry?",
            "5:1: table.chain needs at least one step or optional_step",
            "10:18: invalid regular expression: regex parse error:\n    (unclosed\n    ^\nerror: unclosed group",
            "11:5: table.regexp needs a regular expression: table.regexp REGEX [REPLACEMENT...]",
            "12:20: table.identity takes no arguments",
            "13:29: invalid domain \"..bad\"",
            "14:5: give only one of expand_replaceholders and expand_placeholders (they are the same)",
        ]
    );
}

#[tokio::test]
async fn sql_table_creates_and_modifies_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("credentials.db");
    let config = format!(
        "table.sql_table local_authdb {{\n    driver sqlite3\n    dsn {}\n    table_name passwords\n}}\n\
         probe tcp://127.0.0.1:1 {{\n    use creds &local_authdb\n}}\n",
        db.display()
    );
    let (loaded, p) = probe(&config);
    // Building does not touch the database.
    assert!(!db.exists());
    let mut running = Running::start(&loaded.instances).await.unwrap();
    assert!(db.exists(), "start creates the database");

    let t = p.mutable["creds"].clone();
    assert_eq!(t.lookup("alice@example.org").await.unwrap(), None);
    t.set("alice@example.org", "bcrypt:one").await.unwrap();
    t.set("bob@example.org", "bcrypt:two").await.unwrap();
    assert_eq!(
        t.lookup("alice@example.org").await.unwrap().as_deref(),
        Some("bcrypt:one")
    );
    // Setting an existing key updates it.
    t.set("alice@example.org", "bcrypt:three").await.unwrap();
    assert_eq!(
        t.lookup_multi("alice@example.org").await.unwrap(),
        ["bcrypt:three"]
    );
    let mut keys = t.keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["alice@example.org", "bob@example.org"]);
    t.remove("bob@example.org").await.unwrap();
    t.remove("nobody@example.org").await.unwrap();
    assert_eq!(t.keys().await.unwrap(), ["alice@example.org"]);
    running.stop().await;

    // The schema is maddy's: a second process (maddy, or madmail creds) sees the same data.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let schema: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'passwords'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        schema,
        "CREATE TABLE passwords (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
    );
    let value: String = conn
        .query_row(
            "SELECT value FROM passwords WHERE key = 'alice@example.org'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, "bcrypt:three");
    drop(conn);

    // A fresh configuration over the same file, used without being started (as by the CLI).
    let (_l, p) = probe(&config);
    assert_eq!(
        get(&table(&p, "creds"), "alice@example.org")
            .await
            .as_deref(),
        Some("bcrypt:three")
    );
}

#[tokio::test]
async fn sql_table_reads_a_database_maddy_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("credentials.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // What maddy's sql_table runs (whitespace as in its source).
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS passwords (\n\t\t\t\t\tkey TEXT PRIMARY KEY NOT NULL,\n\t\t\t\t\tvalue TEXT NOT NULL\n\t\t\t\t)",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO passwords(key, value) VALUES('user@example.org', 'bcrypt:$2a$10$x')",
            [],
        )
        .unwrap();
    }
    let (_l, p) = probe(&format!(
        "probe tcp://127.0.0.1:1 {{\n    use creds sql_table {{\n        driver sqlite3\n        dsn {}\n        table_name passwords\n    }}\n}}\n",
        db.display()
    ));
    assert_eq!(
        get(&table(&p, "creds"), "user@example.org")
            .await
            .as_deref(),
        Some("bcrypt:$2a$10$x")
    );
}

#[tokio::test]
async fn sql_query_with_init_named_and_positional_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aliases.db");
    let (loaded, p) = probe(&format!(
        r#"table.sql_query positional {{
    driver sqlite3
    dsn {db}
    init "CREATE TABLE IF NOT EXISTS aliases (alias TEXT NOT NULL, target TEXT NOT NULL)" "CREATE INDEX IF NOT EXISTS by_alias ON aliases(alias)"
    lookup "SELECT target FROM aliases WHERE alias = $1 ORDER BY target"
    add "INSERT INTO aliases(alias, target) VALUES($1, $2)"
    list "SELECT DISTINCT alias FROM aliases"
    set "UPDATE aliases SET target = $2 WHERE alias = $1"
    del "DELETE FROM aliases WHERE alias = $1"
}}
table.sql_query named {{
    driver sqlite3
    dsn {db}
    named_args yes
    lookup "SELECT upper(target) FROM aliases WHERE alias = :key"
}}
probe tcp://127.0.0.1:1 {{
    use positional &positional
    use named &named
}}
"#,
        db = db.display()
    ));
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let positional = p.mutable["positional"].clone();
    positional
        .set("team@example.org", "b@example.org")
        .await
        .unwrap();
    positional
        .set("info@example.org", "c@example.org")
        .await
        .unwrap();
    // A second target for the same alias, directly in the database.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO aliases VALUES('team@example.org', 'a@example.org')",
            [],
        )
        .unwrap();
    assert_eq!(
        positional.lookup_multi("team@example.org").await.unwrap(),
        ["a@example.org", "b@example.org"]
    );
    assert_eq!(
        get(&table(&p, "named"), "info@example.org")
            .await
            .as_deref(),
        Some("C@EXAMPLE.ORG")
    );
    // Without list/add/set/del queries a table can't be modified.
    assert!(!p.mutable.contains_key("named"));
    running.stop().await;
}

#[tokio::test]
async fn sql_start_reports_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, _p) = probe(&format!(
        "probe tcp://127.0.0.1:1 {{\n    use q sql_query {{\n        driver sqlite3\n        dsn {}\n        lookup \"SELECT value FROM nowhere WHERE k = ?\"\n    }}\n}}\n",
        dir.path().join("x.db").display()
    ));
    let err = Running::start(&loaded.instances).await.unwrap_err();
    assert!(
        err.contains("invalid query \"SELECT value FROM nowhere WHERE k = ?\"")
            && err.contains("no such table: nowhere"),
        "{err}"
    );
}

#[test]
fn sql_config_errors() {
    let text = r#"table.sql_table a {
    driver postgres
    dsn "host=localhost"
    table_name "passwords; DROP TABLE x"
}
table.sql_table b {
    driver sqlite3
}
table.sql_query c {
    driver sqlite3
    dsn x.db
    named_args maybe
}
probe tcp://127.0.0.1:1 {
    use a &a
    use b &b
    use c &c
}
"#;
    assert_eq!(
        errors_of(text),
        [
            "2:12: driver postgres is not supported: madmail's SQL tables use SQLite (driver sqlite3)",
            "4:16: table_name: \"passwords; DROP TABLE x\" is not a plain SQL name (letters, digits and _, optionally schema.name)",
            "6:1: table.sql_table: directive dsn is required",
            "6:1: table.sql_table: directive table_name is required",
            "9:1: table.sql_query: directive lookup is required",
            "12:16: named_args: expected yes or no, not \"maybe\"",
        ]
    );
}

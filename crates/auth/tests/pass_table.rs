//! `auth.pass_table` configured as an operator writes it, over tables holding hashes exactly as
//! maddy writes them, and the `creds` API round trip on an SQLite credentials database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use madmail_auth::creds::{self, CredsError};
use madmail_auth::hash::Hash;
use madmail_module::auth::{AuthError, PlainAuth};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Instance, Kind, Loaded, ModuleSpec,
    Registry,
};

// From maddy's own tests (internal/auth/pass_table/table_test.go), password "password".
const MADDY_BCRYPT: &str = "bcrypt:$2y$10$4tEJtJ6dApmhETg8tJ4WHOeMtmYXQwmHDKIyfg09Bw1F/smhLjlaa";
const MADDY_ARGON2: &str = "argon2:1:8:1:U0FBQUFBTFQ=:KHUshl3DcpHR3AoVd28ZeBGmZ1Fj1gwJgNn98Ia8DAvGHqI0BvFOMJPxtaAfO8F+qomm2O3h0P0yV50QGwXI/Q==";
const MADDY_SHA256: &str = "sha256:U0FMVA==:8PDRAgaUqaLSk34WpYniXjaBgGM93Lc6iF4pw2slthw=";

/// `probe ADDR { auth MODULE... }`: resolves auth providers as endpoints do.
fn build_probe(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let nodes = block.all("auth");
    let mut errors = block.finish().err().unwrap_or_default();
    let mut providers = Vec::new();
    for node in nodes {
        match ctx.module_from::<dyn PlainAuth>(node, 0, "auth") {
            Ok(p) => providers.push(p),
            Err(e) => errors.extend(e),
        }
    }
    errors.into_result(())?;
    Ok(Built::new(
        Capabilities::new().with::<Vec<Arc<dyn PlainAuth>>>(Arc::new(providers)),
    ))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_table::register(&mut r);
    madmail_auth::register(&mut r);
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

fn loaded(text: &str) -> Loaded {
    try_load(text).unwrap_or_else(|e| panic!("{e}"))
}

fn providers(loaded: &Loaded) -> Arc<Vec<Arc<dyn PlainAuth>>> {
    loaded.endpoints[0]
        .caps
        .get::<Vec<Arc<dyn PlainAuth>>>()
        .unwrap()
}

/// A named instance, as `madmail creds --cfg-block NAME` finds it.
fn instance(loaded: &Loaded, name: &str) -> Arc<Instance> {
    loaded
        .instances
        .iter()
        .find(|i| i.label == name)
        .unwrap()
        .clone()
}

fn errors_of(text: &str) -> Vec<String> {
    match try_load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => madmail_module::testing::error_lines(e),
    }
}

#[tokio::test]
async fn maddy_hashes_right_and_wrong_passwords_unknown_users() {
    let config = format!(
        r#"auth.pass_table local_authdb {{
    table static {{
        entry foxcpp "{MADDY_BCRYPT}"
        entry not-foxcpp-2@example.org "{MADDY_ARGON2}"
        entry sha-user "{MADDY_SHA256}"
        entry broken "argon2:1:8:1"
        entry untagged "$2a$10$abc"
    }}
}}
probe tcp://127.0.0.1:1 {{
    auth &local_authdb
    auth pass_table static {{
        entry inline@example.org "{MADDY_ARGON2}"
    }}
}}
"#
    );
    let loaded = loaded(&config);
    let providers = providers(&loaded);
    let (named, inline) = (&providers[0], &providers[1]);

    assert_eq!(named.authenticate("foxcpp", "password").await, Ok(()));
    assert_eq!(
        named.authenticate("foxcpp", "different-password").await,
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(
        named
            .authenticate("not-foxcpp-2@example.org", "password")
            .await,
        Ok(())
    );
    // Usernames are case-mapped before the lookup (maddy's PRECIS UsernameCaseMapped).
    assert_eq!(
        named
            .authenticate("Not-FoxCPP-2@EXAMPLE.org", "password")
            .await,
        Ok(())
    );
    assert_eq!(
        named
            .authenticate("not-foxcpp-2@example.org", "Password")
            .await,
        Err(AuthError::InvalidCredentials)
    );
    for (user, why) in [
        ("nobody", "unknown user"),
        ("two words", "invalid username"),
        ("", "empty username"),
        ("sha-user", "sha256 is not accepted, as in maddy"),
        ("broken", "malformed stored hash"),
        ("untagged", "stored hash without a tag"),
    ] {
        assert_eq!(
            named.authenticate(user, "password").await,
            Err(AuthError::InvalidCredentials),
            "{why}"
        );
    }
    assert_eq!(
        inline.authenticate("inline@example.org", "password").await,
        Ok(())
    );
    // A table.static can't be changed by `madmail creds`.
    assert!(matches!(
        creds::table_of(&instance(&loaded, "local_authdb")),
        Err(CredsError::ReadOnly(_))
    ));
}

#[tokio::test]
async fn creds_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("credentials.db");
    let config = format!(
        r#"auth.pass_table local_authdb {{
    table sql_table {{
        driver sqlite3
        dsn {}
        table_name passwords
    }}
}}
probe tcp://127.0.0.1:1 {{
    auth &local_authdb
}}
"#,
        db.display()
    );
    let loaded = loaded(&config);
    let auth = providers(&loaded)[0].clone();
    let table = creds::table_of(&instance(&loaded, creds::DEFAULT_BLOCK)).unwrap();

    assert!(creds::list(&*table).await.unwrap().is_empty());
    let user = creds::create(&*table, "Alice@Example.org", "first password")
        .await
        .unwrap();
    assert_eq!(user, "alice@example.org");
    // Stored as maddy stores it: bcrypt, cost 10, Go's $2a$ prefix.
    let stored = table.lookup("alice@example.org").await.unwrap().unwrap();
    assert!(stored.starts_with("bcrypt:$2a$10$"), "{stored}");
    assert!(matches!(
        creds::create(&*table, "ALICE@example.org", "x").await,
        Err(CredsError::AlreadyExists(u)) if u == "alice@example.org"
    ));
    creds::create_with(&*table, "bob@example.org", "bob's", Hash::ARGON2_DEFAULT)
        .await
        .unwrap();
    assert!(
        table
            .lookup("bob@example.org")
            .await
            .unwrap()
            .unwrap()
            .starts_with("argon2:2:1024:1:")
    );
    assert_eq!(
        creds::list(&*table).await.unwrap(),
        ["alice@example.org", "bob@example.org"]
    );

    assert_eq!(
        auth.authenticate("alice@example.org", "first password")
            .await,
        Ok(())
    );
    assert_eq!(auth.authenticate("bob@example.org", "bob's").await, Ok(()));

    creds::set_password(&*table, "alice@EXAMPLE.org", "second password")
        .await
        .unwrap();
    assert_eq!(
        auth.authenticate("alice@example.org", "first password")
            .await,
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(
        auth.authenticate("alice@example.org", "second password")
            .await,
        Ok(())
    );

    creds::remove(&*table, "bob@example.org").await.unwrap();
    assert_eq!(
        auth.authenticate("bob@example.org", "bob's").await,
        Err(AuthError::InvalidCredentials)
    );
    assert!(matches!(
        creds::remove(&*table, "bob@example.org").await,
        Err(CredsError::NoSuchUser(u)) if u == "bob@example.org"
    ));
    assert!(matches!(
        creds::set_password(&*table, "carol@example.org", "x").await,
        Err(CredsError::NoSuchUser(_))
    ));
    assert!(matches!(
        creds::create(&*table, "bad user", "x").await,
        Err(CredsError::InvalidUsername { .. })
    ));
    assert_eq!(creds::list(&*table).await.unwrap(), ["alice@example.org"]);

    // A database maddy wrote: a hash maddy computed, inserted as maddy's sql_table does.
    table.set("foxcpp@example.org", MADDY_BCRYPT).await.unwrap();
    assert_eq!(
        auth.authenticate("foxcpp@example.org", "password").await,
        Ok(())
    );
}

#[test]
fn creds_needs_a_store() {
    let loaded = loaded(
        "table.static plain {\n    entry a b\n}\n\
         table.sql_table writable {\n    driver sqlite3\n    dsn :memory:\n    table_name t\n}\n\
         auth.pass_table local_authdb {\n    table &plain\n}\n\
         auth.pass_table other {\n    table &writable\n}\n\
         probe tcp://127.0.0.1:1 {\n    auth &local_authdb\n    auth &other\n}\n",
    );
    assert_eq!(
        creds::table_of(&instance(&loaded, "plain"))
            .err()
            .unwrap()
            .to_string(),
        "plain (table.static) is not a credentials store: name an auth.pass_table block or a modifiable table"
    );
    assert!(creds::table_of(&instance(&loaded, "writable")).is_ok());
    assert!(creds::table_of(&instance(&loaded, "other")).is_ok());
    assert_eq!(
        creds::table_of(&instance(&loaded, "local_authdb"))
            .err()
            .unwrap()
            .to_string(),
        "the password table of local_authdb (auth.pass_table) can't be modified (use table.sql_table, or table.sql_query with add, list, set and del queries)"
    );
}

#[test]
fn config_errors_have_positions() {
    let text = "auth.pass_table a {\n}\n\
                auth.pass_table b {\n    table &d\n    tabel x\n}\n\
                auth.pass_table c {\n    table nosuchtable\n}\n\
                probe tcp://127.0.0.1:1 {\n    auth &a\n    auth &b\n    auth &c\n    auth pass_table regexp\n}\n\
                auth.pass_table d {\n    table identity\n}\n";
    assert_eq!(
        errors_of(text),
        [
            "1:1: auth.pass_table: directive table is required",
            "4:11: &d is a auth.pass_table module, which can't be used as a table",
            "5:5: unknown directive tabel; did you mean table?",
            "8:11: unknown module nosuchtable (looked for table.nosuchtable, nosuchtable)",
            "14:5: table.regexp needs a regular expression: table.regexp REGEX [REPLACEMENT...]",
        ]
    );
}

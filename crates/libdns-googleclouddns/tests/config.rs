//! `libdns.googleclouddns` configuration: directives, defaults, key files and errors with
//! their positions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod standin;

use std::collections::HashMap;
use std::path::Path;

use madmail_config::Environment;
use madmail_dns::DnsProvider;
use madmail_libdns_http::testing::{provider_block, provider_from};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};

fn errors(block: &str) -> Vec<String> {
    match provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        block,
    ) {
        Ok(_) => panic!("accepted:\n{block}"),
        Err(errors) => errors,
    }
}

fn key_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `text` as a quoted configuration argument.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}

#[test]
fn minimal_and_full_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let key = standin::key_json("https://oauth2.googleapis.com/token", &standin::key().pem);
    let path = key_file(&dir, "key.json", &key);
    let provider = provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        &format!("project my-project\nservice_account_json {path}"),
    )
    .unwrap();
    assert_eq!(provider.name(), "googleclouddns");
    provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        &format!(
            "project my-project\nservice_account_json {path}\nendpoint http://127.0.0.1:8080/dns/v1\ntimeout 5s\nretries 0"
        ),
    )
    .unwrap();
    // The key file's JSON itself.
    provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        &format!("project my-project\nservice_account_json {}", quoted(&key)),
    )
    .unwrap();
    // Without a key: application default credentials (here: the metadata server).
    provider_block(
        madmail_libdns_googleclouddns::register,
        "googleclouddns",
        "project my-project",
    )
    .unwrap();
    assert_eq!(
        madmail_libdns_http::parse_endpoint(madmail_libdns_googleclouddns::DEFAULT_ENDPOINT)
            .unwrap()
            .as_str(),
        "https://dns.googleapis.com/dns/v1/"
    );
}

/// `dns_user ADDR { dns ... }`: an endpoint that only builds its `dns` provider.
fn build_user(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let dns = block.all("dns");
    block.finish()?;
    let provider = ctx.module_from::<dyn DnsProvider>(dns[0], 0, "libdns")?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(provider),
    ))
}

/// Loads `text` (with `dns_user` endpoints) as the configuration file `path` with the
/// environment `env`.
fn load_at(path: &Path, text: &str, env: &[(&str, &str)]) -> Result<(), Vec<String>> {
    let env = Environment::Map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    );
    let nodes = madmail_config::parse_str(path, text, &env).map_err(|e| vec![e.to_string()])?;
    let mut registry = Registry::new();
    madmail_libdns_googleclouddns::register(&mut registry);
    registry.register(ModuleSpec {
        name: "dns_user",
        kind: Kind::Endpoint,
        build: build_user,
        summary: "test consumer of a DNS provider",
    });
    madmail_module::load(&registry, &nodes)
        .map(|_| ())
        .map_err(madmail_module::testing::error_lines)
}

#[test]
fn relative_key_paths_are_relative_to_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    key_file(
        &dir,
        "key.json",
        &standin::key_json("https://oauth2.googleapis.com/token", &standin::key().pem),
    );
    let block = |path: &str| {
        format!(
            "libdns.googleclouddns gdns {{\n    project p-1\n    service_account_json {path}\n}}\ndns_user tcp://127.0.0.1:1 {{\n    dns &gdns\n}}\n"
        )
    };
    load_at(&dir.path().join("madmail.conf"), &block("key.json"), &[]).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let lines = load_at(
        &elsewhere.path().join("madmail.conf"),
        &block("key.json"),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        lines,
        [format!(
            "3:26: service_account_json: cannot read {}: No such file or directory (os error 2)",
            elsewhere.path().join("key.json").display()
        )]
    );
}

#[test]
fn the_key_may_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = standin::key_json("https://oauth2.googleapis.com/token", &standin::key().pem);
    let text = "dns_user tcp://127.0.0.1:1 {\n    dns googleclouddns {\n        project p-1\n        service_account_json {env:GCP_DNS_KEY}\n    }\n}\n";
    load_at(
        &dir.path().join("madmail.conf"),
        text,
        &[("GCP_DNS_KEY", &key)],
    )
    .unwrap();
}

#[test]
fn errors_point_at_the_directive() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(errors(""), ["2:5: dns: directive project is required"]);
    assert_eq!(errors("project \"\""), ["3:9: project is empty"]);
    assert_eq!(
        errors("project a/b"),
        ["3:9: project \"a/b\" is not a project id"]
    );
    assert_eq!(
        errors("project p\nservice_account_json \"\""),
        ["4:22: service_account_json is empty"]
    );
    assert_eq!(
        errors("project p\nservice_account_json /nonexistent/key.json"),
        [
            "4:22: service_account_json: cannot read /nonexistent/key.json: No such file or directory (os error 2)"
        ]
    );
    let not_json = key_file(&dir, "bad.json", "private_key: secret\n");
    assert_eq!(
        errors(&format!("project p\nservice_account_json {not_json}")),
        [format!(
            "4:22: service_account_json: {not_json}: not a JSON key file (line 1, column 1: syntax error)"
        )]
    );
    let not_rsa = key_file(
        &dir,
        "notrsa.json",
        &standin::key_json(
            "https://oauth2.googleapis.com/token",
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
        ),
    );
    let lines = errors(&format!("project p\nservice_account_json {not_rsa}"));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!(
            "4:22: service_account_json: {not_rsa}: private_key is not an RSA private key in PEM form"
        )),
        "{lines:?}"
    );
    assert!(!lines[0].contains("c2VjcmV0"), "{lines:?}");
    let no_email = key_file(
        &dir,
        "noemail.json",
        &standin::key_json("https://oauth2.googleapis.com/token", &standin::key().pem)
            .replace("client_email", "email"),
    );
    assert_eq!(
        errors(&format!("project p\nservice_account_json {no_email}")),
        [format!(
            "4:22: service_account_json: {no_email}: the key file has no \"client_email\""
        )]
    );
    assert_eq!(
        errors(&format!(
            "project p\nservice_account_json {}",
            quoted(&standin::key_json(
                "ftp://example.org/token",
                &standin::key().pem
            ))
        )),
        ["4:22: service_account_json: token_uri \"ftp://example.org/token\" is not an http(s) URL"]
    );
    // A mangled inline key is not quoted back.
    assert_eq!(
        errors(&format!(
            "project p\nservice_account_json {}",
            quoted("\"private_key\": \"secret-material\"}")
        )),
        ["4:22: service_account_json: neither a key file's path nor its JSON"]
    );
    assert_eq!(
        errors("project p\nservice_account_json a b"),
        ["4:24: service_account_json takes exactly one value"]
    );
    let lines = errors("project p\nendpoint dns.googleapis.com/dns/v1");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("4:10: endpoint: "), "{lines:?}");
    assert_eq!(
        errors("project p\nendpoint https://user:pw@dns.googleapis.com/dns/v1"),
        [
            "4:10: endpoint: must not contain credentials (user:password@); expected the API's base URL such as https://api.example.com/v1/"
        ]
    );
    assert_eq!(
        errors("project p\ntimeout 0s"),
        ["4:9: timeout must be longer than 0"]
    );
    let lines = errors("project p\ngcp_project q");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("4:1: unknown directive gcp_project"),
        "{lines:?}"
    );
}

#[test]
fn no_arguments_on_the_block() {
    let lines = match provider_from(
        madmail_libdns_googleclouddns::register,
        "dns_user tcp://127.0.0.1:1 {\n    dns googleclouddns extra {\n        project p\n    }\n}\n",
    ) {
        Ok(_) => panic!("accepted"),
        Err(lines) => lines,
    };
    assert_eq!(
        lines,
        ["2:24: libdns.googleclouddns takes no arguments, only a block"]
    );
}

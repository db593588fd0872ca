//! `config check`, `config dump` and `version`.

use crate::{conformance_dir, madmail, run_madmail, tempdir, text, write};

#[test]
fn check_reports_file_line_col_for_an_unknown_directive() {
    let dir = tempdir();
    let bad = write(
        dir.path(),
        "bad.conf",
        "hostname mx.example.org\n# the next line has a typo\n\nhostnam mx.example.org\n",
    );
    let out = run_madmail(&[
        "--config",
        bad.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:1: unknown directive hostnam; did you mean hostname?",
            bad.display()
        )),
        "{stderr}"
    );
    // The offending line is quoted with a caret.
    assert!(
        stderr.contains("4 | hostnam mx.example.org\n  | ^"),
        "{stderr}"
    );
}

#[test]
fn check_lists_every_error() {
    let dir = tempdir();
    let conf = write(
        dir.path(),
        "many.conf",
        "debug maybe\nstorage.imapsql local_mailboxes {\n}\ndummy d {\n    colour blue\n}\ncheck.rspamd r {\n}\n",
    );
    let out = run_madmail(&[
        "--config",
        conf.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        "many.conf:1:7: debug: expected yes or no, not \"maybe\"",
        "many.conf:2:1: storage.imapsql is a maddy module that madmail does not implement yet",
        "many.conf:4:1: dummy d is defined but never used",
        "many.conf:5:5: unknown directive colour",
        "many.conf:7:1: check.rspamd is a maddy module that madmail does not implement yet",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("5 errors"), "{stderr}");
}

#[test]
fn check_accepts_a_valid_config_and_the_example() {
    let dir = tempdir();
    let conf = write(
        dir.path(),
        "ok.conf",
        "hostname mx.example.org\nstate_dir /tmp/x\nlog off\n",
    );
    let out = run_madmail(&[
        "--config",
        conf.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid"));

    // The production template, with its certificate paths pointed at a real pair.
    crate::require_tool("command -v openssl", "openssl");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../maddy.conf.example");
    let template = std::fs::read_to_string(example).unwrap_or_default();
    assert!(template.contains("/etc/madmail/certs/$(hostname)/"));
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap_or_default();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mx1.example.org",
        ])
        .arg("-keyout")
        .arg(certs.join("privkey.pem"))
        .arg("-out")
        .arg(certs.join("fullchain.pem"))
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conf = write(
        dir.path(),
        "madmail.conf",
        &template.replace(
            "/etc/madmail/certs/$(hostname)/",
            &format!("{}/", certs.display()),
        ),
    );
    let out = run_madmail(&[
        "--config",
        conf.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert!(
        out.status.success(),
        "maddy.conf.example: {}",
        text(&out.stderr)
    );

    // Its commented-out ACME and monitoring blocks, switched on, are valid too.
    let mut switched = Vec::new();
    let mut in_acme = false;
    for line in template.lines() {
        if line.starts_with("tls file ") {
            continue;
        }
        if line.starts_with("# tls.loader.acme local_tls {") {
            in_acme = true;
        }
        if in_acme || line.starts_with("# openmetrics ") {
            let uncommented = line
                .strip_prefix("# ")
                .unwrap_or(line.trim_start_matches('#'));
            switched.push(uncommented.to_owned());
            if line.starts_with("# tls &local_tls") {
                in_acme = false;
            }
        } else {
            switched.push(line.to_owned());
        }
    }
    let switched = switched.join("\n");
    assert!(
        switched.contains("\ntls.loader.acme local_tls {") && switched.contains("\nopenmetrics ")
    );
    let conf = write(dir.path(), "acme.conf", &switched);
    let out = madmail()
        .env("CLOUDFLARE_API_TOKEN", "test-token")
        .args([
            "--config",
            conf.to_str().unwrap_or_default(),
            "config",
            "check",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "maddy.conf.example with ACME: {}",
        text(&out.stderr)
    );
}

#[test]
fn config_from_environment_and_missing_file() {
    let dir = tempdir();
    let conf = write(dir.path(), "env.conf", "hostname mx.example.org\n");
    let out = madmail()
        .env("MADMAIL_CONFIG", &conf)
        .args(["config", "check"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let missing = dir.path().join("missing.conf");
    let out = run_madmail(&[
        "--config",
        missing.to_str().unwrap_or_default(),
        "config",
        "check",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.conf: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_command_line_is_a_usage_error() {
    let out = run_madmail(&["config", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_madmail(&["--config"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dump_json_matches_maddy_for_the_corpus_sample() {
    // With an empty environment, as the corpus was made.
    let corpus = conformance_dir();
    for name in ["basic_test_0", "contrib_kubernetes_chart_files_maddy"] {
        let conf = corpus.join(format!("{name}.conf"));
        let out = madmail()
            .env_clear()
            .args([
                "config",
                "dump",
                "--json",
                conf.to_str().unwrap_or_default(),
            ])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = std::fs::read(corpus.join(format!("{name}.expected.json")))
            .unwrap_or_else(|e| panic!("{e}"));
        let expected: serde_json::Value =
            serde_json::from_slice(&expected).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn dump_text_reparses_to_the_same_tree() {
    let dir = tempdir();
    let conf = write(
        dir.path(),
        "in.conf",
        "$(hosts) = a.example b.example\n(common) {\n    note \"x y\" \"\" 'q'\n}\nsmtp tcp://[::1]:25 {\n    import common\n    domains $(hosts)\n    quoted \"with # hash\" \"a \\\"b\\\"\"\n}\n",
    );
    let path = conf.to_str().unwrap_or_default();
    let text_out = run_madmail(&["config", "dump", path]);
    assert!(text_out.status.success(), "{}", text(&text_out.stderr));
    let again = write(dir.path(), "again.conf", &text(&text_out.stdout));
    let strip_lines = |v: serde_json::Value| -> serde_json::Value {
        fn walk(v: &mut serde_json::Value) {
            if let Some(arr) = v.as_array_mut() {
                for n in arr {
                    if let Some(obj) = n.as_object_mut() {
                        obj.remove("line");
                        if let Some(c) = obj.get_mut("children") {
                            walk(c);
                        }
                    }
                }
            }
        }
        let mut v = v;
        walk(&mut v);
        v
    };
    let json_of = |p: &str| {
        let out = run_madmail(&["config", "dump", "--json", p]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        strip_lines(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}")))
    };
    let original = json_of(path);
    assert_eq!(original, json_of(again.to_str().unwrap_or_default()));
    assert_eq!(
        original[0]["children"][1]["args"],
        serde_json::json!(["a.example", "b.example"])
    );
}

#[test]
fn dump_reports_parse_errors_with_position() {
    let dir = tempdir();
    let conf = write(
        dir.path(),
        "broken.conf",
        "smtp tcp://:25 {\n    hostname x\n} trailing\n",
    );
    let out = run_madmail(&[
        "config",
        "dump",
        "--json",
        conf.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("broken.conf:3:3: a newline is required after a closing brace"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn version_lists_modules() {
    let out = run_madmail(&["version"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("madmail "), "{stdout}");
    assert!(stdout.contains("dummy"), "{stdout}");
    assert!(stdout.contains("DNS providers:"), "{stdout}");
}

/// Every provider whose cargo feature this build has, and only those, is listed; a
/// `libdns_all` build (what `cargo xtask test` runs) lists all of them.
#[test]
fn version_lists_the_compiled_dns_providers() {
    let compiled: [(&str, bool); 20] = [
        ("acmedns", cfg!(feature = "libdns_acmedns")),
        ("alidns", cfg!(feature = "libdns_alidns")),
        ("cloudflare", cfg!(feature = "libdns_cloudflare")),
        ("desec", cfg!(feature = "libdns_desec")),
        ("digitalocean", cfg!(feature = "libdns_digitalocean")),
        ("gandi", cfg!(feature = "libdns_gandi")),
        ("gcore", cfg!(feature = "libdns_gcore")),
        ("googleclouddns", cfg!(feature = "libdns_googleclouddns")),
        ("hetzner", cfg!(feature = "libdns_hetzner")),
        ("leaseweb", cfg!(feature = "libdns_leaseweb")),
        ("linode", cfg!(feature = "libdns_linode")),
        ("metaname", cfg!(feature = "libdns_metaname")),
        ("namecheap", cfg!(feature = "libdns_namecheap")),
        ("namedotcom", cfg!(feature = "libdns_namedotcom")),
        ("ovh", cfg!(feature = "libdns_ovh")),
        ("porkbun", cfg!(feature = "libdns_porkbun")),
        ("powerdns", cfg!(feature = "libdns_powerdns")),
        ("rfc2136", cfg!(feature = "libdns_rfc2136")),
        ("route53", cfg!(feature = "libdns_route53")),
        ("vultr", cfg!(feature = "libdns_vultr")),
    ];
    let out = run_madmail(&["version"]);
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DNS providers: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let expected: Vec<&str> = compiled
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(line, expected.join(", "));
    if cfg!(feature = "libdns_all") {
        assert_eq!(expected.len(), compiled.len());
    }
    // A provider left out is named with the feature that adds it.
    if let Some((name, _)) = compiled.iter().find(|(_, on)| !on) {
        let dir = tempdir();
        let conf = write(dir.path(), "m.conf", &format!("libdns.{name} x {{\n}}\n"));
        let out = run_madmail(&[
            "--config",
            conf.to_str().unwrap_or_default(),
            "config",
            "check",
        ]);
        assert!(
            text(&out.stderr).contains(&format!(
                "libdns.{name} is not compiled into this build; rebuild with --features libdns_{name}"
            )),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn systemd_unit_is_valid() {
    crate::require_tool("command -v systemd-analyze", "systemd");
    let dir = tempdir();
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/madmail.service");
    let text_unit = std::fs::read_to_string(unit).unwrap_or_default();
    assert!(text_unit.contains("Type=notify") && text_unit.contains("CAP_NET_BIND_SERVICE"));
    // Point it at the binary under test; everything else is verified as shipped.
    let local = write(
        dir.path(),
        "madmail.service",
        &text_unit.replace("/usr/local/bin/madmail", env!("CARGO_BIN_EXE_madmail")),
    );
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
    let complaints: Vec<String> = text(&out.stderr)
        .lines()
        // A container without a running systemd cannot resolve the unit's users.
        .filter(|l| {
            !l.contains("Failed to resolve user") && !l.contains("User=") && !l.trim().is_empty()
        })
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "{complaints:?}"
    );
}

#[test]
fn creds_manage_users_of_a_pass_table() {
    let dir = tempdir();
    let conf = write(
        dir.path(),
        "madmail.conf",
        "hostname mx.example.test\nstate_dir state\nauth.pass_table local_authdb other_name {\n    table sql_table {\n        driver sqlite3\n        dsn credentials.db\n        table_name passwords\n    }\n}\nsmtp tcp://127.0.0.1:1 {\n    tls off\n    auth &local_authdb\n    deliver_to dummy\n}\n",
    );
    let conf = conf.to_str().unwrap_or_default();
    let creds = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = madmail()
            .args(["--config", conf, "creds"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    };
    // The password from stdin (not a terminal), usernames normalised as maddy does.
    let out = creds(&["create", "Alice@Example.test"], "first password\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = creds(&["create", "--password", "x", "bob@example.test"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = creds(&["create", "--password", "x", "bob@example.test"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );

    let out = creds(&["list", "--cfg-block", "other_name"], "");
    assert_eq!(text(&out.stdout), "alice@example.test\nbob@example.test\n");
    // The database is in state_dir, as the server will look for it.
    assert!(dir.path().join("state/credentials.db").exists());

    let out = creds(&["password", "--password", "new", "alice@example.test"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = creds(&["remove", "bob@example.test"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = creds(&["remove", "nobody@example.test"], "");
    assert_eq!(out.status.code(), Some(1));
    let out = creds(&["list"], "");
    assert_eq!(text(&out.stdout), "alice@example.test\n");
    let out = creds(&["list", "--cfg-block", "missing"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no configuration block named missing"));
}

//! maddy 0.9.4 conformance: every config in the shared corpus must parse to exactly the tree
//! maddy's parser produced, or fail on the line maddy's error names. Run with an empty
//! environment, as the expected trees were made. A missing corpus fails the test.

#![allow(clippy::expect_used)] // a test: a corrupt corpus file should just fail it

use std::path::{Path, PathBuf};

use madmail_config::{Environment, dump, parse_file};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("MADMAIL_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/maddy-config")
        }
    }
}

/// The line number in a maddy error such as `name.conf:6: unknown import` or
/// `name.conf:4 - Error during parsing: ...`; some maddy errors name no line.
fn expected_error_line(text: &str) -> Option<u32> {
    let after = &text[text.find(".conf:")? + ".conf:".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn maddy_corpus() {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance corpus {} is missing: {e}", dir.display()));
    let mut confs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    confs.sort();
    assert!(
        confs.len() >= 195,
        "expected at least 195 configs in {}, found {}",
        dir.display(),
        confs.len()
    );

    let mut failures = Vec::new();
    for conf in &confs {
        let stem = conf.with_extension("");
        let json_path = PathBuf::from(format!("{}.expected.json", stem.display()));
        let err_path = PathBuf::from(format!("{}.expected-error", stem.display()));
        let result = parse_file(conf, &Environment::empty());
        let name = conf
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(expected) = std::fs::read_to_string(&json_path) {
            let expected: serde_json::Value = serde_json::from_str(&expected).expect("corpus JSON");
            match result {
                Ok(nodes) => {
                    let got = dump::to_json(&nodes);
                    if got != expected {
                        failures.push(format!(
                            "{name}: tree differs\n  got:      {got}\n  expected: {expected}"
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name}: unexpected error: {e}")),
            }
        } else if let Ok(expected) = std::fs::read_to_string(&err_path) {
            match result {
                Ok(_) => failures.push(format!(
                    "{name}: parsed, but maddy rejects it: {}",
                    expected.trim()
                )),
                Err(e) => {
                    if let Some(line) = expected_error_line(&expected) {
                        let got = e.pos().map(|p| p.line());
                        if got != Some(line) {
                            failures.push(format!(
                                "{name}: error on line {got:?}, maddy says line {line}: {e} / {}",
                                expected.trim()
                            ));
                        }
                    }
                }
            }
        } else {
            failures.push(format!("{name}: no expected result next to it"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} configs disagree with maddy:\n{}",
        failures.len(),
        confs.len(),
        failures.join("\n")
    );
}

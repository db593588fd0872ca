//! Any input must parse to a tree or to an error, never panic or hang; a tree must also dump.
//!
//! The path names a directory that does not exist, so imports of files fail (as errors) and
//! nothing is read or written; snippet imports, macros and `{env:X}` are still exercised.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use madmail_config::{Environment, dump, parse_str};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = Environment::empty();
    if let Ok(nodes) = parse_str(Path::new("/nonexistent/fuzz.conf"), &text, &env) {
        let _ = dump::to_json(&nodes);
        let _ = dump::to_text(&nodes);
    }
});

//! End-to-end tests: the real `madmail` binary, driven as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod cli;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn madmail() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_madmail"));
    cmd.env_remove("MADMAIL_CONFIG").env_remove("NOTIFY_SOCKET");
    cmd
}

pub fn run_madmail(args: &[&str]) -> Output {
    madmail()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run madmail: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/maddy-config")
}

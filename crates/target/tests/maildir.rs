//! `storage.maildir` on a real filesystem: layout, case folding, durability order, cleanup
//! after abort and failures, traversal attempts, unique names under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use madmail_module::delivery::DeliveryTarget;

use common::{deliver, envelope, errors_of, load_target};

fn config(root: &Path) -> String {
    format!(
        "hostname mx.test\n\
         storage.maildir local_mailboxes {{\n    root {}\n}}\n\
         capture tcp://127.0.0.1:1 {{\n    deliver_to &local_mailboxes\n}}\n",
        root.display()
    )
}

/// The file names in `dir` (empty when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

const MESSAGE: &[u8] = b"From: a@example.org\r\nSubject: hello\r\n\r\nline one\r\n.line two\r\n";

#[tokio::test]
async fn several_recipients_case_folded_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    let (target, mut running) = load_target(&config(&root)).await;
    assert!(root.is_dir(), "start creates the root");

    deliver(
        &*target,
        "sender@example.org",
        &["Alice@Example.ORG", "bob@example.org", "alice@example.org"],
        MESSAGE,
    )
    .await
    .unwrap();

    let mut mailboxes: Vec<String> = files(&root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    mailboxes.sort();
    assert_eq!(mailboxes, ["alice@example.org", "bob@example.org"]);

    let expected = b"Return-Path: <sender@example.org>\nFrom: a@example.org\nSubject: hello\n\nline one\n.line two\n";
    let mut inodes = HashSet::new();
    for mailbox in &mailboxes {
        let mailbox = root.join(mailbox);
        for sub in ["tmp", "new", "cur"] {
            let meta = fs::metadata(mailbox.join(sub)).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
        }
        assert_eq!(
            fs::metadata(&mailbox).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(files(&mailbox.join("tmp")).is_empty());
        assert!(files(&mailbox.join("cur")).is_empty());
        let new = files(&mailbox.join("new"));
        assert_eq!(new.len(), 1, "one copy per mailbox, duplicates folded");
        let path = &new[0];
        assert_eq!(fs::read(path).unwrap(), expected);
        let meta = fs::metadata(path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(&format!(
                ",S={},W={}",
                expected.len(),
                expected.len() + expected.iter().filter(|&&b| b == b'\n').count()
            )),
            "{name}"
        );
        assert!(!name.contains(':'), "new/ names carry no flags: {name}");
        inodes.insert(meta.ino());
    }
    assert_eq!(inodes.len(), 1, "written once, hard-linked");
    running.stop().await;
}

#[tokio::test]
async fn nothing_in_new_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _running) = load_target(&config(dir.path())).await;
    let mailbox = dir.path().join("rcpt@example.org");

    let mut delivery = target.start(&envelope("s@example.org")).await.unwrap();
    delivery.add_rcpt("rcpt@example.org").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    assert!(files(&mailbox.join("new")).is_empty());
    assert_eq!(files(&mailbox.join("tmp")).len(), 1, "staged in tmp/");

    delivery.commit().await.unwrap();
    assert_eq!(files(&mailbox.join("new")).len(), 1);
    assert!(files(&mailbox.join("tmp")).is_empty());
}

#[tokio::test]
async fn abort_and_drop_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _running) = load_target(&config(dir.path())).await;
    let mailbox = dir.path().join("rcpt@example.org");

    let mut delivery = target.start(&envelope("s@example.org")).await.unwrap();
    delivery.add_rcpt("rcpt@example.org").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    delivery.abort().await;
    assert!(files(&mailbox.join("new")).is_empty());
    assert!(files(&mailbox.join("tmp")).is_empty());

    // A delivery whose task is cancelled is dropped without commit or abort.
    let mut delivery = target.start(&envelope("s@example.org")).await.unwrap();
    delivery.add_rcpt("rcpt@example.org").await.unwrap();
    delivery.body(MESSAGE).await.unwrap();
    drop(delivery);
    assert!(files(&mailbox.join("new")).is_empty());
    assert!(files(&mailbox.join("tmp")).is_empty());
}

#[tokio::test]
async fn failure_for_one_mailbox_rolls_back_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _running) = load_target(&config(dir.path())).await;
    // A file where bob's mailbox directory should be: his delivery can't succeed.
    fs::write(dir.path().join("bob@example.org"), b"in the way").unwrap();

    let err = deliver(
        &*target,
        "s@example.org",
        &["alice@example.org", "bob@example.org"],
        MESSAGE,
    )
    .await
    .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(err.enhanced, "4.3.0");
    let alice = dir.path().join("alice@example.org");
    assert!(files(&alice.join("new")).is_empty(), "rolled back");
    assert!(files(&alice.join("tmp")).is_empty(), "tmp cleaned");
}

#[tokio::test]
async fn traversal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    let (target, _running) = load_target(&config(&root)).await;
    let mut delivery = target.start(&envelope("s@example.org")).await.unwrap();
    for bad in [
        "../escape@example.org",
        "..",
        ".",
        ".dovecot@example.org",
        "a/../../b@example.org",
        "/etc/passwd",
        "nul\0@example.org",
        "line\r\nbreak@example.org",
    ] {
        let err = delivery.add_rcpt(bad).await.unwrap_err();
        assert_eq!((err.code, err.enhanced.as_str()), (553, "5.1.3"), "{bad:?}");
    }
    delivery.abort().await;
    assert_eq!(
        files(dir.path()),
        std::slice::from_ref(&root),
        "nothing outside the root"
    );
    assert!(files(&root).is_empty());
}

#[tokio::test]
async fn no_recipients_is_an_error_not_a_silent_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _running) = load_target(&config(dir.path())).await;
    let mut delivery = target.start(&envelope("s@example.org")).await.unwrap();
    let err = delivery.body(MESSAGE).await.unwrap_err();
    assert_eq!((err.code, err.enhanced.as_str()), (554, "5.5.1"));
}

#[tokio::test]
async fn root_missing_at_delivery_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("later");
    let (target, _running) = load_target(&config(&root)).await;
    fs::remove_dir(&root).unwrap();
    deliver(&*target, "", &["x@example.org"], MESSAGE)
        .await
        .unwrap();
    let new = files(&root.join("x@example.org").join("new"));
    assert_eq!(new.len(), 1);
    assert!(fs::read(&new[0]).unwrap().starts_with(b"Return-Path: <>\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_get_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _running) = load_target(&config(dir.path())).await;
    let target: Arc<dyn DeliveryTarget> = target;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let body = format!("Subject: {t}-{i}\r\n\r\nx\r\n");
                deliver(
                    &*target,
                    "s@example.org",
                    &["same@example.org", "other@example.org"],
                    body.as_bytes(),
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for mailbox in ["same@example.org", "other@example.org"] {
        let new = files(&dir.path().join(mailbox).join("new"));
        assert_eq!(new.len(), 320, "{mailbox}");
        let subjects: HashSet<Vec<u8>> = new.iter().map(|p| fs::read(p).unwrap()).collect();
        assert_eq!(subjects.len(), 320, "every message kept, none overwritten");
    }
}

#[tokio::test]
async fn relative_root_is_under_state_dir_and_inline_works() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname mx.test\nstate_dir {}\n\
         capture tcp://127.0.0.1:1 {{\n    deliver_to storage.maildir {{\n        root boxes\n    }}\n}}\n",
        dir.path().display()
    );
    let (target, _running) = load_target(&text).await;
    deliver(&*target, "s@example.org", &["u@example.org"], MESSAGE)
        .await
        .unwrap();
    assert_eq!(files(&dir.path().join("boxes/u@example.org/new")).len(), 1);
}

#[test]
fn config_errors() {
    assert_eq!(
        errors_of("storage.maildir m {\n}\ncapture tcp://127.0.0.1:1 {\n    deliver_to &m\n}\n"),
        ["1:1: storage.maildir: directive root is required"]
    );
    assert_eq!(
        errors_of(
            "capture tcp://127.0.0.1:1 {\n    deliver_to storage.maildir /x {\n        root /y\n        rot /z\n    }\n}\n"
        ),
        [
            "2:32: storage.maildir takes no arguments; set the directory with root",
            "4:9: unknown directive rot; did you mean root?",
        ]
    );
    assert_eq!(
        errors_of(
            "storage.maildir m {\n    root a b\n}\ncapture tcp://127.0.0.1:1 {\n    deliver_to &m\n}\n"
        ),
        ["2:12: root takes exactly one value"]
    );
}

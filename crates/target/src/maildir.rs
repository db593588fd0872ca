//! `storage.maildir`: durable delivery into `ROOT/<lowercased address>/{tmp,new,cur}`.
//!
//! A message is written once, into `tmp/` of the first recipient's mailbox, and fsynced while
//! the body is received. `commit` then hard-links it into `new/` of every recipient's mailbox
//! and fsyncs those directories, so when the sender gets its 250 every copy is on disk. Hard
//! links cost one directory entry per extra recipient instead of one more write and fsync of
//! the whole message; Maildir files are never modified in place, so sharing an inode is safe
//! (Dovecot itself copies between Maildirs with hard links). Across filesystems (a mailbox
//! that is a mount point) it falls back to a copy.
//!
//! Nothing here lists or scans a directory, and no lock is shared between deliveries: the
//! cost of a delivery does not depend on how many messages a mailbox holds. Unique names come
//! from the time, the process ID, a per-process counter and a random number.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::decode::single;
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec,
};

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "storage.maildir",
    kind: Kind::Named,
    build,
    summary: "durable delivery into one Maildir per recipient",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    if let Some(extra) = def.args.first() {
        errors.push(Error::at(
            &extra.pos,
            "storage.maildir takes no arguments; set the directory with root",
        ));
    }
    let globals = ctx.globals();
    let mut block = Block::new(def.node, globals.clone());
    let root = block
        .custom("root", |n| {
            let value = single(n)?;
            if value.is_empty() {
                return Err(Error::at(n.arg_pos(0), "root: empty path"));
            }
            Ok(PathBuf::from(value))
        })
        .required();
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let root = match root {
        Some(root) if errors.is_empty() => root,
        _ => return Err(errors),
    };
    // The server runs in state_dir, as maddy does; joining here makes that explicit and
    // independent of the process's working directory.
    let maildir = Arc::new(Maildir::new(globals.state_dir.join(root)));
    Ok(
        Built::new(Capabilities::new().with::<dyn DeliveryTarget>(maildir.clone()))
            .with_lifecycle(maildir),
    )
}

/// A tree of Maildirs, one per recipient address, under one root directory.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: Arc<Path>,
}

impl Maildir {
    /// Mailboxes will be `root/<lowercased address>/`; nothing is touched until
    /// [`Lifecycle::start`] or the first delivery.
    pub fn new(root: PathBuf) -> Maildir {
        Maildir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[async_trait]
impl Lifecycle for Maildir {
    async fn start(&self) -> Result<(), String> {
        let root = self.root.clone();
        let created = tokio::task::spawn_blocking(move || {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)?;
            // Fail now, not at the first message, when the root is unusable.
            if !fs::metadata(&root)?.is_dir() {
                return Err(io::Error::other("not a directory"));
            }
            Ok::<(), io::Error>(())
        })
        .await;
        match created {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("maildir root {}: {e}", self.root.display())),
            Err(e) => Err(format!("maildir root {}: {e}", self.root.display())),
        }
    }

    async fn stop(&self) {}
}

#[async_trait]
impl DeliveryTarget for Maildir {
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        Ok(Box::new(MaildirDelivery {
            root: self.root.clone(),
            msg_id: envelope.id.clone(),
            return_path: envelope.mail_from.clone(),
            mailboxes: Vec::new(),
            staged: None,
        }))
    }
}

struct MaildirDelivery {
    root: Arc<Path>,
    msg_id: String,
    return_path: String,
    /// Distinct mailbox directories, in the order their recipients were added.
    mailboxes: Vec<PathBuf>,
    /// The message written to `tmp/`, waiting for `commit`.
    staged: Option<Staged>,
}

#[derive(Debug)]
struct Staged {
    /// `tmp/NAME` in the first mailbox.
    tmp: PathBuf,
    /// The file name to use in every `new/`.
    name: String,
}

#[async_trait]
impl Delivery for MaildirDelivery {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        let mailbox = self.root.join(mailbox_name(rcpt)?);
        if !self.mailboxes.contains(&mailbox) {
            self.mailboxes.push(mailbox);
        }
        Ok(())
    }

    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        if self.staged.is_some() {
            return Err(DeliveryError::temporary("message body given twice"));
        }
        let Some(first) = self.mailboxes.first().cloned() else {
            return Err(DeliveryError::new(554, "5.5.1", "no valid recipients"));
        };
        let content = file_content(&self.return_path, message);
        let root = self.root.clone();
        let staged = tokio::task::spawn_blocking(move || stage(&root, &first, &content))
            .await
            .map_err(|e| storage_error(&self.msg_id, "writing to tmp/", io::Error::other(e)))?
            .map_err(|e| storage_error(&self.msg_id, "writing to tmp/", e))?;
        self.staged = Some(staged);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DeliveryError> {
        let Some(staged) = self.staged.take() else {
            if self.mailboxes.is_empty() {
                return Ok(());
            }
            return Err(DeliveryError::temporary("commit without a message body"));
        };
        let root = self.root.clone();
        let mailboxes = std::mem::take(&mut self.mailboxes);
        let result = tokio::task::spawn_blocking(move || {
            let result = publish(&root, &staged, &mailboxes);
            (result, mailboxes, staged)
        })
        .await;
        match result {
            Ok((Ok(()), mailboxes, staged)) => {
                tracing::debug!(
                    msg_id = %self.msg_id,
                    file = %staged.name,
                    mailboxes = mailboxes.len(),
                    "delivered to maildir"
                );
                Ok(())
            }
            Ok((Err(e), _, _)) => Err(storage_error(&self.msg_id, "moving into new/", e)),
            // The blocking task panicked or was cancelled; its tmp file may remain and is
            // reclaimed by Maildir readers' usual tmp/ cleanup.
            Err(e) => Err(storage_error(
                &self.msg_id,
                "moving into new/",
                io::Error::other(e),
            )),
        }
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(staged) = self.staged.take() {
            let _ = tokio::task::spawn_blocking(move || remove_quietly(&staged.tmp)).await;
        }
    }
}

impl Drop for MaildirDelivery {
    /// A delivery dropped without `commit` or `abort` (its task was cancelled) must not leave
    /// its file behind. One unlink is cheap enough to do in place.
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            remove_quietly(&staged.tmp);
        }
    }
}

/// The directory name for `rcpt`: the whole address, lowercased. Anything that could leave
/// the root or hide the mailbox (`/`, a leading dot, which covers `.` and `..`, NUL and other
/// control characters) is refused.
fn mailbox_name(rcpt: &str) -> Result<String, DeliveryError> {
    let name = rcpt.to_lowercase();
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(char::is_control)
        || name.len() > 255;
    if bad {
        return Err(DeliveryError::new(
            553,
            "5.1.3",
            "address not allowed as a mailbox name",
        ));
    }
    Ok(name)
}

/// What the file holds: a `Return-Path` (RFC 5321 §4.4: added at final delivery), then the
/// message with LF line endings, as Maildir readers expect.
fn file_content(return_path: &str, message: &[u8]) -> Vec<u8> {
    let return_path: String = return_path.chars().filter(|c| !c.is_control()).collect();
    let mut out = Vec::with_capacity(message.len() + return_path.len() + 16);
    out.extend_from_slice(b"Return-Path: <");
    out.extend_from_slice(return_path.as_bytes());
    out.extend_from_slice(b">\n");
    let mut rest = message;
    while let Some(i) = rest.iter().position(|&b| b == b'\r') {
        if rest.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(&rest[..i]);
        } else {
            out.extend_from_slice(&rest[..=i]);
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out
}

/// The size an IMAP server reports (every bare LF counted as CRLF), for the `W=` field that
/// spares Dovecot reading the file to learn it.
fn virtual_size(content: &[u8]) -> usize {
    let bare_lf = content
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || content[i - 1] != b'\r'))
        .count();
    content.len() + bare_lf
}

static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// A Maildir file name unique on this host: `SECS.M<usec>P<pid>Q<n>R<random>.HOST`, then
/// Dovecot's `,S=<size>,W=<virtual size>`.
fn unique_name(size: usize, vsize: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}R{:016x}.{},S={size},W={vsize}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        DELIVERIES.fetch_add(1, Ordering::Relaxed),
        fastrand::u64(..),
        host_name(),
    )
}

/// The host name with the characters Maildir names reserve escaped: `/` and `:` per the
/// Maildir specification, `,` because Dovecot reads `,S=` fields after it.
fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let mut host = String::with_capacity(raw.len());
        for c in raw.chars() {
            match c {
                '/' => host.push_str("\\057"),
                ':' => host.push_str("\\072"),
                ',' => host.push_str("\\054"),
                c if c.is_control() => {}
                c => host.push(c),
            }
        }
        if host.is_empty() {
            host.push_str("localhost");
        }
        host
    })
}

/// Writes `content` to a new file in `mailbox/tmp/` and fsyncs it.
fn stage(root: &Path, mailbox: &Path, content: &[u8]) -> io::Result<Staged> {
    let vsize = virtual_size(content);
    let mut attempts = 0;
    let (name, tmp, mut file) = loop {
        let name = unique_name(content.len(), vsize);
        let tmp = mailbox.join("tmp").join(&name);
        match create_new(&tmp) {
            Ok(file) => break (name, tmp, file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_mailbox(root, mailbox)?;
                break (name, tmp.clone(), create_new(&tmp)?);
            }
            // Only a clock going backwards and a reused PID get here; a fresh name will do.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = file.write_all(content).and_then(|()| file.sync_all()) {
        remove_quietly(&tmp);
        return Err(e);
    }
    Ok(Staged { tmp, name })
}

/// Links the staged file into `new/` of every mailbox and fsyncs those directories; on any
/// failure removes the links made so far. The tmp file is removed in every case.
fn publish(root: &Path, staged: &Staged, mailboxes: &[PathBuf]) -> io::Result<()> {
    let mut linked: Vec<PathBuf> = Vec::with_capacity(mailboxes.len());
    let mut result = Ok(());
    for mailbox in mailboxes {
        let dest = mailbox.join("new").join(&staged.name);
        match link_into(root, mailbox, &staged.tmp, &dest) {
            Ok(()) => linked.push(dest),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = mailboxes
            .iter()
            .try_for_each(|mailbox| sync_dir(&mailbox.join("new")));
    }
    if result.is_err() {
        for path in &linked {
            remove_quietly(path);
        }
    }
    remove_quietly(&staged.tmp);
    result
}

fn link_into(root: &Path, mailbox: &Path, tmp: &Path, dest: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_mailbox(root, mailbox)?;
            link_or_copy(mailbox, tmp, dest)
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_into(mailbox, tmp, dest),
        other => other,
    }
}

fn link_or_copy(mailbox: &Path, tmp: &Path, dest: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, dest) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_into(mailbox, tmp, dest),
        other => other,
    }
}

/// For a mailbox on another filesystem: a durable copy in its own `tmp/`, linked into `new/`.
fn copy_into(mailbox: &Path, tmp: &Path, dest: &Path) -> io::Result<()> {
    let name = dest.file_name().unwrap_or_default();
    let copy = mailbox.join("tmp").join(name);
    let result = (|| {
        let mut from = File::open(tmp)?;
        let mut to = create_new(&copy)?;
        io::copy(&mut from, &mut to)?;
        to.sync_all()?;
        fs::hard_link(&copy, dest)
    })();
    remove_quietly(&copy);
    result
}

/// Creates `mailbox` with `tmp/`, `new/` and `cur/` (and the root if it went missing), each
/// 0700, and fsyncs the parents so the new entries survive a crash.
fn create_mailbox(root: &Path, mailbox: &Path) -> io::Result<()> {
    let mut dirs = DirBuilder::new();
    dirs.mode(0o700);
    match dirs.create(mailbox) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(root)?;
            ignore_exists(dirs.create(mailbox))?;
        }
        other => ignore_exists(other)?,
    }
    for sub in ["tmp", "new", "cur"] {
        ignore_exists(dirs.create(mailbox.join(sub)))?;
    }
    sync_dir(mailbox)?;
    sync_dir(root)
}

fn ignore_exists(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove maildir file");
    }
}

fn storage_error(msg_id: &str, step: &str, e: io::Error) -> DeliveryError {
    tracing::error!(msg_id, step, error = %e, "maildir delivery failed");
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            DeliveryError::new(452, "4.3.1", "insufficient storage, try again later")
        }
        _ => DeliveryError::new(451, "4.3.0", "local storage error, try again later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names() {
        assert_eq!(
            mailbox_name("John.Doe@Example.ORG").as_deref(),
            Ok("john.doe@example.org")
        );
        assert_eq!(mailbox_name("postmaster").as_deref(), Ok("postmaster"));
        assert_eq!(
            mailbox_name("ÄLice@exämple.org").as_deref(),
            Ok("älice@exämple.org")
        );
        for bad in [
            "",
            ".",
            "..",
            ".hidden@example.org",
            "../etc@example.org",
            "a/b@example.org",
            "a\0b@example.org",
            "a\nb@example.org",
        ] {
            let err = mailbox_name(bad).expect_err(bad);
            assert_eq!((err.code, err.enhanced.as_str()), (553, "5.1.3"), "{bad:?}");
        }
        assert!(mailbox_name(&format!("{}@example.org", "a".repeat(250))).is_err());
    }

    #[test]
    fn content_has_return_path_and_lf_endings() {
        let out = file_content("a@b.org", b"Subject: x\r\n\r\nline\r\nbare\rcr\r\r\n");
        assert_eq!(
            out,
            b"Return-Path: <a@b.org>\nSubject: x\n\nline\nbare\rcr\r\n".to_vec()
        );
        assert_eq!(file_content("", b""), b"Return-Path: <>\n".to_vec());
        assert_eq!(
            file_content("x\r\n@y", b"a"),
            b"Return-Path: <x@y>\na".to_vec()
        );
    }

    #[test]
    fn virtual_sizes() {
        assert_eq!(virtual_size(b"a\nb\n"), 6);
        assert_eq!(virtual_size(b"a\r\nb"), 4);
        assert_eq!(virtual_size(b"\n"), 2);
        assert_eq!(virtual_size(b""), 0);
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let a = unique_name(10, 12);
        let b = unique_name(10, 12);
        assert_ne!(a, b);
        assert!(a.ends_with(",S=10,W=12"), "{a}");
        assert!(!a.contains('/') && !a.contains(':'), "{a}");
        let host = host_name();
        assert!(
            !host.contains(['/', ':', ',']) && !host.is_empty(),
            "{host}"
        );
    }
}

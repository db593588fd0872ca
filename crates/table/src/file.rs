//! `table.file PATH`: maddy's text file of `key: value` lines, reloaded when it changes.
//!
//! File format (as maddy's): blank lines and lines starting with `#` are skipped; `key: value`
//! maps `key` to `value`; `key: a, b` maps it to two values; a line without a colon maps the
//! key to the empty string; a key given on several lines collects all their values. Leading
//! and trailing whitespace of keys and values is ignored.
//!
//! The file is checked every 15 seconds (maddy's interval). A change is applied once the file
//! has looked the same for a whole interval (maddy likewise waits for the file to settle), so
//! that a file caught half-written is not used: changes take 15 to 30 seconds. If the new
//! contents do not parse, the old ones stay in use and the error is logged once. A file that
//! disappears (and stays away for an interval) empties the table, as in maddy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use madmail_config::Error;
use madmail_module::decode::single;
use madmail_module::table::{Table, TableError};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec,
};
use tokio::task::JoinHandle;

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "table.file",
    kind: Kind::Named,
    build,
    summary: "table read from a key: value text file, reloaded when it changes",
};

/// How often the file is checked for changes (maddy's value).
const RELOAD_INTERVAL: Duration = Duration::from_secs(15);

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    if let Some(extra) = def.args.get(1) {
        errors.push(Error::at(
            &extra.pos,
            "table.file reads one file; use one table.file per file (a table.chain can combine them)",
        ));
    }
    let mut block = Block::new(def.node, ctx.globals());
    // Accepted for compatibility; logging verbosity is set globally in madmail.
    let _debug = block.flag("debug").inherit().optional();
    let file_directive = block
        .custom("file", |n| {
            single(n).map(|path| (path.to_owned(), n.arg_pos(0).clone(), n.pos.clone()))
        })
        .optional();
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let (path, pos) = match (def.args.first(), file_directive) {
        (Some(arg), None) => (arg.value.clone(), arg.pos.clone()),
        (None, Some((path, pos, _))) => (path, pos),
        (Some(_), Some((_, _, directive))) => {
            errors.push(Error::at(
                &directive,
                "the file is given both as an argument and with the file directive; give it once",
            ));
            return Err(errors);
        }
        (None, None) => {
            if errors.is_empty() {
                errors.push(Error::at(
                    &def.node.pos,
                    "table.file needs a file: table.file PATH, or a file directive in its block",
                ));
            }
            return Err(errors);
        }
    };
    errors.into_result(())?;

    let path = PathBuf::from(path);
    let snapshot = match read(&path) {
        Ok(snapshot) => snapshot,
        Err(ReadError::NotFound) => {
            tracing::warn!(
                module = "table.file",
                path = %path.display(),
                "file does not exist; the table is empty until it appears"
            );
            Snapshot::default()
        }
        Err(e) => return Err(Errors::at(&pos, format!("table.file: {e}"))),
    };
    let table = Arc::new(FileTable::new(path, snapshot, RELOAD_INTERVAL));
    Ok(Built::new(Capabilities::new().with::<dyn Table>(table.clone())).with_lifecycle(table))
}

/// The file's contents at one point in time.
#[derive(Default)]
struct Snapshot {
    map: HashMap<String, Vec<String>>,
    /// Identity of the file version read; `None` when there was no file.
    stamp: Option<Stamp>,
}

/// What tells one version of the file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Device and inode: an editor or `mv` replacing the file gives a new one.
    file_id: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let file_id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let file_id = (0, 0);
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            file_id,
        }
    }
}

#[derive(Debug)]
enum ReadError {
    NotFound,
    Io(std::io::Error),
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The file changed while it was read; try again later.
    Changed,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("file does not exist"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            ReadError::Changed => f.write_str("file changed while being read"),
        }
    }
}

fn stat(path: &Path) -> Result<Stamp, ReadError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Stamp::of(&meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ReadError::NotFound),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Reads and parses the file (blocking).
fn read(path: &Path) -> Result<Snapshot, ReadError> {
    let before = stat(path)?;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let syntax = |line: usize, message: String| ReadError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        syntax(line, "invalid UTF-8".into())
    })?;
    let map = parse(&text).map_err(|(line, message)| syntax(line, message.into()))?;
    // A writer still busy with the file would leave us half of it.
    if stat(path)? != before {
        return Err(ReadError::Changed);
    }
    Ok(Snapshot {
        map,
        stamp: Some(before),
    })
}

/// Parses maddy's table file format; errors carry the 1-based line number.
fn parse(text: &str) -> Result<HashMap<String, Vec<String>>, (usize, &'static str)> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, values) = line.split_once(':').unwrap_or((line, ""));
        let key = key.trim();
        if key.is_empty() {
            return Err((index + 1, "empty key before colon"));
        }
        map.entry(key.to_owned())
            .or_default()
            .extend(values.split(',').map(|v| v.trim().to_owned()));
    }
    Ok(map)
}

pub(crate) struct FileTable {
    shared: Arc<Shared>,
    interval: Duration,
    reloader: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// Completed change checks (for tests to know a check has happened).
    checks: AtomicU64,
}

impl Shared {
    fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// One periodic check: applies a change once the file has looked the same for a whole
    /// interval, so that a file being written (truncated, then filled) is not read half-way.
    async fn check(&self, watch: &mut Watch) {
        self.check_once(watch).await;
        self.checks.fetch_add(1, Ordering::Release);
    }

    async fn check_once(&self, watch: &mut Watch) {
        let path = self.path.clone();
        let now = match tokio::task::spawn_blocking(move || stat(&path)).await {
            Ok(Ok(stamp)) => Some(stamp),
            Ok(Err(ReadError::NotFound)) => None,
            Ok(Err(e)) => {
                tracing::warn!(module = "table.file", path = %self.path.display(), error = %e, "can't check the file");
                return;
            }
            Err(e) => {
                tracing::error!(module = "table.file", error = %e, "file check task failed");
                return;
            }
        };
        if now == watch.applied {
            watch.pending = None;
            return;
        }
        if watch.pending != Some(now) {
            watch.pending = Some(now);
            return;
        }
        watch.pending = None;
        let path = self.path.display();
        if now.is_none() {
            watch.applied = None;
            tracing::warn!(module = "table.file", %path, "file removed; the table is now empty");
            self.replace(Snapshot::default());
            return;
        }
        let read_path = self.path.clone();
        match tokio::task::spawn_blocking(move || read(&read_path)).await {
            Ok(Ok(snapshot)) => {
                watch.applied = snapshot.stamp;
                tracing::info!(module = "table.file", %path, keys = snapshot.map.len(), "file changed, reloaded");
                self.replace(snapshot);
            }
            // Changed again meanwhile, or gone: the next checks will see.
            Ok(Err(ReadError::Changed | ReadError::NotFound)) => {}
            Ok(Err(e)) => {
                // Not retried (nor logged again) until the file changes again.
                watch.applied = now;
                tracing::error!(
                    module = "table.file",
                    %path,
                    error = %e,
                    "can't reload the file; keeping the previous contents"
                );
            }
            Err(e) => tracing::error!(module = "table.file", error = %e, "file reload task failed"),
        }
    }
}

/// What the reloader knows of the file.
#[derive(Default)]
struct Watch {
    /// The version in use (or rejected as broken); `None` when there is no file.
    applied: Option<Stamp>,
    /// A different version seen at the last check, applied if the next check sees it again.
    pending: Option<Option<Stamp>>,
}

impl FileTable {
    fn new(path: PathBuf, snapshot: Snapshot, interval: Duration) -> FileTable {
        FileTable {
            shared: Arc::new(Shared {
                path,
                current: RwLock::new(Arc::new(snapshot)),
                checks: AtomicU64::new(0),
            }),
            interval,
            reloader: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Table for FileTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self
            .shared
            .current()
            .map
            .get(key)
            .and_then(|v| v.first())
            .cloned())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        Ok(self
            .shared
            .current()
            .map
            .get(key)
            .cloned()
            .unwrap_or_default())
    }
}

#[async_trait]
impl Lifecycle for FileTable {
    async fn start(&self) -> Result<(), String> {
        let shared = self.shared.clone();
        let interval = self.interval;
        let task = tokio::spawn(async move {
            let mut watch = Watch {
                applied: shared.current().stamp,
                pending: None,
            };
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the file was just read
            loop {
                ticker.tick().await;
                shared.check(&mut watch).await;
            }
        });
        if let Some(old) = self
            .reloader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
        Ok(())
    }

    async fn stop(&self) {
        let task = self
            .reloader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maddy_format() {
        let map = parse(
            "# comment\n\
             \n\
             aaa: bbb\n\
             \tccc: ddd  \r\n\
             alone\n\
             empty:\n\
             multi: one, two ,three\n\
             ddd: first\n\
             ddd: second\n\
             url: http://example.org:8080/x\n",
        )
        .unwrap();
        assert_eq!(map["aaa"], ["bbb"]);
        assert_eq!(map["ccc"], ["ddd"]);
        assert_eq!(map["alone"], [""]);
        assert_eq!(map["empty"], [""]);
        assert_eq!(map["multi"], ["one", "two", "three"]);
        assert_eq!(map["ddd"], ["first", "second"]);
        assert_eq!(map["url"], ["http://example.org:8080/x"]);
        assert!(!map.contains_key("# comment"));
        assert_eq!(parse("a: b\n  : c\n"), Err((2, "empty key before colon")));
    }

    #[test]
    fn reports_invalid_utf8_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, b"a: b\nc: \xff\n").unwrap();
        let err = read(&path).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("{}:2: invalid UTF-8", path.display())
        );
    }

    /// Waits (bounded) until `cond` holds.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Waits until the reloader has seen the file as it is now for long enough to apply it
    /// (a check that may have started before now, then two to notice and apply).
    async fn full_check(table: &FileTable) {
        let start = table.shared.checks.load(Ordering::Acquire);
        eventually("the file was checked", || {
            table.shared.checks.load(Ordering::Acquire) >= start + 3
        })
        .await;
    }

    /// Replaces the file at once (write to a temporary file, rename), so that the reloader
    /// never sees it half-written whatever the scheduling.
    fn replace_file(path: &Path, contents: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloads_changes_keeps_old_contents_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases");
        std::fs::write(&path, "a: one\n").unwrap();
        let table = FileTable::new(
            path.clone(),
            read(&path).unwrap(),
            Duration::from_millis(10),
        );
        table.start().await.unwrap();
        assert_eq!(table.lookup("a").await.unwrap().as_deref(), Some("one"));

        replace_file(&path, "a: two, three\nb: four\n");
        eventually("the new contents are served", || {
            peek(&table, "b") == Some("four".into())
        })
        .await;
        assert_eq!(table.lookup_multi("a").await.unwrap(), ["two", "three"]);

        // A broken file keeps the previous contents.
        replace_file(&path, "a: five\n: broken\n");
        full_check(&table).await;
        assert_eq!(table.lookup("a").await.unwrap().as_deref(), Some("two"));
        assert_eq!(table.lookup("b").await.unwrap().as_deref(), Some("four"));

        // Fixed again: picked up.
        replace_file(&path, "a: six\n");
        eventually("the fixed file is served", || {
            peek(&table, "a") == Some("six".into())
        })
        .await;
        assert_eq!(table.lookup("b").await.unwrap(), None);

        // Rewritten in place.
        std::fs::write(&path, "a: seven\n").unwrap();
        eventually("the rewritten file is served", || {
            peek(&table, "a") == Some("seven".into())
        })
        .await;

        // Removed: the table is empty (maddy's behaviour).
        std::fs::remove_file(&path).unwrap();
        eventually("the table is empty", || peek(&table, "a").is_none()).await;

        table.stop().await;
    }

    /// A synchronous lookup for use in `eventually` closures (the map is in memory).
    fn peek(table: &FileTable, key: &str) -> Option<String> {
        table
            .shared
            .current()
            .map
            .get(key)
            .and_then(|v| v.first())
            .cloned()
    }
}

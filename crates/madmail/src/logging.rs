//! Logging: `tracing` events formatted once and written to each target of the `log`
//! directive (stderr, stderr with timestamps, syslog, files). Files are reopened on SIGUSR1
//! (for logrotate); `debug` and the targets change on a configuration reload.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use madmail_module::globals::LogTarget;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

enum Sink {
    Stderr {
        timestamps: bool,
    },
    /// `None` when /dev/log could not be reached: messages to it are dropped.
    Syslog(Option<UnixDatagram>),
    File {
        path: PathBuf,
        file: File,
    },
}

#[derive(Clone)]
pub struct Logging {
    sinks: Arc<Mutex<Vec<Sink>>>,
    level: reload::Handle<LevelFilter, tracing_subscriber::Registry>,
}

fn level_for(debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    }
}

impl Logging {
    /// Installs the global subscriber. Fails if a log file can't be opened.
    pub fn init(debug: bool, targets: &[LogTarget]) -> io::Result<Logging> {
        let sinks = Arc::new(Mutex::new(open_sinks(targets)?));
        let (filter, level) = reload::Layer::new(level_for(debug));
        let writer = SinkWriter {
            sinks: sinks.clone(),
        };
        let fmt = tracing_subscriber::fmt::layer()
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .with_writer(writer);
        // A second init (tests in one process) keeps the first subscriber; that is harmless.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        Ok(Logging { sinks, level })
    }

    /// Applies a reloaded configuration's `debug` and `log`.
    pub fn configure(&self, debug: bool, targets: &[LogTarget]) -> io::Result<()> {
        let new = open_sinks(targets)?;
        *self.sinks.lock().unwrap_or_else(PoisonError::into_inner) = new;
        self.level
            .modify(|f| *f = level_for(debug))
            .map_err(io::Error::other)
    }

    /// Reopens log files, after logrotate moved them.
    pub fn reopen(&self) -> io::Result<()> {
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        for sink in sinks.iter_mut() {
            if let Sink::File { path, file } = sink {
                *file = open_file(path)?;
            }
        }
        Ok(())
    }
}

fn open_file(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
}

fn open_sinks(targets: &[LogTarget]) -> io::Result<Vec<Sink>> {
    targets
        .iter()
        .map(|t| {
            Ok(match t {
                LogTarget::Stderr => Sink::Stderr { timestamps: false },
                LogTarget::StderrTs => Sink::Stderr { timestamps: true },
                LogTarget::Syslog => Sink::Syslog(
                    UnixDatagram::unbound()
                        .and_then(|s| s.connect("/dev/log").map(|()| s))
                        .ok(),
                ),
                LogTarget::File(path) => Sink::File {
                    path: path.clone(),
                    file: open_file(path)?,
                },
            })
        })
        .collect()
}

#[derive(Clone)]
struct SinkWriter {
    sinks: Arc<Mutex<Vec<Sink>>>,
}

/// Collects one formatted event and hands it to every sink when dropped.
struct EventWriter {
    sinks: Arc<Mutex<Vec<Sink>>>,
    level: Level,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            sinks: self.sinks.clone(),
            level: Level::INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> EventWriter {
        EventWriter {
            sinks: self.sinks.clone(),
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.buf);
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        // Logging must never take the server down: write errors are dropped.
        for sink in sinks.iter_mut() {
            match sink {
                Sink::Stderr { timestamps: false } => {
                    let _ = io::stderr().write_all(line.as_bytes());
                }
                Sink::Stderr { timestamps: true } => {
                    let _ = write!(io::stderr(), "{stamp} {line}");
                }
                Sink::File { file, .. } => {
                    let _ = write!(file, "{stamp} {line}");
                }
                Sink::Syslog(Some(socket)) => {
                    // Facility mail (2); severity from the event's level.
                    let severity = match self.level {
                        Level::ERROR => 3,
                        Level::WARN => 4,
                        Level::INFO => 6,
                        _ => 7,
                    };
                    let msg = format!(
                        "<{}>madmail[{}]: {}",
                        2 * 8 + severity,
                        std::process::id(),
                        line.trim_end()
                    );
                    let _ = socket.send(msg.as_bytes());
                }
                Sink::Syslog(None) => {}
            }
        }
    }
}

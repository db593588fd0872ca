//! `madmail cert`'s channel to a running server: a unix socket `runtime_dir/madmail.sock`
//! (mode 0600) speaking one JSON object per line each way, served by the process for all its
//! ACME loaders. When no server runs, the same requests are executed on the store directly
//! ([`run`] falls back by itself).
//!
//! ```text
//! > {"op":"info","loader":null,"name":null}
//! < {"result":"info","certificates":[{"names":["mx.example.org"],"status":"valid",...}]}
//! > {"op":"renew","force":true,"name":"mx.example.org"}
//! < {"result":"renew","results":[{"loader":"local_tls","names":[...],"outcome":"renewed",...}]}
//! > {"op":"test","dry_run":false}
//! < {"result":"test","checks":[{"check":"directory","ok":true,...}]}
//! ```

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::loader::{AcmeLoader, Outcome};
use crate::preflight::Check;
use crate::status::{CertStatus, render_text};

/// The socket's file name in `runtime_dir`.
pub const SOCKET_NAME: &str = "madmail.sock";

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// What `madmail cert` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Info {
        #[serde(default)]
        loader: Option<String>,
        #[serde(default)]
        name: Option<String>,
    },
    Renew {
        #[serde(default)]
        loader: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        force: bool,
    },
    Test {
        #[serde(default)]
        loader: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
}

/// The result of one renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResult {
    pub loader: String,
    pub names: Vec<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Info { certificates: Vec<CertStatus> },
    Renew { results: Vec<RenewResult> },
    Test { checks: Vec<Check> },
    Error { message: String },
}

impl Response {
    /// Whether the command succeeded (the CLI's exit status): no error, no failed renewal,
    /// no failed check.
    pub fn success(&self) -> bool {
        match self {
            Response::Info { .. } => true,
            Response::Renew { results } => results
                .iter()
                .all(|r| !matches!(r.outcome, Outcome::Failed { .. })),
            Response::Test { checks } => checks.iter().all(|c| c.ok),
            Response::Error { .. } => false,
        }
    }

    /// The answer as the CLI prints it: JSON (`--json`; for info an array of certificates),
    /// or text for people.
    pub fn render(&self, json: bool) -> String {
        if json {
            let value = match self {
                Response::Info { certificates } => serde_json::to_string_pretty(certificates),
                other => serde_json::to_string_pretty(other),
            };
            return value.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n";
        }
        match self {
            Response::Info { certificates } => render_text(certificates),
            Response::Renew { results } => {
                let mut out = String::new();
                for r in results {
                    let names = r.names.join(", ");
                    let line = match &r.outcome {
                        Outcome::NotDue => format!("{names}: not due (use --force to renew now)"),
                        Outcome::Renewed { serial, not_after } => {
                            format!("{names}: renewed, serial {serial}, valid until {not_after}")
                        }
                        Outcome::FromStore { serial } => {
                            format!("{names}: renewed by another process, serial {serial}")
                        }
                        Outcome::DryRun { ca, serial } => {
                            format!("{names}: dry run against {ca} issued serial {serial}")
                        }
                        Outcome::Failed { error } => format!("{names}: FAILED: {error}"),
                    };
                    out.push_str(&line);
                    out.push('\n');
                }
                if results.is_empty() {
                    out.push_str("nothing to renew\n");
                }
                out
            }
            Response::Test { checks } => crate::preflight::render_text(checks),
            Response::Error { message } => format!("error: {message}\n"),
        }
    }
}

/// Why the running server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket: no server runs (or it has no ACME loader).
    #[error("no running madmail server at {}", .0.display())]
    NotRunning(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unreadable answer: {reason}", path.display())]
    Protocol { path: PathBuf, reason: String },
}

/// Asks the server listening on `socket`.
pub async fn request(socket: &Path, request: &Request) -> Result<Response, ControlError> {
    let io = |source| ControlError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(socket.to_owned()));
        }
        Err(e) => return Err(io(e)),
    };
    let mut line = serde_json::to_vec(request).map_err(|e| ControlError::Protocol {
        path: socket.to_owned(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    stream.write_all(&line).await.map_err(io)?;
    stream.shutdown().await.map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Protocol {
        path: socket.to_owned(),
        reason: e.to_string(),
    })
}

/// `madmail cert`: asks the running server at `socket`; when none runs, executes the request
/// here on `loaders` (built from the configuration, not started), which read and write the
/// store directly.
pub async fn run(socket: &Path, loaders: &[Arc<AcmeLoader>], req: &Request) -> Response {
    match request(socket, req).await {
        Ok(response) => response,
        Err(ControlError::NotRunning(_)) => execute(loaders, req).await,
        Err(e) => Response::Error {
            message: e.to_string(),
        },
    }
}

/// Executes `req` on `loaders` in this process.
pub async fn execute(loaders: &[Arc<AcmeLoader>], req: &Request) -> Response {
    let (loader, name) = match req {
        Request::Info { loader, name }
        | Request::Renew { loader, name, .. }
        | Request::Test { loader, name, .. } => (loader.as_deref(), name.as_deref()),
    };
    let selected: Vec<&Arc<AcmeLoader>> = loaders
        .iter()
        .filter(|l| loader.is_none_or(|want| l.label() == want))
        .collect();
    if let Some(want) = loader
        && selected.is_empty()
    {
        let have: Vec<&str> = loaders.iter().map(|l| l.label()).collect();
        return Response::Error {
            message: format!(
                "no ACME loader named {want} (there are: {})",
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            ),
        };
    }
    if let Some(name) = name
        && selected.iter().all(|l| l.groups(Some(name)).is_empty())
    {
        return Response::Error {
            message: format!("no ACME-managed certificate has the name {name}"),
        };
    }
    match req {
        Request::Info { .. } => {
            let mut certificates = Vec::new();
            for l in selected {
                certificates.extend(l.status().await.into_iter().filter(|s| {
                    name.is_none_or(|n| s.names.iter().any(|m| m.eq_ignore_ascii_case(n)))
                }));
            }
            Response::Info { certificates }
        }
        Request::Renew { force, .. } => {
            let mut results = Vec::new();
            for l in selected {
                for (names, outcome) in l.renew(name, *force).await {
                    results.push(RenewResult {
                        loader: l.label().to_owned(),
                        names,
                        outcome,
                    });
                }
            }
            Response::Renew { results }
        }
        Request::Test { dry_run, .. } => {
            let mut checks = Vec::new();
            for l in selected {
                checks.extend(crate::preflight::run(l, name, *dry_run).await);
            }
            Response::Test { checks }
        }
    }
}

struct Server {
    loaders: Arc<Mutex<Vec<Arc<AcmeLoader>>>>,
    stop: CancellationToken,
}

static SERVERS: LazyLock<tokio::sync::Mutex<HashMap<PathBuf, Server>>> =
    LazyLock::new(|| tokio::sync::Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds a started loader to the control server at `socket`, starting the server for the
/// first one. A server that can't listen is logged, not fatal.
pub(crate) async fn register(socket: PathBuf, loader: Arc<AcmeLoader>) {
    let mut servers = SERVERS.lock().await;
    if let Some(server) = servers.get(&socket) {
        lock(&server.loaders).push(loader);
        return;
    }
    let loaders = Arc::new(Mutex::new(vec![loader]));
    let stop = CancellationToken::new();
    match listen(&socket).await {
        Ok(listener) => {
            tracing::debug!(socket = %socket.display(), "control socket listening");
            tokio::spawn(serve(listener, loaders.clone(), stop.clone()));
        }
        Err(e) => {
            tracing::warn!(socket = %socket.display(), error = %e, "no control socket: madmail cert will work on the store only");
        }
    }
    servers.insert(socket, Server { loaders, stop });
}

/// Removes a stopping loader; the last one closes the server.
pub(crate) async fn unregister(socket: &Path, loader: &AcmeLoader) {
    let mut servers = SERVERS.lock().await;
    let Some(server) = servers.get(socket) else {
        return;
    };
    let empty = {
        let mut list = lock(&server.loaders);
        list.retain(|l| !l.same(loader));
        list.is_empty()
    };
    if empty && let Some(server) = servers.remove(socket) {
        server.stop.cancel();
        let _ = std::fs::remove_file(socket);
    }
}

/// Binds `socket` with mode 0600 without a window where it is more open: bound inside a
/// private directory, then moved into place.
async fn listen(socket: &Path) -> std::io::Result<UnixListener> {
    let dir = socket
        .parent()
        .ok_or_else(|| std::io::Error::other("socket path has no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    if socket.exists() {
        if UnixStream::connect(socket).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another madmail process answers on it",
            ));
        }
        // Left behind by a process that died.
        std::fs::remove_file(socket)?;
    }
    let private = dir.join(format!(".madmail-sock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let temp = private.join(SOCKET_NAME);
        let listener = UnixListener::bind(&temp)?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&temp, socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

async fn serve(
    listener: UnixListener,
    loaders: Arc<Mutex<Vec<Arc<AcmeLoader>>>>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "control socket accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let loaders = loaders.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = handle(stream, loaders) => {}
            }
        });
    }
}

async fn handle(stream: UnixStream, loaders: Arc<Mutex<Vec<Arc<AcmeLoader>>>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
    loop {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let response = if line.len() > MAX_LINE {
            Response::Error {
                message: "request too long".into(),
            }
        } else {
            match serde_json::from_str::<Request>(line.trim()) {
                Ok(req) => {
                    let current = lock(&loaders).clone();
                    execute(&current, &req).await
                }
                Err(e) => Response::Error {
                    message: format!("bad request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_shape() {
        let req: Request =
            serde_json::from_str(r#"{"op":"renew","force":true,"name":"a.test"}"#).unwrap();
        assert_eq!(
            req,
            Request::Renew {
                loader: None,
                name: Some("a.test".into()),
                force: true
            }
        );
        let text = serde_json::to_string(&Request::Info {
            loader: None,
            name: None,
        })
        .unwrap();
        assert_eq!(text, r#"{"op":"info","loader":null,"name":null}"#);
    }

    #[tokio::test]
    async fn not_running_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(
            &dir.path().join(SOCKET_NAME),
            &Request::Info {
                loader: None,
                name: None,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ControlError::NotRunning(_)));
    }
}

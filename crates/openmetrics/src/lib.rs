//! madmail's `openmetrics` endpoint, as maddy's:
//!
//! ```text
//! openmetrics tcp://127.0.0.1:9749 { }
//! ```
//!
//! It listens on its addresses (`tcp://` or `unix://`; plain HTTP/1.1, no TLS) and answers
//! `GET /metrics` with every metric the configuration's modules registered
//! ([`madmail_module::metrics::Metrics`], in `Globals`), in the Prometheus text exposition
//! format 0.0.4. Any other path is `404`, any other method on `/metrics` `405`.
//!
//! It must not expose secrets or per-message data (addresses, user names, message contents):
//! it only renders what collectors write, and they describe the server, not its users. It
//! has no authentication, so it belongs on a loopback or otherwise private address. It must
//! not do I/O while built: it binds on `Lifecycle::start`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use madmail_config::Error;
use madmail_module::metrics::Metrics;
use madmail_module::values::{self, ListenAddr};
use madmail_module::{
    Block, Built, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec, Registry,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The one path served.
const PATH: &str = "/metrics";
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// A client must send a request's headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// No connection (even a keep-alive one used by a scraper) lives longer than this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// How long `stop` waits for connections to close.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Registers `openmetrics`.
pub fn register(registry: &mut Registry) {
    registry.register(ModuleSpec {
        name: "openmetrics",
        kind: Kind::Endpoint,
        build,
        summary: "Prometheus metrics over HTTP (GET /metrics)",
    });
}

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let globals = ctx.globals();
    let mut errors = Errors::new();
    if def.args.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            "openmetrics needs at least one address to listen on, such as tcp://127.0.0.1:9749",
        ));
    }
    let mut addrs = Vec::new();
    for arg in def.args {
        match values::listen_addr(arg) {
            Ok(ListenAddr::Tcp { tls: true, .. }) => errors.push(Error::at(
                &arg.pos,
                format!(
                    "openmetrics serves plain HTTP and can't listen on {arg} (implicit TLS); use tcp:// on a private address"
                ),
            )),
            Ok(ListenAddr::Unix(path)) if path.is_relative() => {
                addrs.push(ListenAddr::Unix(globals.runtime_dir.join(path)));
            }
            Ok(addr) => addrs.push(addr),
            Err(e) => errors.push(Error::at(&arg.pos, e)),
        }
    }
    if let Err(e) = Block::new(def.node, globals.clone()).finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    let endpoint = Endpoint {
        addrs,
        metrics: globals.metrics.clone(),
        running: Mutex::new(None),
    };
    Ok(Built::default().with_lifecycle(Arc::new(endpoint)))
}

struct Endpoint {
    addrs: Vec<ListenAddr>,
    /// The configuration's metrics, rendered at every request.
    metrics: Arc<Metrics>,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: CancellationToken,
    tasks: TaskTracker,
    unix_paths: Vec<PathBuf>,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds like the mail endpoints do: an empty host is every address (IPv6 any, or IPv4 any
/// without IPv6); a unix socket left by a previous run is replaced.
async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
    match addr {
        ListenAddr::Tcp { host, port, .. } => {
            let listener = if host.is_empty() {
                match TcpListener::bind(("::", *port)).await {
                    Ok(l) => l,
                    Err(_) => TcpListener::bind(("0.0.0.0", *port)).await?,
                }
            } else {
                let target = addr.socket_addr_string().unwrap_or_default();
                TcpListener::bind(target).await?
            };
            Ok(Listener::Tcp(listener))
        }
        ListenAddr::Unix(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    std::fs::remove_file(path)?;
                }
            }
            Ok(Listener::Unix(UnixListener::bind(path)?))
        }
    }
}

#[async_trait]
impl Lifecycle for Endpoint {
    async fn start(&self) -> Result<(), String> {
        let mut listeners = Vec::new();
        let mut unix_paths = Vec::new();
        for addr in &self.addrs {
            let listener = match bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    // What this call bound so far is closed on return; sockets it created
                    // are removed.
                    for path in &unix_paths {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(format!("can't listen on {addr}: {e}"));
                }
            };
            if let ListenAddr::Unix(path) = addr {
                unix_paths.push(path.clone());
            }
            listeners.push(listener);
        }
        let running = Running {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            unix_paths,
        };
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        for (listener, addr) in listeners.into_iter().zip(&self.addrs) {
            tracing::info!(endpoint = "openmetrics", address = %addr, "listening");
            running.tasks.spawn(accept_loop(
                listener,
                self.metrics.clone(),
                slots.clone(),
                running.stop.clone(),
                running.tasks.clone(),
            ));
        }
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(running);
        Ok(())
    }

    async fn stop(&self) {
        let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        running.stop.cancel();
        running.tasks.close();
        if tokio::time::timeout(STOP_GRACE, running.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                endpoint = "openmetrics",
                "connections still open after stop"
            );
        }
        for path in &running.unix_paths {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(endpoint = "openmetrics", "stopped");
    }
}

async fn accept_loop(
    listener: Listener,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        // Wait for a free slot before accepting: excess clients wait in the listen queue.
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = accept(&listener) => a,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(endpoint = "openmetrics", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match io {
                Accepted::Tcp(s) => serve(s, metrics, stop).await,
                Accepted::Unix(s) => serve(s, metrics, stop).await,
            }
        });
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok(Accepted::Tcp(stream))
        }
        Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it, its lifetime is over or the
/// endpoint stops.
async fn serve<I>(io: I, metrics: Arc<Metrics>, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(&metrics, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        () = stop.cancelled() => {}
        r = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {
            if let Ok(Err(e)) = r {
                tracing::debug!(endpoint = "openmetrics", error = %e, "connection ended");
            }
        }
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    match *req.method() {
        // hyper leaves out the body of a HEAD response.
        Method::GET | Method::HEAD => {
            let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

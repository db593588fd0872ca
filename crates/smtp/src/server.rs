//! Listening: binding the endpoint's addresses on start, one task per connection, connection
//! limits, and a stop that lets sessions finish within a bounded grace period.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madmail_module::Lifecycle;
use madmail_module::values::ListenAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::conn::Conn;
use crate::session::Session;

/// How long `stop` lets sessions in the middle of a command finish. Idle sessions are told
/// `421` and closed at once.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// An `smtp`, `submission` or `lmtp` endpoint.
pub(crate) struct Endpoint {
    settings: Arc<Settings>,
    addrs: Vec<ListenAddr>,
    running: Mutex<Option<Running>>,
    /// The addresses actually bound (port 0 resolved), for tests and logs.
    bound: Mutex<Vec<Bound>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

struct Running {
    /// Cancelled on stop: listeners close, idle sessions end.
    stop: CancellationToken,
    /// Cancelled when the grace period is over: remaining sessions are dropped.
    kill: CancellationToken,
    tasks: TaskTracker,
    unix_paths: Vec<PathBuf>,
}

enum Listener {
    Tcp { listener: TcpListener, tls: bool },
    Unix(UnixListener),
}

impl Endpoint {
    pub(crate) fn new(settings: Arc<Settings>, addrs: Vec<ListenAddr>) -> Endpoint {
        Endpoint {
            settings,
            addrs,
            running: Mutex::new(None),
            bound: Mutex::new(Vec::new()),
        }
    }

    #[cfg(test)]
    pub(crate) fn bound(&self) -> Vec<Bound> {
        self.bound.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
    match addr {
        ListenAddr::Tcp { host, port, tls } => {
            let listener = if host.is_empty() {
                // All addresses: IPv6 any (which also takes IPv4 on Linux by default), or IPv4
                // any on a machine without IPv6.
                match TcpListener::bind(("::", *port)).await {
                    Ok(l) => l,
                    Err(_) => TcpListener::bind(("0.0.0.0", *port)).await?,
                }
            } else {
                let target = addr.socket_addr_string().unwrap_or_default();
                TcpListener::bind(target).await?
            };
            Ok(Listener::Tcp {
                listener,
                tls: *tls,
            })
        }
        ListenAddr::Unix(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // A socket left by a previous run would make bind fail; anything else at that
            // path is not ours to remove.
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
        let mut bound = Vec::new();
        let mut unix_paths = Vec::new();
        for addr in &self.addrs {
            let listener = bind(addr).await.map_err(|e| format!("{addr}: {e}"))?;
            match &listener {
                Listener::Tcp { listener, .. } => {
                    let local = listener.local_addr().map_err(|e| format!("{addr}: {e}"))?;
                    bound.push(Bound::Tcp(local));
                }
                Listener::Unix(_) => {
                    if let ListenAddr::Unix(p) = addr {
                        unix_paths.push(p.clone());
                        bound.push(Bound::Unix(p.clone()));
                    }
                }
            }
            listeners.push(listener);
        }
        let running = Running {
            stop: CancellationToken::new(),
            kill: CancellationToken::new(),
            tasks: TaskTracker::new(),
            unix_paths,
        };
        let limiter = Arc::new(ConnectionLimiter::default());
        for (listener, addr) in listeners.into_iter().zip(&self.addrs) {
            tracing::info!(endpoint = self.settings.protocol.name(), address = %addr, "listening");
            running.tasks.spawn(accept_loop(
                listener,
                self.settings.clone(),
                limiter.clone(),
                running.stop.clone(),
                running.kill.clone(),
                running.tasks.clone(),
            ));
        }
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = bound;
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
        Ok(())
    }

    async fn stop(&self) {
        let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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
                endpoint = self.settings.protocol.name(),
                sessions = running.tasks.len(),
                "sessions still busy after the grace period; closing them"
            );
            running.kill.cancel();
            running.tasks.wait().await;
        }
        for path in &running.unix_paths {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(endpoint = self.settings.protocol.name(), "stopped");
    }
}

async fn accept_loop(
    listener: Listener,
    settings: Arc<Settings>,
    limiter: Arc<ConnectionLimiter>,
    stop: CancellationToken,
    kill: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = accept(&listener) => a,
        };
        let (io, ip, peer, tls) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        settings.counters.connection();
        let guard = limiter.acquire(ip, &settings);
        let settings = settings.clone();
        let stop = stop.clone();
        let kill = kill.clone();
        tasks.spawn(async move {
            let Some(_guard) = guard else {
                settings.counters.connection_refused();
                tracing::info!(peer = %peer, "too many connections, refused");
                refuse(io, tls, &settings).await;
                return;
            };
            let _active = settings.counters.session();
            let conn = Conn::new(
                io,
                settings.read_timeout,
                settings.write_timeout,
                settings.io_debug,
                peer.clone(),
            );
            let session = Session::new(conn, settings, ip, peer, stop, tls);
            tokio::select! {
                () = kill.cancelled() => {}
                () = session.run() => {}
            }
        });
    }
}

type Accepted = (Box<dyn crate::conn::Io>, Option<IpAddr>, Arc<str>, bool);

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp { listener, tls } => {
            let (stream, addr) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
            let ip = addr.ip().to_canonical();
            Ok((
                Box::new(stream),
                Some(ip),
                Arc::from(addr.to_string()),
                *tls,
            ))
        }
        Listener::Unix(listener) => {
            let (stream, _) = listener.accept().await?;
            Ok((Box::new(stream), None, Arc::from("unix"), false))
        }
    }
}

/// Tells a client over the connection limits to come back later (not on implicit TLS, where
/// the first bytes must be a handshake) and closes.
async fn refuse(mut io: Box<dyn crate::conn::Io>, tls: bool, settings: &Settings) {
    if !tls {
        let line = format!(
            "421 4.7.0 {} Too many connections, try again later\r\n",
            settings.hostname
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = io.write_all(line.as_bytes()).await;
            let _ = io.shutdown().await;
        })
        .await;
    }
}

/// Open connections, in total and per client address.
#[derive(Default)]
struct ConnectionLimiter {
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct ConnectionGuard {
    limiter: Arc<ConnectionLimiter>,
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    fn acquire(self: &Arc<Self>, ip: Option<IpAddr>, s: &Settings) -> Option<ConnectionGuard> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.max_connections > 0 && state.0 >= s.max_connections {
            return None;
        }
        if let Some(ip) = ip {
            let count = state.1.entry(ip).or_insert(0);
            if s.max_connections_per_ip > 0 && *count >= s.max_connections_per_ip {
                if *count == 0 {
                    state.1.remove(&ip);
                }
                return None;
            }
            *count += 1;
        }
        state.0 += 1;
        Some(ConnectionGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = state.0.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(count) = state.1.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                state.1.remove(&ip);
            }
        }
    }
}

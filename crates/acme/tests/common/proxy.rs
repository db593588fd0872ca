//! A TCP relay on 127.0.0.1 that a test switches between forwarding, holding and refusing:
//! in front of Pebble's API (a CA that becomes unreachable and comes back), or between Pebble's
//! validators and a challenge listener (counting validations, or holding one so that an order
//! stays in the middle).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relay to the target.
    Forward,
    /// Accept and keep the connection open without relaying, until the mode changes (then
    /// it is relayed or closed as the new mode says).
    Hold,
    /// Nothing listens: connections are refused, and open ones are cut.
    Refuse,
}

pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    listener: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// A relay on `port` (0: any) to `target`, starting in `mode`.
    pub async fn start(port: u16, target: SocketAddr, mode: Mode) -> TcpProxy {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], port))).await;
        let addr = listener.local_addr().unwrap();
        let proxy = TcpProxy {
            addr,
            target,
            mode: watch::channel(mode).0,
            accepted: Arc::new(AtomicUsize::new(0)),
            listener: std::sync::Mutex::new(None),
        };
        if mode == Mode::Refuse {
            drop(listener);
        } else {
            proxy.serve(listener);
        }
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far (refused ones are not counted).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` connections were accepted.
    pub async fn wait_accepted(&self, n: usize) {
        for _ in 0..600 {
            if self.accepted() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the relay on {} accepted {} connections, not {n}",
            self.addr,
            self.accepted()
        );
    }

    /// Switches mode: to `Refuse` closes the listening socket and cuts every connection;
    /// from `Refuse` listens again on the same port.
    pub async fn set_mode(&self, mode: Mode) {
        let previous = self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            let task = self.listener.lock().unwrap().take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        } else if previous == Mode::Refuse {
            let listener = bind(self.addr).await;
            self.serve(listener);
        }
    }

    fn serve(&self, listener: TcpListener) {
        let (target, accepted, mode) = (self.target, self.accepted.clone(), self.mode.subscribe());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(relay(inbound, target, mode.clone()));
                // Finished relays are reaped as we go; aborting this task (Refuse) drops
                // the set and with it every open connection.
                while connections.try_join_next().is_some() {}
            }
        });
        *self.listener.lock().unwrap() = Some(task);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self.listener.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// Binds `addr` with SO_REUSEADDR, so the port can be taken again right after a `Refuse`.
async fn bind(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(addr).is_ok() {
            return socket.listen(64).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}

async fn relay(mut inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = match mode.wait_for(|m| *m != Mode::Hold).await {
        Ok(m) => *m,
        Err(_) => return,
    };
    if current != Mode::Forward {
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

//! Challenge listeners shared by address across loaders: the first holder binds, later ones
//! get the same listener, and it closes when the last holder drops it (the challenge
//! listeners of http-01 and tls-alpn-01).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use madmail_module::values::ListenAddr;
use tokio::net::{TcpListener, TcpSocket};

/// Listeners of one kind by address (`ListenAddr` as written).
pub struct Registry<T>(Mutex<BTreeMap<String, Weak<T>>>);

impl<T> Registry<T> {
    pub const fn new() -> Registry<T> {
        Registry(Mutex::new(BTreeMap::new()))
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Weak<T>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The listener held for `key`, if any holder is left.
    pub fn existing(&self, key: &str) -> Option<Arc<T>> {
        self.map().get(key).and_then(Weak::upgrade)
    }

    /// Registers the listener `make` creates, unless another task registered one for `key`
    /// meanwhile (then that one is returned and `make` is not called).
    pub fn insert_or_existing(&self, key: String, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut map = self.map();
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let listener = make();
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&listener));
        listener
    }
}

/// Binds `addr` for the challenge `what`; a listener just released by a previous holder may
/// need a moment to close, so "address in use" is retried for about a second.
pub async fn bind_with_retry(addr: &ListenAddr, what: &str) -> std::io::Result<TcpListener> {
    let text = addr
        .socket_addr_string()
        .ok_or_else(|| std::io::Error::other(format!("{what} needs a TCP address")))?;
    let mut last = None;
    for _ in 0..10 {
        match bind(&text).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Binds with SO_REUSEADDR, as servers do, so a restart does not wait for TIME_WAIT.
pub async fn bind(text: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for sa in tokio::net::lookup_host(text).await? {
        let socket = if sa.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sa).and_then(|()| socket.listen(1024)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{text}: no address"))))
}

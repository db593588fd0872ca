//! The http-01 responder: `GET /.well-known/acme-challenge/TOKEN` answers the key
//! authorization, everything else 404.
//!
//! One listener per address serves every loader of the process (several loaders may list
//! http-01 with the default `tcp://0.0.0.0:80`); it lives as long as someone holds it. HTTP is
//! hyper's (HTTP/1.1 only, header read timeout), not hand-written: the CA's validators and
//! the proxies in front of some servers send whatever HTTP they like.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use madmail_module::values::ListenAddr;
use tokio::net::TcpListener;

use crate::listeners::{Registry, bind_with_retry};
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "/.well-known/acme-challenge/";

type Tokens = Arc<RwLock<HashMap<String, String>>>;

static LISTENERS: Registry<HttpListener> = Registry::new();

/// A bound http-01 listener; dropping the last holder closes it.
pub struct HttpListener {
    tokens: Tokens,
    local_addr: SocketAddr,
    stop: CancellationToken,
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl HttpListener {
    /// The listener on `addr`, bound now unless another holder already has it.
    pub async fn acquire(addr: &ListenAddr) -> std::io::Result<Arc<HttpListener>> {
        let key = addr.to_string();
        if let Some(existing) = LISTENERS.existing(&key) {
            return Ok(existing);
        }
        let listener = bind_with_retry(addr, "http-01").await?;
        let local_addr = listener.local_addr()?;
        // Another task may have bound it meanwhile (then ours is dropped, closing it).
        Ok(LISTENERS.insert_or_existing(key, || {
            let tokens: Tokens = Arc::default();
            let stop = CancellationToken::new();
            tokio::spawn(serve(listener, tokens.clone(), stop.clone()));
            tracing::debug!(address = %local_addr, "http-01 listener bound");
            Arc::new(HttpListener {
                tokens,
                local_addr,
                stop,
            })
        }))
    }

    #[cfg(test)]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers `token` with `key_authorization` until [`HttpListener::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.remove(token);
        }
    }
}

async fn serve(listener: TcpListener, tokens: Tokens, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "http-01 accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tokens = tokens.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = respond(&tokens, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::time::timeout(Duration::from_secs(30), connection) => {}
            }
        });
    }
}

fn respond(tokens: &Tokens, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let found = match (req.method(), req.uri().path().strip_prefix(PREFIX)) {
        (&Method::GET | &Method::HEAD, Some(token)) => {
            tokens.read().ok().and_then(|map| map.get(token).cloned())
        }
        _ => None,
    };
    let (status, body) = match found {
        Some(key_authorization) => {
            tracing::debug!(path = req.uri().path(), "answered http-01 challenge");
            (StatusCode::OK, key_authorization)
        }
        None => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_tokens_and_404_elsewhere() {
        let addr = madmail_module::values::listen_addr("tcp://127.0.0.1:0").unwrap();
        let listener = HttpListener::acquire(&addr).await.unwrap();
        let at = listener.local_addr();
        listener.insert("tok123", "tok123.thumb");
        let ok = get(at, "/.well-known/acme-challenge/tok123").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("tok123.thumb"), "{ok}");
        let missing = get(at, "/.well-known/acme-challenge/other").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let elsewhere = get(at, "/").await;
        assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
        listener.remove("tok123");
        let gone = get(at, "/.well-known/acme-challenge/tok123").await;
        assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
    }

    #[tokio::test]
    async fn shared_by_address_and_closed_by_the_last_holder() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let addr = madmail_module::values::listen_addr(&format!("tcp://127.0.0.1:{port}")).unwrap();
        let a = HttpListener::acquire(&addr).await.unwrap();
        let b = HttpListener::acquire(&addr).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        b.insert("t", "from-b");
        assert!(
            get(a.local_addr(), "/.well-known/acme-challenge/t")
                .await
                .ends_with("from-b")
        );
        drop(a);
        drop(b);
        // Bound again after the last holder let go.
        let c = HttpListener::acquire(&addr).await.unwrap();
        assert!(
            get(c.local_addr(), "/.well-known/acme-challenge/t")
                .await
                .starts_with("HTTP/1.1 404")
        );
    }
}

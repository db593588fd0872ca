//! One client connection: the byte stream (plain, TLS, or a unix socket), the input buffer the
//! protocol reads commands and message data from, and the output buffer replies collect in.
//!
//! The input buffer is ours rather than a `BufReader`'s so that STARTTLS can drop whatever the
//! client sent after the command before the handshake (the CVE-2011-0411 class of command
//! injection) and so that lines are bounded while they are read, never after.

use std::sync::Arc;
use std::time::Duration;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Bytes read from the socket at a time (and the most a message may overshoot its size limit
/// in memory before it is noticed).
const READ_CHUNK: usize = 16 * 1024;

/// A TLS handshake must finish within this, whatever the read timeout.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("connection closed by the client")]
    Closed,
    #[error("timed out")]
    Timeout,
    #[error("server shutting down")]
    Shutdown,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A line as read: complete (with its line ending) or over the limit (and skipped).
pub(crate) enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// What the TLS layer negotiated, for the trace header and logs.
#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

pub(crate) struct Conn {
    io: Option<Box<dyn Io>>,
    /// Unread input is `input[pos..]`.
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    read_timeout: Duration,
    write_timeout: Duration,
    /// Log every line in and out (`io_debug`); `peer` names the client in those logs.
    io_debug: bool,
    peer: Arc<str>,
    pub tls: Option<TlsInfo>,
}

impl Conn {
    pub(crate) fn new(
        io: Box<dyn Io>,
        read_timeout: Duration,
        write_timeout: Duration,
        io_debug: bool,
        peer: Arc<str>,
    ) -> Conn {
        Conn {
            io: Some(io),
            input: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            output: Vec::with_capacity(1024),
            read_timeout,
            write_timeout,
            io_debug,
            peer,
            tls: None,
        }
    }

    fn io(&mut self) -> std::io::Result<&mut Box<dyn Io>> {
        self.io
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no stream"))
    }

    /// Queues a reply line (without CRLF); it is sent before the next read or on `flush`.
    pub(crate) fn push_line(&mut self, line: &str) {
        if self.io_debug {
            tracing::info!(target: "madmail_smtp::io", peer = %self.peer, "S: {line}");
        }
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Logs a received line (`io_debug`), or that one was received when it must not be shown.
    pub(crate) fn log_input(&self, line: &[u8], redact: bool) {
        if self.io_debug {
            if redact {
                tracing::info!(target: "madmail_smtp::io", peer = %self.peer, "C: <authentication data>");
            } else {
                let text = String::from_utf8_lossy(line);
                tracing::info!(target: "madmail_smtp::io", peer = %self.peer, "C: {}", text.trim_end());
            }
        }
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let timeout = self.write_timeout;
        let io = self.io()?;
        let result = tokio::time::timeout(timeout, async {
            io.write_all(&out).await?;
            io.flush().await
        })
        .await;
        self.output = out;
        self.output.clear();
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }

    /// Reads more input, sending queued replies first (the client may be waiting for them).
    async fn fill(&mut self, shutdown: Option<&CancellationToken>) -> Result<(), ReadError> {
        self.flush().await?;
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.reserve(READ_CHUNK);
        let timeout = self.read_timeout;
        let io = self.io.as_mut().ok_or(ReadError::Closed)?;
        let read = tokio::time::timeout(timeout, io.read_buf(&mut self.input));
        let n = match shutdown {
            Some(token) => tokio::select! {
                biased;
                () = token.cancelled() => return Err(ReadError::Shutdown),
                r = read => r,
            },
            None => read.await,
        }
        .map_err(|_| ReadError::Timeout)??;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        Ok(())
    }

    /// Reads a line of at most `max` octets (not counting its line ending). A longer line is
    /// consumed and dropped as it arrives, without being kept. While waiting for the start of a
    /// line, a `shutdown` cancels the read.
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        shutdown: Option<&CancellationToken>,
    ) -> Result<Line, ReadError> {
        loop {
            let unread = &self.input[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', unread) {
                let line = &unread[..=i];
                let content = line.len() - 1 - usize::from(line.ends_with(b"\r\n"));
                let result = if content > max {
                    Line::TooLong
                } else {
                    Line::Complete(line.to_vec())
                };
                self.pos += i + 1;
                return Ok(result);
            }
            if unread.len() > max + 1 {
                self.pos = self.input.len();
                self.skip_line().await?;
                return Ok(Line::TooLong);
            }
            // Only the first read of a line may be interrupted by a shutdown: a client that has
            // started a command gets its reply.
            let token = if unread.is_empty() { shutdown } else { None };
            self.fill(token).await?;
        }
    }

    /// Discards input up to and including the next LF.
    async fn skip_line(&mut self) -> Result<(), ReadError> {
        loop {
            let unread = &self.input[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', unread) {
                self.pos += i + 1;
                return Ok(());
            }
            self.pos = self.input.len();
            self.fill(None).await?;
        }
    }

    /// Reads DATA content up to the `CRLF.CRLF` terminator, dot-unstuffed. Returns `None` when
    /// it exceeded `max` octets; the rest was then read and dropped.
    pub(crate) async fn read_dot_data(&mut self, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
        let mut receiver = DataReceiver::new();
        // The receiver recognises the terminator and dot-stuffing after a line break; the
        // start of the content is one too (an empty message is just ".\r\n").
        let mut primed = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut primed);
        let mut message = Vec::new();
        loop {
            let unread = &self.input[self.pos..];
            let mut bytes = unread.iter();
            let done = receiver.ingest(&mut bytes, &mut message);
            self.pos += unread.len() - bytes.len();
            if done {
                return Ok(Some(message));
            }
            if message.len() > max {
                let mut discard = DummyDataReceiver::new_data(&receiver);
                drop(message);
                loop {
                    let unread = &self.input[self.pos..];
                    let mut bytes = unread.iter();
                    let done = discard.ingest(&mut bytes);
                    self.pos += unread.len() - bytes.len();
                    if done {
                        return Ok(None);
                    }
                    self.fill(None).await?;
                }
            }
            self.fill(None).await?;
        }
    }

    /// Reads a BDAT chunk of `size` octets, appending it to `into`, or dropping it when `into`
    /// is `None`.
    pub(crate) async fn read_chunk(
        &mut self,
        mut size: usize,
        mut into: Option<&mut Vec<u8>>,
    ) -> Result<(), ReadError> {
        loop {
            let unread = &self.input[self.pos..];
            let take = unread.len().min(size);
            if let Some(buf) = into.as_deref_mut() {
                buf.extend_from_slice(&unread[..take]);
            }
            self.pos += take;
            size -= take;
            if size == 0 {
                return Ok(());
            }
            self.fill(None).await?;
        }
    }

    /// Upgrades the connection to TLS (STARTTLS or implicit TLS). Input already buffered is
    /// dropped first and its size returned: bytes sent in plaintext before the handshake must
    /// never be read as if they came over TLS.
    pub(crate) async fn start_tls(
        &mut self,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<usize, std::io::Error> {
        self.flush().await?;
        let discarded = self.input.len() - self.pos;
        self.input.clear();
        self.pos = 0;
        let plain = self
            .io
            .take()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no stream"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let (_, session) = stream.get_ref();
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher = session
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map_or_else(|| format!("{suite:?}"), str::to_owned)
            })
            .unwrap_or_default();
        self.tls = Some(TlsInfo { version, cipher });
        self.io = Some(Box::new(stream));
        Ok(discarded)
    }

    /// Sends what is queued and closes the stream (best effort: the client may be gone).
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        if let Some(io) = self.io.as_mut() {
            let _ = tokio::time::timeout(self.write_timeout, io.shutdown()).await;
        }
    }
}

//! One SMTP or LMTP client connection: reading replies, sending commands, STARTTLS.
//!
//! Replies are parsed with smtp-proto; framing (finding where a multi-line reply ends) is done
//! here because smtp-proto's incremental parser does not say how many bytes it consumed when a
//! read holds more than one reply, which LMTP's per-recipient replies need.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use smtp_proto::EhloResponse;
use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// Replies longer than this are refused: a server that sends more is broken or hostile.
const MAX_REPLY: usize = 64 * 1024;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, `[0, 0, 0]` when the server gave none.
    pub esc: [u8; 3],
    /// The text, lines joined with spaces.
    pub text: String,
}

impl Reply {
    /// The enhanced status code as text, derived from the reply code when the server sent
    /// none.
    pub fn enhanced(&self) -> String {
        match self.esc {
            [0, 0, 0] => format!("{}.0.0", self.code / 100),
            [a, b, c] => format!("{a}.{b}.{c}"),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced(), self.text)
    }
}

/// Why a session step failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection failed: {0}")]
    Connect(io::Error),
    #[error("connection broken: {0}")]
    Io(#[from] io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server replied {0}")]
    Reply(Reply),
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Refused on our side before anything was sent.
    #[error("{0}")]
    Refused(madmail_module::delivery::DeliveryError),
}

pub struct Session {
    io: Box<dyn Io>,
    /// Bytes received and not yet consumed as a reply.
    buf: Vec<u8>,
    pub capabilities: EhloResponse<String>,
    pub tls: bool,
    /// For logs: the target as configured.
    pub peer: String,
    pub debug: bool,
    pub command_timeout: Duration,
}

impl Session {
    pub fn new(io: Box<dyn Io>, peer: String, debug: bool, command_timeout: Duration) -> Session {
        Session {
            io,
            buf: Vec::new(),
            capabilities: EhloResponse::default(),
            tls: false,
            peer,
            debug,
            command_timeout,
        }
    }

    pub fn has(&self, extension: u32) -> bool {
        self.capabilities.has_capability(extension)
    }

    /// Reads the greeting, which must be 220.
    pub async fn greeting(&mut self) -> Result<(), SessionError> {
        let reply = self
            .read_reply(self.command_timeout, "the greeting")
            .await?;
        if reply.code != 220 {
            return Err(SessionError::Reply(reply));
        }
        Ok(())
    }

    /// EHLO (or LHLO) and the capabilities it announces; an SMTP server that does not know
    /// EHLO gets HELO and is assumed to offer no extensions.
    pub async fn hello(&mut self, verb: &str, hostname: &str) -> Result<(), SessionError> {
        self.send(&format!("{verb} {hostname}")).await?;
        let raw = self
            .read_raw(self.command_timeout, "the EHLO reply")
            .await?;
        let reply = parse_reply(&raw)?;
        if reply.code == 250 {
            self.capabilities = EhloResponse::parse(&mut raw.iter())
                .map_err(|e| SessionError::Protocol(format!("malformed {verb} reply: {e:?}")))?;
            return Ok(());
        }
        if verb == "EHLO" && (500..=502).contains(&reply.code) {
            let reply = self.command("HELO", hostname).await?;
            if reply.code == 250 {
                self.capabilities = EhloResponse::default();
                return Ok(());
            }
            return Err(SessionError::Reply(reply));
        }
        Err(SessionError::Reply(reply))
    }

    /// STARTTLS and the handshake. On success the session is encrypted and must say EHLO
    /// again; any error leaves the connection unusable.
    pub async fn starttls(
        mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Session, SessionError> {
        let reply = self.command("STARTTLS", "").await?;
        if reply.code != 220 {
            return Err(SessionError::Tls(format!("STARTTLS refused: {reply}")));
        }
        // Anything already received was sent before the handshake and could have been
        // injected by a man in the middle (the client side of CVE-2011-0411).
        if !self.buf.is_empty() {
            return Err(SessionError::Protocol(
                "server sent data after its STARTTLS reply".into(),
            ));
        }
        let io = tls_handshake(self.io, config, name, self.command_timeout).await?;
        Ok(Session {
            io,
            buf: Vec::new(),
            capabilities: EhloResponse::default(),
            tls: true,
            ..self
        })
    }

    /// Sends `verb args` and reads the reply.
    pub async fn command(&mut self, verb: &str, args: &str) -> Result<Reply, SessionError> {
        let line = if args.is_empty() {
            verb.to_owned()
        } else {
            format!("{verb} {args}")
        };
        self.send(&line).await?;
        self.read_reply(self.command_timeout, &format!("the {verb} reply"))
            .await
    }

    /// Sends a command whose arguments are secret: the log shows only `shown`.
    pub async fn secret_command(&mut self, line: &str, shown: &str) -> Result<Reply, SessionError> {
        if self.debug {
            tracing::debug!(peer = %self.peer, "C: {shown}");
        }
        self.write(format!("{line}\r\n").as_bytes(), self.command_timeout)
            .await?;
        self.read_reply(self.command_timeout, "the AUTH reply")
            .await
    }

    pub async fn send(&mut self, line: &str) -> Result<(), SessionError> {
        if self.debug {
            tracing::debug!(peer = %self.peer, "C: {line}");
        }
        self.write(format!("{line}\r\n").as_bytes(), self.command_timeout)
            .await
    }

    /// Writes raw bytes (message data) and flushes.
    pub async fn write(&mut self, data: &[u8], limit: Duration) -> Result<(), SessionError> {
        let io = &mut self.io;
        tokio::time::timeout(limit, async {
            io.write_all(data).await?;
            io.flush().await
        })
        .await
        .map_err(|_| SessionError::Timeout("the server to take data".into()))??;
        Ok(())
    }

    pub async fn read_reply(&mut self, limit: Duration, what: &str) -> Result<Reply, SessionError> {
        let raw = self.read_raw(limit, what).await?;
        parse_reply(&raw)
    }

    /// The bytes of one complete reply (all its lines).
    async fn read_raw(&mut self, limit: Duration, what: &str) -> Result<Vec<u8>, SessionError> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = reply_end(&self.buf)? {
                    let raw: Vec<u8> = self.buf.drain(..end).collect();
                    if self.debug {
                        let text = String::from_utf8_lossy(&raw);
                        tracing::debug!(peer = %self.peer, "S: {}", text.trim_end());
                    }
                    return Ok(raw);
                }
                let mut chunk = [0u8; 4096];
                let n = self.io.read(&mut chunk).await?;
                if n == 0 {
                    return Err(SessionError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    )));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .map_err(|_| SessionError::Timeout(what.to_owned()))?
    }

    /// QUIT, waiting briefly for the reply; errors do not matter any more.
    pub async fn quit(mut self) {
        if self.send("QUIT").await.is_ok() {
            let _ = self.read_reply(self.command_timeout, "QUIT").await;
        }
        let _ = self.io.shutdown().await;
    }

    /// Closes the connection without QUIT (e.g. in the middle of DATA, so that the server
    /// discards the incomplete message).
    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// A TLS client handshake over `io`.
pub async fn tls_handshake(
    io: Box<dyn Io>,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<Box<dyn Io>, SessionError> {
    let handshake = TlsConnector::from(config).connect(name, io);
    let stream = tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| SessionError::Timeout("the TLS handshake".into()))?
        .map_err(|e| SessionError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// Where the first complete reply in `buf` ends: after the line whose code is followed by a
/// space (or nothing). `None` when more bytes are needed.
fn reply_end(buf: &[u8]) -> Result<Option<usize>, SessionError> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start += nl + 1;
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(SessionError::Protocol(format!(
                "malformed reply line {:?}",
                String::from_utf8_lossy(line)
            )));
        }
        match line.get(3) {
            None | Some(b' ') => return Ok(Some(start)),
            Some(b'-') => {}
            Some(_) => {
                return Err(SessionError::Protocol(format!(
                    "malformed reply line {:?}",
                    String::from_utf8_lossy(line)
                )));
            }
        }
    }
    if buf.len() > MAX_REPLY {
        return Err(SessionError::Protocol("reply too long".into()));
    }
    Ok(None)
}

fn parse_reply(raw: &[u8]) -> Result<Reply, SessionError> {
    let response = ResponseReceiver::default()
        .parse(&mut raw.iter())
        .map_err(|e| SessionError::Protocol(format!("malformed reply: {e:?}")))?;
    // The text may end up in our own reply to a client: one line, no control characters.
    let text = response
        .message
        .split('\n')
        .map(|l| l.trim().replace(|c: char| c.is_control(), ""))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Reply {
        code: response.code,
        esc: response.esc,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(reply_end(b"250 ok\r\n").ok().flatten(), Some(8));
        assert_eq!(reply_end(b"250-a\r\n250 b\r\n354").ok().flatten(), Some(14));
        assert_eq!(reply_end(b"250-a\r\n250").ok().flatten(), None);
        assert_eq!(reply_end(b"250\n").ok().flatten(), Some(4));
        assert!(reply_end(b"hello\r\n").is_err());
        assert!(reply_end(b"250x\r\n").is_err());
        assert!(reply_end(&vec![b'2'; MAX_REPLY + 1]).is_err());
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"550-5.1.1 no such\r\n550 5.1.1 user here\r\n").ok();
        assert_eq!(
            r,
            Some(Reply {
                code: 550,
                esc: [5, 1, 1],
                text: "no such user here".into()
            })
        );
        let r = parse_reply(b"451 try later\r\n").ok();
        assert_eq!(r.as_ref().map(Reply::enhanced).as_deref(), Some("4.0.0"));
        assert_eq!(r.map(|r| r.text).as_deref(), Some("try later"));
    }
}

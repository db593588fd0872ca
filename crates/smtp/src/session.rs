//! One SMTP/LMTP session: the command loop and the state of the mail transaction.
//!
//! Commands are parsed with `smtp-proto`; replies are queued and sent when the client may be
//! waiting for them (before the next read), which gives PIPELINING for free.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use madmail_module::auth::AuthError;
use madmail_module::delivery::{Delivery, DeliveryError, Envelope};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, MailFrom, RcptTo,
    Request,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Protocol, Settings};
use crate::conn::{Conn, Line, ReadError};
use crate::limits::MessagePermit;
use crate::message;

/// Session events logged at info level when the endpoint's `debug` is on, else at debug.
macro_rules! verbose {
    ($s:expr, $($arg:tt)*) => {
        if $s.debug {
            tracing::info!($($arg)*)
        } else {
            tracing::debug!($($arg)*)
        }
    };
}

/// RFC 4954 §4: lines of an AUTH exchange may be up to 12288 octets.
const MAX_AUTH_LINE: usize = 12288;

/// Whether the session goes on after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// A reply: code, enhanced status code (RFC 3463) and text.
struct Reply {
    code: u16,
    enhanced: Cow<'static, str>,
    text: Cow<'static, str>,
}

fn reply(code: u16, enhanced: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
    Reply {
        code,
        enhanced: Cow::Borrowed(enhanced),
        text: text.into(),
    }
}

impl From<DeliveryError> for Reply {
    fn from(e: DeliveryError) -> Reply {
        let valid = (400..600).contains(&e.code);
        Reply {
            code: if valid { e.code } else { 554 },
            enhanced: Cow::Owned(if valid { e.enhanced } else { "5.0.0".into() }),
            text: Cow::Owned(e.message),
        }
    }
}

/// A mail transaction: from MAIL to the end of DATA/BDAT (or RSET).
struct Transaction {
    id: String,
    mail_from: String,
    smtputf8: bool,
    _permit: MessagePermit,
    /// SMTP/submission: one delivery for all recipients, started at MAIL or at the first RCPT
    /// (`defer_sender_reject`); a failure to start is kept and repeated for every RCPT.
    delivery: Option<Box<dyn Delivery>>,
    start_error: Option<DeliveryError>,
    /// SMTP: accepted recipients. LMTP: each with its own delivery, so that each gets its own
    /// reply after the message.
    rcpts: Vec<String>,
    lmtp: Vec<Box<dyn Delivery>>,
    /// Chunks received so far once BDAT started.
    bdat: Option<Vec<u8>>,
}

impl Transaction {
    async fn abort(self) {
        if let Some(d) = self.delivery {
            d.abort().await;
        }
        for d in self.lmtp {
            d.abort().await;
        }
    }
}

pub(crate) struct Session {
    conn: Conn,
    s: Arc<Settings>,
    ip: Option<IpAddr>,
    peer: Arc<str>,
    /// Set when the server stops: an idle session says goodbye.
    shutdown: CancellationToken,
    /// Whether the listener is implicit TLS (and so the handshake comes first).
    implicit_tls: bool,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    errors: usize,
    transactions: usize,
    logged_rcpt_errors: usize,
    tx: Option<Transaction>,
}

impl Session {
    pub(crate) fn new(
        conn: Conn,
        settings: Arc<Settings>,
        ip: Option<IpAddr>,
        peer: Arc<str>,
        shutdown: CancellationToken,
        implicit_tls: bool,
    ) -> Session {
        Session {
            conn,
            s: settings,
            ip,
            peer,
            shutdown,
            implicit_tls,
            helo: None,
            esmtp: false,
            auth_user: None,
            errors: 0,
            transactions: 0,
            logged_rcpt_errors: 0,
            tx: None,
        }
    }

    /// Serves the session until the client quits, the connection fails or the server stops.
    pub(crate) async fn run(mut self) {
        if self.implicit_tls {
            let Some(tls) = self.s.tls.clone() else {
                return;
            };
            if let Err(e) = self.conn.start_tls(tls).await {
                self.s.counters.tls_handshake_failed();
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                return;
            }
        }
        let greeting = match self.s.protocol {
            Protocol::Lmtp => format!("220 {} LMTP madmail ready", self.s.hostname),
            _ => format!("220 {} ESMTP madmail ready", self.s.hostname),
        };
        verbose!(self.s, peer = %self.peer, tls = self.conn.tls.is_some(), "session started");
        self.conn.push_line(&greeting);
        let shutdown = self.shutdown.clone();
        loop {
            let line = match self
                .conn
                .read_line(self.s.max_line_length, Some(&shutdown))
                .await
            {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong) => {
                    self.conn.log_input(b"<line too long>", false);
                    let r = reply(500, "5.5.2", "Line too long");
                    if self.error(r) == Flow::Close {
                        break;
                    }
                    continue;
                }
                Err(ReadError::Shutdown) => {
                    self.send(reply(
                        421,
                        "4.3.2",
                        "Service shutting down, try again later",
                    ));
                    break;
                }
                Err(ReadError::Timeout) => {
                    self.send(reply(421, "4.4.2", "Idle too long, closing connection"));
                    break;
                }
                Err(e) => {
                    verbose!(self.s, peer = %self.peer, error = %e, "connection ended");
                    break;
                }
            };
            let flow = self.command(&line).await;
            if flow == Flow::Close {
                break;
            }
        }
        if let Some(tx) = self.tx.take() {
            tx.abort().await;
        }
        self.conn.close().await;
    }

    fn send(&mut self, r: Reply) {
        // RFC 2034: intermediate (3xx) replies carry no enhanced status code.
        let line = if r.enhanced.is_empty() {
            format!("{} {}", r.code, one_line(&r.text))
        } else {
            format!("{} {} {}", r.code, r.enhanced, one_line(&r.text))
        };
        self.conn.push_line(&line);
    }

    /// Sends an error reply that counts against the error budget; past it, the session ends.
    fn error(&mut self, r: Reply) -> Flow {
        self.send(r);
        self.errors += 1;
        if self.s.max_errors > 0 && self.errors > self.s.max_errors {
            tracing::info!(peer = %self.peer, errors = self.errors, "too many errors, closing");
            self.send(reply(421, "4.7.0", "Too many errors, closing connection"));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let redact = is_auth_line(line);
        self.conn.log_input(line, redact);
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => return self.error(parse_error(e)),
        };
        match request {
            Request::Ehlo { host } if self.s.protocol != Protocol::Lmtp => {
                self.hello(&host, true).await
            }
            Request::Helo { host } if self.s.protocol != Protocol::Lmtp => {
                self.hello(&host, false).await
            }
            Request::Lhlo { host } if self.s.protocol == Protocol::Lmtp => {
                self.hello(&host, true).await
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                self.error(reply(500, "5.5.1", "This is an LMTP server: use LHLO"))
            }
            Request::Lhlo { .. } => self.error(reply(500, "5.5.1", "LHLO is for LMTP: use EHLO")),
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to, line).await,
            Request::Data => self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await,
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response).await,
            Request::StartTls => self.starttls().await,
            Request::Rset => {
                self.reset().await;
                self.send(reply(250, "2.0.0", "OK"));
                Flow::Continue
            }
            Request::Noop { .. } => {
                self.send(reply(250, "2.0.0", "OK"));
                Flow::Continue
            }
            Request::Quit => {
                self.send(reply(221, "2.0.0", "Bye"));
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.send(reply(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                Flow::Continue
            }
            Request::Help { .. } => {
                self.send(reply(214, "2.0.0", "See RFC 5321"));
                Flow::Continue
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(reply(502, "5.5.1", "Command not implemented")),
        }
    }

    async fn reset(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.abort().await;
        }
    }

    async fn hello(&mut self, host: &str, extended: bool) -> Flow {
        self.reset().await;
        self.helo = Some(host.to_owned());
        self.esmtp = extended;
        if !extended {
            let line = format!("250 {}", self.s.hostname);
            self.conn.push_line(&line);
            return Flow::Continue;
        }
        let mut caps = vec![
            "PIPELINING".to_owned(),
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "SMTPUTF8".to_owned(),
            format!("SIZE {}", self.s.max_message_size),
            "CHUNKING".to_owned(),
        ];
        if self.s.tls.is_some() && self.conn.tls.is_none() {
            caps.push("STARTTLS".to_owned());
        }
        if self.auth_allowed() && self.auth_user.is_none() {
            caps.push("AUTH PLAIN LOGIN".to_owned());
        }
        let mut limits = Vec::new();
        if self.s.max_recipients > 0 {
            limits.push(format!("RCPTMAX={}", self.s.max_recipients));
        }
        if self.s.max_transactions > 0 {
            limits.push(format!("MAILMAX={}", self.s.max_transactions));
        }
        if !limits.is_empty() {
            caps.push(format!("LIMITS {}", limits.join(" ")));
        }
        // Written by hand rather than with smtp-proto's EhloResponse, which has no LIMITS
        // (RFC 9422) and a fixed greeting text.
        self.conn
            .push_line(&format!("250-{} Hello {}", self.s.hostname, one_line(host)));
        let last = caps.len() - 1;
        for (i, cap) in caps.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.conn.push_line(&format!("250{sep}{cap}"));
        }
        Flow::Continue
    }

    /// AUTH is offered: a provider is configured and the connection is encrypted (or
    /// `insecure_auth` allows plaintext).
    fn auth_allowed(&self) -> bool {
        !self.s.auth.is_empty() && (self.conn.tls.is_some() || self.s.insecure_auth)
    }

    fn envelope(&self, tx_id: &str, mail_from: &str, smtputf8: bool) -> Envelope {
        Envelope {
            id: tx_id.to_owned(),
            mail_from: mail_from.to_owned(),
            src_ip: self.ip,
            src_helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.auth_user.clone(),
            tls: self.conn.tls.is_some(),
            smtputf8,
            endpoint: self.s.protocol.name().to_owned(),
        }
    }

    async fn mail(&mut self, from: MailFrom<Cow<'_, str>>) -> Flow {
        if self.helo.is_none() {
            return self.error(reply(503, "5.5.1", "Say hello first (EHLO)"));
        }
        if self.tx.is_some() {
            return self.error(reply(503, "5.5.1", "Nested MAIL command"));
        }
        if self.s.protocol == Protocol::Submission && self.auth_user.is_none() {
            return self.error(reply(530, "5.7.0", "Authentication required"));
        }
        if self.s.max_transactions > 0 && self.transactions >= self.s.max_transactions {
            self.send(reply(
                421,
                "4.7.0",
                "Too many messages in one session, please reconnect",
            ));
            return Flow::Close;
        }
        let allowed = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
        if from.flags & !allowed != 0
            || from.env_id.is_some()
            || from.trans_id.is_some()
            || from.mtrk.is_some()
            || from.solicit.is_some()
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
        {
            return self.error(reply(
                555,
                "5.5.4",
                "MAIL parameters not recognized or not implemented",
            ));
        }
        if from.size > self.s.max_message_size {
            self.send(reply(
                552,
                "5.3.4",
                format!(
                    "Message size exceeds the limit of {} octets",
                    self.s.max_message_size
                ),
            ));
            return Flow::Continue;
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let address = from.address.into_owned();
        if !smtputf8 && !address.is_ascii() {
            self.send(reply(
                553,
                "5.6.7",
                "SMTPUTF8 is required for non-ASCII addresses",
            ));
            return Flow::Continue;
        }
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        let Some(permit) = self.s.limits.take_message(self.ip, domain).await else {
            self.send(reply(451, "4.4.5", "High load, try again later"));
            return Flow::Continue;
        };
        let mut tx = Transaction {
            id: new_id(),
            mail_from: address,
            smtputf8,
            _permit: permit,
            delivery: None,
            start_error: None,
            rcpts: Vec::new(),
            lmtp: Vec::new(),
            bdat: None,
        };
        if self.s.protocol != Protocol::Lmtp && !self.s.defer_sender_reject {
            let envelope = self.envelope(&tx.id, &tx.mail_from, smtputf8);
            match self.s.pipeline.start(&envelope).await {
                Ok(d) => tx.delivery = Some(d),
                Err(e) => {
                    tracing::info!(peer = %self.peer, msg_id = %tx.id, sender = %tx.mail_from, error = %e, "MAIL rejected");
                    self.send(e.into());
                    return Flow::Continue;
                }
            }
        }
        self.transactions += 1;
        verbose!(self.s, peer = %self.peer, msg_id = %tx.id, sender = %tx.mail_from, "MAIL accepted");
        self.tx = Some(tx);
        self.send(reply(250, "2.1.0", "Sender OK"));
        Flow::Continue
    }

    async fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Flow {
        let Some((bdat_started, accepted, smtputf8)) = self
            .tx
            .as_ref()
            .map(|tx| (tx.bdat.is_some(), tx.rcpts.len(), tx.smtputf8))
        else {
            return self.error(reply(503, "5.5.1", "MAIL first"));
        };
        if bdat_started {
            return self.error(reply(503, "5.5.1", "RCPT can't follow BDAT"));
        }
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return self.error(reply(
                555,
                "5.5.4",
                "RCPT parameters not recognized or not implemented",
            ));
        }
        let mut address = to.address.into_owned();
        if address.is_empty() {
            // smtp-proto reads both <> and <postmaster> as empty; only the latter is valid.
            if !ascii_contains(line, b"<postmaster>") {
                return self.error(reply(501, "5.1.3", "Invalid recipient address"));
            }
            address = "postmaster".to_owned();
        }
        if self.s.max_recipients > 0 && accepted >= self.s.max_recipients {
            self.send(reply(
                452,
                "4.5.3",
                format!("Too many recipients (at most {})", self.s.max_recipients),
            ));
            return Flow::Continue;
        }
        if !smtputf8 && !address.is_ascii() {
            self.send(reply(
                553,
                "5.6.7",
                "SMTPUTF8 is required for non-ASCII addresses",
            ));
            return Flow::Continue;
        }
        let result = self.add_rcpt(&address).await;
        match result {
            Ok(()) => {
                verbose!(self.s, peer = %self.peer, rcpt = %address, "RCPT accepted");
                self.send(reply(250, "2.1.5", "Recipient OK"));
            }
            Err(e) => {
                self.s.counters.recipient_rejected();
                if self.logged_rcpt_errors < self.s.max_logged_rcpt_errors {
                    self.logged_rcpt_errors += 1;
                    let msg_id = self.tx.as_ref().map(|t| t.id.clone()).unwrap_or_default();
                    tracing::info!(peer = %self.peer, msg_id = %msg_id, rcpt = %address, error = %e, "RCPT rejected");
                    if self.logged_rcpt_errors == self.s.max_logged_rcpt_errors {
                        tracing::info!(peer = %self.peer, "too many RCPT errors, not logging more (address probing?)");
                    }
                }
                self.send(e.into());
            }
        }
        Flow::Continue
    }

    async fn add_rcpt(&mut self, address: &str) -> Result<(), DeliveryError> {
        let lmtp = self.s.protocol == Protocol::Lmtp;
        let pipeline = self.s.pipeline.clone();
        let envelope = {
            let Some(tx) = self.tx.as_ref() else {
                return Err(DeliveryError::new(503, "5.5.1", "MAIL first"));
            };
            self.envelope(&tx.id, &tx.mail_from, tx.smtputf8)
        };
        let Some(tx) = self.tx.as_mut() else {
            return Err(DeliveryError::new(503, "5.5.1", "MAIL first"));
        };
        if lmtp {
            let mut delivery = pipeline.start(&envelope).await?;
            if let Err(e) = delivery.add_rcpt(address).await {
                delivery.abort().await;
                return Err(e);
            }
            tx.lmtp.push(delivery);
            tx.rcpts.push(address.to_owned());
            return Ok(());
        }
        if let Some(e) = &tx.start_error {
            return Err(e.clone());
        }
        if tx.delivery.is_none() {
            match pipeline.start(&envelope).await {
                Ok(d) => tx.delivery = Some(d),
                Err(e) => {
                    tx.start_error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        if let Some(d) = tx.delivery.as_mut() {
            d.add_rcpt(address).await?;
        }
        tx.rcpts.push(address.to_owned());
        Ok(())
    }

    /// Replies to a message-level outcome: once for SMTP, once per recipient for LMTP.
    fn send_per_rcpt(&mut self, rcpts: usize, r: Reply) {
        let times = if self.s.protocol == Protocol::Lmtp {
            rcpts.max(1)
        } else {
            1
        };
        for _ in 0..times {
            self.send(Reply {
                code: r.code,
                enhanced: r.enhanced.clone(),
                text: r.text.clone(),
            });
        }
    }

    async fn data(&mut self) -> Flow {
        match &self.tx {
            None => return self.error(reply(503, "5.5.1", "MAIL first")),
            Some(tx) if tx.bdat.is_some() => {
                return self.error(reply(503, "5.5.1", "DATA can't follow BDAT"));
            }
            Some(tx) if tx.rcpts.is_empty() => {
                return self.error(reply(554, "5.5.1", "No valid recipients"));
            }
            Some(_) => {}
        }
        self.send(reply(354, "", "Start mail input; end with <CRLF>.<CRLF>"));
        match self.conn.read_dot_data(self.s.max_message_size).await {
            Ok(Some(message)) => self.finish(message, true).await,
            Ok(None) => {
                self.too_big().await;
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "connection lost during DATA");
                Flow::Close
            }
        }
    }

    async fn too_big(&mut self) {
        let rcpts = self.tx.as_ref().map_or(1, |t| t.rcpts.len());
        if let Some(tx) = self.tx.take() {
            tracing::info!(peer = %self.peer, msg_id = %tx.id, "message too big");
            tx.abort().await;
        }
        self.s.counters.message_rejected();
        self.send_per_rcpt(
            rcpts,
            reply(
                552,
                "5.3.4",
                format!(
                    "Message exceeds the size limit of {} octets",
                    self.s.max_message_size
                ),
            ),
        );
    }

    async fn bdat(&mut self, size: usize, last: bool) -> Flow {
        let problem = match &self.tx {
            None => Some(reply(503, "5.5.1", "MAIL first")),
            Some(tx) if tx.rcpts.is_empty() => Some(reply(554, "5.5.1", "No valid recipients")),
            Some(_) => None,
        };
        if let Some(r) = problem {
            // The chunk follows the command whatever the reply (RFC 3030): read past it.
            if let Err(e) = self.conn.read_chunk(size, None).await {
                tracing::info!(peer = %self.peer, error = %e, "connection lost during BDAT");
                return Flow::Close;
            }
            return self.error(r);
        }
        let received = self
            .tx
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .map_or(0, Vec::len);
        if received.saturating_add(size) > self.s.max_message_size {
            if let Err(e) = self.conn.read_chunk(size, None).await {
                tracing::info!(peer = %self.peer, error = %e, "connection lost during BDAT");
                return Flow::Close;
            }
            self.too_big().await;
            return Flow::Continue;
        }
        let Some(tx) = self.tx.as_mut() else {
            return Flow::Continue;
        };
        let buf = tx.bdat.get_or_insert_with(Vec::new);
        if let Err(e) = self.conn.read_chunk(size, Some(buf)).await {
            tracing::info!(peer = %self.peer, error = %e, "connection lost during BDAT");
            return Flow::Close;
        }
        if last {
            let message = tx.bdat.take().unwrap_or_default();
            return self.finish(message, false).await;
        }
        self.send(reply(250, "2.0.0", format!("{size} octets received")));
        Flow::Continue
    }

    /// Checks the received message, adds the trace header and hands it to the pipeline.
    async fn finish(&mut self, raw: Vec<u8>, via_data: bool) -> Flow {
        let Some(tx) = self.tx.take() else {
            return Flow::Continue;
        };
        let rcpts = tx.rcpts.len();
        let message = match message::normalize_line_endings(&raw) {
            Some(fixed) => fixed,
            None => raw,
        };
        if let Err(r) = self.check(&message, via_data) {
            tracing::info!(peer = %self.peer, msg_id = %tx.id, reply = %r.text, "message rejected");
            tx.abort().await;
            self.s.counters.message_rejected();
            self.send_per_rcpt(rcpts, r);
            return Flow::Continue;
        }
        let mut prefix = self.trace(&tx).header();
        if self.s.protocol == Protocol::Submission {
            prefix.push_str(&self.submission_fields(&message, &tx.id));
        }
        let mut full = Vec::with_capacity(prefix.len() + message.len());
        full.extend_from_slice(prefix.as_bytes());
        full.extend_from_slice(&message);
        drop(message);

        let Transaction {
            id,
            mail_from,
            delivery,
            rcpts: rcpt_list,
            lmtp,
            ..
        } = tx;
        if self.s.protocol == Protocol::Lmtp {
            for (delivery, rcpt) in lmtp.into_iter().zip(&rcpt_list) {
                let r = match deliver(delivery, &full).await {
                    Ok(()) => {
                        self.s.counters.message_accepted();
                        tracing::info!(peer = %self.peer, msg_id = %id, sender = %mail_from, rcpt = %rcpt, size = full.len(), "accepted");
                        reply(250, "2.0.0", format!("<{rcpt}> OK: delivered ({id})"))
                    }
                    Err(e) => {
                        self.s.counters.message_rejected();
                        tracing::info!(peer = %self.peer, msg_id = %id, rcpt = %rcpt, error = %e, "delivery failed");
                        e.into()
                    }
                };
                self.send(r);
            }
            return Flow::Continue;
        }
        let Some(delivery) = delivery else {
            self.send(reply(554, "5.5.1", "No valid recipients"));
            return Flow::Continue;
        };
        match deliver(delivery, &full).await {
            Ok(()) => {
                self.s.counters.message_accepted();
                tracing::info!(peer = %self.peer, msg_id = %id, sender = %mail_from, rcpts = rcpt_list.len(), size = full.len(), user = self.auth_user.as_deref().unwrap_or(""), "accepted");
                self.send(reply(250, "2.0.0", format!("OK: queued as {id}")));
            }
            Err(e) => {
                self.s.counters.message_rejected();
                tracing::info!(peer = %self.peer, msg_id = %id, error = %e, "delivery failed");
                self.send(e.into());
            }
        }
        Flow::Continue
    }

    /// The checks on a complete message; the error is the reply.
    fn check(&self, message: &[u8], via_data: bool) -> Result<(), Reply> {
        // maddy applies the line limit to DATA content only; BDAT is exempt (binary-safe).
        if via_data {
            let longest = message::longest_line(message);
            if longest > self.s.max_line_length {
                return Err(reply(
                    554,
                    "5.6.0",
                    format!(
                        "Message has a line of {longest} octets; the limit is {}",
                        self.s.max_line_length
                    ),
                ));
            }
        }
        let header = message::header_section(message);
        if header.len() > self.s.max_header_size {
            return Err(reply(552, "5.3.4", "Message header size exceeds the limit"));
        }
        // RFC 5321 §6.3: counting Received fields detects forwarding loops.
        let received = message::count_fields(header, "Received");
        if received > self.s.max_received {
            return Err(reply(
                554,
                "5.4.6",
                format!("Too many Received header fields ({received}), possible forwarding loop"),
            ));
        }
        if self.s.protocol == Protocol::Submission && !message::has_field(header, "From") {
            return Err(reply(
                554,
                "5.6.0",
                "Message does not contain a From header field",
            ));
        }
        Ok(())
    }

    fn trace<'a>(&'a self, tx: &'a Transaction) -> message::Trace<'a> {
        let mut with = match self.s.protocol {
            Protocol::Lmtp => "LMTP".to_owned(),
            _ if self.esmtp => "ESMTP".to_owned(),
            _ => "SMTP".to_owned(),
        };
        // RFC 3848: S for TLS, A for authenticated (SMTPS/SMTPA are not registered names).
        if self.esmtp || self.s.protocol == Protocol::Lmtp {
            if self.conn.tls.is_some() {
                with.push('S');
            }
            if self.auth_user.is_some() {
                with.push('A');
            }
        }
        message::Trace {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            ip: self.ip,
            hostname: &self.s.hostname,
            with,
            id: &tx.id,
            tls: self
                .conn
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            for_rcpt: match tx.rcpts.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            },
            date: SystemTime::now(),
        }
    }

    /// Header fields submission adds when the client left them out (as maddy): Message-ID
    /// and Date.
    fn submission_fields(&self, message: &[u8], id: &str) -> String {
        let header = message::header_section(message);
        let mut fields = String::new();
        if !message::has_field(header, "Message-ID") {
            fields.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.s.hostname));
        }
        if !message::has_field(header, "Date") {
            fields.push_str(&format!(
                "Date: {}\r\n",
                message::rfc5322_date(SystemTime::now())
            ));
        }
        fields
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) -> Flow {
        if self.s.auth.is_empty() {
            return self.error(reply(502, "5.5.1", "Authentication not available"));
        }
        if self.helo.is_none() || !self.esmtp {
            return self.error(reply(503, "5.5.1", "Say EHLO first"));
        }
        if self.auth_user.is_some() {
            return self.error(reply(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.error(reply(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.auth_allowed() {
            return self.error(reply(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        let credentials = match mechanism {
            AUTH_PLAIN => self.plain_exchange(initial).await,
            AUTH_LOGIN => self.login_exchange(initial).await,
            _ => {
                return self.error(reply(504, "5.5.4", "Unrecognized authentication mechanism"));
            }
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(Exchange::Failed(r)) => return self.error(r),
            Err(Exchange::Closed) => return Flow::Close,
        };
        let mut temporary = false;
        for provider in &self.s.auth {
            match provider.authenticate(&user, &password).await {
                Ok(()) => {
                    tracing::info!(peer = %self.peer, user = %user, "authenticated");
                    self.auth_user = Some(user);
                    self.send(reply(235, "2.7.0", "Authentication succeeded"));
                    return Flow::Continue;
                }
                Err(AuthError::InvalidCredentials) => {}
                Err(AuthError::Temporary(e)) => {
                    tracing::warn!(peer = %self.peer, user = %user, error = %e, "authentication backend failed");
                    temporary = true;
                }
            }
        }
        self.s.counters.auth_failed();
        tracing::info!(peer = %self.peer, user = %user, "authentication failed");
        if temporary {
            self.send(reply(454, "4.7.0", "Temporary authentication failure"));
            return Flow::Continue;
        }
        self.error(reply(535, "5.7.8", "Invalid credentials"))
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
    async fn plain_exchange(&mut self, initial: &str) -> Result<(String, String), Exchange> {
        let response = if initial.is_empty() {
            self.challenge("").await?
        } else {
            decode_response(initial)?
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Exchange::Failed(reply(
                501,
                "5.5.2",
                "Malformed PLAIN response",
            )));
        };
        let (Ok(authz), Ok(user), Ok(password)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(password),
        ) else {
            return Err(Exchange::Failed(reply(
                501,
                "5.5.2",
                "Credentials must be UTF-8",
            )));
        };
        // Acting as another user is not supported.
        if !authz.is_empty() && authz != user {
            return Err(Exchange::Failed(reply(535, "5.7.8", "Invalid credentials")));
        }
        Ok((user.to_owned(), password.to_owned()))
    }

    /// The LOGIN mechanism (draft-murchison-sasl-login): username and password prompted in
    /// turn.
    async fn login_exchange(&mut self, initial: &str) -> Result<(String, String), Exchange> {
        let user = if initial.is_empty() {
            self.challenge("VXNlcm5hbWU6").await?
        } else {
            decode_response(initial)?
        };
        let password = self.challenge("UGFzc3dvcmQ6").await?;
        match (String::from_utf8(user), String::from_utf8(password)) {
            (Ok(u), Ok(p)) => Ok((u, p)),
            _ => Err(Exchange::Failed(reply(
                501,
                "5.5.2",
                "Credentials must be UTF-8",
            ))),
        }
    }

    /// Sends a `334` challenge and reads the client's base64 response.
    async fn challenge(&mut self, challenge: &str) -> Result<Vec<u8>, Exchange> {
        self.conn.push_line(&format!("334 {challenge}"));
        match self.conn.read_line(MAX_AUTH_LINE, None).await {
            Ok(Line::Complete(line)) => {
                self.conn.log_input(&line, true);
                let text = std::str::from_utf8(&line).unwrap_or("").trim_end();
                if text == "*" {
                    return Err(Exchange::Failed(reply(
                        501,
                        "5.0.0",
                        "Authentication cancelled",
                    )));
                }
                decode_response(text)
            }
            Ok(Line::TooLong) => Err(Exchange::Failed(reply(
                500,
                "5.5.6",
                "Authentication exchange line is too long",
            ))),
            Err(_) => Err(Exchange::Closed),
        }
    }

    async fn starttls(&mut self) -> Flow {
        let Some(tls) = self.s.starttls.clone() else {
            return self.error(reply(502, "5.5.1", "STARTTLS not available"));
        };
        if self.conn.tls.is_some() {
            return self.error(reply(503, "5.5.1", "TLS already active"));
        }
        self.send(reply(220, "2.0.0", "Ready to start TLS"));
        match self.conn.start_tls(tls).await {
            Ok(discarded) => {
                if discarded > 0 {
                    tracing::warn!(peer = %self.peer, bytes = discarded, "discarded plaintext sent after STARTTLS (command injection attempt?)");
                }
                // RFC 3207 §4.2: forget everything learnt before TLS.
                self.reset().await;
                self.helo = None;
                self.esmtp = false;
                self.auth_user = None;
                Flow::Continue
            }
            Err(e) => {
                self.s.counters.tls_handshake_failed();
                tracing::info!(peer = %self.peer, error = %e, "STARTTLS handshake failed");
                Flow::Close
            }
        }
    }
}

/// Why an AUTH exchange ended without credentials.
enum Exchange {
    Failed(Reply),
    Closed,
}

fn decode_response(text: &str) -> Result<Vec<u8>, Exchange> {
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text.trim()).map_err(|_| {
        Exchange::Failed(reply(
            501,
            "5.5.2",
            "Cannot decode base64 in the client's response",
        ))
    })
}

async fn deliver(mut delivery: Box<dyn Delivery>, message: &[u8]) -> Result<(), DeliveryError> {
    if let Err(e) = delivery.body(message).await {
        delivery.abort().await;
        return Err(e);
    }
    delivery.commit().await
}

fn parse_error(e: smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand | E::NeedsMoreData { .. } | E::ResponseTooLong => {
            reply(500, "5.5.2", "Unknown command")
        }
        E::SyntaxError { syntax } => reply(501, "5.5.2", format!("Syntax: {syntax}")),
        E::InvalidSenderAddress => reply(501, "5.1.7", "Invalid sender address"),
        E::InvalidRecipientAddress => reply(501, "5.1.3", "Invalid recipient address"),
        E::InvalidParameter { param } => reply(501, "5.5.4", format!("Invalid parameter {param}")),
        E::UnsupportedParameter { param } => reply(
            555,
            "5.5.4",
            format!("Unsupported parameter {}", one_line(&param)),
        ),
        E::InvalidResponse { .. } => reply(500, "5.5.2", "Syntax error"),
    }
}

/// Whether `line` is an AUTH command (whose argument is a credential).
fn is_auth_line(line: &[u8]) -> bool {
    line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"AUTH")
}

fn ascii_contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Text safe to put on a reply line.
fn one_line(s: &str) -> Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// A message ID for logs and trace headers: 16 random hex digits.
fn new_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

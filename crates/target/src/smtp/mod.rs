//! `target.smtp` and `target.lmtp`: transparent forwarding to another server, as maddy's.
//!
//! Each message gets its own connection: the first target address that answers (and, with
//! `require_tls`, that encrypts) is used. `start` connects, says EHLO/LHLO, upgrades with
//! STARTTLS, authenticates and sends MAIL FROM; `add_rcpt` sends RCPT TO and returns the
//! server's verdict for that recipient; `body` sends the message but holds back its end (the
//! final `.` or `BDAT 0 LAST`), which `commit` sends. So the downstream server takes the
//! message only on `commit`, and `abort` leaves nothing there.
//!
//! LMTP answers the end of data once per accepted recipient; `commit` reads every answer and
//! returns the first failure (all recipients share one result in the `Delivery` interface;
//! the recipients that were accepted are logged).

mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use madmail_config::{Arg, Error, Node};
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use smtp_proto::{
    AUTH_EXTERNAL, AUTH_PLAIN, EXT_8BIT_MIME, EXT_CHUNKING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS,
};
use tokio::net::{TcpStream, UnixStream};

use session::{Session, SessionError};

pub const SMTP_SPEC: ModuleSpec = ModuleSpec {
    name: "target.smtp",
    kind: Kind::Named,
    build: build_smtp,
    summary: "forwards messages to another server over SMTP",
};

pub const LMTP_SPEC: ModuleSpec = ModuleSpec {
    name: "target.lmtp",
    kind: Kind::Named,
    build: build_lmtp,
    summary: "hands messages to a local delivery agent over LMTP",
};

fn build_smtp(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build(def, ctx, false)
}

fn build_lmtp(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build(def, ctx, true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Tcp {
        host: String,
        port: u16,
        implicit_tls: bool,
        server_name: ServerName<'static>,
    },
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp {
                host,
                port,
                implicit_tls,
                ..
            } => {
                let scheme = if *implicit_tls { "tls" } else { "tcp" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

enum Auth {
    Off,
    Plain { user: String, password: String },
    External,
}

/// Never prints the password.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Off => f.write_str("off"),
            Auth::Plain { user, .. } => write!(f, "plain {user} <password>"),
            Auth::External => f.write_str("external"),
        }
    }
}

struct Settings {
    module: &'static str,
    lmtp: bool,
    endpoints: Vec<Endpoint>,
    hostname: String,
    attempt_starttls: bool,
    require_tls: bool,
    auth: Auth,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    command_timeout: Duration,
    submission_timeout: Duration,
    debug: bool,
}

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>, lmtp: bool) -> Result<Built, Errors> {
    let globals = ctx.globals();
    let mut errors = Errors::new();
    let mut endpoints = Vec::new();
    for arg in def.args {
        match endpoint(arg, &globals.runtime_dir) {
            Ok(e) => endpoints.push(e),
            Err(e) => errors.push(e),
        }
    }
    let mut block = Block::new(def.node, globals.clone());
    let debug = block.flag("debug").inherit().default(false);
    let hostname = block
        .custom("hostname", |n| {
            let v = madmail_module::decode::single(n)?;
            if v.is_ascii() && !v.is_empty() && !v.contains(char::is_whitespace) {
                Ok(v.to_owned())
            } else {
                Err(Error::at(
                    n.arg_pos(0),
                    "hostname must be an ASCII domain name (IDNs in A-label form: xn--...)",
                ))
            }
        })
        .inherit()
        .required();
    let attempt_starttls = block.flag("attempt_starttls").default(!lmtp);
    let require_tls = block.flag("require_tls").default(false);
    let auth = block.custom("auth", parse_auth).default(Auth::Off);
    let runtime_dir = globals.runtime_dir.clone();
    if let Some(list) = block
        .custom("targets", |n| {
            madmail_module::decode::no_block(n)?;
            if n.args.is_empty() {
                return Err(Errors::at(&n.pos, "targets needs at least one address"));
            }
            let mut errors = Errors::new();
            let mut list = Vec::new();
            for arg in &n.args {
                match endpoint(arg, &runtime_dir) {
                    Ok(e) => list.push(e),
                    Err(e) => errors.push(e),
                }
            }
            errors.into_result(list)
        })
        .optional()
    {
        endpoints.extend(list);
    }
    let tls = block
        .custom("tls_client", madmail_tls::client_tls)
        .inherit()
        .optional();
    let connect_timeout = block
        .duration("connect_timeout")
        .default(Duration::from_secs(5 * 60));
    let command_timeout = block
        .duration("command_timeout")
        .default(Duration::from_secs(5 * 60));
    let submission_timeout = block
        .duration("submission_timeout")
        .default(Duration::from_secs(12 * 60));
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let module = if lmtp { "target.lmtp" } else { "target.smtp" };
    // (Addresses that failed to parse are reported already.)
    if def.args.is_empty() && !def.node.children().iter().any(|c| c.name == "targets") {
        errors.push(Error::at(
            &def.node.pos,
            format!("{module}: no server to deliver to; give one with targets tcp://host:port"),
        ));
    }
    if require_tls && endpoints.iter().any(|e| matches!(e, Endpoint::Unix(_))) {
        errors.push(Error::at(
            &def.node.pos,
            format!("{module}: require_tls can't be met over unix:// targets"),
        ));
    }
    // Without tls_client anywhere: the system's roots. Only built when needed (it reads the
    // system certificate store).
    let tls = tls.unwrap_or_else(madmail_tls::client_tls_default);
    let (Some(hostname), true) = (hostname, errors.is_empty()) else {
        return Err(errors);
    };
    let cleartext = endpoints.iter().any(|e| {
        matches!(
            e,
            Endpoint::Tcp {
                implicit_tls: false,
                ..
            }
        )
    });
    if matches!(auth, Auth::Plain { .. }) && !require_tls && cleartext {
        tracing::warn!(
            module,
            at = %def.node.pos,
            "auth plain without require_tls: the password goes in the clear to a server that does not offer STARTTLS"
        );
    }
    let settings = Settings {
        module,
        lmtp,
        endpoints,
        hostname,
        attempt_starttls,
        require_tls,
        auth,
        tls,
        connect_timeout,
        command_timeout,
        submission_timeout,
        debug,
    };
    Ok(Built::new(Capabilities::new().with::<dyn DeliveryTarget>(
        Arc::new(Forwarder {
            settings: Arc::new(settings),
        }),
    )))
}

/// A target address: `tcp://host:port`, `tls://host:port` or `unix://path` (relative to
/// runtime_dir).
fn endpoint(arg: &Arg, runtime_dir: &Path) -> Result<Endpoint, Error> {
    let addr = madmail_module::values::listen_addr(&arg.value)
        .map_err(|e| Error::at(&arg.pos, format!("targets: {e}")))?;
    match addr {
        madmail_module::values::ListenAddr::Tcp { host, port, tls } => {
            if host.is_empty() {
                return Err(Error::at(
                    &arg.pos,
                    format!("targets: {} has no host", arg.value),
                ));
            }
            let server_name = ServerName::try_from(host.clone()).map_err(|e| {
                Error::at(&arg.pos, format!("targets: bad host name {host:?}: {e}"))
            })?;
            Ok(Endpoint::Tcp {
                host,
                port,
                implicit_tls: tls,
                server_name,
            })
        }
        madmail_module::values::ListenAddr::Unix(path) => {
            Ok(Endpoint::Unix(runtime_dir.join(path)))
        }
    }
}

fn parse_auth(n: &Node) -> Result<Auth, Error> {
    madmail_module::decode::no_block(n)?;
    let Some(mechanism) = n.args.first() else {
        return Err(Error::at(
            &n.pos,
            "auth needs a mechanism: off, plain USER PASSWORD or external",
        ));
    };
    let extra = |count: usize| -> Result<(), Error> {
        match n.args.get(count + 1) {
            Some(a) => Err(Error::at(
                &a.pos,
                format!("auth {}: too many arguments", mechanism.value),
            )),
            None => Ok(()),
        }
    };
    match mechanism.value.as_str() {
        "off" => extra(0).map(|()| Auth::Off),
        "external" => extra(0).map(|()| Auth::External),
        "plain" => {
            extra(2)?;
            match (n.args.get(1), n.args.get(2)) {
                (Some(user), Some(password)) => Ok(Auth::Plain {
                    user: user.value.clone(),
                    password: password.value.clone(),
                }),
                _ => Err(Error::at(
                    &mechanism.pos,
                    "auth plain needs a user name and a password",
                )),
            }
        }
        "forward" => Err(Error::at(
            &mechanism.pos,
            "auth forward is not supported: madmail does not keep clients' passwords; use auth plain USER PASSWORD",
        )),
        other => Err(Error::at(
            &mechanism.pos,
            format!("unknown auth mechanism {other:?}; use off, plain or external"),
        )),
    }
}

struct Forwarder {
    settings: Arc<Settings>,
}

#[async_trait]
impl DeliveryTarget for Forwarder {
    async fn start(&self, envelope: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        let s = &self.settings;
        let mut session = connect(s).await.map_err(|e| {
            tracing::warn!(module = s.module, msg_id = %envelope.id, error = %e, "no usable server");
            e.into_delivery_error(Step::Connect)
        })?;
        if let Err(e) = mail_from(&mut session, envelope).await {
            tracing::info!(module = s.module, msg_id = %envelope.id, peer = %session.peer, error = %e, "MAIL FROM failed");
            session.quit().await;
            return Err(e.into_delivery_error(Step::Mail));
        }
        Ok(Box::new(Forwarding {
            settings: self.settings.clone(),
            msg_id: envelope.id.clone(),
            smtputf8: session.has(EXT_SMTP_UTF8),
            session: Some(session),
            accepted: Vec::new(),
            data: DataState::NotStarted,
        }))
    }

    /// SMTP hands mail on to another server; LMTP hands it to a local delivery agent (a
    /// mail store such as Dovecot), like `storage.maildir`, so it does not relay.
    fn relays(&self) -> bool {
        !self.settings.lmtp
    }
}

/// Tries each endpoint in order; the last error is returned when none works.
async fn connect(s: &Settings) -> Result<Session, SessionError> {
    let mut last = SessionError::Protocol("no target address".into());
    for endpoint in &s.endpoints {
        match connect_to(s, endpoint).await {
            Ok(session) => return Ok(session),
            Err(e) => {
                if s.endpoints.len() > 1 {
                    tracing::warn!(module = s.module, server = %endpoint, error = %e, "server unusable, trying the next");
                }
                last = e;
            }
        }
    }
    Err(last)
}

async fn connect_to(s: &Settings, endpoint: &Endpoint) -> Result<Session, SessionError> {
    let starttls = s.attempt_starttls
        && matches!(
            endpoint,
            Endpoint::Tcp {
                implicit_tls: false,
                ..
            }
        );
    let mut session = match open(s, endpoint, starttls).await {
        Err(e @ (SessionError::Tls(_) | SessionError::Protocol(_)))
            if starttls && !s.require_tls =>
        {
            // Opportunistic TLS, as maddy documents it: a failed STARTTLS is retried in the
            // clear unless TLS is required.
            tracing::warn!(module = s.module, server = %endpoint, error = %e, "STARTTLS failed, retrying without TLS");
            open(s, endpoint, false).await?
        }
        other => other?,
    };
    if s.require_tls && !session.tls {
        session.quit().await;
        return Err(SessionError::Tls(
            "TLS is required but the server does not offer STARTTLS".into(),
        ));
    }
    if let Err(e) = authenticate(s, &mut session).await {
        session.quit().await;
        return Err(e);
    }
    Ok(session)
}

/// Connects, reads the greeting, says hello and upgrades with STARTTLS when asked and offered.
async fn open(s: &Settings, endpoint: &Endpoint, starttls: bool) -> Result<Session, SessionError> {
    let peer = endpoint.to_string();
    let connecting = async {
        let io: Box<dyn session::Io> = match endpoint {
            Endpoint::Tcp { host, port, .. } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                // Commands and replies are small and latency-bound.
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            Endpoint::Unix(path) => Box::new(UnixStream::connect(path).await?),
        };
        Ok::<_, std::io::Error>(io)
    };
    let io = tokio::time::timeout(s.connect_timeout, connecting)
        .await
        .map_err(|_| SessionError::Timeout("the connection".into()))?
        .map_err(SessionError::Connect)?;
    let (io, tls) = match endpoint {
        Endpoint::Tcp {
            implicit_tls: true,
            server_name,
            ..
        } => (
            session::tls_handshake(io, s.tls.clone(), server_name.clone(), s.command_timeout)
                .await?,
            true,
        ),
        _ => (io, false),
    };
    let mut session = Session::new(io, peer, s.debug, s.command_timeout);
    session.tls = tls;
    let verb = if s.lmtp { "LHLO" } else { "EHLO" };
    session.greeting().await?;
    session.hello(verb, &s.hostname).await?;
    if starttls && session.has(EXT_START_TLS) {
        let Endpoint::Tcp { server_name, .. } = endpoint else {
            return Ok(session);
        };
        session = session.starttls(s.tls.clone(), server_name.clone()).await?;
        session.hello(verb, &s.hostname).await?;
    }
    Ok(session)
}

async fn authenticate(s: &Settings, session: &mut Session) -> Result<(), SessionError> {
    let offered = session.capabilities.auth_mechanisms;
    let reply = match &s.auth {
        Auth::Off => return Ok(()),
        Auth::Plain { user, password } => {
            if offered & AUTH_PLAIN == 0 {
                return Err(SessionError::Auth(
                    "the server does not offer AUTH PLAIN".into(),
                ));
            }
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            session
                .secret_command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN <credentials>")
                .await?
        }
        Auth::External => {
            if offered & AUTH_EXTERNAL == 0 {
                return Err(SessionError::Auth(
                    "the server does not offer AUTH EXTERNAL".into(),
                ));
            }
            session.command("AUTH", "EXTERNAL =").await?
        }
    };
    if reply.code != 235 {
        return Err(SessionError::Auth(format!("server replied {reply}")));
    }
    Ok(())
}

async fn mail_from(session: &mut Session, envelope: &Envelope) -> Result<(), SessionError> {
    check_address(&envelope.mail_from, "5.1.7")?;
    let mut params = String::new();
    if session.has(EXT_8BIT_MIME) {
        params.push_str(" BODY=8BITMIME");
    }
    if envelope.smtputf8 || !envelope.mail_from.is_ascii() {
        if session.has(EXT_SMTP_UTF8) {
            params.push_str(" SMTPUTF8");
        } else if !envelope.mail_from.is_ascii() {
            return Err(SessionError::Refused(DeliveryError::new(
                550,
                "5.6.7",
                "the downstream server does not support SMTPUTF8, needed for this sender address",
            )));
        }
    }
    let reply = session
        .command("MAIL", &format!("FROM:<{}>{params}", envelope.mail_from))
        .await?;
    if reply.code != 250 {
        return Err(SessionError::Reply(reply));
    }
    Ok(())
}

/// Addresses come from our own endpoints, but nothing that could end or split a command line
/// goes to the server.
fn check_address(address: &str, enhanced: &str) -> Result<(), SessionError> {
    if address.contains(['\r', '\n', '\0', '<', '>']) {
        return Err(SessionError::Refused(DeliveryError::new(
            501,
            enhanced,
            "malformed address",
        )));
    }
    Ok(())
}

/// Which step failed, for mapping errors to replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Mail,
    Rcpt,
    Data,
}

impl SessionError {
    /// The reply our client gets. Server replies are passed on (with the enhanced code's class
    /// matching the reply code); anything about reaching or talking to the server is a
    /// temporary failure, so the sender retries.
    fn into_delivery_error(self, step: Step) -> DeliveryError {
        match self {
            SessionError::Refused(e) => e,
            SessionError::Reply(r) if step != Step::Connect && (400..600).contains(&r.code) => {
                // RFC 5321 §4.5.3.1.10: 552 to RCPT means too many recipients, a temporary
                // condition.
                let code = if step == Step::Rcpt && r.code == 552 {
                    452
                } else {
                    r.code
                };
                let [_, subject, detail] = r.esc;
                let enhanced = if r.esc == [0, 0, 0] {
                    format!("{}.0.0", code / 100)
                } else {
                    format!("{}.{subject}.{detail}", code / 100)
                };
                DeliveryError::new(code, enhanced, r.text)
            }
            SessionError::Reply(r) => DeliveryError::new(
                451,
                "4.4.0",
                format!("downstream server unavailable: {} {}", r.code, r.text),
            ),
            SessionError::Connect(_) => {
                DeliveryError::new(451, "4.4.1", "could not connect to the downstream server")
            }
            SessionError::Io(_) | SessionError::Timeout(_) => {
                DeliveryError::new(451, "4.4.2", "connection to the downstream server failed")
            }
            SessionError::Protocol(_) => DeliveryError::new(
                451,
                "4.5.0",
                "protocol error talking to the downstream server",
            ),
            SessionError::Tls(_) => DeliveryError::new(
                451,
                "4.7.0",
                "could not set up TLS with the downstream server",
            ),
            SessionError::Auth(_) => DeliveryError::new(
                451,
                "4.7.0",
                "could not authenticate to the downstream server",
            ),
        }
    }
}

enum DataState {
    NotStarted,
    /// The message was sent but not its end: `.` after DATA, or `BDAT 0 LAST`.
    Open {
        bdat: bool,
    },
}

struct Forwarding {
    settings: Arc<Settings>,
    msg_id: String,
    smtputf8: bool,
    /// `None` once the connection broke.
    session: Option<Session>,
    /// Recipients the server accepted, in order (LMTP replies once for each).
    accepted: Vec<String>,
    data: DataState,
}

impl Forwarding {
    fn session(&mut self) -> Result<&mut Session, DeliveryError> {
        self.session.as_mut().ok_or_else(|| {
            DeliveryError::new(451, "4.4.2", "connection to the downstream server failed")
        })
    }

    /// Maps `e`; a connection that failed (rather than refused something) is closed.
    async fn fail(&mut self, e: SessionError, step: Step) -> DeliveryError {
        let peer = self
            .session
            .as_ref()
            .map(|s| s.peer.clone())
            .unwrap_or_default();
        tracing::info!(module = self.settings.module, msg_id = %self.msg_id, %peer, ?step, error = %e, "downstream delivery step failed");
        if !matches!(e, SessionError::Reply(_) | SessionError::Refused(_))
            && let Some(session) = self.session.take()
        {
            session.close().await;
        }
        e.into_delivery_error(step)
    }
}

#[async_trait]
impl Delivery for Forwarding {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        if let Err(e) = check_address(rcpt, "5.1.3") {
            return Err(self.fail(e, Step::Rcpt).await);
        }
        if !rcpt.is_ascii() && !self.smtputf8 {
            return Err(DeliveryError::new(
                553,
                "5.6.7",
                "the downstream server does not support SMTPUTF8, needed for this address",
            ));
        }
        let session = self.session()?;
        match session.command("RCPT", &format!("TO:<{rcpt}>")).await {
            Ok(r) if r.code == 250 || r.code == 251 => {
                self.accepted.push(rcpt.to_owned());
                Ok(())
            }
            Ok(r) => Err(self.fail(SessionError::Reply(r), Step::Rcpt).await),
            Err(e) => Err(self.fail(e, Step::Rcpt).await),
        }
    }

    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        if self.accepted.is_empty() {
            return Err(DeliveryError::new(554, "5.5.1", "no valid recipients"));
        }
        if !matches!(self.data, DataState::NotStarted) {
            return Err(DeliveryError::temporary("message body given twice"));
        }
        let timeout = self.settings.submission_timeout;
        let session = self.session()?;
        let limit = session.capabilities.size;
        if session.has(EXT_SIZE) && limit > 0 && message.len() > limit {
            return Err(DeliveryError::new(
                552,
                "5.3.4",
                format!("message too big for the downstream server (limit {limit} bytes)"),
            ));
        }
        let bdat = session.has(EXT_CHUNKING);
        let sent = if bdat {
            send_chunk(session, message, timeout).await
        } else {
            send_data(session, message, timeout).await
        };
        match sent {
            Ok(()) => {
                self.data = DataState::Open { bdat };
                Ok(())
            }
            Err(e) => Err(self.fail(e, Step::Data).await),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DeliveryError> {
        let DataState::Open { bdat } = self.data else {
            return Err(DeliveryError::temporary("commit without a message body"));
        };
        let timeout = self.settings.submission_timeout;
        let replies = if self.settings.lmtp {
            self.accepted.len()
        } else {
            1
        };
        let session = self.session()?;
        let end = if bdat { "BDAT 0 LAST" } else { "." };
        if let Err(e) = session.send(end).await {
            return Err(self.fail(e, Step::Data).await);
        }
        let mut first_failure = None;
        for i in 0..replies {
            let session = self.session()?;
            match session.read_reply(timeout, "the final reply").await {
                Ok(reply) if reply.code == 250 => {}
                Ok(reply) => {
                    if self.settings.lmtp {
                        let rcpt = self.accepted.get(i).map_or("", String::as_str);
                        tracing::info!(module = self.settings.module, msg_id = %self.msg_id, rcpt, %reply, "recipient refused the message");
                    }
                    first_failure.get_or_insert(reply);
                }
                Err(e) => return Err(self.fail(e, Step::Data).await),
            }
        }
        if let Some(session) = self.session.take() {
            // The message is settled; the sender need not wait for QUIT's reply.
            tokio::spawn(session.quit());
        }
        match first_failure {
            None => {
                tracing::debug!(module = self.settings.module, msg_id = %self.msg_id, rcpts = self.accepted.len(), "delivered downstream");
                Ok(())
            }
            Some(reply) => {
                if self.settings.lmtp && replies > 1 {
                    tracing::warn!(module = self.settings.module, msg_id = %self.msg_id, "LMTP server refused some recipients; reporting the whole message as failed");
                }
                Err(SessionError::Reply(reply).into_delivery_error(Step::Data))
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        let Some(session) = self.session.take() else {
            return;
        };
        match self.data {
            // In the middle of DATA only closing the connection makes the server drop the
            // message; after BDAT chunks or before any data, QUIT does.
            DataState::Open { bdat: false } => session.close().await,
            _ => {
                tokio::spawn(session.quit());
            }
        }
    }
}

/// `BDAT <size>` with the whole message as one chunk, not the last.
async fn send_chunk(
    session: &mut Session,
    message: &[u8],
    timeout: Duration,
) -> Result<(), SessionError> {
    session.send(&format!("BDAT {}", message.len())).await?;
    session.write(message, timeout).await?;
    let reply = session.read_reply(timeout, "the BDAT reply").await?;
    if reply.code != 250 {
        return Err(SessionError::Reply(reply));
    }
    Ok(())
}

/// `DATA` and the dot-stuffed message, without the final `.`.
async fn send_data(
    session: &mut Session,
    message: &[u8],
    timeout: Duration,
) -> Result<(), SessionError> {
    let reply = session.command("DATA", "").await?;
    if reply.code != 354 {
        return Err(SessionError::Reply(reply));
    }
    session.write(&dot_stuff(message), timeout).await
}

/// Doubles a `.` at the start of every line and makes sure the data ends with CRLF, so the
/// terminating `.` is alone on its line.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 256 + 4);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::session::Reply;
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
        assert_eq!(dot_stuff(b""), b"");
        assert_eq!(dot_stuff(b"a\r\n..b\r\n"), b"a\r\n...b\r\n");
    }

    #[test]
    fn error_mapping() {
        let reply = |code, esc| {
            SessionError::Reply(Reply {
                code,
                esc,
                text: "text".into(),
            })
        };
        let e = reply(552, [5, 5, 3]).into_delivery_error(Step::Rcpt);
        assert_eq!((e.code, e.enhanced.as_str()), (452, "4.5.3"));
        let e = reply(552, [5, 3, 4]).into_delivery_error(Step::Data);
        assert_eq!((e.code, e.enhanced.as_str()), (552, "5.3.4"));
        let e = reply(550, [0, 0, 0]).into_delivery_error(Step::Mail);
        assert_eq!(
            (e.code, e.enhanced.as_str(), e.message.as_str()),
            (550, "5.0.0", "text")
        );
        let e = reply(554, [5, 0, 0]).into_delivery_error(Step::Connect);
        assert_eq!((e.code, e.enhanced.as_str()), (451, "4.4.0"));
        let e = SessionError::Connect(std::io::ErrorKind::ConnectionRefused.into())
            .into_delivery_error(Step::Connect);
        assert_eq!((e.code, e.enhanced.as_str()), (451, "4.4.1"));
    }

    #[test]
    fn auth_debug_hides_password() {
        let auth = Auth::Plain {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}

//! Reading an `smtp`, `submission` or `lmtp` block into [`Settings`], with maddy's directive
//! names, defaults and inheritance. Directives the endpoint does not know go to the message
//! pipeline.

use std::sync::Arc;
use std::time::Duration;

use madmail_config::{Error, Node};
use madmail_module::auth::PlainAuth;
use madmail_module::delivery::DeliveryTarget;
use madmail_module::values::{self, ListenAddr};
use madmail_module::{Block, Ctx, Definition, Errors};

use crate::limits::{self, Limits};
use crate::metrics::Counters;

/// Which protocol an endpoint speaks, and with which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// MX: receives mail for this server's domains; never relays, AUTH only if configured.
    Smtp,
    /// Message submission: AUTH required before MAIL.
    Submission,
    /// LMTP (RFC 2033): one reply per recipient after the message.
    Lmtp,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Lmtp => "lmtp",
        }
    }
}

/// Everything a session needs to know, shared by all sessions of an endpoint.
pub(crate) struct Settings {
    pub protocol: Protocol,
    /// In A-label form (RFC 6531 §3.3).
    pub hostname: String,
    /// For implicit TLS (`tls://`), with the ALPN protocols the certificate source asks for
    /// (`acme-tls/1` for an ACME loader using tls-alpn-01).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// For STARTTLS: the same without ALPN, since rustls refuses a client whose ALPN offer
    /// shares nothing with a non-empty list, and SMTP clients have no reason to expect one.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Vec<Arc<dyn PlainAuth>>,
    pub insecure_auth: bool,
    pub max_message_size: usize,
    pub max_header_size: usize,
    pub max_recipients: usize,
    pub max_received: usize,
    pub max_line_length: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub io_debug: bool,
    pub debug: bool,
    pub defer_sender_reject: bool,
    pub max_logged_rcpt_errors: usize,
    pub limits: Arc<Limits>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_errors: usize,
    pub max_transactions: usize,
    pub pipeline: Arc<dyn DeliveryTarget>,
    pub counters: Arc<Counters>,
}

impl Settings {
    /// Settings for tests and embedding: the defaults of an `smtp` endpoint, delivering to
    /// `pipeline`.
    #[cfg(test)]
    pub(crate) fn new(
        protocol: Protocol,
        hostname: &str,
        pipeline: Arc<dyn DeliveryTarget>,
    ) -> Settings {
        Settings {
            protocol,
            hostname: hostname.to_owned(),
            tls: None,
            starttls: None,
            auth: Vec::new(),
            insecure_auth: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_received: DEFAULT_MAX_RECEIVED,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            io_debug: false,
            debug: false,
            defer_sender_reject: true,
            max_logged_rcpt_errors: 5,
            limits: Arc::new(Limits::default()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_errors: DEFAULT_MAX_ERRORS,
            max_transactions: DEFAULT_MAX_TRANSACTIONS,
            pipeline,
            counters: Arc::new(Counters::default()),
        }
    }
}

pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 << 20;
pub(crate) const DEFAULT_MAX_HEADER_SIZE: usize = 1 << 20;
pub(crate) const DEFAULT_MAX_RECIPIENTS: usize = 20_000;
pub(crate) const DEFAULT_MAX_RECEIVED: usize = 50;
pub(crate) const DEFAULT_MAX_LINE_LENGTH: usize = 4000;
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1000;
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 100;
pub(crate) const DEFAULT_MAX_ERRORS: usize = 10;
pub(crate) const DEFAULT_MAX_TRANSACTIONS: usize = 1000;

/// RFC 5321 §4.5.3.1.4-5: a command line may be 512 octets and a text line 1000 (with CRLF);
/// anything lower would break conforming clients.
const MIN_LINE_LENGTH: usize = 1000;

/// maddy directives this endpoint does not implement, with why: naming one is an error that
/// says so rather than "unknown directive".
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    (
        "auth_map",
        "map authentication names in the auth provider instead",
    ),
    (
        "auth_map_normalize",
        "authentication names are passed to the provider as given",
    ),
    (
        "reverse_proxy_mode",
        "the PROXY protocol is not supported; connect clients directly",
    ),
    (
        "dmarc",
        "DMARC enforcement is not available in this version",
    ),
];

/// Where an endpoint listens, with `unix://` paths made absolute.
pub(crate) fn listen_addresses(
    def: &Definition<'_>,
    runtime_dir: &std::path::Path,
) -> Result<Vec<ListenAddr>, Errors> {
    let mut errors = Errors::new();
    let mut addrs = Vec::new();
    if def.args.is_empty() {
        errors.push(Error::at(
            &def.node.pos,
            format!(
                "{} needs at least one address to listen on, such as tcp://0.0.0.0:25",
                def.module
            ),
        ));
    }
    for arg in def.args {
        match values::listen_addr(arg) {
            Ok(ListenAddr::Unix(path)) if path.is_relative() => {
                addrs.push(ListenAddr::Unix(runtime_dir.join(path)));
            }
            Ok(addr) => addrs.push(addr),
            Err(e) => errors.push(Error::at(&arg.pos, e)),
        }
    }
    errors.into_result(addrs)
}

/// Decodes the endpoint's block. `tls` decodes the `tls` directive (the TLS crate's job).
pub(crate) fn decode(
    protocol: Protocol,
    def: &Definition<'_>,
    addrs: &[ListenAddr],
    ctx: &mut Ctx<'_>,
) -> Result<Settings, Errors> {
    let node = def.node;
    let mut errors = Errors::new();
    let mut block = Block::new(node, ctx.globals());

    let hostname = block.string("hostname").inherit().required();
    // Whether a tls directive exists at all (here or global): when it exists but failed to
    // build, its own error says why and "no tls configuration" would only add noise.
    let tls_given =
        node.children().iter().any(|c| c.name == "tls") || ctx.globals().node("tls").is_some();
    let tls_field = block
        .custom("tls", |n| crate::tls::server_config(n, ctx))
        .inherit();
    let tls = if protocol == Protocol::Lmtp {
        tls_field.optional()
    } else {
        tls_field.required()
    };
    let tls_failed = tls_given && tls.is_none();
    let tls = tls.flatten();
    let auth_nodes = block.all("auth");
    let insecure_auth = block.flag("insecure_auth");
    let insecure_auth = if protocol == Protocol::Lmtp {
        insecure_auth.inherit().optional()
    } else {
        insecure_auth.optional()
    };
    let read_timeout = block.duration("read_timeout").default(DEFAULT_READ_TIMEOUT);
    let write_timeout = block
        .duration("write_timeout")
        .default(DEFAULT_WRITE_TIMEOUT);
    let max_message_size = block
        .data_size("max_message_size")
        .default(DEFAULT_MAX_MESSAGE_SIZE as u64);
    let max_header_size = block
        .data_size("max_header_size")
        .default(DEFAULT_MAX_HEADER_SIZE as u64);
    let max_recipients = block
        .int::<usize>("max_recipients")
        .default(DEFAULT_MAX_RECIPIENTS);
    let max_received = block
        .int::<usize>("max_received")
        .default(DEFAULT_MAX_RECEIVED);
    let max_line_length = block
        .custom("smtp_max_line_length", |n| {
            let v = madmail_module::decode::single(n)?;
            match v.parse::<usize>() {
                Ok(len) if len >= MIN_LINE_LENGTH => Ok(len),
                _ => Err(Error::at(
                    n.arg_pos(0),
                    format!(
                        "smtp_max_line_length: expected a number of octets of at least {MIN_LINE_LENGTH} (RFC 5321's text line limit), not {v:?}"
                    ),
                )),
            }
        })
        .default(DEFAULT_MAX_LINE_LENGTH);
    let io_debug = block.flag("io_debug").default(false);
    let debug = block.flag("debug").inherit().default(false);
    let defer_sender_reject = block.flag("defer_sender_reject").default(true);
    let max_logged_rcpt_errors = block.int::<usize>("max_logged_rcpt_errors").default(5);
    let limits = block
        .custom("limits", |n| limits::directive(n, ctx))
        .optional()
        .unwrap_or_default();
    let buffer = block.custom("buffer", buffer_directive).optional();
    let _ = buffer;
    let max_connections = block
        .int::<usize>("max_connections")
        .default(DEFAULT_MAX_CONNECTIONS);
    let max_connections_per_ip = block
        .int::<usize>("max_connections_per_ip")
        .default(DEFAULT_MAX_CONNECTIONS_PER_IP);
    let max_errors = block.int::<usize>("max_errors").default(DEFAULT_MAX_ERRORS);
    let max_transactions = block
        .int::<usize>("max_transactions")
        .default(DEFAULT_MAX_TRANSACTIONS);
    for (name, why) in NOT_IMPLEMENTED {
        for n in block.all(name) {
            errors.push(Error::at(
                &n.pos,
                format!("{name} is a maddy directive that madmail does not implement: {why}"),
            ));
        }
    }
    let (rest, decode_errors) = block.finish_with_rest();
    errors.extend(decode_errors);

    let mut auth = Vec::new();
    for n in auth_nodes {
        match ctx.module_from::<dyn PlainAuth>(n, 0, "auth") {
            Ok(a) => auth.push(a),
            Err(e) => errors.extend(e),
        }
    }
    if protocol == Protocol::Submission && auth.is_empty() {
        errors.push(Error::at(
            &node.pos,
            "submission needs an auth provider (auth &name): submission always requires authentication",
        ));
    }

    let options = madmail_pipeline::Options {
        explicit_relay_only: protocol == Protocol::Smtp,
    };
    let pipeline = match madmail_pipeline::build(node, &rest, options, ctx) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.extend(e);
            None
        }
    };

    let hostname = hostname.and_then(|h| match idna::domain_to_ascii(&h) {
        Ok(ascii) if !ascii.is_empty() => Some(ascii),
        _ => {
            let pos = node
                .children()
                .iter()
                .find(|c| c.name == "hostname")
                .map_or(&node.pos, |c| c.arg_pos(0));
            errors.push(Error::at(
                pos,
                format!("hostname {h:?} can't be written as an ASCII domain name"),
            ));
            None
        }
    });

    for (i, addr) in addrs.iter().enumerate() {
        if matches!(addr, ListenAddr::Tcp { tls: true, .. }) && tls.is_none() && !tls_failed {
            errors.push(Error::at(
                def.node.arg_pos(i),
                format!(
                    "{}: can't listen on {addr} (implicit TLS) without a tls configuration",
                    protocol.name()
                ),
            ));
        }
    }
    for (name, value) in [
        ("max_message_size", max_message_size),
        ("max_header_size", max_header_size),
    ] {
        let pos = node
            .children()
            .iter()
            .find(|c| c.name == name)
            .map_or(&node.pos, |c| c.arg_pos(0));
        if value == 0 {
            // maddy reads 0 as "no limit"; messages are held in memory here, so there must be one.
            errors.push(Error::at(
                pos,
                format!(
                    "{name} must be more than 0: messages are kept in memory while they arrive"
                ),
            ));
        } else if usize::try_from(value).is_err() {
            errors.push(Error::at(pos, format!("{name} is too large")));
        }
    }

    errors.into_result(())?;
    let (Some(hostname), Some(pipeline)) = (hostname, pipeline) else {
        // Both record an error when missing.
        return Err(Errors::at(&node.pos, "incomplete configuration"));
    };
    // maddy: without TLS there is no other way to authenticate, so plaintext AUTH is allowed.
    let insecure_auth = insecure_auth.unwrap_or(tls.is_none());
    if tls.is_none() && !all_local(addrs) {
        tracing::warn!(
            endpoint = protocol.name(),
            "TLS is disabled on a non-local address; use this only for testing"
        );
    }
    if insecure_auth && tls.is_some() && !auth.is_empty() && !all_local(addrs) {
        tracing::warn!(
            endpoint = protocol.name(),
            "authentication over unencrypted connections is allowed (insecure_auth); use this only for testing"
        );
    }
    if io_debug {
        tracing::warn!(
            endpoint = protocol.name(),
            "io_debug is on: every command and reply is logged (AUTH exchanges are redacted)"
        );
    }

    Ok(Settings {
        protocol,
        hostname,
        starttls: tls.as_ref().map(|c| {
            if c.alpn_protocols.is_empty() {
                c.clone()
            } else {
                let mut plain = (**c).clone();
                plain.alpn_protocols.clear();
                Arc::new(plain)
            }
        }),
        tls,
        auth,
        insecure_auth,
        max_message_size: usize::try_from(max_message_size).unwrap_or(usize::MAX),
        max_header_size: usize::try_from(max_header_size).unwrap_or(usize::MAX),
        max_recipients,
        max_received,
        max_line_length,
        read_timeout,
        write_timeout,
        io_debug,
        debug,
        defer_sender_reject,
        max_logged_rcpt_errors,
        limits,
        max_connections,
        max_connections_per_ip,
        max_errors,
        max_transactions,
        pipeline,
        counters: Arc::new(Counters::default()),
    })
}

/// maddy's `buffer` directive chooses where message bodies wait (RAM or files). madmail keeps
/// them in memory, bounded by `max_message_size`; `buffer ram` says exactly that and is
/// accepted, the file-backed modes are refused rather than silently ignored.
fn buffer_directive(n: &Node) -> Result<(), Error> {
    madmail_module::decode::no_block(n)?;
    match n.arg_values().as_slice() {
        ["ram"] => Ok(()),
        ["fs" | "auto", ..] => Err(Error::at(
            n.arg_pos(0),
            format!(
                "buffer {}: file-backed message buffers are not implemented; madmail keeps messages in memory (limited by max_message_size), use buffer ram or remove the directive",
                n.args[0].value
            ),
        )),
        _ => Err(Error::at(
            n.arg_pos(0),
            "buffer: expected ram, fs [PATH] or auto [SIZE [PATH]]",
        )),
    }
}

fn all_local(addrs: &[ListenAddr]) -> bool {
    addrs.iter().all(|a| match a {
        ListenAddr::Unix(_) => true,
        ListenAddr::Tcp { host, .. } => {
            host.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
                || host == "localhost"
        }
    })
}

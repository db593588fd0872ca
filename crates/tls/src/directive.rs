//! The `tls` and `tls_client` directives (maddy's grammar), decoded into rustls
//! configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use madmail_config::{Error, Node};
use madmail_module::globals::relative_to_file;
use madmail_module::{Block, Ctx, Errors};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};

use crate::CertificateSource;
use crate::suites::{self, Lookup};

const NEEDS_LOADER: &str =
    "tls needs a certificate loader: tls off, tls &name, tls file CERT KEY or tls { loader ... }";

/// Decodes a `tls` directive (an endpoint's own or the inherited global one):
///
/// ```text
/// tls off
/// tls LOADER [ARGS...] [{ options }]
/// tls &name [{ options }]
/// tls { loader LOADER [ARGS...] [{ loader block }]; options }
/// ```
///
/// with options `protocols MIN [MAX]`, `ciphers NAME...`, `curves NAME...`. Returns `None` for
/// `tls off`. The configuration has no ALPN protocols; add them with [`with_alpn`].
///
/// Endpoints call it as
/// `block.custom("tls", |n| madmail_tls::server_tls(n, ctx)).inherit().required()`.
pub fn server_tls(node: &Node, ctx: &mut Ctx<'_>) -> Result<Option<Arc<ServerConfig>>, Errors> {
    let mut errors = Errors::new();
    let head = node.args.first().map(|a| a.value.as_str());
    if head == Some("off") {
        if node.args.len() > 1 {
            errors.push(Error::at(
                node.arg_pos(1),
                "tls off takes no other arguments",
            ));
        }
        if node.children.is_some() {
            errors.push(Error::at(&node.pos, "tls off takes no block"));
        }
        return errors.into_result(None);
    }

    let mut block = Block::without_globals(node);
    let loaders = block.all("loader");
    let options = decode_options(&mut block);
    if let Err(e) = block.finish() {
        errors.extend(e);
    }

    let source = match (head, loaders.as_slice()) {
        (Some(_), loaders) => {
            for extra in loaders {
                errors.push(Error::at(
                    &extra.pos,
                    "the loader is already given on the tls line; remove one of them",
                ));
            }
            // As in maddy, the block of `tls LOADER ARGS { ... }` holds TLS options, so the
            // inline loader is built without one.
            let line = Node {
                children: None,
                ..node.clone()
            };
            ctx.module_from::<dyn CertificateSource>(&line, 0, "tls.loader")
        }
        (None, []) => Err(Errors::at(&node.pos, NEEDS_LOADER)),
        (None, [first, rest @ ..]) => {
            for dup in rest {
                errors.push(Error::at(
                    &dup.pos,
                    format!("duplicate directive loader (first at {})", first.pos),
                ));
            }
            ctx.module_from::<dyn CertificateSource>(first, 0, "tls.loader")
        }
    };
    let source = match source {
        Ok(s) => Some(s),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    errors.into_result(())?;
    let Some(source) = source else {
        return Err(Errors::at(&node.pos, NEEDS_LOADER));
    };

    let provider = options.provider();
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&options.versions)
        .map_err(|e| unusable(node, &e))?
        .with_no_client_auth()
        .with_cert_resolver(source.resolver());
    // maddy sets PreferServerCipherSuites when ciphers are listed: the order given wins.
    config.ignore_client_order = options.ciphers.is_some();
    config.alpn_protocols = source.alpn_protocols();
    Ok(Some(Arc::new(config)))
}

/// `config` with `protocols` added to the ALPN protocols it offers (for instance
/// [`crate::ACME_TLS_ALPN`] on a `tls-alpn-01` listener). Note that rustls rejects a client
/// whose ALPN offer shares nothing with a non-empty list.
pub fn with_alpn(config: &Arc<ServerConfig>, protocols: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(config);
    for p in protocols {
        if !config.alpn_protocols.iter().any(|q| q == p) {
            config.alpn_protocols.push(p.to_vec());
        }
    }
    Arc::new(config)
}

/// Decodes a `tls_client { ... }` block, for modules that connect with TLS:
///
/// ```text
/// tls_client {
///     root_ca PATH...     # replaces the system's trusted roots
///     cert PATH           # client certificate (with key)
///     key PATH
///     protocols MIN [MAX]
///     ciphers NAME...
///     curves NAME...
/// }
/// ```
///
/// Modules call it as `block.custom("tls_client", madmail_tls::client_tls).inherit()`, falling
/// back to [`client_tls_default`].
pub fn client_tls(node: &Node) -> Result<Arc<ClientConfig>, Errors> {
    let mut errors = Errors::new();
    if let Some(arg) = node.args.first() {
        errors.push(Error::at(
            &arg.pos,
            format!("{} takes no arguments, only a block", node.name),
        ));
    }
    if node.children.is_none() {
        errors.push(Error::at(
            &node.pos,
            format!(
                "{} needs a block: {} {{ root_ca ...; cert ...; key ... }}",
                node.name, node.name
            ),
        ));
    }
    let mut block = Block::without_globals(node);
    let roots = block.custom("root_ca", root_ca).optional();
    let cert = block.custom("cert", path_arg).optional();
    let key = block.custom("key", path_arg).optional();
    let options = decode_options(&mut block);
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    let identity = match (cert, key) {
        (None, None) => None,
        (Some((cert, cert_pos)), Some((key, _))) => match client_identity(&cert, &key) {
            Ok(identity) => Some(identity),
            Err(e) => {
                errors.push(Error::at(&cert_pos, format!("{}: {e}", node.name)));
                None
            }
        },
        (Some((_, pos)), None) | (None, Some((_, pos))) => {
            errors.push(Error::at(&pos, "cert and key must be given together"));
            None
        }
    };
    errors.into_result(())?;
    let builder = ClientConfig::builder_with_provider(Arc::new(options.provider()))
        .with_protocol_versions(&options.versions)
        .map_err(|e| unusable(node, &e))?
        .with_root_certificates(roots.unwrap_or_else(system_roots));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            Errors::at(&node.pos, format!("{}: client certificate: {e}", node.name))
        })?,
    };
    Ok(Arc::new(config))
}

/// A client configuration with the system's trusted roots and rustls's defaults: what a
/// module uses when neither it nor the globals have `tls_client`.
pub fn client_tls_default() -> Arc<ClientConfig> {
    #[allow(clippy::expect_used)]
    let builder = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        // The aws-lc-rs provider supports rustls's default versions; ClientConfig::builder()
        // relies on the same.
        .expect("aws-lc-rs supports the default TLS versions");
    Arc::new(
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
    )
}

/// The operating system's trusted roots (as maddy, which uses Go's system pool), read with
/// rustls-native-certs so that CAs an operator added to the system store are trusted and
/// distribution updates apply. When the system has none (a bare container), Mozilla's roots
/// compiled into webpki-roots stand in, with a warning.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "reading system certificate store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "unparsable certificates in the system store");
    }
    if added == 0 {
        tracing::warn!(
            "no trusted root certificates found in the system store; using the Mozilla roots built into madmail"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &Path, key: &Path) -> Result<Identity, crate::CertError> {
    let (cert_pem, key_pem) = crate::certs::read_pair(cert, key)?;
    // Checks the pair (and gives the precise error) before handing rustls the parts.
    crate::parse_pem(&cert_pem, &key_pem, cert, key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::CertError::Pem {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| crate::CertError::Pem {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((chain, key_der))
}

fn unusable(node: &Node, e: &rustls::Error) -> Errors {
    Errors::at(
        &node.pos,
        format!(
            "{}: these protocols, ciphers and curves leave nothing usable: {e}",
            node.name
        ),
    )
}

/// `protocols`, `ciphers` and `curves`, shared by `tls` and `tls_client`.
struct Options {
    versions: Vec<&'static SupportedProtocolVersion>,
    ciphers: Option<Vec<SupportedCipherSuite>>,
    curves: Option<Vec<&'static dyn SupportedKxGroup>>,
}

impl Options {
    fn provider(&self) -> CryptoProvider {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(ciphers) = &self.ciphers {
            provider.cipher_suites.clone_from(ciphers);
        }
        if let Some(curves) = &self.curves {
            provider.kx_groups.clone_from(curves);
        }
        provider
    }
}

/// Invalid values are recorded in `block` (so [`Block::finish`] fails) and left at defaults.
fn decode_options(block: &mut Block<'_>) -> Options {
    let versions = block.custom("protocols", protocols).optional();
    let ciphers = block.custom("ciphers", ciphers).optional();
    let curves = block.custom("curves", curves).optional();
    Options {
        versions: versions.unwrap_or_else(|| rustls::DEFAULT_VERSIONS.to_vec()),
        ciphers,
        curves,
    }
}

/// `protocols MIN [MAX]`: TLS 1.0 and 1.1 are accepted as a minimum (maddy's default
/// configuration names them) and raised to TLS 1.2, rustls's floor.
fn protocols(n: &Node) -> Result<Vec<&'static SupportedProtocolVersion>, Errors> {
    madmail_module::decode::no_block(n)?;
    if n.args.is_empty() || n.args.len() > 2 {
        return Err(Errors::at(
            &n.pos,
            "protocols takes MIN [MAX], each one of tls1.0, tls1.1, tls1.2, tls1.3",
        ));
    }
    let mut bounds = Vec::new();
    for arg in &n.args {
        match suites::tls_version(arg) {
            Some(v) => bounds.push(v),
            None => {
                return Err(Errors::at(
                    &arg.pos,
                    format!("unknown TLS version {:?}; use tls1.2 or tls1.3", arg.value),
                ));
            }
        }
    }
    let min = bounds[0];
    let max = bounds.last().copied().unwrap_or(min);
    if min > max {
        return Err(Errors::at(
            n.arg_pos(1),
            "the maximum TLS version is below the minimum",
        ));
    }
    if max < 2 {
        return Err(Errors::at(
            n.arg_pos(bounds.len() - 1),
            "TLS 1.0 and 1.1 are not supported; the lowest version is tls1.2",
        ));
    }
    if min < 2 {
        tracing::warn!(
            at = %n.pos,
            requested = %n.args[0].value,
            "TLS 1.0 and 1.1 are not supported; the lowest version is tls1.2"
        );
    }
    let mut versions = Vec::new();
    if min <= 2 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 3 {
        versions.push(&rustls::version::TLS13);
    }
    Ok(versions)
}

/// `ciphers NAME...`: the TLS 1.2 suites allowed, in order of preference. TLS 1.3 suites stay
/// as rustls has them unless some are listed too (Go, hence maddy, can't restrict them).
fn ciphers(n: &Node) -> Result<Vec<SupportedCipherSuite>, Errors> {
    let listed = lookup_all(n, suites::cipher_suite, "cipher")?;
    if listed.is_empty() {
        return Err(Errors::at(
            &n.pos,
            format!(
                "none of these ciphers can be used; usable ones: {}",
                suites::USABLE_CIPHERS
            ),
        ));
    }
    let mut result = listed;
    if !result.iter().any(|s| s.tls13().is_some()) {
        let tls13 = rustls::crypto::aws_lc_rs::DEFAULT_CIPHER_SUITES
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied();
        result = tls13.chain(result).collect();
    }
    Ok(result)
}

/// `curves NAME...`: the key exchange groups allowed, in order of preference.
fn curves(n: &Node) -> Result<Vec<&'static dyn SupportedKxGroup>, Errors> {
    let listed = lookup_all(n, suites::kx_group, "curve")?;
    if listed.is_empty() {
        return Err(Errors::at(
            &n.pos,
            "none of these curves can be used; usable ones: X25519, p256, p384, X25519MLKEM768",
        ));
    }
    Ok(listed)
}

/// Every argument looked up: unknown names are errors, unsupported ones dropped with a warning.
fn lookup_all<T: Copy>(
    n: &Node,
    lookup: fn(&str) -> Lookup<T>,
    what: &str,
) -> Result<Vec<T>, Errors> {
    madmail_module::decode::no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(
            &n.pos,
            format!("{} needs at least one value", n.name),
        ));
    }
    let mut errors = Errors::new();
    let mut found = Vec::new();
    for arg in &n.args {
        match lookup(arg) {
            Lookup::Supported(v) => found.push(v),
            Lookup::Unsupported(why) => {
                tracing::warn!(at = %arg.pos, name = %arg.value, "{what} dropped: {why}");
            }
            Lookup::Unknown => {
                errors.push(Error::at(&arg.pos, format!("unknown {what} {}", arg.value)))
            }
        }
    }
    errors.into_result(found)
}

fn path_arg(n: &Node) -> Result<(PathBuf, madmail_config::Pos), Error> {
    let value = madmail_module::decode::single(n)?;
    Ok((relative_to_file(n, value, 0)?, n.arg_pos(0).clone()))
}

/// `root_ca PATH...`: PEM files of trusted roots, replacing the system's (as maddy).
fn root_ca(n: &Node) -> Result<RootCertStore, Errors> {
    madmail_module::decode::no_block(n)?;
    if n.args.is_empty() {
        return Err(Errors::at(&n.pos, "root_ca needs at least one file"));
    }
    let mut errors = Errors::new();
    let mut roots = RootCertStore::empty();
    for (i, arg) in n.args.iter().enumerate() {
        let path = match relative_to_file(n, arg, i) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let certs = match CertificateDer::pem_file_iter(&path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        {
            Ok(c) => c,
            Err(e) => {
                errors.push(Error::at(
                    &arg.pos,
                    format!("root_ca: {}: {e}", path.display()),
                ));
                continue;
            }
        };
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            errors.push(Error::at(
                &arg.pos,
                format!("root_ca: no certificates loaded from {}", path.display()),
            ));
        }
    }
    errors.into_result(roots)
}

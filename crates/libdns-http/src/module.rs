//! The module side of an HTTP provider: what every `libdns.<provider>` build function does
//! besides reading its credentials.

use std::sync::Arc;

use madmail_config::Error;
use madmail_dns::DnsProvider;
use madmail_module::{Block, Built, Capabilities, Ctx, Definition, Errors};

use crate::HttpOptions;

/// The provider's API: its public base URL, and names `endpoint` accepts for other URLs (OVH's
/// regions).
#[derive(Debug, Clone, Copy)]
pub struct ApiEndpoint<'a> {
    pub default: &'a str,
    pub aliases: &'a [(&'a str, &'a str)],
}

impl<'a> From<&'a str> for ApiEndpoint<'a> {
    fn from(default: &'a str) -> ApiEndpoint<'a> {
        ApiEndpoint {
            default,
            aliases: &[],
        }
    }
}

/// Builds a `libdns.<provider>` module: refuses arguments, lets `credentials` decode the
/// provider's own directives from the block (returning `None` when one is missing or invalid,
/// its error being recorded in the block), decodes `endpoint`, `timeout` and `retries`, reports
/// every error of the block at once, then makes the provider with `make` and offers it as
/// `dyn DnsProvider`.
pub fn build_provider<'a, C, P>(
    def: &Definition<'_>,
    ctx: &mut Ctx<'_>,
    endpoint: impl Into<ApiEndpoint<'a>>,
    credentials: impl FnOnce(&mut Block<'_>) -> Option<C>,
    make: impl FnOnce(C, HttpOptions) -> Result<P, String>,
) -> Result<Built, Errors>
where
    P: DnsProvider + 'static,
{
    let endpoint = endpoint.into();
    let mut errors = Errors::new();
    if let Some(extra) = def.args.first() {
        errors.push(Error::at(
            &extra.pos,
            format!("{} takes no arguments, only a block", def.module),
        ));
    }
    let mut block = Block::new(def.node, ctx.globals());
    let credentials = credentials(&mut block);
    let options = HttpOptions::decode_with_aliases(&mut block, endpoint.default, endpoint.aliases);
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    // Missing credentials were reported by the block; an empty error list cannot happen.
    let credentials = credentials.ok_or_else(|| {
        Errors::at(
            &def.node.pos,
            format!("{}: credentials missing", def.module),
        )
    })?;
    let provider = make(credentials, options)
        .map_err(|e| Errors::at(&def.node.pos, format!("{}: {e}", def.module)))?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(Arc::new(provider)),
    ))
}

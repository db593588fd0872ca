//! Building `libdns.rfc2136` from configuration text the way the ACME loader does: a module
//! with a `dns PROVIDER { ... }` directive resolved in the `libdns` namespace.

use std::sync::Arc;

use madmail_dns::DnsProvider;
use madmail_module::testing::{error_lines, load_str};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};

/// `dns_user ADDR { dns ... }`: an endpoint that only resolves its `dns` directive and offers
/// the provider it got.
fn build_user(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let dns = block.all("dns");
    block.finish()?;
    let node = dns
        .first()
        .ok_or_else(|| Errors::at(&def.node.pos, "dns is required"))?;
    let provider = ctx.module_from::<dyn DnsProvider>(node, 0, "libdns")?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(provider),
    ))
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    madmail_libdns_rfc2136::register(&mut registry);
    registry.register(ModuleSpec {
        name: "dns_user",
        kind: Kind::Endpoint,
        build: build_user,
        summary: "test consumer of a DNS provider",
    });
    registry
}

/// The provider configured by `config`, the full text of a configuration whose one endpoint
/// is `dns_user`; or its errors as `LINE:COL: message`.
pub fn provider_from(config: &str) -> Result<Arc<dyn DnsProvider>, Vec<String>> {
    let loaded = load_str(&registry(), config).map_err(error_lines)?;
    let endpoint = loaded.endpoints.first().expect("one endpoint");
    Ok(endpoint
        .caps
        .get::<dyn DnsProvider>()
        .expect("a DNS provider"))
}

/// The provider of `dns rfc2136 { BLOCK }`.
pub fn rfc2136(block: &str) -> Result<Arc<dyn DnsProvider>, Vec<String>> {
    provider_from(&format!(
        "dns_user tcp://127.0.0.1:1 {{\n    dns rfc2136 {{\n{block}\n    }}\n}}\n"
    ))
}

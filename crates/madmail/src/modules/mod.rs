//! The modules compiled into this binary. Optional ones (behind cargo features) are declared as
//! not compiled when their feature is off, so configs naming them get a precise error.

use madmail_module::Registry;

mod dummy;

pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(dummy::SPEC);
    madmail_tls::register(&mut registry);
    madmail_table::register(&mut registry);
    madmail_auth::register(&mut registry);
    madmail_pipeline::register(&mut registry);
    madmail_target::register(&mut registry);
    madmail_smtp::register(&mut registry);
    madmail_acme::register(&mut registry);
    dns_providers(&mut registry);
    registry
}

/// DNS providers, each behind its cargo feature; a left-out one is declared so a config naming
/// it is told which feature to build with.
fn dns_providers(registry: &mut Registry) {
    #[cfg(feature = "libdns_rfc2136")]
    madmail_libdns_rfc2136::register(registry);
    #[cfg(not(feature = "libdns_rfc2136"))]
    registry.not_compiled("libdns.rfc2136", "libdns_rfc2136");
}

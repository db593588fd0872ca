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
    madmail_openmetrics::register(&mut registry);
    madmail_acme::register(&mut registry);
    dns_providers(&mut registry);
    registry
}

/// Declares the DNS providers: each `FEATURE => MODULE, CRATE` is registered from its crate
/// when the cargo feature is on, and declared as not compiled (naming the feature) when off.
macro_rules! dns_providers {
    ($($feature:literal => $module:literal, $krate:ident;)*) => {
        /// DNS providers, each behind its cargo feature.
        fn dns_providers(registry: &mut Registry) {
            $(
                #[cfg(feature = $feature)]
                $krate::register(registry);
                #[cfg(not(feature = $feature))]
                registry.not_compiled($module, $feature);
            )*
        }
    };
}

dns_providers! {
    "libdns_acmedns" => "libdns.acmedns", madmail_libdns_acmedns;
    "libdns_alidns" => "libdns.alidns", madmail_libdns_alidns;
    "libdns_cloudflare" => "libdns.cloudflare", madmail_libdns_cloudflare;
    "libdns_desec" => "libdns.desec", madmail_libdns_desec;
    "libdns_digitalocean" => "libdns.digitalocean", madmail_libdns_digitalocean;
    "libdns_gandi" => "libdns.gandi", madmail_libdns_gandi;
    "libdns_gcore" => "libdns.gcore", madmail_libdns_gcore;
    "libdns_googleclouddns" => "libdns.googleclouddns", madmail_libdns_googleclouddns;
    "libdns_hetzner" => "libdns.hetzner", madmail_libdns_hetzner;
    "libdns_leaseweb" => "libdns.leaseweb", madmail_libdns_leaseweb;
    "libdns_linode" => "libdns.linode", madmail_libdns_linode;
    "libdns_metaname" => "libdns.metaname", madmail_libdns_metaname;
    "libdns_namecheap" => "libdns.namecheap", madmail_libdns_namecheap;
    "libdns_namedotcom" => "libdns.namedotcom", madmail_libdns_namedotcom;
    "libdns_ovh" => "libdns.ovh", madmail_libdns_ovh;
    "libdns_porkbun" => "libdns.porkbun", madmail_libdns_porkbun;
    "libdns_powerdns" => "libdns.powerdns", madmail_libdns_powerdns;
    "libdns_rfc2136" => "libdns.rfc2136", madmail_libdns_rfc2136;
    "libdns_route53" => "libdns.route53", madmail_libdns_route53;
    "libdns_vultr" => "libdns.vultr", madmail_libdns_vultr;
}

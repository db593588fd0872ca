//! Module names maddy 0.9 registers. A config naming one that madmail lacks gets "not
//! implemented yet" instead of "unknown module", so operators bringing a maddy.conf know the
//! difference between a typo and a missing feature.

pub const MODULES: &[&str] = &[
    // endpoints
    "smtp", "submission", "lmtp", "imap", "openmetrics", "dovecot_sasld",
    // storage and targets
    "storage.imapsql", "storage.blob.fs", "storage.blob.s3", "target.remote", "target.queue",
    "target.smtp", "target.lmtp", "dummy",
    // checks
    "check.dkim", "check.spf", "check.dnsbl", "check.milter", "check.rspamd", "check.command",
    "check.authorize_sender", "check.require_mx_record", "check.require_matching_rdns",
    "check.require_tls",
    // modifiers
    "modify.dkim", "modify.replace_rcpt", "modify.replace_sender",
    // tables
    "table.static", "table.file", "table.regexp", "table.chain", "table.identity",
    "table.email_localpart", "table.email_localpart_optional", "table.email_with_domain",
    "table.sql_query", "table.sql_table", "table.auth",
    // authentication
    "auth.pass_table", "auth.external", "auth.pam", "auth.shadow", "auth.ldap", "auth.dovecot_sasl",
    "auth.plain_separate", "auth.netauth",
    // TLS and DNS
    "tls.loader.file", "tls.loader.acme", "tls.loader.self_signed", "mx_auth.dane",
    "mx_auth.mtasts", "mx_auth.local_policy", "libdns.alidns", "libdns.cloudflare",
    "libdns.digitalocean", "libdns.gandi", "libdns.gcore", "libdns.googleclouddns",
    "libdns.hetzner", "libdns.leaseweb", "libdns.metaname", "libdns.namecheap",
    "libdns.namedotcom", "libdns.route53", "libdns.vultr", "libdns.acmedns", "libdns.rfc2136",
    "libdns.inwx", "mx_auth.sts_preload", "mx_auth.dnssec",
    // stateless checks (registered without a prefix), groups and helpers
    "require_mx_record", "require_matching_rdns", "require_tls", "checks", "modifiers", "limits",
    "mx_auth", "msgpipeline", "imap.filter.command", "imap_filters", "target.imapsql",
];

/// maddy's global directives that madmail does not implement yet (legacy per-domain settings
/// and authentication mapping).
pub const GLOBALS: &[&str] =
    &["storage_perdomain", "auth_perdomain", "auth_domains", "auth_map_normalize", "auth_map"];

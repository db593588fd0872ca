//! The `tls.loader.acme` block: defaults, inheritance and every validation error with its
//! position. No network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{config_errors, load_config, loader};

fn with_endpoint(block: &str) -> String {
    format!(
        "tls.loader.acme acme {{\n{block}\n}}\ntest_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n"
    )
}

#[test]
fn defaults_and_inherited_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir {}\nhostname MX.Example.org\n{}",
        dir.path().display(),
        with_endpoint(
            "  agreed\n  challenge http-01\n  extra_names imap.example.org mx.example.org"
        )
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let cfg = acme.config();
    assert_eq!(cfg.names, ["mx.example.org", "imap.example.org"]);
    assert_eq!(cfg.store_path, dir.path().join("acme"));
    assert_eq!(cfg.ca, madmail_acme::LETS_ENCRYPT);
    assert_eq!(
        cfg.test_ca.as_deref(),
        Some(madmail_acme::LETS_ENCRYPT_STAGING)
    );
    assert_eq!(cfg.http_listen.to_string(), "tcp://0.0.0.0:80");
    assert_eq!(cfg.check_interval, std::time::Duration::from_secs(3600));
    assert_eq!(cfg.renewal_timeout, std::time::Duration::from_secs(300));
    assert_eq!(cfg.propagation_timeout, std::time::Duration::from_secs(120));
    assert_eq!(cfg.key_type, madmail_acme::KeyType::EcdsaP256);
    assert!(!cfg.reuse_key && !cfg.staging);
}

#[test]
fn test_ca_only_defaults_for_lets_encrypt() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_endpoint(
        "  hostname mx.example.org\n  agreed\n  challenge http-01\n  ca https://acme.zerossl.com/v2/DV90",
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    assert_eq!(loader(&loaded).config().test_ca, None);
}

#[test]
fn every_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_endpoint(
        "  hostname mx.example.org\n  challenge http-01 dns-99 http-01\n  challenge tls-alpn-01\n  ca http://ca.example.org/dir\n  key_type rsa1024\n  extra_names *.example.org bad_name!\n  eab kid\n  http_listen tls://0.0.0.0:80\n  resolvers :::\n  renewal_timeout 0\n  staging\n  ca_url x",
    );
    let errors = config_errors(dir.path(), &text);
    let expected = [
        "3:21: challenge: unknown challenge type \"dns-99\" (use dns-01, http-01 or tls-alpn-01)",
        "3:28: challenge: http-01 is listed twice",
        "4:3: duplicate directive challenge (first at ",
        "5:6: ca: \"http://ca.example.org/dir\": ACME needs https (plain http is accepted only on loopback addresses, for tests)",
        "6:12: key_type must be one of ecdsa-p256, ecdsa-p384, rsa2048, rsa4096, not \"rsa1024\"",
        "7:29: extra_names: \"bad_name!\" is not a DNS name a CA can issue for",
        "8:3: eab needs two values: eab KEY_ID HMAC_KEY (as the CA gives them)",
        "9:15: http_listen: http-01 is plain HTTP: use tcp://, not tls://",
        "10:13: resolvers: ",
        "11:3: renewal_timeout must be longer than 0",
        "13:3: unknown directive ca_url",
    ];
    for want in expected {
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errors:#?}"
        );
    }
    // The agreement is required.
    assert!(
        errors
            .iter()
            .any(|e| e.contains("the CA's terms of service must be accepted")),
        "{errors:#?}"
    );
}

#[test]
fn cross_directive_rules() {
    let dir = tempfile::tempdir().unwrap();
    let errors = config_errors(
        dir.path(),
        &with_endpoint(
            "  hostname mx.example.org\n  agreed\n  extra_names *.example.org\n  challenge http-01\n  override_domain x.example.net\n  tls_alpn_listen tcp://0.0.0.0:443",
        ),
    );
    for want in [
        "4:15: *.example.org: a wildcard name can only be validated with the dns-01 challenge",
        "6:3: override_domain is only used by the dns-01 challenge",
        "7:3: tls_alpn_listen is only used by the tls-alpn-01 challenge",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errors:#?}"
        );
    }
    let errors = config_errors(
        dir.path(),
        &with_endpoint("  hostname mx.example.org\n  agreed\n  challenge dns-01"),
    );
    assert!(
        errors
            .iter()
            .any(|e| e
                .starts_with("4:3: tls.loader.acme: the dns-01 challenge needs a DNS provider")),
        "{errors:#?}"
    );
    let errors = config_errors(
        dir.path(),
        &with_endpoint(
            "  hostname mx.example.org\n  agreed\n  challenge http-01\n  ca https://ca.example.net/dir\n  staging",
        ),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("6:3: staging uses test_ca as the CA, but there is none")),
        "{errors:#?}"
    );
    let errors = config_errors(dir.path(), &with_endpoint("  agreed\n  challenge http-01"));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("directive hostname is required")),
        "{errors:#?}"
    );
    let errors = config_errors(
        dir.path(),
        &with_endpoint("  hostname mx.example.org\n  agreed"),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("directive challenge is required")),
        "{errors:#?}"
    );
    let errors = config_errors(
        dir.path(),
        &with_endpoint("  hostname mx.example.org\n  agreed no\n  challenge http-01"),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("3:3: tls.loader.acme: the CA's terms")),
        "{errors:#?}"
    );
}

#[test]
fn trusted_roots_are_read_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let errors = config_errors(
        dir.path(),
        &with_endpoint(
            "  hostname mx.example.org\n  agreed\n  challenge http-01\n  trusted_roots missing.pem",
        ),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("5:17: trusted_roots: ") && e.contains("missing.pem")),
        "{errors:#?}"
    );
}

#[test]
fn notify_and_export_directives() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname mx.example.org\nstorage.maildir ops {{\n  root {maildir}\n}}\n{}",
        with_endpoint(
            "  agreed\n  challenge http-01\n  notify_before 2d 10d 2d\n  notify_to a@example.org b@example.org\n  notify_deliver_to &ops\n  notify_webhook https://hooks.example.org/cert\n  notify_webhook_secret k3y\n  notify_command /usr/local/bin/deploy --reload dovecot\n  notify_command_timeout 5s\n  export_path export\n  export_owner 0\n  export_group root"
        ),
        maildir = dir.path().join("maildir").display(),
    );
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let cfg = acme.config();
    let day = std::time::Duration::from_secs(86_400);
    // Largest first, duplicates gone.
    assert_eq!(cfg.notify.before, [day * 10, day * 2]);
    assert_eq!(cfg.notify.to, ["a@example.org", "b@example.org"]);
    assert!(cfg.notify.deliver_to.is_some());
    assert_eq!(cfg.notify.from, "postmaster@mx.example.org");
    assert_eq!(
        cfg.notify.webhook.as_deref(),
        Some("https://hooks.example.org/cert")
    );
    assert_eq!(cfg.notify.webhook_secret.as_deref(), Some(&b"k3y"[..]));
    assert!(!format!("{:?}", cfg.notify).contains("k3y"));
    assert_eq!(
        cfg.notify.command.as_deref().unwrap(),
        ["/usr/local/bin/deploy", "--reload", "dovecot"]
    );
    assert_eq!(
        cfg.notify.command_timeout,
        std::time::Duration::from_secs(5)
    );
    let export = cfg.export.as_ref().unwrap();
    assert_eq!(export.dir, dir.path().join("export"));
    assert_eq!((export.owner, export.group), (Some(0), Some(0)));

    // Defaults.
    let text = with_endpoint("  hostname mx.example.org\n  agreed\n  challenge http-01");
    let loaded = load_config(dir.path(), &text).unwrap();
    let acme = loader(&loaded);
    let cfg = acme.config();
    assert_eq!(cfg.notify.before, [30, 14, 7, 3, 1].map(|d| day * d));
    assert!(cfg.notify.to.is_empty() && cfg.notify.webhook.is_none());
    assert_eq!(
        cfg.notify.command_timeout,
        std::time::Duration::from_secs(60)
    );
    assert!(cfg.export.is_none());
}

#[test]
fn notify_and_export_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_endpoint(
        "  hostname mx.example.org\n  agreed\n  challenge http-01\n  notify_to ops\n  notify_webhook ftp://x/\n  notify_command deploy.sh\n  notify_before 0s\n  export_group no-such-group-here\n  notify_command_timeout 0s",
    );
    assert_eq!(
        config_errors(dir.path(), &text),
        [
            "5:13: notify_to: \"ops\" is not an email address",
            "6:18: notify_webhook: \"ftp://x/\": expected an http:// or https:// URL",
            "7:18: notify_command: \"deploy.sh\" must be an absolute path (the server's PATH is not the shell's)",
            "8:17: notify_before: a threshold must be longer than 0",
            "9:16: export_group: no \"no-such-group-here\" in /etc/group; give a number instead",
            "10:3: notify_command_timeout must be longer than 0",
        ]
    );
    let text = with_endpoint(
        "  hostname mx.example.org\n  agreed\n  challenge http-01\n  notify_to ops@example.org\n  export_owner 0\n  notify_webhook_secret x",
    );
    assert_eq!(
        config_errors(dir.path(), &text),
        [
            "5:3: notify_to needs notify_deliver_to &target: the delivery target notices go through (e.g. a target.smtp or storage block)",
            "6:3: export_owner is only used with export_path, which is not set",
            "7:3: notify_webhook_secret is only used with notify_webhook, which is not set",
        ]
    );
}

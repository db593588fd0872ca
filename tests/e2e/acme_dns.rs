//! dns-01 through the real binary with `libdns.cloudflare`: its `endpoint` points at a local
//! stand-in of the Cloudflare v4 API (the one the provider's own tests use), whose zone store
//! is mirrored into a real BIND 9 by RFC 2136 updates; Pebble's validators resolve through
//! that BIND 9. A wildcard + apex certificate is issued, served, and no `_acme-challenge`
//! record is left in either the API's store or the DNS.

use std::sync::Arc;

use madmail_libdns_http::testing::{FakeZones, MockApi, provider_block};

use crate::acme::pebble::{Pebble, PebbleOptions};
use crate::acme::{verified_serial_for, wait_until};
use crate::{Server, free_port, madmail, tempdir, text, write};

#[path = "../../crates/acme/tests/common/bind.rs"]
mod bind;
#[path = "../../crates/libdns-cloudflare/tests/standin/mod.rs"]
mod cloudflare;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_cloudflare_wildcard_and_apex_through_pebble() {
    crate::require_tool("command -v openssl", "openssl");
    let named = bind::Named::start().await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(named.addr().to_string()),
        ..PebbleOptions::default()
    })
    .await;

    // The API's store holds the zone; every TXT change also goes to BIND 9.
    let zones = FakeZones::new();
    zones.add_zone("other.test");
    zones.add_zone("example.test");
    let to_bind = provider_block(
        madmail_libdns_rfc2136::register,
        "rfc2136",
        &named.rfc2136_directives(bind::EXAMPLE_KEY),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    zones.mirror(Arc::clone(&to_bind), "example.test.");
    let api = {
        let zones = zones.clone();
        MockApi::start(move |request| cloudflare::handle(&zones, request)).await
    };

    let dir = tempdir();
    let root = write(dir.path(), "pebble-root.pem", &pebble.issuing_root().await);
    let smtp_port = free_port();
    let conf = write(
        dir.path(),
        "madmail.conf",
        &format!(
            "hostname mail.example.test\nstate_dir state\nruntime_dir run\n\
             tls.loader.acme local_tls {{\n    email admin@example.test\n    agreed\n    ca {ca}\n    trusted_roots {roots}\n\
             \x20   hostname example.test\n    extra_names *.example.test\n    challenge dns-01\n\
             \x20   dns cloudflare {{\n        api_token {token}\n        endpoint {endpoint}\n    }}\n\
             \x20   propagation_timeout 20s\n    resolvers 127.0.0.1:{dns_port}\n}}\n\
             tls &local_tls\n\
             smtp tcp://127.0.0.1:{smtp_port} {{\n    destination example.test {{\n        deliver_to dummy\n    }}\n    default_destination {{\n        reject\n    }}\n}}\n",
            ca = pebble.directory_url,
            roots = pebble.api_ca_file().display(),
            token = cloudflare::TOKEN,
            endpoint = api.url("client/v4"),
            dns_port = named.port,
        ),
    );
    let mut cmd = madmail();
    cmd.arg("--config").arg(&conf).arg("run");
    let mut server = tokio::task::block_in_place(|| {
        let mut server = Server::start(cmd);
        server.wait_for("server started");
        server
    });

    // One certificate for the apex and the wildcard, served for both, verified by Pebble's root.
    let apex = tokio::task::block_in_place(|| {
        wait_until("a verified certificate for example.test", || {
            verified_serial_for(smtp_port, &root, "example.test")
        })
    });
    let wildcard = tokio::task::block_in_place(|| {
        verified_serial_for(smtp_port, &root, "anything.example.test")
    });
    assert_eq!(wildcard.as_deref(), Some(apex.as_str()));

    // Both values went through the API, with the token, into BIND 9; none is left anywhere.
    let requests = api.requests();
    let creates: Vec<serde_json::Value> = requests
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json())
        .collect();
    assert_eq!(creates.len(), 2, "{creates:#?}");
    for create in &creates {
        assert_eq!(create["name"], "_acme-challenge.example.test");
        assert_eq!(create["type"], "TXT");
    }
    assert_ne!(creates[0]["content"], creates[1]["content"]);
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {}", cloudflare::TOKEN)))
    );
    // Clean-up follows validation; give it a moment.
    tokio::task::block_in_place(|| {
        wait_until("the challenge records to be removed", || {
            zones
                .txt_values("_acme-challenge.example.test")
                .is_empty()
                .then_some(())
        })
    });
    assert_eq!(
        named.txt("_acme-challenge.example.test.").await,
        Vec::<String>::new()
    );
    let log = named.log();
    assert_eq!(
        log.matches("adding an RR at '_acme-challenge.example.test' TXT")
            .count(),
        2,
        "{log}"
    );

    let info = tokio::task::block_in_place(|| {
        madmail()
            .arg("--config")
            .arg(&conf)
            .args(["cert", "info", "--json"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let certs: serde_json::Value = serde_json::from_slice(&info.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&info.stdout)));
    assert_eq!(
        certs[0]["names"],
        serde_json::json!(["example.test", "*.example.test"])
    );
    server.signal("TERM");
    assert_eq!(tokio::task::block_in_place(|| server.wait_exit()), Some(0));
}

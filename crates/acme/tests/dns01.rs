//! dns-01 against a real Pebble, with pebble-challtestsrv as the DNS server and a small test
//! provider (`libdns.challtestsrv`) publishing TXT records through its management API. A
//! wildcard and its apex share one certificate and one `_acme-challenge` name (two values,
//! appended); no record remains afterwards. Needs `apt-get install -y pebble`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::pebble::{Pebble, PebbleOptions};
use common::*;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Running,
};
use madmail_tls::CertificateSource;

/// TXT values by name, as published; shared with the test through a global (a module is
/// built by the framework, not by the test).
type Published = Vec<(String, HashMap<String, Vec<String>>)>;
static PUBLISHED: Mutex<Published> = Mutex::new(Vec::new());

struct Challtestsrv {
    management: String,
    values: Mutex<HashMap<String, Vec<String>>>,
}

impl Challtestsrv {
    fn snapshot(&self) {
        let values = self.values.lock().unwrap().clone();
        let mut published = PUBLISHED.lock().unwrap();
        published.retain(|(m, _)| *m != self.management);
        published.push((self.management.clone(), values));
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), DnsError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fail = |message: String| DnsError::Failed {
            provider: "challtestsrv".into(),
            zone: String::new(),
            operation: path.into(),
            message,
        };
        let body = body.to_string();
        let mut tcp = tokio::net::TcpStream::connect(&self.management)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer).await;
        if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(fail(answer))
        }
    }
}

#[async_trait]
impl DnsProvider for Challtestsrv {
    fn name(&self) -> &str {
        "challtestsrv"
    }

    async fn zone_for(&self, _fqdn: &str) -> Result<String, DnsError> {
        Ok("example.test.".into())
    }

    async fn append(&self, _zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        self.post(
            "/set-txt",
            serde_json::json!({"host": record.fqdn, "value": record.value}),
        )
        .await?;
        self.values
            .lock()
            .unwrap()
            .entry(record.fqdn.clone())
            .or_default()
            .push(record.value.clone());
        self.snapshot();
        Ok(())
    }

    async fn delete(&self, _zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        // challtestsrv can only clear a name: clear it, then put the other values back.
        let rest: Vec<String> = {
            let mut values = self.values.lock().unwrap();
            let list = values.entry(record.fqdn.clone()).or_default();
            list.retain(|v| *v != record.value);
            let rest = list.clone();
            if rest.is_empty() {
                values.remove(&record.fqdn);
            }
            rest
        };
        self.post("/clear-txt", serde_json::json!({"host": record.fqdn}))
            .await?;
        for value in rest {
            self.post(
                "/set-txt",
                serde_json::json!({"host": record.fqdn, "value": value}),
            )
            .await?;
        }
        self.snapshot();
        Ok(())
    }
}

fn build_provider(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let management = block.string("management").required();
    block.finish()?;
    let provider: Arc<dyn DnsProvider> = Arc::new(Challtestsrv {
        management: management.unwrap_or_default(),
        values: Mutex::new(HashMap::new()),
    });
    Ok(Built::new(
        Capabilities::new().with::<dyn DnsProvider>(provider),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_apex_share_one_certificate() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir {state}\nruntime_dir {run}\nhostname mx.example.test\n\
         tls.loader.acme acme {{\n agreed\n ca {ca}\n trusted_roots {roots}\n\
          extra_names *.example.test example.test\n challenge dns-01\n\
          dns challtestsrv {{\n  management {mgmt}\n }}\n resolvers {dns}\n propagation_timeout 20s\n}}\n\
         test_tls tcp://127.0.0.1:1 {{\n  tls &acme\n}}\n",
        state = dir.path().join("state").display(),
        run = dir.path().join("run").display(),
        ca = pebble.directory_url,
        roots = pebble.api_ca_file().display(),
        mgmt = pebble.dns_management,
        dns = pebble.dns,
    );
    let mut registry = registry();
    registry.register(ModuleSpec {
        name: "libdns.challtestsrv",
        kind: Kind::Named,
        build: build_provider,
        summary: "test DNS provider",
    });
    let nodes = madmail_config::parse_str(
        &dir.path().join("test.conf"),
        &text,
        &madmail_config::Environment::empty(),
    )
    .unwrap();
    let loaded = madmail_module::load(&registry, &nodes).unwrap();
    let acme = loader(&loaded);
    let server = tls_server(acme.resolver()).await;
    let mut running = Running::start(&loaded.instances).await.unwrap();
    let statuses = wait_valid(&acme).await;
    assert_eq!(statuses.len(), 2, "{statuses:#?}");
    let pair = statuses
        .iter()
        .find(|s| s.names == ["example.test", "*.example.test"])
        .unwrap();
    let root = pebble.issuing_root().await;
    let serial = pair.serial.clone().unwrap();
    assert_eq!(
        served_serial(server, "example.test", &root).await.unwrap(),
        serial
    );
    assert_eq!(
        served_serial(server, "imap.example.test", &root)
            .await
            .unwrap(),
        serial
    );
    assert_ne!(
        served_serial(server, "mx.example.test", &root)
            .await
            .unwrap(),
        serial,
        "mx has its own certificate"
    );
    // Every TXT record withdrawn.
    let published = PUBLISHED.lock().unwrap().clone();
    let ours = published
        .iter()
        .find(|(m, _)| *m == pebble.dns_management)
        .unwrap();
    assert!(ours.1.is_empty(), "left behind: {:?}", ours.1);
    running.stop().await;
}

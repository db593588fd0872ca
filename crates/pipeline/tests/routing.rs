//! Pipelines built from configuration text, driven through the DeliveryTarget interface with
//! recording targets and an in-memory table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use madmail_config::{Environment, parse_str};
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::table::{Table, TableError};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry, load,
};

/// What every recording target received: (target label, sender, recipients, body).
type Log = Arc<Mutex<Vec<(String, String, Vec<String>, Vec<u8>)>>>;

static LOG: Mutex<Option<Log>> = Mutex::new(None);

fn log() -> Log {
    LOG.lock()
        .unwrap()
        .get_or_insert_with(Default::default)
        .clone()
}

struct Recorder {
    label: String,
    relays: bool,
    log: Log,
}

struct RecordedDelivery {
    label: String,
    sender: String,
    rcpts: Vec<String>,
    body: Vec<u8>,
    log: Log,
}

#[async_trait]
impl DeliveryTarget for Recorder {
    async fn start(&self, env: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        Ok(Box::new(RecordedDelivery {
            label: self.label.clone(),
            sender: env.mail_from.clone(),
            rcpts: Vec::new(),
            body: Vec::new(),
            log: self.log.clone(),
        }))
    }
    fn relays(&self) -> bool {
        self.relays
    }
}

#[async_trait]
impl Delivery for RecordedDelivery {
    async fn add_rcpt(&mut self, rcpt: &str) -> Result<(), DeliveryError> {
        self.rcpts.push(rcpt.to_owned());
        Ok(())
    }
    async fn body(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        self.body = message.to_vec();
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), DeliveryError> {
        self.log
            .lock()
            .unwrap()
            .push((self.label, self.sender, self.rcpts, self.body));
        Ok(())
    }
    async fn abort(self: Box<Self>) {}
}

/// `target.rec NAME {}` / `target.relay NAME {}`: recording targets.
fn build_rec(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    Block::new(def.node, ctx.globals()).finish()?;
    let t = Recorder {
        label: def.label(),
        relays: def.module == "target.relay",
        log: log(),
    };
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(Arc::new(t)),
    ))
}

struct MemTable(HashMap<String, Vec<String>>);

#[async_trait]
impl Table for MemTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.0.get(key).and_then(|v| v.first().cloned()))
    }
    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        Ok(self.0.get(key).cloned().unwrap_or_default())
    }
}

/// `table.mem { entry KEY VALUE... }`.
fn build_mem(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let entries = block.all("entry");
    block.finish()?;
    let map = entries
        .iter()
        .map(|e| {
            let v = e.arg_values();
            (
                v[0].to_owned(),
                v[1..].iter().map(|s| (*s).to_owned()).collect(),
            )
        })
        .collect();
    Ok(Built::new(
        Capabilities::new().with::<dyn Table>(Arc::new(MemTable(map))),
    ))
}

/// `test_endpoint { [mx] pipeline... }` builds a pipeline and exposes it as a target.
fn build_endpoint(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let mx = block.flag("mx").default(false);
    let (rest, errors) = block.finish_with_rest();
    errors.into_result(())?;
    let p = madmail_pipeline::build(
        def.node,
        &rest,
        madmail_pipeline::Options {
            explicit_relay_only: mx,
        },
        ctx,
    )?;
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(p),
    ))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_pipeline::register(&mut r);
    for name in ["target.rec", "target.relay"] {
        r.register(ModuleSpec {
            name,
            kind: Kind::Named,
            build: build_rec,
            summary: "",
        });
    }
    r.register(ModuleSpec {
        name: "table.mem",
        kind: Kind::Named,
        build: build_mem,
        summary: "",
    });
    r.register(ModuleSpec {
        name: "test_endpoint",
        kind: Kind::Endpoint,
        build: build_endpoint,
        summary: "",
    });
    r
}

fn pipeline(text: &str) -> Result<Arc<dyn DeliveryTarget>, Vec<String>> {
    let nodes = parse_str("p.conf".as_ref(), text, &Environment::empty())
        .map_err(|e| vec![e.to_string()])?;
    let loaded = load(&registry(), &nodes).map_err(|e| {
        e.into_sorted()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    })?;
    Ok(loaded.endpoints[0]
        .caps
        .get::<dyn DeliveryTarget>()
        .unwrap())
}

/// Sends one message; returns per-recipient results and what the targets committed.
async fn send(
    p: &Arc<dyn DeliveryTarget>,
    from: &str,
    rcpts: &[&str],
) -> (
    Result<Vec<Result<(), String>>, String>,
    Vec<(String, String, Vec<String>, Vec<u8>)>,
) {
    log().lock().unwrap().clear();
    let env = Envelope {
        id: "t1".into(),
        mail_from: from.into(),
        ..Envelope::default()
    };
    let mut d = match p.start(&env).await {
        Ok(d) => d,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let mut results = Vec::new();
    for r in rcpts {
        results.push(d.add_rcpt(r).await.map_err(|e| e.to_string()));
    }
    d.body(b"Subject: t\r\n\r\nbody\r\n").await.unwrap();
    d.commit().await.unwrap();
    let mut committed = log().lock().unwrap().clone();
    committed.sort();
    (Ok(results), committed)
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MADDY_DEFAULT: &str = r#"
$(local_domains) = example.org example.net
target.rec local_routing { }
test_endpoint {
    mx
    source $(local_domains) {
        reject 501 5.1.8 "Use Submission for outgoing SMTP"
    }
    default_source {
        destination postmaster $(local_domains) {
            deliver_to &local_routing
        }
        default_destination {
            reject 550 5.1.1 "User doesn't exist"
        }
    }
}
"#;

#[tokio::test]
async fn maddy_default_mx_routing() {
    let _g = SERIAL.lock().await;
    let p = pipeline(MADDY_DEFAULT).unwrap();
    let (res, committed) = send(
        &p,
        "someone@remote.test",
        &["A@Example.org", "postmaster", "b@elsewhere.test"],
    )
    .await;
    assert_eq!(
        res.unwrap(),
        [Ok(()), Ok(()), Err("550 5.1.1 User doesn't exist".into())]
    );
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].0, "local_routing");
    assert_eq!(committed[0].2, ["A@Example.org", "postmaster"]);
    assert_eq!(committed[0].3, b"Subject: t\r\n\r\nbody\r\n");
    // Local senders are refused at MAIL FROM.
    let (res, _) = send(&p, "me@example.net", &["a@example.org"]).await;
    assert_eq!(
        res.unwrap_err(),
        "501 5.1.8 Use Submission for outgoing SMTP"
    );
}

#[tokio::test]
async fn each_target_sees_only_its_recipients() {
    let _g = SERIAL.lock().await;
    let p = pipeline(
        "test_endpoint {\n destination a.test {\n  deliver_to rec\n }\n destination b.test c@c.test {\n  deliver_to rec\n  deliver_to &other\n }\n default_destination {\n  reject\n }\n}\ntarget.rec other { }\n",
    )
    .unwrap();
    let (res, committed) = send(&p, "", &["x@a.test", "y@b.test", "c@C.test", "d@d.test"]).await;
    assert_eq!(
        res.unwrap(),
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Err("554 5.7.0 message is rejected due to policy reasons".into())
        ]
    );
    let summary: Vec<(String, Vec<String>)> = committed.into_iter().map(|c| (c.0, c.2)).collect();
    assert_eq!(
        summary,
        [
            (
                "other".to_owned(),
                vec!["y@b.test".to_owned(), "c@C.test".to_owned()]
            ),
            ("target.rec".to_owned(), vec!["x@a.test".to_owned()]),
            (
                "target.rec".to_owned(),
                vec!["y@b.test".to_owned(), "c@C.test".to_owned()]
            ),
        ]
    );
}

#[tokio::test]
async fn aliases_and_sender_rewriting() {
    let _g = SERIAL.lock().await;
    let p = pipeline(
        "test_endpoint {\n modify {\n  replace_rcpt mem {\n   entry list@example.org a@example.org b@example.org\n   entry cat dog\n  }\n  replace_sender &senders\n }\n deliver_to rec\n}\ntable.mem senders {\n entry old@example.org new@example.org\n}\n",
    )
    .unwrap();
    let (res, committed) = send(
        &p,
        "Old@Example.org",
        &["List@example.org", "cat@example.net", "keep@example.org"],
    )
    .await;
    assert_eq!(res.unwrap(), [Ok(()), Ok(()), Ok(())]);
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].1, "new@example.org");
    assert_eq!(
        committed[0].2,
        [
            "a@example.org",
            "b@example.org",
            "dog@example.net",
            "keep@example.org"
        ]
    );
}

#[tokio::test]
async fn mx_never_relays_without_an_explicit_destination() {
    let _g = SERIAL.lock().await;
    let open = pipeline("test_endpoint {\n mx\n deliver_to relay\n}\n").unwrap();
    let (res, committed) = send(&open, "a@remote.test", &["x@foreign.test"]).await;
    assert_eq!(res.unwrap(), [Err("550 5.7.1 relaying denied".into())]);
    assert!(committed.is_empty());

    // A backup MX that forwards one domain on purpose.
    let backup = pipeline(
        "test_endpoint {\n mx\n destination backup.test {\n  deliver_to relay\n }\n default_destination {\n  deliver_to relay\n }\n}\n",
    )
    .unwrap();
    let (res, _) = send(
        &backup,
        "a@remote.test",
        &["x@backup.test", "y@foreign.test"],
    )
    .await;
    assert_eq!(
        res.unwrap(),
        [Ok(()), Err("550 5.7.1 relaying denied".into())]
    );

    // Submission (not mx) may relay anywhere.
    let submission = pipeline("test_endpoint {\n deliver_to relay\n}\n").unwrap();
    let (res, _) = send(&submission, "me@example.org", &["x@foreign.test"]).await;
    assert_eq!(res.unwrap(), [Ok(())]);
}

#[tokio::test]
async fn reroute_routes_rewritten_addresses() {
    let _g = SERIAL.lock().await;
    let p = pipeline(
        "test_endpoint {\n mx\n destination example.org {\n  modify {\n   replace_rcpt mem {\n    entry fwd@example.org someone@remote.test\n   }\n  }\n  reroute {\n   destination example.org {\n    deliver_to &local\n   }\n   default_destination {\n    deliver_to relay\n   }\n  }\n }\n default_destination {\n  reject 550 5.7.1 \"not local\"\n }\n}\ntarget.rec local { }\n",
    )
    .unwrap();
    let (res, committed) = send(
        &p,
        "a@remote.test",
        &["fwd@example.org", "me@example.org", "x@other.test"],
    )
    .await;
    // The alias leads out through the reroute's default_destination: not explicit on an MX.
    assert_eq!(
        res.unwrap(),
        [
            Err("550 5.7.1 relaying denied".into()),
            Ok(()),
            Err("550 5.7.1 not local".into())
        ]
    );
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].2, ["me@example.org"]);
}

#[tokio::test]
async fn destination_in_table_and_named_pipeline() {
    let _g = SERIAL.lock().await;
    let p = pipeline(
        "table.mem users {\n entry a@example.org 1\n}\nmsgpipeline local_routing {\n destination_in &users {\n  deliver_to rec\n }\n default_destination {\n  reject 550 5.1.1 \"no such user\"\n }\n}\ntest_endpoint {\n deliver_to &local_routing\n}\n",
    )
    .unwrap();
    let (res, committed) = send(&p, "x@remote.test", &["A@example.org", "b@example.org"]).await;
    assert_eq!(res.unwrap(), [Ok(()), Err("550 5.1.1 no such user".into())]);
    assert_eq!(committed[0].2, ["A@example.org"]);
}

#[test]
fn configuration_errors() {
    let errs = |text: &str| {
        pipeline(text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
    };
    assert_eq!(
        errs("test_endpoint {\n destination a.test {\n  deliver_to rec\n }\n deliver_to rec\n}\n"),
        [
            "p.conf:1:1: destination rules need a default_destination block for other recipients",
            "p.conf:5:2: deliver_to, reject and reroute can't stand beside source/destination rules (rules start at p.conf:2:2)",
        ]
    );
    assert_eq!(
        errs(
            "test_endpoint {\n destination a.test {\n  source b.test {\n   reject\n  }\n  reject 999\n }\n default_destination {\n  reject 450 5.1.1\n }\n}\n"
        ),
        [
            "p.conf:3:3: source can't be used inside a destination block",
            "p.conf:6:10: reject needs a 4xx or 5xx code",
            "p.conf:9:14: invalid enhanced status code \"5.1.1\" for 450",
        ]
    );
    assert_eq!(
        errs(
            "test_endpoint {\n check {\n  spf\n }\n destination a.test A.test {\n  reject\n }\n default_destination {\n  deliver_to rec\n }\n}\n"
        ),
        [
            "p.conf:3:3: check.spf is a maddy module that madmail does not implement yet",
            "p.conf:5:21: rule A.test is already used at p.conf:5:14",
        ]
    );
    assert_eq!(
        errs("test_endpoint {\n}\n"),
        ["p.conf:1:1: no deliver_to, reject or routing rules: messages would go nowhere"]
    );
    assert_eq!(
        errs("test_endpoint {\n deliver_to &nope\n}\n"),
        ["p.conf:2:13: unknown instance &nope"]
    );
}

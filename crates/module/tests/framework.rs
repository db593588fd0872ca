//! The module framework end to end, with small test modules: registration and lookup errors,
//! instances and references, lazy initialisation order, lifecycle order, directive decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madmail_module::delivery::{Delivery, DeliveryError, DeliveryTarget, Envelope};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, Loaded, ModuleSpec,
    Registry, Running,
};

/// Every test module records what happens to it here, as `event label`.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SERIAL: Mutex<()> = Mutex::new(());

fn record(event: String) {
    EVENTS.lock().unwrap_or_else(|e| e.into_inner()).push(event);
}

fn take_events() -> Vec<String> {
    std::mem::take(&mut *EVENTS.lock().unwrap_or_else(|e| e.into_inner()))
}

struct Recorder(String);

#[async_trait]
impl Lifecycle for Recorder {
    async fn start(&self) -> Result<(), String> {
        if self.0.contains("fail") {
            return Err("refused to start".into());
        }
        record(format!("start {}", self.0));
        Ok(())
    }
    async fn stop(&self) {
        record(format!("stop {}", self.0));
    }
}

struct NullTarget;

#[async_trait]
impl DeliveryTarget for NullTarget {
    async fn start(&self, _: &Envelope) -> Result<Box<dyn Delivery>, DeliveryError> {
        Err(DeliveryError::temporary("test target"))
    }
}

/// `target.test NAME { next &other; value 5 }`: a delivery target that may reference another.
fn build_target(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut block = Block::new(def.node, ctx.globals());
    let next: Vec<_> = block.all("next");
    let _value: Option<u32> = block.int("value").optional();
    let mut errors = block.finish().err().unwrap_or_default();
    for n in next {
        if let Err(e) = ctx.module_from::<dyn DeliveryTarget>(n, 0, "target") {
            errors.extend(e);
        }
    }
    errors.into_result(())?;
    record(format!("init {}", def.label()));
    let label = def.label();
    Ok(
        Built::new(Capabilities::new().with::<dyn DeliveryTarget>(Arc::new(NullTarget)))
            .with_lifecycle(Arc::new(Recorder(label))),
    )
}

/// `tls.loader.test NAME {}`: offers nothing but exists.
fn build_loader(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    Block::new(def.node, ctx.globals()).finish()?;
    record(format!("init {}", def.label()));
    Ok(Built::default())
}

/// `test_endpoint ADDR... { hostname; deliver_to ...; debug; timeout; size }`.
fn build_endpoint(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = Errors::new();
    for arg in def.args {
        if let Err(e) = madmail_module::values::listen_addr(arg) {
            errors.push(madmail_config::Error::at(&arg.pos, e));
        }
    }
    let mut block = Block::new(def.node, ctx.globals());
    let hostname = block.string("hostname").inherit().required();
    let debug = block.flag("debug").inherit().default(false);
    let timeout = block.duration("timeout").default(Duration::from_secs(60));
    let size = block.data_size("size").default(1024);
    let deliver_to = block.all("deliver_to");
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    for n in deliver_to {
        if let Err(e) = ctx.module_from::<dyn DeliveryTarget>(n, 0, "target") {
            errors.extend(e);
        }
    }
    errors.into_result(())?;
    record(format!(
        "init {} hostname={} debug={debug} timeout={timeout:?} size={size}",
        def.label(),
        hostname.unwrap_or_default()
    ));
    Ok(Built::default().with_lifecycle(Arc::new(Recorder(def.label()))))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(ModuleSpec {
        name: "target.test",
        kind: Kind::Named,
        build: build_target,
        summary: "test target",
    });
    r.register(ModuleSpec {
        name: "tls.loader.test",
        kind: Kind::Named,
        build: build_loader,
        summary: "test loader",
    });
    r.register(ModuleSpec {
        name: "test_endpoint",
        kind: Kind::Endpoint,
        build: build_endpoint,
        summary: "test endpoint",
    });
    r.not_compiled("libdns.route53", "libdns_route53");
    r
}

fn try_load(text: &str) -> Result<Loaded, Errors> {
    madmail_module::testing::load_str(&registry(), text)
}

/// The errors as `line:col: message` lines.
fn errors_of(text: &str) -> Vec<String> {
    match try_load(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => madmail_module::testing::error_lines(e),
    }
}

fn guard() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_events();
    g
}

#[test]
fn lazy_init_order_and_lifecycle_order() {
    let _g = guard();
    let loaded = try_load(
        "hostname mx.example.org\n\
         target.test unused_later b_alias {\n    next &c\n}\n\
         test_endpoint tcp://127.0.0.1:2525 {\n    deliver_to &b_alias\n}\n\
         target.test c { }\n\
         test_endpoint tls://[::1]:4650 {\n    deliver_to test {\n        value 3\n    }\n    deliver_to &c\n}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        take_events(),
        [
            "init c",
            "init unused_later",
            "init test_endpoint tcp://127.0.0.1:2525 hostname=mx.example.org debug=false timeout=60s size=1024",
            "init target.test",
            "init test_endpoint tls://[::1]:4650 hostname=mx.example.org debug=false timeout=60s size=1024",
        ]
    );
    assert_eq!(loaded.endpoints.len(), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let mut running = Running::start(&loaded.instances)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        running.stop().await;
    });
    assert_eq!(
        take_events(),
        [
            "start c",
            "start unused_later",
            "start test_endpoint tcp://127.0.0.1:2525",
            "start target.test",
            "start test_endpoint tls://[::1]:4650",
            "stop test_endpoint tls://[::1]:4650",
            "stop target.test",
            "stop test_endpoint tcp://127.0.0.1:2525",
            "stop unused_later",
            "stop c",
        ]
    );
}

#[test]
fn failed_start_stops_what_started() {
    let _g = guard();
    let loaded = try_load("hostname h\ntarget.test ok { }\ntarget.test fail { }\ntest_endpoint tcp://:25 {\n deliver_to &ok\n deliver_to &fail\n}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    take_events();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = rt
        .block_on(Running::start(&loaded.instances))
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.contains("fail") && err.contains("refused to start"),
        "{err}"
    );
    assert_eq!(take_events(), ["start ok", "stop ok"]);
}

#[test]
fn global_tls_reference_to_a_later_block() {
    let _g = guard();
    try_load("tls &later\nhostname h\ntls.loader.test later { }\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(take_events(), ["init later"]);
    // An inline loader in the global block resolves in the tls.loader namespace.
    try_load("tls test\n").unwrap_or_else(|e| panic!("{e}"));
    try_load("tls {\n loader test\n}\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(errors_of("tls &nope\n"), ["1:5: unknown instance &nope"]);
}

#[test]
fn module_lookup_errors() {
    let _g = guard();
    assert_eq!(
        errors_of("target.tset x { }\n"),
        ["1:1: unknown module target.tset; did you mean target.test?"]
    );
    assert_eq!(
        errors_of("storage.imapsql x { }\n"),
        ["1:1: storage.imapsql is a maddy module that madmail does not implement yet"]
    );
    assert_eq!(
        errors_of("hostname h\ntest_endpoint tcp://:25 {\n deliver_to frobnicate\n}\n"),
        ["3:13: unknown module frobnicate (looked for target.frobnicate, frobnicate)"]
    );
    assert_eq!(
        errors_of("libdns.route53 x { }\n"),
        [
            "1:1: libdns.route53 is not compiled into this build; rebuild with --features libdns_route53"
        ]
    );
    assert_eq!(
        errors_of("hostnme x\n"),
        ["1:1: unknown directive hostnme; did you mean hostname?"]
    );
    assert_eq!(
        errors_of("tls_loader_test x\n"),
        ["1:1: unknown directive tls_loader_test; did you mean tls.loader.test?"]
    );
    assert_eq!(
        errors_of("frobnicate x\n"),
        ["1:1: unknown directive frobnicate (not a global directive nor a module)"]
    );
}

#[test]
fn instance_errors() {
    let _g = guard();
    assert_eq!(
        errors_of(
            "target.test a b { }\ntarget.test b { }\ntest_endpoint tcp://:1 {\n hostname h\n deliver_to &a\n}\n"
        ),
        ["2:13: duplicate instance name b (first defined at test.conf:1:1)"]
    );
    assert_eq!(
        errors_of("target.test lonely { }\n"),
        ["1:1: target.test lonely is defined but never used; reference it as &lonely or remove it"]
    );
    assert_eq!(
        errors_of(
            "hostname h\ntarget.test a {\n next &b\n}\ntarget.test b {\n next &c\n}\ntarget.test c {\n next &a\n}\ntest_endpoint tcp://:1 {\n deliver_to &a\n}\n"
        ),
        ["9:7: reference cycle: a -> b -> c -> a"]
    );
    assert_eq!(
        errors_of(
            "hostname h\ntls.loader.test l { }\ntest_endpoint tcp://:1 {\n deliver_to &l\n}\n"
        ),
        ["4:13: &l is a tls.loader.test module, which can't be used as a delivery target"]
    );
    assert_eq!(
        errors_of("hostname h\ntest_endpoint tcp://:1 {\n deliver_to &missing\n}\n"),
        ["3:13: unknown instance &missing"]
    );
}

#[test]
fn directive_decoding_reports_every_error() {
    let _g = guard();
    assert_eq!(
        errors_of(
            "test_endpoint tcp://:1 tcp://[::1 udp://x:1 {\n debug maybe\n timeout 5\n size 3X\n size 4\n deliver_tto &x\n}\n"
        ),
        [
            "1:1: test_endpoint: directive hostname is required",
            "1:24: invalid address \"tcp://[::1\": missing ] after IPv6 address",
            "1:35: invalid address \"udp://x:1\": unknown scheme \"udp\" (use tcp, tls or unix)",
            "2:8: debug: expected yes or no, not \"maybe\"",
            "3:10: timeout: invalid duration \"5\": missing unit (ns, us, ms, s, m, h or d)",
            "4:7: size: invalid size \"3X\": unknown unit 'X' (use B, K, M or G)",
            "5:2: duplicate directive size (first at test.conf:4:2)",
            "6:2: unknown directive deliver_tto; did you mean deliver_to?",
        ]
    );
}

#[test]
fn inheritance_and_defaults() {
    let _g = guard();
    try_load("hostname global.example\ndebug\ntest_endpoint tcp://:1 {\n timeout 1h30m\n size 32M\n}\ntest_endpoint tcp://:2 {\n hostname local.example\n debug no\n}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        take_events(),
        [
            "init test_endpoint tcp://:1 hostname=global.example debug=true timeout=5400s size=33554432",
            "init test_endpoint tcp://:2 hostname=local.example debug=false timeout=60s size=1024",
        ]
    );
}

#[test]
fn one_place_in_the_config_is_one_instance() {
    let _g = guard();
    // The snippet's inline target is read by both endpoints but defined in one place.
    try_load("hostname h\n(common) {\n deliver_to test\n}\ntest_endpoint tcp://:1 {\n import common\n}\ntest_endpoint tcp://:2 {\n import common\n}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let inits: Vec<String> = take_events()
        .into_iter()
        .filter(|e| e.starts_with("init target.test"))
        .collect();
    assert_eq!(inits, ["init target.test"]);
}

/// `metered NAME {}`: registers a collector with the configuration's metrics when built.
fn build_metered(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    struct Named(String);
    impl madmail_module::metrics::Collector for Named {
        fn collect(&self, out: &mut madmail_module::metrics::MetricsWriter) {
            out.gauge("test_up", "Built instances.", &[("name", &self.0)], 1.0);
        }
    }
    Block::new(def.node, ctx.globals()).finish()?;
    ctx.globals().metrics.register(Arc::new(Named(def.label())));
    Ok(Built::new(
        Capabilities::new().with::<dyn DeliveryTarget>(Arc::new(NullTarget)),
    ))
}

#[test]
fn modules_register_collectors_with_a_fresh_metrics_per_load() {
    let _g = guard();
    let mut r = registry();
    r.register(ModuleSpec {
        name: "metered",
        kind: Kind::Named,
        build: build_metered,
        summary: "registers a collector",
    });
    let text = "hostname mx.example.org\n\
                metered m1 { }\n\
                test_endpoint tcp://127.0.0.1:2525 {\n    deliver_to &m1\n}\n";
    let first = madmail_module::testing::load_str(&r, text).unwrap();
    let second = madmail_module::testing::load_str(&r, text).unwrap();
    assert!(!Arc::ptr_eq(
        &first.globals.metrics,
        &second.globals.metrics
    ));
    let expected =
        "# HELP test_up Built instances.\n# TYPE test_up gauge\ntest_up{name=\"m1\"} 1\n";
    assert_eq!(first.globals.metrics.render(), expected);
    assert_eq!(second.globals.metrics.render(), expected);
}

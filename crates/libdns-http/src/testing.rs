//! For the providers' tests (cargo feature `testing`): a stand-in for a provider's HTTP API
//! ([`MockApi`]) that records every request and answers through a handler the test writes
//! after the provider's documentation, an in-memory zone store ([`FakeZones`]) those handlers
//! translate their API to, and [`check_provider`], the behaviour every provider must show
//! against its stand-in. A store can be mirrored into a real DNS server ([`FakeZones::mirror`])
//! so an ACME CA resolving through that server sees what the provider published.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure is a failed test

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_module::testing::{error_lines, load_str};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, ModuleSpec, Registry,
};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::names;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded (`/client/v4/zones`).
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// A header's value (`None` when absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON body (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body's `application/x-www-form-urlencoded` fields, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    /// The path's segments after `prefix` (`/v2/domains/x/records` after `/v2/` is
    /// `["domains", "x", "records"]`); `None` when the path does not start with it.
    pub fn segments_after(&self, prefix: &str) -> Option<Vec<String>> {
        let rest = self.path.strip_prefix(prefix)?;
        Some(
            rest.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// `METHOD /path` (with `?query`), for assertions on the sequence of calls.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// A reply of the stand-in.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    pub fn text(status: u16, content_type: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Request>>,
    faults: Mutex<VecDeque<Response>>,
    handler: Box<Handler>,
}

/// A local HTTP server standing in for a provider's API. Every request is recorded; queued
/// faults ([`MockApi::fail_next`]) answer first, then the handler does. Handlers run on a
/// blocking thread, so they may block (a mirrored [`FakeZones`] does).
pub struct MockApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockApi {
    /// Starts the stand-in on a free local port.
    pub async fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> MockApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            handler: Box::new(handler),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| serve(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockApi { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/` followed by `path`: the `endpoint` to configure.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// Every request so far, forgetting them.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut *lock(&self.shared.requests))
    }

    /// The next `times` requests get `response` instead of the handler's reply.
    pub fn fail_next(&self, times: usize, response: Response) {
        let mut faults = lock(&self.shared.faults);
        for _ in 0..times {
            faults.push_back(response.clone());
        }
    }
}

async fn serve(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = percent_decode(parts.uri.path());
    let recorded = Request {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    lock(&shared.requests).push(recorded.clone());
    let fault = lock(&shared.faults).pop_front();
    let reply = match fault {
        Some(reply) => reply,
        None => {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || (shared.handler)(&recorded))
                .await
                .unwrap_or_else(|_| Response::text(500, "text/plain", "stand-in handler panicked"))
        }
    };
    let mut response = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

fn percent_decode(path: &str) -> String {
    let mut bytes = Vec::with_capacity(path.len());
    let raw = path.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && path.is_char_boundary(i + 3)
            && let Ok(byte) = u8::from_str_radix(&path[i + 1..i + 3], 16)
        {
            bytes.push(byte);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A zone of the fake store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeZone {
    pub id: String,
    /// Lowercase, without a trailing dot.
    pub name: String,
}

/// A record of the fake store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: String,
    /// The zone's name (lowercase, no trailing dot).
    pub zone: String,
    /// The record's full name (lowercase, no trailing dot).
    pub name: String,
    pub rtype: String,
    /// TXT values unquoted.
    pub value: String,
    pub ttl: u64,
}

#[derive(Default)]
struct ZoneData {
    zones: Vec<FakeZone>,
    records: Vec<FakeRecord>,
    next_id: u64,
    mirror: Option<(Arc<dyn DnsProvider>, String, tokio::runtime::Handle)>,
}

/// The zones and records behind a stand-in, shared between its handler and the test.
#[derive(Clone, Default)]
pub struct FakeZones(Arc<Mutex<ZoneData>>);

/// How many filler zones and records [`FakeZones::standard`] adds, so that listings need
/// several pages with any provider's documented page size.
pub const FILLER: usize = 120;

impl FakeZones {
    /// An empty store.
    pub fn new() -> FakeZones {
        FakeZones::default()
    }

    /// The store [`check_provider`] expects: `example.org` and the delegated
    /// `sub.example.org` after [`FILLER`] other zones, [`FILLER`] A records in `example.org`
    /// before anything else, and a TXT value `pre-existing` at `_acme-challenge.example.org`
    /// that must survive every change.
    pub fn standard() -> FakeZones {
        let zones = FakeZones::new();
        for i in 0..FILLER {
            zones.add_zone(&format!("filler{i:03}.test"));
        }
        zones.add_zone("example.org");
        zones.add_zone("sub.example.org");
        for i in 0..FILLER {
            zones.add(
                "example.org",
                &format!("host{i:03}.example.org"),
                "A",
                "192.0.2.1",
                300,
            );
        }
        zones.add(
            "example.org",
            "_acme-challenge.example.org",
            "TXT",
            "pre-existing",
            300,
        );
        zones
    }

    /// Sends every TXT change made from now on also to `provider` (a real DNS server), under
    /// the zone `zone`. Changes must then come from stand-in handlers (blocking threads).
    pub fn mirror(&self, provider: Arc<dyn DnsProvider>, zone: &str) {
        let handle = tokio::runtime::Handle::current();
        lock(&self.0).mirror = Some((provider, zone.to_owned(), handle));
    }

    pub fn add_zone(&self, name: &str) -> FakeZone {
        let mut data = lock(&self.0);
        data.next_id += 1;
        let zone = FakeZone {
            id: format!("zone{:04}", data.next_id),
            name: names::bare(name),
        };
        data.zones.push(zone.clone());
        zone
    }

    pub fn zones(&self) -> Vec<FakeZone> {
        lock(&self.0).zones.clone()
    }

    pub fn zone_by_id(&self, id: &str) -> Option<FakeZone> {
        self.zones().into_iter().find(|z| z.id == id)
    }

    pub fn zone_by_name(&self, name: &str) -> Option<FakeZone> {
        let name = names::bare(name);
        self.zones().into_iter().find(|z| z.name == name)
    }

    /// Adds a record (names in any case, with or without a trailing dot).
    pub fn add(&self, zone: &str, name: &str, rtype: &str, value: &str, ttl: u64) -> FakeRecord {
        let mut data = lock(&self.0);
        data.next_id += 1;
        let record = FakeRecord {
            id: format!("rec{:06}", data.next_id),
            zone: names::bare(zone),
            name: names::bare(name),
            rtype: rtype.to_ascii_uppercase(),
            value: value.to_owned(),
            ttl,
        };
        data.records.push(record.clone());
        mirror(&data, &record, true);
        record
    }

    /// Removes the record with this id.
    pub fn remove(&self, id: &str) -> Option<FakeRecord> {
        let mut data = lock(&self.0);
        let index = data.records.iter().position(|r| r.id == id)?;
        let record = data.records.remove(index);
        mirror(&data, &record, false);
        Some(record)
    }

    /// Replaces the records of (`name`, `rtype`) by one per value (APIs with RRset semantics).
    pub fn set_rrset(&self, zone: &str, name: &str, rtype: &str, values: &[String], ttl: u64) {
        let existing: Vec<FakeRecord> = self
            .records_named(name)
            .into_iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .collect();
        for record in &existing {
            if !values.contains(&record.value) {
                self.remove(&record.id);
            }
        }
        for value in values {
            if !existing.iter().any(|r| &r.value == value) {
                self.add(zone, name, rtype, value, ttl);
            }
        }
    }

    pub fn records(&self) -> Vec<FakeRecord> {
        lock(&self.0).records.clone()
    }

    pub fn records_in(&self, zone: &str) -> Vec<FakeRecord> {
        let zone = names::bare(zone);
        self.records()
            .into_iter()
            .filter(|r| r.zone == zone)
            .collect()
    }

    pub fn records_named(&self, name: &str) -> Vec<FakeRecord> {
        let name = names::bare(name);
        self.records()
            .into_iter()
            .filter(|r| r.name == name)
            .collect()
    }

    pub fn record(&self, id: &str) -> Option<FakeRecord> {
        self.records().into_iter().find(|r| r.id == id)
    }

    /// The TXT values at `name`, sorted.
    pub fn txt_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .records_named(name)
            .into_iter()
            .filter(|r| r.rtype == "TXT")
            .map(|r| r.value)
            .collect();
        values.sort();
        values
    }
}

fn mirror(data: &ZoneData, record: &FakeRecord, add: bool) {
    let Some((provider, zone, handle)) = &data.mirror else {
        return;
    };
    if record.rtype != "TXT" {
        return;
    }
    let txt = TxtRecord {
        fqdn: format!("{}.", record.name),
        value: record.value.clone(),
        ttl: Duration::from_secs(record.ttl),
    };
    let result = if add {
        handle.block_on(provider.append(zone, &txt))
    } else {
        handle.block_on(provider.delete(zone, &txt))
    };
    if let Err(e) = result {
        panic!("mirroring {txt:?} into the real DNS server: {e}");
    }
}

/// What [`check_provider`] may expect of a provider.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The provider lists its zones (and so reports a name outside all of them as
    /// [`DnsError::NoZone`]); providers finding zones through DNS cannot.
    pub lists_zones: bool,
    /// The TTL the provider is asked for: some APIs have a minimum.
    pub ttl: u64,
}

impl Default for Expect {
    fn default() -> Expect {
        Expect {
            lists_zones: true,
            ttl: 120,
        }
    }
}

/// What every provider must do against its stand-in backed by [`FakeZones::standard`]: find
/// the longest zone (through paginated listings), put two values on one name next to a
/// value that was there before, remove exactly the values it added, accept removing a value
/// that is gone, and leave every other record alone.
pub async fn check_provider(provider: &dyn DnsProvider, zones: &FakeZones, expect: Expect) {
    let before: Vec<FakeRecord> = zones.records();
    let name = "_acme-challenge.example.org.";

    assert_eq!(
        provider
            .zone_for("_acme-challenge.mail.example.org.")
            .await
            .unwrap(),
        "example.org."
    );
    assert_eq!(provider.zone_for(name).await.unwrap(), "example.org.");
    assert_eq!(
        provider
            .zone_for("_acme-challenge.a.Sub.Example.org.")
            .await
            .unwrap(),
        "sub.example.org.",
        "the longest matching zone wins"
    );
    if expect.lists_zones {
        match provider.zone_for("_acme-challenge.example.invalid.").await {
            Err(DnsError::NoZone { provider: p, name }) => {
                assert_eq!(p, provider.name());
                assert_eq!(name, "_acme-challenge.example.invalid.");
            }
            other => panic!("a name outside every zone: {other:?}"),
        }
    }

    let record = |value: &str| TxtRecord {
        fqdn: name.into(),
        value: value.into(),
        ttl: Duration::from_secs(expect.ttl),
    };
    // A wildcard and its apex: two values on one name.
    provider
        .append("example.org.", &record("token-one"))
        .await
        .unwrap();
    provider
        .append("example.org.", &record("token-two"))
        .await
        .unwrap();
    assert_eq!(
        zones.txt_values(name),
        ["pre-existing", "token-one", "token-two"]
    );
    for r in zones.records_named(name) {
        if r.value.starts_with("token-") {
            assert_eq!(r.ttl, expect.ttl, "TTL of {r:?}");
            assert_eq!(r.zone, "example.org");
        }
    }
    // In the delegated zone.
    let deep = TxtRecord {
        fqdn: "_acme-challenge.a.sub.example.org.".into(),
        value: "token-deep".into(),
        ttl: Duration::from_secs(expect.ttl),
    };
    provider.append("sub.example.org.", &deep).await.unwrap();
    let deep_records = zones.records_named("_acme-challenge.a.sub.example.org");
    assert_eq!(deep_records.len(), 1, "{deep_records:?}");
    assert_eq!(deep_records[0].zone, "sub.example.org");

    provider
        .delete("example.org.", &record("token-one"))
        .await
        .unwrap();
    assert_eq!(zones.txt_values(name), ["pre-existing", "token-two"]);
    // Gone already: not an error.
    provider
        .delete("example.org.", &record("token-one"))
        .await
        .unwrap();
    provider
        .delete("example.org.", &record("token-two"))
        .await
        .unwrap();
    provider.delete("sub.example.org.", &deep).await.unwrap();

    let mut after = zones.records();
    let mut before = before;
    let key = |r: &FakeRecord| (r.name.clone(), r.rtype.clone(), r.value.clone());
    after.sort_by_key(key);
    before.sort_by_key(key);
    let strip = |records: Vec<FakeRecord>| -> Vec<(String, String, String, String)> {
        records
            .into_iter()
            .map(|r| (r.zone, r.name, r.rtype, r.value))
            .collect()
    };
    assert_eq!(strip(after), strip(before), "the zone is as it was");
}

/// `dns_user ADDR { dns ... }`: an endpoint that only builds its `dns` provider, the way the
/// ACME loader does (`libdns` namespace).
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

/// The provider configured by `config` (a whole configuration whose one endpoint is
/// `dns_user ADDR { dns ... }`), with the modules `register` adds; or its errors as
/// `LINE:COL: message`.
pub fn provider_from(
    register: fn(&mut Registry),
    config: &str,
) -> Result<Arc<dyn DnsProvider>, Vec<String>> {
    let mut registry = Registry::new();
    register(&mut registry);
    registry.register(ModuleSpec {
        name: "dns_user",
        kind: Kind::Endpoint,
        build: build_user,
        summary: "test consumer of a DNS provider",
    });
    let loaded = load_str(&registry, config).map_err(error_lines)?;
    let endpoint = loaded.endpoints.first().expect("one endpoint");
    Ok(endpoint
        .caps
        .get::<dyn DnsProvider>()
        .expect("a DNS provider"))
}

/// The provider of `dns NAME {\nBLOCK\n}` (the block's lines start on line 3 of the
/// configuration, so errors point at line 3 and on).
pub fn provider_block(
    register: fn(&mut Registry),
    name: &str,
    block: &str,
) -> Result<Arc<dyn DnsProvider>, Vec<String>> {
    provider_from(
        register,
        &format!("dns_user tcp://127.0.0.1:1 {{\n    dns {name} {{\n{block}\n    }}\n}}\n"),
    )
}

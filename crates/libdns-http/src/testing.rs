//! For the providers' tests (cargo feature `testing`): a stand-in for a provider's HTTP API
//! ([`MockApi`]) that records every request and answers through a handler the test writes
//! after the provider's documentation, an in-memory zone store ([`FakeZones`]) those handlers
//! translate their API to, and [`check_provider`], the behaviour every provider must show
//! against its stand-in. A store can be mirrored into a real DNS server ([`FakeZones::mirror`])
//! so an ACME CA resolving through that server sees what the provider published.
//!
//! Besides, what the providers' tests would otherwise each write again:
//!
//! - [`txt`], [`MockApi::serving`], [`MockApi::take_lines`], [`lines_of`],
//!   [`assert_every_request_has`], [`MockApi::http_options`], [`FakeZones::txt_record`],
//!   [`FakeZones::remove_txt`]: building records and stand-ins, and assertions on requests and
//!   records;
//! - [`page_of`], [`window`], [`page_count`]: the slicing behind a stand-in's paged listings;
//! - [`config_errors`], [`check_takes_no_arguments`], [`provider_by_reference`]: the
//!   configuration tests;
//! - [`check_refused_credentials`], [`check_retries_rate_limit`],
//!   [`check_retries_server_errors`], [`check_gives_up_on_server_errors`],
//!   [`check_unreachable`]: how every provider must take the failures its API may answer with,
//!   each fed the provider's own fault reply; the provider's test then checks what is its own
//!   (the exact error text, the requests it sent);
//! - [`check_concurrent_changes`]: two values of one name changed at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure is a failed test

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

use crate::{HttpOptions, names, parse_endpoint};

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

    /// Starts the stand-in answering through `handler(state, request)`: a stand-in module's
    /// `handle`, over the [`FakeZones`] (or the provider's own state) the test also looks at.
    pub async fn serving<S>(
        state: &S,
        handler: impl Fn(&S, &Request) -> Response + Send + Sync + 'static,
    ) -> MockApi
    where
        S: Clone + Send + Sync + 'static,
    {
        let state = state.clone();
        MockApi::start(move |request| handler(&state, request)).await
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

    /// [`Request::line`] of every request so far.
    pub fn lines(&self) -> Vec<String> {
        lines_of(&self.requests())
    }

    /// [`Request::line`] of every request so far, forgetting them.
    pub fn take_lines(&self) -> Vec<String> {
        lines_of(&self.take_requests())
    }

    /// The options of a provider built directly (not from a configuration) against this
    /// stand-in, its endpoint at `path`.
    pub fn http_options(&self, path: &str) -> HttpOptions {
        HttpOptions::with_endpoint(parse_endpoint(&self.url(path)).unwrap())
    }

    /// The requests since the first `count` the stand-in received.
    fn requests_after(&self, count: usize) -> Vec<Request> {
        let mut requests = self.requests();
        requests.split_off(count.min(requests.len()))
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

    /// The TXT record of `value` at `name`; panics when there is none.
    pub fn txt_record(&self, name: &str, value: &str) -> FakeRecord {
        self.records_named(name)
            .into_iter()
            .find(|r| r.rtype == "TXT" && r.value == value)
            .unwrap_or_else(|| panic!("no TXT record {value:?} at {name}"))
    }

    /// Removes the TXT records of `value` at `name`, as another client would.
    pub fn remove_txt(&self, name: &str, value: &str) {
        for record in self.records_named(name) {
            if record.rtype == "TXT" && record.value == value {
                self.remove(&record.id);
            }
        }
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

/// The page `page` (counted from 1) of `items`, `per_page` a page: what a stand-in's
/// `page`/`per_page` listing answers. Past the end it is empty.
pub fn page_of<T>(items: &[T], page: usize, per_page: usize) -> &[T] {
    window(
        items,
        page.saturating_sub(1).saturating_mul(per_page),
        per_page,
    )
}

/// At most `limit` of `items` from `offset` on: what a stand-in's `offset`/`limit` (or
/// cursor) listing answers. Past the end it is empty.
pub fn window<T>(items: &[T], offset: usize, limit: usize) -> &[T] {
    let start = offset.min(items.len());
    let end = start.saturating_add(limit).min(items.len());
    &items[start..end]
}

/// How many pages of `per_page` the listing of `total` items has: at least one, an empty
/// listing being one empty page.
pub fn page_count(total: usize, per_page: usize) -> usize {
    total.div_ceil(per_page.max(1)).max(1)
}

/// A TXT record of `value` at `fqdn` (absolute, with the final dot), asked for `ttl` seconds.
pub fn txt(fqdn: &str, value: &str, ttl: u64) -> TxtRecord {
    TxtRecord {
        fqdn: fqdn.into(),
        value: value.into(),
        ttl: Duration::from_secs(ttl),
    }
}

/// Checks that each of `requests` carries the header `name` with `value` (credentials, the
/// media type asked for).
pub fn assert_every_request_has(requests: &[Request], name: &str, value: &str) {
    for request in requests {
        assert_eq!(
            request.header(name),
            Some(value),
            "{name} of {}",
            request.line()
        );
    }
}

/// [`Request::line`] of each request, in order.
pub fn lines_of(requests: &[Request]) -> Vec<String> {
    requests.iter().map(Request::line).collect()
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

/// What every provider must do when the values of one name change at once (two orders, a
/// wildcard and its apex, presenting or cleaning up together): adding two values to
/// `_acme-challenge.example.org.` at once, asking for `ttl` seconds, keeps both next to the
/// value there before, and removing them at once leaves that value alone; a read-modify-write
/// must see the other's change. `zones` is the [`FakeZones::standard`] behind the provider.
pub async fn check_concurrent_changes(provider: &dyn DnsProvider, zones: &FakeZones, ttl: u64) {
    let name = "_acme-challenge.example.org.";
    let (one, two) = (txt(name, "wildcard", ttl), txt(name, "apex", ttl));
    let (a, b) = tokio::join!(
        provider.append("example.org.", &one),
        provider.append("example.org.", &two)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(zones.txt_values(name), ["apex", "pre-existing", "wildcard"]);
    let (a, b) = tokio::join!(
        provider.delete("example.org.", &one),
        provider.delete("example.org.", &two)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(zones.txt_values(name), ["pre-existing"]);
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

/// The errors of `dns NAME {\nBLOCK\n}` (see [`provider_block`]), as `LINE:COL: message`;
/// panics when the block is accepted.
pub fn config_errors(register: fn(&mut Registry), name: &str, block: &str) -> Vec<String> {
    match provider_block(register, name, block) {
        Ok(_) => panic!("accepted:\n{block}"),
        Err(errors) => errors,
    }
}

/// The provider of a named top-level block `libdns.NAME ref { BLOCK }` that the endpoint uses
/// by reference (`dns &ref`), after checking it is the provider called `name`.
pub fn provider_by_reference(
    register: fn(&mut Registry),
    name: &str,
    block: &str,
) -> Arc<dyn DnsProvider> {
    let block: String = block.lines().map(|line| format!("    {line}\n")).collect();
    let config = format!(
        "libdns.{name} dns_ref {{\n{block}}}\ndns_user tcp://127.0.0.1:1 {{\n    dns &dns_ref\n}}\n"
    );
    let provider = provider_from(register, &config)
        .unwrap_or_else(|errors| panic!("refused:\n{config}\n{errors:?}"));
    assert_eq!(provider.name(), name);
    provider
}

/// `dns NAME extra { BLOCK }` is refused, pointing at the argument: a provider's module is
/// configured in its block only (`BLOCK` being a block it would accept).
pub fn check_takes_no_arguments(register: fn(&mut Registry), name: &str, block: &str) {
    let block: String = block
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    let config =
        format!("dns_user tcp://127.0.0.1:1 {{\n    dns {name} extra {{\n{block}    }}\n}}\n");
    let errors = match provider_from(register, &config) {
        Ok(_) => panic!("accepted:\n{config}"),
        Err(errors) => errors,
    };
    // `    dns NAME extra`: the argument is at column 4 + 4 + NAME + 1 + 1.
    let column = name.len() + 10;
    assert_eq!(
        errors,
        [format!(
            "2:{column}: libdns.{name} takes no arguments, only a block"
        )]
    );
}

/// The error of `result`; panics with `what` when it is a success.
fn failure<T: Debug>(what: &str, result: Result<T, DnsError>) -> DnsError {
    match result {
        Ok(value) => panic!("{what}, yet the call succeeded: {value:?}"),
        Err(error) => error,
    }
}

/// Runs `operation`, the first `times` of its requests answered with `fault`: its result, and
/// the requests it sent.
async fn with_faults<T>(
    api: &MockApi,
    times: usize,
    fault: Response,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> (Result<T, DnsError>, Vec<Request>) {
    let before = api.requests().len();
    api.fail_next(times, fault);
    let result = operation.await;
    (result, api.requests_after(before))
}

/// Checks that the first `times` of `sent` are one request, sent again after each failure.
fn assert_repeated(sent: &[Request], times: usize) {
    assert!(
        sent.len() >= times && sent[1..times].iter().all(|r| r.line() == sent[0].line()),
        "the failed request was not sent {times} times: {:?}",
        lines_of(sent)
    );
}

/// What every provider must do when its API refuses the credentials: `operation` (a call of a
/// provider configured with them) fails as [`DnsError::Unauthorized`] after exactly one
/// request, since a refusal is not retried, and neither the error's text nor its debug form
/// holds `secret`. Returns the error, for the provider's own check of its text.
pub async fn check_refused_credentials<T: Debug>(
    api: &MockApi,
    secret: &str,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> DnsError {
    let before = api.requests().len();
    let error = failure("the credentials were refused", operation.await);
    assert!(matches!(error, DnsError::Unauthorized { .. }), "{error:?}");
    let text = error.to_string();
    assert!(!text.contains(secret), "the secret is printed: {text}");
    assert!(
        !format!("{error:?}").contains(secret),
        "the secret is printed: {error:?}"
    );
    let sent = api.requests_after(before);
    assert_eq!(
        sent.len(),
        1,
        "refusals are not retried: {:?}",
        lines_of(&sent)
    );
    error
}

/// What every provider must do when rate-limited: the first request of `operation` is answered
/// with `fault` (the provider's documented rate-limit reply, to which `Retry-After: 1` is
/// added); the operation waits that second, sends the refused request again and succeeds.
/// Returns the requests the operation sent, for the provider's own checks.
pub async fn check_retries_rate_limit<T: Debug>(
    api: &MockApi,
    fault: Response,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> Vec<Request> {
    let started = Instant::now();
    let fault = fault.with_header("retry-after", "1");
    let (result, sent) = with_faults(api, 1, fault, operation).await;
    if let Err(error) = result {
        panic!("a rate limit was not waited out: {error}");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not waited for"
    );
    assert_repeated(&sent, 2);
    sent
}

/// What every provider must do when its API fails for a while: the first two requests of
/// `operation` are answered with `fault` (a server error, HTTP 5xx); the operation sends the
/// failed request again, twice, and succeeds. Returns the requests the operation sent, for the
/// provider's own checks.
pub async fn check_retries_server_errors<T: Debug>(
    api: &MockApi,
    fault: Response,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> Vec<Request> {
    let (result, sent) = with_faults(api, 2, fault, operation).await;
    if let Err(error) = result {
        panic!("server errors were not retried: {error}");
    }
    assert_repeated(&sent, 3);
    sent
}

/// What every provider must do when its API keeps failing: with `operation` a call of a
/// provider configured with `retries 1`, and its two requests answered with `fault` (a server
/// error, HTTP 5xx), it sends the request twice and fails as [`DnsError::Failed`] saying it
/// gave up after 2 attempts. Returns the error, for the provider's own check of its text
/// (which names the provider, the zone and the operation).
pub async fn check_gives_up_on_server_errors<T: Debug>(
    api: &MockApi,
    fault: Response,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> DnsError {
    let (result, sent) = with_faults(api, 2, fault, operation).await;
    let error = failure("the server kept failing", result);
    assert!(matches!(error, DnsError::Failed { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.ends_with(" (gave up after 2 attempts)"), "{text}");
    assert_eq!(sent.len(), 2, "{:?}", lines_of(&sent));
    assert_repeated(&sent, 2);
    error
}

/// The URL of a stand-in that has stopped, with `path`: nothing answers there any more.
pub async fn closed_endpoint(path: &str) -> String {
    let api = MockApi::start(|_| Response::empty(500)).await;
    api.url(path)
}

/// What every provider must do when its API cannot be reached (see [`closed_endpoint`]):
/// `operation` fails, its error text starting with `context` (`PROVIDER: OPERATION in zone
/// ZONE`) and `: request failed`.
pub async fn check_unreachable<T: Debug>(
    context: &str,
    operation: impl Future<Output = Result<T, DnsError>>,
) -> DnsError {
    let error = failure("the API is unreachable", operation.await);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{context}: request failed")),
        "{text}"
    );
    error
}

//! The `openmetrics` endpoint as a configuration builds it: scraped over real sockets with a
//! plain HTTP/1.1 request, the body read back by a Prometheus text-format parser.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use madmail_module::metrics::{Collector, Histogram, MetricsWriter};
use madmail_module::testing::{error_lines, load_str};
use madmail_module::{Loaded, Registry, Running};
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn registry() -> Registry {
    let mut r = Registry::new();
    madmail_openmetrics::register(&mut r);
    r
}

fn load(text: &str) -> Loaded {
    load_str(&registry(), text).unwrap()
}

fn errors_of(text: &str) -> Vec<String> {
    match load_str(&registry(), text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => error_lines(e),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A collector such as a module would register: a counter it increments, a gauge and a
/// histogram.
struct Sample {
    requests: AtomicU64,
    latency: Histogram,
}

impl Collector for Sample {
    fn collect(&self, out: &mut MetricsWriter) {
        out.counter(
            "test_requests_total",
            "Requests seen.",
            &[("endpoint", "a")],
            self.requests.load(Ordering::Relaxed) as f64,
        );
        out.gauge("test_temperature", "A gauge.", &[], -1.5);
        out.gauge(
            "test_escaped",
            "Escaped label values.",
            &[("v", "q\"uote\\back\nline")],
            1.0,
        );
        out.histogram(
            "test_latency_seconds",
            "Latencies.",
            &[("endpoint", "a")],
            &self.latency.snapshot(),
        );
    }
}

/// One raw HTTP/1.1 request; the response's head and body.
async fn request_over(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
) -> (String, String) {
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("response within 10s")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    (head.to_owned(), body.to_owned())
}

async fn request(port: u16, method: &str, path: &str) -> (String, String) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    request_over(stream, method, path).await
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value_of(scrape: &Scrape, metric: &str) -> Value {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric)
        .unwrap_or_else(|| panic!("no {metric}"))
        .value
        .clone()
}

#[tokio::test]
async fn serves_the_configurations_metrics() {
    let port = free_port();
    let loaded = load(&format!("openmetrics tcp://127.0.0.1:{port} {{ }}\n"));
    let sample = Arc::new(Sample {
        requests: AtomicU64::new(0),
        latency: Histogram::new(&[0.1, 1.0]),
    });
    // What a module does while built (the endpoint renders at every request, so collectors
    // registered after it was built are served too).
    loaded.globals.metrics.register(sample.clone());
    let mut running = Running::start(&loaded.instances).await.unwrap();

    sample.requests.store(3, Ordering::Relaxed);
    for v in [0.05, 0.5, 0.7, 2.0] {
        sample.latency.observe(v);
    }
    let (head, body) = request(port, "GET", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let scrape = parse(&body);
    assert_eq!(
        value_of(&scrape, "test_requests_total"),
        Value::Counter(3.0)
    );
    assert_eq!(value_of(&scrape, "test_temperature"), Value::Gauge(-1.5));
    let Value::Histogram(buckets) = value_of(&scrape, "test_latency_seconds") else {
        panic!("test_latency_seconds is not a histogram:\n{body}");
    };
    let buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    assert_eq!(buckets, [(0.1, 1.0), (1.0, 3.0), (f64::INFINITY, 4.0)]);
    assert_eq!(
        value_of(&scrape, "test_latency_seconds_count"),
        Value::Untyped(4.0)
    );
    let Value::Untyped(sum) = value_of(&scrape, "test_latency_seconds_sum") else {
        panic!("no sum");
    };
    assert!((sum - 3.25).abs() < 1e-9, "{sum}");
    assert_eq!(
        scrape.docs.get("test_requests_total").map(String::as_str),
        Some("Requests seen.")
    );
    assert!(
        body.contains("test_escaped{v=\"q\\\"uote\\\\back\\nline\"} 1\n"),
        "{body}"
    );

    // Values move between scrapes.
    sample.requests.store(4, Ordering::Relaxed);
    let (_, body) = request(port, "GET", "/metrics").await;
    assert_eq!(
        value_of(&parse(&body), "test_requests_total"),
        Value::Counter(4.0)
    );

    // HEAD: the headers without the body.
    let (head, body) = request(port, "HEAD", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "");

    running.stop().await;
    // Stopped: the port is closed.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let port = free_port();
    let loaded = load(&format!("openmetrics tcp://127.0.0.1:{port} {{\n}}\n"));
    let mut running = Running::start(&loaded.instances).await.unwrap();

    for path in ["/", "/metric", "/metrics/", "/favicon.ico"] {
        let (head, _) = request(port, "GET", path).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
    // A query string does not change the path.
    let (head, _) = request(port, "GET", "/metrics?x=1").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    for method in ["POST", "PUT", "DELETE"] {
        let (head, _) = request(port, method, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 405"), "{method}: {head}");
        assert_eq!(header(&head, "allow"), Some("GET, HEAD"), "{head}");
    }
    // An empty configuration's metrics: an empty, valid body.
    let (head, body) = request(port, "GET", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "");
    running.stop().await;
}

#[tokio::test]
async fn several_addresses_and_a_unix_socket() {
    let (a, b) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("metrics.sock");
    let loaded = load(&format!(
        "openmetrics tcp://127.0.0.1:{a} tcp://127.0.0.1:{b} unix://{} {{ }}\n",
        socket.display()
    ));
    let mut running = Running::start(&loaded.instances).await.unwrap();
    for port in [a, b] {
        let (head, _) = request(port, "GET", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (head, _) = request_over(stream, "GET", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    running.stop().await;
    assert!(!socket.exists(), "the socket is removed on stop");
}

#[tokio::test]
async fn a_busy_address_is_reported_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let loaded = load(&format!("openmetrics tcp://127.0.0.1:{port} {{ }}\n"));
    let e = Running::start(&loaded.instances).await.unwrap_err();
    assert!(
        e.starts_with("test.conf:1:1: openmetrics (openmetrics tcp://127.0.0.1:"),
        "{e}"
    );
    assert!(
        e.contains(&format!("can't listen on tcp://127.0.0.1:{port}: ")),
        "{e}"
    );
    assert!(e.to_lowercase().contains("address already in use"), "{e}");
}

#[test]
fn configuration_errors() {
    assert_eq!(
        errors_of("openmetrics {\n}\n"),
        ["1:1: openmetrics needs at least one address to listen on, such as tcp://127.0.0.1:9749"]
    );
    assert_eq!(
        errors_of(
            "openmetrics tcp://127.0.0.1:9749 udp://x:1 tls://127.0.0.1:9750 {\n  path /metrics\n}\n"
        ),
        [
            "1:34: invalid address \"udp://x:1\": unknown scheme \"udp\" (use tcp, tls or unix)",
            "1:44: openmetrics serves plain HTTP and can't listen on tls://127.0.0.1:9750 (implicit TLS); use tcp:// on a private address",
            "2:3: unknown directive path: openmetrics takes no directives",
        ]
    );
    // Nothing is bound while building.
    let port = free_port();
    let loaded = load(&format!("openmetrics tcp://127.0.0.1:{port}\n"));
    assert_eq!(loaded.endpoints.len(), 1);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

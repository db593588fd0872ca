//! Metrics every module can report, rendered in the Prometheus text exposition format 0.0.4
//! (what the `openmetrics` endpoint serves on `/metrics`).
//!
//! A module registers a [`Collector`] with the configuration's [`Metrics`]
//! (`ctx.globals().metrics.register(...)`) while it is built. Collectors keep their own state
//! (typically atomics updated on the hot path) and write it out when asked, through a
//! [`MetricsWriter`]; nothing is stored between two renderings. Several collectors may write
//! samples of the same family (one per endpoint, with different labels): the writer groups
//! them under one `# HELP` and `# TYPE`.
//!
//! Metrics must never carry secrets or per-message data (addresses, subjects, user names) in
//! their names, labels or values: they describe the server, not its users.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Something that writes samples when metrics are rendered.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut MetricsWriter);
}

/// The collectors of one configuration. Every configuration load gets a fresh one (in
/// [`crate::Globals`]), so a reload does not keep the old instances' collectors alive.
#[derive(Default)]
pub struct Metrics {
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Metrics").field("collectors", &n).finish()
    }
}

impl Metrics {
    pub fn register(&self, collector: Arc<dyn Collector>) {
        self.collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(collector);
    }

    /// Every collector's samples in the Prometheus text format 0.0.4: families sorted by
    /// name, each with one `# HELP` and `# TYPE` line followed by all its samples.
    pub fn render(&self) -> String {
        // Collect outside the lock: a collector may take its time (or register another).
        let collectors = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = MetricsWriter::default();
        for collector in collectors {
            collector.collect(&mut out);
        }
        out.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

struct Family {
    help: String,
    kind: Type,
    /// The sample lines, in the order written.
    lines: String,
    /// The label sets written so far: a series is written once (the first one wins).
    series: HashSet<String>,
}

/// Receives samples from collectors and groups them by family.
#[derive(Default)]
pub struct MetricsWriter {
    families: BTreeMap<String, Family>,
}

impl MetricsWriter {
    /// A monotonically increasing count (by convention named `..._total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if let Some((family, labels)) = self.series(name, help, Type::Counter, labels) {
            let _ = writeln!(family.lines, "{name}{labels} {}", format_value(value));
        }
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if let Some((family, labels)) = self.series(name, help, Type::Gauge, labels) {
            let _ = writeln!(family.lines, "{name}{labels} {}", format_value(value));
        }
    }

    /// A histogram: `name_bucket{le="..."}` (cumulative, ending with `+Inf`), `name_sum` and
    /// `name_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        if labels.iter().any(|(k, _)| *k == "le") {
            tracing::warn!(metric = name, "histogram label \"le\" is reserved; skipped");
            return;
        }
        let Some((family, _)) = self.series(name, help, Type::Histogram, labels) else {
            return;
        };
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative = cumulative.saturating_add(h.counts.get(i).copied().unwrap_or(0));
            let le = format_value(*bound);
            let _ = writeln!(
                family.lines,
                "{name}_bucket{} {cumulative}",
                label_set(labels, Some(&le))
            );
        }
        let _ = writeln!(
            family.lines,
            "{name}_bucket{} {}",
            label_set(labels, Some("+Inf")),
            h.count
        );
        let plain = label_set(labels, None);
        let _ = writeln!(family.lines, "{name}_sum{plain} {}", format_value(h.sum));
        let _ = writeln!(family.lines, "{name}_count{plain} {}", h.count);
    }

    /// The rendered text.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
            out.push_str(&family.lines);
        }
        out
    }

    /// The family `name` (created on first use) and the rendered label set of a new series;
    /// `None` (with a warning) for invalid names, a type conflicting with earlier samples of
    /// the family, or a series already written.
    fn series(
        &mut self,
        name: &str,
        help: &str,
        kind: Type,
        labels: &[(&str, &str)],
    ) -> Option<(&mut Family, String)> {
        if !valid_metric_name(name) {
            tracing::warn!(metric = name, "invalid metric name; skipped");
            return None;
        }
        if let Some((bad, _)) = labels.iter().find(|(k, _)| !valid_label_name(k)) {
            tracing::warn!(metric = name, label = bad, "invalid label name; skipped");
            return None;
        }
        let family = self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                help: help.to_owned(),
                kind,
                lines: String::new(),
                series: HashSet::new(),
            });
        if family.kind != kind {
            tracing::warn!(
                metric = name,
                "written as a {} and as a {}; the second skipped",
                family.kind.name(),
                kind.name()
            );
            return None;
        }
        let rendered = label_set(labels, None);
        if !family.series.insert(rendered.clone()) {
            tracing::warn!(metric = name, labels = %rendered, "series written twice; the second skipped");
            return None;
        }
        Some((family, rendered))
    }
}

/// A distribution of observed values over fixed buckets. Thread-safe; an observation costs a
/// short uncontended lock, and a snapshot is always consistent (the buckets add up to the
/// count).
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    state: Mutex<HistogramState>,
}

#[derive(Debug)]
struct HistogramState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram at one moment.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    /// The upper bounds (inclusive) of the buckets, ascending, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations per bucket, not cumulative: `counts[i]` is how many fell in
    /// `(bounds[i-1], bounds[i]]`; the last entry (index `bounds.len()`) counts those above
    /// every bound.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// A histogram with these bucket upper bounds; they are sorted, deduplicated, and
    /// non-finite ones dropped (the `+Inf` bucket is always there).
    pub fn new(bounds: &[f64]) -> Histogram {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                counts,
                sum: 0.0,
                count: 0,
            }),
        }
    }

    /// Records one value. NaN is ignored (it would poison the sum forever).
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|b| *b < value);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = state.counts.get_mut(bucket) {
            *c = c.saturating_add(1);
        }
        state.sum += value;
        state.count = state.count.saturating_add(1);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        HistogramSnapshot {
            bounds: self.bounds.clone(),
            counts: state.counts.clone(),
            sum: state.sum,
            count: state.count,
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing without labels.
fn label_set(labels: &[(&str, &str)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
    for (i, (name, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
    }
    out.push('}');
    out
}

/// Label values escape `\`, `"` and line feeds.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help texts escape `\` and line feeds.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus (Go's `ParseFloat`) reads it: whole numbers without a
/// fraction, `+Inf`, `-Inf` and `NaN` spelled so.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Exact: |v| < 2^53.
        (v as i64).to_string()
    } else {
        // Shortest representation that reads back the same; exponents (`1e-7`, `1e300`) are
        // fine for Go.
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Box<dyn Fn(&mut MetricsWriter) + Send + Sync>);

    impl Collector for Fixed {
        fn collect(&self, out: &mut MetricsWriter) {
            (self.0)(out);
        }
    }

    fn fixed(f: impl Fn(&mut MetricsWriter) + Send + Sync + 'static) -> Arc<dyn Collector> {
        Arc::new(Fixed(Box::new(f)))
    }

    #[test]
    fn families_are_grouped_and_sorted() {
        let metrics = Metrics::default();
        metrics.register(fixed(|w| {
            w.counter("zeta_total", "Last.", &[("endpoint", "a")], 1.0);
            w.gauge("alpha", "First.", &[], 2.0);
        }));
        metrics.register(fixed(|w| {
            w.counter(
                "zeta_total",
                "Last (other help).",
                &[("endpoint", "b")],
                3.0,
            );
        }));
        assert_eq!(
            metrics.render(),
            "# HELP alpha First.\n\
             # TYPE alpha gauge\n\
             alpha 2\n\
             # HELP zeta_total Last.\n\
             # TYPE zeta_total counter\n\
             zeta_total{endpoint=\"a\"} 1\n\
             zeta_total{endpoint=\"b\"} 3\n"
        );
    }

    #[test]
    fn empty_registry_renders_nothing() {
        assert_eq!(Metrics::default().render(), "");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = MetricsWriter::default();
        w.gauge(
            "x",
            "line one\nback\\slash",
            &[("a", "q\"uote"), ("b", "back\\slash"), ("c", "new\nline")],
            1.0,
        );
        assert_eq!(
            w.finish(),
            "# HELP x line one\\nback\\\\slash\n\
             # TYPE x gauge\n\
             x{a=\"q\\\"uote\",b=\"back\\\\slash\",c=\"new\\nline\"} 1\n"
        );
    }

    #[test]
    fn values_are_formatted_as_prometheus_reads_them() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(-7.0), "-7");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1e-7), "1e-7");
        assert_eq!(format_value(1e300), "1e300");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        for v in [0.1, 1.5e16, 123_456.789, 9.007_199_254_740_993e15] {
            assert_eq!(format_value(v).parse::<f64>().ok(), Some(v));
        }
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let h = Histogram::new(&[1.0, 0.5, f64::INFINITY, 0.5, f64::NAN]);
        for v in [0.1, 0.5, 0.7, 3.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.bounds, vec![0.5, 1.0]);
        assert_eq!(s.counts, vec![2, 1, 1]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 4.3).abs() < 1e-9);

        let mut w = MetricsWriter::default();
        w.histogram("d_seconds", "Durations.", &[("endpoint", "smtp")], &s);
        let text = w.finish();
        let sum = format_value(s.sum);
        assert_eq!(
            text,
            format!(
                "# HELP d_seconds Durations.\n\
                 # TYPE d_seconds histogram\n\
                 d_seconds_bucket{{endpoint=\"smtp\",le=\"0.5\"}} 2\n\
                 d_seconds_bucket{{endpoint=\"smtp\",le=\"1\"}} 3\n\
                 d_seconds_bucket{{endpoint=\"smtp\",le=\"+Inf\"}} 4\n\
                 d_seconds_sum{{endpoint=\"smtp\"}} {sum}\n\
                 d_seconds_count{{endpoint=\"smtp\"}} 4\n"
            )
        );
    }

    #[test]
    fn empty_histogram_without_labels() {
        let mut w = MetricsWriter::default();
        w.histogram("h", "H.", &[], &Histogram::new(&[]).snapshot());
        assert_eq!(
            w.finish(),
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n"
        );
    }

    #[test]
    fn invalid_names_conflicts_and_duplicates_are_skipped() {
        let mut w = MetricsWriter::default();
        w.counter("bad-name", "", &[], 1.0);
        w.counter("9starts_with_digit", "", &[], 1.0);
        w.counter("ok", "", &[("bad label", "x")], 1.0);
        w.counter("ok", "", &[("__reserved", "x")], 1.0);
        w.counter("ok", "Fine.", &[("a", "1")], 1.0);
        w.gauge("ok", "", &[("a", "2")], 2.0);
        w.counter("ok", "", &[("a", "1")], 5.0);
        w.histogram(
            "ok_h",
            "",
            &[("le", "1")],
            &Histogram::new(&[1.0]).snapshot(),
        );
        assert_eq!(
            w.finish(),
            "# HELP ok Fine.\n# TYPE ok counter\nok{a=\"1\"} 1\n"
        );
    }

    #[test]
    fn histogram_is_shared_between_threads() {
        let h = Arc::new(Histogram::new(&[10.0]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        h.observe(f64::from(i % 20));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_else(|_| panic!("thread panicked"));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4000);
        assert_eq!(s.counts, vec![2200, 1800]);
    }
}

//! A load run's live metrics: requests by scenario, step, status and error code;
//! latency per step as a Prometheus histogram; target and achieved iteration rate,
//! iterations in flight, dropped and late arrivals.
//!
//! The engine's aggregator already receives samples in batches; it hands each batch to
//! [`ScenarioLive::record`], which takes one lock per batch (never one per request),
//! and the user tasks are not touched. Gauges read the engine's own atomics at scrape
//! time through the closure given to [`LoadMetrics::scenario`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::error_codes;
use crate::redact::Redactor;

/// Upper bounds of the latency buckets, in seconds: 250 µs to 10 s, dense where
/// KeyClaim answers usually land (a few milliseconds).
pub const LATENCY_BUCKETS_S: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0,
];

/// How a request ended, as the `status` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveStatus {
    Http(u16),
    Timeout,
    ConnectionError,
    ProtocolError,
}

impl LiveStatus {
    fn label(self) -> String {
        match self {
            LiveStatus::Http(code) => code.to_string(),
            LiveStatus::Timeout => "timeout".into(),
            LiveStatus::ConnectionError => "connection_error".into(),
            LiveStatus::ProtocolError => "protocol_error".into(),
        }
    }
}

/// The engine's counters for one scenario, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadGauges {
    pub iterations: u64,
    pub in_flight: u64,
    pub dropped: u64,
    pub late: u64,
}

type GaugeReader = Box<dyn Fn() -> LoadGauges + Send + Sync>;

/// (step index, status, error code or "").
type RequestKey = (u16, LiveStatus, String);

#[derive(Debug, Default, Clone)]
struct Buckets {
    /// Per bucket (not cumulative), the last one for `+Inf`.
    counts: [u64; LATENCY_BUCKETS_S.len() + 1],
    sum_s: f64,
    count: u64,
}

#[derive(Default)]
struct Tallies {
    requests: BTreeMap<RequestKey, u64>,
    /// By step index.
    latency: Vec<Buckets>,
    /// The error codes kept as labels, by the rule reports use ([`error_codes`]), as received and as
    /// shown (redacted: a target may echo a key back in its error code).
    error_codes: BTreeMap<String, String>,
}

/// One load scenario's live figures.
pub struct ScenarioLive {
    name: String,
    steps: Vec<String>,
    target_rate: Option<f64>,
    started: Instant,
    /// Set when the scenario's load ended: the achieved rate stops moving.
    ended: Mutex<Option<Instant>>,
    gauges: GaugeReader,
    tallies: Mutex<Tallies>,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for ScenarioLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioLive")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One request of a batch: its step, how it ended, its body's error code and latency.
pub struct LiveSample<'a> {
    pub step: u16,
    pub status: LiveStatus,
    pub error_code: Option<&'a str>,
    pub latency: Duration,
}

impl ScenarioLive {
    /// Adds a batch of samples, under one lock.
    pub fn record<'a>(&self, batch: impl IntoIterator<Item = LiveSample<'a>>) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let tallies = &mut *tallies;
        for sample in batch {
            let code = match sample.error_code {
                None => String::new(),
                Some(code) => match tallies.error_codes.get(code) {
                    Some(shown) => shown.clone(),
                    // Reports' rule: strings that look like codes, a few dozen of
                    // them, the rest `other`; so the series a target can add are bounded.
                    None if error_codes::is_code(code)
                        && tallies.error_codes.len() < error_codes::KEPT_CODES =>
                    {
                        let shown = self.redactor.redact(code).into_owned();
                        tallies.error_codes.insert(code.to_owned(), shown.clone());
                        shown
                    }
                    None => error_codes::OTHER.to_owned(),
                },
            };
            *tallies
                .requests
                .entry((sample.step, sample.status, code))
                .or_default() += 1;
            let step = usize::from(sample.step);
            if tallies.latency.len() <= step {
                tallies.latency.resize(step + 1, Buckets::default());
            }
            let buckets = &mut tallies.latency[step];
            let seconds = sample.latency.as_secs_f64();
            let at = LATENCY_BUCKETS_S
                .iter()
                .position(|&bound| seconds <= bound)
                .unwrap_or(LATENCY_BUCKETS_S.len());
            buckets.counts[at] += 1;
            buckets.sum_s += seconds;
            buckets.count += 1;
        }
    }

    /// The load ended: the achieved rate is over the load's length from now on.
    pub fn end(&self) {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn step_name(&self, step: u16) -> &str {
        self.steps
            .get(usize::from(step))
            .map_or("unknown", String::as_str)
    }
}

/// Every load scenario of a run, as one `prometheus-client` collector.
pub struct LoadMetrics {
    scenarios: Mutex<Vec<Arc<ScenarioLive>>>,
    finished: AtomicBool,
    /// The run's secrets, kept out of every label.
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for LoadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadMetrics").finish_non_exhaustive()
    }
}

impl LoadMetrics {
    pub fn new(redactor: Arc<Redactor>) -> Self {
        Self {
            scenarios: Mutex::default(),
            finished: AtomicBool::new(false),
            redactor,
        }
    }

    /// A registry holding these metrics, ready for [`super::serve`].
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::with_prefix("keyclaim_load");
        registry.register_collector(Box::new(Shared(Arc::clone(self))));
        registry
    }

    /// Starts a scenario's figures: its steps' names, its target rate (open model) and
    /// how to read the engine's counters.
    pub fn scenario(
        &self,
        name: &str,
        steps: Vec<String>,
        target_rate: Option<f64>,
        gauges: impl Fn() -> LoadGauges + Send + Sync + 'static,
    ) -> Arc<ScenarioLive> {
        let live = Arc::new(ScenarioLive {
            name: self.redactor.redact(name).into_owned(),
            steps,
            target_rate,
            started: Instant::now(),
            ended: Mutex::new(None),
            gauges: Box::new(gauges),
            tallies: Mutex::default(),
            redactor: Arc::clone(&self.redactor),
        });
        self.scenarios
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&live));
        live
    }

    /// The run is over and its reports are written: `keyclaim_load_run_finished` turns 1,
    /// so a scraper knows these are the final counts.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

#[derive(Debug)]
struct Shared(Arc<LoadMetrics>);

/// Encodes a gauge or counter value with no further labels.
fn value<'a>(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'a>,
    labels: &[(&str, &str)],
    counter: bool,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_family(&labels)?;
    if counter {
        family.encode_counter::<NoLabelSet, _, f64>(&(v as u64), None)
    } else {
        family.encode_gauge(&v)
    }
}

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let scenarios = self
            .0
            .scenarios
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        {
            let mut m = encoder.encode_descriptor(
                "run_finished",
                "1 once the run is over and its reports are written (the counts are final)",
                None,
                MetricType::Gauge,
            )?;
            let finished: i64 = self.0.finished.load(Ordering::Acquire).into();
            m.encode_gauge(&finished)?;
        }
        // Copies, so a scrape holds each scenario's lock only while copying.
        type Snapshot = (Arc<ScenarioLive>, BTreeMap<RequestKey, u64>, Vec<Buckets>);
        let snapshots: Vec<Snapshot> = scenarios
            .iter()
            .map(|s| {
                let t = s.tallies.lock().unwrap_or_else(|p| p.into_inner());
                (Arc::clone(s), t.requests.clone(), t.latency.clone())
            })
            .collect();
        {
            let mut m = encoder.encode_descriptor(
                "requests",
                "Requests completed, by scenario, step, HTTP status (or timeout, connection_error, protocol_error) and the body's error code",
                None,
                MetricType::Counter,
            )?;
            for (s, requests, _) in &snapshots {
                for ((step, status, code), n) in requests {
                    let status = status.label();
                    let labels = [
                        ("scenario", s.name.as_str()),
                        ("step", s.step_name(*step)),
                        ("status", status.as_str()),
                        ("error_code", code.as_str()),
                    ];
                    let mut family = m.encode_family(&labels)?;
                    family.encode_counter::<NoLabelSet, _, f64>(n, None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "request_duration_seconds",
                "Request latency by scenario and step, from the request's intended start",
                None,
                MetricType::Histogram,
            )?;
            for (s, _, latency) in &snapshots {
                for (step, buckets) in latency.iter().enumerate() {
                    let step = u16::try_from(step).unwrap_or(u16::MAX);
                    let labels = [("scenario", s.name.as_str()), ("step", s.step_name(step))];
                    let bounds: Vec<(f64, u64)> = LATENCY_BUCKETS_S
                        .iter()
                        .copied()
                        .chain([f64::INFINITY])
                        .zip(buckets.counts.iter().copied())
                        .collect();
                    let mut family = m.encode_family(&labels)?;
                    family.encode_histogram::<NoLabelSet>(
                        buckets.sum_s,
                        buckets.count,
                        &bounds,
                        None,
                    )?;
                }
            }
        }
        let gauges: Vec<(Arc<ScenarioLive>, LoadGauges)> = scenarios
            .iter()
            .map(|s| (Arc::clone(s), (s.gauges)()))
            .collect();
        type Read = fn(&ScenarioLive, &LoadGauges) -> Option<f64>;
        let per_scenario: [(&str, &str, bool, Read); 6] = [
            (
                "target_rate",
                "Open model: the scheduled iteration arrivals per second now",
                false,
                |s, _| s.target_rate,
            ),
            (
                "achieved_rate",
                "Iterations started per second since the scenario's start",
                false,
                |s, g| {
                    let end = s
                        .ended
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .unwrap_or_else(Instant::now);
                    let seconds = end.saturating_duration_since(s.started).as_secs_f64();
                    Some(g.iterations as f64 / seconds.max(1e-3))
                },
            ),
            ("iterations", "Iterations started", true, |_, g| {
                Some(g.iterations as f64)
            }),
            (
                "in_flight",
                "Iterations started and not yet finished",
                false,
                |_, g| Some(g.in_flight as f64),
            ),
            (
                "dropped",
                "Open model: arrivals not started because max_in_flight were in flight",
                true,
                |_, g| Some(g.dropped as f64),
            ),
            (
                "late",
                "Open model: iterations started more than 10 ms after their intended time",
                true,
                |_, g| Some(g.late as f64),
            ),
        ];
        for (name, help, counter, read) in per_scenario {
            let kind = if counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut m = encoder.encode_descriptor(name, help, None, kind)?;
            for (s, g) in &gauges {
                if let Some(v) = read(s, g) {
                    value(&mut m, &[("scenario", s.name.as_str())], counter, v)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::error_codes::KEPT_CODES;

    fn scrape(metrics: &Arc<LoadMetrics>) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry()).unwrap();
        text
    }

    #[test]
    fn batches_show_as_counters_and_histograms() {
        let metrics = Arc::new(LoadMetrics::new(Arc::default()));
        let live = metrics.scenario(
            "smoke",
            vec!["1 create".into(), "2 validate".into()],
            Some(100.0),
            || LoadGauges {
                iterations: 7,
                in_flight: 2,
                dropped: 1,
                late: 0,
            },
        );
        live.record([
            LiveSample {
                step: 0,
                status: LiveStatus::Http(200),
                error_code: None,
                latency: Duration::from_micros(1_500),
            },
            LiveSample {
                step: 1,
                status: LiveStatus::Http(400),
                error_code: Some("invalid_response"),
                latency: Duration::from_secs(20),
            },
            LiveSample {
                step: 1,
                status: LiveStatus::Timeout,
                error_code: None,
                latency: Duration::from_millis(3),
            },
        ]);
        let text = scrape(&metrics);
        for line in [
            r#"keyclaim_load_requests_total{scenario="smoke",step="1 create",status="200",error_code=""} 1"#,
            r#"keyclaim_load_requests_total{scenario="smoke",step="2 validate",status="400",error_code="invalid_response"} 1"#,
            r#"keyclaim_load_requests_total{scenario="smoke",step="2 validate",status="timeout",error_code=""} 1"#,
            r#"keyclaim_load_request_duration_seconds_bucket{le="0.002",scenario="smoke",step="1 create"} 1"#,
            r#"keyclaim_load_request_duration_seconds_bucket{le="10.0",scenario="smoke",step="2 validate"} 1"#,
            r#"keyclaim_load_request_duration_seconds_bucket{le="+Inf",scenario="smoke",step="2 validate"} 2"#,
            r#"keyclaim_load_in_flight{scenario="smoke"} 2.0"#,
            r#"keyclaim_load_dropped_total{scenario="smoke"} 1"#,
            r#"keyclaim_load_target_rate{scenario="smoke"} 100.0"#,
            "keyclaim_load_run_finished 0",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        metrics.finish();
        assert!(scrape(&metrics).contains("keyclaim_load_run_finished 1"));
    }

    #[test]
    fn invented_error_codes_are_bounded_and_redacted() {
        let redactor = Redactor::new(vec!["kc_secret_key_0123456789".to_owned()]);
        let metrics = Arc::new(LoadMetrics::new(Arc::new(redactor)));
        let live = metrics.scenario("s", vec!["1 create".into()], None, LoadGauges::default);
        let mut codes: Vec<String> = (0..KEPT_CODES + 10).map(|i| format!("code{i}")).collect();
        // A target echoing a key in a code-shaped `error`: kept, and redacted.
        codes[0] = "kc_secret_key_0123456789".to_owned();
        codes[1] = "not a code".to_owned();
        live.record(codes.iter().map(|code| LiveSample {
            step: 0,
            status: LiveStatus::Http(400),
            error_code: Some(code),
            latency: Duration::from_millis(1),
        }));
        let text = scrape(&metrics);
        assert_eq!(
            text.matches("keyclaim_load_requests_total{").count(),
            KEPT_CODES + 1
        );
        assert!(text.contains(r#"error_code="other"} 10"#), "{text}");
        assert!(!text.contains("kc_secret_key_0123456789"), "{text}");
    }
}

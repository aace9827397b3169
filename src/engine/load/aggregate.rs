//! The one owner of a load scenario's measurements: users send a [`Sample`] per
//! request over a bounded channel, and this aggregator records them into
//! HdrHistograms (whole run, per step, per one-second interval) and counters. No
//! locks on the request path, and memory stays flat however long the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::live::load::{LiveSample, LiveStatus, ScenarioLive};
use crate::metrics::error_codes::{self, ErrorCodes};
use crate::metrics::{Latency, codec};
use crate::results::{IntervalFigures, LoadTick, StepFigures};

/// Length of one interval of the timeline and of the `.hlog`.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One request's result.
pub struct Sample {
    pub step: u16,
    pub latency: Duration,
    /// When it completed, which interval it belongs to.
    pub done: Instant,
    /// Open model, an iteration's first sample: how long after its intended start the
    /// generator began it.
    pub start_lag: Option<Duration>,
    pub outcome: SampleOutcome,
}

pub enum SampleOutcome {
    Answered {
        status: u16,
        failed: bool,
        /// The body's `error` code, when the body was read: a code, or a cut example
        /// of what was not one ([`crate::metrics::error_codes::carried`]).
        error_code: Option<String>,
    },
    Timeout,
    /// With the failure's words, kept by the aggregator only until it has an example.
    ConnectionError(String),
    ProtocolError(String),
}

impl Sample {
    /// This sample as the live metrics count it.
    fn live(&self) -> LiveSample<'_> {
        let (status, error_code) = match &self.outcome {
            SampleOutcome::Answered {
                status, error_code, ..
            } => (LiveStatus::Http(*status), error_code.as_deref()),
            SampleOutcome::Timeout => (LiveStatus::Timeout, None),
            SampleOutcome::ConnectionError(_) => (LiveStatus::ConnectionError, None),
            SampleOutcome::ProtocolError(_) => (LiveStatus::ProtocolError, None),
        };
        LiveSample {
            step: self.step,
            status,
            error_code,
            latency: self.latency,
        }
    }
}

#[derive(Default)]
struct StepTally {
    requests: u64,
    failed: u64,
    latency: Latency,
}

/// Everything measured, once the channel has closed.
pub struct Totals {
    pub requests: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    /// Protocol errors (resets, garbage) plus connection errors and timeouts.
    pub transport_errors: u64,
    pub latency: Latency,
    /// Open model: from each iteration's intended start to when the generator began it.
    pub start_lag: Latency,
    pub status_counts: BTreeMap<String, u64>,
    pub error_codes: BTreeMap<String, u64>,
    pub error_code_example: Option<String>,
    /// The first transport failure's words, cut.
    pub transport_error_example: Option<String>,
    pub steps: Vec<StepFigures>,
    pub intervals: Vec<IntervalFigures>,
}

struct Aggregator {
    start: Instant,
    total: Latency,
    start_lag: Latency,
    steps: Vec<StepTally>,
    interval_index: u64,
    interval: StepTally,
    intervals: Vec<IntervalFigures>,
    requests: u64,
    failed: u64,
    timeouts: u64,
    connection_errors: u64,
    transport_errors: u64,
    transport_error_example: Option<String>,
    /// By status code; turned into strings once, at the end. Bounded by the type:
    /// HTTP parsers take three digits, so 900 entries at most.
    status_counts: BTreeMap<u16, u64>,
    /// Bounded: a few dozen codes and `other` (see [`ErrorCodes`]).
    error_codes: ErrorCodes,
    last_tick: LoadTick,
}

impl Aggregator {
    fn record(&mut self, sample: Sample) {
        let index = (sample.done.saturating_duration_since(self.start).as_nanos()
            / INTERVAL.as_nanos()) as u64;
        while index > self.interval_index {
            self.close_interval();
        }
        let failed = match sample.outcome {
            SampleOutcome::Answered {
                status,
                failed,
                error_code,
            } => {
                *self.status_counts.entry(status).or_default() += 1;
                if let Some(code) = error_code {
                    self.error_codes.add(&code, 1);
                }
                failed
            }
            SampleOutcome::Timeout => {
                self.timeouts += 1;
                self.transport_errors += 1;
                true
            }
            SampleOutcome::ConnectionError(why) => {
                self.connection_errors += 1;
                self.transport_failed(&why)
            }
            SampleOutcome::ProtocolError(why) => self.transport_failed(&why),
        };
        if let Some(lag) = sample.start_lag {
            self.start_lag.record(lag);
        }
        self.requests += 1;
        self.failed += u64::from(failed);
        self.total.record(sample.latency);
        self.interval.requests += 1;
        self.interval.failed += u64::from(failed);
        self.interval.latency.record(sample.latency);
        if let Some(step) = self.steps.get_mut(usize::from(sample.step)) {
            step.requests += 1;
            step.failed += u64::from(failed);
            step.latency.record(sample.latency);
        }
    }

    /// Counts a request that got no answer; the first one's words are kept, cut.
    fn transport_failed(&mut self, why: &str) -> bool {
        self.transport_errors += 1;
        if self.transport_error_example.is_none() {
            self.transport_error_example =
                Some(error_codes::cut(why, error_codes::TRANSPORT_EXAMPLE_CHARS));
        }
        true
    }

    fn close_interval(&mut self) {
        let interval = std::mem::take(&mut self.interval);
        let rate = interval.requests as f64 / INTERVAL.as_secs_f64();
        self.last_tick.rate = rate;
        self.intervals.push(IntervalFigures {
            start_s: (self.interval_index * INTERVAL.as_secs()) as f64,
            duration_s: INTERVAL.as_secs_f64(),
            requests: interval.requests,
            failed: interval.failed,
            latency_us: interval.latency.summary(),
            histogram: codec::encode(interval.latency.histogram()).unwrap_or_default(),
        });
        self.interval_index += 1;
    }

    fn tick(&mut self) -> LoadTick {
        self.last_tick.elapsed = self.start.elapsed();
        self.last_tick.requests = self.requests;
        self.last_tick.failed = self.failed;
        self.last_tick.p99_us = self.total.summary().p99;
        self.last_tick.clone()
    }

    fn finish(mut self, end: Instant) -> Totals {
        let (error_codes, error_code_example) = std::mem::take(&mut self.error_codes).into_parts();
        // Close the current interval (it may hold samples that completed after `end`
        // by the clock), then any empty ones up to the end.
        let last =
            (end.saturating_duration_since(self.start).as_nanos() / INTERVAL.as_nanos()) as u64;
        loop {
            self.close_interval();
            if self.interval_index > last {
                break;
            }
        }
        if let Some(partial) = self.intervals.last_mut() {
            let into = end.saturating_duration_since(self.start).as_secs_f64() - partial.start_s;
            partial.duration_s = into.clamp(0.001, INTERVAL.as_secs_f64());
        }
        // A sliver of an interval with nothing in it is the end of the run, not a stall.
        if self.intervals.last().is_some_and(|last| {
            last.requests == 0 && last.duration_s < INTERVAL.as_secs_f64() / 2.0
        }) {
            self.intervals.pop();
        }
        Totals {
            requests: self.requests,
            failed: self.failed,
            timeouts: self.timeouts,
            connection_errors: self.connection_errors,
            transport_errors: self.transport_errors,
            status_counts: self
                .status_counts
                .into_iter()
                .map(|(status, n)| (status.to_string(), n))
                .collect(),
            error_codes,
            error_code_example,
            transport_error_example: self.transport_error_example.take(),
            steps: self
                .steps
                .into_iter()
                .map(|tally| StepFigures {
                    name: String::new(),
                    requests: tally.requests,
                    failed: tally.failed,
                    latency_us: tally.latency.summary(),
                    histogram: codec::encode(tally.latency.histogram()).unwrap_or_default(),
                })
                .collect(),
            intervals: self.intervals,
            latency: self.total,
            start_lag: self.start_lag,
        }
    }
}

/// Receives samples until every sender is gone, ticking `on_tick` each interval, and
/// handing each batch to `live` (the `--metrics-listen` endpoint), if any.
pub async fn aggregate(
    mut samples: mpsc::Receiver<Vec<Sample>>,
    steps: usize,
    start: Instant,
    live: Option<std::sync::Arc<ScenarioLive>>,
    on_tick: impl Fn(&LoadTick),
) -> Totals {
    let mut aggregator = Aggregator {
        start,
        total: Latency::default(),
        start_lag: Latency::default(),
        steps: (0..steps).map(|_| StepTally::default()).collect(),
        interval_index: 0,
        interval: StepTally::default(),
        intervals: Vec::new(),
        requests: 0,
        failed: 0,
        timeouts: 0,
        connection_errors: 0,
        transport_errors: 0,
        transport_error_example: None,
        status_counts: BTreeMap::new(),
        error_codes: ErrorCodes::default(),
        last_tick: LoadTick::default(),
    };
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = samples.recv() => match batch {
                Some(batch) => {
                    if let Some(live) = &live {
                        live.record(batch.iter().map(Sample::live));
                    }
                    batch.into_iter().for_each(|sample| aggregator.record(sample));
                }
                None => break,
            },
            _ = ticker.tick() => on_tick(&aggregator.tick()),
        }
    }
    aggregator.finish(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start: Instant, at_ms: u64, latency_ms: u64, failed: bool) -> Sample {
        Sample {
            step: 0,
            latency: Duration::from_millis(latency_ms),
            done: start + Duration::from_millis(at_ms),
            start_lag: None,
            outcome: SampleOutcome::Answered {
                status: if failed { 500 } else { 200 },
                failed,
                error_code: failed.then(|| "internal_error".to_owned()),
            },
        }
    }

    #[tokio::test]
    async fn samples_land_in_their_interval_step_and_totals() {
        let start = Instant::now();
        let (tx, rx) = mpsc::channel(16);
        let feeder = tokio::spawn(async move {
            for (at, latency, failed) in [(100, 5, false), (900, 7, true), (2_100, 500, false)] {
                tx.send(vec![sample(start, at, latency, failed)])
                    .await
                    .unwrap();
            }
        });
        let totals = aggregate(rx, 1, start, None, |_| {}).await;
        feeder.await.unwrap();
        assert_eq!(totals.requests, 3);
        assert_eq!(totals.failed, 1);
        assert_eq!(totals.status_counts["200"], 2);
        assert_eq!(totals.error_codes["internal_error"], 1);
        assert_eq!(totals.steps[0].requests, 3);
        // Intervals 0 (two samples), 1 (empty), 2 (the slow one), at least.
        assert!(totals.intervals.len() >= 3, "{}", totals.intervals.len());
        assert_eq!(totals.intervals[0].requests, 2);
        assert_eq!(totals.intervals[1].requests, 0);
        assert_eq!(totals.intervals[2].requests, 1);
        assert!(totals.intervals[2].latency_us.max >= 499_000);
        let merged: u64 = totals.intervals.iter().map(|i| i.requests).sum();
        assert_eq!(merged, totals.requests);
    }
}

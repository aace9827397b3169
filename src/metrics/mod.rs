//! Latency and request counters: HdrHistograms in microseconds with 3 significant
//! digits (fixed memory however long the run; exact merge), never a list of samples.

pub mod codec;
pub mod error_codes;
pub mod thresholds;
pub mod units;

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::results::LatencySummary;

/// Highest latency tracked exactly: an hour. Longer values are clamped to it.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// One latency distribution.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGNIFICANT_DIGITS)
                .expect("static bounds are valid"),
        }
    }
}

impl Latency {
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_TRACKABLE_US);
        self.histogram
            .record(micros)
            .expect("value clamped into the trackable range");
    }

    /// Adds every sample of `other` (exact: same bucket layout).
    pub fn merge(&mut self, other: &Latency) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds");
    }

    /// A distribution from its [`codec`] text, e.g. a worker's report, in the same
    /// bucket layout as recorded ones so that merging stays exact.
    pub fn decode(text: &str) -> Result<Latency, codec::CodecError> {
        let decoded = codec::decode(text)?;
        let mut latency = Latency::default();
        latency
            .histogram
            .add(&decoded)
            .map_err(|err| codec::CodecError::Decode(format!("{err:?}")))?;
        Ok(latency)
    }

    /// The [`codec`] text of this distribution.
    pub fn encode(&self) -> Result<String, codec::CodecError> {
        codec::encode(&self.histogram)
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let at = |q: f64| self.histogram.value_at_quantile(q);
        LatencySummary {
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: self.histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_distribution() {
        let mut latency = Latency::default();
        for ms in 1..=100u64 {
            latency.record(Duration::from_millis(ms));
        }
        let summary = latency.summary();
        assert!((49_900..=50_100).contains(&summary.p50), "{summary:?}");
        assert!((98_900..=99_100).contains(&summary.p99), "{summary:?}");
        assert!((99_900..=100_100).contains(&summary.max), "{summary:?}");
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Latency::default(), Latency::default(), Latency::default());
        for us in 1..5_000u64 {
            let d = Duration::from_micros(us * 7);
            if us % 3 == 0 {
                a.record(d)
            } else {
                b.record(d)
            }
            all.record(d);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        assert_eq!(a.count(), all.count());
    }

    #[test]
    fn empty_and_extreme_values_do_not_panic() {
        let mut latency = Latency::default();
        assert_eq!(latency.summary(), LatencySummary::default());
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(10_000));
        assert_eq!(latency.summary().max, latency.histogram().max());
    }
}

//! Thresholds against what a load scenario measured (one process's, or a merge of
//! several workers'): each becomes a check that says the figure it saw.

use super::Latency;
use super::units;
use crate::plan::model::{Comparison, Metric, Threshold};
use crate::results::{CheckResult, Outcome};

pub struct Measured<'a> {
    pub latency: &'a Latency,
    pub requests: u64,
    pub failed: u64,
    pub seconds: f64,
    pub dropped: u64,
    pub scheduled: u64,
}

/// The metric's value, or `None` when nothing was measured to judge.
fn value(metric: Metric, measured: &Measured<'_>) -> Option<f64> {
    let histogram = measured.latency.histogram();
    let has_latency = !histogram.is_empty();
    match metric {
        Metric::Percentile(p) => has_latency.then(|| histogram.value_at_percentile(p) as f64),
        Metric::Mean => has_latency.then(|| histogram.mean()),
        Metric::Max => has_latency.then(|| histogram.max() as f64),
        Metric::ErrorRate => {
            (measured.requests > 0).then(|| measured.failed as f64 / measured.requests as f64)
        }
        Metric::Rps => Some(measured.requests as f64 / measured.seconds.max(1e-9)),
        Metric::Requests => Some(measured.requests as f64),
        Metric::DroppedRate => {
            (measured.scheduled > 0).then(|| measured.dropped as f64 / measured.scheduled as f64)
        }
    }
}

fn show(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Percentile(_) | Metric::Mean | Metric::Max => units::compact(value),
        Metric::ErrorRate | Metric::DroppedRate => format!("{:.3}%", value * 100.0),
        Metric::Rps => format!("{value:.1}/s"),
        Metric::Requests => format!("{value:.0}"),
    }
}

pub fn evaluate(thresholds: &[Threshold], measured: &Measured<'_>) -> Vec<CheckResult> {
    thresholds
        .iter()
        .map(|threshold| {
            let seen = value(threshold.metric, measured);
            let holds = seen.is_some_and(|v| match threshold.op {
                Comparison::Lt => v < threshold.value,
                Comparison::Le => v <= threshold.value,
                Comparison::Gt => v > threshold.value,
                Comparison::Ge => v >= threshold.value,
            });
            let shown = seen.map_or_else(
                || "nothing measured".to_owned(),
                |v| show(threshold.metric, v),
            );
            CheckResult {
                name: threshold.source.clone(),
                outcome: if holds { Outcome::Pass } else { Outcome::Fail },
                message: if holds {
                    format!("{}: {shown}", threshold.source)
                } else {
                    format!("threshold crossed: {} (measured {shown})", threshold.source)
                },
                evidence: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn threshold(metric: Metric, op: Comparison, value: f64, source: &str) -> Threshold {
        Threshold {
            metric,
            op,
            value,
            source: source.into(),
        }
    }

    #[test]
    fn thresholds_hold_or_say_what_was_measured() {
        let mut latency = Latency::default();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        let measured = Measured {
            latency: &latency,
            requests: 100,
            failed: 1,
            seconds: 10.0,
            dropped: 0,
            scheduled: 100,
        };
        let checks = evaluate(
            &[
                threshold(
                    Metric::Percentile(99.0),
                    Comparison::Lt,
                    50_000.0,
                    "p99 < 50ms",
                ),
                threshold(
                    Metric::Percentile(50.0),
                    Comparison::Lt,
                    60_000.0,
                    "p50 < 60ms",
                ),
                threshold(
                    Metric::ErrorRate,
                    Comparison::Lt,
                    0.001,
                    "error_rate < 0.1%",
                ),
                threshold(Metric::Rps, Comparison::Ge, 10.0, "rps >= 10"),
            ],
            &measured,
        );
        let outcomes: Vec<Outcome> = checks.iter().map(|c| c.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Fail, Outcome::Pass, Outcome::Fail, Outcome::Pass]
        );
        assert!(
            checks[0].message.contains("p99 < 50ms") && checks[0].message.contains("99."),
            "{}",
            checks[0].message
        );
        assert!(
            checks[2].message.contains("1.000%"),
            "{}",
            checks[2].message
        );
    }

    #[test]
    fn nothing_measured_fails_rather_than_passes() {
        let latency = Latency::default();
        let measured = Measured {
            latency: &latency,
            requests: 0,
            failed: 0,
            seconds: 1.0,
            dropped: 0,
            scheduled: 0,
        };
        let checks = evaluate(
            &[
                threshold(Metric::Percentile(99.0), Comparison::Lt, 1.0, "p99 < 1us"),
                threshold(Metric::ErrorRate, Comparison::Lt, 0.5, "error_rate < 50%"),
            ],
            &measured,
        );
        assert!(checks.iter().all(|c| c.outcome == Outcome::Fail));
    }
}

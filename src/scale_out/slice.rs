//! The share of a run's load one worker drives (`run --worker-index I --workers N`), the
//! shared start instant (`--start-at`), and the digest that ties the workers' reports to
//! one run for `merge`.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::plan::model::{Executor, LoadSpec, RateSchedule, Scenario, Stage};
use crate::results::{LoadFigures, PlanShare, RunReport, StartTimes, WorkerTag};

/// Worker `index` of `workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSlice {
    index: u32,
    workers: u32,
}

impl WorkerSlice {
    pub fn new(index: u32, workers: u32) -> Result<Self, String> {
        if workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if index >= workers {
            return Err(format!(
                "--worker-index {index} is out of range: with --workers {workers} it runs from 0 to {}",
                workers - 1
            ));
        }
        Ok(Self { index, workers })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn workers(self) -> u32 {
        self.workers
    }

    /// How reports name this share.
    pub fn tag(self) -> WorkerTag {
        WorkerTag {
            index: self.index,
            workers: self.workers,
        }
    }

    /// This worker's part of `total` whole things (users, iterations): an even split,
    /// the remainder going one each to the lowest indexes, so the parts sum to `total`.
    pub fn share(self, total: u64) -> u64 {
        let (n, i) = (u64::from(self.workers), u64::from(self.index));
        total / n + u64::from(i < total % n)
    }

    /// Where this worker's open-model arrivals fall among the whole run's. Arrival k
    /// (1-based) of the whole schedule belongs to worker (k - 1) mod N; on the worker's
    /// own schedule (every rate divided by N) that arrival is due when the integral of
    /// the rate reaches n + (index + 1) / N. So the workers' arrivals interleave into
    /// exactly the single-process schedule instead of landing N at a time.
    pub fn arrival_phase(self) -> f64 {
        f64::from(self.index + 1) / f64::from(self.workers)
    }

    /// This worker's part of `spec`: rates divided by N, users and iterations split
    /// with [`share`](Self::share), `max_in_flight` and `pre_allocated` divided rounding up.
    pub fn split(self, spec: &LoadSpec) -> LoadSpec {
        let n = f64::from(self.workers);
        let executor = match &spec.executor {
            Executor::Closed { users } => Executor::Closed {
                users: u32::try_from(self.share(u64::from(*users))).unwrap_or(u32::MAX),
            },
            Executor::Open {
                rate,
                max_in_flight,
                pre_allocated,
            } => Executor::Open {
                rate: match rate {
                    RateSchedule::Constant(rate) => RateSchedule::Constant(rate / n),
                    RateSchedule::Ramping { start, stages } => RateSchedule::Ramping {
                        start: start / n,
                        stages: stages
                            .iter()
                            .map(|stage| Stage {
                                duration: stage.duration,
                                target: stage.target / n,
                            })
                            .collect(),
                    },
                },
                max_in_flight: max_in_flight.div_ceil(self.workers),
                pre_allocated: pre_allocated.map(|n| n.div_ceil(self.workers)),
            },
        };
        LoadSpec {
            executor,
            iterations: spec.iterations.map(|total| self.share(total)),
            ..spec.clone()
        }
    }
}

impl WorkerSlice {
    /// The fraction of `spec`'s whole load this worker drives: its share of the
    /// iterations when they bound the run, else of the users, else 1/N of the rate.
    pub fn assigned(self, spec: &LoadSpec) -> f64 {
        let part = |total: u64| {
            if total == 0 {
                1.0 / f64::from(self.workers)
            } else {
                self.share(total) as f64 / total as f64
            }
        };
        match (spec.iterations, &spec.executor) {
            (Some(total), _) => part(total),
            (None, Executor::Closed { users }) => part(u64::from(*users)),
            (None, Executor::Open { .. }) => 1.0 / f64::from(self.workers),
        }
    }

    /// Records on a worker's `report` the part of each load scenario's whole load it
    /// was given and the part that ran (see [`PlanShare`]): all of it, unless the run
    /// was interrupted; then as far as it got towards its duration or its iteration
    /// count (dropped arrivals count as reached: `dropped` reports them).
    pub fn record_shares(self, report: &mut RunReport, scenarios: &[Scenario]) {
        for scenario in scenarios {
            let (Some(spec), Some(figures)) = (
                &scenario.load,
                report
                    .scenarios
                    .iter()
                    .find(|s| s.name == scenario.name)
                    .and_then(|s| s.load.as_ref()),
            ) else {
                continue;
            };
            let assigned = self.assigned(spec);
            // A run that was not interrupted ran its share to the end (its last
            // arrivals may fall a little short of the planned duration).
            let ran = if report.interrupted {
                assigned * completion(&self.split(spec), figures)
            } else {
                assigned
            };
            report
                .plan_share
                .insert(scenario.name.clone(), PlanShare { assigned, ran });
        }
    }
}

/// How much of its own (already split) `spec` a load run got through, 0 to 1.
fn completion(spec: &LoadSpec, figures: &LoadFigures) -> f64 {
    let by_iterations = spec.iterations.map(|planned| {
        if planned == 0 {
            1.0
        } else {
            (figures.iterations + figures.dropped) as f64 / planned as f64
        }
    });
    let by_time = spec
        .duration
        .filter(|d| !d.is_zero())
        .map(|planned| figures.duration_s / planned.as_secs_f64());
    by_iterations
        .into_iter()
        .chain(by_time)
        .fold(0.0, f64::max)
        .clamp(0.0, 1.0)
}

/// SHA-256 (hex) of the scenarios as they will run: the plans' content, the selection
/// and the command-line overrides, but not the worker split. Workers of one run agree
/// on it; `merge` refuses reports that don't.
pub fn plan_digest(scenarios: &[Scenario]) -> String {
    // `Debug` covers every field that shapes a run; all workers run the same binary,
    // so its formatting is the same on each.
    // Regression tolerances judge a comparison with another run, not this run: tuning
    // them keeps the digest, so the last baseline stays comparable.
    let mut scenarios = scenarios.to_vec();
    for load in scenarios.iter_mut().filter_map(|s| s.load.as_mut()) {
        load.regression.clear();
    }
    hex::encode(Sha256::digest(format!("{scenarios:?}").as_bytes()))
}

/// Parses `--start-at`: an RFC 3339 instant (`2026-11-23T15:00:00Z`) or seconds since
/// the Unix epoch (`1795446000`, as `date +%s` prints).
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        // In whole microseconds: "1795446000.951" is 1795446000.95099998 as an f64,
        // and must not be recorded a millisecond early.
        let micros = (seconds * 1e6).round();
        return (0.0..u64::MAX as f64)
            .contains(&micros)
            .then(|| SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(micros as u64)))
            .flatten()
            .ok_or_else(|| {
                format!(
                    "{text}: seconds since the epoch must be zero or more, and not far beyond today"
                )
            });
    }
    humantime::parse_rfc3339_weak(text).map_err(|err| {
        format!(
            "{text}: {err}; give an RFC 3339 instant such as 2026-11-23T15:00:00Z, or seconds since the epoch"
        )
    })
}

/// Milliseconds since the Unix epoch (0 for an instant before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The start record of a run that was asked to start at `requested` by `via`
/// ("start-at", "rendezvous"; "immediate" when nothing was asked), taken now, as its
/// scenarios begin.
pub fn start_times(via: &str, requested: Option<SystemTime>) -> StartTimes {
    StartTimes {
        via: via.to_owned(),
        requested_unix_ms: requested.map(unix_ms),
        actual_unix_ms: unix_ms(SystemTime::now()),
    }
}

/// Waits for `--start-at` (or an interrupt). A start already past is not an error — a
/// worker scheduled late still contributes — but `merge` will see its offset.
pub async fn wait_for_start(start_at: SystemTime, cancel: &CancellationToken) {
    match start_at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {}
            }
        }
        Err(late) if late.duration() > Duration::from_secs(1) => tracing::warn!(
            "--start-at was {} ago; starting now, out of step with the other workers",
            humantime::format_duration(Duration::from_millis(late.duration().as_millis() as u64))
        ),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(executor: Executor, iterations: Option<u64>) -> LoadSpec {
        LoadSpec {
            executor,
            duration: Some(Duration::from_secs(10)),
            iterations,
            think_time: Duration::ZERO,
            thresholds: Vec::new(),
            regression: Vec::new(),
        }
    }

    #[test]
    fn shares_sum_to_the_whole_and_differ_by_at_most_one() {
        for workers in 1..=7 {
            for total in [0, 1, 5, 6, 7, 100, 1_001] {
                let shares: Vec<u64> = (0..workers)
                    .map(|i| WorkerSlice::new(i, workers).unwrap().share(total))
                    .collect();
                assert_eq!(shares.iter().sum::<u64>(), total, "{workers} {total}");
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
            }
        }
    }

    #[test]
    fn split_divides_rates_users_iterations_and_in_flight() {
        let worker = WorkerSlice::new(1, 4).unwrap();
        let open = worker.split(&spec(
            Executor::Open {
                rate: RateSchedule::Ramping {
                    start: 100.0,
                    stages: vec![Stage {
                        duration: Duration::from_secs(5),
                        target: 1000.0,
                    }],
                },
                max_in_flight: 10,
                pre_allocated: Some(10),
            },
            Some(10),
        ));
        assert_eq!(
            open.executor,
            Executor::Open {
                rate: RateSchedule::Ramping {
                    start: 25.0,
                    stages: vec![Stage {
                        duration: Duration::from_secs(5),
                        target: 250.0,
                    }],
                },
                max_in_flight: 3,
                pre_allocated: Some(3),
            }
        );
        assert_eq!(open.iterations, Some(3)); // 10 = 3 + 3 + 2 + 2
        assert_eq!(open.duration, Some(Duration::from_secs(10)));
        let closed = worker.split(&spec(Executor::Closed { users: 5 }, None));
        assert_eq!(closed.executor, Executor::Closed { users: 1 }); // 5 = 2 + 1 + 1 + 1
    }

    #[test]
    fn worker_index_must_be_below_workers() {
        assert!(WorkerSlice::new(0, 0).is_err());
        let err = WorkerSlice::new(3, 3).unwrap_err();
        assert!(err.contains("from 0 to 2"), "{err}");
    }

    #[test]
    fn start_at_takes_rfc3339_or_epoch_seconds() {
        let instant = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_446_000);
        assert_eq!(parse_start_at("1795446000"), Ok(instant));
        assert_eq!(parse_start_at("2026-11-23T15:00:00Z"), Ok(instant));
        let with_ms = parse_start_at("1796053814.951").unwrap();
        assert_eq!(unix_ms(with_ms), 1_796_053_814_951);
        let err = parse_start_at("tomorrow").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(parse_start_at("-5").is_err());
    }
}

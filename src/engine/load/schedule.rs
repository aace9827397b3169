//! When each open-model arrival is due: constant rates, and linear ramps through
//! stages, integrated exactly so the schedule never drifts.

use std::time::Duration;

use crate::plan::model::RateSchedule;

/// Arrival times as offsets from the load's start.
#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    /// (stage start offset s, start rate, end rate, stage length s, arrivals before it)
    pieces: Vec<Piece>,
    /// Arrival n is due when the rate's integral reaches n + phase: 1 for a whole run,
    /// (index + 1) / N for a worker's share (see `WorkerSlice::arrival_phase`).
    phase: f64,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    start_s: f64,
    from: f64,
    to: f64,
    length_s: f64,
    arrivals_before: f64,
}

impl ArrivalSchedule {
    #[cfg(test)]
    pub fn new(schedule: &RateSchedule) -> Self {
        Self::with_phase(schedule, 1.0)
    }

    /// The schedule of a worker whose arrivals interleave with the other workers'.
    pub fn with_phase(schedule: &RateSchedule, phase: f64) -> Self {
        let pieces = match schedule {
            RateSchedule::Constant(rate) => vec![Piece {
                start_s: 0.0,
                from: *rate,
                to: *rate,
                length_s: f64::INFINITY,
                arrivals_before: 0.0,
            }],
            RateSchedule::Ramping { start, stages } => {
                let mut pieces = Vec::with_capacity(stages.len());
                let (mut at, mut from, mut before) = (0.0, *start, 0.0);
                for stage in stages {
                    let length = stage.duration.as_secs_f64();
                    pieces.push(Piece {
                        start_s: at,
                        from,
                        to: stage.target,
                        length_s: length,
                        arrivals_before: before,
                    });
                    before += (from + stage.target) / 2.0 * length;
                    at += length;
                    from = stage.target;
                }
                pieces
            }
        };
        Self { pieces, phase }
    }

    /// When arrival number `n` (0-based) is due, or `None` when the schedule ends first.
    pub fn due(&self, n: u64) -> Option<Duration> {
        // Arrival n is due when the integral of the rate reaches n + 1 (n + phase
        // for a worker's share): the first one after one full period, as a steady 1000/s
        // source sends its first at 1 ms.
        let target = n as f64 + self.phase;
        for piece in &self.pieces {
            let within = target - piece.arrivals_before;
            let in_piece = (piece.from + piece.to) / 2.0 * piece.length_s;
            if within > in_piece {
                continue;
            }
            // Solve from*t + (to-from)/(2L)*t^2 = within for t in [0, L].
            let slope = if piece.length_s.is_finite() {
                (piece.to - piece.from) / piece.length_s
            } else {
                0.0
            };
            let t = if slope.abs() < 1e-12 {
                if piece.from <= 0.0 {
                    continue;
                }
                within / piece.from
            } else {
                let a = slope / 2.0;
                let disc = piece.from * piece.from + 4.0 * a * within;
                (-piece.from + disc.max(0.0).sqrt()) / (2.0 * a)
            };
            return Some(offset(piece.start_s + t));
        }
        None
    }

    /// Total length of a ramping schedule (infinite for a constant rate).
    pub fn length(&self) -> Option<Duration> {
        let last = self.pieces.last()?;
        let end = last.start_s + last.length_s;
        end.is_finite().then(|| Duration::from_secs_f64(end))
    }

    /// Arrivals due in `[0, within)`, for the mean target rate.
    pub fn arrivals_within(&self, within: Duration) -> f64 {
        let t = within.as_secs_f64();
        let mut total = 0.0;
        for piece in &self.pieces {
            if t <= piece.start_s {
                break;
            }
            let span = (t - piece.start_s).min(piece.length_s);
            let slope = if piece.length_s.is_finite() {
                (piece.to - piece.from) / piece.length_s
            } else {
                0.0
            };
            total += piece.from * span + slope * span * span / 2.0;
        }
        total
    }
}

/// `seconds` as a duration, to the nanosecond: what `Duration::from_secs_f64` gives
/// (short of its exact rounding in the last nanosecond) at a fraction of its cost, which
/// showed on every arrival; negative is zero, and what would overflow saturates.
fn offset(seconds: f64) -> Duration {
    Duration::from_nanos((seconds * 1e9).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Stage;

    #[test]
    fn a_constant_rate_is_evenly_spaced() {
        let schedule = ArrivalSchedule::new(&RateSchedule::Constant(1000.0));
        assert_eq!(schedule.due(0), Some(Duration::from_millis(1)));
        assert_eq!(schedule.due(999), Some(Duration::from_secs(1)));
        let d = schedule.due(19_999).unwrap().as_secs_f64();
        assert!((d - 20.0).abs() < 1e-9, "{d}");
        assert_eq!(schedule.length(), None);
        assert!((schedule.arrivals_within(Duration::from_secs(20)) - 20_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_ramp_integrates_exactly() {
        // 0 -> 100/s over 10 s gives 500 arrivals; then 100/s for 5 s gives 500 more.
        let schedule = ArrivalSchedule::new(&RateSchedule::Ramping {
            start: 0.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(5),
                    target: 100.0,
                },
            ],
        });
        let end_of_ramp = schedule.due(499).unwrap().as_secs_f64();
        assert!((end_of_ramp - 10.0).abs() < 1e-6, "{end_of_ramp}");
        let last = schedule.due(999).unwrap().as_secs_f64();
        assert!((last - 15.0).abs() < 1e-6, "{last}");
        assert_eq!(schedule.due(1000), None);
        assert_eq!(schedule.length(), Some(Duration::from_secs(15)));
        // Arrivals are monotonic.
        let times: Vec<_> = (0..1000).map(|n| schedule.due(n).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_zero_rate_stage_schedules_nothing() {
        let schedule = ArrivalSchedule::new(&RateSchedule::Ramping {
            start: 0.0,
            stages: vec![Stage {
                duration: Duration::from_secs(5),
                target: 0.0,
            }],
        });
        assert_eq!(schedule.due(0), None);
    }

    /// N workers' schedules (rates divided by N, phased) interleave into exactly the
    /// single-process schedule: the same arrival times, none twice, none missing.
    #[test]
    fn worker_schedules_interleave_into_the_whole() {
        use crate::scale_out::WorkerSlice;
        let ramp = RateSchedule::Ramping {
            start: 10.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(2),
                    target: 700.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 300.0,
                },
            ],
        };
        // Between arrivals, so float rounding cannot put one on either side.
        const CUTOFF: Duration = Duration::from_micros(2_999_500);
        for (whole, workers) in [(RateSchedule::Constant(1000.0), 3), (ramp, 4)] {
            let single = ArrivalSchedule::new(&whole);
            let expected: Vec<Duration> = (0..)
                .map_while(|n| single.due(n))
                .take_while(|t| *t < CUTOFF)
                .collect();
            let mut merged: Vec<Duration> = Vec::new();
            for index in 0..workers {
                let worker = WorkerSlice::new(index, workers).unwrap();
                let spec = crate::plan::model::LoadSpec {
                    executor: crate::plan::model::Executor::Open {
                        rate: whole.clone(),
                        max_in_flight: 1,
                        pre_allocated: None,
                    },
                    duration: None,
                    iterations: None,
                    think_time: Duration::ZERO,
                    thresholds: Vec::new(),
                    regression: Vec::new(),
                };
                let crate::plan::model::Executor::Open { rate, .. } = worker.split(&spec).executor
                else {
                    unreachable!("an open spec splits into an open spec")
                };
                let schedule = ArrivalSchedule::with_phase(&rate, worker.arrival_phase());
                merged.extend(
                    (0..)
                        .map_while(|n| schedule.due(n))
                        .take_while(|t| *t < CUTOFF),
                );
            }
            merged.sort();
            assert_eq!(merged.len(), expected.len(), "{workers} workers");
            for (got, want) in merged.iter().zip(&expected) {
                let gap = got.abs_diff(*want);
                assert!(gap < Duration::from_micros(1), "{got:?} vs {want:?}");
            }
        }
    }
}

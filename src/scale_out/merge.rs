//! `merge`: the reports of a scaled-out run's workers into the report one process would
//! have written. Histograms are added bucket by bucket (HdrHistograms of one layout merge
//! without loss), counts are summed, rates are taken over the window the workers
//! covered together, and thresholds are judged again on the merged figures. Percentiles
//! are never averaged: a merged p99 is the p99 of every sample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::metrics::Latency;
use crate::metrics::codec::CodecError;
use crate::metrics::error_codes::ErrorCodes;
use crate::metrics::thresholds::{self, Measured};
use crate::plan::parse_threshold;
use crate::results::{
    CheckResult, IntervalFigures, LoadFigures, MergedFrom, Outcome, PlanShare, RunReport,
    ScenarioReport, StepFigures, verdict, worker_list,
};

/// Workers whose loads started further apart than this are out of step: their
/// per-second figures no longer line up, and the merged report says so.
const OUT_OF_STEP_MS: u64 = 100;
/// A worker that began later than this after the start it was asked for is named.
const LATE_START_MS: u64 = 100;
/// Below this fraction of the plan's load having run, the merged report says so.
const RAN_IN_FULL: f64 = 0.999;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a keyclaim-harness report ({source}); give merge the directories that `run --report-dir` wrote",
        path.display()
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{}: not a worker's report; run each worker with --workers N --worker-index I",
        path.display()
    )]
    NotAWorker { path: PathBuf },
    #[error(
        "{} and {} are both worker {index}; give each worker its own --worker-index",
        first.display(),
        second.display()
    )]
    Overlap {
        index: u32,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "{} ran with --workers {first_workers} but {} with --workers {second_workers}; merge the workers of one run",
        first.display(),
        second.display()
    )]
    WorkerCount {
        first: PathBuf,
        first_workers: u32,
        second: PathBuf,
        second_workers: u32,
    },
    #[error(
        "{} and {} come from different runs: {why}; merge only the workers of one run",
        first.display(),
        second.display()
    )]
    DifferentRuns {
        first: PathBuf,
        second: PathBuf,
        why: String,
    },
    #[error("no report for worker(s) {} of {workers}; add their directories, or pass --allow-missing", worker_list(.missing))]
    Missing { missing: Vec<u32>, workers: u32 },
    #[error("{}: scenario {scenario}: {source}", path.display())]
    Histogram {
        path: PathBuf,
        scenario: String,
        source: CodecError,
    },
}

/// One worker's report and where it came from (for messages).
pub struct WorkerReport {
    pub path: PathBuf,
    pub report: RunReport,
}

/// Reads `DIR/report.json` (or the file itself, when given one).
pub fn read(dir: &Path) -> Result<WorkerReport, MergeError> {
    let path = if dir.is_dir() {
        dir.join(crate::report::JSON_FILE)
    } else {
        dir.to_owned()
    };
    let text = std::fs::read_to_string(&path).map_err(|source| MergeError::Read {
        path: path.clone(),
        source,
    })?;
    let report = serde_json::from_str(&text).map_err(|source| MergeError::Parse {
        path: path.clone(),
        source,
    })?;
    Ok(WorkerReport { path, report })
}

/// Merges the workers' reports after checking they are the workers of one run, each
/// once, and (unless `allow_missing`) all of them.
pub fn merge(inputs: Vec<WorkerReport>, allow_missing: bool) -> Result<RunReport, MergeError> {
    merge_explained(inputs, allow_missing, BTreeMap::new())
}

/// [`merge`], told why missing workers are missing (a rendezvous collector knows):
/// the merged report records it and its warnings say it.
pub fn merge_explained(
    mut inputs: Vec<WorkerReport>,
    allow_missing: bool,
    missing_why: BTreeMap<u32, String>,
) -> Result<RunReport, MergeError> {
    let mut from = check_inputs(&mut inputs, allow_missing)?;
    from.missing_why = missing_why
        .into_iter()
        .filter(|(index, _)| from.missing.contains(index))
        .collect();
    let first = &inputs[0];
    let strict = inputs.iter().any(|i| i.report.strict);
    let late = late_starts(&inputs);

    let mut scenarios = Vec::with_capacity(first.report.scenarios.len());
    let mut plan_share = BTreeMap::new();
    for position in 0..first.report.scenarios.len() {
        let shares: Vec<(&WorkerReport, &ScenarioReport)> = inputs
            .iter()
            .map(|input| (input, &input.report.scenarios[position]))
            .collect();
        let merged = if shares.iter().any(|(_, s)| s.load.is_some()) {
            let mut merged = merge_load(&shares, strict)?;
            merged.warnings.extend(late.iter().cloned());
            if let Some(share) = sum_shares(&shares) {
                if share.ran < RAN_IN_FULL {
                    merged.warnings.push(ran_warning(share, &from));
                }
                plan_share.insert(merged.name.clone(), share);
            }
            merged
        } else {
            merge_conformance(&shares, &from.missing, strict)
        };
        scenarios.push(merged);
    }

    let (start, end) = inputs.iter().fold((None, None), |(start, end), input| {
        let Ok(began) = humantime::parse_rfc3339(&input.report.started_at) else {
            return (start, end);
        };
        let ended = began + Duration::from_secs_f64(input.report.elapsed_s.max(0.0));
        (
            Some(start.map_or(began, |s: SystemTime| s.min(began))),
            Some(end.map_or(ended, |e: SystemTime| e.max(ended))),
        )
    });
    let elapsed_s = match (start, end) {
        (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default().as_secs_f64(),
        _ => inputs
            .iter()
            .map(|i| i.report.elapsed_s)
            .fold(0.0, f64::max),
    };
    let mut targets: Vec<&str> = Vec::new();
    for input in &inputs {
        if !targets.contains(&input.report.target.as_str()) {
            targets.push(&input.report.target);
        }
    }
    Ok(RunReport {
        passed: scenarios.iter().all(|s| s.passed),
        interrupted: inputs.iter().any(|i| i.report.interrupted),
        strict,
        plans: first.report.plans.clone(),
        target: targets.join(", "),
        started_at: start.map_or_else(
            || first.report.started_at.clone(),
            |s| humantime::format_rfc3339_seconds(s).to_string(),
        ),
        elapsed_s,
        scenarios,
        plan_digest: first.report.plan_digest.clone(),
        worker: None,
        merged: Some(from),
        start: None,
        plan_share,
        insecure: inputs.iter().any(|i| i.report.insecure),
    })
}

/// One line per worker that began more than [`LATE_START_MS`] after the start it was
/// asked for (its report's `start`), judged on its own clock.
fn late_starts(inputs: &[WorkerReport]) -> Vec<String> {
    inputs
        .iter()
        .filter_map(|input| {
            let start = input.report.start.as_ref()?;
            let late = start.late_by()?;
            (late.as_millis() > u128::from(LATE_START_MS)).then(|| {
                format!(
                    "worker {} started {} after the requested start ({}); its load ran out of step with the others",
                    input.report.worker.map_or(0, |w| w.index),
                    seconds(late),
                    start.via
                )
            })
        })
        .collect()
}

/// "90.4s", "250ms": a lateness or a spread as people read it.
fn seconds(span: Duration) -> String {
    if span >= Duration::from_secs(1) {
        format!("{:.1}s", span.as_secs_f64())
    } else {
        format!("{}ms", span.as_millis())
    }
}

/// The merged part of a scenario's load: the sum of the workers' parts; `None` when
/// the reports do not say (written before shares were recorded, or not workers').
fn sum_shares(shares: &[(&WorkerReport, &ScenarioReport)]) -> Option<PlanShare> {
    shares
        .iter()
        .map(|(input, scenario)| input.report.plan_share.get(&scenario.name).copied())
        .try_fold(
            PlanShare {
                assigned: 0.0,
                ran: 0.0,
            },
            |sum, share| {
                let share = share?;
                Some(PlanShare {
                    assigned: sum.assigned + share.assigned,
                    ran: sum.ran + share.ran,
                })
            },
        )
}

fn ran_warning(share: PlanShare, from: &MergedFrom) -> String {
    let mut why = Vec::new();
    for index in &from.missing {
        match from.missing_why.get(index) {
            Some(reason) => why.push(format!("worker {index} missing ({reason})")),
            None => why.push(format!("worker {index} missing")),
        }
    }
    if share.ran + 1e-9 < share.assigned {
        why.push("a worker's load was cut short (interrupted)".into());
    }
    format!(
        "{:.1}% of the plan's load ran: {}",
        share.ran * 100.0,
        if why.is_empty() {
            "the workers were given less than the whole".to_owned()
        } else {
            why.join("; ")
        }
    )
}

/// Refuses what cannot be merged; sorts the inputs by worker index and says which
/// workers they are.
fn check_inputs(
    inputs: &mut [WorkerReport],
    allow_missing: bool,
) -> Result<MergedFrom, MergeError> {
    let mut tags = Vec::with_capacity(inputs.len());
    for input in inputs.iter() {
        match input.report.worker {
            Some(tag) => tags.push(tag),
            None => {
                return Err(MergeError::NotAWorker {
                    path: input.path.clone(),
                });
            }
        }
    }
    inputs.sort_by_key(|input| input.report.worker.map(|w| w.index));
    tags.sort_by_key(|tag| tag.index);
    let (Some(first), Some(first_tag)) = (inputs.first(), tags.first()) else {
        return Err(MergeError::Missing {
            missing: Vec::new(),
            workers: 0,
        });
    };
    let workers = first_tag.workers;
    for (pair, tag) in inputs.windows(2).zip(tags.windows(2)) {
        if tag[0].index == tag[1].index {
            return Err(MergeError::Overlap {
                index: tag[0].index,
                first: pair[0].path.clone(),
                second: pair[1].path.clone(),
            });
        }
    }
    for (other, tag) in inputs.iter().zip(&tags).skip(1) {
        if tag.workers != workers {
            return Err(MergeError::WorkerCount {
                first: first.path.clone(),
                first_workers: workers,
                second: other.path.clone(),
                second_workers: tag.workers,
            });
        }
        let different = |why: String| MergeError::DifferentRuns {
            first: first.path.clone(),
            second: other.path.clone(),
            why,
        };
        if other.report.plans != first.report.plans {
            return Err(different(format!(
                "plans {:?} vs {:?}",
                first.report.plans, other.report.plans
            )));
        }
        if other.report.plan_digest != first.report.plan_digest {
            return Err(different(
                "the plans' content, the selected scenarios or the overrides (--rate, --users, --duration...) differ".into(),
            ));
        }
        let names = |r: &RunReport| {
            r.scenarios
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        if names(&other.report) != names(&first.report) {
            return Err(different("they hold different scenarios".into()));
        }
    }
    if let Some((out_of_range, _)) = inputs
        .iter()
        .zip(&tags)
        .find(|(_, tag)| tag.index >= workers)
    {
        return Err(MergeError::DifferentRuns {
            first: first.path.clone(),
            second: out_of_range.path.clone(),
            why: format!("worker index beyond --workers {workers}"),
        });
    }
    let indexes: Vec<u32> = tags.iter().map(|tag| tag.index).collect();
    let missing: Vec<u32> = (0..workers).filter(|i| !indexes.contains(i)).collect();
    if !missing.is_empty() && !allow_missing {
        return Err(MergeError::Missing { missing, workers });
    }
    Ok(MergedFrom {
        workers,
        indexes,
        missing,
        missing_why: BTreeMap::new(),
    })
}

/// A conformance scenario ran on worker 0 only: its verdict is worker 0's.
fn merge_conformance(
    shares: &[(&WorkerReport, &ScenarioReport)],
    missing: &[u32],
    strict: bool,
) -> ScenarioReport {
    let ran = shares
        .iter()
        .find(|(input, _)| input.report.worker.is_some_and(|w| w.index == 0));
    match ran {
        Some((_, report)) => (*report).clone(),
        None => {
            let mut report = shares[0].1.clone();
            report.checks = vec![CheckResult {
                name: "worker".into(),
                outcome: Outcome::Skipped,
                message: format!(
                    "{}: worker 0, which runs conformance scenarios, has no report (missing: {})",
                    report.name,
                    worker_list(missing)
                ),
                evidence: None,
            }];
            (report.passed, report.skipped) = verdict(&report.checks, strict);
            report
        }
    }
}

/// One interval of the merged timeline while it is being summed.
#[derive(Default)]
struct IntervalSum {
    duration_s: f64,
    requests: u64,
    failed: u64,
    latency: Latency,
}

fn merge_load(
    shares: &[(&WorkerReport, &ScenarioReport)],
    strict: bool,
) -> Result<ScenarioReport, MergeError> {
    let first = shares[0].1;
    let loads: Vec<(&WorkerReport, &LoadFigures)> = shares
        .iter()
        .filter_map(|(input, s)| s.load.as_ref().map(|load| (*input, load)))
        .collect();
    let decode = |input: &WorkerReport, text: &str| {
        Latency::decode(text).map_err(|source| MergeError::Histogram {
            path: input.path.clone(),
            scenario: first.name.clone(),
            source,
        })
    };

    // The merged timeline starts with the earliest worker; each worker's intervals are
    // placed by its own start's offset from it.
    let base_ms = loads
        .iter()
        .map(|(_, l)| l.start_unix_ms)
        .min()
        .unwrap_or(0);
    let window_s = loads
        .iter()
        .map(|(_, l)| (l.start_unix_ms - base_ms) as f64 / 1_000.0 + l.duration_s)
        .fold(0.0, f64::max)
        .max(1e-3);

    let mut whole = Latency::default();
    let mut steps: Vec<(String, u64, u64, Latency)> = Vec::new();
    let mut intervals: BTreeMap<u64, IntervalSum> = BTreeMap::new();
    let mut status_counts: BTreeMap<String, u64> = BTreeMap::new();
    // Bounded as a run's own table is, however many workers (or however a report
    // was edited): a few dozen codes and `other`.
    let mut error_codes = ErrorCodes::default();
    let sum = |f: fn(&LoadFigures) -> u64| loads.iter().map(|(_, l)| f(l)).sum::<u64>();
    for (input, load) in &loads {
        whole.merge(&decode(input, &load.histogram)?);
        for (index, step) in load.steps.iter().enumerate() {
            if steps.len() <= index {
                steps.push((step.name.clone(), 0, 0, Latency::default()));
            }
            let merged = &mut steps[index];
            merged.1 += step.requests;
            merged.2 += step.failed;
            merged.3.merge(&decode(input, &step.histogram)?);
        }
        let offset_s = (load.start_unix_ms - base_ms) as f64 / 1_000.0;
        for interval in &load.intervals {
            let at = offset_s + interval.start_s;
            let slot = at.round().max(0.0);
            let merged = intervals.entry(slot as u64).or_default();
            merged.duration_s = merged.duration_s.max(interval.duration_s);
            merged.requests += interval.requests;
            merged.failed += interval.failed;
            merged.latency.merge(&decode(input, &interval.histogram)?);
        }
        for (status, n) in &load.status_counts {
            *status_counts.entry(status.clone()).or_default() += n;
        }
        error_codes.add_table(&load.error_codes, load.error_code_example.as_deref());
    }

    let (error_codes, error_code_example) = error_codes.into_parts();
    let requests: u64 = shares.iter().map(|(_, s)| s.requests).sum();
    // Rates are the sum of each worker's own rate over its own run: a worker that
    // started late adds its load rather than diluting everyone's over a longer window.
    // In step, this is the count over the window.
    let rate_sum = |count: fn(&ScenarioReport, &LoadFigures) -> u64| {
        shares
            .iter()
            .filter_map(|(_, s)| {
                let load = s.load.as_ref()?;
                Some(count(s, load) as f64 / load.duration_s.max(1e-3))
            })
            .sum::<f64>()
    };
    let achieved_rate = rate_sum(|_, l| l.iterations);
    let rps = rate_sum(|s, _| s.requests);
    let rate_seconds = if rps > 0.0 {
        requests as f64 / rps
    } else {
        window_s
    };
    let failed = sum(|l| l.failed_requests);
    let (iterations, dropped) = (sum(|l| l.iterations), sum(|l| l.dropped));
    let thresholds_written: Vec<String> = loads
        .first()
        .map(|(_, l)| l.thresholds.clone())
        .unwrap_or_default();
    let mut checks: Vec<CheckResult> = Vec::new();
    let mut parsed = Vec::new();
    for text in &thresholds_written {
        match parse_threshold(text) {
            Ok(threshold) => parsed.push(threshold),
            Err(why) => checks.push(CheckResult {
                name: text.clone(),
                outcome: Outcome::Fail,
                message: format!("{}: cannot judge {why}", first.name),
                evidence: None,
            }),
        }
    }
    checks.extend(thresholds::evaluate(
        &parsed,
        &Measured {
            latency: &whole,
            requests,
            failed,
            seconds: rate_seconds,
            dropped,
            scheduled: iterations + dropped,
        },
    ));
    // What a worker found besides its thresholds (a flow that did not compile, an
    // interruption) stays, saying whose it was.
    for (input, scenario) in shares {
        let index = input.report.worker.map_or(0, |w| w.index);
        for check in &scenario.checks {
            if !thresholds_written.contains(&check.name) {
                checks.push(CheckResult {
                    name: format!("worker {index}: {}", check.name),
                    message: format!("worker {index}: {}", check.message),
                    ..check.clone()
                });
            }
        }
    }

    let mut warnings: Vec<String> = Vec::new();
    for (_, scenario) in shares {
        for warning in &scenario.warnings {
            if !warnings.contains(warning) {
                warnings.push(warning.clone());
            }
        }
    }
    // The spread of the workers' own starts, not their distance to a whole second: a
    // worker 90.0 s late is as out of step as one 90.4 s late.
    let spread_ms = loads
        .iter()
        .map(|(_, l)| l.start_unix_ms - base_ms)
        .max()
        .unwrap_or(0);
    if spread_ms > OUT_OF_STEP_MS {
        warnings.push(format!(
            "workers' loads started up to {} apart; per-second figures are placed in the nearest second, and rates are the sum of each worker's own (start workers with --rendezvous or --start-at to line them up). Whole-run figures are exact.",
            seconds(Duration::from_millis(spread_ms))
        ));
    }
    let executors: Vec<&str> = loads.iter().map(|(_, l)| l.executor.as_str()).collect();
    let executor = if executors.windows(2).all(|w| w[0] == w[1]) {
        format!(
            "{} workers × {}",
            loads.len(),
            executors.first().unwrap_or(&"")
        )
    } else {
        executors.join(" + ")
    };
    let target_rate = loads
        .iter()
        .map(|(_, l)| l.target_rate)
        .sum::<Option<f64>>();
    let figures = LoadFigures {
        model: loads
            .first()
            .map(|(_, l)| l.model.clone())
            .unwrap_or_default(),
        executor,
        target_rate,
        achieved_rate,
        duration_s: window_s,
        iterations,
        dropped,
        late: sum(|l| l.late),
        in_flight_at_end: sum(|l| l.in_flight_at_end),
        timeouts: sum(|l| l.timeouts),
        connection_errors: sum(|l| l.connection_errors),
        status_counts,
        error_codes,
        error_code_example,
        failed_requests: failed,
        steps: steps
            .into_iter()
            .map(|(name, requests, failed, latency)| StepFigures {
                name,
                requests,
                failed,
                latency_us: latency.summary(),
                histogram: latency.encode().unwrap_or_default(),
            })
            .collect(),
        histogram: whole.encode().unwrap_or_default(),
        intervals: fill_timeline(intervals),
        start_unix_ms: base_ms,
        thresholds: thresholds_written,
        regression: loads
            .first()
            .map(|(_, l)| l.regression.clone())
            .unwrap_or_default(),
        // Per process: a saturated worker's warning is among the merged warnings.
        generator: None,
        protocol: loads.first().and_then(|(_, l)| l.protocol.clone()),
        transport_error_example: loads
            .iter()
            .find_map(|(_, l)| l.transport_error_example.clone()),
    };
    Ok(ScenarioReport {
        name: first.name.clone(),
        id: first.id.clone(),
        tags: first.tags.clone(),
        description: first.description.clone(),
        passed: verdict(&checks, strict).0,
        // It ran on the workers: a merged load scenario is never a skip.
        skipped: false,
        checks,
        requests,
        errors: shares.iter().map(|(_, s)| s.errors).sum(),
        rate_limit_retries: shares.iter().map(|(_, s)| s.rate_limit_retries).sum(),
        rps,
        elapsed_s: shares.iter().map(|(_, s)| s.elapsed_s).fold(0.0, f64::max),
        latency_us: whole.summary(),
        warnings,
        load: Some(figures),
    })
}

/// The merged per-second timeline, with a zero interval for any second no worker
/// covered (so charts and `.hlog` readers see the gap as a gap).
fn fill_timeline(intervals: BTreeMap<u64, IntervalSum>) -> Vec<IntervalFigures> {
    let last = intervals.keys().next_back().copied();
    let mut intervals = intervals;
    let Some(last) = last else {
        return Vec::new();
    };
    (0..=last)
        .map(|second| {
            let sum = intervals.remove(&second).unwrap_or(IntervalSum {
                duration_s: 1.0,
                ..IntervalSum::default()
            });
            IntervalFigures {
                start_s: second as f64,
                duration_s: sum.duration_s,
                requests: sum.requests,
                failed: sum.failed,
                latency_us: sum.latency.summary(),
                histogram: sum.latency.encode().unwrap_or_default(),
            }
        })
        .collect()
}

//! Load scenarios: a flow repeated by closed-model users or open-model arrivals, every
//! request timed into HdrHistograms (from the intended start in the open model, as
//! wrk2 does, so stalls are not hidden), then judged by the plan's thresholds.

mod aggregate;
mod flow;
mod open;
mod progress;
mod schedule;
mod transport;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use aggregate::{Sample, aggregate};
use flow::Flow;
use progress::Progress;
use schedule::ArrivalSchedule;
use transport::{Target, UserConnection};

use crate::engine::settings::RunSettings;
use crate::metrics::codec;
use crate::metrics::thresholds;
use crate::plan::model::{Executor, LoadSpec, RateSchedule, Scenario, Threshold};
use crate::results::{
    CheckResult, GeneratorFigures, LoadFigures, LoadTick, Outcome, ScenarioReport, verdict,
};
use crate::scale_out::WorkerSlice;

/// Sample batches buffered between users and the aggregator; a full channel makes
/// users wait rather than grow memory.
const SAMPLE_QUEUE: usize = 4 * 1024;

pub async fn run(
    scenario: &Scenario,
    spec: &LoadSpec,
    settings: &RunSettings,
    cancel: &CancellationToken,
) -> ScenarioReport {
    let started = Instant::now();
    // A worker of several drives its share; the thresholds are judged on the merge.
    let worker = settings.worker.filter(|w| w.workers() > 1);
    let share;
    let spec = match worker {
        Some(worker) => {
            share = worker.split(spec);
            &share
        }
        None => spec,
    };
    let failure = |message: String| {
        report(
            scenario,
            vec![CheckResult {
                name: "load".into(),
                outcome: Outcome::Fail,
                message,
                evidence: None,
            }],
            None,
            started.elapsed(),
            settings.strict,
        )
    };
    let flow = match Flow::compile(&scenario.steps, &settings.credentials) {
        Ok(flow) => Arc::new(flow),
        Err(err) => return failure(format!("{}: {err}", scenario.name)),
    };
    let target = match Target::resolve(&settings.client).await {
        Ok(target) => target,
        Err(err) => return failure(format!("{}: {err}", scenario.name)),
    };
    let timeout = settings.request_timeout;
    // The open model's connections are open and warm before its clock starts, so no
    // arrival waits on a connect (k6's pre-allocated VUs, wrk2's pre-connected sockets).
    let ready = match &spec.executor {
        Executor::Open {
            rate,
            max_in_flight,
            pre_allocated,
        } => {
            let size = open::PoolSize::for_plan(rate, *max_in_flight, *pre_allocated);
            tokio::select! {
                ready = open::prepare(&flow, &target, timeout, size) => ready,
                () = cancel.cancelled() => Vec::new(),
            }
        }
        Executor::Closed { .. } => Vec::new(),
    };
    let pre_allocated = ready.len() as u64;
    let warm_up_requests = ready.iter().map(open::Ready::requests_before_clock).sum();
    let (samples, receiver) = mpsc::channel::<Vec<Sample>>(SAMPLE_QUEUE);
    let load_start = Instant::now();
    let cpu_at_start = open::process_cpu();
    let start_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let progress = Arc::new(Progress::default());
    let stop = cancel.child_token();
    let schedule = match &spec.executor {
        Executor::Open { rate, .. } => Some(ArrivalSchedule::with_phase(
            rate,
            worker.map_or(1.0, |w| w.arrival_phase()),
        )),
        Executor::Closed { .. } => None,
    };
    let duration = spec
        .duration
        .or_else(|| schedule.as_ref().and_then(ArrivalSchedule::length));
    // Durations too large for the clock (`--duration 1000000000y`) mean no deadline.
    let deadline = duration.and_then(|d| load_start.checked_add(d));
    let live = settings.live_metrics.as_ref().map(|metrics| {
        let progress = Arc::clone(&progress);
        let (_, _, target_rate) = describe(spec, duration, schedule.as_ref());
        metrics.scenario(&scenario.name, flow.step_names(), target_rate, move || {
            progress.gauges()
        })
    });
    let on_tick = Arc::clone(&settings.load_progress);
    let name = scenario.name.clone();
    let aggregator = tokio::spawn(aggregate(
        receiver,
        flow.steps(),
        load_start,
        live.clone(),
        move |tick| {
            on_tick(
                &name,
                &LoadTick {
                    planned: duration,
                    ..tick.clone()
                },
            )
        },
    ));

    let mut users = tokio::task::JoinSet::new();
    // The open model's generator reports here when it ends (not if it was abandoned).
    let (generator_done, mut generator_counts) = tokio::sync::oneshot::channel();
    match &spec.executor {
        Executor::Closed { users: count } => {
            for _ in 0..*count {
                let (flow, samples, progress, stop, target) = (
                    Arc::clone(&flow),
                    samples.clone(),
                    Arc::clone(&progress),
                    stop.clone(),
                    target.clone(),
                );
                let (iterations, think) = (spec.iterations, spec.think_time);
                users.spawn(async move {
                    let mut connection = UserConnection::new(target, timeout);
                    let mut state = flow.new_state();
                    while !stop.is_cancelled() && deadline.is_none_or(|d| Instant::now() < d) {
                        let n = progress.iterations.fetch_add(1, Ordering::Relaxed);
                        if iterations.is_some_and(|max| n >= max) {
                            progress.iterations.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        progress.in_flight.fetch_add(1, Ordering::Relaxed);
                        flow.run(&mut connection, &mut state, &samples, None).await;
                        progress.in_flight.fetch_sub(1, Ordering::Relaxed);
                        if !think.is_zero() {
                            tokio::time::sleep(think).await;
                        }
                    }
                    Flow::flush(&mut state, &samples).await;
                });
            }
        }
        Executor::Open { max_in_flight, .. } => {
            let run = open::OpenRun {
                flow: Arc::clone(&flow),
                samples: samples.clone(),
                progress: Arc::clone(&progress),
                stop: stop.clone(),
                target: target.clone(),
                timeout,
                schedule: schedule.clone().expect("open model has a schedule"),
                start: load_start,
                duration,
                iterations: spec.iterations,
                max_in_flight: u64::from(*max_in_flight),
            };
            users.spawn(async move {
                generator_done.send(open::drive(run, ready).await).ok();
            });
        }
    }
    drop(samples);

    // Stop starting iterations at the deadline (or Ctrl-C); give what is in flight one
    // request timeout to finish, then abandon it and count it.
    let grace = timeout.saturating_add(Duration::from_secs(1));
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline.into()) => {}
                        () = stop.cancelled() => {}
                    }
                }
                None => stop.cancelled().await,
            }
            stop.cancel();
        })
    };
    let drained = tokio::time::timeout_at(
        deadline
            .and_then(|d| d.checked_add(grace))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400))
            .into(),
        async { while users.join_next().await.is_some() {} },
    );
    let drained = tokio::select! {
        result = drained => result.is_ok(),
        () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => false,
    };
    let load_end = Instant::now();
    if let Some(live) = &live {
        live.end();
    }
    let cpu_used = cpu_at_start
        .zip(open::process_cpu())
        .map(|(a, b)| b.saturating_sub(a));
    stopper.abort();
    let in_flight_at_end = if drained {
        0
    } else {
        progress.in_flight.load(Ordering::Relaxed)
    };
    users.abort_all();
    while users.join_next().await.is_some() {}
    let totals = aggregator.await.expect("the aggregator does not panic");

    let run_length = duration
        .map(|d| d.min(load_end - load_start))
        .unwrap_or(load_end - load_start)
        .as_secs_f64()
        .max(1e-3);
    let iterations = progress.iterations.load(Ordering::Relaxed);
    let dropped = progress.dropped.load(Ordering::Relaxed);
    let mut steps = totals.steps;
    for (step, name) in steps.iter_mut().zip(flow.step_names()) {
        step.name = name;
    }
    let (model, executor, target_rate) = describe(spec, duration, schedule.as_ref());
    let late = progress.late.load(Ordering::Relaxed);
    let generator = matches!(spec.executor, Executor::Open { .. }).then(|| {
        let counts: open::GeneratorCounts = generator_counts.try_recv().unwrap_or_default();
        let wall = (load_end - load_start).as_secs_f64().max(1e-3);
        let mut figures = GeneratorFigures {
            pre_allocated,
            warm_up_requests,
            grown: counts.grown,
            growth_deferred: counts.growth_deferred,
            connects_on_arrival_path: counts.connects_on_path,
            start_lag_us: totals.start_lag.summary(),
            late_with_idle_connection: counts.late_with_idle,
            clock_lag_max_us: counts.clock_lag_max.as_micros() as u64,
            clock_tick_max_us: counts.clock_tick_max.as_micros() as u64,
            cpu_cores: cpu_used.map(|cpu| cpu.as_secs_f64() / wall),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            runtime_busy: counts.runtime_busy,
            saturated: false,
        };
        figures.saturated = open::saturation(&figures, iterations, late).is_some();
        figures
    });
    let figures = LoadFigures {
        model,
        executor,
        target_rate,
        achieved_rate: iterations as f64 / run_length,
        duration_s: run_length,
        iterations,
        dropped,
        late,
        in_flight_at_end,
        timeouts: totals.timeouts,
        connection_errors: totals.connection_errors,
        status_counts: totals.status_counts,
        error_codes: totals.error_codes,
        error_code_example: totals.error_code_example,
        failed_requests: totals.failed,
        protocol: Some(settings.client.tls().protocol().to_owned()),
        transport_error_example: totals
            .transport_error_example
            .map(|why| settings.redactor.redact(&why).into_owned()),
        steps,
        histogram: codec::encode(totals.latency.histogram()).unwrap_or_default(),
        intervals: totals.intervals,
        start_unix_ms,
        thresholds: spec.thresholds.iter().map(|t| t.source.clone()).collect(),
        regression: spec.regression.iter().map(|t| t.source.clone()).collect(),
        generator,
    };
    let measured = thresholds::Measured {
        latency: &totals.latency,
        requests: totals.requests,
        failed: totals.failed,
        seconds: run_length,
        dropped,
        scheduled: iterations + dropped,
    };
    let mut checks = match worker {
        None => thresholds::evaluate(&spec.thresholds, &measured),
        Some(worker) => left_to_merge(&spec.thresholds, worker),
    };
    if cancel.is_cancelled() {
        checks.push(CheckResult {
            name: crate::results::INTERRUPTED_CHECK.into(),
            outcome: Outcome::Skipped,
            message: format!("{}: interrupted; figures cover what ran", scenario.name),
            evidence: None,
        });
    }
    let mut scenario_report = report(
        scenario,
        checks,
        Some(figures),
        load_end - started,
        settings.strict,
    );
    scenario_report.requests = totals.requests;
    scenario_report.errors = totals.transport_errors;
    scenario_report.rps = totals.requests as f64 / run_length;
    scenario_report.latency_us = totals.latency.summary();
    if let Some(figures) = &scenario_report.load
        && let Some(generator) = &figures.generator
        && let Some(warning) = open::saturation(generator, figures.iterations, figures.late)
    {
        scenario_report.warnings.push(warning);
    }
    scenario_report
}

/// A worker's thresholds: skipped, because a worker holds only its share of the
/// samples (its p99 is not the run's, its rps a fraction); `merge` judges them on the
/// merged histograms and counts.
fn left_to_merge(thresholds: &[Threshold], worker: WorkerSlice) -> Vec<CheckResult> {
    thresholds
        .iter()
        .map(|threshold| CheckResult {
            name: threshold.source.clone(),
            outcome: Outcome::Delegated,
            message: format!(
                "{}: judged on the merged report (worker {} of {}; run `keyclaim-harness merge`)",
                threshold.source,
                worker.index(),
                worker.workers()
            ),
            evidence: None,
        })
        .collect()
}

fn describe(
    spec: &LoadSpec,
    duration: Option<Duration>,
    schedule: Option<&ArrivalSchedule>,
) -> (String, String, Option<f64>) {
    let length = duration
        .map(|d| format!(" for {}", humantime::format_duration(d)))
        .unwrap_or_default();
    let bound = spec
        .iterations
        .map(|n| format!(", at most {n} iterations"))
        .unwrap_or_default();
    match &spec.executor {
        Executor::Closed { users } => (
            "closed".into(),
            format!("closed {users} users{length}{bound}"),
            None,
        ),
        Executor::Open {
            rate,
            max_in_flight,
            ..
        } => {
            let mean = match (duration, schedule) {
                (Some(d), Some(schedule)) if !d.is_zero() => {
                    Some(schedule.arrivals_within(d) / d.as_secs_f64())
                }
                _ => match rate {
                    RateSchedule::Constant(r) => Some(*r),
                    RateSchedule::Ramping { .. } => None,
                },
            };
            let shape = match rate {
                RateSchedule::Constant(r) => format!("{r}/s"),
                RateSchedule::Ramping { start, stages } => {
                    format!("ramping {start}/s through {} stage(s)", stages.len())
                }
            };
            (
                "open".into(),
                format!("open {shape}{length}{bound}, at most {max_in_flight} in flight"),
                mean,
            )
        }
    }
}

/// A load scenario's report. It ran (it has figures, or failed to start), so it is
/// never reported as skipped, even when its thresholds are left to the merge.
fn report(
    scenario: &Scenario,
    checks: Vec<CheckResult>,
    load: Option<LoadFigures>,
    elapsed: Duration,
    strict: bool,
) -> ScenarioReport {
    let (passed, _) = verdict(&checks, strict);
    ScenarioReport {
        name: scenario.name.clone(),
        id: scenario.id.clone(),
        tags: scenario.tags.clone(),
        description: scenario.description.clone(),
        passed,
        skipped: false,
        checks,
        requests: 0,
        errors: 0,
        rate_limit_retries: 0,
        rps: 0.0,
        elapsed_s: elapsed.as_secs_f64(),
        latency_us: Default::default(),
        warnings: Vec::new(),
        load,
    }
}

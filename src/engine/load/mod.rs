//! Load scenarios: a flow repeated by closed-model users or open-model arrivals, every
//! request timed into HdrHistograms (from the intended start in the open model, as
//! wrk2 does, so stalls are not hidden), then judged by the plan's thresholds.

mod aggregate;
mod flow;
mod schedule;
mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use aggregate::{Sample, aggregate};
use flow::Flow;
use schedule::ArrivalSchedule;
use transport::{Target, UserConnection};

use crate::engine::settings::RunSettings;
use crate::metrics::codec;
use crate::metrics::thresholds;
use crate::plan::model::{Executor, LoadSpec, RateSchedule, Scenario, Threshold};
use crate::results::{CheckResult, LoadFigures, Outcome, ScenarioReport, verdict};
use crate::scale_out::WorkerSlice;

/// Sample batches buffered between users and the aggregator; a full channel makes
/// users wait rather than grow memory.
const SAMPLE_QUEUE: usize = 4 * 1024;
/// An open-model iteration that starts this much after its intended time is late.
const LATE_AFTER: Duration = Duration::from_millis(10);

/// Counters shared by the executors; touched once per iteration, not per sample.
#[derive(Default)]
struct Progress {
    iterations: AtomicU64,
    dropped: AtomicU64,
    late: AtomicU64,
    in_flight: AtomicU64,
}

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
    let (samples, receiver) = mpsc::channel::<Vec<Sample>>(SAMPLE_QUEUE);
    let load_start = Instant::now();
    let start_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let on_tick = Arc::clone(&settings.load_progress);
    let name = scenario.name.clone();
    let aggregator = tokio::spawn(aggregate(receiver, flow.steps(), load_start, move |tick| {
        on_tick(&name, tick)
    }));
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

    let mut users = tokio::task::JoinSet::new();
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
            let schedule = schedule.clone().expect("open model has a schedule");
            let (flow, samples, progress, stop, target) = (
                Arc::clone(&flow),
                samples.clone(),
                Arc::clone(&progress),
                stop.clone(),
                target.clone(),
            );
            let (iterations, max_in_flight) = (spec.iterations, u64::from(*max_in_flight));
            users.spawn(async move {
                open_scheduler(OpenRun {
                    flow,
                    samples,
                    progress,
                    stop,
                    target,
                    timeout,
                    schedule,
                    start: load_start,
                    duration,
                    iterations,
                    max_in_flight,
                })
                .await;
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
    let figures = LoadFigures {
        model,
        executor,
        target_rate,
        achieved_rate: iterations as f64 / run_length,
        duration_s: run_length,
        iterations,
        dropped,
        late: progress.late.load(Ordering::Relaxed),
        in_flight_at_end,
        timeouts: totals.timeouts,
        connection_errors: totals.connection_errors,
        status_counts: totals.status_counts,
        error_codes: totals.error_codes,
        error_code_example: totals.error_code_example,
        failed_requests: totals.failed,
        steps,
        histogram: codec::encode(totals.latency.histogram()).unwrap_or_default(),
        intervals: totals.intervals,
        start_unix_ms,
        thresholds: spec.thresholds.iter().map(|t| t.source.clone()).collect(),
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
            name: "interrupted".into(),
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

/// The open model's inputs, moved into its scheduler task.
struct OpenRun {
    flow: Arc<Flow>,
    samples: mpsc::Sender<Vec<Sample>>,
    progress: Arc<Progress>,
    stop: CancellationToken,
    target: Target,
    timeout: Duration,
    schedule: ArrivalSchedule,
    start: Instant,
    duration: Option<Duration>,
    iterations: Option<u64>,
    max_in_flight: u64,
}

/// Arrivals queued between the clock thread and the dispatcher.
const ARRIVAL_QUEUE: usize = 64 * 1024;
/// The clock thread checks for a stop at least this often while it sleeps.
const CLOCK_POLL: Duration = Duration::from_millis(20);

/// Starts each iteration at its scheduled time, whatever the target is doing. A
/// dedicated clock thread sleeps to each arrival with the OS's fine timer (tokio's
/// timer wheel has 1 ms ticks, which would add up to 1 ms of false latency to every
/// sub-millisecond request) and hands it over; each iteration keeps its own intended
/// start for latency. Connections are reused through a pool.
async fn open_scheduler(run: OpenRun) {
    let (arrivals, mut due) = mpsc::channel::<Instant>(ARRIVAL_QUEUE);
    let clock = {
        let (schedule, stop, start) = (run.schedule.clone(), run.stop.clone(), run.start);
        let (duration, iterations) = (run.duration, run.iterations);
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.is_cancelled() && iterations.is_none_or(|max| n < max) {
                let Some(offset) = schedule.due(n) else { break };
                if duration.is_some_and(|d| offset > d) {
                    break;
                }
                let intended = start + offset;
                loop {
                    let now = Instant::now();
                    if now >= intended || stop.is_cancelled() {
                        break;
                    }
                    std::thread::sleep((intended - now).min(CLOCK_POLL));
                }
                if stop.is_cancelled() || arrivals.blocking_send(intended).is_err() {
                    break;
                }
                n += 1;
            }
        })
    };
    let pool: Arc<std::sync::Mutex<Vec<(UserConnection, flow::IterationState)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let intended = tokio::select! {
            next = due.recv() => match next {
                Some(intended) => intended,
                None => break,
            },
            () = run.stop.cancelled() => break,
        };
        // Reap finished iterations so the set does not grow.
        while tasks.try_join_next().is_some() {}
        if run.progress.in_flight.load(Ordering::Relaxed) >= run.max_in_flight {
            run.progress.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if Instant::now().saturating_duration_since(intended) > LATE_AFTER {
            run.progress.late.fetch_add(1, Ordering::Relaxed);
        }
        run.progress.iterations.fetch_add(1, Ordering::Relaxed);
        run.progress.in_flight.fetch_add(1, Ordering::Relaxed);
        let idle = pool.lock().expect("not poisoned").pop();
        let (mut connection, mut state) = idle.unwrap_or_else(|| {
            (
                UserConnection::new(run.target.clone(), run.timeout),
                run.flow.new_state(),
            )
        });
        let (flow, samples, progress, pool) = (
            Arc::clone(&run.flow),
            run.samples.clone(),
            Arc::clone(&run.progress),
            Arc::clone(&pool),
        );
        tasks.spawn(async move {
            flow.run(&mut connection, &mut state, &samples, Some(intended))
                .await;
            Flow::flush(&mut state, &samples).await;
            progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            pool.lock().expect("not poisoned").push((connection, state));
        });
    }
    drop(due);
    clock.join().ok();
    while tasks.join_next().await.is_some() {}
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

//! Scale-out: worker processes each drive their share of a plan against one `serve`,
//! and `merge` turns their reports into one whose counts are the sums and whose
//! percentiles are those of every sample together, exactly; mixed-up inputs are refused.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::binary::{self, Finished};

use hdrhistogram::Histogram;
use keyclaim_harness::metrics::codec;
use keyclaim_harness::redact::Redactor;
use keyclaim_harness::results::{
    IntervalFigures, LoadFigures, PlanShare, RunReport, ScenarioReport, StartTimes, StepFigures,
    WorkerTag,
};

const KEY: &str = "kc_scale_out_key_0123";
const WORKERS: u32 = 3;
/// A worker or merge that has not ended by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(120);

fn plan() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans/scale_out.toml")
}

fn merge(dirs: &[PathBuf], out: &Path, extra: &[&str]) -> Finished {
    let mut args = vec!["merge"];
    args.extend(dirs.iter().map(|d| d.to_str().expect("UTF-8 path")));
    args.extend(["--out", out.to_str().expect("UTF-8 path")]);
    args.extend(extra);
    binary::spawn(&args).wait_bounded(DEADLINE)
}

fn read_report(dir: &Path) -> RunReport {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn load(scenario: &ScenarioReport) -> &LoadFigures {
    scenario.load.as_ref().expect("a load scenario")
}

fn decode(text: &str) -> Histogram<u64> {
    codec::decode(text).unwrap()
}

/// Every worker's share of one histogram field, added into one.
fn union_of(histograms: impl IntoIterator<Item = Histogram<u64>>) -> Histogram<u64> {
    let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for histogram in histograms {
        all.add(&histogram).unwrap();
    }
    all
}

/// Runs the scale-out plan as `WORKERS` processes at a shared `--start-at`.
fn run_workers(url: &str, root: &Path) -> (Vec<PathBuf>, SystemTime) {
    let start_at = SystemTime::now() + Duration::from_secs(3);
    let start_secs = start_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let plan = plan();
    let (workers, start) = (WORKERS.to_string(), format!("{start_secs:.3}"));
    let mut running = Vec::new();
    let mut dirs = Vec::new();
    for index in 0..WORKERS {
        let dir = root.join(format!("worker-{index}"));
        let index = index.to_string();
        running.push(binary::spawn(&[
            "run",
            plan.to_str().expect("UTF-8 path"),
            "--target",
            url,
            "--api-key",
            KEY,
            "--quiet",
            "--workers",
            &workers,
            "--worker-index",
            &index,
            "--start-at",
            &start,
            "--report-dir",
            dir.to_str().expect("UTF-8 path"),
        ]));
        dirs.push(dir);
    }
    for worker in running {
        let finished = worker.wait_bounded(DEADLINE);
        assert_eq!(finished.code, Some(0), "a worker failed: {finished:?}");
    }
    // The instant the workers were given: the text, to the millisecond.
    let start_at = keyclaim_harness::scale_out::parse_start_at(&start).unwrap();
    (dirs, start_at)
}

#[test]
fn workers_against_one_server_merge_into_exact_sums() {
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let (dirs, start_at) = run_workers(&served.url, root.path());
    let workers: Vec<RunReport> = dirs.iter().map(|d| read_report(d)).collect();

    for (index, report) in workers.iter().enumerate() {
        assert_eq!(
            report.worker,
            Some(WorkerTag {
                index: index as u32,
                workers: WORKERS
            })
        );
        // The report records the start it was asked for and when it began.
        let start = report.start.as_ref().expect("a worker records its start");
        assert_eq!(start.via, "start-at");
        assert_eq!(
            start.requested_unix_ms,
            Some(keyclaim_harness::scale_out::unix_ms(start_at))
        );
        assert!(start.actual_unix_ms >= start.requested_unix_ms.unwrap());
        let conformance = &report.scenarios[2];
        assert!(conformance.load.is_none());
        // Conformance runs on worker 0 only; the others skip it without failing.
        assert_eq!(conformance.skipped, index != 0, "{conformance:?}");
        assert!(conformance.passed);
        assert_eq!(conformance.requests > 0, index == 0);
        for scenario in &report.scenarios[..2] {
            let figures = load(scenario);
            // 300 iterations split 100/100/100; no worker started before the instant.
            assert_eq!(figures.iterations, 100, "{}", scenario.name);
            let start = SystemTime::UNIX_EPOCH + Duration::from_millis(figures.start_unix_ms);
            assert!(
                start + Duration::from_millis(1) >= start_at,
                "worker {index} started before --start-at"
            );
        }
    }

    let out = root.path().join("merged");
    let merged_run = merge(&dirs, &out, &[]);
    assert_eq!(merged_run.code, Some(0), "{merged_run:?}");
    let merged = read_report(&out);
    assert_eq!(merged.worker, None);
    let from = merged.merged.as_ref().unwrap();
    assert_eq!(
        (from.workers, from.indexes.clone()),
        (WORKERS, vec![0, 1, 2])
    );
    assert!(merged.passed, "{:#?}", merged.scenarios);

    assert_eq!(merged.scenarios[2], workers[0].scenarios[2]);
    for (position, scenario) in merged.scenarios[..2].iter().enumerate() {
        let shares: Vec<&ScenarioReport> = workers.iter().map(|w| &w.scenarios[position]).collect();
        let figures = load(scenario);
        // Counts are the sums, and the whole is what one process would have driven.
        assert_eq!(figures.iterations, 300, "{}", scenario.name);
        assert_eq!(
            scenario.requests,
            shares.iter().map(|s| s.requests).sum::<u64>()
        );
        assert_eq!(
            figures.status_counts.get("200").copied(),
            Some(scenario.requests)
        );
        // The merged histogram is the union of the workers' samples, bucket for bucket,
        // and its percentiles are that union's.
        let union = union_of(shares.iter().map(|s| decode(&load(s).histogram)));
        let whole = decode(&figures.histogram);
        assert_eq!(whole, union, "{}", scenario.name);
        assert_eq!(whole.len(), scenario.requests);
        assert_eq!(scenario.latency_us.p99, union.value_at_quantile(0.99));
        assert_eq!(scenario.latency_us.max, union.max());
        // The plan's flows: one step (create) and two (create, validate).
        let (steps, thresholds): (usize, &[&str]) = match scenario.name.as_str() {
            "closed-create" => (1, &["error_rate < 1%", "requests >= 300"]),
            "open-flow" => (2, &["error_rate < 1%", "requests >= 600", "p99 < 30s"]),
            other => panic!("unexpected scenario {other}"),
        };
        assert_eq!(figures.steps.len(), steps, "{}", scenario.name);
        for (step, merged_step) in figures.steps.iter().enumerate() {
            let union = union_of(
                shares
                    .iter()
                    .map(|s| decode(&load(s).steps[step].histogram)),
            );
            assert_eq!(decode(&merged_step.histogram), union);
            assert_eq!(merged_step.requests, union.len());
        }
        // The timeline holds every sample once.
        let in_intervals: u64 = figures.intervals.iter().map(|i| i.requests).sum();
        assert_eq!(in_intervals, scenario.requests);
        // Thresholds the workers left alone are judged on the merged figures: each
        // worker alone sent a third of the `requests >= N` bound.
        assert_eq!(figures.thresholds, thresholds, "{}", scenario.name);
        for threshold in &figures.thresholds {
            let check = scenario
                .checks
                .iter()
                .find(|c| &c.name == threshold)
                .unwrap();
            assert_eq!(check.outcome.as_str(), "pass", "{}", check.message);
        }
    }
    for file in [
        "junit.xml",
        "report.html",
        "closed-create.hgrm",
        "open-flow.hlog",
    ] {
        assert!(out.join(file).is_file(), "{file} not written");
    }
}

/// A deterministic, skewed latency distribution: mostly fast, with a slow tail, in µs.
fn fixed_samples(count: usize) -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            if unit < 0.97 {
                200 + (unit * 3_000.0) as u64
            } else {
                20_000 + ((unit - 0.97) * 30_000_000.0) as u64
            }
        })
        .collect()
}

fn histogram_of(samples: &[u64]) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for sample in samples {
        histogram.record(*sample).unwrap();
    }
    histogram
}

/// A load scenario report that recorded exactly `samples` (one step, one interval).
fn load_report(samples: &[u64], worker: Option<WorkerTag>, threshold: &str) -> RunReport {
    let histogram = histogram_of(samples);
    let encoded = codec::encode(&histogram).unwrap();
    let summary = keyclaim_harness::results::LatencySummary {
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p95: histogram.value_at_quantile(0.95),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    };
    let requests = samples.len() as u64;
    RunReport {
        passed: true,
        interrupted: false,
        strict: false,
        plans: vec!["fixed".into()],
        target: "http://127.0.0.1:1".into(),
        started_at: "2026-11-23T15:00:00Z".into(),
        elapsed_s: 10.0,
        scenarios: vec![ScenarioReport {
            name: "fixed".into(),
            id: None,
            tags: Vec::new(),
            description: None,
            passed: true,
            skipped: false,
            checks: Vec::new(),
            requests,
            errors: 0,
            rate_limit_retries: 0,
            rps: requests as f64 / 10.0,
            elapsed_s: 10.0,
            latency_us: summary,
            warnings: Vec::new(),
            load: Some(LoadFigures {
                model: "open".into(),
                executor: "open 100/s for 10s".into(),
                target_rate: Some(100.0),
                achieved_rate: requests as f64 / 10.0,
                duration_s: 10.0,
                iterations: requests,
                dropped: 0,
                late: 0,
                in_flight_at_end: 0,
                timeouts: 0,
                connection_errors: 0,
                status_counts: [("200".to_owned(), requests)].into(),
                error_codes: Default::default(),
                error_code_example: None,
                failed_requests: 0,
                steps: vec![StepFigures {
                    name: "1 create".into(),
                    requests,
                    failed: 0,
                    latency_us: summary,
                    histogram: encoded.clone(),
                }],
                histogram: encoded.clone(),
                intervals: vec![IntervalFigures {
                    start_s: 0.0,
                    duration_s: 1.0,
                    requests,
                    failed: 0,
                    latency_us: summary,
                    histogram: encoded,
                }],
                start_unix_ms: 1_795_446_000_000,
                thresholds: vec![threshold.into()],
                regression: Vec::new(),
                generator: None,
                protocol: None,
                transport_error_example: None,
            }),
        }],
        plan_digest: "same-run".into(),
        worker,
        merged: None,
        start: None,
        plan_share: Default::default(),
        insecure: false,
    }
}

fn write(report: &RunReport, dir: &Path) {
    keyclaim_harness::report::write_all(report, dir, &Redactor::new(Vec::<String>::new())).unwrap();
}

/// The yardstick: merging workers that recorded a fixed distribution between
/// them gives exactly the figures of one process that recorded all of it, where
/// averaging the workers' percentiles would not, and thresholds are judged on that.
#[test]
fn merge_equals_one_process_recording_every_sample() {
    let samples = fixed_samples(30_000);
    // Uneven, skewed shares: worker 0 gets most of the slow tail.
    let mut shares: Vec<Vec<u64>> = vec![Vec::new(); WORKERS as usize];
    for (n, sample) in samples.iter().enumerate() {
        let worker = if *sample > 20_000 { n % 2 } else { n % 3 };
        shares[worker].push(*sample);
    }
    let single = histogram_of(&samples);
    let true_p99 = single.value_at_quantile(0.99);
    let averaged_p99 = shares
        .iter()
        .map(|s| histogram_of(s).value_at_quantile(0.99))
        .sum::<u64>()
        / u64::from(WORKERS);
    assert!(
        averaged_p99.abs_diff(true_p99) > true_p99 / 10,
        "the distribution must tell a merge from an average: {averaged_p99} vs {true_p99}"
    );
    // A bound between the two: only the exact merge gets the verdict right.
    let bound_us = (true_p99 + averaged_p99) / 2;
    let threshold = if true_p99 < averaged_p99 {
        format!("p99 < {bound_us}us")
    } else {
        format!("p99 > {bound_us}us")
    };

    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = shares
        .iter()
        .enumerate()
        .map(|(index, share)| {
            let dir = root.path().join(format!("w{index}"));
            let tag = WorkerTag {
                index: index as u32,
                workers: WORKERS,
            };
            write(&load_report(share, Some(tag), &threshold), &dir);
            dir
        })
        .collect();
    let out = root.path().join("merged");
    let merged_run = merge(&dirs, &out, &[]);
    assert_eq!(merged_run.code, Some(0), "{merged_run:?}");
    let merged = read_report(&out);
    let scenario = &merged.scenarios[0];
    let figures = load(scenario);

    let one_process = load_report(&samples, None, &threshold);
    let expected = &one_process.scenarios[0];
    assert_eq!(decode(&figures.histogram), single);
    assert_eq!(scenario.latency_us, expected.latency_us);
    assert_eq!(scenario.latency_us.p99, true_p99);
    assert_eq!(scenario.requests, 30_000);
    assert_eq!(figures.iterations, 30_000);
    assert_eq!(figures.steps[0].latency_us, expected.latency_us);
    assert_eq!(figures.intervals.len(), 1);
    assert_eq!(decode(&figures.intervals[0].histogram), single);
    assert_eq!(figures.target_rate, Some(300.0));
    let check = scenario
        .checks
        .iter()
        .find(|c| c.name == threshold)
        .unwrap();
    assert_eq!(check.outcome.as_str(), "pass", "{}", check.message);
    // The .hgrm is the single process's, line for line.
    let single_dir = root.path().join("single");
    write(&one_process, &single_dir);
    assert_eq!(
        std::fs::read_to_string(out.join("fixed.hgrm")).unwrap(),
        std::fs::read_to_string(single_dir.join("fixed.hgrm")).unwrap()
    );
}

fn merge_error(dirs: &[PathBuf], extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let refused = merge(dirs, out.path(), extra);
    assert_eq!(refused.code, Some(2), "merge should refuse: {refused:?}");
    refused.stderr
}

#[test]
fn merge_refuses_inputs_of_different_runs_overlaps_and_gaps() {
    let samples = fixed_samples(300);
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str, report: RunReport| {
        let dir = root.path().join(name);
        write(&report, &dir);
        dir
    };
    let tag = |index| Some(WorkerTag { index, workers: 3 });
    let w0 = dir("w0", load_report(&samples, tag(0), "p99 < 1s"));
    let w1 = dir("w1", load_report(&samples, tag(1), "p99 < 1s"));
    let w2 = dir("w2", load_report(&samples, tag(2), "p99 < 1s"));
    let w0_again = dir("w0-again", load_report(&samples, tag(0), "p99 < 1s"));
    let mut other = load_report(&samples, tag(2), "p99 < 1s");
    other.plan_digest = "another-run".into();
    let other = dir("other", other);
    let mut four = load_report(
        &samples,
        Some(WorkerTag {
            index: 2,
            workers: 4,
        }),
        "p99 < 1s",
    );
    four.plan_digest = "same-run".into();
    let four = dir("four", four);
    let single = dir("single", load_report(&samples, None, "p99 < 1s"));

    let err = merge_error(&[w0.clone(), w1.clone(), w0_again], &[]);
    assert!(err.contains("both worker 0"), "{err}");
    let err = merge_error(&[w0.clone(), w1.clone(), other], &[]);
    assert!(err.contains("different runs"), "{err}");
    let err = merge_error(&[w0.clone(), w1.clone(), four], &[]);
    assert!(
        err.contains("--workers 3") && err.contains("--workers 4"),
        "{err}"
    );
    let err = merge_error(&[w0.clone(), single], &[]);
    assert!(err.contains("not a worker's report"), "{err}");
    let err = merge_error(&[root.path().join("nowhere")], &[]);
    assert!(err.contains("cannot read"), "{err}");
    let err = merge_error(&[w0.clone(), w2.clone()], &[]);
    assert!(
        err.contains("worker(s) 1 of 3") && err.contains("--allow-missing"),
        "{err}"
    );

    // With --allow-missing the gap is merged and recorded.
    let out = root.path().join("partial");
    let partial = merge(&[w0, w2], &out, &["--allow-missing"]);
    assert_eq!(partial.code, Some(0), "{partial:?}");
    let merged = read_report(&out);
    let from = merged.merged.unwrap();
    assert_eq!((from.indexes, from.missing), (vec![0, 2], vec![1]));
    assert_eq!(merged.scenarios[0].requests, 600);
}

/// `--worker-index` is checked before anything runs.
#[test]
fn worker_index_out_of_range_is_a_usage_error() {
    let plan = plan();
    let plan = plan.to_str().expect("UTF-8 path");
    let bad_index = binary::spawn(&["run", plan, "--workers", "2", "--worker-index", "2"])
        .wait_bounded(DEADLINE);
    assert_eq!(bad_index.code, Some(2));
    assert!(bad_index.stderr.contains("from 0 to 1"), "{bad_index:?}");
    let bad_start = binary::spawn(&["run", plan, "--start-at", "soon"]).wait_bounded(DEADLINE);
    assert_eq!(bad_start.code, Some(2));
    assert!(bad_start.stderr.contains("RFC 3339"), "{bad_start:?}");
}

/// Intervals are placed by each worker's own start, and workers out of step are flagged
/// by how far apart they started, not by their distance to a whole second (the bug:
/// 90.0 s apart passed unnoticed, 90.4 s read as 400 ms). A late worker adds its load
/// to the rates instead of diluting them over a longer window.
#[test]
fn merge_lines_intervals_up_and_flags_workers_out_of_step_by_their_spread() {
    let samples = fixed_samples(100);
    let root = tempfile::tempdir().unwrap();
    let merged_with_offset = |offset_ms: u64| {
        let tag = |index| Some(WorkerTag { index, workers: 2 });
        let first = load_report(&samples, tag(0), "p99 < 1s");
        let mut second = load_report(&samples, tag(1), "p99 < 1s");
        second.scenarios[0].load.as_mut().unwrap().start_unix_ms += offset_ms;
        let dirs = [("a", first), ("b", second)].map(|(name, report)| {
            let dir = root.path().join(format!("{name}-{offset_ms}"));
            write(&report, &dir);
            dir
        });
        let out = root.path().join(format!("merged-{offset_ms}"));
        assert_eq!(merge(&dirs, &out, &[]).code, Some(0));
        read_report(&out).scenarios.remove(0)
    };
    let in_step = merged_with_offset(40);
    assert!(in_step.warnings.is_empty(), "{:?}", in_step.warnings);

    let a_second_late = merged_with_offset(1_000);
    let figures = load(&a_second_late);
    let per_second: Vec<u64> = figures.intervals.iter().map(|i| i.requests).collect();
    assert_eq!(per_second, vec![100, 100]);
    // The timeline covers both (11 s), but each worker drove 10/s for its 10 s.
    assert!((figures.duration_s - 11.0).abs() < 1e-9);
    assert!(
        (figures.achieved_rate - 20.0).abs() < 1e-9,
        "{}",
        figures.achieved_rate
    );
    assert!(
        (a_second_late.rps - 20.0).abs() < 1e-9,
        "{}",
        a_second_late.rps
    );

    for (offset_ms, says) in [
        (500, "500ms apart"),
        (90_000, "90.0s apart"),
        (90_400, "90.4s apart"),
    ] {
        let skewed = merged_with_offset(offset_ms);
        assert!(
            skewed
                .warnings
                .iter()
                .any(|w| w.contains(&format!("started up to {says}"))),
            "{offset_ms}: {:?}",
            skewed.warnings
        );
        assert_eq!(
            load(&skewed).histogram,
            figures.histogram,
            "whole-run figures are exact"
        );
    }
}

/// Each worker's report says when it was asked to start and when it did; merge names
/// a worker that began late, and says what part of the plan's load the merge holds.
#[test]
fn merge_names_late_workers_and_the_part_of_the_plan_that_ran() {
    let samples = fixed_samples(100);
    let root = tempfile::tempdir().unwrap();
    let requested = 1_795_446_000_000;
    let worker = |index: u32, late_ms: u64, ran: f64| {
        let mut report = load_report(&samples, Some(WorkerTag { index, workers: 4 }), "p99 < 1s");
        report.start = Some(StartTimes {
            via: "rendezvous".into(),
            requested_unix_ms: Some(requested),
            actual_unix_ms: requested + late_ms,
        });
        report.plan_share = [(
            "fixed".to_owned(),
            PlanShare {
                assigned: 0.25,
                ran,
            },
        )]
        .into();
        let dir = root.path().join(format!("w{index}"));
        write(&report, &dir);
        dir
    };
    // Worker 1 began 90.4 s late; worker 2 was interrupted halfway; worker 3 is missing.
    let dirs = [
        worker(0, 3, 0.25),
        worker(1, 90_400, 0.25),
        worker(2, 0, 0.125),
    ];
    let out = root.path().join("merged");
    let merged_run = merge(&dirs, &out, &["--allow-missing"]);
    assert_eq!(merged_run.code, Some(0), "{merged_run:?}");
    let merged = read_report(&out);
    let warnings = &merged.scenarios[0].warnings;
    assert!(
        warnings.iter().any(|w| w
            == "worker 1 started 90.4s after the requested start (rendezvous); its load ran out of step with the others"),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.starts_with("worker 0 started")),
        "3 ms is on time: {warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w
            == "62.5% of the plan's load ran: worker 3 missing; a worker's load was cut short (interrupted)"),
        "{warnings:?}"
    );
    let share = merged.plan_share["fixed"];
    assert!((share.assigned - 0.75).abs() < 1e-9 && (share.ran - 0.625).abs() < 1e-9);
    assert!(
        merged_run.stdout.contains("62.5% of the plan's load ran"),
        "{}",
        merged_run.stdout
    );
}

/// A report directory that cannot be written is found before the load, not after it:
/// the run stops at once with exit 2 and says so (here a 10-minute load would have run
/// past the test's deadline first).
#[test]
fn an_unwritable_report_dir_stops_the_run_before_the_load() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let report_dir = file.join("reports");
    // A load bounded by time only (no iteration count to end it sooner).
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans/rendezvous.toml");
    let refused = binary::spawn(&[
        "run",
        plan.to_str().expect("UTF-8 path"),
        "--duration",
        "10m",
        "--workers",
        "2",
        "--worker-index",
        "1",
        "--report-dir",
        report_dir.to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("--report-dir") && refused.stderr.contains("nothing was run"),
        "{}",
        refused.stderr
    );
}

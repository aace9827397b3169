//! The rendezvous on loopback: a `coordinate` process and N `run --rendezvous` worker
//! processes against one `serve`. The workers start together once all are in; a worker
//! that comes late is waited for or left out, as configured; one killed mid-run is
//! listed as missing and the rest are merged; and what the collector merges is what
//! `merge` makes of the workers' own reports.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::binary::{self, Finished, Running};
use keyclaim_harness::results::RunReport;
use keyclaim_harness::scale_out::rendezvous::Status;

const KEY: &str = "kc_rendezvous_key_0123";
/// A process that has not ended by then hangs: it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long a status the test waits for may take to come about.
const STATUS_LIMIT: Duration = Duration::from_secs(60);
/// Workers told to start at one instant begin within this of each other: the spread
/// past which `merge` calls them out of step. They share one machine's clock, so this is
/// the rendezvous's and the timer's precision, with room for a loaded 2-core machine;
/// without the rendezvous, the late worker of the first test would begin seconds after
/// the others.
const TOGETHER: Duration = Duration::from_millis(100);

fn plan() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plans/rendezvous.toml")
        .to_string_lossy()
        .into_owned()
}

struct Coordinating {
    process: Running,
    url: String,
    dir: PathBuf,
}

fn coordinate(workers: u32, dir: &Path, extra: &[&str]) -> Coordinating {
    let workers = workers.to_string();
    let mut args = vec![
        "coordinate",
        "--workers",
        &workers,
        "--listen",
        "127.0.0.1:0",
        "--report-dir",
        dir.to_str().expect("UTF-8 path"),
    ];
    args.extend(extra);
    let mut process = binary::spawn(&args);
    let line = process.first_stdout_line(DEADLINE);
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Coordinating {
        process,
        url,
        dir: dir.to_owned(),
    }
}

fn worker(target: &str, coordinator: &str, index: u32, workers: u32, dir: &Path) -> Running {
    let (index, workers) = (index.to_string(), workers.to_string());
    binary::spawn(&[
        "run",
        &plan(),
        "--target",
        target,
        "--api-key",
        KEY,
        "--quiet",
        "--workers",
        &workers,
        "--worker-index",
        &index,
        "--rendezvous",
        coordinator,
        "--rendezvous-timeout",
        "60s",
        "--report-dir",
        dir.to_str().expect("UTF-8 path"),
    ])
}

/// `GET /v1/status` of the coordinator, over a plain loopback connection.
fn status(url: &str) -> Status {
    let address = url.strip_prefix("http://").expect("an http URL");
    let mut stream = TcpStream::connect(address).expect("the coordinator accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /v1/status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {answer}"))
}

/// Polls the coordinator until `what` holds; fails the test after [`STATUS_LIMIT`].
fn wait_for(url: &str, what: &str, holds: impl Fn(&Status) -> bool) -> Status {
    let started = Instant::now();
    loop {
        let now = status(url);
        if holds(&now) {
            return now;
        }
        assert!(
            started.elapsed() < STATUS_LIMIT,
            "no {what} after {STATUS_LIMIT:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_report(dir: &Path) -> RunReport {
    let path = dir.join("report.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn merge(dirs: &[&Path], out: &Path) -> Finished {
    let mut args = vec!["merge"];
    args.extend(dirs.iter().map(|d| d.to_str().expect("UTF-8 path")));
    args.extend([
        "--out",
        out.to_str().expect("UTF-8 path"),
        "--allow-missing",
    ]);
    binary::spawn(&args).wait_bounded(DEADLINE)
}

#[test]
fn workers_start_together_a_late_one_is_waited_for_and_the_collector_merges_what_merge_would() {
    let _timing = crate::common::timing_test();
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinate(
        3,
        &root.path().join("coordinated"),
        &["--start-delay", "1s", "--on-missing", "fail"],
    );
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| root.path().join(format!("worker-{i}")))
        .collect();
    let mut workers = Vec::new();
    for index in 0..2 {
        workers.push(worker(
            &served.url,
            &coordinator.url,
            index,
            3,
            &dirs[index as usize],
        ));
    }
    // The third comes once the first two wait: the run waits for it.
    wait_for(&coordinator.url, "two workers registered", |s| {
        s.registered == [0, 1]
    });
    workers.push(worker(&served.url, &coordinator.url, 2, 3, &dirs[2]));
    for (index, worker) in workers.into_iter().enumerate() {
        let finished = worker.wait_bounded(DEADLINE);
        assert_eq!(finished.code, Some(0), "worker {index}: {finished:?}");
    }
    let collected = coordinator.process.wait_bounded(DEADLINE);
    assert_eq!(collected.code, Some(0), "{collected:?}");

    let reports: Vec<RunReport> = dirs.iter().map(|d| read_report(d)).collect();
    let starts: Vec<u64> = reports
        .iter()
        .map(|r| {
            let start = r
                .start
                .as_ref()
                .expect("a worker's report records its start");
            assert_eq!(start.via, "rendezvous");
            let late = start.late_by().expect("the requested start is recorded");
            assert!(
                late < TOGETHER,
                "started {late:?} after the announced start"
            );
            start.actual_unix_ms
        })
        .collect();
    let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    assert!(
        Duration::from_millis(spread) < TOGETHER,
        "the workers started {spread} ms apart: {starts:?}"
    );
    for report in &reports {
        let share = report.plan_share["open-flow"];
        assert!((share.assigned - 1.0 / 3.0).abs() < 1e-9, "{share:?}");
        assert_eq!(share.ran, share.assigned, "each share ran in full");
    }

    // The collector holds each worker's report.json as the worker wrote it, and its
    // merge is `merge` over the workers' own directories.
    for (index, dir) in dirs.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(coordinator.dir.join(format!("worker-{index}/report.json")))
                .unwrap(),
            std::fs::read_to_string(dir.join("report.json")).unwrap()
        );
    }
    let out = root.path().join("merged-by-hand");
    let by_hand = merge(&dirs.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &out);
    assert_eq!(by_hand.code, Some(0), "{by_hand:?}");
    let collected = read_report(&coordinator.dir.join("merged"));
    assert_eq!(collected, read_report(&out));
    let from = collected.merged.as_ref().unwrap();
    assert_eq!(
        (from.indexes.clone(), from.missing.clone()),
        (vec![0, 1, 2], vec![])
    );
    assert!(collected.passed, "{:#?}", collected.scenarios);
    assert!(
        collected.scenarios[0].warnings.is_empty(),
        "{:?}",
        collected.scenarios[0].warnings
    );
    assert!((collected.plan_share["open-flow"].ran - 1.0).abs() < 1e-9);
}

#[test]
fn a_worker_that_comes_after_the_deadline_is_left_out_and_reported_missing() {
    let _timing = crate::common::timing_test();
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinate(
        3,
        &root.path().join("coordinated"),
        &[
            "--register-timeout",
            "10s",
            "--on-missing",
            "start",
            "--start-delay",
            "200ms",
        ],
    );
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| root.path().join(format!("worker-{i}")))
        .collect();
    let on_time: Vec<Running> = [0, 1]
        .into_iter()
        .map(|index| {
            worker(
                &served.url,
                &coordinator.url,
                index,
                3,
                &dirs[index as usize],
            )
        })
        .collect();
    wait_for(&coordinator.url, "the start without worker 2", |s| {
        s.phase == "started"
    });
    let late = worker(&served.url, &coordinator.url, 2, 3, &dirs[2]).wait_bounded(DEADLINE);
    assert_eq!(late.code, Some(4), "{late:?}");
    assert!(
        late.stderr.contains("the run started without worker 2"),
        "{}",
        late.stderr
    );
    for worker in on_time {
        let finished = worker.wait_bounded(DEADLINE);
        assert_eq!(finished.code, Some(0), "{finished:?}");
    }
    let collected = coordinator.process.wait_bounded(DEADLINE);
    assert_eq!(collected.code, Some(0), "{collected:?}");
    assert!(
        collected
            .stderr
            .contains("worker 2 missing: did not register within 10.0s"),
        "{}",
        collected.stderr
    );
    let merged = read_report(&coordinator.dir.join("merged"));
    let from = merged.merged.as_ref().unwrap();
    assert_eq!(
        (from.indexes.clone(), from.missing.clone()),
        (vec![0, 1], vec![2])
    );
    let share = merged.plan_share["open-flow"];
    assert!((share.ran - 2.0 / 3.0).abs() < 1e-9, "{share:?}");
    let warnings = &merged.scenarios[0].warnings;
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "66.7% of the plan's load ran: worker 2 missing (did not register within 10.0s)"
        )),
        "{warnings:?}"
    );
}

#[test]
fn with_on_missing_fail_the_run_is_called_off_and_nothing_runs() {
    let _timing = crate::common::timing_test();
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinate(
        3,
        &root.path().join("coordinated"),
        &["--register-timeout", "10s", "--on-missing", "fail"],
    );
    let workers: Vec<Running> = [0, 1]
        .into_iter()
        .map(|index| {
            let dir = root.path().join(format!("worker-{index}"));
            worker(&served.url, &coordinator.url, index, 3, &dir)
        })
        .collect();
    let called_off = coordinator.process.wait_bounded(DEADLINE);
    assert_eq!(called_off.code, Some(1), "{called_off:?}");
    assert!(
        called_off
            .stderr
            .contains("the run was called off: worker(s) 2 did not register within 10.0s"),
        "{}",
        called_off.stderr
    );
    for worker in workers {
        let finished = worker.wait_bounded(DEADLINE);
        assert_eq!(finished.code, Some(4), "{finished:?}");
        assert!(
            finished.stderr.contains("did not register"),
            "{}",
            finished.stderr
        );
    }
    assert!(!root.path().join("coordinated/merged").exists());
}

#[test]
fn a_worker_killed_mid_run_is_listed_missing_and_the_rest_are_merged() {
    let _timing = crate::common::timing_test();
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinate(
        3,
        &root.path().join("coordinated"),
        &["--heartbeat-timeout", "3s", "--start-delay", "200ms"],
    );
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| root.path().join(format!("worker-{i}")))
        .collect();
    let mut workers: Vec<Option<Running>> = (0..3)
        .map(|index| {
            Some(worker(
                &served.url,
                &coordinator.url,
                index,
                3,
                &dirs[index as usize],
            ))
        })
        .collect();
    // A second into the three-second load, worker 1 is killed as a lost node would be.
    wait_for(&coordinator.url, "a second of load", |s| {
        s.since_start_ms.is_some_and(|ms| ms > 1_000)
    });
    let killed = workers[1].take().unwrap();
    killed.signal("KILL");
    killed.wait_bounded(DEADLINE);
    for worker in workers.into_iter().flatten() {
        let finished = worker.wait_bounded(DEADLINE);
        assert_eq!(finished.code, Some(0), "{finished:?}");
    }
    let collected = coordinator.process.wait_bounded(DEADLINE);
    assert_eq!(collected.code, Some(0), "{collected:?}");
    assert!(
        collected
            .stderr
            .contains("worker 1 missing: lost: no word for 3.0s"),
        "{}",
        collected.stderr
    );
    assert!(
        !dirs[1].join("report.json").exists(),
        "killed before it wrote"
    );

    let mut by_collector = read_report(&coordinator.dir.join("merged"));
    let from = by_collector.merged.as_ref().unwrap();
    assert_eq!(
        (from.indexes.clone(), from.missing.clone()),
        (vec![0, 2], vec![1])
    );
    assert!(from.missing_why[&1].starts_with("lost"), "{from:?}");
    let warnings = &by_collector.scenarios[0].warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("66.7% of the plan's load ran: worker 1 missing (lost")),
        "{warnings:?}"
    );
    // Besides why worker 1 is missing, the collector's merge is `merge --allow-missing`
    // over the other two workers' own reports.
    let out = root.path().join("merged-by-hand");
    let by_hand = merge(&[&dirs[0], &dirs[2]], &out);
    assert_eq!(by_hand.code, Some(0), "{by_hand:?}");
    let mut by_hand = read_report(&out);
    for report in [&mut by_collector, &mut by_hand] {
        report.merged.as_mut().unwrap().missing_why.clear();
        for scenario in &mut report.scenarios {
            scenario
                .warnings
                .retain(|w| !w.contains("of the plan's load ran"));
        }
    }
    assert_eq!(by_collector, by_hand);
    assert_eq!(by_hand.scenarios[0].requests, {
        let r0 = read_report(&dirs[0]).scenarios[0].requests;
        let r2 = read_report(&dirs[2]).scenarios[0].requests;
        r0 + r2
    });
}

/// A worker started with other overrides than the rest belongs to another run: the
/// coordinator refuses it (exit 2, it says why) rather than merging two runs.
#[test]
fn a_worker_of_another_run_is_refused() {
    let _timing = crate::common::timing_test();
    let served = binary::serve(KEY, &[]);
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinate(
        2,
        &root.path().join("coordinated"),
        &["--register-timeout", "10s", "--on-missing", "fail"],
    );
    let first = worker(&served.url, &coordinator.url, 0, 2, &root.path().join("w0"));
    wait_for(&coordinator.url, "worker 0 registered", |s| {
        s.registered == [0]
    });
    let dir = root.path().join("w1");
    let other = binary::spawn(&[
        "run",
        &plan(),
        "--target",
        &served.url,
        "--api-key",
        KEY,
        "--rate",
        "30",
        "--workers",
        "2",
        "--worker-index",
        "1",
        "--rendezvous",
        &coordinator.url,
        "--report-dir",
        dir.to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE);
    assert_eq!(other.code, Some(2), "{other:?}");
    assert!(
        other.stderr.contains("plan digests differ"),
        "{}",
        other.stderr
    );
    assert_eq!(first.wait_bounded(DEADLINE).code, Some(4));
    assert_eq!(coordinator.process.wait_bounded(DEADLINE).code, Some(1));
}

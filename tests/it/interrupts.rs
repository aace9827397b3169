//! SIGTERM and SIGINT stop a run promptly (bounded, not timed), exit 130, and every
//! report is still written, marked `interrupted`, with what was measured so far:
//! during a conformance scenario that waits, during the reachability probe of a
//! target that never answers, and during load runs against a target that answers and
//! one that does not. (tests/load_engine.rs has SIGINT during a load run.)

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::{self, Finished};
use common::hostile::{self, Behaviour, Hostile};
use serde_json::Value;

const KEY: &str = "kc_interrupt_test_key_0123456789";
/// From the signal to the exit, at most: it catches a run that ignores the signal or
/// waits out its timeouts, with room for a loaded machine.
const STOP_BOUND: Duration = Duration::from_secs(30);
/// How long a test waits for the run to reach the point where it signals.
const REACH_BOUND: Duration = Duration::from_secs(60);

/// A quick scenario, and one that waits a long time between create and validate.
const WAITING_PLAN: &str = r#"
[plan]
name = "interrupt me"

[[scenario]]
name = "quick"

[[scenario.step]]
create = { ttl = 30, save = "c" }
expect = { status = 200 }

[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }

[[scenario]]
name = "stall"

[[scenario.step]]
create = { ttl = 300, save = "c" }
expect = { status = 200 }

[[scenario.step]]
wait = "100s"

[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }
"#;

/// Polls `done` until it holds; fails the test past [`REACH_BOUND`].
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < REACH_BOUND, "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `run ARGS --target server --api-key KEY --report-dir dir`, signals it once
/// `ready` holds, and waits for it to stop.
fn interrupt(
    server: &Hostile,
    args: &[&str],
    dir: &Path,
    signal: &str,
    ready: impl Fn() -> bool,
) -> Finished {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--target", &server.url, "--api-key", KEY, "--report-dir"]);
    all.push(dir.to_str().expect("UTF-8 path"));
    let running = binary::spawn(&all);
    wait_until("the run reach the point to interrupt", ready);
    running.signal(signal);
    let signalled = Instant::now();
    // The bound counts from the signal, whatever the run took to get there.
    let finished = running.wait_bounded(REACH_BOUND + STOP_BOUND);
    let stopped_in = signalled.elapsed();
    assert!(
        stopped_in < STOP_BOUND,
        "stopped {stopped_in:?} after SIG{signal}"
    );
    finished
}

/// What every interrupted run shows.
fn assert_interrupted(run: &Finished, dir: &Path) -> Value {
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(130), "{context}");
    assert!(!run.stderr.contains("panicked"), "{context}");
    assert!(run.stderr.contains("interrupted"), "{context}");
    binary::assert_reports_written(dir);
    let report = binary::report(dir);
    assert_eq!(report["interrupted"], true, "{report}");
    for file in ["report.json", "junit.xml", "report.html"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(!text.contains(KEY), "{file} carries the key");
    }
    report
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no scenario {name} in {report}"))
}

fn conformance_interrupted_while_waiting(signal: &str) {
    let server = hostile::start(Behaviour::Plausible);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("waits.toml");
    std::fs::write(&plan, WAITING_PLAN).expect("plan written");
    let reports = dir.path().join("reports");
    // The probe, quick's create and validate, and stall's create: then stall waits
    // 100 s. The server counts a request before it answers, so give the last answer
    // a moment to reach the run (any margin well under 100 s will do).
    let run = interrupt(
        &server,
        &[
            plan.to_str().expect("UTF-8 path"),
            "--scenario-timeout",
            "300s",
        ],
        &reports,
        signal,
        || {
            let all_sent = server.stats.requests() >= 4;
            if all_sent {
                std::thread::sleep(Duration::from_millis(500));
            }
            all_sent
        },
    );
    let report = assert_interrupted(&run, &reports);
    let quick = scenario(&report, "quick");
    assert_eq!(quick["passed"], true, "{quick}");
    assert_eq!(quick["requests"], 2, "{quick}");
    // What the waiting scenario did before the signal is kept, and its check says
    // where it stopped.
    let stall = scenario(&report, "stall");
    assert_eq!(stall["requests"], 1, "{stall}");
    let checks = stall["checks"].as_array().expect("checks");
    assert_eq!(checks[0]["outcome"], "pass", "{stall}");
    let last = checks.last().expect("a check");
    assert_eq!(last["outcome"], "skipped", "{stall}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or("")
            .contains("interrupted at step 2"),
        "{stall}"
    );
}

#[test]
fn sigterm_stops_a_conformance_run_that_waits_and_keeps_its_reports() {
    conformance_interrupted_while_waiting("TERM");
}

#[test]
fn sigint_stops_a_conformance_run_that_waits_and_keeps_its_reports() {
    conformance_interrupted_while_waiting("INT");
}

#[test]
fn sigterm_during_the_probe_of_a_silent_target_does_not_wait_it_out() {
    let server = hostile::start(Behaviour::Silent);
    let dir = tempfile::tempdir().expect("tempdir");
    // The probe would wait up to 2 x 60 s for an answer that never comes.
    let run = interrupt(
        &server,
        &[&binary::plan("conformance.toml"), "--timeout", "60s"],
        dir.path(),
        "TERM",
        || server.stats.requests() >= 1,
    );
    let report = assert_interrupted(&run, dir.path());
    // Nothing ran: every scenario is there, interrupted before it began.
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty());
    assert!(scenarios.iter().all(|s| s["requests"] == 0), "{report}");
}

fn load_args(duration: &str) -> Vec<String> {
    [
        &binary::plan("load.toml"),
        "--scenario",
        "create",
        "--rate",
        "50",
        "--duration",
        duration,
        "--timeout",
        "1s",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn sigterm_stops_a_load_run_and_keeps_what_it_measured() {
    let server = hostile::start(Behaviour::Plausible);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = load_args("120s");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = interrupt(&server, &args, dir.path(), "TERM", || {
        server.stats.requests() >= 30
    });
    let report = assert_interrupted(&run, dir.path());
    let create = scenario(&report, "create");
    let load = &create["load"];
    assert!(load["iterations"].as_u64().unwrap_or(0) >= 29, "{load}");
    assert!(create["requests"].as_u64().unwrap_or(0) >= 29, "{create}");
    assert_eq!(create["errors"], 0, "{create}");
    assert!(dir.path().join("create.hgrm").exists());
    assert!(dir.path().join("create.hlog").exists());
}

#[test]
fn sigterm_stops_a_load_run_whose_requests_all_hang() {
    let server = hostile::start(Behaviour::Silent);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = load_args("120s");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // 50 arrivals a second, each held: by the 80th connection the first have timed out.
    let run = interrupt(&server, &args, dir.path(), "TERM", || {
        server.stats.connections() >= 80
    });
    let report = assert_interrupted(&run, dir.path());
    let create = scenario(&report, "create");
    assert!(
        create["load"]["timeouts"].as_u64().unwrap_or(0) > 0,
        "{create}"
    );
    assert!(create["requests"].as_u64().unwrap_or(0) > 0, "{create}");
}

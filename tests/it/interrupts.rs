//! SIGTERM and SIGINT stop a run promptly (bounded, not timed), exit 130, and every
//! report is still written, marked `interrupted`, with what was measured so far:
//! during a conformance scenario that waits for an answer, during the reachability
//! probe of a target that never answers, and during load runs against a target that
//! answers and one that does not.
//!
//! No test signals after a guessed delay: each waits until the child handles the
//! signals (its `SigCgt` in /proc) and until the test's own server has seen the
//! request that shows the run got where the test means to interrupt it.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::{self, Finished};
use common::hostile::{self, Behaviour, HOLD_PATH, Hostile};
use serde_json::Value;

const KEY: &str = "kc_interrupt_test_key_0123456789";
/// From the signal to the exit, at most: it catches a run that ignores the signal or
/// waits out its timeouts, with room for a loaded machine.
const STOP_BOUND: Duration = Duration::from_secs(30);
/// How long a test waits for the run to reach the point where it signals.
const REACH_BOUND: Duration = Duration::from_secs(60);

/// A quick scenario, then (exclusive, so only once `quick` has finished) one that
/// waits on a request the server never answers. The server sees that request only
/// once the create before it has been answered and judged, so when it arrives the
/// run is known to be waiting in step 2.
fn waiting_plan() -> String {
    format!(
        r#"
[plan]
name = "interrupt me"

[[scenario]]
name = "quick"

[[scenario.step]]
create = {{ ttl = 30, save = "c" }}
expect = {{ status = 200 }}

[[scenario.step]]
validate = {{ challenge = "c", response = "hmac" }}
expect = {{ status = 200, valid = true }}

[[scenario]]
name = "stall"
exclusive = true

[[scenario.step]]
create = {{ ttl = 300, save = "c" }}
expect = {{ status = 200 }}

[[scenario.step]]
raw = {{ method = "GET", path = "{HOLD_PATH}" }}

[[scenario.step]]
validate = {{ challenge = "c", response = "hmac" }}
expect = {{ status = 200, valid = true }}
"#
    )
}

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
    interrupt_once(binary::spawn(&all), signal, |_| ready())
}

/// Signals `running` once it handles signals and `ready` holds, and waits for it to
/// stop within [`STOP_BOUND`] of the signal.
fn interrupt_once(
    mut running: binary::Running,
    signal: &str,
    ready: impl Fn(&binary::Running) -> bool,
) -> Finished {
    running.wait_for_signal_handlers(REACH_BOUND);
    wait_until("the run reach the point to interrupt", || ready(&running));
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
    std::fs::write(&plan, waiting_plan()).expect("plan written");
    let reports = dir.path().join("reports");
    // Timeouts far past STOP_BOUND: only the signal can end the wait in time.
    let run = interrupt(
        &server,
        &[
            plan.to_str().expect("UTF-8 path"),
            "--timeout",
            "600s",
            "--scenario-timeout",
            "600s",
        ],
        &reports,
        signal,
        || server.stats.held() >= 1,
    );
    let report = assert_interrupted(&run, &reports);
    let quick = scenario(&report, "quick");
    assert_eq!(quick["passed"], true, "{quick}");
    assert_eq!(quick["requests"], 2, "{quick}");
    // What the waiting scenario did before the signal is kept (the create, counted
    // and judged; the unanswered request is not counted), and its check says where
    // it stopped.
    let stall = scenario(&report, "stall");
    assert_eq!(stall["requests"], 1, "{stall}");
    let checks = stall["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2, "{stall}");
    assert_eq!(checks[0]["outcome"], "pass", "{stall}");
    assert_eq!(checks[1]["outcome"], "skipped", "{stall}");
    assert!(
        checks[1]["message"]
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
    // The probe would wait up to 2 x 600 s for an answer that never comes.
    let run = interrupt(
        &server,
        &[&binary::plan("conformance.toml"), "--timeout", "600s"],
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

/// Far past STOP_BOUND: a load run that stops in time stopped on the signal.
const LOAD_FOR: &str = "600s";

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

fn load_interrupted(signal: &str) {
    let server = hostile::start(Behaviour::Plausible);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = load_args(LOAD_FOR);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = interrupt(&server, &args, dir.path(), signal, || {
        server.stats.requests() >= 30
    });
    let report = assert_interrupted(&run, dir.path());
    let create = scenario(&report, "create");
    let load = &create["load"];
    // The target's 30 requests: the reachability probe, the warm-up's (not recorded),
    // and the iterations.
    let warmed = load["generator"]["warm_up_requests"].as_u64().unwrap_or(0);
    assert!(
        load["iterations"].as_u64().unwrap_or(0) + 1 + warmed >= 30,
        "{load}"
    );
    assert!(
        create["requests"].as_u64().unwrap_or(0) + 1 + warmed >= 30,
        "{create}"
    );
    assert_eq!(create["errors"], 0, "{create}");
    assert!(dir.path().join("create.hgrm").exists());
    assert!(dir.path().join("create.hlog").exists());
}

#[test]
fn sigterm_stops_a_load_run_and_keeps_what_it_measured() {
    load_interrupted("TERM");
}

#[test]
fn sigint_stops_a_load_run_and_keeps_what_it_measured() {
    load_interrupted("INT");
}

#[test]
fn sigterm_stops_a_load_run_whose_requests_all_hang() {
    let server = hostile::start(Behaviour::Silent);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = load_args(LOAD_FOR);
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

/// The way most people run it: no `--target`, so the run starts its embedded server,
/// and Ctrl-C. Its 50 closed-model users connect to that server inside the child, two
/// sockets per connection, so the child's open sockets show the load is under way: 40
/// is past the listener, the signal pipe and the probe's connection.
#[test]
fn sigint_stops_a_load_run_against_the_embedded_server_and_keeps_what_it_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = binary::spawn(&[
        "run",
        &binary::plan("load.toml"),
        "--scenario",
        "create",
        "--users",
        "50",
        "--duration",
        LOAD_FOR,
        "--report-dir",
        dir.path().to_str().expect("UTF-8 path"),
    ]);
    let run = interrupt_once(running, "INT", |running| running.open_sockets() >= 40);
    let report = assert_interrupted(&run, dir.path());
    let create = scenario(&report, "create");
    assert!(
        create["load"]["iterations"].as_u64().unwrap_or(0) > 0,
        "what ran is in the report: {create}"
    );
    assert!(create["requests"].as_u64().unwrap_or(0) > 0, "{create}");
}

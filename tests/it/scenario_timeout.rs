//! A scenario that runs past its `timeout` is cut off there, fails with a check that
//! says so, and the run goes on: the next scenario runs and passes, and every report
//! is written. Against the embedded server (`run PLAN`, no `--target`).

use crate::common;

use std::time::Duration;

use common::binary;

/// A run that has not ended by then has waited out the 600 s step: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(120);

/// `slow` waits far longer than its 1 s timeout; `next` is a plain round trip. Both
/// are exclusive, so they run one after the other, in this order: `next` starts only
/// once `slow` has ended.
const PLAN: &str = r#"
[plan]
name = "timeouts"

[[scenario]]
name = "slow"
exclusive = true
timeout = "1s"

[[scenario.step]]
create = { ttl = 30, save = "c" }
expect = { status = 200 }

[[scenario.step]]
wait = "600s"

[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }

[[scenario]]
name = "next"
exclusive = true

[[scenario.step]]
create = { ttl = 30, save = "c" }
expect = { status = 200 }

[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }
"#;

#[test]
fn a_scenario_that_times_out_fails_and_the_next_one_still_runs_and_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("timeouts.toml");
    std::fs::write(&plan, PLAN).expect("plan written");
    let reports = dir.path().join("reports");
    let run = binary::spawn(&[
        "run",
        plan.to_str().expect("UTF-8 path"),
        "--report-dir",
        reports.to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(1), "a failed check: {context}");
    assert!(!run.stderr.contains("panicked"), "{context}");
    binary::assert_reports_written(&reports);
    let report = binary::report(&reports);
    assert_eq!(report["passed"], false, "{report}");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["slow", "next"], "{report}");

    // `slow` kept its first step, then failed at the wait, at its deadline: not before
    // it, and not at the end of the 600 s wait.
    let slow = &scenarios[0];
    assert_eq!(slow["passed"], false, "{slow}");
    assert_eq!(slow["requests"], 1, "{slow}");
    let checks = slow["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 2, "{slow}");
    assert_eq!(checks[0]["outcome"], "pass", "{slow}");
    assert_eq!(checks[1]["outcome"], "fail", "{slow}");
    let message = checks[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("timed out after 1s at step 2"),
        "{message}"
    );
    let elapsed = slow["elapsed_s"].as_f64().expect("elapsed_s");
    assert!((1.0..600.0).contains(&elapsed), "slow ran {elapsed} s");

    let next = &scenarios[1];
    assert_eq!(next["passed"], true, "{next}");
    assert_eq!(next["requests"], 2, "{next}");
    let junit = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("timed out after 1s"), "{junit}");
}

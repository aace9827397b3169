//! The harness against targets that misbehave (issue 6): refused connections, resets
//! mid-answer, answers that never end, HTML and truncated JSON, 5xx, a 50 MiB body,
//! redirect loops and redirects elsewhere, a server that never answers; conformance
//! runs and load runs. Each run must end by itself, exit 1 (3 when nothing can be
//! connected to), write every report, carry evidence of what happened, and go on to
//! later scenarios; nothing panics and no key leaks.

use crate::common;

use std::time::Duration;

use common::binary::{self, Finished};
use common::hostile::{self, Behaviour, HUGE_BYTES, Hostile};
use serde_json::Value;

const KEY: &str = "kc_hostile_test_key_0123456789";
/// A run that has not ended by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(120);

/// `run scenarios/conformance.toml` against `target` with short timeouts.
fn conformance(target: &str, dir: &std::path::Path) -> Finished {
    binary::spawn(&[
        "run",
        &binary::plan("conformance.toml"),
        "--target",
        target,
        "--api-key",
        KEY,
        "--timeout",
        "1s",
        "--scenario-timeout",
        "10s",
        "--burst",
        "200",
        "--quiet",
        "--report-dir",
        dir.to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE)
}

/// Runs the suite against a server behaving as told, and checks what every such run
/// must show; returns the run, its report and the server for case-specific checks.
fn survives(behaviour: Behaviour, evidence: &str) -> (Finished, Value, Hostile) {
    let server = hostile::start(behaviour);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = conformance(&server.url, dir.path());
    let context = format!(
        "{behaviour:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.code, Some(1), "checks failed: {context}");
    assert!(!run.stderr.contains("panicked"), "{context}");
    binary::assert_reports_written(dir.path());
    let report = binary::report(dir.path());
    assert_eq!(report["passed"], false, "{context}");
    assert_eq!(report["interrupted"], false, "{context}");
    assert_no_key(&run, dir.path());

    // The run went on past the first failure: every scenario is in the report, and
    // each that was not skipped for want of keys sent requests.
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let planned = std::fs::read_to_string(binary::plan("conformance.toml"))
        .expect("plan")
        .matches("[[scenario]]")
        .count();
    assert_eq!(scenarios.len(), planned, "{context}");
    let tested: Vec<&Value> = scenarios.iter().filter(|s| s["skipped"] == false).collect();
    assert!(!tested.is_empty(), "every scenario was skipped: {context}");
    for scenario in tested {
        assert!(
            scenario["requests"].as_u64().unwrap_or(0) > 0,
            "{behaviour:?}: {} sent nothing: {scenario}",
            scenario["name"]
        );
    }
    let last = scenarios.last().expect("a scenario");
    assert_eq!(last["name"], "rate-limit");
    assert_eq!(last["passed"], false, "{behaviour:?}: {last}");

    // The failures say what happened.
    let shown: Vec<&str> = scenarios
        .iter()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
        .filter(|c| c["outcome"] == "fail")
        .filter_map(|c| c["evidence"]["response"].as_str())
        .collect();
    assert!(
        shown.iter().any(|r| r.contains(evidence)),
        "{behaviour:?}: no failure's evidence mentions {evidence:?}: {shown:#?}"
    );
    (run, report, server)
}

/// No output and no report carries the key.
fn assert_no_key(run: &Finished, dir: &std::path::Path) {
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY));
    for file in ["report.json", "junit.xml", "report.html"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(!text.contains(KEY), "{file} carries the key");
    }
}

fn failure_messages(report: &Value) -> Vec<String> {
    report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
        .filter(|c| c["outcome"] == "fail")
        .filter_map(|c| c["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_refused_connection_is_unreachable_exit_3() {
    // Bind then drop: the port is closed and connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let target = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = conformance(&target, dir.path());
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach the target {target}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("connection failed"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked") && !run.stderr.contains(KEY));
    // The reports still say what happened, for CI dashboards that read junit.xml.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], false);
    let scenarios = report["scenarios"].as_array().unwrap();
    assert!(scenarios.len() > 10);
    for scenario in scenarios {
        assert_eq!(scenario["checks"][0]["outcome"], "fail", "{scenario}");
        let message = scenario["checks"][0]["message"].as_str().unwrap();
        assert!(message.contains("cannot reach the target"), "{message}");
    }
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[test]
fn a_reset_mid_answer_fails_checks_and_the_run_goes_on() {
    let (run, _, _server) = survives(Behaviour::Reset, "broken answer");
    // It accepted the connection, so it is reachable and tested; stderr says so.
    assert!(
        run.stderr
            .contains("accepted a connection but gave no HTTP answer"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_answer_that_never_ends_times_out() {
    let (_, report, _server) = survives(Behaviour::Dribble, "timed out");
    assert!(
        failure_messages(&report)
            .iter()
            .any(|m| m.contains("timed out waiting for the answer")),
        "{report}"
    );
}

#[test]
fn html_instead_of_json_fails_with_the_page_as_evidence() {
    let (_, report, _server) = survives(Behaviour::Html, "<html>");
    assert!(
        failure_messages(&report)
            .iter()
            .any(|m| m.contains("<non-JSON body>")),
        "{report}"
    );
}

#[test]
fn truncated_json_fails_with_the_fragment_as_evidence() {
    survives(Behaviour::TruncatedJson, r#"{"challenge":"ab"#);
}

#[test]
fn every_other_answer_a_503_fails_with_the_status_as_evidence() {
    let (_, _, server) = survives(Behaviour::EveryOther503, "503 upstream unavailable");
    assert!(server.stats.requests() > 20);
}

#[test]
fn a_huge_answer_is_cut_at_the_cap_and_memory_stays_bounded() {
    let (run, report, server) = survives(Behaviour::Huge, "[body truncated]");
    assert!(
        failure_messages(&report)
            .iter()
            .any(|m| m.contains("got 200 <body over 256 KiB, cut>")),
        "{report}"
    );
    // The client hung up after the cap: no connection got near the whole body (what
    // it got past 256 KiB sat in socket buffers).
    let furthest = server
        .stats
        .max_body_written
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        furthest > 0 && furthest < HUGE_BYTES / 2,
        "{furthest} of {HUGE_BYTES} bytes"
    );
    assert!(server.stats.connections() > 20);
    // Memory is bounded by what is in flight (the burst's 64 requests) times the cap
    // plus hyper's read buffer: tens of MiB over the ~40 MiB a run takes anyway.
    // Holding whole answers would take gigabytes. The peak is read from
    // /proc/PID/status (VmHWM); a run whose peak cannot be read fails rather than
    // passing unchecked.
    let peak = run
        .peak_rss_kib
        .expect("no peak RSS for the run: /proc/PID/status (VmHWM) is needed to check memory");
    assert!(peak < 128 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_redirect_loop_ends_as_a_broken_answer() {
    survives(Behaviour::RedirectLoop, "redirected more than 5 times");
}

#[test]
fn a_redirect_to_another_origin_is_not_followed_so_the_key_stays_home() {
    let elsewhere = hostile::start(Behaviour::Plausible);
    let port = elsewhere
        .url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a port");
    // A 307 re-sends the body, which carries the key: following it would hand the key
    // to whoever listens there.
    let (_, report, _server) = survives(Behaviour::RedirectElsewhere { port }, "307");
    assert_eq!(elsewhere.stats.requests(), 0, "{report}");
}

#[test]
fn a_server_that_never_answers_times_out_and_is_still_tested() {
    let (run, report, server) = survives(Behaviour::Silent, "timed out waiting for the answer");
    // The probe waited --timeout for an answer, warned, and let the run go on.
    assert!(
        run.stderr
            .contains("accepted a connection but gave no HTTP answer"),
        "{}",
        run.stderr
    );
    // The burst gave up after a round of unanswered requests, not 200 timeouts.
    let burst = &report["scenarios"]
        .as_array()
        .and_then(|all| all.last())
        .expect("rate-limit")["checks"][0]["message"];
    assert!(
        burst
            .as_str()
            .unwrap_or("")
            .contains("in a row got no answer"),
        "{burst}"
    );
    assert!(server.stats.connections() < 200);
}

/// `run scenarios/load.toml --scenario create` at 50/s for 2 s: it ends by itself,
/// writes every report, and counts the failed requests. Returns the scenario's report
/// and the server.
fn load_against(behaviour: Behaviour) -> (Value, Hostile) {
    let server = hostile::start(behaviour);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = binary::spawn(&[
        "run",
        &binary::plan("load.toml"),
        "--scenario",
        "create",
        "--target",
        &server.url,
        "--api-key",
        KEY,
        "--rate",
        "50",
        "--duration",
        "2s",
        "--timeout",
        "1s",
        "--report-dir",
        dir.path().to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE);
    let context = format!(
        "{behaviour:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    // The error-rate threshold is crossed.
    assert_eq!(run.code, Some(1), "{context}");
    assert!(!run.stderr.contains("panicked"), "{context}");
    binary::assert_reports_written(dir.path());
    assert!(dir.path().join("create.hgrm").exists(), "{context}");
    assert_no_key(&run, dir.path());
    let report = binary::report(dir.path());
    let scenario = report["scenarios"][0].clone();
    assert!(scenario["requests"].as_u64().unwrap_or(0) > 0, "{scenario}");
    assert!(
        scenario["load"]["failed_requests"].as_u64().unwrap_or(0) > 0,
        "{scenario}"
    );
    let threshold = scenario["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("error_rate"))
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(threshold["outcome"], "fail", "{scenario}");
    (scenario, server)
}

fn count(scenario: &Value, figure: &str) -> u64 {
    scenario["load"][figure].as_u64().unwrap_or(0)
}

#[test]
fn a_load_run_against_a_server_that_never_answers_counts_timeouts() {
    let (scenario, _server) = load_against(Behaviour::Silent);
    assert!(count(&scenario, "timeouts") > 0, "{scenario}");
    assert_eq!(scenario["errors"], scenario["requests"], "{scenario}");
}

#[test]
fn a_load_run_against_a_resetting_server_counts_errors() {
    let (scenario, _server) = load_against(Behaviour::Reset);
    // Every request failed without an answer.
    assert_eq!(scenario["errors"], scenario["requests"], "{scenario}");
}

#[test]
fn a_load_run_against_an_answer_that_never_ends_counts_timeouts() {
    let (scenario, _server) = load_against(Behaviour::Dribble);
    assert!(count(&scenario, "timeouts") > 0, "{scenario}");
}

#[test]
fn a_load_run_against_huge_answers_stops_reading_at_the_cap() {
    let (scenario, server) = load_against(Behaviour::Huge);
    assert_eq!(scenario["errors"], scenario["requests"], "{scenario}");
    let furthest = server
        .stats
        .max_body_written
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        furthest < HUGE_BYTES / 2,
        "{furthest} of {HUGE_BYTES} bytes"
    );
}

#[test]
fn a_load_run_against_redirects_and_503s_counts_the_statuses() {
    let (redirected, _server) = load_against(Behaviour::RedirectLoop);
    assert!(
        redirected["load"]["status_counts"]["302"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{redirected}"
    );
    let (flaky, _server) = load_against(Behaviour::EveryOther503);
    assert!(
        flaky["load"]["status_counts"]["503"].as_u64().unwrap_or(0) > 0,
        "{flaky}"
    );
}

#[test]
fn timeouts_too_long_for_a_clock_do_not_overflow() {
    // Regression: `now + --scenario-timeout` panicked past the clock's range, and the
    // scenario vanished from the report.
    let server = hostile::start(Behaviour::Plausible);
    let dir = tempfile::tempdir().expect("tempdir");
    let forever = format!("{}s", u64::MAX);
    let run = binary::spawn(&[
        "run",
        &binary::plan("conformance.toml"),
        "--scenario",
        "hmac-validates",
        "--target",
        &server.url,
        "--api-key",
        KEY,
        "--timeout",
        &forever,
        "--scenario-timeout",
        &forever,
        "--report-dir",
        dir.path().to_str().expect("UTF-8 path"),
    ])
    .wait_bounded(DEADLINE);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let report = binary::report(dir.path());
    assert_eq!(report["scenarios"][0]["passed"], true, "{report}");
}

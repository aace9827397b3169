//! A hostile target cannot exhaust the harness (issue 15): whatever a target answers,
//! what a run keeps has a bound (error codes, saved challenges) and the reports it
//! writes stay small and well-formed. Each test drives the binary against a loopback
//! target that misbehaves on purpose and checks one bound.

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::binary::{self, Finished};
use common::hostile::{self, Behaviour, Hostile, NONCHARACTERS};
use serde_json::Value;

const KEY: &str = "kc_hostile_test_key_0123456789";
/// A run that has not ended by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(120);
const MIB: u64 = 1024 * 1024;

/// `run scenarios/<plan> --scenario <scenario>` against `server` with `extra`
/// arguments, reports in `dir`.
fn run(plan: &str, scenario: &str, server: &Hostile, dir: &Path, extra: &[&str]) -> Finished {
    let mut args = vec![
        "run",
        plan,
        "--scenario",
        scenario,
        "--target",
        &server.url,
        "--api-key",
        KEY,
        "--timeout",
        "1s",
        "--quiet",
        "--report-dir",
        dir.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    binary::spawn(&args).wait_bounded(DEADLINE)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .len()
}

/// The figures of one step of a load scenario ("1 create", "2 validate").
fn step<'a>(scenario: &'a Value, name: &str) -> &'a Value {
    scenario["load"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {scenario}"))
}

#[test]
fn a_fresh_16_kib_error_code_per_request_keeps_memory_and_reports_bounded() {
    // Before the bound: 8 GB peak and a 1.9 GB report.json, past the run's own end.
    let server = hostile::start(Behaviour::FreshErrorCode { bytes: 16 * 1024 });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = binary::plan("load.toml");
    let finished = run(
        &plan,
        "create",
        &server,
        dir.path(),
        &["--users", "4", "--duration", "6s"],
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", finished.stdout, finished.stderr);
    // Every answer is a 400: the error-rate threshold fails.
    assert_eq!(finished.code, Some(1), "{context}");
    assert!(!finished.stderr.contains("panicked"), "{context}");
    binary::assert_reports_written(dir.path());

    let report = binary::report(dir.path());
    let scenario = &report["scenarios"][0];
    let load = &scenario["load"];
    // On time: the load stopped at its 6 s and nothing was left to abandon.
    assert!(
        load["duration_s"].as_f64().unwrap_or(f64::MAX) <= 6.5,
        "{load}"
    );
    assert_eq!(load["in_flight_at_end"], 0, "{load}");
    let answered = load["status_counts"]["400"].as_u64().unwrap_or(0);
    assert!(answered > 1_000, "too few answers to show a bound: {load}");

    // A few dozen codes kept; every other answer counted as `other`, with one cut
    // example; nothing lost.
    let codes = load["error_codes"].as_object().expect("error_codes");
    assert!(codes.len() <= 33, "{} codes kept", codes.len());
    assert!(codes.keys().all(|code| code.len() <= 64), "{codes:?}");
    assert_eq!(
        codes.values().filter_map(Value::as_u64).sum::<u64>(),
        answered,
        "{codes:?}"
    );
    assert!(codes["other"].as_u64().unwrap_or(0) > 0, "{codes:?}");
    let example = load["error_code_example"].as_str().expect("an example");
    assert!(example.chars().count() <= 65, "{example}");

    for file in ["report.json", "report.html", "junit.xml"] {
        let bytes = size(&dir.path().join(file));
        assert!(bytes < 5 * MIB, "{file}: {bytes} bytes");
    }
    let peak = finished
        .peak_rss_kib
        .expect("no peak RSS for the run: /proc/PID/status (VmHWM) is needed to check memory");
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");
}

/// Parses `path` with Python's expat (a strict XML 1.0 parser); the error if it fails.
fn strict_xml_error(path: &Path) -> Option<String> {
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])",
        ])
        .arg(path)
        .output()
        .expect("python3 runs (the strict XML parser of this test)");
    (!parsed.status.success()).then(|| String::from_utf8_lossy(&parsed.stderr).into_owned())
}

#[test]
fn answers_holding_characters_xml_forbids_leave_junit_well_formed() {
    let server = hostile::start(Behaviour::Noncharacters);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = binary::plan("conformance.toml");
    let finished = run(&plan, "hmac-validates", &server, dir.path(), &[]);
    let context = format!("stdout:\n{}\nstderr:\n{}", finished.stdout, finished.stderr);
    assert_eq!(finished.code, Some(1), "{context}");
    binary::assert_reports_written(dir.path());

    // The characters reached the report (JSON carries them escaped or as they are)...
    let json = std::fs::read_to_string(dir.path().join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&json).expect("report.json is JSON");
    let check = &report["scenarios"][0]["checks"][0];
    let shown = format!("{} {}", check["message"], check["evidence"]["response"]);
    assert!(
        shown.contains('\u{fffe}') && shown.contains('\u{ffff}'),
        "{shown}"
    );
    assert!(NONCHARACTERS.contains('\u{1}'));

    // ...and junit.xml, which they would break, still parses strictly, with the
    // replacement character where they were.
    let junit = dir.path().join("junit.xml");
    if let Some(error) = strict_xml_error(&junit) {
        panic!(
            "junit.xml is not well-formed XML: {error}\n{}",
            std::fs::read_to_string(&junit).unwrap_or_default()
        );
    }
    let xml = std::fs::read_to_string(&junit).expect("junit.xml");
    assert!(xml.contains('\u{fffd}'), "{xml}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
    for forbidden in ['\u{fffe}', '\u{ffff}', '\u{1}', '\u{1b}'] {
        assert!(!xml.contains(forbidden), "{forbidden:?} in junit.xml");
        assert!(!html.contains(forbidden), "{forbidden:?} in report.html");
    }
}

#[test]
fn a_challenge_too_large_to_carry_fails_its_create_and_is_not_sent_on() {
    // 250 KB challenges: carried into every validation they would cost each
    // iteration in flight about half a megabyte.
    let server = hostile::start(Behaviour::HugeChallenge { bytes: 250_000 });
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = binary::plan("load.toml");
    let finished = run(
        &plan,
        "create-validate",
        &server,
        dir.path(),
        &["--users", "2", "--duration", "2s"],
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", finished.stdout, finished.stderr);
    assert_eq!(finished.code, Some(1), "{context}");
    let report = binary::report(dir.path());
    let scenario = &report["scenarios"][0];
    let create = step(scenario, "1 create");
    assert!(create["requests"].as_u64().unwrap_or(0) > 0, "{scenario}");
    assert_eq!(create["failed"], create["requests"], "{scenario}");
    // No validation carried the challenge.
    let largest = server.stats.max_request_body.load(Ordering::SeqCst);
    assert!(largest < 8 * 1024, "a request body of {largest} bytes");
}

#[test]
fn a_duplicated_name_fails_a_load_request_as_it_fails_a_conformance_check() {
    // `{"valid":false,"valid":true}`: valid to a last-wins parser, a refusal to a
    // first-wins one. The conformance suite fails it; so does a load run.
    let server = hostile::start(Behaviour::DuplicateValid);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = binary::plan("load.toml");
    let finished = run(
        &plan,
        "create-validate",
        &server,
        dir.path(),
        &["--users", "2", "--duration", "2s"],
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", finished.stdout, finished.stderr);
    assert_eq!(finished.code, Some(1), "{context}");
    let report = binary::report(dir.path());
    let scenario = &report["scenarios"][0];
    // Creates are answered plainly; the odd one lost to a connection on a loaded
    // machine does not matter here, as long as validations had challenges to carry.
    let create = step(scenario, "1 create");
    let (created, failed) = (
        create["requests"].as_u64().unwrap_or(0),
        create["failed"].as_u64().unwrap_or(u64::MAX),
    );
    assert!(created > 0 && failed * 100 < created, "{scenario}");
    let validate = step(scenario, "2 validate");
    assert!(validate["requests"].as_u64().unwrap_or(0) > 0, "{scenario}");
    assert_eq!(validate["failed"], validate["requests"], "{scenario}");
}

//! `run scenarios/conformance.toml` as CI runs it: passes against the embedded server,
//! fails with each fault on the scenario that names the broken guarantee, exits 3 for an
//! unreachable target and 2 for a bad plan.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyclaim-harness");

fn plan() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml")
}

fn run(args: &[&str], report_dir: &Path) -> (Output, Value) {
    let output = Command::new(BIN)
        .arg("run")
        .arg(plan())
        .arg("--report-dir")
        .arg(report_dir)
        .args(args)
        .env_remove("KEYCLAIM_TARGET")
        .env_remove("KEYCLAIM_API_KEY")
        .output()
        .unwrap();
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (output, report)
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no scenario {name} in {report}"))
}

#[test]
fn the_suite_passes_against_the_embedded_server() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = run(&[], dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["passed"], true);
    let scenarios = report["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 18, "{}", scenarios.len());
    for s in scenarios {
        assert_eq!(s["passed"], true, "{s}");
        assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
        for check in s["checks"].as_array().unwrap() {
            assert_eq!(
                check["outcome"], "pass",
                "the reference server follows every SHOULD: {check}"
            );
        }
        let warnings = s
            .get("warnings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert!(
            !warnings
                .iter()
                .any(|w| w.as_str().unwrap_or("").contains("vacuous")),
            "{s}"
        );
    }
    assert!(dir.path().join("junit.xml").exists());
    assert!(dir.path().join("report.html").exists());
    // The same run under --strict also passes: nothing is skipped or non-strict.
    let strict_dir = tempfile::tempdir().unwrap();
    let (strict, _) = run(&["--strict"], strict_dir.path());
    assert_eq!(
        strict.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&strict.stdout)
    );
}

/// Each fault, and the scenario that names the guarantee it breaks.
const FAULTS: &[(&str, &str)] = &[
    ("accept-replay", "replay"),
    ("ignore-ttl", "expired"),
    ("accept-any-response", "tampered-response"),
    ("never-rate-limit", "rate-limit"),
    ("wrong-error-code", "replay"),
    ("replay-race", "concurrent-replay"),
    ("accept-unknown-key", "unknown-key"),
    ("plaintext-rsa", "rsa-python-guide"),
    ("rsa-oaep-sha1", "rsa-python-guide"),
    ("cross-key", "foreign-challenge"),
    ("bad-input-500", "malformed-requests"),
];

#[test]
fn every_fault_fails_the_scenario_that_names_its_guarantee() {
    let listed = Command::new(BIN)
        .args(["serve", "--list-faults"])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in &names {
        assert!(
            FAULTS.iter().any(|(fault, _)| fault == name),
            "fault {name} has no expected scenario here"
        );
    }
    // Run the faults in parallel: each run is its own process and server.
    let results: Vec<(&str, &str, Output, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = FAULTS
            .iter()
            .map(|(fault, expected)| {
                scope.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    let (output, report) = run(&["--fault", fault], dir.path());
                    (*fault, *expected, output, report)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (fault, expected, output, report) in results {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "fault {fault}: {stdout}");
        assert_eq!(report["passed"], false, "fault {fault}");
        let failed = scenario(&report, expected);
        assert_eq!(
            failed["passed"], false,
            "fault {fault} should fail {expected}: {failed}"
        );
        assert!(
            failed["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["outcome"] == "fail"),
            "fault {fault}: {failed}"
        );
        assert!(
            stdout.contains(expected),
            "the console names {expected}: {stdout}"
        );
    }
}

#[test]
fn an_unreachable_target_exits_3_quickly() {
    let dir = tempfile::tempdir().unwrap();
    // Bind then drop a listener: the port is closed and nothing answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let target = format!("http://127.0.0.1:{port}");
    let (output, _) = run(
        &["--target", &target, "--api-key", "kc_whatever_1234"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the target"), "{stderr}");
    assert!(!stderr.contains("kc_whatever_1234"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn an_invalid_plan_exits_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[scenario]]\nname = \"x\"\n\n[[scenario.step]]\nvalidate = { challenge = \"c\", respnse = \"hmac\" }\n").unwrap();
    let output = Command::new(BIN).arg("run").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:5:"), "{stderr}");
    let missing = Command::new(BIN)
        .args(["run", "no/such/plan.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let unknown = Command::new(BIN)
        .arg("run")
        .arg(plan())
        .args(["--scenario", "nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let with_target = Command::new(BIN)
        .arg("run")
        .arg(plan())
        .args(["--target", "http://127.0.0.1:9"])
        .env_remove("KEYCLAIM_API_KEY")
        .output()
        .unwrap();
    assert_eq!(
        with_target.status.code(),
        Some(2),
        "--target without --api-key"
    );
}

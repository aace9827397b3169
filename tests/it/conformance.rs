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

/// The self-test's matrix as `tests/fixtures/selftest-matrix.txt` pins it: for each
/// fault, exactly the checks that catch it (`KC-4.2 replay step 3`); for each style and
/// the reference, `passed`. A fault caught by one more or one fewer check than the file
/// says, a style that fails, or a fault or style missing from the file, fails this test.
/// `KEYCLAIM_BLESS=1` rewrites the file from the run, for a deliberate change (review the
/// diff: it is the suite's power changing).
#[test]
fn every_fault_is_caught_exactly_where_the_matrix_says_and_every_style_passes() {
    let output = Command::new(BIN)
        .args(["selftest", "--format", "json", "--jobs", "32"])
        .output()
        .unwrap();
    let cases: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "selftest printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let measured: String = cases
        .iter()
        .map(|case| {
            let checks: Vec<&str> = case["failed_checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let what = if case["suite_passed"] == true {
                "passed".to_owned()
            } else {
                checks.join("; ")
            };
            format!("{}: {what}\n", case["case"].as_str().unwrap())
        })
        .collect();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/selftest-matrix.txt");
    if std::env::var_os("KEYCLAIM_BLESS").is_some() {
        std::fs::write(&golden, &measured).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        lines(&measured),
        lines(&expected),
        "the self-test's matrix differs from {} (KEYCLAIM_BLESS=1 rewrites it)",
        golden.display()
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every fault and style the server has is in the matrix, and nothing else.
    let listed = |flag: &str| -> Vec<String> {
        let out = Command::new(BIN).args(["serve", flag]).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let (faults, styles) = (listed("--list-faults"), listed("--list-styles"));
    assert!(
        faults.len() >= 60 && styles.len() >= 10,
        "{faults:?} {styles:?}"
    );
    for fault in &faults {
        let line = format!("fault {fault}: ");
        let pinned = expected.lines().find(|l| l.starts_with(&line));
        assert!(
            pinned.is_some_and(|l| l.len() > line.len() && !l.ends_with("passed")),
            "fault {fault} is not pinned to the checks that catch it"
        );
    }
    for style in &styles {
        assert!(
            expected.contains(&format!("style {style}: passed\n")),
            "style {style} is not shown passing"
        );
    }
    assert!(
        expected.starts_with("reference --strict: passed\n"),
        "{expected}"
    );
    assert_eq!(
        expected.lines().count(),
        faults.len() + styles.len() + 2,
        "one line each for the reference, the faults, the styles and all styles at once"
    );
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

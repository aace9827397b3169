//! `run scenarios/conformance.toml` as CI runs it: passes against the embedded server,
//! fails with each fault exactly where the self-test matrix says, passes every style,
//! exits 3 for an unreachable target and 2 for a bad plan; `--strict` fails skips and
//! unmet SHOULDs alike in every report; the client rides out rate limits and warns of a
//! pass that proves nothing.

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

/// The four scenarios of the `--strict` tests below, against `serve` with one key in the
/// `method-501` style: one passes outright, two are skipped (no second key, no RSA key),
/// and one meets a SHOULD the style does not follow (501, not 405).
fn strict_profile_run(strict: bool, dir: &Path) -> (Output, Value, String) {
    let served = crate::common::binary::serve(KEY, &["--style", "method-501"]);
    let mut args = vec!["--target", served.url.as_str(), "--api-key", KEY];
    for scenario in STRICT_PROFILE_SCENARIOS {
        args.extend(["--scenario", scenario]);
    }
    if strict {
        args.push("--strict");
    }
    let (output, report) = run(&args, dir);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    (output, report, junit)
}

const KEY: &str = "kc_conformance_profile_key";
const STRICT_PROFILE_SCENARIOS: [&str; 4] = [
    "create-answer",
    "foreign-challenge",
    "rsa-python-guide",
    "unknown-endpoint",
];

/// The JUnit `<testcase>` element of `name`, up to its end.
fn junit_case<'a>(junit: &'a str, name: &str) -> &'a str {
    let start = junit
        .find(&format!("<testcase name=\"{name}\""))
        .unwrap_or_else(|| panic!("no testcase {name} in\n{junit}"));
    let end = junit[start..].find("</testcase>").expect("closed testcase");
    &junit[start..start + end]
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name} in {report}"))
}

/// Without `--strict`, skipped scenarios and unmet SHOULDs do not fail the run, and every
/// report says so in the same words: SKIP, `<skipped>`, `skipped: true`.
#[test]
fn a_default_run_lets_skips_and_shoulds_pass_in_console_junit_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report, junit) = strict_profile_run(false, dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["strict"], false);
    for (name, console, passed, skipped) in [
        ("create-answer", "PASS", true, false),
        ("foreign-challenge", "SKIP", true, true),
        ("rsa-python-guide", "SKIP", true, true),
        ("unknown-endpoint", "PASS", true, false),
    ] {
        let line = stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no table row for {name}:\n{stdout}"));
        assert!(line.starts_with(console), "{line}");
        let json = scenario(&report, name);
        assert_eq!(
            (&json["passed"], &json["skipped"]),
            (&passed.into(), &skipped.into()),
            "{json}"
        );
        let case = junit_case(&junit, name);
        assert_eq!(case.contains("<skipped"), skipped, "{case}");
        assert!(!case.contains("<failure"), "{case}");
    }
    let outcomes: Vec<&Value> = scenario(&report, "unknown-endpoint")["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| &check["outcome"])
        .collect();
    assert!(
        outcomes.contains(&&Value::from("non-strict")),
        "{outcomes:?}"
    );
    assert!(stdout.contains("NON-STRICT unknown-endpoint"), "{stdout}");
    assert!(
        stdout.contains("4 scenarios: 2 passed, 0 failed, 2 skipped (checks: 5 pass, 0 fail, 1 non-strict, 2 skipped)"),
        "{stdout}"
    );
    assert!(
        junit.contains(r#"<testsuites name="keyclaim" tests="4" skipped="2" failures="0""#),
        "{junit}"
    );
}

/// Under `--strict`, a skipped scenario and an unmet SHOULD fail the run, and every report
/// agrees: FAIL in the console, `<failure>` (never `<skipped>`) in JUnit, `passed: false`
/// in JSON, exit 1.
#[test]
fn a_strict_run_fails_skips_and_shoulds_alike_in_console_junit_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report, junit) = strict_profile_run(true, dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(report["passed"], false);
    assert_eq!(report["strict"], true);
    for (name, console, passed) in [
        ("create-answer", "PASS", true),
        ("foreign-challenge", "FAIL", false),
        ("rsa-python-guide", "FAIL", false),
        ("unknown-endpoint", "FAIL", false),
    ] {
        let line = stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no table row for {name}:\n{stdout}"));
        assert!(line.starts_with(console), "{line}");
        let json = scenario(&report, name);
        assert_eq!(json["passed"], passed, "{json}");
        let case = junit_case(&junit, name);
        assert_eq!(case.contains("<failure"), !passed, "{case}");
        assert!(!case.contains("<skipped"), "{case}");
    }
    assert!(
        stdout.contains("needs a second API key (--second-api-key)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("needs an RSA key (--rsa-api-key and --private-key)"),
        "{stdout}"
    );
    assert!(stdout.contains("(required under --strict)"), "{stdout}");
    assert!(
        stdout.contains("4 scenarios: 1 passed, 3 failed, 0 skipped (checks: 5 pass, 1 fail, 0 non-strict, 2 skipped)"),
        "{stdout}"
    );
    assert!(
        junit.contains(r#"<testsuites name="keyclaim" tests="4" skipped="0" failures="3""#),
        "{junit}"
    );
}

/// A target that refuses the run's key lets a refusal-only scenario pass; the pass says it
/// proves nothing, in the console and every report.
#[test]
fn a_target_refusing_the_key_gets_a_vacuous_pass_warning() {
    let served = crate::common::binary::serve(KEY, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = run(
        &[
            "--target",
            &served.url,
            "--api-key",
            "kc_not_the_key_the_target_knows",
            "--scenario",
            "unknown-challenge",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let warning = "vacuous pass: every answer to a request with a configured key";
    assert!(
        stdout.contains(&format!("warning: unknown-challenge: {warning}")),
        "{stdout}"
    );
    let warnings = &scenario(&report, "unknown-challenge")["warnings"];
    assert!(warnings.to_string().contains(warning), "{warnings}");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains(warning), "{junit}");
    // The same scenario against the key the target knows proves something: no warning.
    let honest_dir = tempfile::tempdir().unwrap();
    let (honest, report) = run(
        &[
            "--target",
            &served.url,
            "--api-key",
            KEY,
            "--scenario",
            "unknown-challenge",
        ],
        honest_dir.path(),
    );
    assert_eq!(honest.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&honest.stdout).contains("vacuous"));
    assert!(
        scenario(&report, "unknown-challenge")
            .get("warnings")
            .is_none_or(|w| !w.to_string().contains("vacuous"))
    );
}

/// Against a target that limits the key to 2 requests a second, scenarios that are not
/// about rate limiting ride out its 429s (waiting as `Retry-After` says), still pass, and
/// say how many requests they sent again.
#[test]
fn rate_limited_answers_are_waited_out_and_the_retries_reported() {
    let served = crate::common::binary::serve(KEY, &["--rate-limit", "2", "--rate-burst", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = run(
        &[
            "--target",
            &served.url,
            "--api-key",
            KEY,
            "--scenario",
            "replay",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let replay = scenario(&report, "replay");
    let retries = replay["rate_limit_retries"].as_u64().unwrap();
    assert!(retries > 0, "{replay}");
    assert!(
        stdout.contains(&format!(
            "warning: replay: {retries} request(s) were retried after rate_limited answers"
        )),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains(&format!("rate_limit_retries={retries}")),
        "{junit}"
    );
    // Every request the scenario sent, retries included, is counted.
    assert!(replay["requests"].as_u64().unwrap() > retries, "{replay}");
}

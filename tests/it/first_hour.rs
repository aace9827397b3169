//! A newcomer's mistakes and what they are told: a target without a scheme, durations of
//! zero or below and a mistyped tag are argument errors (exit 2) that say what to do and
//! leave the last reports alone; an empty `KEYCLAIM_…` variable counts as unset; the
//! plans travel with the binary; a load run's console says what its failures were and
//! how each threshold went; a run's report directory holds that run's files only.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::binary;

const KEY: &str = "kc_first_hour_key_0123";
const DEADLINE: Duration = Duration::from_secs(120);

/// `keyclaim-harness ARGS` in `dir`, with `env` as its only KEYCLAIM_ settings.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(binary::BIN);
    command.args(args).current_dir(dir).stdin(Stdio::null());
    binary::without_settings(&mut command);
    command.envs(env.iter().copied());
    let output = command.output().expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn argument_mistakes_exit_2_with_the_fix_and_keep_the_last_reports() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("report.json"), "the last good report").unwrap();
    let plan = binary::plan("conformance.toml");
    let load = binary::plan("load.toml");
    let cases: [(&[&str], &str); 7] = [
        (
            &["--target", "127.0.0.1:8080", "--api-key", KEY],
            "did you mean `http://127.0.0.1:8080`",
        ),
        (
            &["--target", "localhost:8080", "--api-key", KEY],
            "did you mean `http://localhost:8080`",
        ),
        (&["--duration", "0s"], "above zero"),
        (&["--duration", "-1s"], "cannot be negative"),
        (&["--timeout", "0s"], "above zero"),
        (&["--tags", "ttll"], "did you mean `ttl`"),
        (&["--tags", "nonesuch"], "the plans' tags: "),
    ];
    for (extra, says) in cases {
        let mut args = vec![
            "run",
            plan.as_str(),
            "--report-dir",
            reports.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let done = binary::spawn(&args).wait_bounded(DEADLINE);
        assert_eq!(done.code, Some(2), "{extra:?}: {done:?}");
        assert!(done.stderr.contains(says), "{extra:?}: {}", done.stderr);
        assert!(!done.stderr.contains("-- -1"), "{}", done.stderr);
    }
    // `--duration` on the load plan too, where it matters.
    let done = binary::spawn(&["run", &load, "--duration", "0s"]).wait_bounded(DEADLINE);
    assert_eq!(done.code, Some(2), "{done:?}");
    assert_eq!(
        std::fs::read_to_string(reports.join("report.json")).unwrap(),
        "the last good report"
    );
}

#[test]
fn plans_travel_with_the_binary_and_empty_settings_count_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    // Outside a checkout: the built-in plan, named three ways. An empty KEYCLAIM_TARGET
    // (an undefined CI secret) means the embedded server, not a target called "".
    for plan in [
        "builtin:conformance",
        "conformance",
        "scenarios/conformance.toml",
    ] {
        let (code, stdout, stderr) = run_in(
            dir.path(),
            &["run", plan, "--scenario", "unknown-challenge", "--quiet"],
            &[("KEYCLAIM_TARGET", ""), ("KEYCLAIM_API_KEY", "")],
        );
        assert_eq!(code, Some(0), "{plan}: {stdout}{stderr}");
        assert!(stdout.contains("1 passed"), "{plan}: {stdout}");
        assert_eq!(
            stderr.contains("built into this binary"),
            plan == "scenarios/conformance.toml",
            "{plan}: {stderr}"
        );
    }
    let (code, stdout, _) = run_in(dir.path(), &["plans", "--out", "mine"], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let written = std::fs::read_to_string(dir.path().join("mine/conformance.toml")).unwrap();
    assert_eq!(
        written,
        std::fs::read_to_string(binary::plan("conformance.toml")).unwrap()
    );
    let (code, _, stderr) = run_in(dir.path(), &["plans", "--out", "mine"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, _, stderr) = run_in(dir.path(), &["run", "builtin:nope"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("conformance, load, soak"), "{stderr}");
}

#[test]
fn a_failing_load_run_says_why_and_its_directory_holds_only_its_reports() {
    let server = binary::serve(KEY, &[]);
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    // An earlier run's histogram of a scenario this run does not have, and a file of
    // the user's.
    std::fs::write(reports.join("old-scenario.hgrm"), "stale").unwrap();
    std::fs::write(reports.join("notes.txt"), "mine").unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        r#"
[[scenario]]
name = "create"
[scenario.load]
users = 2
duration = "1s"
thresholds = ["p99 < 10s", "error_rate < 1%"]
[[scenario.step]]
create = { ttl = 30 }
expect = { status = 200 }
"#,
    )
    .unwrap();
    let done = binary::spawn(&[
        "run",
        plan.to_str().unwrap(),
        "--target",
        &server.url,
        "--api-key",
        "kc_not_the_servers_key_000",
        "--report-dir",
        reports.to_str().unwrap(),
    ])
    .wait_bounded(DEADLINE);
    assert_eq!(done.code, Some(1), "{done:?}");
    let out = &done.stdout;
    assert!(
        out.lines()
            .any(|l| l.contains("failures") && l.contains("401 ×") && l.contains("invalid_key ×")),
        "{out}"
    );
    assert!(out.contains("threshold  ✓ p99 < 10s"), "{out}");
    assert!(out.contains("threshold  ✗"), "{out}");
    assert!(out.contains("p95 "), "{out}");
    assert!(!reports.join("old-scenario.hgrm").exists());
    assert!(reports.join("create.hgrm").exists());
    assert_eq!(
        std::fs::read_to_string(reports.join("notes.txt")).unwrap(),
        "mine"
    );
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    let failures = html.find("<h2>Failures").expect("failures listed");
    assert!(failures < html.find("<h2>Scenarios").unwrap());
}

//! `compare` on real runs: two runs of one build against one server compare clean; a
//! run against a server that stalls 100 ms of every second is flagged on its p99 and
//! never shown improved; runs of a different load (a
//! `--rate` override) are refused with exit 2 naming the difference; an unknown
//! tolerance is an argument error with a suggestion.
//!
//! The runs go at the same time, so whatever else loads the machine falls on each of
//! them alike: the comparison is then about the servers, as it is in CI between a
//! baseline and a change measured on the same runner.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::binary::{self, Finished};
use serde_json::Value;

const KEY: &str = "kc_compare_test_key_0123";
/// A run or a compare that has not ended by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(180);

/// An open model of 250 creates/s, 1,500 of them (6 s of intended starts), with the
/// plan's own regression tolerances.
const PLAN: &str = r#"
[plan]
name = "compare"

[[scenario]]
name = "create"
[scenario.load]
rate = 250
iterations = 1500
duration = "60s"
regression = ["p99 +10%", "error_rate +0.1pp"]
[[scenario.step]]
create = { ttl = 30 }
expect = { status = 200 }
"#;

fn start_run(url: &str, plan: &Path, reports: &Path, extra: &[&str]) -> binary::Running {
    let mut args = vec![
        "run",
        plan.to_str().expect("UTF-8 path"),
        "--target",
        url,
        "--api-key",
        KEY,
        "--quiet",
        "--report-dir",
        reports.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    binary::spawn(&args)
}

fn compare(args: &[&str]) -> Finished {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    binary::spawn(&all).wait_bounded(DEADLINE)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The whole scenario's figure `metric` in compare.json.
fn figure<'a>(json: &'a Value, metric: &str) -> &'a Value {
    json["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|part| part.get("step").is_none())
        .and_then(|part| {
            part["figures"]
                .as_array()
                .expect("figures")
                .iter()
                .find(|f| f["metric"] == metric)
        })
        .unwrap_or_else(|| panic!("no {metric} in {json:#}"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("compare.json written"))
        .expect("compare.json is JSON")
}

#[test]
fn same_build_compares_clean_stalls_are_flagged_on_the_tail_and_other_plans_are_refused() {
    // Four runs at once: not beside the minutes-long matrix tests as well.
    let _heavy = common::heavy_test();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("compare.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let server = binary::serve(KEY, &[]);
    let stalling = binary::serve(KEY, &["--pause-every", "1s", "--pause-for", "100ms"]);
    let (base, same, stalled, other) = (
        dir.path().join("base"),
        dir.path().join("same"),
        dir.path().join("stalled"),
        dir.path().join("other"),
    );
    let runs = [
        start_run(&server.url, &plan, &base, &[]),
        start_run(&server.url, &plan, &same, &[]),
        start_run(&stalling.url, &plan, &stalled, &[]),
        start_run(
            &server.url,
            &plan,
            &other,
            &["--rate", "100", "--duration", "2s"],
        ),
    ];
    for run in runs {
        let finished = run.wait_bounded(DEADLINE);
        // The stalled run may cross no threshold: the plan has none.
        assert_eq!(finished.code, Some(0), "{finished:?}");
    }

    // Same build, same server, same moment: no regression.
    let clean_out = dir.path().join("clean");
    let clean = compare(&[s(&base), s(&same), "--out", s(&clean_out)]);
    assert_eq!(clean.code, Some(0), "{}{}", clean.stdout, clean.stderr);
    assert!(
        clean.stdout.contains("compare: no regression"),
        "{}",
        clean.stdout
    );
    let json = read_json(&clean_out.join("compare.json"));
    assert_eq!(json["regressed"], false);
    assert!(
        json["tolerances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "p99 +10%"),
        "the plan's tolerance applies: {}",
        json["tolerances"]
    );
    let junit = std::fs::read_to_string(clean_out.join("compare.xml")).unwrap();
    let figures: usize = json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["figures"].as_array().unwrap().len())
        .sum();
    assert_eq!(junit.matches("<testcase").count(), figures, "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");

    // Stalls of 100 ms in every second: 10% of arrivals wait up to 100 ms more.
    let slow_out = dir.path().join("slow");
    let slow = compare(&[s(&base), s(&stalled), "--out", s(&slow_out)]);
    assert_eq!(slow.code, Some(1), "{}{}", slow.stdout, slow.stderr);
    let json = read_json(&slow_out.join("compare.json"));
    assert_eq!(json["regressed"], true);
    assert_eq!(
        figure(&json, "p99")["verdict"],
        "regression",
        "{}",
        slow.stdout
    );
    // p99.9 of 1,500 requests reaches the baseline's max, which a loaded machine can
    // push past 100 ms on its own: flagged when the machine is quiet, never improved.
    assert_ne!(
        figure(&json, "p999")["verdict"],
        "improved",
        "{}",
        slow.stdout
    );
    // The median is mostly untouched by the stalls, but on a busy machine the queue
    // each stall leaves drains slowly enough to move it: never improved.
    assert_ne!(
        figure(&json, "p50")["verdict"],
        "improved",
        "{}",
        slow.stdout
    );
    assert!(
        slow.stdout.contains("compare: REGRESSION") && slow.stdout.contains("create p99"),
        "{}",
        slow.stdout
    );
    let junit = std::fs::read_to_string(slow_out.join("compare.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    let html = std::fs::read_to_string(slow_out.join("compare.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("regression"));

    // A different load (--rate 100) is a different run: refused, naming it.
    let refused = compare(&[s(&base), s(&other)]);
    assert_eq!(
        refused.code,
        Some(2),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("different plans or overrides")
            && refused.stderr.contains("open 250/s")
            && refused.stderr.contains("open 100/s")
            && refused.stderr.contains("--allow-plan-mismatch"),
        "{}",
        refused.stderr
    );
    let allowed = compare(&[s(&base), s(&other), "--allow-plan-mismatch"]);
    assert_ne!(
        allowed.code,
        Some(2),
        "{}{}",
        allowed.stdout,
        allowed.stderr
    );
    assert!(
        allowed.stdout.contains("compared across a plan change"),
        "{}",
        allowed.stdout
    );

    // An unknown tolerance metric is an argument error, with a suggestion.
    let bad = compare(&[s(&base), s(&same), "--tolerance", "p99.5 +10%"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("unknown metric `p99.5`") && bad.stderr.contains("p(99.5)"),
        "{}",
        bad.stderr
    );
    let typo = compare(&[s(&base), s(&same), "--tolerance", "eror_rate +1pp"]);
    assert_eq!(typo.code, Some(2), "{}", typo.stderr);
    assert!(typo.stderr.contains("error_rate"), "{}", typo.stderr);
}

#[test]
fn a_bad_regression_tolerance_in_a_plan_is_placed_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("bad.toml");
    std::fs::write(
        &plan,
        PLAN.replace(
            r#"regression = ["p99 +10%", "error_rate +0.1pp"]"#,
            r#"regression = ["p99 +10%", "latncy +5%"]"#,
        ),
    )
    .unwrap();
    let run = binary::spawn(&["run", s(&plan), "--api-key", KEY]).wait_bounded(DEADLINE);
    assert_eq!(run.code, Some(2), "{run:?}");
    // Line 11 of the plan, the second string of the list.
    assert!(
        run.stderr.contains("bad.toml:11:27")
            && run
                .stderr
                .contains("invalid regression tolerance `latncy +5%`: unknown metric `latncy`"),
        "{}",
        run.stderr
    );
    let wrong_way = PLAN.replace(r#""p99 +10%", "#, r#""rps +10%", "#);
    std::fs::write(&plan, wrong_way).unwrap();
    let run = binary::spawn(&["run", s(&plan), "--api-key", KEY]).wait_bounded(DEADLINE);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("did you mean `rps -10%`?"),
        "{}",
        run.stderr
    );
}

//! report.html in a real browser: headless Chromium opens the page a load run writes and
//! `benches/check_report_html.sh` fails on any console error, uncaught exception, CSP
//! violation or failed resource load. A deliberately broken page must fail the same check,
//! so a check that sees nothing cannot pass for a clean page.
//!
//! Needs Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it).
//! `CHROMIUM=/path` picks another binary, and `KEYCLAIM_TEST_REPORT_DIR=dir` keeps the
//! report and screenshot there to look at.
//!
//! A missing browser fails these tests, so a green run means the page was checked.
//! Whoever cannot install one opts out, knowingly, with `KEYCLAIM_SKIP_BROWSER=1`:
//! each test then writes `SKIPPED ...` straight to stderr, past libtest's capture, so
//! the skip shows in the output of a passing run. The opt-out is refused under CI
//! (`CI` set, as CI systems do, or `KEYCLAIM_REQUIRE_BROWSER=1`, which `.ci/run`
//! exports): there a missing browser is always a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hdrhistogram::Histogram;
use keyclaim_harness::metrics::codec::encode;
use keyclaim_harness::redact::Redactor;
use keyclaim_harness::report::write_all;
use keyclaim_harness::results::{
    CheckResult, IntervalFigures, LatencySummary, LoadFigures, Outcome, RunReport, ScenarioReport,
    StepFigures,
};

/// Deterministic noise (xorshift64*), so the charts look the same on every run.
struct Noise(u64);

impl Noise {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box-Muller).
    fn gaussian(&mut self) -> f64 {
        let u = self.next_f64().max(1e-12);
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// An open-model run of 500 iterations/s (two requests each) for 30 s: log-normal latency
/// around 1 ms, a hiccup at 12-14 s (slow answers, fewer requests), a stalled second at
/// 20 s with no answers, and a half-second last interval.
fn load_scenario() -> ScenarioReport {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let step_names = ["1 create", "2 validate"];
    let mut steps = [histogram(), histogram()];
    let mut step_failed = [0u64; 2];
    let mut whole = histogram();
    let mut intervals = Vec::new();
    let mut requests = 0;
    let mut failed = 0;
    for second in 0..31u32 {
        let duration_s = if second == 30 { 0.5 } else { 1.0 };
        let hiccup = (12..15).contains(&second);
        let n = match second {
            20 => 0,
            _ if hiccup => 600,
            _ => (1000.0 * duration_s) as u64,
        };
        let mut interval = histogram();
        let mut interval_failed = 0;
        for i in 0..n {
            let base = if hiccup { 25_000.0 } else { 900.0 };
            let mut us = base * (0.45 * noise.gaussian()).exp();
            if noise.next_f64() < 0.002 {
                us *= 20.0;
            }
            let us = (us as u64).max(1);
            let step = (i % 2) as usize;
            interval.record(us).unwrap();
            steps[step].record(us).unwrap();
            if noise.next_f64() < if hiccup { 0.02 } else { 0.001 } {
                interval_failed += 1;
                step_failed[step] += 1;
            }
        }
        whole.add(&interval).unwrap();
        requests += n;
        failed += interval_failed;
        intervals.push(IntervalFigures {
            start_s: f64::from(second),
            duration_s,
            requests: n,
            failed: interval_failed,
            latency_us: summary(&interval),
            histogram: encode(&interval).unwrap(),
        });
    }
    let steps = step_names
        .iter()
        .zip(&steps)
        .zip(step_failed)
        .map(|((name, h), failed)| StepFigures {
            name: (*name).to_owned(),
            requests: h.len(),
            failed,
            latency_us: summary(h),
            histogram: encode(h).unwrap(),
        })
        .collect();
    let latency = summary(&whole);
    let threshold = |name: &str, outcome, message: String| CheckResult {
        name: name.to_owned(),
        outcome,
        message,
        evidence: None,
    };
    ScenarioReport {
        name: "open-issue-validate".to_owned(),
        id: Some("LOAD-1".to_owned()),
        tags: vec!["load".to_owned()],
        description: Some("issue then validate at 500 iterations/s".to_owned()),
        passed: false,
        skipped: false,
        checks: vec![
            threshold(
                "p99 < 50ms",
                Outcome::Fail,
                format!("p99 < 50ms: {:.1}ms", latency.p99 as f64 / 1e3),
            ),
            threshold(
                "failed < 1%",
                Outcome::Pass,
                format!(
                    "failed < 1%: {:.2}%",
                    100.0 * failed as f64 / requests as f64
                ),
            ),
        ],
        requests,
        errors: 3,
        rate_limit_retries: 0,
        rps: requests as f64 / 30.5,
        elapsed_s: 30.6,
        latency_us: latency,
        warnings: vec![],
        load: Some(LoadFigures {
            model: "open".to_owned(),
            executor: "open 500/s for 30s".to_owned(),
            target_rate: Some(500.0),
            achieved_rate: requests as f64 / 2.0 / 30.5,
            duration_s: 30.5,
            iterations: requests / 2,
            dropped: 412,
            late: 57,
            in_flight_at_end: 2,
            timeouts: 1,
            connection_errors: 2,
            status_counts: [("200", requests - failed), ("429", failed - 3)]
                .map(|(k, v)| (k.to_owned(), v))
                .into(),
            error_codes: [("rate_limited".to_owned(), failed - 3)].into(),
            error_code_example: None,
            failed_requests: failed,
            steps,
            histogram: encode(&whole).unwrap(),
            start_unix_ms: 0,
            thresholds: Vec::new(),
            regression: Vec::new(),
            generator: None,
            protocol: None,
            transport_error_example: None,
            intervals,
        }),
    }
}

fn run_report() -> RunReport {
    let mut closed = load_scenario();
    closed.name = "closed-<users>".to_owned();
    closed.id = None;
    if let Some(load) = &mut closed.load {
        load.model = "closed".to_owned();
        load.executor = "closed 50 users for 1s".to_owned();
        load.target_rate = None;
        // One interval, as a one-second run reports.
        load.intervals.truncate(1);
    }
    RunReport {
        passed: false,
        interrupted: false,
        strict: false,
        plans: vec!["load".to_owned()],
        target: "http://127.0.0.1:8080".to_owned(),
        started_at: "2026-01-02T03:04:05Z".to_owned(),
        elapsed_s: 32.0,
        plan_digest: String::new(),
        worker: None,
        merged: None,
        start: None,
        plan_share: Default::default(),
        insecure: false,
        scenarios: vec![load_scenario(), closed],
    }
}

/// The browser to use; `None` when the test is to be skipped (and has said so), which
/// only `KEYCLAIM_SKIP_BROWSER=1` outside CI allows. See the module's documentation.
fn chromium(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
            .find(|candidate| candidate.is_file())
    });
    if found.is_some() {
        return found;
    }
    let missing = "chromium is not installed: run `apt-get install chromium` (Debian) so this \
                   test can open report.html in a browser, or set CHROMIUM=/path/to/chromium";
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    let ci = set("CI") || set("KEYCLAIM_REQUIRE_BROWSER");
    let skip = std::env::var_os("KEYCLAIM_SKIP_BROWSER").is_some_and(|value| value == "1");
    match (skip, ci) {
        (true, false) => {
            use std::io::Write;
            // Not `eprintln!`: libtest captures that and shows it only for failures.
            writeln!(
                std::io::stderr(),
                "SKIPPED {test} (KEYCLAIM_SKIP_BROWSER=1): {missing}"
            )
            .ok();
            None
        }
        (true, true) => panic!("{missing}; KEYCLAIM_SKIP_BROWSER=1 is refused under CI"),
        (false, _) => {
            panic!("{missing}; outside CI, KEYCLAIM_SKIP_BROWSER=1 skips this test (and says so)")
        }
    }
}

fn check_page(browser: &Path, html: &Path, screenshot: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/check_report_html.sh");
    Command::new("bash")
        .arg(script)
        .arg(html)
        .arg(screenshot)
        .env("CHROMIUM", browser)
        .output()
        .expect("bash runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Where to write: `KEYCLAIM_TEST_REPORT_DIR/name` (kept) or a temporary directory.
fn out_dir(name: &str) -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("KEYCLAIM_TEST_REPORT_DIR") {
        Some(dir) => (None, PathBuf::from(dir).join(name)),
        None => {
            let temp = tempfile::tempdir().unwrap();
            let path = temp.path().to_owned();
            (Some(temp), path)
        }
    }
}

#[test]
fn load_report_html_is_clean_in_chromium() {
    let Some(browser) = chromium("load_report_html_is_clean_in_chromium") else {
        return;
    };
    let (_temp, dir) = out_dir("load");
    let paths = write_all(&run_report(), &dir, &Redactor::default()).unwrap();
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "two charts per load scenario"
    );
    let screenshot = dir.join("report.png");
    let output = check_page(&browser, &paths.html, &screenshot);
    assert!(output.status.success(), "{}", describe(&output));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
}

#[test]
fn broken_pages_fail_the_check() {
    let Some(browser) = chromium("broken_pages_fail_the_check") else {
        return;
    };
    let (_temp, dir) = out_dir("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let csp = r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">"#;
    let pages = [
        // The report's own policy, which blocks the inline script: a CSP violation.
        (
            "script-blocked-by-csp",
            csp,
            "<p>x</p><script>document.title = 'ran'</script>",
            "Content Security Policy",
        ),
        (
            "uncaught-exception",
            "",
            "<p>x</p><script>throw new Error('boom')</script>",
            "uncaught exception: Error: boom",
        ),
        (
            "failed-image",
            "",
            r#"<img src="http://127.0.0.1:9/x.png" alt="x">"#,
            "resource failed to load: http://127.0.0.1:9/x.png",
        ),
        (
            "console-error",
            "",
            "<script>console.error('bad thing')</script>",
            "console.error: bad thing",
        ),
    ];
    for (name, head, body, expected) in pages {
        let html = dir.join(format!("{name}.html"));
        std::fs::write(
            &html,
            format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\">{head}<title>{name}</title>\
                 </head><body>{body}</body></html>"
            ),
        )
        .unwrap();
        let output = check_page(&browser, &html, &dir.join(format!("{name}.png")));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}",
            describe(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(expected), "{name}: {}", describe(&output));
    }
}

/// `report`'s load histograms (whole run and steps) with every latency scaled by `by`:
/// the same run, slower.
fn slowed(mut report: RunReport, by: f64) -> RunReport {
    use keyclaim_harness::metrics::codec::decode;
    let scale = |text: &mut String| {
        let original = decode(text).unwrap();
        let mut scaled = histogram();
        for bucket in original.iter_recorded() {
            let value = (bucket.value_iterated_to() as f64 * by) as u64;
            scaled
                .record_n(value.max(1), bucket.count_at_value())
                .unwrap();
        }
        *text = encode(&scaled).unwrap();
    };
    for load in report.scenarios.iter_mut().filter_map(|s| s.load.as_mut()) {
        scale(&mut load.histogram);
        load.steps
            .iter_mut()
            .for_each(|step| scale(&mut step.histogram));
    }
    report
}

#[test]
fn compare_html_is_clean_in_chromium() {
    use keyclaim_harness::compare::{self, Run, Settings};
    let Some(browser) = chromium("compare_html_is_clean_in_chromium") else {
        return;
    };
    let (_temp, dir) = out_dir("compare");
    std::fs::create_dir_all(&dir).unwrap();
    let base = Run {
        path: "base/report.json".into(),
        report: run_report(),
    };
    let new = Run {
        path: "new/report.json".into(),
        report: slowed(run_report(), 1.3),
    };
    let comparison = compare::compare(&base, &new, &Settings::default()).unwrap();
    assert!(comparison.regressed, "a 30% slowdown regresses");
    let page = compare::html::render(&comparison);
    assert_eq!(
        page.matches("<svg").count(),
        comparison.parts.len(),
        "one overlaid chart per scenario and step"
    );
    assert_eq!(
        page.matches("<polyline").count(),
        2 * comparison.parts.len()
    );
    let html = dir.join("compare.html");
    std::fs::write(&html, page).unwrap();
    let screenshot = dir.join("compare.png");
    let output = check_page(&browser, &html, &screenshot);
    assert!(output.status.success(), "{}", describe(&output));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

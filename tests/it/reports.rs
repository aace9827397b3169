//! The written reports: the report.json contract, JUnit structure, HTML escaping and
//! self-containment, and that no secret survives in any file or the console summary.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use keyclaim_harness::metrics::codec;
use keyclaim_harness::redact::Redactor;
use keyclaim_harness::report::console::render_summary_redacted;
use keyclaim_harness::report::{ReportPaths, write_all};
use keyclaim_harness::results::{
    CheckResult, Evidence, IntervalFigures, LatencySummary, LoadFigures, Outcome, RunReport,
    ScenarioReport, StepFigures,
};

const SECRET: &str = "kc_live_9f8e7d6c5b4a3f2e1d0c";
/// A secret whose JSON, URL and HTML encodings differ from the raw text.
const SPECIAL: &str = "s3cr3t/\"pass\" & <word>+more é";
const SCRIPT: &str = "<script>alert(1)</script>";
const BREAKOUT: &str = "</pre><img src=x onerror=alert(1)>";

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_owned()
}

fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `secret` base64-encoded inside a longer blob, after `offset` filler bytes.
fn embedded_base64(secret: &str, offset: usize, url_safe: bool) -> String {
    let mut blob = b"{\"session\":\"".to_vec();
    blob.extend(std::iter::repeat_n(b'#', offset));
    blob.extend_from_slice(secret.as_bytes());
    blob.extend_from_slice(b"\",\"exp\":1700000000}");
    if url_safe {
        URL_SAFE.encode(blob)
    } else {
        STANDARD.encode(blob)
    }
}

/// Every form a secret is planted in, as one text.
fn all_forms(secret: &str) -> String {
    let mut forms = vec![
        format!("raw={secret}"),
        format!("{{\"key\":\"{}\"}}", json_escaped(secret)),
        format!("GET /v?key={}&x=1", url_encoded(secret)),
        format!("hex={}", hex::encode(secret)),
        format!("HEX={}", hex::encode_upper(secret)),
        format!("b64={}", STANDARD.encode(secret)),
    ];
    for offset in 0..6 {
        forms.push(format!("blob={}", embedded_base64(secret, offset, false)));
        forms.push(format!("blob={}", embedded_base64(secret, offset, true)));
    }
    forms.join("\n")
}

/// Strings that must not appear anywhere: each form, and for base64 the middle of the
/// encoding at each alignment (the ends depend on the neighbouring bytes).
fn forbidden_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![
        secret.to_owned(),
        json_escaped(secret),
        url_encoded(secret),
        hex::encode(secret),
        hex::encode_upper(secret),
        secret
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;"),
    ];
    for prefix in 0..3 {
        let mut shifted = vec![0u8; prefix];
        shifted.extend_from_slice(secret.as_bytes());
        for encoded in [STANDARD.encode(&shifted), URL_SAFE.encode(&shifted)] {
            let encoded = encoded.trim_end_matches('=');
            forms.push(encoded[4..encoded.len() - 4].to_owned());
        }
    }
    forms
}

fn check(name: &str, outcome: Outcome, message: &str, response: &str) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        outcome,
        message: message.to_owned(),
        evidence: Some(Evidence {
            request: format!("POST /api/challenge/validate {{\"key\":\"{SECRET}\"}}"),
            response: response.to_owned(),
        }),
    }
}

fn scenario(name: &str, id: Option<&str>, checks: Vec<CheckResult>) -> ScenarioReport {
    let failed = checks.iter().any(|c| c.outcome == Outcome::Fail);
    let skipped = checks.iter().all(|c| c.outcome == Outcome::Skipped);
    ScenarioReport {
        name: name.to_owned(),
        id: id.map(str::to_owned),
        tags: vec!["conformance".to_owned(), "<b>tag</b>".to_owned()],
        description: Some(format!("description with {SECRET}")),
        passed: !failed,
        skipped,
        checks,
        requests: 120,
        errors: 1,
        rate_limit_retries: 0,
        rps: 40.5,
        elapsed_s: 2.96,
        latency_us: LatencySummary {
            p50: 850,
            p90: 2_100,
            p95: 2_100,
            p99: 12_345,
            p999: 30_000,
            max: 41_000,
        },
        warnings: vec![],
        load: None,
    }
}

fn sample_report() -> RunReport {
    let hostile = format!("{SCRIPT}\n{BREAKOUT}\n'quoted' & \"double\"");
    let leaked = format!("{}\n{}", all_forms(SECRET), all_forms(SPECIAL));
    RunReport {
        passed: false,
        interrupted: true,
        strict: false,
        plans: vec!["conformance".to_owned()],
        target: "http://127.0.0.1:8080".to_owned(),
        started_at: "2026-01-02T03:04:05Z".to_owned(),
        elapsed_s: 3.2,
        plan_digest: String::new(),
        worker: None,
        merged: None,
        start: None,
        plan_share: Default::default(),
        insecure: false,
        scenarios: vec![
            scenario(
                "issue-and-validate",
                Some("KC-3.1"),
                vec![check(
                    "validate",
                    Outcome::Pass,
                    "valid key accepted",
                    "200 {\"valid\":true}",
                )],
            ),
            scenario(
                "replay-rejected",
                Some("KC-4.2"),
                vec![
                    check("issue", Outcome::Pass, "challenge issued", "201 {}"),
                    check(
                        "replay",
                        Outcome::Fail,
                        &format!("KC-4.2 replay: got 200 valid=true {hostile} key {SECRET}"),
                        &format!("200 {hostile}\n{leaked}"),
                    ),
                ],
            ),
            scenario(
                "rate-limit-headers",
                None,
                vec![check(
                    "retry-after",
                    Outcome::NonStrict,
                    &format!("no Retry-After header; {}", all_forms(SECRET)),
                    "429 {\"error\":\"rate_limited\"}",
                )],
            ),
            scenario(
                "rsa-oaep",
                Some("KC-6"),
                vec![check(
                    "decrypt",
                    Outcome::Skipped,
                    "server has no RSA key",
                    "",
                )],
            ),
        ],
    }
}

fn redactor() -> Redactor {
    Redactor::new([SECRET, SPECIAL])
}

fn write_sample(dir: &Path) -> ReportPaths {
    write_all(&sample_report(), &dir.join("nested/reports"), &redactor()).unwrap()
}

#[test]
fn json_has_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_sample(dir.path());
    assert_eq!(paths.json, dir.path().join("nested/reports/report.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.json).unwrap()).unwrap();
    assert_eq!(json["passed"], false);
    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 4);
    for s in scenarios {
        assert!(s["name"].is_string());
        assert!(s["tags"].is_array());
        assert!(s["passed"].is_boolean());
        assert!(s["requests"].is_u64());
        assert!(s["errors"].is_u64());
        assert!(s["rps"].is_f64());
        assert!(s["elapsed_s"].is_f64());
        for field in ["p50", "p90", "p99", "p999", "max"] {
            assert!(s["latency_us"][field].is_u64(), "latency_us.{field}");
        }
        let checks = s["checks"].as_array().unwrap();
        assert!(!checks.is_empty(), "every sample scenario has checks: {s}");
        for c in checks {
            assert!(c["name"].is_string() && c["message"].is_string());
            assert!(c["outcome"].is_string());
        }
    }
    assert_eq!(scenarios[1]["checks"][1]["outcome"], "fail");
    assert_eq!(scenarios[2]["checks"][0]["outcome"], "non-strict");
    assert_eq!(scenarios[3]["checks"][0]["outcome"], "skipped");
}

#[test]
fn junit_has_testcases_failure_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let xml = std::fs::read_to_string(write_sample(dir.path()).junit).unwrap();
    for name in [
        "issue-and-validate",
        "replay-rejected",
        "rate-limit-headers",
        "rsa-oaep",
    ] {
        assert!(
            xml.contains(&format!("<testcase name=\"{name}\"")),
            "{name}: {xml}"
        );
    }
    assert!(xml.contains("classname=\"KC-4.2\""), "{xml}");
    assert!(xml.contains("classname=\"keyclaim\""), "{xml}");
    assert!(xml.contains("<failure"), "{xml}");
    assert!(xml.contains("<skipped"), "{xml}");
    assert_eq!(
        xml.matches("<failure").count(),
        1,
        "non-strict is not a failure unless --strict"
    );
}

#[test]
fn html_escapes_hostile_text_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(write_sample(dir.path()).html).unwrap();
    assert!(!html.contains(SCRIPT), "raw script in html");
    assert!(!html.contains(BREAKOUT), "raw </pre> breakout in html");
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "a script element"
    );
    assert!(!html.contains("<b>tag</b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&#39;quoted&#39; &amp; &quot;double&quot;"));
    assert!(html.contains("Interrupted"), "interrupted banner");

    let lower = html.to_ascii_lowercase();
    for attr in ["src=", "href=", "url("] {
        for (pos, _) in lower.match_indices(attr) {
            let value = lower[pos + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "external resource at {}",
                &html[pos..(pos + 60).min(html.len())]
            );
        }
    }
    assert!(!lower.contains("@import"));
}

#[test]
fn no_secret_form_survives_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_sample(dir.path());
    let mut outputs: Vec<(String, String)> = [&paths.json, &paths.junit, &paths.html]
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    for color in [false, true] {
        outputs.push((
            format!("console color={color}"),
            render_summary_redacted(&sample_report(), color, &redactor()),
        ));
    }
    for (what, text) in &outputs {
        assert!(text.contains("[REDACTED]"), "{what} redacted nothing");
        for secret in [SECRET, SPECIAL] {
            for form in forbidden_forms(secret) {
                assert!(!text.contains(&form), "{what} contains {form:?}");
            }
        }
        // The recognisable part of the key in any case.
        assert!(!text.contains("9f8e7d6c5b4a"), "{what}");
    }
}

#[test]
fn console_summary_counts() {
    let text = render_summary_redacted(&sample_report(), false, &redactor());
    assert!(
        text.contains(
            "4 scenarios: 2 passed, 1 failed, 1 skipped \
             (checks: 2 pass, 1 fail, 1 non-strict, 1 skipped) in 3.2s"
        ),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
}

fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for v in values {
        h.record(v).unwrap();
    }
    h
}

/// A load scenario whose server-supplied strings (error codes, step names) are hostile and
/// whose executor carries the secret; three one-second intervals, the second without answers.
fn load_scenario(name: &str) -> ScenarioReport {
    let intervals: Vec<Histogram<u64>> = vec![
        histogram_of((1..=400).map(|i| 500 + i * 7)),
        histogram_of([]),
        histogram_of((1..=300).map(|i| 800 + i * 11)),
    ];
    let mut whole = histogram_of([]);
    for h in &intervals {
        whole.add(h).unwrap();
    }
    let summary = |h: &Histogram<u64>| LatencySummary {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    };
    let mut scenario = scenario(
        name,
        None,
        vec![CheckResult {
            name: "p99 < 50ms".to_owned(),
            outcome: Outcome::Pass,
            message: format!(
                "p99 < 50ms: {:.1}ms",
                whole.value_at_quantile(0.99) as f64 / 1e3
            ),
            evidence: None,
        }],
    );
    scenario.requests = whole.len();
    scenario.latency_us = summary(&whole);
    scenario.load = Some(LoadFigures {
        model: "open".to_owned(),
        executor: format!("open 350/s for 3s with key {SECRET}"),
        target_rate: Some(350.0),
        achieved_rate: 233.3,
        duration_s: 3.0,
        iterations: 700,
        dropped: 5,
        late: 2,
        in_flight_at_end: 1,
        timeouts: 1,
        connection_errors: 0,
        status_counts: [("200".to_owned(), 690), ("500".to_owned(), 10)].into(),
        error_codes: [(format!("{SCRIPT} {SECRET}"), 10)].into(),
        error_code_example: None,
        failed_requests: 10,
        steps: vec![StepFigures {
            name: format!("1 create {BREAKOUT}"),
            requests: whole.len(),
            failed: 10,
            latency_us: summary(&whole),
            histogram: codec::encode(&whole).unwrap(),
        }],
        histogram: codec::encode(&whole).unwrap(),
        start_unix_ms: 0,
        thresholds: Vec::new(),
        regression: Vec::new(),
        generator: None,
        protocol: None,
        transport_error_example: None,
        intervals: intervals
            .iter()
            .enumerate()
            .map(|(i, h)| IntervalFigures {
                start_s: i as f64,
                duration_s: 1.0,
                requests: h.len(),
                failed: 0,
                latency_us: summary(h),
                histogram: codec::encode(h).unwrap(),
            })
            .collect(),
    });
    scenario
}

fn load_report() -> RunReport {
    let mut report = sample_report();
    report.scenarios.truncate(1);
    // The same name twice: the second's files must not overwrite the first's.
    report.scenarios.push(load_scenario("open-load"));
    report.scenarios.push(load_scenario("open-load"));
    report
}

#[test]
fn load_scenarios_write_hgrm_and_hlog() {
    let dir = tempfile::tempdir().unwrap();
    let report = load_report();
    let paths = write_all(&report, dir.path(), &redactor()).unwrap();
    let names: Vec<String> = paths
        .hdr
        .iter()
        .map(|p| {
            assert_eq!(p.parent(), Some(dir.path()));
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "open-load.hgrm",
            "open-load.hlog",
            "open-load-2.hgrm",
            "open-load-2.hlog"
        ]
    );

    let load = report.scenarios[1].load.as_ref().unwrap();
    let whole = codec::decode(&load.histogram).unwrap();
    let hgrm = std::fs::read_to_string(&paths.hdr[0]).unwrap();
    let lines: Vec<&str> = hgrm.lines().collect();
    assert_eq!(
        lines[0],
        "       Value     Percentile TotalCount 1/(1-Percentile)"
    );
    assert_eq!(lines[1], "");
    assert!(
        lines[2].ends_with("0.000000000000          1           1.00"),
        "{hgrm}"
    );
    let last_row = lines[lines.len() - 4];
    assert_eq!(
        last_row,
        format!(
            "{:12.3} 1.000000000000 {:10}",
            whole.max() as f64 / 1e3,
            whole.len()
        )
    );
    assert!(
        lines[lines.len() - 2].contains(&format!("Total count    = {:12}", whole.len())),
        "{hgrm}"
    );

    let hlog = std::fs::read(&paths.hdr[1]).unwrap();
    let text = String::from_utf8_lossy(&hlog);
    assert!(
        text.contains("#[Histogram log format version 1.3]"),
        "{text}"
    );
    assert!(text.contains("[REDACTED]"), "the executor's secret: {text}");
    let mut deserializer = Deserializer::new();
    let mut start = None;
    let mut read_back = Vec::new();
    for entry in IntervalLogIterator::new(&hlog) {
        match entry.unwrap() {
            LogEntry::StartTime(t) => start = Some(t),
            LogEntry::BaseTime(_) => {}
            LogEntry::Interval(interval) => {
                let bytes = STANDARD.decode(interval.encoded_histogram()).unwrap();
                let h: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
                read_back.push((interval.start_timestamp().as_secs_f64(), h));
            }
        }
    }
    let started = humantime::parse_rfc3339(&report.started_at).unwrap();
    assert_eq!(
        start,
        Some(started.duration_since(std::time::UNIX_EPOCH).unwrap())
    );
    assert_eq!(read_back.len(), load.intervals.len());
    for ((start_s, h), figures) in read_back.iter().zip(&load.intervals) {
        assert_eq!(*start_s, figures.start_s);
        assert_eq!(*h, codec::decode(&figures.histogram).unwrap());
    }
}

#[test]
fn bad_histogram_fails_only_the_hdr_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = load_report();
    report.scenarios[2].load.as_mut().unwrap().intervals[1].histogram = "AAAA".to_owned();
    let err = write_all(&report, dir.path(), &redactor()).unwrap_err();
    assert_eq!(
        format!("{err}"),
        "scenario open-load: bad latency histogram"
    );
    for file in ["report.json", "junit.xml", "report.html", "open-load.hgrm"] {
        assert!(dir.path().join(file).is_file(), "{file} was not written");
    }
}

#[test]
fn html_load_section_has_figures_steps_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(&load_report(), dir.path(), &redactor()).unwrap();
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "two charts per load scenario"
    );
    for needle in [
        "<h4>Load</h4>",
        "<h4>Thresholds</h4>",
        "target 350.0/s · achieved 233.3/s",
        "700 sent, 10 failed (1.43%)",
        "5 · 2 · 1",
        "200 × 690 · 500 × 10",
        "<a href=\"open-load.hgrm\">",
        "<a href=\"open-load-2.hlog\">",
        "Latency by percentile",
        "<table class=\"steps\">",
        "1 create &lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;",
        "&lt;script&gt;alert(1)&lt;/script&gt; [REDACTED] × 10",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(!html.contains("NaN"));
    assert!(!html.contains(SCRIPT) && !html.contains(BREAKOUT));
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

#[test]
fn no_secret_in_load_figures_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let report = load_report();
    let paths = write_all(&report, dir.path(), &redactor()).unwrap();
    let mut outputs: Vec<(String, String)> = [&paths.json, &paths.junit, &paths.html]
        .into_iter()
        .chain(&paths.hdr)
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    outputs.push((
        "console".to_owned(),
        render_summary_redacted(&report, false, &redactor()),
    ));
    for (what, text) in &outputs {
        for form in forbidden_forms(SECRET) {
            assert!(!text.contains(&form), "{what} contains {form:?}");
        }
    }
    let json: serde_json::Value = serde_json::from_str(&outputs[0].1).unwrap();
    let load = &json["scenarios"][1]["load"];
    assert_eq!(load["executor"], "open 350/s for 3s with key [REDACTED]");
    assert_eq!(load["error_codes"][format!("{SCRIPT} [REDACTED]")], 10);
    // Histograms are not rewritten: they still decode to what was measured.
    let original = report.scenarios[1].load.as_ref().unwrap();
    assert_eq!(load["histogram"], original.histogram.as_str());
}

#[test]
fn console_shows_the_load_block() {
    let text = render_summary_redacted(&load_report(), false, &redactor());
    assert!(
        text.contains("load open-load (open 350/s for 3s with key [REDACTED])"),
        "{text}"
    );
    assert!(
        text.contains("  rate       target 350.0/s, achieved 233.3/s over 3.0s, 700 iterations"),
        "{text}"
    );
    assert!(
        text.contains("  requests   700 sent, 10 failed; timeouts 1, connection errors 0"),
        "{text}"
    );
    assert!(
        text.contains("  schedule   dropped 5, late 2, in flight at end 1"),
        "{text}"
    );
    // Step names are cut like scenario names.
    assert!(
        text.contains("  step 1 create </pre><img src=x onerror=alert…  700 req     10 failed"),
        "{text}"
    );
}

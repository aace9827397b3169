//! The written reports: the report.json contract, JUnit structure, HTML escaping and
//! self-containment, and that no secret survives in any file or the console summary.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use keyclaim_harness::redact::Redactor;
use keyclaim_harness::report::console::render_summary_redacted;
use keyclaim_harness::report::model::{
    CheckResult, Evidence, LatencySummary, Outcome, RunReport, ScenarioReport,
};
use keyclaim_harness::report::{ReportPaths, write_all};

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
        for c in s["checks"].as_array().unwrap() {
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

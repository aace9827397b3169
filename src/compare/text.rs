//! `compare`'s outputs for the console, for machines (JSON) and for CI (JUnit: one
//! testcase per compared figure, failed when it regressed). The HTML page is
//! [`super::html`].

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Comparison, Figure, Verdict, show};

/// File names `compare --out DIR` writes; fixed so CI configs can point at them.
pub const JSON_FILE: &str = "compare.json";
pub const JUNIT_FILE: &str = "compare.xml";
pub const HTML_FILE: &str = "compare.html";

fn value(figure: &Figure, side: Option<f64>) -> String {
    side.map_or_else(|| "-".to_owned(), |v| show(figure.unit, v))
}

fn change(figure: &Figure) -> String {
    figure
        .change_pct
        .map_or_else(|| "-".to_owned(), |c| format!("{c:+.1}%"))
}

/// The console table: one block per part, one line per figure, then the verdict.
pub fn console(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare: base {} ({}) -> new {} ({}); {}% confidence intervals",
        comparison.base.path,
        comparison.base.started_at,
        comparison.new.path,
        comparison.new.started_at,
        comparison.confidence * 100.0
    );
    for part in &comparison.parts {
        let _ = writeln!(
            out,
            "\n{} ({} -> {} requests)",
            part.label(),
            part.base_requests,
            part.new_requests
        );
        let _ = writeln!(
            out,
            "  {:<12} {:>12} {:>12} {:>9}  verdict",
            "figure", "base", "new", "change"
        );
        for figure in &part.figures {
            let verdict = match figure.verdict {
                Verdict::Regression => format!("REGRESSION: {}", figure.why),
                Verdict::Improved => format!("improved: {}", figure.why),
                other => other.as_str().to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:>12} {:>12} {:>9}  {verdict}",
                figure.metric,
                value(figure, figure.base),
                value(figure, figure.new),
                change(figure)
            );
        }
    }
    for note in &comparison.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    let regressions = comparison
        .parts
        .iter()
        .flat_map(|p| p.figures.iter().map(move |f| (p, f)))
        .filter(|(_, f)| f.verdict == Verdict::Regression)
        .map(|(p, f)| format!("{} {}", p.label(), f.metric))
        .collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "\n{}",
        if regressions.is_empty() {
            "compare: no regression".to_owned()
        } else {
            format!(
                "compare: REGRESSION in {} figure(s): {}",
                regressions.len(),
                regressions.join(", ")
            )
        }
    );
    out
}

pub fn json(comparison: &Comparison) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(comparison)
}

/// One testsuite per part, one testcase per figure; a regression is a failure, a
/// figure with no data or no tolerance is skipped (it judged nothing).
pub fn junit(comparison: &Comparison) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("keyclaim-harness compare");
    for part in &comparison.parts {
        let mut suite = TestSuite::new(part.label());
        for figure in &part.figures {
            let line = format!(
                "{}: base {}, new {} ({})",
                figure.metric,
                value(figure, figure.base),
                value(figure, figure.new),
                change(figure)
            );
            let status = match figure.verdict {
                Verdict::Regression => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(format!("{line}: {}", figure.why));
                    status.set_type("regression");
                    status
                }
                Verdict::Improved | Verdict::Unchanged => TestCaseStatus::success(),
                Verdict::NotJudged | Verdict::NoData => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("{line}: {}", figure.why));
                    status
                }
            };
            let mut case = TestCase::new(figure.metric.clone(), status);
            case.set_classname(part.label());
            case.set_system_out(format!("{line}: {}", figure.why));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

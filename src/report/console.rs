//! The end-of-run summary printed to the terminal: one table row per scenario, a compact
//! block of figures per load scenario (what its failures were, each threshold with ✓ or
//! ✗ and the value measured), the failed and non-strict checks with their evidence, why
//! each check was skipped, and a one-line verdict that says when the run was cut short.
//!
//! Evidence here is what a possibly hostile server sent, and a terminal interprets escape
//! sequences, so control characters are shown escaped, never written. Long evidence is cut
//! (the reports keep it whole). Colour is the caller's decision (TTY, `NO_COLOR`), which
//! keeps this module pure and its output testable.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::metrics::units;
use crate::redact::Redactor;
use crate::results::{
    CheckResult, GeneratorFigures, INTERRUPTED_CHECK, LatencySummary, LoadFigures, Outcome,
    RunReport, ScenarioReport, Status,
};

/// Widest a name or id column gets; longer ones are cut with "…".
const MAX_NAME_WIDTH: usize = 40;
const MAX_ID_WIDTH: usize = 16;
/// Evidence limits: characters per line, lines per field.
const MAX_EVIDENCE_LINE: usize = 160;
const MAX_EVIDENCE_LINES: usize = 8;
/// Messages are written to be read whole, but a server's answer quoted in one can be huge.
const MAX_MESSAGE_LINE: usize = 300;
/// Indentation of a check's details under its heading line.
const INDENT: &str = "      ";

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// The summary text. It is not redacted: redact the report first (see
/// [`render_summary_redacted`]), since cutting long evidence may cut a secret in two.
pub fn render_summary(report: &RunReport, color: bool) -> String {
    let paint = Paint(color);
    let mut out = String::new();
    scenario_table(&mut out, report, paint);
    load_blocks(&mut out, report, paint);
    warnings(&mut out, report, paint);
    failed_checks(&mut out, report, paint);
    skipped_checks(&mut out, report, paint);
    verdict_line(&mut out, report, paint);
    out
}

/// [`render_summary`] of the redacted report, itself redacted.
pub fn render_summary_redacted(report: &RunReport, color: bool, redactor: &Redactor) -> String {
    let report = report.redacted(redactor);
    redactor
        .redact(&render_summary(&report, color))
        .into_owned()
}

/// Prints the summary of a finished (or merged) run on stdout, then where its reports
/// are; with `quiet`, only the verdict line.
pub fn print(
    report: &RunReport,
    redactor: &Redactor,
    report_dir: &std::path::Path,
    quiet: bool,
    color: bool,
) {
    let summary = render_summary_redacted(report, color, redactor);
    if quiet {
        if let Some(last) = summary.lines().last() {
            println!("{last}");
        }
    } else {
        print!("{summary}");
        println!("reports: {}", report_dir.display());
    }
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn style<'a>(self, code: &str, text: &'a str) -> Cow<'a, str> {
        if self.0 {
            Cow::Owned(format!("{code}{text}{RESET}"))
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// Whether the scenario was stopped before its end.
fn was_interrupted(scenario: &ScenarioReport) -> bool {
    scenario
        .checks
        .iter()
        .any(|c| c.name == INTERRUPTED_CHECK && c.outcome == Outcome::Skipped)
}

/// A scenario's verdict word and colour.
fn scenario_outcome(scenario: &ScenarioReport) -> (&'static str, &'static str) {
    if scenario.passed && was_interrupted(scenario) {
        return ("STOP", YELLOW);
    }
    match scenario.status() {
        Status::Skipped => ("SKIP", DIM),
        Status::Passed => ("PASS", GREEN),
        Status::Failed => ("FAIL", RED),
    }
}

fn check_outcome(outcome: Outcome, strict: bool) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Pass => ("PASS", GREEN),
        Outcome::Fail => ("FAIL", RED),
        Outcome::NonStrict if strict => ("NON-STRICT", RED),
        Outcome::NonStrict => ("NON-STRICT", YELLOW),
        Outcome::Skipped if strict => ("SKIP", RED),
        Outcome::Skipped => ("SKIP", DIM),
        Outcome::Delegated => ("DELEGATED", DIM),
    }
}

fn scenario_table(out: &mut String, report: &RunReport, paint: Paint) {
    let rows: Vec<[String; 7]> = report
        .scenarios
        .iter()
        .map(|s| {
            let passed = s
                .checks
                .iter()
                .filter(|c| c.outcome == Outcome::Pass)
                .count();
            [
                scenario_outcome(s).0.to_owned(),
                cut(&one_line(&s.name), MAX_NAME_WIDTH).into_owned(),
                cut(&one_line(s.id.as_deref().unwrap_or("-")), MAX_ID_WIDTH).into_owned(),
                format!("{passed}/{}", s.checks.len()),
                s.requests.to_string(),
                units::ms_fixed(s.latency_us.p99, 1),
                format!("{:.1}s", s.elapsed_s),
            ]
        })
        .collect();
    let header = [
        "", "scenario", "id", "checks", "requests", "p99 ms", "elapsed",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Text columns align left, numbers right.
    let right = [false, false, false, true, true, true, true];
    let line = |cells: [&str; 7]| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                // No trailing spaces after the last column.
                if i < cells.len() - 1 {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        text
    };
    let _ = writeln!(out, "{}", paint.style(BOLD, &line(header)));
    for (scenario, row) in report.scenarios.iter().zip(&rows) {
        let text = line(row.each_ref().map(String::as_str));
        // Colour only the verdict word; padding was computed on plain text.
        let (word, color) = scenario_outcome(scenario);
        let _ = writeln!(out, "{}{}", paint.style(color, word), &text[word.len()..]);
    }
}

/// Per load scenario: executor, rates, request counts, latency percentiles, one line per
/// step. Latencies in ms with two decimals: a local target answers well under 1 ms.
fn load_blocks(out: &mut String, report: &RunReport, paint: Paint) {
    for scenario in &report.scenarios {
        let Some(load) = &scenario.load else {
            continue;
        };
        out.push('\n');
        let _ = writeln!(
            out,
            "{} ({}{})",
            paint.style(BOLD, &format!("load {}", one_line(&scenario.name))),
            one_line(&load.executor),
            load.protocol
                .as_deref()
                .map(|p| format!(", {}", one_line(p)))
                .unwrap_or_default()
        );
        let target = load
            .target_rate
            .map(|rate| format!("target {rate:.1}/s, "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  rate       {target}achieved {:.1}/s over {:.1}s, {} iterations",
            load.achieved_rate, load.duration_s, load.iterations
        );
        let failed = format!("{} failed", load.failed_requests);
        let failed = if load.failed_requests > 0 {
            paint.style(RED, &failed)
        } else {
            Cow::Borrowed(failed.as_str())
        };
        let _ = writeln!(
            out,
            "  requests   {} sent, {failed}; timeouts {}, connection errors {}",
            scenario.requests, load.timeouts, load.connection_errors
        );
        if load.failed_requests > 0 {
            let _ = writeln!(out, "  failures   {}", failure_kinds(load));
        }
        let _ = writeln!(
            out,
            "  schedule   dropped {}, late {}, in flight at end {}",
            load.dropped, load.late, load.in_flight_at_end
        );
        if let Some(generator) = &load.generator {
            generator_line(out, generator, paint);
        }
        // The engine fills the scenario's summary from the load's whole-run histogram.
        let _ = writeln!(out, "  latency    {}", percentiles(&scenario.latency_us));
        let names: Vec<String> = load
            .steps
            .iter()
            .map(|step| cut(&one_line(&step.name), MAX_NAME_WIDTH).into_owned())
            .collect();
        let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let requests_width = load
            .steps
            .iter()
            .map(|step| step.requests.to_string().len())
            .max()
            .unwrap_or(0);
        for threshold in &load.thresholds {
            threshold_line(out, scenario, threshold, paint);
        }
        for (step, name) in load.steps.iter().zip(&names) {
            let pad = name_width - name.chars().count();
            let _ = writeln!(
                out,
                "  step {name}{}  {:>requests_width$} req {:>6} failed  {}",
                " ".repeat(pad),
                step.requests,
                step.failed,
                percentiles(&step.latency_us)
            );
        }
    }
}

/// The open model's own figures: its connections, how late it began iterations, its
/// CPU, and whether it was the bottleneck (the warnings below say why).
fn generator_line(out: &mut String, g: &GeneratorFigures, paint: Paint) {
    let ms = |us: u64| units::ms_fixed(us, 2);
    let cpu = g
        .cpu_cores
        .map(|cpu| {
            format!(
                "; CPU {cpu:.2} of {} core{}",
                g.cores,
                if g.cores == 1 { "" } else { "s" }
            )
        })
        .unwrap_or_default();
    let busy = format!(", threads busy {:.0}%", 100.0 * g.runtime_busy);
    // Only a busy generator batches arrivals; when it did, say by how much at most.
    let tick = if g.clock_tick_max_us > 0 {
        format!(", clock tick up to {} ms", ms(g.clock_tick_max_us))
    } else {
        String::new()
    };
    let verdict = if g.saturated {
        format!(
            "; {}",
            paint.style(
                RED,
                "SATURATED: the generator, not the target, set the pace"
            )
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  generator  {} connections warmed before the clock, {} opened during the run, {} connects on an arrival's path; start lag p99 {}, max {} ms{tick}{cpu}{busy}{verdict}",
        g.pre_allocated,
        g.grown,
        g.connects_on_arrival_path,
        ms(g.start_lag_us.p99),
        ms(g.start_lag_us.max),
    );
}

/// What the failed requests were: the commonest non-2xx statuses and error codes, with
/// their counts ("401 ×86197; invalid_key ×86197"), at most a few of each.
fn failure_kinds(load: &LoadFigures) -> String {
    const SHOWN: usize = 3;
    let top = |counts: Vec<(&String, &u64)>| {
        let mut counts = counts;
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let more = counts.len().saturating_sub(SHOWN);
        let mut shown: Vec<String> = counts
            .iter()
            .take(SHOWN)
            .map(|(name, n)| format!("{} ×{n}", one_line(name)))
            .collect();
        if more > 0 {
            shown.push(format!("{more} more"));
        }
        shown.join(", ")
    };
    let statuses = top(load
        .status_counts
        .iter()
        .filter(|(status, _)| !status.starts_with('2'))
        .collect());
    let codes = top(load.error_codes.iter().collect());
    let transport = [
        (load.timeouts, "timeouts"),
        (load.connection_errors, "connection errors"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{what} ×{n}"))
    .collect::<Vec<_>>()
    .join(", ");
    let parts: Vec<String> = [statuses, codes, transport]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        // Answered 2xx but judged failed: the expectations say why (reports, --verbose).
        "answers that did not meet the step's expectations (report.html lists them)".into()
    } else {
        cut(&parts.join("; "), MAX_MESSAGE_LINE).into_owned()
    }
}

/// One threshold as k6 prints it: ✓ or ✗, then what was measured.
fn threshold_line(out: &mut String, scenario: &ScenarioReport, threshold: &str, paint: Paint) {
    let Some(check) = scenario.checks.iter().find(|c| c.name == threshold) else {
        return;
    };
    let (mark, color) = match check.outcome {
        Outcome::Pass => ("✓", GREEN),
        Outcome::Fail => ("✗", RED),
        _ => ("-", DIM),
    };
    let _ = writeln!(
        out,
        "  threshold  {} {}",
        paint.style(color, mark),
        one_line(&check.message)
    );
}

/// "p50 1.20  p90 3.40  p95 6.00  p99 12.30  p99.9 30.00  max 41.00 ms".
fn percentiles(l: &LatencySummary) -> String {
    let ms = |us: u64| units::ms_fixed(us, 2);
    format!(
        "p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {} ms",
        ms(l.p50),
        ms(l.p90),
        ms(l.p95),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    )
}

fn warnings(out: &mut String, report: &RunReport, paint: Paint) {
    for scenario in &report.scenarios {
        for warning in &scenario.warnings {
            let _ = writeln!(
                out,
                "{} {}: {}",
                paint.style(YELLOW, "warning:"),
                one_line(&scenario.name),
                one_line(warning)
            );
        }
    }
}

fn failed_checks(out: &mut String, report: &RunReport, paint: Paint) {
    for scenario in &report.scenarios {
        for check in &scenario.checks {
            // Every check that fails the run, and the non-strict ones it allows.
            if !check.outcome.counts_as_failure(report.strict)
                && check.outcome != Outcome::NonStrict
            {
                continue;
            }
            // A blank line before each check keeps its evidence visibly its own.
            out.push('\n');
            failed_check(out, scenario, check, report.strict, paint);
        }
    }
}

/// Why each check that did not run was skipped, one line each (under --strict they are
/// failures and listed with them).
fn skipped_checks(out: &mut String, report: &RunReport, paint: Paint) {
    if report.strict {
        return;
    }
    let mut first = true;
    for scenario in &report.scenarios {
        for check in &scenario.checks {
            if check.outcome != Outcome::Skipped {
                continue;
            }
            if first {
                out.push('\n');
                first = false;
            }
            let reason = check.message.lines().next().unwrap_or("no reason given");
            let _ = writeln!(
                out,
                "{} {} › {}: {}",
                paint.style(DIM, "SKIP"),
                one_line(&scenario.name),
                one_line(&check.name),
                cut(&escape_controls(reason), MAX_MESSAGE_LINE)
            );
        }
    }
}

fn failed_check(
    out: &mut String,
    scenario: &ScenarioReport,
    check: &CheckResult,
    strict: bool,
    paint: Paint,
) {
    let (word, color) = check_outcome(check.outcome, strict);
    let note = match check.outcome {
        Outcome::NonStrict if !strict => " (allowed; fails under --strict)",
        Outcome::NonStrict | Outcome::Skipped if strict => " (a failure under --strict)",
        _ => "",
    };
    let _ = writeln!(
        out,
        "{} {} › {}{note}",
        paint.style(color, word),
        paint.style(BOLD, &one_line(&scenario.name)),
        one_line(&check.name)
    );
    for line in check.message.lines() {
        let _ = writeln!(
            out,
            "{INDENT}{}",
            cut(&escape_controls(line), MAX_MESSAGE_LINE)
        );
    }
    if let Some(evidence) = &check.evidence {
        evidence_field(out, "request: ", &evidence.request, paint);
        evidence_field(out, "response:", &evidence.response, paint);
    }
}

/// One evidence field, indented, its lines and line lengths capped.
fn evidence_field(out: &mut String, label: &str, text: &str, paint: Paint) {
    let continuation = format!("{INDENT}{}", " ".repeat(label.len() + 1));
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().take(MAX_EVIDENCE_LINES).enumerate() {
        let line = cut(&escape_controls(line), MAX_EVIDENCE_LINE).into_owned();
        if i == 0 {
            let _ = writeln!(out, "{INDENT}{} {line}", paint.style(DIM, label));
        } else {
            let _ = writeln!(out, "{continuation}{line}");
        }
    }
    if lines.is_empty() {
        let _ = writeln!(out, "{INDENT}{} (empty)", paint.style(DIM, label));
    }
    if lines.len() > MAX_EVIDENCE_LINES {
        let _ = writeln!(
            out,
            "{continuation}{}",
            paint.style(
                DIM,
                &format!(
                    "… {} more lines (full text in the reports)",
                    lines.len() - MAX_EVIDENCE_LINES
                )
            )
        );
    }
}

fn verdict_line(out: &mut String, report: &RunReport, paint: Paint) {
    let total = report.scenarios.len();
    let count = |status| {
        report
            .scenarios
            .iter()
            .filter(|s| s.status() == status)
            .count()
    };
    let stopped = report
        .scenarios
        .iter()
        .filter(|s| s.passed && was_interrupted(s))
        .count();
    let (passed, failed, skipped) = (
        count(Status::Passed) - stopped,
        count(Status::Failed),
        count(Status::Skipped),
    );
    let stopped = if stopped > 0 {
        format!(", {stopped} stopped early")
    } else {
        String::new()
    };
    let (pass, fail, non_strict, skip) = report.outcome_counts();
    out.push('\n');
    if report.interrupted {
        let _ = writeln!(
            out,
            "{}",
            paint.style(
                YELLOW,
                "interrupted: the run stopped early; results are partial"
            )
        );
    }
    let line = format!(
        "{}{total} scenario{}: {passed} passed, {failed} failed, {skipped} skipped{stopped} \
         (checks: {pass} pass, {fail} fail, {non_strict} non-strict, {skip} skipped) in {:.1}s{}{}",
        if report.interrupted {
            "INTERRUPTED: "
        } else {
            ""
        },
        if total == 1 { "" } else { "s" },
        report.elapsed_s,
        if report.strict { " [strict]" } else { "" },
        report
            .scope()
            .map(|scope| format!(" [{scope}]"))
            .unwrap_or_default(),
    );
    let color = if !report.passed {
        RED
    } else if report.interrupted {
        YELLOW
    } else {
        GREEN
    };
    let _ = writeln!(out, "{}", paint.style(color, &line));
}

/// Escapes characters a terminal would act on (ESC, CR, BEL, bidi overrides, ...).
fn escape_controls(text: &str) -> Cow<'_, str> {
    let dangerous =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if dangerous(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A table cell: newlines and other controls escaped so a row stays one line.
fn one_line(text: &str) -> Cow<'_, str> {
    escape_controls(text)
}

/// At most `max` characters, the last one "…" when cut.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max - 1)
                .map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &text[..end]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Evidence, LatencySummary};

    fn report() -> RunReport {
        let check = |name: &str, outcome| CheckResult {
            name: name.into(),
            outcome,
            message: format!("{name} message"),
            evidence: Some(Evidence {
                request: "POST /api/challenge/validate".into(),
                response: format!("200 \x1b[31mred\x1b[0m\n{}", "x".repeat(500)),
            }),
        };
        let scenario = |name: &str, checks: Vec<CheckResult>, passed, skipped| ScenarioReport {
            name: name.into(),
            id: Some("KC-1".into()),
            tags: vec![],
            description: None,
            passed,
            skipped,
            checks,
            requests: 10,
            errors: 0,
            rate_limit_retries: 0,
            rps: 5.0,
            elapsed_s: 2.0,
            latency_us: LatencySummary {
                p99: 12_345,
                ..Default::default()
            },
            warnings: vec![],
            load: None,
        };
        RunReport {
            passed: false,
            interrupted: true,
            strict: false,
            plans: vec!["p".into()],
            target: "embedded".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            elapsed_s: 3.21,
            plan_digest: String::new(),
            worker: None,
            merged: None,
            start: None,
            plan_share: Default::default(),
            insecure: false,
            scenarios: vec![
                scenario(
                    "ok",
                    vec![check("a", Outcome::Pass), check("n", Outcome::NonStrict)],
                    true,
                    false,
                ),
                scenario("bad", vec![check("f", Outcome::Fail)], false, false),
                scenario("skip", vec![check("s", Outcome::Skipped)], true, true),
            ],
        }
    }

    #[test]
    fn summary_without_color_has_no_escape_bytes() {
        let text = render_summary(&report(), false);
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("\\u{1b}[31mred"), "{text}");
        assert!(text.contains(
            "3 scenarios: 1 passed, 1 failed, 1 skipped (checks: 1 pass, 1 fail, 1 non-strict, 1 skipped) in 3.2s"
        ), "{text}");
        assert!(text.contains("12.3"), "{text}");
        assert!(text.contains("FAIL bad › f"), "{text}");
        assert!(
            text.contains("NON-STRICT ok › n (allowed; fails under --strict)"),
            "{text}"
        );
        assert!(text.contains("interrupted"), "{text}");
        assert!(
            !text.contains(&"x".repeat(MAX_EVIDENCE_LINE)),
            "evidence not cut: {text}"
        );
        assert!(
            text.lines().all(|l| l == l.trim_end()),
            "trailing spaces: {text}"
        );
    }

    #[test]
    fn color_only_when_asked() {
        let text = render_summary(&report(), true);
        assert!(text.contains(GREEN) && text.contains(RED));
    }

    #[test]
    fn load_block_after_the_table() {
        use crate::results::{LoadFigures, StepFigures};
        let mut report = report();
        let latency = |p50, max| LatencySummary {
            p50,
            p90: p50 * 2,
            p95: p50 * 3,
            p99: p50 * 4,
            p999: p50 * 8,
            max,
        };
        let step = |name: &str, requests, failed, p50| StepFigures {
            name: name.into(),
            requests,
            failed,
            latency_us: latency(p50, 41_000),
            histogram: String::new(),
        };
        report.scenarios[1].requests = 39_948;
        report.scenarios[1].latency_us = latency(1_200, 41_000);
        report.scenarios[1].load = Some(LoadFigures {
            model: "open".into(),
            executor: "open 1000/s for 20s".into(),
            target_rate: Some(1000.0),
            achieved_rate: 998.66,
            duration_s: 20.0,
            iterations: 19_974,
            dropped: 1,
            late: 3,
            in_flight_at_end: 2,
            timeouts: 4,
            connection_errors: 5,
            status_counts: Default::default(),
            error_codes: Default::default(),
            error_code_example: None,
            failed_requests: 12,
            steps: vec![
                step("1 create", 19_974, 0, 1_100),
                step("2 validate\x1b[2J", 19_974, 12, 1_300),
            ],
            histogram: String::new(),
            start_unix_ms: 0,
            thresholds: Vec::new(),
            regression: Vec::new(),
            generator: Some(crate::results::GeneratorFigures {
                pre_allocated: 5,
                warm_up_requests: 5,
                grown: 2,
                growth_deferred: 0,
                connects_on_arrival_path: 1,
                start_lag_us: latency(40, 12_500),
                late_with_idle_connection: 3,
                clock_lag_max_us: 900,
                clock_tick_max_us: 1_000,
                cpu_cores: Some(0.973),
                cores: 1,
                runtime_busy: 0.95,
                saturated: true,
            }),
            protocol: None,
            transport_error_example: None,
            intervals: vec![],
        });
        let text = render_summary(&report, false);
        let block = "\
load bad (open 1000/s for 20s)
  rate       target 1000.0/s, achieved 998.7/s over 20.0s, 19974 iterations
  requests   39948 sent, 12 failed; timeouts 4, connection errors 5
  failures   timeouts ×4, connection errors ×5
  schedule   dropped 1, late 3, in flight at end 2
  generator  5 connections warmed before the clock, 2 opened during the run, 1 connects on an arrival's path; start lag p99 0.16, max 12.50 ms, clock tick up to 1.00 ms; CPU 0.97 of 1 core, threads busy 95%; SATURATED: the generator, not the target, set the pace
  latency    p50 1.20  p90 2.40  p95 3.60  p99 4.80  p99.9 9.60  max 41.00 ms
  step 1 create             19974 req      0 failed  p50 1.10  p90 2.20  p95 3.30  p99 4.40  p99.9 8.80  max 41.00 ms
  step 2 validate\\u{1b}[2J  19974 req     12 failed  p50 1.30  p90 2.60  p95 3.90  p99 5.20  p99.9 10.40  max 41.00 ms
";
        assert!(text.contains(block), "{text}");
        let table_end = text.find("SKIP  skip").unwrap();
        assert!(
            text.find("load bad").unwrap() > table_end,
            "block after the table"
        );
        let colored = render_summary(&report, true);
        assert!(
            colored.contains(&format!("{RED}12 failed{RESET}")),
            "{colored}"
        );
    }

    #[test]
    fn cut_counts_chars() {
        assert_eq!(cut("héllo", 10), "héllo");
        assert_eq!(cut("héllo wörld", 5), "héll…");
    }
}

//! `report.html`: a self-contained page for people: a header, a table of scenarios, then
//! each scenario's checks with their evidence, and for load scenarios their figures, a
//! per-step table and inline SVG charts (see `svg`).
//!
//! Evidence holds whatever the server under test answered, so every string from the report
//! is written through [`Esc`], and a Content-Security-Policy forbids scripts and every
//! outside resource as a second line of defence. The page loads nothing from anywhere
//! (inline CSS only), so it works as a CI artifact opened offline. Each part of the page is
//! its own function writing into one buffer, so new sections (e.g. inline SVG charts) slot
//! in between without touching the others.

mod escape;
mod svg;

use std::fmt::Write as _;

pub use escape::Esc;
pub use svg::percentiles_overlaid;

use crate::metrics::{codec, units};
use crate::redact::Redactor;
use crate::report::hdr;
use crate::results::{CheckResult, LoadFigures, Outcome, RunReport, ScenarioReport, Status};

/// The HTML page for `report`, redacted.
pub fn render(report: &RunReport, redactor: &Redactor) -> String {
    let report = report.redacted(redactor);
    let mut page = String::with_capacity(16 * 1024);
    document_start(&mut page, &report);
    run_header(&mut page, &report);
    failures(&mut page, &report);
    scenario_table(&mut page, &report);
    // The .hgrm/.hlog files `write_all` puts beside this page.
    let stems = hdr::file_stems(&report);
    for (index, (scenario, stem)) in report.scenarios.iter().zip(&stems).enumerate() {
        scenario_details(&mut page, index, scenario, stem.as_deref(), report.strict);
    }
    document_end(&mut page);
    redactor.redact(&page).into_owned()
}

/// No scripts, no fetches: only the inline stylesheet (and `data:` images, for charts).
pub(crate) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

pub(crate) const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5em; }
h1 { font-size: 1.5em; margin: 0 0 .4em; }
h2 { font-size: 1.2em; margin: 1.6em 0 .5em; }
h3 { font-size: 1.05em; margin: 0 0 .4em; }
section.scenario { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 1em; margin: 1em 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: .5em 0 1em; }
dl.meta dt { color: #57606a; }
dl.meta dd { margin: 0; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: .05em .55em; border-radius: 1em; font-size: .85em; font-weight: 600; color: #fff; white-space: nowrap; }
.pass { background: #1a7f37; }
.fail { background: #cf222e; }
.non-strict { background: #bf8700; }
.skipped, .delegated { background: #6e7781; }
.banner { padding: .6em 1em; border-radius: 6px; margin: .5em 0 1em; background: #fff8c5; border: 1px solid #d4a72c; }
.tag { display: inline-block; background: #ddf4ff; border-radius: .3em; padding: 0 .35em; margin: 0 .2em .1em 0; font-size: .85em; }
.warning { color: #9a6700; }
.check { border-top: 1px solid #eaeef2; padding: .5em 0; }
.check-name { font-weight: 600; }
.message { white-space: pre-wrap; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 4px; padding: .5em; margin: .3em 0; max-height: 24em; overflow: auto; font-size: .9em; }
.label { color: #57606a; font-size: .85em; }
h4 { font-size: 1em; margin: 1em 0 .4em; }
table.steps { width: auto; min-width: 50%; margin: .3em 0 1em; }
figure { margin: .5em 0 1em; max-width: 820px; }
figcaption { color: #57606a; font-size: .85em; text-align: center; }
svg.chart { display: block; width: 100%; height: auto; background: #fff; }
"#;

fn document_start(page: &mut String, report: &RunReport) {
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>KeyClaim report: {verdict} ({})</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n",
        Esc(&report.plans.join(", ")),
    );
}

fn document_end(page: &mut String) {
    page.push_str("</main>\n</body>\n</html>\n");
}

fn run_header(page: &mut String, report: &RunReport) {
    let (pass, fail, non_strict, skipped) = report.outcome_counts();
    let verdict = if report.passed {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let _ = writeln!(
        page,
        "<header>\n<h1>KeyClaim run report {}</h1>",
        badge_text(verdict, if report.passed { "PASS" } else { "FAIL" })
    );
    if report.interrupted {
        page.push_str(
            "<div class=\"banner\" role=\"alert\"><strong>Interrupted:</strong> the run was \
             stopped early; these results are partial.</div>\n",
        );
    }
    page.push_str("<dl class=\"meta\">\n");
    meta_row(page, "Plans", &report.plans.join(", "));
    meta_row(page, "Target", &report.target);
    if report.insecure {
        meta_row(
            page,
            "TLS",
            "NOT VERIFIED (--insecure): the answers came from whoever answered",
        );
    }
    if let Some(scope) = report.scope() {
        meta_row(page, "Workers", &scope);
    }
    meta_row(page, "Started", &report.started_at);
    meta_row(page, "Elapsed", &format!("{:.1} s", report.elapsed_s));
    meta_row(
        page,
        "Strict",
        if report.strict {
            "yes (non-strict counts as failure)"
        } else {
            "no"
        },
    );
    meta_row(
        page,
        "Checks",
        &format!("{pass} pass, {fail} fail, {non_strict} non-strict, {skipped} skipped"),
    );
    page.push_str("</dl>\n</header>\n");
}

/// Every check that fails the run, first, each linked to its scenario: the page is
/// opened to find out what broke.
fn failures(page: &mut String, report: &RunReport) {
    let failing: Vec<(usize, &ScenarioReport, &CheckResult)> = report
        .scenarios
        .iter()
        .enumerate()
        .flat_map(|(index, scenario)| {
            scenario
                .checks
                .iter()
                .filter(|c| c.outcome.counts_as_failure(report.strict))
                .map(move |check| (index, scenario, check))
        })
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(
        page,
        "<h2>Failures ({})</h2>\n<ul class=\"failures\">",
        failing.len()
    );
    for (index, scenario, check) in failing {
        let first_line = check.message.lines().next().unwrap_or("");
        let _ = writeln!(
            page,
            "<li>{} <a href=\"#scenario-{index}\">{}</a> › <span class=\"check-name\">{}</span>: {}</li>",
            outcome_badge(check.outcome),
            Esc(&scenario.name),
            Esc(&check.name),
            Esc(first_line)
        );
    }
    page.push_str("</ul>\n");
}

/// "1 request", "2 requests": `one` for a count of one, else `many`.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A rate in requests per second, where it means something: over a load scenario's
/// steady run, not a conformance scenario's few requests.
fn rate(scenario: &ScenarioReport) -> String {
    match scenario.load {
        Some(_) => format!("{:.1}", scenario.rps),
        None => "–".to_owned(),
    }
}

fn meta_row(page: &mut String, label: &str, value: &str) {
    let _ = writeln!(page, "<dt>{}</dt><dd>{}</dd>", Esc(label), Esc(value));
}

fn scenario_table(page: &mut String, report: &RunReport) {
    page.push_str(
        "<h2>Scenarios</h2>\n<table class=\"scenarios\">\n<thead><tr><th>Scenario</th><th>Id</th>\
         <th>Tags</th><th>Outcome</th><th>Checks</th><th>Requests</th><th>Errors</th><th>RPS</th>\
         <th>p50</th><th>p99</th></tr></thead>\n<tbody>\n",
    );
    for (index, scenario) in report.scenarios.iter().enumerate() {
        let passed_checks = scenario
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Pass)
            .count();
        let _ = writeln!(
            page,
            "<tr><td><a href=\"#scenario-{index}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{passed_checks}/{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            Esc(&scenario.name),
            Esc(scenario.id.as_deref().unwrap_or("")),
            tags(&scenario.tags),
            scenario_badge(scenario),
            scenario.checks.len(),
            scenario.requests,
            scenario.errors,
            rate(scenario),
            units::readable(scenario.latency_us.p50),
            units::readable(scenario.latency_us.p99),
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

fn scenario_details(
    page: &mut String,
    index: usize,
    scenario: &ScenarioReport,
    hdr_stem: Option<&str>,
    strict: bool,
) {
    let _ = writeln!(
        page,
        "<section class=\"scenario\" id=\"scenario-{index}\">\n<h3>{} {}</h3>",
        scenario_badge(scenario),
        Esc(&scenario.name)
    );
    page.push_str("<dl class=\"meta\">\n");
    if let Some(id) = &scenario.id {
        meta_row(page, "Id", id);
    }
    if let Some(description) = &scenario.description {
        meta_row(page, "Description", description);
    }
    if !scenario.tags.is_empty() {
        let _ = writeln!(page, "<dt>Tags</dt><dd>{}</dd>", tags(&scenario.tags));
    }
    let l = &scenario.latency_us;
    meta_row(
        page,
        "Load",
        &format!(
            "{}, {}, {}{} in {:.2} s",
            count(scenario.requests, "request", "requests"),
            count(scenario.errors, "error", "errors"),
            count(
                scenario.rate_limit_retries,
                "rate-limit retry",
                "rate-limit retries",
            ),
            match scenario.load {
                Some(_) => format!(", {:.1} req/s", scenario.rps),
                None => String::new(),
            },
            scenario.elapsed_s
        ),
    );
    meta_row(
        page,
        "Latency",
        &format!(
            "p50 {} · p90 {} · p95 {} · p99 {} · p99.9 {} · max {}",
            units::readable(l.p50),
            units::readable(l.p90),
            units::readable(l.p95),
            units::readable(l.p99),
            units::readable(l.p999),
            units::readable(l.max)
        ),
    );
    page.push_str("</dl>\n");
    for warning in &scenario.warnings {
        let _ = writeln!(page, "<p class=\"warning\">Warning: {}</p>", Esc(warning));
    }
    if let Some(load) = &scenario.load {
        load_section(page, scenario, load, hdr_stem);
        if !scenario.checks.is_empty() {
            page.push_str("<h4>Thresholds</h4>\n");
        }
    }
    for check in &scenario.checks {
        check_block(page, check, strict);
    }
    page.push_str("</section>\n");
}

/// A load scenario's figures, its per-step table and its two charts.
fn load_section(
    page: &mut String,
    scenario: &ScenarioReport,
    load: &LoadFigures,
    hdr_stem: Option<&str>,
) {
    page.push_str("<h4>Load</h4>\n<dl class=\"meta\">\n");
    meta_row(page, "Executor", &load.executor);
    meta_row(page, "Model", &load.model);
    if let Some(protocol) = &load.protocol {
        meta_row(page, "Protocol", protocol);
    }
    if let Some(why) = &load.transport_error_example {
        meta_row(page, "Transport error (first)", why);
    }
    let achieved = format!("{:.1}/s", load.achieved_rate);
    meta_row(
        page,
        "Rate",
        &match load.target_rate {
            Some(target) => format!(
                "target {target:.1}/s · achieved {achieved} ({}) over {:.1} s",
                percent(load.achieved_rate, target),
                load.duration_s
            ),
            None => format!("achieved {achieved} over {:.1} s", load.duration_s),
        },
    );
    meta_row(page, "Iterations", &load.iterations.to_string());
    meta_row(
        page,
        "Requests",
        &format!(
            "{} sent, {} failed ({})",
            scenario.requests,
            load.failed_requests,
            percent(load.failed_requests as f64, scenario.requests as f64)
        ),
    );
    meta_row(
        page,
        "Dropped · late · in flight at end",
        &format!(
            "{} · {} · {}",
            load.dropped, load.late, load.in_flight_at_end
        ),
    );
    if let Some(g) = &load.generator {
        meta_row(
            page,
            "Generator",
            &format!(
                "{} connections warmed before the clock · {} opened during the run · start lag p99 {}, max {}{}{}",
                g.pre_allocated,
                g.grown,
                units::readable(g.start_lag_us.p99),
                units::readable(g.start_lag_us.max),
                if g.clock_tick_max_us > 0 {
                    format!(
                        " · clock tick up to {}",
                        units::readable(g.clock_tick_max_us)
                    )
                } else {
                    String::new()
                },
                if g.saturated {
                    " · saturated: the generator, not the target, set the pace"
                } else {
                    ""
                }
            ),
        );
    }
    meta_row(
        page,
        "Timeouts · connection errors",
        &format!("{} · {}", load.timeouts, load.connection_errors),
    );
    meta_row(page, "Status codes", &counts(&load.status_counts));
    meta_row(page, "Error codes", &counts(&load.error_codes));
    if let Some(example) = &load.error_code_example {
        meta_row(page, "An error counted as other", example);
    }
    if let Some(stem) = hdr_stem {
        let _ = writeln!(
            page,
            "<dt>HdrHistogram files</dt><dd><a href=\"{0}.{1}\">{0}.{1}</a> · \
             <a href=\"{0}.{2}\">{0}.{2}</a></dd>",
            Esc(stem),
            hdr::HGRM_EXTENSION,
            hdr::HLOG_EXTENSION
        );
    }
    page.push_str("</dl>\n");
    step_table(page, load);
    page.push_str("<figure>\n");
    match codec::decode(&load.histogram) {
        Ok(histogram) => page.push_str(&svg::latency_by_percentile(&histogram)),
        Err(err) => {
            let _ = writeln!(
                page,
                "<p class=\"warning\">No latency chart: {}</p>",
                Esc(&err.to_string())
            );
        }
    }
    page.push_str(
        "<figcaption>Latency by percentile (whole run; log scale of 1/(1−p))</figcaption>\n\
         </figure>\n<figure>\n",
    );
    page.push_str(&svg::throughput_and_p99(&load.intervals));
    let _ = writeln!(
        page,
        "<figcaption>Throughput and p99 latency per interval ({} interval{})</figcaption>\n\
         </figure>",
        load.intervals.len(),
        if load.intervals.len() == 1 { "" } else { "s" }
    );
}

fn step_table(page: &mut String, load: &LoadFigures) {
    if load.steps.is_empty() {
        return;
    }
    page.push_str(
        "<table class=\"steps\">\n<thead><tr><th>Step</th><th>Requests</th><th>Failed</th>\
         <th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead>\n<tbody>\n",
    );
    for step in &load.steps {
        let l = &step.latency_us;
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            Esc(&step.name),
            step.requests,
            step.failed,
            units::readable(l.p50),
            units::readable(l.p90),
            units::readable(l.p99),
            units::readable(l.p999),
            units::readable(l.max),
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

/// "200 × 950 · 429 × 3", or "none".
fn counts(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(key, n)| format!("{key} × {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `part` as a percentage of `whole` ("0.03%"); "–" when there is no whole.
fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 && part.is_finite() && whole.is_finite() {
        format!("{:.2}%", 100.0 * part / whole)
    } else {
        "–".to_owned()
    }
}

fn check_block(page: &mut String, check: &CheckResult, strict: bool) {
    let note = if check.outcome == Outcome::NonStrict && strict {
        " <span class=\"label\">(fails under --strict)</span>"
    } else {
        ""
    };
    let _ = writeln!(
        page,
        "<div class=\"check\">{} <span class=\"check-name\">{}</span>{note}\n<div class=\"message\">{}</div>",
        outcome_badge(check.outcome),
        Esc(&check.name),
        Esc(&check.message)
    );
    // Passing checks' evidence is noise on a page people scan for failures, so it starts
    // folded (<details> needs no script); everything else starts open.
    if let Some(evidence) = &check.evidence {
        let open = if check.outcome == Outcome::Pass {
            ""
        } else {
            " open"
        };
        let _ = writeln!(
            page,
            "<details{open}><summary class=\"label\">evidence</summary>\n\
             <div class=\"label\">request</div><pre>{}</pre>\n\
             <div class=\"label\">response</div><pre>{}</pre>\n</details>",
            Esc(&evidence.request),
            Esc(&evidence.response)
        );
    }
    page.push_str("</div>\n");
}

fn scenario_badge(scenario: &ScenarioReport) -> String {
    match scenario.status() {
        Status::Skipped => badge_text(Outcome::Skipped, "SKIPPED"),
        Status::Passed => badge_text(Outcome::Pass, "PASS"),
        Status::Failed => badge_text(Outcome::Fail, "FAIL"),
    }
}

fn outcome_badge(outcome: Outcome) -> String {
    badge_text(outcome, outcome.as_str())
}

/// A badge coloured by `outcome` (its CSS class) with `label` (always a constant here).
fn badge_text(outcome: Outcome, label: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        outcome.as_str(),
        Esc(label)
    )
}

fn tags(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("<span class=\"tag\">{}</span>", Esc(t)))
        .collect()
}

/// Microseconds as people read them: "850 µs", "12.3 ms", "1.20 s".
#[cfg(test)]
mod tests {
    use super::*;

    fn load_report(histogram: String) -> RunReport {
        use crate::results::{LatencySummary, LoadFigures};
        let scenario = ScenarioReport {
            name: "closed-load".into(),
            id: None,
            tags: vec![],
            description: None,
            passed: true,
            skipped: false,
            checks: vec![],
            requests: 0,
            errors: 0,
            rate_limit_retries: 0,
            rps: 0.0,
            elapsed_s: 0.0,
            latency_us: LatencySummary::default(),
            warnings: vec![],
            load: Some(LoadFigures {
                model: "closed".into(),
                executor: "closed 1 user for 0s".into(),
                target_rate: None,
                achieved_rate: 0.0,
                duration_s: 0.0,
                iterations: 0,
                dropped: 0,
                late: 0,
                in_flight_at_end: 0,
                timeouts: 0,
                connection_errors: 0,
                status_counts: Default::default(),
                error_codes: Default::default(),
                error_code_example: None,
                failed_requests: 0,
                steps: vec![],
                histogram,
                start_unix_ms: 0,
                thresholds: Vec::new(),
                regression: Vec::new(),
                generator: None,
                protocol: None,
                transport_error_example: None,
                intervals: vec![],
            }),
        };
        RunReport {
            passed: true,
            interrupted: false,
            strict: false,
            plans: vec!["p".into()],
            target: "embedded".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            elapsed_s: 0.0,
            plan_digest: String::new(),
            worker: None,
            merged: None,
            start: None,
            plan_share: Default::default(),
            insecure: false,
            scenarios: vec![scenario],
        }
    }

    #[test]
    fn load_without_any_request_draws_empty_charts() {
        let empty = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let page = render(
            &load_report(codec::encode(&empty).unwrap()),
            &Redactor::default(),
        );
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("no requests measured"));
        assert!(page.contains("no per-interval figures"));
        assert!(page.contains("0 sent, 0 failed (–)"));
        assert!(page.contains("<dt>Status codes</dt><dd>none</dd>"));
        assert!(
            !page.contains("<table class=\"steps\">"),
            "no steps, no table"
        );
        assert!(!page.contains("NaN") && !page.contains("inf"));
    }

    #[test]
    fn undecodable_histogram_is_a_note_not_a_chart() {
        let page = render(&load_report(String::new()), &Redactor::default());
        assert_eq!(page.matches("<svg").count(), 1, "only the timeline");
        assert!(page.contains("<p class=\"warning\">No latency chart: histogram does not decode"));
    }
}

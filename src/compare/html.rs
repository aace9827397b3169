//! `compare.html`: the two runs side by side, for people. A table per part (scenario or
//! step) with both figures, the change and the verdict, and a chart overlaying both
//! latency distributions by percentile. Same rules as report.html: every string through
//! [`Esc`], inline CSS and SVG only, a Content-Security-Policy that forbids the rest.

use std::fmt::Write as _;

use super::{Comparison, Verdict, show};
use crate::report::html::{CSP, Esc, STYLE, percentiles_overlaid};

const EXTRA_STYLE: &str = r#"
.regression { background: #cf222e; }
.improved { background: #1a7f37; }
.ok { background: #6e7781; }
.not-judged, .no-data { background: #afb8c1; }
.why { color: #57606a; font-size: .85em; }
"#;

/// The page for `comparison`.
pub fn render(comparison: &Comparison) -> String {
    let mut page = String::with_capacity(32 * 1024);
    let verdict = if comparison.regressed {
        "REGRESSION"
    } else {
        "no regression"
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>KeyClaim compare: {verdict}</title>\n<style>{STYLE}{EXTRA_STYLE}</style>\n\
         </head>\n<body>\n<main>\n<header>\n<h1>KeyClaim compare <span class=\"badge {}\">{verdict}</span></h1>\n\
         <dl class=\"meta\">\n",
        if comparison.regressed { "fail" } else { "pass" }
    );
    for (label, side) in [("Base", &comparison.base), ("New", &comparison.new)] {
        let _ = writeln!(
            page,
            "<dt>{label}</dt><dd>{} — started {}, target {}, plans {}</dd>",
            Esc(&side.path),
            Esc(&side.started_at),
            Esc(&side.target),
            Esc(&side.plans.join(", "))
        );
    }
    let _ = writeln!(
        page,
        "<dt>Judged by</dt><dd>{}% confidence intervals and the tolerances {}</dd>\n</dl>",
        comparison.confidence * 100.0,
        Esc(&comparison.tolerances.join(", "))
    );
    for note in &comparison.notes {
        let _ = writeln!(page, "<div class=\"banner\">{}</div>", Esc(note));
    }
    page.push_str("</header>\n");
    for part in &comparison.parts {
        let _ = writeln!(
            page,
            "<section class=\"scenario\">\n<h2>{}</h2>\n<p class=\"label\">{} requests (base), {} (new)</p>\n\
             <table class=\"steps\">\n<tr><th>figure</th><th>base</th><th>new</th><th>change</th><th>verdict</th></tr>",
            Esc(&part.label()),
            part.base_requests,
            part.new_requests
        );
        for figure in &part.figures {
            let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| show(figure.unit, v));
            let class = match figure.verdict {
                Verdict::Regression => "regression",
                Verdict::Improved => "improved",
                Verdict::Unchanged => "ok",
                Verdict::NotJudged => "not-judged",
                Verdict::NoData => "no-data",
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td><span class=\"badge {class}\">{}</span> <span class=\"why\">{}</span></td></tr>",
                Esc(&figure.metric),
                Esc(&value(figure.base)),
                Esc(&value(figure.new)),
                Esc(&figure
                    .change_pct
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:+.1}%"))),
                Esc(figure.verdict.as_str()),
                Esc(&figure.why)
            );
        }
        page.push_str("</table>\n");
        if let Some((base, new)) = &part.histograms {
            let _ = writeln!(
                page,
                "<figure>\n{}<figcaption>Latency by percentile, base and new</figcaption>\n</figure>",
                percentiles_overlaid(base, new)
            );
        }
        page.push_str("</section>\n");
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

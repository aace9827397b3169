//! `compare`: two runs of the same plan, figure by figure (per load scenario and per
//! step), each judged for regression with a confidence interval from the histograms
//! report.json keeps ([`stats`]) and a tolerance (the plan's `regression` list,
//! `--tolerance`, or the defaults). The console, JSON, JUnit ([`text`]) and HTML
//! ([`html`], drawn with report.html's parts) outputs all read one [`Comparison`].

pub mod html;
pub mod stats;
pub mod text;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::metrics::codec::{self, CodecError};
use crate::metrics::units;
use crate::plan::model::{Allowance, Metric, Tolerance};
use crate::results::{IntervalFigures, LoadFigures, RunReport, ScenarioReport};

/// What every comparison judges unless told otherwise: latencies may not grow by more
/// than 10%, the error rate by more than 0.1 percentage points, the rate may not fall
/// by more than 10%. `max` is shown but not judged by default: it is one sample.
pub const DEFAULT_TOLERANCES: &[&str] = &[
    "p50 +10%",
    "p90 +10%",
    "p99 +10%",
    "p999 +10%",
    "rps -10%",
    "error_rate +0.1pp",
];

/// The figures every part shows, in order (tolerances may add more).
const SHOWN: &[Metric] = &[
    Metric::Percentile(50.0),
    Metric::Percentile(90.0),
    Metric::Percentile(99.0),
    Metric::Percentile(99.9),
    Metric::Max,
    Metric::Rps,
    Metric::ErrorRate,
];

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a report.json: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the runs come from different plans or overrides: {}; compare runs of one plan, or pass --allow-plan-mismatch",
        differences.join("; ")
    )]
    PlanMismatch { differences: Vec<String> },
    #[error("{}: scenario {scenario}: {source}", path.display())]
    Histogram {
        path: PathBuf,
        scenario: String,
        source: CodecError,
    },
    #[error("{0}")]
    Tolerance(String),
    #[error("neither report has a load scenario that the other has: nothing to compare")]
    NothingInCommon,
}

/// One side of the comparison.
pub struct Run {
    pub path: PathBuf,
    pub report: RunReport,
}

/// Reads `DIR/report.json`, or the file itself.
pub fn read(path: &Path) -> Result<Run, CompareError> {
    let path = if path.is_dir() {
        path.join(crate::report::JSON_FILE)
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&path).map_err(|source| CompareError::Read {
        path: path.clone(),
        source,
    })?;
    let report = serde_json::from_str(&text).map_err(|source| CompareError::Parse {
        path: path.clone(),
        source,
    })?;
    Ok(Run { path, report })
}

/// How a figure compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Worse beyond the tolerance, with confidence: the intervals do not reach.
    Regression,
    /// Better beyond the tolerance, with confidence.
    Improved,
    /// Within noise or within the tolerance.
    Unchanged,
    /// Shown, not judged (no tolerance names it).
    NotJudged,
    /// Nothing measured on one side.
    NoData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "ok",
            Verdict::NotJudged => "not judged",
            Verdict::NoData => "no data",
        }
    }
}

/// One figure of one part, both sides.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `p99`, `p(95)`, `max`, `rps`, `error_rate` ...
    pub metric: String,
    /// `us` (latencies), `fraction` (rates of failure) or `per_s`.
    pub unit: &'static str,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// The figure's confidence interval on each side, `[low, high]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_interval: Option<[f64; 2]>,
    /// `(new − base) / base`, in percent.
    pub change_pct: Option<f64>,
    /// The tolerance that judged it, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<String>,
    pub verdict: Verdict,
    /// The verdict in words, with the figures that decided it.
    pub why: String,
}

/// A load scenario as a whole, or one of its steps.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub scenario: String,
    /// `None` for the whole scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub base_requests: u64,
    pub new_requests: u64,
    pub figures: Vec<Figure>,
    /// Both latency histograms (base, new), for the charts.
    #[serde(skip)]
    pub histograms: Option<(Histogram<u64>, Histogram<u64>)>,
}

impl Part {
    /// `scenario` or `scenario / step`, as every output names a part.
    pub fn label(&self) -> String {
        match &self.step {
            Some(step) => format!("{} / {step}", self.scenario),
            None => self.scenario.clone(),
        }
    }
}

/// Where one side came from.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub path: String,
    pub started_at: String,
    pub target: String,
    pub plans: Vec<String>,
    pub plan_digest: String,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub base: Side,
    pub new: Side,
    /// Some figure regressed: `compare` exits 1.
    pub regressed: bool,
    pub confidence: f64,
    /// The tolerances that applied, by where they came from (default, plan, flag).
    pub tolerances: Vec<String>,
    pub parts: Vec<Part>,
    /// What was not compared and why, and what to know about the inputs.
    pub notes: Vec<String>,
}

/// What the user asked for beyond the two reports.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--tolerance`: replace the plan's and the default for their metric.
    pub tolerances: Vec<Tolerance>,
    pub allow_plan_mismatch: bool,
}

/// Compares `new` against `base`.
pub fn compare(base: &Run, new: &Run, settings: &Settings) -> Result<Comparison, CompareError> {
    let mut notes = Vec::new();
    if base.report.plan_digest != new.report.plan_digest {
        let differences = plan_differences(&base.report, &new.report);
        if !settings.allow_plan_mismatch {
            return Err(CompareError::PlanMismatch { differences });
        }
        notes.push(format!(
            "compared across a plan change (--allow-plan-mismatch): {}",
            differences.join("; ")
        ));
    }
    for (side, run) in [("base", base), ("new", new)] {
        if run.report.interrupted {
            notes.push(format!(
                "the {side} run was interrupted: its figures cover what ran"
            ));
        }
        if let Some(scope) = run.report.scope()
            && run.report.worker.is_some()
        {
            notes.push(format!(
                "the {side} report is one worker's share ({scope}); compare merged reports"
            ));
        }
    }
    if base.report.target != new.report.target {
        notes.push(format!(
            "the targets differ: {} (base) and {} (new)",
            base.report.target, new.report.target
        ));
    }

    let mut parts = Vec::new();
    let mut tolerances_used = BTreeSet::new();
    let base_loads = loads(&base.report);
    for (scenario, new_load) in loads(&new.report) {
        let Some(&(base_scenario, base_load)) =
            base_loads.iter().find(|(s, _)| s.name == scenario.name)
        else {
            notes.push(format!(
                "scenario {} is only in the new run: not compared",
                scenario.name
            ));
            continue;
        };
        let tolerances = tolerances_for(new_load, settings)?;
        tolerances_used.extend(tolerances.iter().map(|t| t.source.clone()));
        let histogram = |run: &Run, text: &str| {
            codec::decode(text).map_err(|source| CompareError::Histogram {
                path: run.path.clone(),
                scenario: scenario.name.clone(),
                source,
            })
        };
        let batches = |run: &Run, load: &LoadFigures| {
            load.intervals
                .iter()
                .filter(|i| i.duration_s >= BATCH_MIN_SECONDS && i.requests >= BATCH_MIN_REQUESTS)
                .map(|i| Ok(Batch::new(i, histogram(run, &i.histogram)?)))
                .collect::<Result<Rc<[Batch]>, CompareError>>()
        };
        let (base_batches, new_batches) = (batches(base, base_load)?, batches(new, new_load)?);
        let whole = Side2 {
            histogram: histogram(base, &base_load.histogram)?,
            requests: base_scenario.requests,
            failed: base_load.failed_requests,
            seconds: base_load.duration_s,
            dropped: Some((base_load.dropped, base_load.iterations + base_load.dropped)),
            batches: Rc::clone(&base_batches),
        };
        let whole_new = Side2 {
            histogram: histogram(new, &new_load.histogram)?,
            requests: scenario.requests,
            failed: new_load.failed_requests,
            seconds: new_load.duration_s,
            dropped: Some((new_load.dropped, new_load.iterations + new_load.dropped)),
            batches: Rc::clone(&new_batches),
        };
        parts.push(part(&scenario.name, None, whole, whole_new, &tolerances));
        for new_step in &new_load.steps {
            let Some(base_step) = base_load.steps.iter().find(|s| s.name == new_step.name) else {
                notes.push(format!(
                    "step {} of {} is only in the new run: not compared",
                    new_step.name, scenario.name
                ));
                continue;
            };
            // A step has no per-second figures of its own: the scenario's spread over
            // its seconds stands for the step's.
            let side = |run: &Run,
                        step: &crate::results::StepFigures,
                        seconds: f64,
                        batches: &Rc<[Batch]>| {
                Ok::<_, CompareError>(Side2 {
                    histogram: histogram(run, &step.histogram)?,
                    requests: step.requests,
                    failed: step.failed,
                    seconds,
                    dropped: None,
                    batches: Rc::clone(batches),
                })
            };
            parts.push(part(
                &scenario.name,
                Some(new_step.name.as_str()),
                side(base, base_step, base_load.duration_s, &base_batches)?,
                side(new, new_step, new_load.duration_s, &new_batches)?,
                &tolerances,
            ));
        }
    }
    for (scenario, _) in &base_loads {
        if !new.report.scenarios.iter().any(|s| s.name == scenario.name) {
            notes.push(format!(
                "scenario {} is only in the base run: not compared",
                scenario.name
            ));
        }
    }
    if parts.is_empty() {
        return Err(CompareError::NothingInCommon);
    }
    let regressed = parts
        .iter()
        .flat_map(|p| &p.figures)
        .any(|f| f.verdict == Verdict::Regression);
    Ok(Comparison {
        base: side(base),
        new: side(new),
        regressed,
        confidence: stats::CONFIDENCE,
        tolerances: tolerances_used.into_iter().collect(),
        parts,
        notes,
    })
}

fn side(run: &Run) -> Side {
    Side {
        path: run.path.display().to_string(),
        started_at: run.report.started_at.clone(),
        target: run.report.target.clone(),
        plans: run.report.plans.clone(),
        plan_digest: run.report.plan_digest.clone(),
    }
}

fn loads(report: &RunReport) -> Vec<(&ScenarioReport, &LoadFigures)> {
    report
        .scenarios
        .iter()
        .filter_map(|s| s.load.as_ref().map(|l| (s, l)))
        .collect()
}

/// What differs between two runs' plans, in words; at least one entry.
fn plan_differences(base: &RunReport, new: &RunReport) -> Vec<String> {
    let mut differences = Vec::new();
    if base.plans != new.plans {
        differences.push(format!(
            "plans {} (base) and {} (new)",
            base.plans.join(", "),
            new.plans.join(", ")
        ));
    }
    let names = |r: &RunReport| {
        r.scenarios
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    if names(base) != names(new) {
        differences.push(format!(
            "scenarios [{}] (base) and [{}] (new)",
            names(base).join(", "),
            names(new).join(", ")
        ));
    }
    for (scenario, new_load) in loads(new) {
        let Some(base_load) = base
            .scenarios
            .iter()
            .find(|s| s.name == scenario.name)
            .and_then(|s| s.load.as_ref())
        else {
            continue;
        };
        if base_load.executor != new_load.executor {
            differences.push(format!(
                "scenario {}: load `{}` (base) and `{}` (new)",
                scenario.name, base_load.executor, new_load.executor
            ));
        }
        if base_load.thresholds != new_load.thresholds {
            differences.push(format!(
                "scenario {}: thresholds [{}] (base) and [{}] (new)",
                scenario.name,
                base_load.thresholds.join(", "),
                new_load.thresholds.join(", ")
            ));
        }
        let steps = |l: &LoadFigures| l.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if steps(base_load) != steps(new_load) {
            differences.push(format!(
                "scenario {}: steps [{}] (base) and [{}] (new)",
                scenario.name,
                steps(base_load).join(", "),
                steps(new_load).join(", ")
            ));
        }
    }
    if differences.is_empty() {
        differences.push(format!(
            "plan digests {} (base) and {} (new) differ (a step, an expectation or an option changed)",
            short(&base.plan_digest),
            short(&new.plan_digest)
        ));
    }
    differences
}

fn short(digest: &str) -> &str {
    if digest.is_empty() {
        "(none)"
    } else {
        &digest[..digest.len().min(12)]
    }
}

/// Parses every tolerance the way the plan does (so a bad one reads the same), and
/// resolves which applies to each metric: a flag over the plan over the default.
pub fn parse_tolerances(written: &[String]) -> Result<Vec<Tolerance>, String> {
    written
        .iter()
        .map(|text| crate::plan::parse_tolerance(text))
        .collect()
}

fn tolerances_for(load: &LoadFigures, settings: &Settings) -> Result<Vec<Tolerance>, CompareError> {
    let defaults = parse_tolerances(
        &DEFAULT_TOLERANCES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )
    .map_err(CompareError::Tolerance)?;
    // The plan's were checked when it was loaded; a report edited by hand still gets a
    // clear message.
    let plan = parse_tolerances(&load.regression)
        .map_err(|err| CompareError::Tolerance(format!("the new report's plan: {err}")))?;
    let mut chosen: Vec<Tolerance> = Vec::new();
    for layer in [&settings.tolerances, &plan, &defaults] {
        for tolerance in layer {
            if !chosen.iter().any(|t| t.metric == tolerance.metric) {
                chosen.push(tolerance.clone());
            }
        }
    }
    Ok(chosen)
}

/// One side's measurements of a part.
struct Side2 {
    histogram: Histogram<u64>,
    requests: u64,
    failed: u64,
    seconds: f64,
    /// (dropped, scheduled) for a whole open-model scenario.
    dropped: Option<(u64, u64)>,
    /// The scenario's seconds, for batch means (see [`stats`]).
    batches: Rc<[Batch]>,
}

/// An interval shorter than this (the run's last sliver) is not a batch.
const BATCH_MIN_SECONDS: f64 = 0.5;
/// Nor one with fewer requests: its percentiles would be a handful of samples.
const BATCH_MIN_REQUESTS: u64 = 10;

/// Requests a second needs beyond a percentile for its value there to count.
const TAIL_SAMPLES: f64 = 10.0;

/// One second of a scenario, as batch means measure it.
struct Batch {
    histogram: Histogram<u64>,
    requests: u64,
    failed: u64,
    seconds: f64,
}

impl Batch {
    fn new(interval: &IntervalFigures, histogram: Histogram<u64>) -> Self {
        Self {
            histogram,
            requests: interval.requests,
            failed: interval.failed,
            seconds: interval.duration_s,
        }
    }

    /// `metric` in this second alone, where a second has it.
    fn measure(&self, metric: Metric) -> Option<f64> {
        match metric {
            // A second's tail percentile is only its few largest requests, too few to
            // say how the run's tail moved: tails keep their order-statistic interval.
            Metric::Percentile(p) if self.requests as f64 * (1.0 - p / 100.0) >= TAIL_SAMPLES => {
                Some(self.histogram.value_at_quantile(p / 100.0) as f64)
            }
            Metric::Mean => Some(self.histogram.mean()),
            Metric::ErrorRate => Some(self.failed as f64 / self.requests as f64),
            Metric::Rps => Some(self.requests as f64 / self.seconds),
            _ => None,
        }
    }
}

fn part(
    scenario: &str,
    step: Option<&str>,
    base: Side2,
    new: Side2,
    tolerances: &[Tolerance],
) -> Part {
    let mut metrics: Vec<Metric> = SHOWN.to_vec();
    for tolerance in tolerances {
        let applies = step.is_none() || tolerance.metric != Metric::DroppedRate;
        if applies && !metrics.contains(&tolerance.metric) {
            metrics.push(tolerance.metric);
        }
    }
    let figures = metrics
        .into_iter()
        .map(|metric| {
            let tolerance = tolerances.iter().find(|t| t.metric == metric);
            figure(metric, &base, &new, tolerance)
        })
        .collect();
    Part {
        scenario: scenario.to_owned(),
        step: step.map(str::to_owned),
        base_requests: base.requests,
        new_requests: new.requests,
        figures,
        histograms: Some((base.histogram, new.histogram)),
    }
}

/// A figure's point estimate and interval on one side: the wider of the interval that
/// assumes independent requests and the one from the spread over the run's seconds.
fn measure(metric: Metric, side: &Side2) -> Option<(f64, Option<(f64, f64)>)> {
    let (point, interval) = independent(metric, side)?;
    let per_second: Vec<f64> = side
        .batches
        .iter()
        .filter_map(|batch| batch.measure(metric))
        .collect();
    let (Some((low, high)), Some((mean, half))) = (interval, stats::batch_means(&per_second))
    else {
        return Some((point, interval));
    };
    // Latencies and rates spread in proportion to their size (a step's figures are
    // widened by the scenario's relative spread); a fraction by the same amount.
    let half = match unit(metric) {
        "fraction" => half,
        _ if mean > 0.0 => half / mean * point,
        _ => 0.0,
    };
    Some((
        point,
        Some((low.min((point - half).max(0.0)), high.max(point + half))),
    ))
}

/// A figure's point estimate and interval, its requests taken as independent.
fn independent(metric: Metric, side: &Side2) -> Option<(f64, Option<(f64, f64)>)> {
    let with = |(point, low, high): (f64, f64, f64)| (point, Some((low, high)));
    match metric {
        Metric::Percentile(p) if p >= 100.0 => {
            (!side.histogram.is_empty()).then(|| (side.histogram.max() as f64, None))
        }
        Metric::Percentile(p) => stats::quantile(&side.histogram, p / 100.0).map(with),
        Metric::Mean => stats::mean(&side.histogram).map(with),
        Metric::Max => (!side.histogram.is_empty()).then(|| (side.histogram.max() as f64, None)),
        Metric::ErrorRate => stats::proportion(side.failed, side.requests).map(with),
        Metric::Rps => stats::rate(side.requests, side.seconds).map(with),
        Metric::DroppedRate => side
            .dropped
            .and_then(|(dropped, scheduled)| stats::proportion(dropped, scheduled))
            .map(with),
        Metric::Requests => Some((side.requests as f64, None)),
    }
}

/// The metric's name as tolerances write it.
pub fn metric_name(metric: Metric) -> String {
    match metric {
        Metric::Percentile(50.0) => "p50".into(),
        Metric::Percentile(90.0) => "p90".into(),
        Metric::Percentile(95.0) => "p95".into(),
        Metric::Percentile(99.0) => "p99".into(),
        Metric::Percentile(99.9) => "p999".into(),
        Metric::Percentile(p) => format!("p({p})"),
        Metric::Mean => "mean".into(),
        Metric::Max => "max".into(),
        Metric::ErrorRate => "error_rate".into(),
        Metric::Rps => "rps".into(),
        Metric::Requests => "requests".into(),
        Metric::DroppedRate => "dropped_rate".into(),
    }
}

fn unit(metric: Metric) -> &'static str {
    match metric {
        Metric::Percentile(_) | Metric::Mean | Metric::Max => "us",
        Metric::ErrorRate | Metric::DroppedRate => "fraction",
        Metric::Rps | Metric::Requests => "per_s",
    }
}

/// A value as people read it, in the metric's unit.
pub fn show(unit: &str, value: f64) -> String {
    match unit {
        "us" => units::compact(value),
        "fraction" => format!("{:.3}%", value * 100.0),
        _ => format!("{value:.1}/s"),
    }
}

fn figure(metric: Metric, base: &Side2, new: &Side2, tolerance: Option<&Tolerance>) -> Figure {
    let unit = unit(metric);
    let (b, n) = (measure(metric, base), measure(metric, new));
    let change_pct = match (b, n) {
        (Some((b, _)), Some((n, _))) if b != 0.0 => Some((n - b) / b * 100.0),
        _ => None,
    };
    let mut figure = Figure {
        metric: metric_name(metric),
        unit,
        base: b.map(|(v, _)| v),
        new: n.map(|(v, _)| v),
        base_interval: b.and_then(|(_, i)| i).map(|(l, h)| [l, h]),
        new_interval: n.and_then(|(_, i)| i).map(|(l, h)| [l, h]),
        change_pct,
        tolerance: tolerance.map(|t| t.source.clone()),
        verdict: Verdict::NotJudged,
        why: String::new(),
    };
    let (Some((b_point, b_interval)), Some((n_point, n_interval))) = (b, n) else {
        figure.verdict = Verdict::NoData;
        figure.why = "nothing measured on one side".into();
        return figure;
    };
    let Some(tolerance) = tolerance else {
        figure.why = "no tolerance names it".into();
        return figure;
    };
    // A figure without an interval (max: one sample) is judged on its value alone.
    let (b_low, b_high) = b_interval.unwrap_or((b_point, b_point));
    let (n_low, n_high) = n_interval.unwrap_or((n_point, n_point));
    let higher_is_worse = metric != Metric::Rps;
    let widen = |v: f64, worse: bool| {
        let sign = if worse == higher_is_worse { 1.0 } else { -1.0 };
        match tolerance.allowed {
            Allowance::Relative(r) => v * (1.0 + sign * r),
            Allowance::Absolute(a) => v + sign * a,
        }
    };
    let interval = |low: f64, high: f64| {
        if b_interval.is_some() {
            format!("{}..{}", show(unit, low), show(unit, high))
        } else {
            show(unit, low)
        }
    };
    let shown = format!(
        "new {} vs base {} ({}% confidence)",
        interval(n_low, n_high),
        interval(b_low, b_high),
        stats::CONFIDENCE * 100.0
    );
    let (regressed, improved) = if higher_is_worse {
        (n_low > widen(b_high, true), n_high < widen(b_low, false))
    } else {
        (n_high < widen(b_low, true), n_low > widen(b_high, false))
    };
    figure.verdict = if regressed {
        Verdict::Regression
    } else if improved {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    };
    figure.why = match figure.verdict {
        Verdict::Regression => format!("worse beyond `{}`: {shown}", tolerance.source),
        Verdict::Improved => format!("better beyond `{}`: {shown}", tolerance.source),
        _ => format!("within noise or `{}`: {shown}", tolerance.source),
    };
    figure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(values: impl IntoIterator<Item = u64>, failed: u64) -> Side2 {
        let mut histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            histogram.record(v).unwrap();
        }
        let requests = histogram.len();
        Side2 {
            histogram,
            requests,
            failed,
            seconds: 10.0,
            dropped: None,
            batches: Rc::from(Vec::new()),
        }
    }

    /// `side` of `seconds`, each second's latencies all `value`.
    fn side_by_second(seconds: &[u64], per_second: usize) -> Side2 {
        let histogram_of = |values: &[u64]| {
            let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            for &v in values {
                h.record_n(v, per_second as u64).unwrap();
            }
            h
        };
        let batches: Vec<Batch> = seconds
            .iter()
            .map(|&v| Batch {
                histogram: histogram_of(&[v]),
                requests: per_second as u64,
                failed: 0,
                seconds: 1.0,
            })
            .collect();
        Side2 {
            batches: Rc::from(batches),
            seconds: seconds.len() as f64,
            ..side([], 0)
        }
        .with_histogram(histogram_of(seconds))
    }

    impl Side2 {
        fn with_histogram(mut self, histogram: Histogram<u64>) -> Self {
            self.requests = histogram.len();
            self.histogram = histogram;
            self
        }
    }

    #[test]
    fn seconds_that_move_together_widen_the_interval() {
        let p50 = tolerance("p50 +10%");
        // Runs whose seconds wander (a machine busy now and then): the medians differ
        // by 40%, which thousands of independent requests would call certain.
        let base = side_by_second(&[900, 1_000, 1_500, 950, 2_000, 1_000], 250);
        let new = side_by_second(&[1_400, 1_300, 2_100, 1_400, 1_000, 1_500], 250);
        let judged = figure(Metric::Percentile(50.0), &base, &new, Some(&p50));
        assert_eq!(judged.verdict, Verdict::Unchanged, "{}", judged.why);
        // Steady seconds, the same 40%: a regression.
        let base = side_by_second(&[1_000, 1_010, 990, 1_000, 1_005, 995], 250);
        let new = side_by_second(&[1_400, 1_410, 1_390, 1_400, 1_405, 1_395], 250);
        let judged = figure(Metric::Percentile(50.0), &base, &new, Some(&p50));
        assert_eq!(judged.verdict, Verdict::Regression, "{}", judged.why);
    }

    fn tolerance(text: &str) -> Tolerance {
        crate::plan::parse_tolerance(text).unwrap()
    }

    /// Deterministic pseudo-random latencies around `centre` µs (xorshift), with a
    /// long-ish tail, so two "runs" differ only by sampling.
    fn latencies(seed: u64, n: usize, centre: f64) -> Vec<u64> {
        let mut state = seed.max(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                // Exponential tail above a floor.
                (centre * (0.6 - 0.4 * (1.0 - u).max(1e-12).ln())) as u64
            })
            .collect()
    }

    #[test]
    fn the_same_distribution_sampled_twice_is_not_a_regression() {
        let base = side(latencies(1, 20_000, 1_000.0), 0);
        let new = side(latencies(2, 20_000, 1_000.0), 0);
        for metric in ["p50 +10%", "p90 +10%", "p99 +10%", "p999 +10%"] {
            let t = tolerance(metric);
            let f = figure(t.metric, &base, &new, Some(&t));
            assert_eq!(f.verdict, Verdict::Unchanged, "{metric}: {}", f.why);
        }
    }

    #[test]
    fn a_twenty_percent_slowdown_is_a_regression_and_the_reverse_an_improvement() {
        // 50,000 requests: a 100 s run at 500/s. (At 20,000, p99's intervals and the
        // 10% tolerance leave a 20% shift just short of certain.)
        let base = side(latencies(1, 50_000, 1_000.0), 0);
        let slow = side(latencies(2, 50_000, 1_200.0), 0);
        for metric in ["p50 +10%", "p90 +10%", "p99 +10%"] {
            let t = tolerance(metric);
            let f = figure(t.metric, &base, &slow, Some(&t));
            assert_eq!(f.verdict, Verdict::Regression, "{metric}: {}", f.why);
            assert!(f.why.contains(metric), "{}", f.why);
            let f = figure(t.metric, &slow, &base, Some(&t));
            assert_eq!(f.verdict, Verdict::Improved, "{metric}: {}", f.why);
        }
        // Tolerating 30% lets the same slowdown pass.
        let t = tolerance("p50 +30%");
        assert_eq!(
            figure(t.metric, &base, &slow, Some(&t)).verdict,
            Verdict::Unchanged
        );
    }

    #[test]
    fn error_rate_and_rate_are_judged_in_their_direction() {
        let base = side(latencies(1, 10_000, 1_000.0), 0);
        let failing = side(latencies(2, 10_000, 1_000.0), 100);
        let t = tolerance("error_rate +0.1pp");
        assert_eq!(
            figure(t.metric, &base, &failing, Some(&t)).verdict,
            Verdict::Regression
        );
        let t = tolerance("error_rate +2pp");
        assert_eq!(
            figure(t.metric, &base, &failing, Some(&t)).verdict,
            Verdict::Unchanged
        );
        let fewer = side(latencies(2, 5_000, 1_000.0), 0);
        let t = tolerance("rps -10%");
        assert_eq!(
            figure(t.metric, &base, &fewer, Some(&t)).verdict,
            Verdict::Regression
        );
        assert_eq!(
            figure(t.metric, &fewer, &base, Some(&t)).verdict,
            Verdict::Improved
        );
    }

    #[test]
    fn untolerated_and_unmeasured_figures_are_not_judged() {
        let base = side(latencies(1, 1_000, 1_000.0), 0);
        let empty = side([], 0);
        assert_eq!(
            figure(Metric::Max, &base, &base, None).verdict,
            Verdict::NotJudged
        );
        let t = tolerance("p99 +10%");
        assert_eq!(
            figure(t.metric, &base, &empty, Some(&t)).verdict,
            Verdict::NoData
        );
    }
}

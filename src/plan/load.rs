//! `[scenario.load]`: which executor drives the flow (closed `users`, or open `rate` /
//! `stages`), when it stops, and the thresholds that judge the run (`p99 < 50ms`).
//!
//! Thresholds are strings in the plan but numbers in fixed units in the model
//! (microseconds, fractions, per second), so the engine and the reports never parse.
//! The threshold grammar is a pure function ([`threshold`]) whose complaints the
//! caller places at the string's span.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{PlanError, Source, did_you_mean, one_of};
use super::model::{
    Allowance, Comparison, Executor, LoadSpec, Metric, RateSchedule, Stage, Threshold, Tolerance,
};
use super::raw::{RawLoad, RawStage};
use super::values::{duration, int_in};

/// Arrivals per second at most, for `rate`, `start_rate` and stage targets: far beyond
/// what one process can send, so a larger number is a typo (an extra zero or two).
const MAX_RATE: f64 = 10_000_000.0;
const MAX_USERS: u32 = 100_000;
const MAX_IN_FLIGHT: u32 = 1_000_000;
const DEFAULT_MAX_IN_FLIGHT: u32 = 10_000;

const METRICS: &[&str] = &[
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "p(N)",
    "mean",
    "avg",
    "max",
    "error_rate",
    "rps",
    "requests",
    "dropped_rate",
];
const OPS: &[&str] = &["<", "<=", ">", ">="];
/// Characters that make up a comparison, so `p99=<5ms` splits as `p99`, `=<`, `5ms`.
const OP_CHARS: &[char] = &['<', '>', '=', '!'];
const EXECUTOR_HELP: &str = "`users = N` runs a closed model (N users loop the flow); \
     `rate = N` (arrivals per second) or `stages` run an open model";
const THRESHOLD_HELP: &str =
    "write METRIC OP VALUE, like `p99 < 50ms`, `error_rate < 0.1%` or `rps > 1000`";
const PERCENTILE_HELP: &str = "write `p(N)` with N above 0 and at most 100, like `p(99.99)`";

/// The validated `[scenario.load]` at `at`.
pub(super) fn spec(source: &Source<'_>, at: &Spanned<RawLoad>) -> Result<LoadSpec, PlanError> {
    let l = at.get_ref();
    let executor = executor(source, at)?;
    let closed = matches!(executor, Executor::Closed { .. });

    let think_time = match &l.think_time {
        Some(t) if !closed => {
            return Err(source
                .error(
                    t.span(),
                    "`think_time` only applies to a closed model (`users`)",
                )
                .with_help(
                    "an open model starts iterations on a schedule, so there is no pause \
                     between them; lower `rate` to send less",
                ));
        }
        Some(t) => duration(source, t.span(), t.get_ref(), "think_time")?,
        None => Duration::ZERO,
    };
    let mut run_for = match &l.duration {
        Some(d) => {
            let run_for = duration(source, d.span(), d.get_ref(), "duration")?;
            if run_for.is_zero() {
                return Err(source
                    .error(d.span(), "`duration` must be more than zero")
                    .with_help("how long to start iterations for, like \"30s\" or \"5m\""));
            }
            Some(run_for)
        }
        None => None,
    };
    let iterations = match &l.iterations {
        Some(n) => Some(
            u64::try_from(*n.get_ref())
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    source.error(
                        n.span(),
                        format!("`iterations` must be 1 or more, found {}", n.get_ref()),
                    )
                })?,
        ),
        None => None,
    };
    if run_for.is_none()
        && let Executor::Open {
            rate: RateSchedule::Ramping { stages, .. },
            ..
        } = &executor
    {
        // The stages' sum; checked when the stages were read, so it cannot overflow.
        run_for = Some(stages.iter().map(|s| s.duration).sum());
    }
    if run_for.is_none() && iterations.is_none() {
        return Err(source
            .error(at.span(), "a load needs `duration` or `iterations`")
            .with_help(
                "say when to stop, like `duration = \"30s\"` or `iterations = 100000` \
                 (with both, whichever comes first)",
            ));
    }

    let mut thresholds = Vec::new();
    for t in l.thresholds.iter().flatten() {
        let written = t.get_ref().trim();
        if written.is_empty() {
            return Err(source
                .error(t.span(), "a threshold cannot be empty")
                .with_help(THRESHOLD_HELP));
        }
        let threshold = threshold(written).map_err(|bad| {
            source
                .error(
                    t.span(),
                    format!("invalid threshold `{written}`: {}", bad.why),
                )
                .with_help(bad.help)
        })?;
        if closed && threshold.metric == Metric::DroppedRate {
            return Err(source
                .error(t.span(), "`dropped_rate` does not fit a closed model")
                .with_help(
                    "only an open model (`rate` or `stages`) drops arrivals, at \
                     `max_in_flight`; a closed model never does",
                ));
        }
        thresholds.push(threshold);
    }
    let mut regression = Vec::new();
    for t in l.regression.iter().flatten() {
        let written = t.get_ref().trim();
        let tolerance = tolerance(written).map_err(|bad| {
            source
                .error(
                    t.span(),
                    format!("invalid regression tolerance `{written}`: {}", bad.why),
                )
                .with_help(bad.help)
        })?;
        regression.push(tolerance);
    }
    Ok(LoadSpec {
        executor,
        duration: run_for,
        iterations,
        think_time,
        thresholds,
        regression,
    })
}

/// Exactly one of `users`, `rate`, `stages`, with the keys that go with it.
fn executor(source: &Source<'_>, at: &Spanned<RawLoad>) -> Result<Executor, PlanError> {
    let l = at.get_ref();
    let present: Vec<(&str, Range<usize>)> = [
        ("users", l.users.as_ref().map(Spanned::span)),
        ("rate", l.rate.as_ref().map(Spanned::span)),
        ("stages", l.stages.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(name, span)| span.map(|span| (name, span)))
    .collect();
    // Two or more: point at whichever of the first two comes later in the file.
    if let [a, b, ..] = present.as_slice() {
        let later = if a.1.start > b.1.start { a } else { b };
        let help = if a.0 == "users" {
            format!("{EXECUTOR_HELP}: keep one")
        } else {
            "`rate` is a constant arrival rate and `stages` a ramp; to ramp from a rate, \
             give `stages` a `start_rate`"
                .to_string()
        };
        return Err(source
            .error(
                later.1.clone(),
                format!("a load cannot have both `{}` and `{}`", a.0, b.0),
            )
            .with_help(help));
    }

    if let Some(users) = &l.users {
        if let Some(m) = &l.max_in_flight {
            return Err(source
                .error(m.span(), "`max_in_flight` only applies to an open model (`rate` or `stages`)")
                .with_help("a closed model has at most `users` iterations in flight; remove `max_in_flight`"));
        }
        if let Some(p) = &l.pre_allocated {
            return Err(source
                .error(
                    p.span(),
                    "`pre_allocated` only applies to an open model (`rate` or `stages`)",
                )
                .with_help(
                    "a closed model opens one connection per user; remove `pre_allocated`",
                ));
        }
        if let Some(s) = &l.start_rate {
            return Err(start_rate_alone(source, s.span()));
        }
        let users = int_in(source, Some(users), "users", 1..=MAX_USERS, 1)?;
        return Ok(Executor::Closed { users });
    }
    let rate = if let Some(rate) = &l.rate {
        if let Some(s) = &l.start_rate {
            return Err(start_rate_alone(source, s.span()));
        }
        let value = *rate.get_ref();
        if !(value > 0.0 && value <= MAX_RATE) {
            return Err(source.error(
                rate.span(),
                format!(
                    "`rate` must be above 0 and at most {MAX_RATE} arrivals per second, found {value}"
                ),
            ));
        }
        RateSchedule::Constant(value)
    } else if let Some(stages) = &l.stages {
        let start = match &l.start_rate {
            Some(s) => rate_from_zero(source, s, "`start_rate`")?,
            None => 0.0,
        };
        RateSchedule::Ramping {
            start,
            stages: ramp(source, stages)?,
        }
    } else {
        return Err(source
            .error(at.span(), "a load needs `users`, `rate` or `stages`")
            .with_help(EXECUTOR_HELP));
    };
    let max_in_flight = int_in(
        source,
        l.max_in_flight.as_ref(),
        "max_in_flight",
        1..=MAX_IN_FLIGHT,
        DEFAULT_MAX_IN_FLIGHT,
    )?;
    let pre_allocated = match &l.pre_allocated {
        Some(at) => Some(int_in(
            source,
            Some(at),
            "pre_allocated",
            1..=max_in_flight,
            1,
        )?),
        None => None,
    };
    Ok(Executor::Open {
        rate,
        max_in_flight,
        pre_allocated,
    })
}

fn start_rate_alone(source: &Source<'_>, span: Range<usize>) -> PlanError {
    source
        .error(span, "`start_rate` only applies to `stages`")
        .with_help("`start_rate` is where a ramp of `stages` begins; remove it, or use `stages`")
}

fn ramp(
    source: &Source<'_>,
    at: &Spanned<Vec<Spanned<RawStage>>>,
) -> Result<Vec<Stage>, PlanError> {
    if at.get_ref().is_empty() {
        return Err(source.error(at.span(), "`stages` is empty").with_help(
            "list at least one stage, like `stages = [{ duration = \"10s\", target = 500 }]`",
        ));
    }
    let mut total = Duration::ZERO;
    let mut stages = Vec::with_capacity(at.get_ref().len());
    for stage in at.get_ref() {
        let s = stage.get_ref();
        let missing = |key: &str| {
            source
                .error(stage.span(), format!("a stage needs `{key}`"))
                .with_help("write a stage like `{ duration = \"10s\", target = 500 }`")
        };
        let Some(d) = &s.duration else {
            return Err(missing("duration"));
        };
        let Some(target) = &s.target else {
            return Err(missing("target"));
        };
        let d_value = duration(source, d.span(), d.get_ref(), "duration")?;
        if d_value.is_zero() {
            return Err(source
                .error(d.span(), "a stage's `duration` must be more than zero")
                .with_help("how long the ramp to `target` takes, like \"10s\""));
        }
        total = total.checked_add(d_value).ok_or_else(|| {
            source.error(d.span(), "the stages last too long: their sum overflows")
        })?;
        stages.push(Stage {
            duration: d_value,
            target: rate_from_zero(source, target, "a stage's `target`")?,
        });
    }
    Ok(stages)
}

/// An arrival rate that may be 0 (the start or end of a ramp).
fn rate_from_zero(source: &Source<'_>, at: &Spanned<f64>, what: &str) -> Result<f64, PlanError> {
    let value = *at.get_ref();
    if (0.0..=MAX_RATE).contains(&value) {
        return Ok(value);
    }
    Err(source.error(
        at.span(),
        format!("{what} must be from 0 to {MAX_RATE} arrivals per second, found {value}"),
    ))
}

/// Why a threshold did not parse: the tail of the message and how to fix it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadThreshold {
    pub why: String,
    pub help: String,
}

fn bad(why: impl Into<String>, help: impl Into<String>) -> BadThreshold {
    BadThreshold {
        why: why.into(),
        help: help.into(),
    }
}

/// `METRIC OP VALUE`, whitespace-tolerant (`p99<50ms`, ` p(99.9) <= 1s `). `text` is
/// kept, trimmed, as the threshold's `source`.
pub(super) fn threshold(text: &str) -> Result<Threshold, BadThreshold> {
    let text = text.trim();
    let Some(op_at) = text.find(OP_CHARS) else {
        return Err(bad(
            "it has no comparison",
            format!("{THRESHOLD_HELP}; comparisons are `<`, `<=`, `>` and `>=`"),
        ));
    };
    let written_metric = text[..op_at].trim();
    let rest = &text[op_at..];
    let op_end = rest.find(|c| !OP_CHARS.contains(&c)).unwrap_or(rest.len());
    let value = rest[op_end..].trim();
    if written_metric.is_empty() {
        return Err(bad("it has no metric", THRESHOLD_HELP));
    }
    let metric = metric(written_metric)?;
    let op = comparison(&rest[..op_end])?;
    if value.is_empty() {
        return Err(bad("it has no value", value_help(metric)));
    }
    let value = match metric {
        Metric::Percentile(_) | Metric::Mean | Metric::Max => latency(value)?,
        Metric::ErrorRate | Metric::DroppedRate => rate(value)?,
        Metric::Rps | Metric::Requests => match number(value) {
            Some(n) => n,
            None if value.starts_with('-') && number(&value[1..]).is_some() => {
                return Err(bad(format!("`{value}` is negative"), value_help(metric)));
            }
            None => {
                return Err(bad(
                    format!("`{value}` is not a number"),
                    value_help(metric),
                ));
            }
        },
    };
    Ok(Threshold {
        metric,
        op,
        value,
        source: text.to_string(),
    })
}

const TOLERANCE_HELP: &str = "write METRIC and how much worse it may get, like `p99 +10%`, \
     `p50 +2ms`, `error_rate +0.1pp` or `rps -5%`";

/// A regression tolerance for `compare`: `METRIC +N%` (relative to the baseline), or an
/// absolute amount in the metric's unit (`+2ms`, `+0.1pp`, `-50/s` for `rps`). The
/// sign is the worse direction: `+` for latencies and rates of failure, `-` for `rps`.
pub(super) fn tolerance(text: &str) -> Result<Tolerance, BadThreshold> {
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("it is empty", TOLERANCE_HELP));
    }
    let Some(sign_at) = text.find(['+', '-']) else {
        if text.contains(OP_CHARS) {
            return Err(bad(
                "it is a threshold, not a tolerance",
                format!("thresholds go in `thresholds`; {TOLERANCE_HELP}"),
            ));
        }
        return Err(bad("it has no `+` or `-` amount", TOLERANCE_HELP));
    };
    let written_metric = text[..sign_at].trim();
    if written_metric.is_empty() {
        return Err(bad("it has no metric", TOLERANCE_HELP));
    }
    let metric = metric(written_metric)?;
    let worse_up = !matches!(metric, Metric::Rps);
    if metric == Metric::Requests {
        return Err(bad(
            "`requests` is not compared between runs",
            "the request count follows from the plan's duration and rate; compare `rps`",
        ));
    }
    let sign = &text[sign_at..sign_at + 1];
    let amount = text[sign_at + 1..].trim();
    match (worse_up, sign) {
        (true, "-") => {
            return Err(bad(
                format!("a lower `{written_metric}` is better, so its tolerance is `+`"),
                format!("did you mean `{written_metric} +{amount}`?"),
            ));
        }
        (false, "+") => {
            return Err(bad(
                format!("a higher `{written_metric}` is better, so its tolerance is `-`"),
                format!("did you mean `{written_metric} -{amount}`?"),
            ));
        }
        _ => {}
    }
    if amount.is_empty() {
        return Err(bad("it has no amount", TOLERANCE_HELP));
    }
    let allowed = if let Some(percent) = amount.strip_suffix('%') {
        let n = number(percent.trim_end())
            .ok_or_else(|| bad(format!("`{amount}` is not a percentage"), TOLERANCE_HELP))?;
        Allowance::Relative(n / 100.0)
    } else {
        match metric {
            Metric::Percentile(_) | Metric::Mean | Metric::Max => {
                Allowance::Absolute(latency(amount)?)
            }
            Metric::ErrorRate | Metric::DroppedRate => {
                let points = amount.strip_suffix("pp").and_then(|n| number(n.trim_end()));
                let Some(points) = points else {
                    return Err(bad(
                        format!("`{amount}` is not in percentage points"),
                        "a change of a rate is in percentage points, like `+0.1pp`, or \
                         relative, like `+10%`",
                    ));
                };
                Allowance::Absolute(points / 100.0)
            }
            Metric::Rps | Metric::Requests => {
                let n = number(amount.strip_suffix("/s").unwrap_or(amount).trim_end()).ok_or_else(
                    || {
                        bad(
                            format!("`{amount}` is not a rate"),
                            "`rps` changes by a percentage like `-5%` or by requests per \
                             second like `-100/s`",
                        )
                    },
                )?;
                Allowance::Absolute(n)
            }
        }
    };
    Ok(Tolerance {
        metric,
        allowed,
        source: text.to_string(),
    })
}

fn metric(written: &str) -> Result<Metric, BadThreshold> {
    // `p( 99.9 )` is `p(99.9)`.
    let word: String = written.split_whitespace().collect();
    Ok(match word.as_str() {
        "p50" => Metric::Percentile(50.0),
        "p90" => Metric::Percentile(90.0),
        "p95" => Metric::Percentile(95.0),
        "p99" => Metric::Percentile(99.0),
        "p999" => Metric::Percentile(99.9),
        "mean" | "avg" => Metric::Mean,
        "max" => Metric::Max,
        "error_rate" => Metric::ErrorRate,
        "rps" => Metric::Rps,
        "requests" => Metric::Requests,
        "dropped_rate" => Metric::DroppedRate,
        w if w.starts_with("p(") => {
            let n = w[2..]
                .strip_suffix(')')
                .and_then(number)
                .ok_or_else(|| bad(format!("invalid percentile `{written}`"), PERCENTILE_HELP))?;
            if !(n > 0.0 && n <= 100.0) {
                return Err(bad(
                    format!("percentile `{written}` is out of range"),
                    PERCENTILE_HELP,
                ));
            }
            Metric::Percentile(n)
        }
        w => {
            // `p99.9`, `p75`: a percentile without the parentheses.
            let help = match w.strip_prefix('p').and_then(number) {
                Some(99.9) => "did you mean `p999` or `p(99.9)`?".to_string(),
                Some(n) if n > 0.0 && n <= 100.0 => format!("did you mean `p({})`?", &w[1..]),
                _ => did_you_mean(w, METRICS),
            };
            return Err(bad(format!("unknown metric `{written}`"), help));
        }
    })
}

fn comparison(op: &str) -> Result<Comparison, BadThreshold> {
    Ok(match op {
        "<" => Comparison::Lt,
        "<=" => Comparison::Le,
        ">" => Comparison::Gt,
        ">=" => Comparison::Ge,
        _ => {
            let help = match op {
                "=<" => "did you mean `<=`?".to_string(),
                "=>" => "did you mean `>=`?".to_string(),
                "=" | "==" | "!=" => {
                    "a threshold is a bound: use `<`, `<=`, `>` or `>=`".to_string()
                }
                _ => format!("expected {}", one_of(OPS)),
            };
            return Err(bad(format!("unknown comparison `{op}`"), help));
        }
    })
}

/// How to write a value for `metric`.
fn value_help(metric: Metric) -> &'static str {
    match metric {
        Metric::Percentile(_) | Metric::Mean | Metric::Max => {
            "a latency is a number and a unit, like `50ms`, `1.5s`, `200us` or `250µs`"
        }
        Metric::ErrorRate | Metric::DroppedRate => {
            "a rate is a percentage like `0.1%`, or a fraction from 0 to 1 like `0.001`"
        }
        Metric::Rps => "`rps` takes requests per second, a number like `1000`",
        Metric::Requests => "`requests` takes a count, like `10000`",
    }
}

/// A latency in microseconds: a humantime duration, as elsewhere in plans.
fn latency(text: &str) -> Result<f64, BadThreshold> {
    let help = value_help(Metric::Mean);
    if number(text).is_some() {
        return Err(bad(
            format!("`{text}` has no unit"),
            format!("a latency needs a unit, like `{text}ms`, `{text}us` or `{text}s`"),
        ));
    }
    if text.starts_with('-') {
        return Err(bad(format!("`{text}` is negative"), help));
    }
    // humantime knows `µs` (the micro sign); people also type the Greek mu.
    let micro = text.replace('\u{3bc}', "\u{b5}");
    use humantime::DurationError as E;
    match humantime::parse_duration(&micro) {
        // Nanoseconds are exact; one division rounds once.
        Ok(d) => Ok(d.as_nanos() as f64 / 1000.0),
        Err(E::UnknownUnit { unit, .. }) if !unit.is_empty() => {
            Err(bad(format!("unknown unit `{unit}` in `{text}`"), help))
        }
        Err(E::NumberOverflow) => Err(bad(format!("`{text}` is too large"), help)),
        Err(_) => Err(bad(format!("`{text}` is not a duration"), help)),
    }
}

/// A fraction of 1, from a percentage (`0.1%`) or a fraction (`0.001`).
fn rate(text: &str) -> Result<f64, BadThreshold> {
    let help = value_help(Metric::ErrorRate);
    if let Some(percent) = text.strip_suffix('%') {
        let percent = percent.trim_end();
        let Some(n) = number(percent) else {
            return Err(bad(format!("`{text}` is not a percentage"), help));
        };
        if n > 100.0 {
            return Err(bad(format!("`{text}` is more than 100%"), help));
        }
        // Shift the decimal point in the text, so `0.1%` is exactly the f64 nearest
        // 0.001 rather than 0.1 / 100 rounded twice.
        let digits = percent.replace('_', "");
        return Ok(format!("{digits}e-2").parse().unwrap_or(n / 100.0));
    }
    match number(text) {
        Some(n) if n <= 1.0 => Ok(n),
        Some(_) => Err(bad(
            format!("`{text}` is more than 1"),
            format!("a rate is a fraction from 0 to 1; for {text} percent, write `{text}%`"),
        )),
        None if text.starts_with('-') => Err(bad(format!("`{text}` is negative"), help)),
        None => Err(bad(
            format!("`{text}` is not a fraction or a percentage"),
            help,
        )),
    }
}

/// A plain non-negative decimal: digits, at most one `.`, `_` between digits allowed
/// (`10_000`). No sign, exponent, `inf` or `nan`, which `f64::from_str` would take.
fn number(text: &str) -> Option<f64> {
    let plain = text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_');
    if !plain {
        return None;
    }
    text.replace('_', "")
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_to_model_units() {
        use Comparison::*;
        use Metric::*;
        let cases: &[(&str, Metric, Comparison, f64)] = &[
            ("p50 < 10ms", Percentile(50.0), Lt, 10_000.0),
            ("p90 <= 20ms", Percentile(90.0), Le, 20_000.0),
            ("p95 > 1s", Percentile(95.0), Gt, 1_000_000.0),
            ("p99 >= 50ms", Percentile(99.0), Ge, 50_000.0),
            ("p999 < 1.5s", Percentile(99.9), Lt, 1_500_000.0),
            ("p(99.99) < 200us", Percentile(99.99), Lt, 200.0),
            ("p(100) < 1m", Percentile(100.0), Lt, 60_000_000.0),
            ("p( 75 ) < 250µs", Percentile(75.0), Lt, 250.0),
            ("p(0.1) < 250μs", Percentile(0.1), Lt, 250.0),
            ("mean < 1500ns", Mean, Lt, 1.5),
            ("avg<2ms", Mean, Lt, 2_000.0),
            ("max < 1s 500ms", Max, Lt, 1_500_000.0),
            ("p99 < 50 ms", Percentile(99.0), Lt, 50_000.0),
            ("error_rate < 0.1%", ErrorRate, Lt, 0.001),
            ("error_rate <= 0.001", ErrorRate, Le, 0.001),
            ("error_rate < 5 %", ErrorRate, Lt, 0.05),
            ("error_rate < 0%", ErrorRate, Lt, 0.0),
            ("error_rate < 100%", ErrorRate, Lt, 1.0),
            ("dropped_rate < 1", DroppedRate, Lt, 1.0),
            ("dropped_rate < 0.3%", DroppedRate, Lt, 0.003),
            ("rps > 1000", Rps, Gt, 1000.0),
            ("rps >= 10_000.5", Rps, Ge, 10_000.5),
            ("requests >= 0", Requests, Ge, 0.0),
            ("  requests   >   100000  ", Requests, Gt, 100_000.0),
        ];
        for &(text, metric, op, value) in cases {
            let t = threshold(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!((t.metric, t.op, t.value), (metric, op, value), "{text}");
            assert_eq!(t.source, text.trim());
        }
    }

    #[test]
    fn bad_thresholds_say_why_and_how() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "p99.9 < 1s",
                "unknown metric `p99.9`",
                "did you mean `p999` or `p(99.9)`?",
            ),
            ("p75 < 1s", "unknown metric `p75`", "did you mean `p(75)`?"),
            ("P99 < 1s", "unknown metric `P99`", "did you mean `p99`?"),
            (
                "error rate < 1%",
                "unknown metric `error rate`",
                "did you mean `error_rate`?",
            ),
            (
                "latency < 5ms",
                "unknown metric `latency`",
                "expected one of `p50`, `p90`, `p95`, `p99`, `p999`, `p(N)`, `mean`, `avg`, \
                 `max`, `error_rate`, `rps`, `requests`, `dropped_rate`",
            ),
            (
                "p(0) < 1s",
                "percentile `p(0)` is out of range",
                PERCENTILE_HELP,
            ),
            (
                "p(101) < 1s",
                "percentile `p(101)` is out of range",
                PERCENTILE_HELP,
            ),
            ("p(x) < 1s", "invalid percentile `p(x)`", PERCENTILE_HELP),
            ("p(99 < 1s", "invalid percentile `p(99`", PERCENTILE_HELP),
            ("p99 =< 1s", "unknown comparison `=<`", "did you mean `<=`?"),
            (
                "p99 == 1s",
                "unknown comparison `==`",
                "a threshold is a bound: use `<`, `<=`, `>` or `>=`",
            ),
            (
                "p99 <> 1s",
                "unknown comparison `<>`",
                "expected one of `<`, `<=`, `>`, `>=`",
            ),
            (
                "p99 50ms",
                "it has no comparison",
                "write METRIC OP VALUE, like `p99 < 50ms`, `error_rate < 0.1%` or \
                 `rps > 1000`; comparisons are `<`, `<=`, `>` and `>=`",
            ),
            ("< 50ms", "it has no metric", THRESHOLD_HELP),
            ("p99 <", "it has no value", value_help(Metric::Max)),
            (
                "p99 < 50",
                "`50` has no unit",
                "a latency needs a unit, like `50ms`, `50us` or `50s`",
            ),
            (
                "p99 < 50 parsecs",
                "unknown unit `parsecs` in `50 parsecs`",
                value_help(Metric::Max),
            ),
            ("max < -5ms", "`-5ms` is negative", value_help(Metric::Max)),
            (
                "mean < 5%",
                "`5%` is not a duration",
                value_help(Metric::Max),
            ),
            (
                "error_rate < 5",
                "`5` is more than 1",
                "a rate is a fraction from 0 to 1; for 5 percent, write `5%`",
            ),
            (
                "error_rate < 150%",
                "`150%` is more than 100%",
                value_help(Metric::ErrorRate),
            ),
            (
                "error_rate < -1%",
                "`-1%` is not a percentage",
                value_help(Metric::ErrorRate),
            ),
            (
                "dropped_rate < 5ms",
                "`5ms` is not a fraction or a percentage",
                value_help(Metric::ErrorRate),
            ),
            ("rps > 1k", "`1k` is not a number", value_help(Metric::Rps)),
            ("rps > -1", "`-1` is negative", value_help(Metric::Rps)),
            (
                "requests > nan",
                "`nan` is not a number",
                value_help(Metric::Requests),
            ),
        ];
        for &(text, why, help) in cases {
            assert_eq!(threshold(text), Err(bad(why, help)), "threshold `{text}`");
        }
    }

    #[test]
    fn tolerances_parse_to_model_units_in_their_worse_direction() {
        let cases: [(&str, Metric, Allowance); 6] = [
            (
                "p99 +10%",
                Metric::Percentile(99.0),
                Allowance::Relative(0.1),
            ),
            (
                "p(99.9)+5%",
                Metric::Percentile(99.9),
                Allowance::Relative(0.05),
            ),
            (
                "p50 +2ms",
                Metric::Percentile(50.0),
                Allowance::Absolute(2_000.0),
            ),
            (
                "error_rate +0.1pp",
                Metric::ErrorRate,
                Allowance::Absolute(0.001),
            ),
            ("rps -5%", Metric::Rps, Allowance::Relative(0.05)),
            ("rps -100/s", Metric::Rps, Allowance::Absolute(100.0)),
        ];
        for (text, metric, allowed) in cases {
            let t = tolerance(text).unwrap_or_else(|bad| panic!("{text}: {bad:?}"));
            assert_eq!((t.metric, t.allowed), (metric, allowed), "{text}");
            assert_eq!(t.source, text);
        }
    }

    #[test]
    fn bad_tolerances_say_why_and_how() {
        for (text, why, help) in [
            ("latency +5%", "unknown metric `latency`", "expected"),
            (
                "eror_rate +1pp",
                "unknown metric `eror_rate`",
                "did you mean `error_rate`?",
            ),
            (
                "p99.5 +10%",
                "unknown metric `p99.5`",
                "did you mean `p(99.5)`?",
            ),
            (
                "p99 -10%",
                "a lower `p99` is better",
                "did you mean `p99 +10%`?",
            ),
            (
                "rps +10%",
                "a higher `rps` is better",
                "did you mean `rps -10%`?",
            ),
            (
                "p99 < 10ms",
                "it is a threshold, not a tolerance",
                "thresholds go in",
            ),
            (
                "error_rate +0.1",
                "`0.1` is not in percentage points",
                "+0.1pp",
            ),
            ("p99 +", "it has no amount", "like `p99 +10%`"),
            (
                "requests +5%",
                "`requests` is not compared",
                "compare `rps`",
            ),
        ] {
            let bad = tolerance(text).expect_err(text);
            assert!(bad.why.contains(why), "{text}: {bad:?}");
            assert!(bad.help.contains(help), "{text}: {bad:?}");
        }
    }

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(number("10_000"), Some(10_000.0));
        assert_eq!(number(".5"), Some(0.5));
        for text in [
            "", "_", ".", "1.2.3", "+1", "-1", "1e3", "inf", "NaN", "1 000",
        ] {
            assert_eq!(number(text), None, "{text}");
        }
    }
}

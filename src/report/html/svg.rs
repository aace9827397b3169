//! Inline SVG charts for report.html: static markup, no script, no outside resource, so
//! they pass the page's Content-Security-Policy and render in any browser or CI viewer.
//!
//! - [`latency_by_percentile`]: HdrHistogram's percentile plot: latency (ms) against the
//!   percentile on a log scale of 1/(1−p), so 90%, 99%, 99.9%, ... are evenly spaced; the
//!   same points as the `.hgrm` file (see [`hdr::percentile_steps`]).
//! - [`throughput_and_p99`]: requests/s and failed/s over time, with each interval's p99
//!   latency in a second panel below on the same time axis.
//!
//! Every coordinate goes through one formatter (`num`), so odd input (empty histograms,
//! zero-length intervals, one interval) draws an empty or degenerate chart, never `NaN` in
//! the markup.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::escape::Esc;
use crate::metrics::units;
use crate::report::hdr;
use crate::results::IntervalFigures;

/// The drawing's size in SVG units; CSS scales it down to the page's width.
const WIDTH: f64 = 720.0;
const LEFT: f64 = 64.0;
/// Room for the last x label ("99.9999%") to sit centred on the right edge.
const RIGHT: f64 = 36.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;

const BLUE: &str = "#0969da";
const RED: &str = "#cf222e";
const PURPLE: &str = "#8250df";
const GRID: &str = "#d8dee4";
const AXIS: &str = "#57606a";
const TEXT: &str = "#1f2328";

/// Named percentiles marked on the percentile chart, with their labels.
const MARKED: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// `v` with one decimal for SVG coordinates; non-finite values become 0.
fn num(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    // Avoid "-0.0".
    let text = format!("{v:.1}");
    if text == "-0.0" {
        "0.0".to_owned()
    } else {
        text
    }
}

/// Gridline values from 0 to a "nice" top (1, 2 or 5 × 10^k steps) at or above `max`, about
/// `target` of them; the top is 1 when there is nothing to show.
fn nice_ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let count = (max / step).ceil().max(1.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// A tick's label with as many decimals as its step needs (at most 3).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step < 1.0 {
        ((-step.log10()).ceil() as usize).min(3)
    } else {
        0
    };
    format!("{value:.decimals$}")
}

/// One plot area: data ranges mapped onto a rectangle of the drawing.
struct Panel {
    top: f64,
    height: f64,
    x_max: f64,
    y_max: f64,
}

impl Panel {
    fn x(&self, v: f64) -> f64 {
        LEFT + PLOT_WIDTH * (v / self.x_max).clamp(0.0, 1.0)
    }

    fn y(&self, v: f64) -> f64 {
        self.top + self.height * (1.0 - (v / self.y_max).clamp(0.0, 1.0))
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Horizontal gridlines with labels at `ticks`, the frame, and the y axis title.
    fn y_axis(&self, svg: &mut String, ticks: &[f64], title: &str) {
        let step = if ticks.len() > 1 {
            ticks[1] - ticks[0]
        } else {
            1.0
        };
        for &tick in ticks {
            let y = num(self.y(tick));
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{GRID}\"/>\
                 <text x=\"{}\" y=\"{y}\" dy=\"0.32em\" text-anchor=\"end\">{}</text>",
                num(LEFT),
                num(LEFT + PLOT_WIDTH),
                num(LEFT - 6.0),
                Esc(&tick_label(tick, step)),
            );
        }
        let middle = num(self.top + self.height / 2.0);
        let _ = writeln!(
            svg,
            "<text x=\"14\" y=\"{middle}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 14 {middle})\">{}</text>",
            Esc(title)
        );
    }

    /// The plot's frame, drawn last so it sits above the gridlines.
    fn frame(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{AXIS}\"/>",
            num(LEFT),
            num(self.top),
            num(PLOT_WIDTH),
            num(self.height)
        );
    }

    /// A vertical gridline at data `x` with `label` under the panel.
    fn x_tick(&self, svg: &mut String, x: f64, label: &str) {
        let px = num(self.x(x));
        let _ = writeln!(
            svg,
            "<line x1=\"{px}\" y1=\"{}\" x2=\"{px}\" y2=\"{}\" stroke=\"{GRID}\"/>\
             <text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            num(self.top),
            num(self.bottom()),
            num(self.bottom() + 15.0),
            Esc(label)
        );
    }

    /// A line through `points` (data coordinates), with a dot on each point when `dots` or
    /// when the line has a single point (which a polyline would not show).
    fn series(&self, svg: &mut String, points: &[(f64, f64)], color: &str, dots: bool) {
        if points.len() > 1 {
            let coords: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{},{}", num(self.x(x)), num(self.y(y))))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
                 stroke-linejoin=\"round\"/>",
                coords.join(" ")
            );
        }
        if dots || points.len() == 1 {
            for &(x, y) in points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{color}\"/>",
                    num(self.x(x)),
                    num(self.y(y))
                );
            }
        }
    }
}

/// The opening tag of a chart `height` units tall, labelled `title` for screen readers.
fn svg_start(svg: &mut String, height: f64, title: &str) {
    let _ = writeln!(
        svg,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" \
         width=\"{}\" height=\"{}\" role=\"img\" font-size=\"12\" \
         font-family=\"system-ui, sans-serif\" fill=\"{TEXT}\">\n<title>{}</title>",
        num(WIDTH),
        num(height),
        num(WIDTH),
        num(height),
        Esc(title)
    );
}

/// A note in the middle of an empty panel.
fn empty_note(svg: &mut String, panel: &Panel, note: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{AXIS}\">{}</text>",
        num(LEFT + PLOT_WIDTH / 2.0),
        num(panel.top + panel.height / 2.0),
        Esc(note)
    );
}

/// A legend entry: a short line in `color` and `label`, starting at `x`.
fn legend(svg: &mut String, x: f64, y: f64, color: &str, label: &str) {
    let _ = writeln!(
        svg,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"/>\
         <text x=\"{}\" y=\"{}\" dy=\"0.32em\">{}</text>",
        num(x),
        num(y),
        num(x + 18.0),
        num(y),
        num(x + 22.0),
        num(y),
        Esc(label)
    );
}

/// The percentile label of decade `d` of 1/(1−p): 0%, 90%, 99%, 99.9%, ...
fn decade_label(d: u32) -> String {
    match d {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        _ => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
}

/// Where quantile `q` sits on the log axis: log10(1/(1−q)), capped at `decades` (q = 1,
/// the max, sits at the right edge).
fn log_x(q: f64, decades: f64) -> f64 {
    if q >= 1.0 {
        return decades;
    }
    (1.0 / (1.0 - q.max(0.0))).log10().min(decades)
}

/// Latency by percentile, HdrHistogram's plot, from `histogram` (microseconds).
///
/// The x axis spans 4 decades (to 99.99%), or up to 6 when there are enough samples for
/// the extra decades to hold distinct values.
pub fn latency_by_percentile(histogram: &Histogram<u64>) -> String {
    const HEIGHT: f64 = 300.0;
    let panel_top = 16.0;
    let mut svg = String::with_capacity(8 * 1024);
    svg_start(&mut svg, HEIGHT, "Latency by percentile");
    let count = histogram.len();
    let decades = ((count.max(1) as f64).log10().ceil() as u32).clamp(4, 6);
    let max_ms = units::ms(histogram.max());
    let ticks = nice_ticks(max_ms, 5);
    let panel = Panel {
        top: panel_top,
        height: HEIGHT - panel_top - 44.0,
        x_max: f64::from(decades),
        y_max: ticks.last().copied().unwrap_or(1.0),
    };
    panel.y_axis(&mut svg, &ticks, "latency (ms)");
    for d in 0..=decades {
        panel.x_tick(&mut svg, f64::from(d), &decade_label(d));
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        num(LEFT + PLOT_WIDTH / 2.0),
        num(HEIGHT - 6.0)
    );
    if count == 0 {
        empty_note(&mut svg, &panel, "no requests measured");
    } else {
        let x_max = f64::from(decades);
        let points: Vec<(f64, f64)> =
            hdr::percentile_steps(histogram, hdr::TICKS_PER_HALF_DISTANCE)
                .iter()
                .map(|step| (log_x(step.percentile / 100.0, x_max), units::ms(step.value)))
                .collect();
        panel.series(&mut svg, &points, BLUE, false);
        let marks = MARKED
            .iter()
            .map(|&(q, label)| (q, label, histogram.value_at_quantile(q)))
            .chain([(1.0, "max", histogram.max())]);
        for (q, label, value) in marks {
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"#fff\" stroke=\"{BLUE}\" \
                 stroke-width=\"2\"><title>{}</title></circle>",
                num(panel.x(log_x(q, x_max))),
                num(panel.y(units::ms(value))),
                Esc(&format!("{label} {} ms", units::ms_fixed(value, 3)))
            );
        }
    }
    panel.frame(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

/// Two latency distributions by percentile on one chart (`compare`): `base` in
/// grey, `new` in blue, on the axes of `latency_by_percentile`, with a legend.
pub fn percentiles_overlaid(base: &Histogram<u64>, new: &Histogram<u64>) -> String {
    const HEIGHT: f64 = 320.0;
    let panel_top = 36.0;
    let mut svg = String::with_capacity(16 * 1024);
    svg_start(&mut svg, HEIGHT, "Latency by percentile: base and new");
    let count = base.len().max(new.len());
    let decades = ((count.max(1) as f64).log10().ceil() as u32).clamp(4, 6);
    let max_ms = units::ms(base.max().max(new.max()));
    let ticks = nice_ticks(max_ms, 5);
    let panel = Panel {
        top: panel_top,
        height: HEIGHT - panel_top - 44.0,
        x_max: f64::from(decades),
        y_max: ticks.last().copied().unwrap_or(1.0),
    };
    panel.y_axis(&mut svg, &ticks, "latency (ms)");
    for d in 0..=decades {
        panel.x_tick(&mut svg, f64::from(d), &decade_label(d));
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        num(LEFT + PLOT_WIDTH / 2.0),
        num(HEIGHT - 6.0)
    );
    legend(&mut svg, LEFT + 8.0, 14.0, AXIS, "base");
    legend(&mut svg, LEFT + 88.0, 14.0, BLUE, "new");
    if count == 0 {
        empty_note(&mut svg, &panel, "no requests measured");
    }
    let x_max = f64::from(decades);
    for (histogram, color) in [(base, AXIS), (new, BLUE)] {
        if histogram.is_empty() {
            continue;
        }
        let points: Vec<(f64, f64)> =
            hdr::percentile_steps(histogram, hdr::TICKS_PER_HALF_DISTANCE)
                .iter()
                .map(|step| (log_x(step.percentile / 100.0, x_max), units::ms(step.value)))
                .collect();
        panel.series(&mut svg, &points, color, false);
        for &(q, label) in &MARKED {
            let value = histogram.value_at_quantile(q);
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"#fff\" stroke=\"{color}\" \
                 stroke-width=\"2\"><title>{}</title></circle>",
                num(panel.x(log_x(q, x_max))),
                num(panel.y(units::ms(value))),
                Esc(&format!("{label} {} ms", units::ms_fixed(value, 3)))
            );
        }
    }
    panel.frame(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

/// Requests/s and failed/s per interval above each interval's p99 latency, on one time axis
/// (seconds from the load's start). Intervals without answers have no latency, so the p99
/// line has a gap there rather than a zero.
///
/// The open model's target rate is not drawn: it counts iterations, and an iteration makes
/// as many requests as its flow has steps (fewer when one fails), so it shares no axis with
/// requests/s. The page shows it next to the achieved rate instead.
pub fn throughput_and_p99(intervals: &[IntervalFigures]) -> String {
    const HEIGHT: f64 = 400.0;
    let mut svg = String::with_capacity(8 * 1024);
    svg_start(&mut svg, HEIGHT, "Throughput and p99 latency over time");
    let per_second = |n: u64, interval: &IntervalFigures| {
        if interval.duration_s > 0.0 {
            n as f64 / interval.duration_s
        } else {
            n as f64
        }
    };
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let end = intervals
        .iter()
        .map(|i| finite(i.start_s) + finite(i.duration_s).max(0.0))
        .fold(0.0, f64::max);
    let x_max = if end > 0.0 { end } else { 1.0 };
    let middle = |i: &IntervalFigures| finite(i.start_s) + finite(i.duration_s).max(0.0) / 2.0;
    // A sliver of an interval (the few ms after the last full second) would chart as a
    // plunge or a spike in requests/s whatever the load did: draw only intervals at least
    // 5% as long as the longest. The time axis still spans them all.
    let longest = intervals
        .iter()
        .map(|i| finite(i.duration_s))
        .fold(0.0, f64::max);
    let shown: Vec<&IntervalFigures> = intervals
        .iter()
        .filter(|i| finite(i.duration_s) >= longest * 0.05)
        .collect();

    let rate_max = shown
        .iter()
        .map(|i| per_second(i.requests, i))
        .fold(0.0, f64::max);
    let rate_ticks = nice_ticks(rate_max * 1.05, 4);
    let top = Panel {
        top: 26.0,
        height: 150.0,
        x_max,
        y_max: rate_ticks.last().copied().unwrap_or(1.0),
    };
    let p99_max = shown
        .iter()
        .filter(|i| i.requests > 0)
        .map(|i| units::ms(i.latency_us.p99))
        .fold(0.0, f64::max);
    let p99_ticks = nice_ticks(p99_max * 1.05, 4);
    let bottom = Panel {
        top: 216.0,
        height: 140.0,
        x_max,
        y_max: p99_ticks.last().copied().unwrap_or(1.0),
    };

    top.y_axis(&mut svg, &rate_ticks, "requests/s");
    bottom.y_axis(&mut svg, &p99_ticks, "p99 (ms)");
    let time_ticks = nice_ticks(x_max, 8);
    let step = time_ticks.get(1).copied().unwrap_or(1.0);
    for &t in time_ticks.iter().filter(|&&t| t <= x_max * 1.000_001) {
        top.x_tick(&mut svg, t, "");
        bottom.x_tick(&mut svg, t, &tick_label(t, step));
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time (s)</text>",
        num(LEFT + PLOT_WIDTH / 2.0),
        num(HEIGHT - 6.0)
    );
    legend(&mut svg, LEFT, 12.0, BLUE, "requests/s");
    legend(&mut svg, LEFT + 110.0, 12.0, RED, "failed/s");
    legend(&mut svg, LEFT, 202.0, PURPLE, "p99 latency");

    if intervals.is_empty() {
        empty_note(&mut svg, &top, "no per-interval figures");
        empty_note(&mut svg, &bottom, "no per-interval figures");
    } else {
        let dots = shown.len() <= 60;
        let rates: Vec<(f64, f64)> = shown
            .iter()
            .map(|i| (middle(i), per_second(i.requests, i)))
            .collect();
        let failures: Vec<(f64, f64)> = shown
            .iter()
            .map(|i| (middle(i), per_second(i.failed, i)))
            .collect();
        top.series(&mut svg, &failures, RED, dots);
        top.series(&mut svg, &rates, BLUE, dots);
        // One line per run of intervals that had answers.
        for run in shown.split(|i| i.requests == 0) {
            let p99: Vec<(f64, f64)> = run
                .iter()
                .map(|i| (middle(i), units::ms(i.latency_us.p99)))
                .collect();
            bottom.series(&mut svg, &p99, PURPLE, dots);
        }
    }
    top.frame(&mut svg);
    bottom.frame(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::LatencySummary;

    fn interval(start_s: f64, requests: u64, p99: u64) -> IntervalFigures {
        IntervalFigures {
            start_s,
            duration_s: 1.0,
            requests,
            failed: requests / 10,
            latency_us: LatencySummary {
                p99,
                ..Default::default()
            },
            histogram: String::new(),
        }
    }

    fn assert_clean(svg: &str) {
        for bad in ["NaN", "inf", "-0.0"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert!(
            svg.starts_with("<svg") && svg.ends_with("</svg>\n"),
            "{svg}"
        );
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn nice_ticks_cover_the_max() {
        let unit = nice_ticks(0.0, 5);
        assert_eq!(unit.len(), 6);
        assert!((unit[5] - 1.0).abs() < 1e-9, "{unit:?}");
        assert_eq!(nice_ticks(f64::NAN, 5).last(), Some(&1.0));
        assert_eq!(nice_ticks(41.0, 5), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(nice_ticks(1000.0, 4), [0.0, 500.0, 1000.0]);
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(2.5, 0.05), "2.50");
        assert_eq!(tick_label(500.0, 500.0), "500");
    }

    #[test]
    fn overlaid_percentiles_of_real_and_empty_histograms() {
        let mut base = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let mut new = base.clone();
        for v in 1..=5_000u64 {
            base.record(v * 3).unwrap();
            new.record(v * 4).unwrap();
        }
        let svg = percentiles_overlaid(&base, &new);
        assert_clean(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2, "one line per run");
        let empty = Histogram::<u64>::new(3).unwrap();
        let svg = percentiles_overlaid(&empty, &empty);
        assert_clean(&svg);
        assert!(svg.contains("no requests measured"));
    }

    #[test]
    fn decade_labels() {
        let labels: Vec<String> = (0..=5).map(decade_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(log_x(0.0, 4.0), 0.0);
        assert!((log_x(0.99, 4.0) - 2.0).abs() < 1e-9);
        assert_eq!(log_x(1.0, 4.0), 4.0);
        assert_eq!(log_x(0.999_999_9, 4.0), 4.0);
    }

    #[test]
    fn percentile_chart_of_real_and_empty_histograms() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let empty = latency_by_percentile(&h);
        assert_clean(&empty);
        assert!(empty.contains("no requests measured"));
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let svg = latency_by_percentile(&h);
        assert_clean(&svg);
        assert!(svg.contains("<polyline"));
        for label in [
            ">0%<",
            ">90%<",
            ">99%<",
            ">99.9%<",
            ">99.99%<",
            "latency (ms)",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains("<title>p99 9.903 ms</title>"), "{svg}");
        assert!(svg.contains("<title>max 10.007 ms</title>"), "{svg}");
    }

    #[test]
    fn timeline_with_zero_one_and_many_intervals() {
        let none = throughput_and_p99(&[]);
        assert_clean(&none);
        assert!(none.contains("no per-interval figures"));

        let one = throughput_and_p99(&[interval(0.0, 50, 1_500)]);
        assert_clean(&one);
        assert!(!one.contains("<polyline"));
        assert_eq!(one.matches("<circle").count(), 3, "{one}");

        let mut zero_length = interval(0.0, 5, 0);
        zero_length.duration_s = 0.0;
        let zero_length = throughput_and_p99(&[zero_length]);
        assert_clean(&zero_length);

        let mut many: Vec<_> = (0..120)
            .map(|s| interval(s as f64, 1000, 2_000 + s))
            .collect();
        many[60].requests = 0;
        let svg = throughput_and_p99(&many);
        assert_clean(&svg);
        // requests/s, failed/s, and the p99 line broken in two at the empty interval.
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(!svg.contains("<circle"), "no dots on long runs");
        assert!(svg.contains(">120<"), "time axis reaches the end");

        // A 1 ms tail with one request would be 1000 requests/s; it is not drawn.
        let mut tail = interval(3.0, 1, 900);
        tail.duration_s = 0.001;
        let svg = throughput_and_p99(&[
            interval(0.0, 100, 900),
            interval(1.0, 100, 900),
            interval(2.0, 100, 900),
            tail,
        ]);
        assert_clean(&svg);
        assert!(!svg.contains(">1000<") && svg.contains(">100<"), "{svg}");
        assert_eq!(
            svg.matches("<circle").count(),
            9,
            "three intervals × three series"
        );
    }
}

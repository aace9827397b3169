//! HdrHistogram's own file formats for load scenarios, so the usual tools (HdrHistogram's
//! plotter, `HistogramLogAnalyzer`, `HistogramLogProcessor`, wrk2 comparisons) read a run
//! without going through report.json:
//!
//! - `NAME.hgrm`: the whole-run latency distribution as Java's
//!   `Histogram.outputPercentileDistribution(out, 5, 1000.0)` prints it (values in ms).
//! - `NAME.hlog`: an interval log, one histogram per reported interval, as Java's
//!   `HistogramLogWriter` writes it (V2 deflate, base64; timestamps relative to the load's
//!   start, with `#[StartTime]`/`#[BaseTime]` headers).
//!
//! Both are derived from the base64 histograms in [`LoadFigures`], so they can be rebuilt
//! from a report.json alone.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::metrics::codec::{self, CodecError};
use crate::metrics::units::MICROS_PER_MS;
use crate::redact::Redactor;
use crate::results::{LoadFigures, RunReport};

pub const HGRM_EXTENSION: &str = "hgrm";
pub const HLOG_EXTENSION: &str = "hlog";

/// Percentile rows per halving of the distance to 100%, as wrk2 and jHiccup print them.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The file stem of each scenario's `.hgrm`/`.hlog` (`None` for scenarios without load
/// figures), in scenario order: the name made filesystem-safe, unique within the run
/// (`name`, `name-2`, ...). Call it on the redacted report, so no secret reaches a file name.
pub fn file_stems(report: &RunReport) -> Vec<Option<String>> {
    let mut used = std::collections::HashSet::new();
    report
        .scenarios
        .iter()
        .map(|scenario| {
            scenario.load.as_ref()?;
            let base = safe_stem(&scenario.name);
            let mut stem = base.clone();
            let mut n = 1;
            // Case-insensitive, for filesystems that are.
            while !used.insert(stem.to_ascii_lowercase()) {
                n += 1;
                stem = format!("{base}-{n}");
            }
            Some(stem)
        })
        .collect()
}

/// `name` with every character outside `[A-Za-z0-9._-]` replaced by `_`, never empty, never
/// starting with a dot (no hidden files, no `.`/`..`), and not longer than 100 bytes.
fn safe_stem(name: &str) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    if stem.is_empty() {
        stem.push_str("scenario");
    }
    stem
}

/// One `.hgrm` or `.hlog` file: its name in the report directory, and what it holds.
pub struct HdrFile {
    pub name: String,
    pub contents: Vec<u8>,
}

/// A scenario whose histogram does not decode.
#[derive(Debug, thiserror::Error)]
#[error("scenario {scenario}: bad latency histogram")]
pub struct HistogramError {
    pub scenario: String,
    #[source]
    pub source: CodecError,
}

/// The `NAME.hgrm` and `NAME.hlog` files of every load scenario of `report` (already
/// redacted), in scenario order. A histogram that does not decode costs only the files
/// from there on: the caller writes what came before.
///
/// The data lines are numbers and histogram encodings and are written as computed (a
/// redaction pass could only corrupt them); the comment lines, which carry the scenario's
/// name and executor, go through `redactor`.
pub fn files(report: &RunReport, redactor: &Redactor) -> Vec<Result<HdrFile, HistogramError>> {
    let run_start = humantime::parse_rfc3339(&report.started_at).ok();
    let mut files = Vec::new();
    for (scenario, stem) in report.scenarios.iter().zip(file_stems(report)) {
        let (Some(load), Some(stem)) = (&scenario.load, stem) else {
            continue;
        };
        let histogram_error = |source| HistogramError {
            scenario: scenario.name.clone(),
            source,
        };
        files.push(
            codec::decode(&load.histogram)
                .map_err(histogram_error)
                .map(|whole| HdrFile {
                    name: format!("{stem}.{HGRM_EXTENSION}"),
                    contents: percentile_distribution(
                        &whole,
                        TICKS_PER_HALF_DISTANCE,
                        MICROS_PER_MS,
                    )
                    .into_bytes(),
                }),
        );
        let comment = redactor
            .redact(&format!(
                "[Logged with keyclaim-harness {}: scenario {}, {}]",
                env!("CARGO_PKG_VERSION"),
                scenario.name,
                load.executor
            ))
            .replace(['\n', '\r'], " ");
        // Each scenario's intervals count from its own load start (reports from before
        // that was recorded fall back to the run's start).
        let start = (load.start_unix_ms > 0)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(load.start_unix_ms))
            .or(run_start);
        files.push(
            interval_log(load, start, &comment)
                .map_err(histogram_error)
                .map(|log| HdrFile {
                    name: format!("{stem}.{HLOG_EXTENSION}"),
                    contents: log,
                }),
        );
    }
    files
}

/// One row of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileStep {
    /// The highest value equivalent to the bucket the percentile falls in.
    pub value: u64,
    /// The percentile iterated to, in percent (0 to 100; the last step is 100).
    pub percentile: f64,
    /// Samples at or below `value`.
    pub total_count: u64,
}

/// The rows of `histogram`'s percentile distribution, computed as Java's
/// `PercentileIterator` does: `ticks_per_half_distance` steps per halving of the distance
/// to 100%, levels accumulated in percent, then one last step at 100%. An empty histogram
/// has none.
///
/// The crate's `iter_quantiles` walks the same ticks but accumulates fractions, so a level
/// such as 0.6 becomes 0.6000000000000001 and is reached one bucket late where Java (in
/// percent: exactly 60.0) reaches it on time; its `.hgrm` would then differ from wrk2's and
/// Java's by a row. The unit tests pin this against Java's output.
pub fn percentile_steps(
    histogram: &Histogram<u64>,
    ticks_per_half_distance: u32,
) -> Vec<PercentileStep> {
    let total = histogram.len();
    let mut steps = Vec::new();
    if total == 0 {
        return steps;
    }
    let ticks = f64::from(ticks_per_half_distance.max(1));
    let mut level = 0.0_f64;
    let mut running = 0u64;
    for bucket in histogram.iter_recorded() {
        running += bucket.count_at_value();
        let value = bucket.value_iterated_to();
        while 100.0 * running as f64 / total as f64 >= level {
            steps.push(PercentileStep {
                value,
                percentile: level,
                total_count: running,
            });
            if running >= total {
                steps.push(PercentileStep {
                    value,
                    percentile: 100.0,
                    total_count: running,
                });
                return steps;
            }
            // Java: ticks × 2^(⌊log2(100 / (100 − level))⌋ + 1) steps span 0..100 at this level.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()).floor();
            let next = level + 100.0 / (ticks * 2f64.powf(halvings + 1.0));
            // Past f64's resolution (around 10^15 samples) only 100% is left to report.
            level = if next > level && next.is_finite() {
                next
            } else {
                100.0
            };
        }
    }
    steps
}

/// `histogram`'s percentile distribution exactly as Java's
/// `outputPercentileDistribution(out, ticks_per_half_distance, unit_ratio)` prints it (the
/// plain-text form, not CSV): values divided by `unit_ratio`, then the mean, standard
/// deviation, max, count and bucket layout. An empty histogram gives the header and a
/// footer of zeros, as in Java.
pub fn percentile_distribution(
    histogram: &Histogram<u64>,
    ticks_per_half_distance: u32,
    unit_ratio: f64,
) -> String {
    let digits = usize::from(histogram.sigfig());
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for step in percentile_steps(histogram, ticks_per_half_distance) {
        let value = java_fixed(step.value as f64 / unit_ratio, digits);
        let quantile = step.percentile / 100.0;
        let _ = write!(
            out,
            "{value:>12} {:>2} {:10}",
            java_fixed(quantile, 12),
            step.total_count
        );
        if step.percentile != 100.0 {
            let _ = write!(out, " {:>14}", java_fixed(1.0 / (1.0 - quantile), 2));
        }
        out.push('\n');
    }
    let (mean, stdev) = mean_and_stdev(histogram);
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(mean / unit_ratio, digits),
        java_fixed(stdev / unit_ratio, digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:12}]",
        java_fixed(histogram.max() as f64 / unit_ratio, digits),
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    out
}

/// `v` with `decimals` digits after the point, rounded as Java's `%.Nf` rounds: the
/// shortest decimal that reads back as `v` (what both `Double.toString` and Rust's `{}`
/// print), rounded half up. Rust's `{:.N}` rounds the exact binary value instead, so ties
/// such as 0.9997802734375 at 12 places (a percentile level the iteration reaches) or
/// 1.0005 at 3 would end in a different last digit than Java's and wrk2's files.
fn java_fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    // "d.ddde±x": every significant digit of the shortest representation.
    let scientific = format!("{:e}", v.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp always writes an exponent");
    let exponent: i64 = exponent
        .parse()
        .expect("LowerExp writes an integer exponent");
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // Digits before the decimal point, then after it.
    let (mut whole, mut fraction): (Vec<u8>, Vec<u8>) = if exponent >= 0 {
        let point = (exponent + 1) as usize;
        let mut whole: Vec<u8> = digits.iter().copied().take(point).collect();
        whole.resize(point, 0);
        (whole, digits.iter().copied().skip(point).collect())
    } else {
        let zeros = (-exponent - 1) as usize;
        let mut fraction = vec![0; zeros];
        fraction.extend(&digits);
        (vec![0], fraction)
    };
    if fraction.len() > decimals {
        let round_up = fraction[decimals] >= 5;
        fraction.truncate(decimals);
        if round_up {
            // Carry through the fraction, then the whole part, maybe into a new digit.
            let mut carry = true;
            for digit in fraction.iter_mut().rev().chain(whole.iter_mut().rev()) {
                if *digit == 9 {
                    *digit = 0;
                } else {
                    *digit += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                whole.insert(0, 1);
            }
        }
    }
    fraction.resize(decimals, 0);
    let mut text = String::with_capacity(whole.len() + decimals + 2);
    if v.is_sign_negative() && (whole.iter().chain(&fraction).any(|&d| d != 0)) {
        text.push('-');
    }
    text.extend(whole.iter().map(|&d| char::from(b'0' + d)));
    if decimals > 0 {
        text.push('.');
        text.extend(fraction.iter().map(|&d| char::from(b'0' + d)));
    }
    text
}

/// Mean and standard deviation summed the way Java's `getMean`/`getStdDeviation` do (total
/// first, one division), so the footer's last digit matches Java's; the crate's `mean()`
/// divides per bucket and can differ in the last place.
fn mean_and_stdev(histogram: &Histogram<u64>) -> (f64, f64) {
    if histogram.is_empty() {
        return (0.0, 0.0);
    }
    let count = histogram.len() as f64;
    let total: f64 = histogram
        .iter_recorded()
        .map(|v| {
            histogram.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64
        })
        .sum();
    let mean = total / count;
    let deviations: f64 = histogram
        .iter_recorded()
        .map(|v| {
            let deviation = histogram.median_equivalent(v.value_iterated_to()) as f64 - mean;
            deviation * deviation * v.count_since_last_iteration() as f64
        })
        .sum();
    (mean, (deviations / count).sqrt())
}

/// Sub-buckets per bucket: the power of two that gives unit resolution up to
/// 2 × 10^sigfig (the crate keeps it private; Java prints it).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2.0 * 10f64.powi(i32::from(sigfig));
    1u64 << (largest.log2().ceil() as u32)
}

/// An HdrHistogram interval log of `load.intervals`, as Java's `HistogramLogWriter` writes
/// one: `comment`, the format version, `#[StartTime]` and `#[BaseTime]` (both `start`, when
/// known), the legend, then one line per interval with its start relative to the load's
/// start, its length, its max in ms, and its V2 deflate histogram.
pub fn interval_log(
    load: &LoadFigures,
    start: Option<SystemTime>,
    comment: &str,
) -> Result<Vec<u8>, CodecError> {
    let mut log = Vec::with_capacity(256 + load.intervals.len() * 256);
    let io = |err: std::io::Error| CodecError::Encode(err.to_string());
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut header = IntervalLogWriterBuilder::new();
        header.add_comment(comment);
        header.add_comment("[Histogram log format version 1.3]");
        header.add_comment(
            "[Values are microseconds; Interval_Max is milliseconds; timestamps are seconds \
             from the start of the load]",
        );
        if let Some(start) = start {
            header.with_start_time(start).with_base_time(start);
        }
        header
            .begin_log_with(&mut log, &mut serializer)
            .map_err(io)?;
    }
    // The crate's builder has no legend line; Java's writer puts it after the headers, and
    // readers (Java's and the crate's) skip it.
    log.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    let mut writer = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(MICROS_PER_MS)
        .begin_log_with(&mut log, &mut serializer)
        .map_err(io)?;
    for interval in &load.intervals {
        let histogram = codec::decode(&interval.histogram)?;
        writer
            .write_histogram(
                &histogram,
                seconds(interval.start_s),
                seconds(interval.duration_s),
                None,
            )
            .map_err(|err| CodecError::Encode(err.to_string()))?;
    }
    Ok(log)
}

/// A report's seconds as a duration; negative or non-finite values (never written by the
/// engine) become zero rather than a panic.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    use super::*;
    use crate::results::{IntervalFigures, LatencySummary};

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
    }

    /// Java's output for 1..=10000 µs (see the test below).
    const UNIFORM_1_TO_10000_JAVA: &str = "       Value     Percentile TotalCount 1/(1-Percentile)

       0.001 0.000000000000          1           1.00
       1.000 0.100000000000       1000           1.11
       2.000 0.200000000000       2000           1.25
       3.001 0.300000000000       3001           1.43
       4.001 0.400000000000       4001           1.67
       5.003 0.500000000000       5003           2.00
       5.503 0.550000000000       5503           2.22
       6.003 0.600000000000       6003           2.50
       6.503 0.650000000000       6503           2.86
       7.003 0.700000000000       7003           3.33
       7.503 0.750000000000       7503           4.00
       7.751 0.775000000000       7751           4.44
       8.003 0.800000000000       8003           5.00
       8.255 0.825000000000       8255           5.71
       8.503 0.850000000000       8503           6.67
       8.751 0.875000000000       8751           8.00
       8.879 0.887500000000       8879           8.89
       9.007 0.900000000000       9007          10.00
       9.127 0.912500000000       9127          11.43
       9.255 0.925000000000       9255          13.33
       9.375 0.937500000000       9375          16.00
       9.439 0.943750000000       9439          17.78
       9.503 0.950000000000       9503          20.00
       9.567 0.956250000000       9567          22.86
       9.631 0.962500000000       9631          26.67
       9.695 0.968750000000       9695          32.00
       9.719 0.971875000000       9719          35.56
       9.751 0.975000000000       9751          40.00
       9.783 0.978125000000       9783          45.71
       9.815 0.981250000000       9815          53.33
       9.847 0.984375000000       9847          64.00
       9.863 0.985937500000       9863          71.11
       9.879 0.987500000000       9879          80.00
       9.895 0.989062500000       9895          91.43
       9.911 0.990625000000       9911         106.67
       9.927 0.992187500000       9927         128.00
       9.935 0.992968750000       9935         142.22
       9.943 0.993750000000       9943         160.00
       9.951 0.994531250000       9951         182.86
       9.959 0.995312500000       9959         213.33
       9.967 0.996093750000       9967         256.00
       9.967 0.996484375000       9967         284.44
       9.975 0.996875000000       9975         320.00
       9.975 0.997265625000       9975         365.71
       9.983 0.997656250000       9983         426.67
       9.983 0.998046875000       9983         512.00
       9.983 0.998242187500       9983         568.89
       9.991 0.998437500000       9991         640.00
       9.991 0.998632812500       9991         731.43
       9.991 0.998828125000       9991         853.33
       9.991 0.999023437500       9991        1024.00
       9.999 0.999121093750       9999        1137.78
       9.999 0.999218750000       9999        1280.00
       9.999 0.999316406250       9999        1462.86
       9.999 0.999414062500       9999        1706.67
       9.999 0.999511718750       9999        2048.00
       9.999 0.999560546875       9999        2275.56
       9.999 0.999609375000       9999        2560.00
       9.999 0.999658203125       9999        2925.71
       9.999 0.999707031250       9999        3413.33
       9.999 0.999755859375       9999        4096.00
       9.999 0.999780273438       9999        4551.11
       9.999 0.999804687500       9999        5120.00
       9.999 0.999829101563       9999        5851.43
       9.999 0.999853515625       9999        6826.67
       9.999 0.999877929688       9999        8192.00
       9.999 0.999890136719       9999        9102.22
      10.007 0.999902343750      10000       10240.00
      10.007 1.000000000000      10000
#[Mean    =        5.001, StdDeviation   =        2.887]
#[Max     =       10.007, Total count    =        10000]
#[Buckets =           22, SubBuckets     =         2048]
";

    /// The distribution of 1..=10000 µs, checked line by line against Java HdrHistogram
    /// 2.1.11's `outputPercentileDistribution(System.out, 5, 1000.0)` (Debian's
    /// libhdrhistogram-java) for the same values and bounds.
    #[test]
    fn hgrm_matches_java_for_1_to_10000_us() {
        let mut h = histogram();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let text = percentile_distribution(&h, 5, 1000.0);
        assert_eq!(text, UNIFORM_1_TO_10000_JAVA);
    }

    #[test]
    fn hgrm_small_histogram_exact_lines() {
        let mut h = histogram();
        h.record_n(1_000, 3).unwrap();
        h.record(2_000).unwrap();
        h.record(50_000).unwrap();
        let text = percentile_distribution(&h, 5, 1000.0);
        let expected = "       Value     Percentile TotalCount 1/(1-Percentile)

       1.000 0.000000000000          3           1.00
       1.000 0.100000000000          3           1.11
       1.000 0.200000000000          3           1.25
       1.000 0.300000000000          3           1.43
       1.000 0.400000000000          3           1.67
       1.000 0.500000000000          3           2.00
       1.000 0.550000000000          3           2.22
       1.000 0.600000000000          3           2.50
       2.000 0.650000000000          4           2.86
       2.000 0.700000000000          4           3.33
       2.000 0.750000000000          4           4.00
       2.000 0.775000000000          4           4.44
       2.000 0.800000000000          4           5.00
      50.015 0.825000000000          5           5.71
      50.015 1.000000000000          5
#[Mean    =       11.000, StdDeviation   =       19.504]
#[Max     =       50.015, Total count    =            5]
#[Buckets =           22, SubBuckets     =         2048]
";
        assert_eq!(text, expected);
    }

    #[test]
    fn hgrm_of_empty_histogram_is_header_and_zero_footer() {
        let text = percentile_distribution(&histogram(), 5, 1000.0);
        assert_eq!(
            text,
            "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
             #[Mean    =        0.000, StdDeviation   =        0.000]\n\
             #[Max     =        0.000, Total count    =            0]\n\
             #[Buckets =           22, SubBuckets     =         2048]\n"
        );
    }

    fn interval(start_s: f64, values: &[u64]) -> (IntervalFigures, Histogram<u64>) {
        let mut h = histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        let figures = IntervalFigures {
            start_s,
            duration_s: 1.0,
            requests: values.len() as u64,
            failed: 0,
            latency_us: LatencySummary::default(),
            histogram: codec::encode(&h).unwrap(),
        };
        (figures, h)
    }

    fn load(intervals: Vec<IntervalFigures>) -> LoadFigures {
        LoadFigures {
            model: "open".into(),
            executor: "open 100/s for 3s".into(),
            target_rate: Some(100.0),
            achieved_rate: 99.0,
            duration_s: 3.0,
            iterations: 297,
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
            histogram: codec::encode(&histogram()).unwrap(),
            start_unix_ms: 0,
            thresholds: Vec::new(),
            regression: Vec::new(),
            generator: None,
            protocol: None,
            transport_error_example: None,
            intervals,
        }
    }

    #[test]
    fn hlog_reads_back_the_same_histograms() {
        let (a, ha) = interval(0.0, &[100, 250, 1_000, 12_345]);
        let (b, hb) = interval(1.0, &[]);
        let (c, hc) = interval(2.0, &[7, 3_000_000]);
        let start = humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let log = interval_log(&load(vec![a, b, c]), Some(start), "[Logged by a test]").unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..6],
            &[
                "#[Logged by a test]",
                "#[Histogram log format version 1.3]",
                "#[Values are microseconds; Interval_Max is milliseconds; timestamps are \
                 seconds from the start of the load]",
                "#[StartTime: 1767323045.000 (seconds since epoch)]",
                "#[BaseTime: 1767323045.000 (seconds since epoch)]",
                "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\
                 \"Interval_Compressed_Histogram\"",
            ]
        );
        assert_eq!(lines[6], "#[MaxValueDivisor: 1000.000]");
        // Java writes Interval_Max as max / divisor: the highest equivalent value, in ms.
        assert!(
            lines[7].starts_with("0.000,1.000,12.351,HISTF"),
            "{}",
            lines[7]
        );
        assert!(
            lines[8].starts_with("1.000,1.000,0.000,HISTF"),
            "{}",
            lines[8]
        );
        assert!(
            lines[9].starts_with("2.000,1.000,3000.319,HISTF"),
            "{}",
            lines[9]
        );

        let mut deserializer = Deserializer::new();
        let mut times = Vec::new();
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(&log) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => times.push(("start", t)),
                LogEntry::BaseTime(t) => times.push(("base", t)),
                LogEntry::Interval(i) => {
                    let bytes = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        i.encoded_histogram(),
                    )
                    .unwrap();
                    let h: Histogram<u64> =
                        deserializer.deserialize(&mut bytes.as_slice()).unwrap();
                    intervals.push((i.start_timestamp(), i.duration(), h));
                }
            }
        }
        let epoch = Duration::from_secs(1_767_323_045);
        assert_eq!(times, [("start", epoch), ("base", epoch)]);
        let expected = [
            (Duration::ZERO, ha),
            (Duration::from_secs(1), hb),
            (Duration::from_secs(2), hc),
        ];
        assert_eq!(intervals.len(), expected.len());
        for ((start, length, h), (want_start, want)) in intervals.iter().zip(expected) {
            assert_eq!(*start, want_start);
            assert_eq!(*length, Duration::from_secs(1));
            assert_eq!(*h, want);
        }
    }

    #[test]
    fn hlog_without_start_time_and_without_intervals() {
        let log = interval_log(&load(vec![]), None, "[x]").unwrap();
        let text = String::from_utf8(log).unwrap();
        assert!(
            !text.contains("StartTime:") && !text.contains("BaseTime:"),
            "{text}"
        );
        assert_eq!(IntervalLogIterator::new(text.as_bytes()).count(), 0);
    }

    #[test]
    fn bad_interval_histogram_is_an_error() {
        let (mut a, _) = interval(0.0, &[1]);
        a.histogram = "not a histogram".into();
        assert!(interval_log(&load(vec![a]), None, "[x]").is_err());
    }

    /// Java's `String.format(Locale.US, "%.1f %.12f %.3f %.3f %.2f %2.12f %.3f", 0.15,
    /// 0.9997802734375, 1.0005, 2.0005, 0.125, 1.0, 1e-9)` prints
    /// "0.2 0.999780273438 1.001 2.001 0.13 1.000000000000 0.000".
    #[test]
    fn java_fixed_rounds_like_java() {
        let got = [
            java_fixed(0.15, 1),
            java_fixed(0.9997802734375, 12),
            java_fixed(1.0005, 3),
            java_fixed(2.0005, 3),
            java_fixed(0.125, 2),
            java_fixed(1.0, 12),
            java_fixed(1e-9, 3),
        ];
        assert_eq!(
            got.join(" "),
            "0.2 0.999780273438 1.001 2.001 0.13 1.000000000000 0.000"
        );
        assert_eq!(java_fixed(9.9996, 3), "10.000");
        assert_eq!(java_fixed(999.9999, 2), "1000.00");
        assert_eq!(java_fixed(0.0, 3), "0.000");
        assert_eq!(java_fixed(12345678.0, 0), "12345678");
        assert_eq!(java_fixed(1.5e20, 1), "150000000000000000000.0");
        assert_eq!(java_fixed(-2.5, 0), "-3");
        assert_eq!(java_fixed(-0.0001, 2), "0.00");
    }

    #[test]
    fn stems_are_safe_and_unique() {
        assert_eq!(safe_stem("open-load_1.x"), "open-load_1.x");
        assert_eq!(safe_stem("../etc/passwd"), "_._etc_passwd");
        assert_eq!(safe_stem(""), "scenario");
        assert_eq!(safe_stem("a b/[REDACTED]"), "a_b__REDACTED_");
        assert_eq!(safe_stem(&"x".repeat(300)).len(), 100);
    }
}

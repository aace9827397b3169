//! Confidence intervals for the figures `compare` judges, from what report.json keeps:
//! whole histograms and counts, never samples.
//!
//! - A percentile's interval comes from order statistics: the number of samples at or
//!   below the true q-quantile is Binomial(n, q), so ranks `n·q ± z·√(n·q·(1−q))`
//!   bracket it; the interval is the histogram's values at those ranks. It needs no
//!   assumption about the latency distribution's shape (distribution-free).
//! - A proportion (error rate) gets a Wilson score interval.
//! - A rate (requests per second) treats the count as Poisson: `(k ± z·√k) / t`.
//! - A mean gets `mean ± z·σ/√n`.
//!
//! Each assumes independent samples. Requests of one run are not that: a stall, or a
//! busy machine for a few seconds, moves every request of those seconds at once. So
//! each figure is also measured per second of the run (report.json keeps every
//! second's histogram and counts) and, by batch means, those per-second values give a
//! second interval, `mean ± t·s/√k` over `k` seconds with Student's t; `compare` uses
//! the wider of the two. And a change must still exceed a tolerance before it is a
//! regression (a drift of the whole machine between runs is seen by neither).

use hdrhistogram::Histogram;

/// Two-sided 99%: the standard normal's 0.995 quantile. Several figures are judged at
/// once per scenario and step; 99% keeps false alarms rare across them.
pub const Z: f64 = 2.575_829_303_548_901;

/// The confidence level [`Z`] stands for, for reports.
pub const CONFIDENCE: f64 = 0.99;

/// Seconds of a run needed before their spread is taken as evidence.
pub const MIN_BATCHES: usize = 3;

/// Student's t, two-sided 99%, for `df` degrees of freedom (the normal's beyond 30).
fn t99(df: usize) -> f64 {
    const T: [f64; 30] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
        2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
        2.771, 2.763, 2.756, 2.750,
    ];
    df.checked_sub(1)
        .and_then(|i| T.get(i).copied())
        .unwrap_or(Z)
}

/// Batch means: a figure measured in each of `k` consecutive batches (seconds of a
/// run) as `(mean, half-width)` of the interval `mean ± t·s/√k`; `None` with fewer
/// than [`MIN_BATCHES`].
pub fn batch_means(values: &[f64]) -> Option<(f64, f64)> {
    let k = values.len();
    if k < MIN_BATCHES {
        return None;
    }
    let mean = values.iter().sum::<f64>() / k as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    Some((mean, t99(k - 1) * (variance / k as f64).sqrt()))
}

/// The value at 1-based `rank` in `histogram`'s sorted samples (its bucket's highest
/// equivalent value, as HdrHistogram reports percentiles).
fn value_at_rank(histogram: &Histogram<u64>, rank: u64) -> u64 {
    let mut seen = 0;
    for bucket in histogram.iter_recorded() {
        seen += bucket.count_at_value();
        if seen >= rank {
            return histogram.highest_equivalent(bucket.value_iterated_to());
        }
    }
    histogram.max()
}

/// The `q`-quantile (0 < q < 1) and its interval, in the histogram's unit; `None` when
/// it is empty.
pub fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<(f64, f64, f64)> {
    let n = histogram.len();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let spread = Z * (nf * q * (1.0 - q)).sqrt();
    let low_rank = (nf * q - spread).floor().max(1.0) as u64;
    let high_rank = ((nf * q + spread).ceil() + 1.0).min(nf) as u64;
    let point = histogram.value_at_quantile(q) as f64;
    let low = (value_at_rank(histogram, low_rank) as f64).min(point);
    let high = (value_at_rank(histogram, high_rank) as f64).max(point);
    Some((point, low, high))
}

/// The mean and its interval; `None` when empty.
pub fn mean(histogram: &Histogram<u64>) -> Option<(f64, f64, f64)> {
    let n = histogram.len();
    if n == 0 {
        return None;
    }
    let mean = histogram.mean();
    let half = Z * histogram.stdev() / (n as f64).sqrt();
    Some((mean, (mean - half).max(0.0), mean + half))
}

/// `k` of `n` as a fraction, with its Wilson score interval; `None` when `n` is 0.
pub fn proportion(k: u64, n: u64) -> Option<(f64, f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some((p, (centre - half).max(0.0), (centre + half).min(1.0)))
}

/// `count` events over `seconds` as a rate, with its Poisson interval.
pub fn rate(count: u64, seconds: f64) -> Option<(f64, f64, f64)> {
    if seconds <= 0.0 {
        return None;
    }
    let k = count as f64;
    let half = Z * k.sqrt();
    Some((
        k / seconds,
        (k - half).max(0.0) / seconds,
        (k + half) / seconds,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn a_quantile_interval_brackets_the_point_and_narrows_with_samples() {
        let small = histogram((1..=100).map(|v| v * 10));
        let large = histogram((1..=100_000).map(|v| v / 100 + 1));
        let (point, low, high) = quantile(&small, 0.5).unwrap();
        assert!(low < point && point < high, "{low} {point} {high}");
        // Ranks 50 ± 2.58·5: about 37..64 of 100.
        assert!((300.0..=400.0).contains(&low) && (600.0..=700.0).contains(&high));
        let (point, low, high) = quantile(&large, 0.5).unwrap();
        assert!((high - low) / point < 0.03, "{low} {point} {high}");
        assert_eq!(quantile(&histogram([]), 0.5), None);
    }

    #[test]
    fn a_tail_quantile_of_few_samples_reaches_the_max() {
        let h = histogram(1..=200);
        let (_, _, high) = quantile(&h, 0.999).unwrap();
        assert_eq!(high, 200.0);
    }

    #[test]
    fn proportions_and_rates() {
        let (p, low, high) = proportion(0, 1000).unwrap();
        assert_eq!(p, 0.0);
        assert!(low < 1e-9, "{low}");
        assert!(high > 0.0 && high < 0.01, "{high}");
        let (p, low, high) = proportion(50, 1000).unwrap();
        assert!(
            low < p && p < high && low > 0.03 && high < 0.075,
            "{low} {high}"
        );
        let (r, low, high) = rate(10_000, 10.0).unwrap();
        assert_eq!(r, 1000.0);
        assert!(low > 970.0 && high < 1030.0);
        assert_eq!(proportion(1, 0), None);
    }

    #[test]
    fn batch_means_widen_with_spread_and_need_a_few_batches() {
        assert_eq!(batch_means(&[1.0, 2.0]), None);
        let (mean, half) = batch_means(&[500.0, 500.0, 500.0, 500.0]).unwrap();
        assert_eq!((mean, half), (500.0, 0.0));
        // s = 100 over k = 4: t(3) = 5.841, so 5.841 * 100 / 2.
        let (mean, half) = batch_means(&[400.0, 500.0, 600.0, 500.0]).unwrap();
        assert_eq!(mean, 500.0);
        let s = (20_000.0f64 / 3.0).sqrt();
        assert!((half - 5.841 * s / 2.0).abs() < 1e-9, "{half}");
    }
}

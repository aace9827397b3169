//! Latency as people read it. Histograms hold whole microseconds; every place that shows
//! a latency (console, progress, threshold messages, HTML, charts, `.hgrm`) converts and
//! formats it here, so they cannot disagree about units.

/// Histograms hold microseconds; tables, charts and `.hgrm` files show milliseconds, as
/// wrk2's do.
pub const MICROS_PER_MS: f64 = 1_000.0;

/// Microseconds as (fractional) milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / MICROS_PER_MS
}

/// Milliseconds with a fixed number of decimals and no unit, for tables whose header
/// names the unit: `12.35`.
pub fn ms_fixed(us: u64, decimals: usize) -> String {
    format!("{:.*}", decimals, ms(us))
}

/// Compact, with its unit and no space, for one figure in a sentence: `850µs`, `12.35ms`.
pub fn compact(us: f64) -> String {
    if us >= MICROS_PER_MS {
        format!("{:.2}ms", us / MICROS_PER_MS)
    } else {
        format!("{us:.0}µs")
    }
}

/// Scaled to its size, with a spaced unit, for pages people skim: `850 µs`, `12.3 ms`,
/// `1.20 s`.
pub fn readable(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", ms(us)),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_shows_its_unit() {
        assert_eq!(ms_fixed(12_345, 2), "12.35");
        assert_eq!(ms_fixed(12_345, 1), "12.3");
        assert_eq!(compact(850.0), "850µs");
        assert_eq!(compact(12_345.0), "12.35ms");
        assert_eq!(readable(850), "850 µs");
        assert_eq!(readable(12_345), "12.3 ms");
        assert_eq!(readable(1_200_000), "1.20 s");
    }
}

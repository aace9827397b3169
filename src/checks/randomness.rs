//! How random a sample of challenges looks: the bits in which they differ, estimated
//! from which character positions vary across the sample. A counter, a timestamp or a
//! short token varies in few positions; 32 random bytes as hex vary in all 64.

/// Bits a secure challenge carries at least (SPEC.md KC-2.2).
pub const MIN_RANDOM_BITS: f64 = 128.0;

/// An estimate of the random bits in `samples`: each character position (up to the
/// shortest sample) that is not the same in every sample counts the bits of one
/// character of their alphabet (4 for hex, 6 for base64, else log2 of the characters
/// seen). With two or more samples of a CSPRNG's output, every position varies with
/// overwhelming probability; positions a counter or clock fixes do not.
pub fn random_bits(samples: &[&str]) -> f64 {
    let Some(shortest) = samples.iter().map(|s| s.chars().count()).min() else {
        return 0.0;
    };
    if samples.len() < 2 {
        return 0.0;
    }
    let columns: Vec<Vec<char>> = samples.iter().map(|s| s.chars().collect()).collect();
    let varying = (0..shortest)
        .filter(|&i| columns.iter().any(|c| c[i] != columns[0][i]))
        .count();
    varying as f64 * bits_per_char(samples)
}

fn bits_per_char(samples: &[&str]) -> f64 {
    let all = || samples.iter().flat_map(|s| s.chars());
    if all().all(|c| c.is_ascii_hexdigit()) {
        return 4.0;
    }
    if all().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_')) {
        return 6.0;
    }
    let distinct: std::collections::BTreeSet<char> = all().collect();
    (distinct.len().max(2) as f64).log2().min(6.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_counts_every_position() {
        let samples: Vec<String> = (0..25)
            .map(|_| hex::encode(rand::random::<[u8; 32]>()))
            .collect();
        let refs: Vec<&str> = samples.iter().map(String::as_str).collect();
        assert_eq!(random_bits(&refs), 256.0);
    }

    #[test]
    fn counters_timestamps_and_short_tokens_fall_short() {
        let counter: Vec<String> = (0..25u64).map(|n| format!("{n:064x}")).collect();
        let refs: Vec<&str> = counter.iter().map(String::as_str).collect();
        assert!(
            random_bits(&refs) < MIN_RANDOM_BITS,
            "{}",
            random_bits(&refs)
        );
        let stamped: Vec<String> = (0..25u64)
            .map(|n| format!("{:016x}{:016x}", 1_800_000_000_000u64 + n, n * 7))
            .collect();
        let refs: Vec<&str> = stamped.iter().map(String::as_str).collect();
        assert!(
            random_bits(&refs) < MIN_RANDOM_BITS,
            "{}",
            random_bits(&refs)
        );
        let short: Vec<String> = (0..25)
            .map(|_| hex::encode(rand::random::<[u8; 4]>()))
            .collect();
        let refs: Vec<&str> = short.iter().map(String::as_str).collect();
        assert!(random_bits(&refs) < MIN_RANDOM_BITS);
    }

    #[test]
    fn uuids_and_prefixed_tokens_still_count_their_random_part() {
        let prefixed: Vec<String> = (0..25)
            .map(|_| format!("v1_{}", hex::encode(rand::random::<[u8; 24]>())))
            .collect();
        let refs: Vec<&str> = prefixed.iter().map(String::as_str).collect();
        assert!(
            random_bits(&refs) >= MIN_RANDOM_BITS,
            "{}",
            random_bits(&refs)
        );
        assert_eq!(random_bits(&["abc"]), 0.0, "one sample shows nothing");
    }
}

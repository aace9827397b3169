//! Answers counted by their body's `error` code, in memory a target cannot grow: a
//! code is whatever string the target sent, so a target answering a fresh 16 KiB
//! string per request would otherwise grow the table (and report.json) by a key per
//! request. Codes that look like codes are kept, up to [`KEPT_CODES`] of them; the
//! rest are counted under [`OTHER`] with one example kept, cut.

use std::collections::BTreeMap;

/// Distinct codes a load scenario's table keeps; later newcomers count as [`OTHER`].
pub const KEPT_CODES: usize = 32;
/// The longest string that counts as a code.
pub const MAX_CODE_BYTES: usize = 64;
/// Characters kept of the example of [`OTHER`].
pub const EXAMPLE_CHARS: usize = 64;
/// Characters kept of a load run's example transport failure (its words name a host and
/// the flag that fixes it, so longer than a code's example).
pub const TRANSPORT_EXAMPLE_CHARS: usize = 240;
/// The key that counts every answer whose `error` was not kept as a code.
pub const OTHER: &str = "other";

/// Whether `text` looks like an error code: 1 to 64 of `a-z 0-9 _ . -`.
pub fn is_code(text: &str) -> bool {
    (1..=MAX_CODE_BYTES).contains(&text.len())
        && text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// What a request hands on to the tally: the code itself, or what is not a code cut
/// to [`EXAMPLE_CHARS`] (with `…`, so a cut never turns into a code). Allocates at
/// most about 70 bytes, whatever the target sent.
pub fn carried(text: &str) -> String {
    if is_code(text) {
        return text.to_owned();
    }
    cut(text, EXAMPLE_CHARS)
}

/// `text` cut to `chars` characters, with `…` when cut.
pub fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The bounded table: at most [`KEPT_CODES`] codes plus [`OTHER`], and one example.
#[derive(Debug, Default)]
pub struct ErrorCodes {
    counts: BTreeMap<String, u64>,
    other: u64,
    example: Option<String>,
}

impl ErrorCodes {
    /// Counts `n` answers whose `error` was `text`. A code already kept is a lookup
    /// without allocation.
    pub fn add(&mut self, text: &str, n: u64) {
        if let Some(count) = self.counts.get_mut(text) {
            *count += n;
        } else if text == OTHER {
            self.other += n;
        } else if is_code(text) && self.counts.len() < KEPT_CODES {
            self.counts.insert(text.to_owned(), n);
        } else {
            self.other += n;
            if self.example.is_none() {
                self.example = Some(carried(text));
            }
        }
    }

    /// Adds another table (a worker's report), keeping this one's example first.
    pub fn add_table(&mut self, counts: &BTreeMap<String, u64>, example: Option<&str>) {
        for (code, n) in counts {
            self.add(code, *n);
        }
        if self.example.is_none() {
            self.example = example.map(carried);
        }
    }

    /// The table as reports hold it (`other` included when anything was counted
    /// there) and the example of `other`.
    pub fn into_parts(self) -> (BTreeMap<String, u64>, Option<String>) {
        let mut counts = self.counts;
        if self.other > 0 {
            counts.insert(OTHER.to_owned(), self.other);
        }
        (counts, self.example)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_look_like_codes() {
        assert!(is_code("invalid_key"));
        assert!(is_code("rate.limited-2"));
        assert!(is_code(&"a".repeat(MAX_CODE_BYTES)));
        assert!(!is_code(&"a".repeat(MAX_CODE_BYTES + 1)));
        assert!(!is_code(""));
        assert!(!is_code("Invalid Key"));
        assert!(!is_code("bad\u{fffe}"));
    }

    #[test]
    fn what_is_carried_is_cut_and_never_becomes_a_code() {
        let long = "x".repeat(16 * 1024);
        let cut = carried(&long);
        assert_eq!(cut.chars().count(), EXAMPLE_CHARS + 1, "{cut}");
        assert!(!is_code(&cut));
        assert_eq!(carried("invalid_key"), "invalid_key");
        assert_eq!(carried("Not Found"), "Not Found");
        // Cut on a character boundary, never inside one.
        assert_eq!(carried(&"é".repeat(100)).chars().count(), EXAMPLE_CHARS + 1);
    }

    #[test]
    fn the_table_keeps_a_few_dozen_codes_and_counts_the_rest_as_other() {
        let mut table = ErrorCodes::default();
        for n in 0..1_000u64 {
            table.add(&format!("code_{n}"), 1);
            table.add("invalid_key", 1);
            table.add(&format!("{n:016384}"), 1);
        }
        let (counts, example) = table.into_parts();
        assert_eq!(counts.len(), KEPT_CODES + 1, "{counts:?}");
        assert_eq!(counts["invalid_key"], 1_000);
        assert_eq!(counts.values().sum::<u64>(), 3_000);
        // 31 `code_n` kept beside `invalid_key`; the rest and every 16 KiB string in `other`.
        assert_eq!(counts[OTHER], 1_000 - (KEPT_CODES as u64 - 1) + 1_000);
        let example = example.expect("an example of other");
        assert!(example.len() < 4 * EXAMPLE_CHARS, "{example}");
    }

    #[test]
    fn merged_tables_stay_bounded_and_other_adds_up() {
        let mut merged = ErrorCodes::default();
        for worker in 0..4 {
            let mut table = ErrorCodes::default();
            for n in 0..KEPT_CODES + 5 {
                table.add(&format!("w{worker}_{n}"), 2);
            }
            let (counts, example) = table.into_parts();
            merged.add_table(&counts, example.as_deref());
        }
        let (counts, _) = merged.into_parts();
        assert_eq!(counts.len(), KEPT_CODES + 1);
        assert_eq!(
            counts.values().sum::<u64>(),
            4 * 2 * (KEPT_CODES as u64 + 5)
        );
    }
}

//! Characters XML 1.0 forbids, a leaf: a target's answer can hold any of them (C0
//! controls, U+FFFE, U+FFFF; a lone surrogate has already become U+FFFD in lossy
//! decoding), and one raw in junit.xml makes strict parsers (expat) reject the whole
//! file, so a CI system shows no results at all. JUnit and HTML both replace them.

use std::borrow::Cow;

/// What a forbidden character becomes: the replacement character, which says
/// something unreadable was there.
pub const REPLACEMENT: char = '\u{FFFD}';

/// XML 1.0's `Char`: tab, newline, carriage return, U+0020 to U+D7FF, U+E000 to
/// U+FFFD, U+10000 and up. (Surrogates cannot be in a Rust `char`.)
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character XML 1.0 forbids replaced by [`REPLACEMENT`]; borrowed
/// when there is none (the usual case).
pub fn replace_forbidden(text: &str) -> Cow<'_, str> {
    if text.chars().all(allowed) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if allowed(c) { c } else { REPLACEMENT })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_replaced_and_the_rest_kept() {
        let hostile = "a\u{0}b\u{1}c\u{8}\u{b}\u{c}\u{1f}d\u{fffe}e\u{ffff}f\u{7f}\u{fffd}";
        assert_eq!(
            replace_forbidden(hostile),
            "a\u{fffd}b\u{fffd}c\u{fffd}\u{fffd}\u{fffd}\u{fffd}d\u{fffd}e\u{fffd}f\u{7f}\u{fffd}"
        );
        let fine = "tab\tline\nret\r é \u{d7ff}\u{e000}\u{10000}\u{10ffff}";
        assert!(matches!(replace_forbidden(fine), Cow::Borrowed(_)));
    }
}

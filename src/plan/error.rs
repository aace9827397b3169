//! `PlanError`: one problem in a plan file, with its place, rendered like a compiler's
//! diagnostic (hurl, rustc) so a user can go straight to the line.
//!
//! Also the small helpers every loader stage shares: turning a byte span into
//! `line:column` plus the line's text ([`Source`]), and "did you mean" ([`suggest`]).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Widest excerpt shown, in characters. Plans may hold long one-line inline tables (or a
/// minified body); a screenful of one line would hide the caret, so we clip around it.
const EXCERPT_WIDTH: usize = 80;
/// How much of the line before the column to keep when clipping.
const EXCERPT_LEAD: usize = 30;

/// An invalid plan. `Display` renders the whole diagnostic:
///
/// ```text
/// error: unknown field `respnse` in a validate step
///   --> scenarios/conformance.toml:42:31
///    |
/// 42 | validate = { challenge = "c", respnse = "hmac" }
///    |                               ^^^^^^^
///    = help: did you mean `response`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    /// The plan file, as given.
    pub path: PathBuf,
    /// 1-based; 0 when the problem has no place in the text (e.g. the file is missing).
    pub line: usize,
    /// 1-based, in characters; 0 when `line` is 0.
    pub column: usize,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, when we can tell.
    pub help: Option<String>,
    /// Related context, e.g. where a duplicate was first defined.
    pub note: Option<String>,
    /// The line shown under the position. Boxed because errors are rare and a small
    /// `Result` is not (clippy's `result_large_err`).
    pub excerpt: Option<Box<Excerpt>>,
}

/// The source line an error points into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The full text of the line (without its newline). Kept whole; `Display` clips it,
    /// so callers with wider screens could render their own.
    pub text: String,
    /// How many characters from the column the caret underlines (at least 1).
    pub width: usize,
}

impl PlanError {
    /// An error with no place in the text.
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        PlanError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            help: None,
            note: None,
            excerpt: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Keeps the place but drops the excerpt, for errors about the file as a whole.
    pub(crate) fn without_excerpt(mut self) -> Self {
        self.excerpt = None;
        self
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The gutter is as wide as the line number, so the `|` column lines up.
        let gutter = " ".repeat(self.line.max(1).to_string().len());
        write!(f, "error: {}", self.message)?;
        if self.line == 0 {
            write!(f, "\n{gutter}--> {}", self.path.display())?;
        } else {
            write!(
                f,
                "\n{gutter}--> {}:{}:{}",
                self.path.display(),
                self.line,
                self.column
            )?;
            if let Some(excerpt) = &self.excerpt {
                let (text, at, len) =
                    clip(&excerpt.text, self.column.saturating_sub(1), excerpt.width);
                write!(f, "\n{gutter} |")?;
                if text.is_empty() {
                    write!(f, "\n{} |", self.line)?;
                } else {
                    write!(f, "\n{} | {text}", self.line)?;
                }
                write!(f, "\n{gutter} | {}{}", " ".repeat(at), "^".repeat(len))?;
            }
        }
        if let Some(note) = &self.note {
            write!(f, "\n{gutter} = note: {note}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n{gutter} = help: {help}")?;
        }
        Ok(())
    }
}

/// The excerpt to print for `line`, with where the caret starts and how long it is, all
/// in characters. Tabs and other control characters become spaces so the caret stays
/// under the column it names; lines wider than [`EXCERPT_WIDTH`] are cut around the
/// column, with `…` where text was cut.
fn clip(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let n = chars.len();
    let column = column.min(n);
    let (start, end) = if n <= EXCERPT_WIDTH {
        (0, n)
    } else {
        let start = column.saturating_sub(EXCERPT_LEAD).min(n - EXCERPT_WIDTH);
        (start, start + EXCERPT_WIDTH)
    };
    let mut text = String::new();
    if start > 0 {
        text.push('…');
    }
    text.extend(&chars[start..end]);
    if end < n {
        text.push('…');
    }
    let at = column - start + usize::from(start > 0);
    // Underline at most to the end of what is shown; always at least one caret, even at
    // the end of the line (where "expected `]`" errors point).
    let len = width.min(end.saturating_sub(column)).max(1);
    (text, at, len)
}

/// A plan's text and path, to place errors. Spans are byte ranges, as toml gives them.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// An error at `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> PlanError {
        let (line, column, text, width) = self.locate(span);
        PlanError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
            help: None,
            note: None,
            excerpt: Some(Box::new(Excerpt { text, width })),
        }
    }

    /// `path:line:column` of `span`, for notes that point elsewhere.
    pub fn place(&self, span: Range<usize>) -> String {
        let (line, column, _, _) = self.locate(span);
        format!("{}:{line}:{column}", self.path.display())
    }

    /// 1-based line of the span's start.
    pub fn line_of(&self, span: Range<usize>) -> usize {
        self.locate(span).0
    }

    /// 1-based line and column (in characters) of the span's start, without the line's
    /// text (for files whose lines may hold secrets).
    pub fn line_column(&self, span: Range<usize>) -> (usize, usize) {
        let (line, column, _, _) = self.locate(span);
        (line, column)
    }

    /// 1-based line and column (in characters) of the span's start, that line's text, and
    /// the span's width in characters on that line.
    fn locate(&self, span: Range<usize>) -> (usize, usize, String, usize) {
        let text = self.text;
        let mut start = floor_char_boundary(text, span.start);
        // An error at the very end of a file that ends in a newline (an unclosed `[[`,
        // say) is about the last line, not the empty one after it.
        if start == text.len() && text.ends_with('\n') {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..line_start].matches('\n').count() + 1;
        // The excerpt leaves out the `\r` of a CRLF (and any before it). An error placed
        // on them (toml puts "unterminated string" at the newline) points just past the
        // text shown instead, so the column never names a place the user cannot see.
        let source_line = text[line_start..line_end].trim_end_matches('\r');
        let shown_end = line_start + source_line.len();
        let start = start.min(shown_end);
        let column = text[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(text, span.end.clamp(start, shown_end));
        let width = text[start..end].chars().count().max(1);
        (line, column, source_line.to_string(), width)
    }
}

/// The largest char boundary at or below `index` (clamped to the text), so a span that
/// is off by a byte can never make us slice inside a character and panic.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
/// Case is ignored, so `HMAC` suggests `hmac`.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_lowercase();
    // Like cargo: allow about one edit per three characters, and at least one.
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|&c| (strsim::damerau_levenshtein(&word, &c.to_lowercase()), c))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when a candidate is close, else the list of what is allowed.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match suggest(word, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected {}", one_of(candidates)),
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
pub(crate) fn one_of(candidates: &[&str]) -> String {
    let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            suggest("respnse", &["challenge", "response"]),
            Some("response")
        );
        assert_eq!(suggest("hmca", &["hmac", "hash", "echo"]), Some("hmac"));
        assert_eq!(suggest("HMAC", &["hmac", "hash"]), Some("hmac"));
        assert_eq!(suggest("zebra", &["hmac", "hash"]), None);
    }

    #[test]
    fn short_lines_are_not_clipped() {
        assert_eq!(clip("a\tb = 1", 4, 1), ("a b = 1".to_string(), 4, 1));
        // The caret may sit one past the end, where "expected ..." errors point.
        assert_eq!(clip("[[x", 3, 1), ("[[x".to_string(), 3, 1));
    }

    #[test]
    fn long_lines_are_clipped_around_the_column() {
        let line = format!("{}X{}", "a".repeat(200), "b".repeat(200));
        let (text, at, len) = clip(&line, 200, 1);
        assert_eq!(text.chars().count(), EXCERPT_WIDTH + 2);
        assert!(text.starts_with('…') && text.ends_with('…'));
        assert_eq!(text.chars().nth(at), Some('X'));
        assert_eq!(len, 1);
        // Near the end: the window ends at the line's end, with no trailing mark.
        let (text, at, _) = clip(&line, 400, 1);
        assert!(text.starts_with('…') && !text.ends_with('…'));
        assert_eq!(text.chars().nth(at), Some('b'));
    }

    #[test]
    fn locates_lines_and_columns_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let source = Source::new(Path::new("p.toml"), text);
        let at = text.find("\"x\"").unwrap();
        let e = source.error(at..at + 3, "m");
        assert_eq!((e.line, e.column), (2, 6));
        let excerpt = e.excerpt.unwrap();
        assert_eq!((excerpt.text.as_str(), excerpt.width), ("bé = \"x\"", 3));
        // Past the end of a file ending in a newline: the last line.
        let e = source.error(text.len()..text.len(), "m");
        assert_eq!((e.line, e.column), (2, 9));
        // A span inside a character must not panic.
        let e = source.error(8..9, "m");
        assert_eq!((e.line, e.column), (2, 2));
    }
}

//! What the plan loader must do with any text: give a plan or a `PlanError`, never a
//! panic, and every error must render with the file name and a `line:col` that exist
//! in the text (what users jump to in their editor), its excerpt being that line.
//!
//! Shared by the `plan_loader` fuzz target and the proptests in `tests/plan_loader.rs`
//! (included there with `#[path]`), so both hold the loader to the same property.

use std::path::Path;

use keyclaim_harness::plan::load_str;

/// Loads `text` as `fuzz.toml` and checks the error's placement, panicking on a
/// violation.
pub fn check_plan_text(text: &str) {
    let Err(e) = load_str(Path::new("fuzz.toml"), text) else {
        return;
    };
    let shown = e.to_string();
    assert!(shown.starts_with("error: "), "{shown}");
    // Text always has a place: even an empty plan points at 1:1.
    assert!(e.line >= 1 && e.column >= 1, "unplaced error:\n{shown}");
    let place = format!("--> fuzz.toml:{}:{}", e.line, e.column);
    assert!(shown.contains(&place), "no `{place}` in:\n{shown}");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        e.line <= lines.len(),
        "no line {} of {} in the text:\n{shown}",
        e.line,
        lines.len()
    );
    // As shown: without the `\r` of a CRLF, or any `\r` before it.
    let line = lines[e.line - 1].trim_end_matches('\r');
    // At most one past the end, where "expected `]`" errors point.
    assert!(
        e.column <= line.chars().count() + 1,
        "column {} past the end of line {line:?}:\n{shown}",
        e.column
    );
    if let Some(excerpt) = &e.excerpt {
        assert!(excerpt.width >= 1, "{e:?}");
        assert_eq!(excerpt.text, line, "the excerpt is not line {}", e.line);
    }
}

//! Fuzzes the plan loader: any bytes, read as a plan file, must give a plan or a
//! `PlanError`, never a panic, and every error must render with the file name and a
//! `line:col` that exist in the text (what users jump to in their editor).
//!
//! Run: `cargo +nightly fuzz run plan_loader` from the repository root (see README.md).

#![no_main]

use std::path::Path;

use keyclaim_harness::plan::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader takes `&str` (`load` turns invalid UTF-8 into a read error before it);
    // lossy decoding keeps every input useful instead of discarding most mutations.
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    let Err(e) = load_str(path, &text) else {
        return;
    };

    let shown = e.to_string();
    assert!(shown.starts_with("error: "), "{shown}");
    // Text always has a place: even an empty plan points at 1:1.
    assert!(e.line >= 1 && e.column >= 1, "unplaced error:\n{shown}");
    let place = format!("--> fuzz.toml:{}:{}", e.line, e.column);
    assert!(shown.contains(&place), "no `{place}` in:\n{shown}");

    // The place exists in the text: a line that is there, a column at most one past
    // its end (where "expected `]`" errors point).
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        e.line <= lines.len(),
        "line {} of {}:\n{shown}",
        e.line,
        lines.len()
    );
    // As shown: without the `\r` of a CRLF, or any `\r` before it.
    let line = lines[e.line - 1].trim_end_matches('\r');
    assert!(
        e.column <= line.chars().count() + 1,
        "column {} past the end of line {:?}:\n{shown}",
        e.column,
        line
    );
    if let Some(excerpt) = &e.excerpt {
        assert!(excerpt.width >= 1, "{e:?}");
        assert_eq!(excerpt.text, line, "the excerpt is not line {}", e.line);
    }
});

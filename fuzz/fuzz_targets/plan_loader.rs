//! Fuzzes the plan loader: any bytes, read as a plan file, must give a plan or a
//! `PlanError`, never a panic, and every error must render with the file name and a
//! `line:col` that exist in the text (what users jump to in their editor).
//!
//! Run: `cargo +nightly fuzz run plan_loader` from the repository root (see README.md).

#![no_main]

#[path = "../plan_check.rs"]
mod plan_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader takes `&str` (`load` turns invalid UTF-8 into a read error before it);
    // lossy decoding keeps every input useful instead of discarding most mutations.
    plan_check::check_plan_text(&String::from_utf8_lossy(data));
});

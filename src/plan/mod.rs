//! Plan files: TOML text -> raw serde structs (`raw`) -> the validated [`model::Plan`]
//! (`validate`, `expect`). Every problem becomes a [`PlanError`] that knows its
//! `file:line:column` and renders like a compiler's diagnostic; nothing here panics on
//! bad input, and nothing does IO beyond reading the plan files themselves.
//!
//! The format is described for users in `scenarios/README.md`.

pub mod builtin;
pub mod bundled;
mod error;
mod expect;
mod load;
pub mod model;
mod raw;
mod select;
mod steps;
mod validate;
mod values;

use std::path::{Path, PathBuf};

pub use error::{Excerpt, PlanError};
/// Placing a byte span and "did you mean": the server's keys file reads its errors
/// with them too.
pub(crate) use error::{Source, suggest};
pub use model::Plan;
pub use select::{apply_load_overrides, select};

use validate::Seen;

/// Reads and validates one plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let text = read(path)?;
    load_str(path, &text)
}

/// Validates plan `text`; `path` is used for the plan's default name and in messages.
pub fn load_str(path: &Path, text: &str) -> Result<Plan, PlanError> {
    load_into(path, text, &mut Seen::new())
}

/// Reads and validates several plan files, in order, stopping at the first error.
/// Scenario names must be unique across all of them, since reports and `--scenario`
/// filters name scenarios without their file.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Plan>, PlanError> {
    let mut seen = Seen::new();
    paths
        .iter()
        .map(|path| load_into(path, &read(path)?, &mut seen))
        .collect()
}

/// Parses one threshold as a plan's `thresholds` list writes it (`p99 < 50ms`); the
/// error says why and how to fix it. `merge` uses it to judge merged figures.
pub fn parse_threshold(text: &str) -> Result<model::Threshold, String> {
    load::threshold(text).map_err(|bad| format!("threshold `{text}`: {}; {}", bad.why, bad.help))
}

/// Parses one regression tolerance as a plan's `regression` list writes it
/// (`p99 +10%`); the error says why and how to fix it. `compare` uses it for
/// `--tolerance` and for the tolerances a report carries.
pub fn parse_tolerance(text: &str) -> Result<model::Tolerance, String> {
    load::tolerance(text)
        .map_err(|bad| format!("tolerance `{}`: {}; {}", text.trim(), bad.why, bad.help))
}

fn load_into(path: &Path, text: &str, seen: &mut Seen) -> Result<Plan, PlanError> {
    let source = Source::new(path, text);
    let raw = raw::parse(&source)?;
    validate::plan(&source, raw, seen)
}

/// A plan file's text, or a bundled plan's (see [`bundled::named_by`]).
fn read(path: &Path) -> Result<String, PlanError> {
    if let Some((name, text)) = bundled::named_by(path) {
        // A name (`conformance`, `builtin:conformance`) asks for the built-in plan; a
        // path to a file that is not there gets it with a word.
        let written = path.to_string_lossy();
        if written.contains('/') || written.ends_with(".toml") {
            tracing::warn!(
                "{}: no such file here; running the {name} plan built into this binary \
                 (`keyclaim-harness plans --out DIR` writes it out)",
                path.display()
            );
        }
        return Ok(text.to_owned());
    }
    std::fs::read_to_string(path).map_err(|e| {
        // "No such file or directory (os error 2)": the OS error number helps nobody
        // fixing a path.
        let message = e.to_string();
        let message = match message.rfind(" (os error ") {
            Some(at) if message.ends_with(')') => &message[..at],
            _ => &message,
        };
        PlanError::file(path, format!("cannot read plan: {message}")).with_help(format!(
            "give a plan file's path, or a plan built into this binary: {}",
            bundled::names().join(", ")
        ))
    })
}

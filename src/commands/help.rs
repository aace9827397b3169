//! The text every command's `--help` ends with.

use crate::exit::ExitCode;

/// A command's text after its options: worked examples, then its exit codes.
pub fn after_help(examples: &[(&str, &str)], codes: &[ExitCode]) -> String {
    let mut text = String::from("Examples:\n");
    for (what, command) in examples {
        text.push_str(&format!("  # {what}\n  {command}\n\n"));
    }
    text + &ExitCode::help(codes)
}

//! `plans`: lists the plans built into the binary, and writes them out for editing.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit::ExitCode;
use crate::plan::bundled;

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("what is built in", "keyclaim-harness plans"),
        ("copies to edit, then run one", "keyclaim-harness plans --out my-plans && keyclaim-harness run my-plans/conformance.toml"),
        ("a built-in plan without writing it out", "keyclaim-harness run builtin:conformance"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
pub struct PlansArgs {
    /// Write each built-in plan into DIR as NAME.toml.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: overwrite plans already there.
    #[arg(long, requires = "out")]
    pub force: bool,
}

pub fn execute(args: PlansArgs) -> ExitCode {
    let Some(dir) = args.out else {
        for (name, _) in bundled::PLANS {
            println!("{}{name}", bundled::PREFIX);
        }
        return ExitCode::Ok;
    };
    match write_out(&dir, args.force) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::Ok
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

/// Writes every bundled plan into `dir`; nothing is written if one would overwrite a
/// file without `force`.
fn write_out(dir: &Path, force: bool) -> Result<Vec<PathBuf>, (ExitCode, String)> {
    let paths: Vec<(PathBuf, &str)> = bundled::PLANS
        .iter()
        .map(|(name, text)| (dir.join(format!("{name}.toml")), *text))
        .collect();
    if !force && let Some((existing, _)) = paths.iter().find(|(path, _)| path.exists()) {
        return Err((
            ExitCode::Usage,
            format!(
                "{}: already exists; pass --force to overwrite it",
                existing.display()
            ),
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| (ExitCode::Failed, format!("{}: {err}", dir.display())))?;
    for (path, text) in &paths {
        std::fs::write(path, text)
            .map_err(|err| (ExitCode::Failed, format!("{}: {err}", path.display())))?;
    }
    Ok(paths.into_iter().map(|(path, _)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_written_once_then_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_out(dir.path(), false).unwrap();
        assert_eq!(written.len(), bundled::PLANS.len());
        let conformance = std::fs::read_to_string(dir.path().join("conformance.toml")).unwrap();
        assert_eq!(conformance, bundled::PLANS[0].1);
        let (code, message) = write_out(dir.path(), false).unwrap_err();
        assert_eq!(code, ExitCode::Usage);
        assert!(message.contains("--force"), "{message}");
        assert!(write_out(dir.path(), true).is_ok());
    }
}

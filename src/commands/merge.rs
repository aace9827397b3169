//! `merge`: the reports of a scaled-out run's workers into one exact report (see
//! [`crate::scale_out::merge`]), judged again on the merged figures.

use std::path::PathBuf;

use clap::Args;

use super::process::Console;
use crate::exit::ExitCode;
use crate::redact::Redactor;
use crate::report::console;
use crate::scale_out::merge;

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("two workers' reports into one", "keyclaim-harness merge reports/load-worker-0 reports/load-worker-1 --out reports/load-merged"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
pub struct MergeArgs {
    /// Report directories of the workers (each holding report.json).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report.json, junit.xml, report.html, .hgrm and .hlog go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Merge even when some workers' reports are absent (the report lists them).
    #[arg(long)]
    pub allow_missing: bool,
    /// Print only the final summary line.
    #[arg(long)]
    pub quiet: bool,
}

pub fn execute(args: MergeArgs, console: &Console) -> ExitCode {
    let merged = args
        .dirs
        .iter()
        .map(|dir| merge::read(dir))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|inputs| merge::merge(inputs, args.allow_missing));
    let report = match merged {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::Usage;
        }
    };
    // The inputs were redacted when the workers wrote them.
    let redactor = Redactor::new(Vec::<String>::new());
    if let Err(err) = crate::report::write_all(&report, &args.out, &redactor) {
        eprintln!("error: cannot write the merged reports: {err}");
        return ExitCode::Failed;
    }
    console::print(&report, &redactor, &args.out, args.quiet, console.color);
    if report.passed {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    }
}

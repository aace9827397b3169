//! `selftest`: the conformance suite against the embedded server with every fault and
//! in every style (see [`crate::engine::selftest`]); prints the matrix, and exits 1 when
//! a fault goes uncaught or a correct server fails.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::crypto::RsaBackend;
use crate::engine::selftest::{self, Case, CaseResult};
use crate::exit::ExitCode;
use crate::server::faults::Fault;
use crate::server::style::Style;

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("every fault caught and every style passed", "keyclaim-harness selftest"),
        ("one fault", "keyclaim-harness selftest --fault accept-replay"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
pub struct SelftestArgs {
    /// The plan to prove (default: the conformance suite built into this binary).
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Only this fault (repeatable; default: every fault, every style and the reference).
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// Only this style (repeatable).
    #[arg(long = "style", value_name = "NAME")]
    pub styles: Vec<Style>,
    /// Only the reference under --strict (with --fault or --style: that too).
    #[arg(long)]
    pub reference: bool,
    /// Only every style at once (with --fault or --style: that too).
    #[arg(long)]
    pub all_styles: bool,
    /// Runs at once; each is its own server and mostly waits on TTLs.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// The matrix as a table, or as JSON (one object per case).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// RSA implementation for the servers and the client.
    #[arg(long, value_enum, default_value_t = RsaBackend::default())]
    pub rsa_backend: RsaBackend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn execute(args: SelftestArgs) -> ExitCode {
    let plan = match &args.plan {
        Some(path) => crate::plan::load(path),
        None => crate::plan::builtin::conformance(),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::Usage;
        }
    };
    let chosen = !args.faults.is_empty() || !args.styles.is_empty();
    let cases: Vec<Case> = if chosen || args.reference || args.all_styles {
        args.reference
            .then_some(Case::Reference)
            .into_iter()
            .chain(args.faults.iter().copied().map(Case::Fault))
            .chain(args.styles.iter().copied().map(Case::Style))
            .chain(args.all_styles.then_some(Case::AllStyles))
            .collect()
    } else {
        selftest::every_case()
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::Failed;
        }
    };
    eprintln!(
        "selftest: {} against the embedded server, {} cases, {} at a time",
        plan.name,
        cases.len(),
        args.jobs
    );
    let results = match runtime.block_on(selftest::run(
        plan.scenarios,
        cases,
        usize::from(args.jobs),
        args.rsa_backend,
    )) {
        Ok(results) => results,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::Failed;
        }
    };
    match args.format {
        Format::Text => print!("{}", selftest::render(&results)),
        Format::Json => println!("{}", json(&results)),
    }
    if results.iter().all(CaseResult::as_expected) {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    }
}

fn json(results: &[CaseResult]) -> String {
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|result| {
            serde_json::json!({
                "case": result.case.label(),
                "as_expected": result.as_expected(),
                "ran": result.ran,
                "suite_passed": result.suite_passed,
                "failed_checks": result.failed_checks,
                "non_strict": result.non_strict,
                "failures": result.failures,
            })
        })
        .collect();
    serde_json::to_string_pretty(&cases).expect("plain values serialize")
}

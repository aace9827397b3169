//! `compare`: is the new run slower than the baseline? Two report directories (or
//! report.json files) of one plan, judged figure by figure (see [`crate::compare`]).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::compare::{self, Settings, text};
use crate::exit::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = format!(
    "A figure regresses when its {:.0}% confidence interval in the new run lies beyond the \
     baseline's widened by the tolerance (a flag over the plan's `regression` list over the \
     defaults: {}).\n\n{}",
    compare::stats::CONFIDENCE * 100.0,
    compare::DEFAULT_TOLERANCES.join(", "),
    super::help::after_help(
        &[
            ("did this change make the API slower?", "keyclaim-harness compare reports/baseline reports/load"),
            ("with a tolerance of your own, and the HTML overlay", "keyclaim-harness compare reports/baseline reports/load --tolerance 'p99 +5%' --out reports/compare"),
        ],
        &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
    )
))]
pub struct CompareArgs {
    /// The baseline: a report directory or its report.json.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The run to judge: a report directory or its report.json.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// How much worse a figure may get, like `p99 +10%`, `p50 +2ms`, `error_rate +0.1pp`
    /// or `rps -5%`; repeat for several. Replaces the plan's and the default for its metric.
    #[arg(long = "tolerance", value_name = "SPEC")]
    pub tolerances: Vec<String>,
    /// Compare even when the runs' plans, selections or overrides differ (the output
    /// says how).
    #[arg(long)]
    pub allow_plan_mismatch: bool,
    /// Also write compare.json, compare.xml (JUnit) and compare.html into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print only the final line.
    #[arg(long)]
    pub quiet: bool,
}

pub fn execute(args: CompareArgs) -> ExitCode {
    let tolerances = match compare::parse_tolerances(&args.tolerances) {
        Ok(tolerances) => tolerances,
        Err(err) => {
            eprintln!("error: --tolerance {err}");
            return ExitCode::Usage;
        }
    };
    let settings = Settings {
        tolerances,
        allow_plan_mismatch: args.allow_plan_mismatch,
    };
    let compared = compare::read(&args.base)
        .and_then(|base| Ok((base, compare::read(&args.new)?)))
        .and_then(|(base, new)| compare::compare(&base, &new, &settings));
    let comparison = match compared {
        Ok(comparison) => comparison,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::Usage;
        }
    };
    if let Some(dir) = &args.out
        && let Err(err) = write(&comparison, dir)
    {
        eprintln!("error: {err:#}");
        return ExitCode::Failed;
    }
    let console = text::console(&comparison);
    if args.quiet {
        print!("{}", console.lines().last().unwrap_or_default());
        println!();
    } else {
        print!("{console}");
    }
    if comparison.regressed {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    }
}

fn write(comparison: &compare::Comparison, dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = [
        (text::JSON_FILE, text::json(comparison)?),
        (text::JUNIT_FILE, text::junit(comparison)?),
        (text::HTML_FILE, compare::html::render(comparison)),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

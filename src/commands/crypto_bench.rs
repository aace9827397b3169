//! `crypto-bench`: measures the HMAC and RSA-OAEP paths on this machine (see
//! [`crate::crypto::bench`]) and prints a table or JSON.

use std::io::Write as _;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::crypto::RsaBackend;
use crate::crypto::bench::{BenchPath, BenchPlan, measure, render_json, render_text};
use crate::exit::ExitCode;

/// `crypto-bench` arguments.
#[derive(Debug, Clone, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("HMAC and RSA-OAEP throughput, 3 s per measurement", "keyclaim-harness crypto-bench --seconds 3"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
pub struct CryptoBenchArgs {
    /// Seconds each measurement runs (one path, backend and thread count); fractions allowed.
    #[arg(long, default_value = "1", value_name = "N", value_parser = parse_seconds)]
    pub seconds: Duration,
    /// Highest thread count; every count from 1 to N is measured (default: available cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Output format: a table, or a JSON array (one object per path, backend and thread count).
    #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
    pub format: BenchFormat,
    /// RSA backend to measure (default: every backend built). The rustcrypto backend
    /// carries RUSTSEC-2023-0071 (Marvin timing side channel); see README.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub rsa_backend: Option<RsaBackend>,
    /// Measure only this path (repeatable; default: all).
    #[arg(long = "path", value_enum, value_name = "PATH")]
    pub paths: Vec<BenchPath>,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| format!("{value} is not a number of seconds"))?;
    if !(0.01..=3600.0).contains(&seconds) {
        return Err(format!("{value} is out of range; use 0.01 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    Text,
    Json,
}

impl CryptoBenchArgs {
    /// What to measure, resolved from the arguments in one step; `Err` says which
    /// argument is pointless.
    pub fn plan(&self) -> Result<BenchPlan, String> {
        let mut paths = if self.paths.is_empty() {
            BenchPath::value_variants().to_vec()
        } else {
            self.paths.clone()
        };
        paths.sort();
        paths.dedup();
        if self.rsa_backend.is_some() && paths.iter().all(|path| path.rsa_bits().is_none()) {
            return Err("--rsa-backend has no effect: no RSA path is selected".into());
        }
        let backends = match self.rsa_backend {
            Some(backend) => vec![backend],
            None => RsaBackend::ALL.to_vec(),
        };
        let max_threads = match self.threads {
            Some(threads) => usize::from(threads),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(BenchPlan {
            paths,
            backends,
            max_threads,
            window: self.seconds,
        })
    }
}

/// Measures, then prints the table or JSON on stdout.
pub fn execute(args: CryptoBenchArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::Usage;
        }
    };
    let targets = plan.targets();
    // indicatif hides a stderr bar by itself when stderr is not a terminal, so piped
    // and CI runs get clean output.
    let progress = ProgressBar::with_draw_target(
        Some((targets.len() * plan.max_threads) as u64),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} measurements  {msg}",
    ) {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(100));
    let measured = measure(&plan, &progress);
    progress.finish_and_clear();
    let measurements = match measured {
        Ok(measurements) => measurements,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::Failed;
        }
    };
    let rendered = match args.format {
        BenchFormat::Text => render_text(&plan, &measurements),
        BenchFormat::Json => render_json(&measurements),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(rendered.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            eprintln!("error: cannot write the results: {err}");
            ExitCode::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: CryptoBenchArgs,
    }

    fn parse(args: &[&str]) -> Result<CryptoBenchArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("crypto-bench").chain(args.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn arguments_resolve_to_a_plan() {
        let args = parse(&[
            "--seconds",
            "0.5",
            "--threads",
            "3",
            "--path",
            "rsa2048-oaep-decrypt",
        ])
        .unwrap();
        let plan = args.plan().unwrap();
        assert_eq!(plan.window, Duration::from_millis(500));
        assert_eq!(plan.max_threads, 3);
        assert_eq!(plan.paths, [BenchPath::Rsa2048Decrypt]);
        assert_eq!(plan.backends, RsaBackend::ALL);
        let all = parse(&[]).unwrap().plan().unwrap();
        assert_eq!(all.paths.len(), 7);
        assert_eq!(all.targets().len(), 1 + 6 * RsaBackend::ALL.len());
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["--seconds", "0"][..],
            &["--seconds", "abc"],
            &["--threads", "0"],
            &["--path", "rsa1024-oaep-decrypt"],
            &["--rsa-backend", "openssl"],
            &["--format", "xml"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let pointless = parse(&["--rsa-backend", "rustcrypto", "--path", "hmac-sha256"]).unwrap();
        let err = pointless.plan().unwrap_err();
        assert!(err.contains("--rsa-backend"), "{err}");
    }
}

//! The command line: one file per subcommand, each holding its clap `Args` and an
//! `execute()` that returns the exit code. The binary parses [`Cli`] and dispatches.

pub mod args;
pub mod compare;
pub mod coordinate;
pub mod crypto_bench;
pub mod help;
pub mod keygen;
pub mod merge;
pub mod plans;
pub mod process;
pub mod run;
pub mod selftest;
pub mod serve;

use clap::{Parser, Subcommand};

use crate::exit::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "keyclaim-harness",
    version,
    about = "Load-testing and conformance harness for KeyClaim-compatible challenge-response APIs",
    after_help = help::after_help(
        &[
            ("the conformance suite against the embedded reference server", "keyclaim-harness run scenarios/conformance.toml"),
            ("against a deployment", "keyclaim-harness run scenarios/conformance.toml --target https://api.example.com --api-key \"$KEY\""),
            ("a load test", "keyclaim-harness run scenarios/load.toml --scenario create-validate --rate 500 --duration 30s"),
        ],
        &ExitCode::ALL
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run test plans (conformance or load) against a target, or the embedded server.
    Run(run::RunArgs),
    /// Run the reference KeyClaim server.
    Serve(serve::ServeArgs),
    /// Generate an RSA key pair for the RSA flow (PKCS#8 private, SPKI public).
    Keygen(keygen::KeygenArgs),
    /// Measure HMAC and RSA-OAEP throughput (ops/s) on 1..N threads, per RSA backend.
    CryptoBench(crypto_bench::CryptoBenchArgs),
    /// Merge the reports of a scaled-out run's workers into one exact report.
    Merge(merge::MergeArgs),
    /// Gather a scaled-out run: start its workers together once all are in, collect
    /// their reports and merge them (workers join with `run --rendezvous URL`).
    Coordinate(coordinate::CoordinateArgs),
    /// Prove the conformance suite: run it against the embedded server with every
    /// fault (each must be caught) and in every style (each must pass).
    Selftest(selftest::SelftestArgs),
    /// Compare two runs of one plan (report directories or report.json files), figure
    /// by figure, and fail on a statistically sure regression beyond the tolerances.
    Compare(compare::CompareArgs),
    /// List the plans built into the binary, or write them out for editing (`run
    /// builtin:NAME` runs one as it is).
    Plans(plans::PlansArgs),
}

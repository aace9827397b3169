//! `coordinate`: the rendezvous and collector of a scaled-out run (see
//! [`crate::scale_out::rendezvous`]). Workers started with `run --rendezvous URL`
//! register; the start is announced once all are in; their reports come back here and
//! are merged with the same code as `merge`, without a shared volume.

use crate::commands::args;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::process::{Console, ShutdownSignals, runtime};
use crate::exit::ExitCode;
use crate::redact::Redactor;
use crate::report::console;
use crate::results::worker_list;
use crate::scale_out::merge;
use crate::scale_out::rendezvous::{self, Collected, Coordinator, OnMissing, Settings, Status};

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("gather three workers (each runs `run ... --rendezvous http://HOST:7070`)", "keyclaim-harness coordinate --workers 3 --listen 0.0.0.0:7070"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage, ExitCode::Interrupted]
))]
pub struct CoordinateArgs {
    /// How many workers the run has (each started with `run --workers N --worker-index I
    /// --rendezvous URL`).
    #[arg(
        long,
        env = "KEYCLAIM_WORKERS",
        hide_env_values = true,
        value_name = "N"
    )]
    pub workers: u32,
    /// Where workers reach the coordinator (port 0: any free port; the first stdout line
    /// says which).
    #[arg(
        long,
        env = "KEYCLAIM_COORDINATOR_LISTEN",
        hide_env_values = true,
        default_value = "0.0.0.0:7450",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Where the workers' reports (worker-I/report.json) and the merged reports (merged/)
    /// go.
    #[arg(long, default_value = "reports/coordinated", value_name = "DIR")]
    pub report_dir: PathBuf,
    /// How long, from now, every worker has to register.
    #[arg(
        long,
        env = "KEYCLAIM_REGISTER_TIMEOUT",
        hide_env_values = true,
        default_value = "10m",
        value_name = "DUR",
        value_parser = args::duration, allow_hyphen_values = true
    )]
    pub register_timeout: Duration,
    /// At that deadline, with workers still absent: start with those present (the
    /// absent are listed as missing), or call the run off.
    #[arg(
        long,
        env = "KEYCLAIM_ON_MISSING",
        hide_env_values = true,
        value_enum,
        default_value_t = OnMissing::Fail,
        value_name = "WHAT"
    )]
    pub on_missing: OnMissing,
    /// How far ahead the start is announced, so that every worker hears it in time.
    #[arg(long, default_value = "2s", value_name = "DUR", value_parser = args::duration, allow_hyphen_values = true)]
    pub start_delay: Duration,
    /// A worker not heard from for this long is lost (a killed pod, a lost node); it is
    /// listed as missing and the rest are merged.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = args::duration, allow_hyphen_values = true)]
    pub heartbeat_timeout: Duration,
    /// From the start, how long to wait for the reports at most.
    #[arg(long, default_value = "6h", value_name = "DUR", value_parser = args::duration, allow_hyphen_values = true)]
    pub collect_timeout: Duration,
    /// After merging, keep serving (and the reports in place, for `kubectl cp`) this
    /// long; Ctrl-C or SIGTERM ends it sooner.
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = args::duration, allow_hyphen_values = true)]
    pub linger: Duration,
    /// Print only the final summary line.
    #[arg(long)]
    pub quiet: bool,
}

impl CoordinateArgs {
    fn settings(&self) -> Result<Settings, String> {
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if self.heartbeat_timeout < Duration::from_millis(30) {
            return Err("--heartbeat-timeout must be at least 30ms".into());
        }
        Ok(Settings {
            workers: self.workers,
            register_timeout: self.register_timeout,
            on_missing: self.on_missing,
            start_delay: self.start_delay,
            heartbeat_timeout: self.heartbeat_timeout,
            collect_timeout: self.collect_timeout,
        })
    }
}

pub fn execute(args: CoordinateArgs, console: &Console) -> ExitCode {
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::Usage;
        }
    };
    if let Err(err) = crate::report::check_writable(&args.report_dir) {
        eprintln!("error: --report-dir {}: {err:#}", args.report_dir.display());
        return ExitCode::Usage;
    }
    let runtime = match runtime(None) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::Failed;
        }
    };
    runtime.block_on(coordinate(args, settings, console))
}

async fn coordinate(args: CoordinateArgs, settings: Settings, console: &Console) -> ExitCode {
    let mut signals = match ShutdownSignals::new() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("error: cannot listen for signals: {err}");
            return ExitCode::Failed;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: --listen {}: {err}", args.listen);
            return ExitCode::Usage;
        }
    };
    let address = listener.local_addr().unwrap_or(args.listen);
    println!("listening on http://{address}");
    std::io::stdout().flush().ok();

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("interrupted: merging what was reported (again to quit at once)");
        on_signal.cancel();
        signals.recv().await;
        std::process::exit(i32::from(ExitCode::Interrupted.code()));
    });
    let coordinator = Coordinator::new(settings);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(rendezvous::serve(
        listener,
        Arc::clone(&coordinator),
        shutdown.clone(),
    ));
    if !args.quiet {
        tokio::spawn(tell_progress(Arc::clone(&coordinator)));
    }

    let code = match coordinator.collect(&cancel).await {
        Collected::Aborted { why } => {
            eprintln!("error: the run was called off: {why}");
            ExitCode::Failed
        }
        Collected::Reports { reports, missing } => {
            match merge_reports(&args.report_dir, &reports, missing) {
                Ok(mut report) => {
                    report.interrupted |= cancel.is_cancelled();
                    let out = args.report_dir.join("merged");
                    let redactor = Redactor::new(Vec::<String>::new());
                    match crate::report::write_all(&report, &out, &redactor) {
                        Ok(_) => {
                            coordinator.set_merged();
                            console::print(&report, &redactor, &out, args.quiet, console.color);
                            if report.interrupted {
                                ExitCode::Interrupted
                            } else if report.passed {
                                ExitCode::Ok
                            } else {
                                ExitCode::Failed
                            }
                        }
                        Err(err) => {
                            eprintln!("error: cannot write the merged reports: {err:#}");
                            ExitCode::Failed
                        }
                    }
                }
                Err(why) => {
                    eprintln!("error: {why}");
                    ExitCode::Failed
                }
            }
        }
    };
    // Only merged reports are worth lingering for; a run called off ends at once, so
    // that its Job fails promptly.
    if !args.linger.is_zero() && !cancel.is_cancelled() && coordinator.status().phase == "collected"
    {
        eprintln!(
            "reports in {}; kept for {} (Ctrl-C or SIGTERM ends this sooner)",
            args.report_dir.display(),
            humantime::format_duration(args.linger)
        );
        tokio::select! {
            () = tokio::time::sleep(args.linger) => {}
            () = cancel.cancelled() => {}
        }
    }
    shutdown.cancel();
    server.await.ok();
    code
}

/// Writes each report as the worker wrote it (`DIR/worker-I/report.json`) and merges
/// them from there, exactly as `merge DIR/worker-*` would.
fn merge_reports(
    dir: &Path,
    reports: &[(u32, String)],
    missing: BTreeMap<u32, String>,
) -> Result<crate::results::RunReport, String> {
    let mut inputs = Vec::with_capacity(reports.len());
    for (index, text) in reports {
        let worker_dir = dir.join(format!("worker-{index}"));
        let path = worker_dir.join(crate::report::JSON_FILE);
        std::fs::create_dir_all(&worker_dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        inputs.push(merge::read(&worker_dir).map_err(|err| err.to_string())?);
    }
    merge::merge_explained(inputs, true, missing).map_err(|err| err.to_string())
}

/// Says on stderr what changes: who registered, the start, who reported, who is missing.
async fn tell_progress(coordinator: Arc<Coordinator>) {
    let mut changes = coordinator.subscribe();
    let mut last: Option<Status> = None;
    loop {
        let status = coordinator.status();
        if last.as_ref() != Some(&status) {
            for line in progress_lines(last.as_ref(), &status) {
                eprintln!("{line}");
            }
            last = Some(status);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

fn progress_lines(before: Option<&Status>, now: &Status) -> Vec<String> {
    let mut lines = Vec::new();
    let was = |pick: fn(&Status) -> &Vec<u32>, index: &u32| {
        before.is_some_and(|b| pick(b).contains(index))
    };
    for index in &now.registered {
        if !was(|s| &s.registered, index) {
            lines.push(format!(
                "worker {index} registered ({} of {})",
                now.registered.len(),
                now.workers
            ));
        }
    }
    if now.phase == "started" && before.is_none_or(|b| b.phase != "started") {
        lines.push(format!("starting workers {}", worker_list(&now.running)));
    }
    for index in &now.reported {
        if !was(|s| &s.reported, index) {
            lines.push(format!("worker {index} reported"));
        }
    }
    for (index, why) in &now.missing {
        if before.is_none_or(|b| !b.missing.contains_key(index)) {
            lines.push(format!("worker {index} missing: {why}"));
        }
    }
    lines
}

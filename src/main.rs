//! The binary: parses arguments, reads the environment and signals, and maps errors
//! to the documented exit codes. Everything else is in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use keyclaim_harness::cli::{
    Cli, Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, KeygenArgs, MergeArgs, RunArgs, ServeArgs,
};
use keyclaim_harness::server;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve(args),
        Command::Keygen(args) => keygen(args),
        Command::Merge(args) => merge(args),
        Command::CryptoBench(args) => match keyclaim_harness::crypto_bench::run(&args) {
            Ok(()) => EXIT_OK,
            Err(err) => {
                eprintln!("error: {err:#}");
                err.exit_code()
            }
        },
    };
    ExitCode::from(code as u8)
}

/// The console summary of a finished (or merged) run, and where its reports are.
fn print_summary(
    report: &keyclaim_harness::report::model::RunReport,
    redactor: &keyclaim_harness::redact::Redactor,
    report_dir: &std::path::Path,
    quiet: bool,
) {
    use std::io::IsTerminal;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let summary =
        keyclaim_harness::report::console::render_summary_redacted(report, color, redactor);
    if quiet {
        if let Some(last) = summary.lines().last() {
            println!("{last}");
        }
    } else {
        print!("{summary}");
        println!("reports: {}", report_dir.display());
    }
}

fn merge(args: MergeArgs) -> i32 {
    use keyclaim_harness::merge;
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
            return EXIT_USAGE;
        }
    };
    // The inputs were redacted when the workers wrote them.
    let redactor = keyclaim_harness::redact::Redactor::new(Vec::<String>::new());
    if let Err(err) = keyclaim_harness::report::write_all(&report, &args.out, &redactor) {
        eprintln!("error: cannot write the merged reports: {err}");
        return EXIT_FAILED;
    }
    print_summary(&report, &redactor, &args.out, args.quiet);
    if report.passed { EXIT_OK } else { EXIT_FAILED }
}

fn serve(args: ServeArgs) -> i32 {
    if args.list_faults {
        print!("{}", server::faults::list_faults());
        return EXIT_OK;
    }
    let resolved = match args.resolve() {
        Ok(resolved) => resolved,
        Err(err) => {
            eprintln!("error: {err:#}");
            return EXIT_USAGE;
        }
    };
    if let Some(key) = &resolved.generated_key {
        eprintln!("no keys given; generated API key: {key}");
    }
    for fault in resolved.config.faults.iter() {
        eprintln!("warning: fault {fault} is on: {}", fault.breaks());
    }
    // One thread: a current-thread runtime, like one nginx worker, with no cross-thread
    // wake-ups; more: tokio's work-stealing scheduler.
    let mut runtime = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return EXIT_FAILED;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush().ok();
        server::run(listener, resolved.config, shutdown_signal()).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => EXIT_OK,
        Err(err) => {
            eprintln!("error: {err:#}");
            EXIT_FAILED
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn keygen(args: KeygenArgs) -> i32 {
    match keyclaim_harness::keygen::write_key_pair(&args.out_dir, args.bits, args.force) {
        Ok(files) => {
            println!(
                "private key: {} (mode 0600; keep it secret)",
                files.private.display()
            );
            println!("public key:  {}", files.public.display());
            EXIT_OK
        }
        Err(keyclaim_harness::keygen::KeygenError::Exists(path)) => {
            eprintln!(
                "error: {}: already exists; pass --force to overwrite it",
                path.display()
            );
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("error: {err}");
            EXIT_FAILED
        }
    }
}

/// Whether to draw live progress: a terminal on stderr, and not CI.
fn interactive(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

fn run(args: RunArgs) -> i32 {
    use keyclaim_harness::progress::ScenarioProgress;
    use keyclaim_harness::runner;
    use std::sync::Arc;

    let options = match args.resolve() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("error: {err:#}");
            return runner::EXIT_INVALID;
        }
    };
    // On one core (e.g. pinned with taskset) a current-thread runtime saves the
    // work-stealing scheduler's cross-thread wake-ups on every request.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_core {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return EXIT_FAILED;
        }
    };
    if let Some(start_at) = options.start_at
        && let Ok(wait) = start_at.duration_since(std::time::SystemTime::now())
    {
        eprintln!(
            "starting at {} (in {})",
            humantime::format_rfc3339_seconds(start_at),
            humantime::format_duration(std::time::Duration::from_secs(wait.as_secs()))
        );
    }
    let progress = Arc::new(ScenarioProgress::new(interactive(args.quiet)));
    let cancel = tokio_util::sync::CancellationToken::new();
    let outcome = runtime.block_on(async {
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("interrupted: stopping, writing reports (again to quit at once)");
            on_interrupt.cancel();
            shutdown_signal().await;
            std::process::exit(runner::EXIT_INTERRUPTED);
        });
        let (on_start, on_done, on_tick) = (
            Arc::clone(&progress),
            Arc::clone(&progress),
            Arc::clone(&progress),
        );
        let observers = runner::Observers {
            on_start: Box::new(move |count| on_start.start(count)),
            on_done: Arc::new(move |report| on_done.scenario_done(report)),
            on_load_tick: Arc::new(move |name, tick| on_tick.load_tick(name, tick)),
        };
        runner::execute(options, cancel.clone(), observers).await
    });
    progress.finish();
    match outcome {
        Ok(outcome) => {
            print_summary(
                &outcome.report,
                &outcome.redactor,
                &outcome.report_dir,
                args.quiet,
            );
            outcome.exit_code()
        }
        Err(err) => {
            match &err {
                // A plan error renders its own `error:` header, compiler-style.
                runner::RunError::Plan(plan) => eprintln!("{plan}"),
                other => eprintln!("error: {other}"),
            }
            err.exit_code()
        }
    }
}

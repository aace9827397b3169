//! The binary: parses arguments, reads the terminal and the environment, installs the
//! panic hook and the warning format, and dispatches to one command. Everything else is
//! in the library.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use keyclaim_harness::commands::process::Console;
use keyclaim_harness::commands::{
    Cli, Command, compare, coordinate, crypto_bench, keygen, merge, plans, run, selftest, serve,
};
use keyclaim_harness::redact::{Redactor, panic_text};

fn main() -> std::process::ExitCode {
    unset_empty_settings();
    let cli = Cli::parse();
    init_tracing();
    let console = Console {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        live: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        panic_redactor: Arc::default(),
    };
    redact_panics(Arc::clone(&console.panic_redactor));
    let code = match cli.command {
        Command::Run(args) => run::execute(args, &console),
        Command::Serve(args) => serve::execute(args),
        Command::Keygen(args) => keygen::execute(args),
        Command::Merge(args) => merge::execute(args, &console),
        Command::Coordinate(args) => coordinate::execute(args, &console),
        Command::CryptoBench(args) => crypto_bench::execute(args),
        Command::Selftest(args) => selftest::execute(args),
        Command::Compare(args) => compare::execute(args),
        Command::Plans(args) => plans::execute(args),
    };
    code.into()
}

/// A `KEYCLAIM_…` variable set to the empty string counts as unset: CI systems pass a
/// secret that is not defined as an empty string (GitHub Actions' `${{ secrets.X }}`),
/// and an empty key or target must not be tested as if it were one.
fn unset_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| {
            value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("KEYCLAIM_"))
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // SAFETY: called first thing in `main`, before any other thread exists that
        // could read the environment.
        unsafe { std::env::remove_var(name) };
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings). Warnings, the one
/// channel for them, read `warning: …` like the rest of the console; other levels keep
/// tracing's full format.
fn init_tracing() {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    struct Format(tracing_subscriber::fmt::format::Format);
    impl<S, N> FormatEvent<S, N> for Format
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &tracing::Event<'_>,
        ) -> std::fmt::Result {
            if *event.metadata().level() == tracing::Level::WARN {
                writer.write_str("warning: ")?;
                ctx.format_fields(writer.by_ref(), event)?;
                writeln!(writer)
            } else {
                self.0.format_event(ctx, writer, event)
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .event_format(Format(tracing_subscriber::fmt::format::Format::default()))
        .init();
}

/// Panic messages go through the run's redactor once it has one: a panic whose message
/// carries a secret (an answer echoed into an assertion, say) must not print it. Thread,
/// location and a backtrace (with `RUST_BACKTRACE`) are kept, as the default hook prints
/// them; before a redactor exists, the default hook prints.
fn redact_panics(redactor: Arc<OnceLock<Arc<Redactor>>>) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(redactor) = redactor.get() else {
            return default(info);
        };
        let thread = std::thread::current();
        let location = info.location().map(ToString::to_string);
        eprintln!(
            "{}",
            panic_text(
                redactor,
                thread.name().unwrap_or("<unnamed>"),
                location.as_deref(),
                info.payload_as_str(),
            )
        );
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

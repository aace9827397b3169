//! What the commands need from the process: what the binary found out about the
//! terminal, a tokio runtime sized to the cores, and the shutdown signals.

use std::sync::{Arc, OnceLock};

use crate::redact::Redactor;

/// What `main` found out about where output goes (it is the only reader of the TTY and
/// the environment besides clap).
#[derive(Clone, Default)]
pub struct Console {
    /// stdout is a terminal and `NO_COLOR` is unset: the summary may use colour.
    pub color: bool,
    /// stderr is a terminal and `CI` is unset: live progress may be drawn.
    pub live: bool,
    /// Where a run registers its redactor, so the binary's panic hook hides its secrets.
    pub panic_redactor: Arc<OnceLock<Arc<Redactor>>>,
}

/// A runtime for `threads` worker threads: one is a current-thread runtime (like one
/// nginx worker, no cross-thread wake-ups); `None` is one per available core.
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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

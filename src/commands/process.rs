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

/// Ctrl-C and SIGTERM, listened for from the moment this is made (a signal future
/// registers only when first polled): a signal in a command's first moments, while it
/// loads plans or starts a server, is then handled, not fatal.
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Must be called inside a runtime (`Runtime::enter` or `block_on`).
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok();
        }
    }
}

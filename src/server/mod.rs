//! The reference KeyClaim server: a correct, fast implementation of SPEC.md that can
//! also run with deliberate faults (`faults`) and injected stalls (`PauseSchedule`).
//!
//! [`run`] takes its listener and a shutdown future, so tests bind port 0 and stop it
//! cleanly; [`spawn`] does that in the background for in-process use.

pub mod faults;
pub mod keys;
mod routes;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::protocol::{CREATE_PATH, VALIDATE_PATH};
use faults::FaultSet;
use keys::{KeyRegistry, KeySpec, KeysError};
use store::ChallengeStore;

/// Largest request body accepted; KeyClaim bodies are a few hundred bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;
/// Outstanding challenges one key may hold before create answers `rate_limited`.
pub const DEFAULT_MAX_OUTSTANDING: u64 = 100_000;
/// How long used and expired challenges are remembered after their expiry.
pub const DEFAULT_RETAIN_EXPIRED: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything a server needs, resolved from the command line or a test.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub keys: Vec<KeySpec>,
    /// Requests per second per key; 0 = no limit. A key's own limit wins.
    pub rate_limit: u32,
    pub faults: FaultSet,
    pub pause: Option<PauseSchedule>,
    pub max_outstanding: u64,
    pub retain_expired: Duration,
    pub body_limit: usize,
    /// Which RSA implementation encrypts challenges.
    pub rsa_backend: crate::crypto::RsaBackend,
}

impl ServerConfig {
    pub fn new(keys: Vec<KeySpec>) -> Self {
        Self {
            keys,
            rate_limit: 0,
            faults: FaultSet::default(),
            pause: None,
            max_outstanding: DEFAULT_MAX_OUTSTANDING,
            retain_expired: DEFAULT_RETAIN_EXPIRED,
            body_limit: DEFAULT_BODY_LIMIT,
            rsa_backend: crate::crypto::RsaBackend::default(),
        }
    }
}

/// Stop answering for `pause_for` every `every` (the first stall starts at `every`):
/// requests wait, none are dropped. For testing latency measurement under stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseSchedule {
    pub every: Duration,
    pub pause_for: Duration,
}

impl PauseSchedule {
    /// How long a request arriving `elapsed` after start must wait.
    pub fn wait_at(&self, elapsed: Duration) -> Duration {
        if self.every.is_zero() || elapsed < self.every {
            return Duration::ZERO;
        }
        let into_period = Duration::from_nanos((elapsed.as_nanos() % self.every.as_nanos()) as u64);
        self.pause_for.saturating_sub(into_period)
    }
}

pub(crate) struct AppState {
    keys: KeyRegistry,
    store: ChallengeStore,
    faults: FaultSet,
    body_limit: usize,
    max_outstanding: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The axum app for `config`, and its state (for the sweeper).
fn build(config: &ServerConfig) -> Result<(Router, Arc<AppState>), ServerError> {
    let state = Arc::new(AppState {
        keys: KeyRegistry::new(&config.keys, config.rate_limit, config.rsa_backend)?,
        store: ChallengeStore::new(config.max_outstanding, config.retain_expired),
        faults: config.faults.clone(),
        body_limit: config.body_limit,
        max_outstanding: config.max_outstanding,
    });
    let mut router = Router::new()
        .route(CREATE_PATH, post(routes::create))
        .route(VALIDATE_PATH, post(routes::validate))
        .route("/healthz", get(routes::health))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(Arc::clone(&state));
    if let Some(schedule) = config.pause {
        let started = Instant::now();
        router = router.layer(middleware::from_fn_with_state(
            (schedule, started),
            pause_layer,
        ));
    }
    Ok((router, state))
}

async fn pause_layer(
    State((schedule, started)): State<(PauseSchedule, Instant)>,
    request: Request,
    next: Next,
) -> Response {
    let wait = schedule.wait_at(started.elapsed());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    next.run(request).await
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_built(listener, build(&config)?, shutdown).await
}

async fn serve_built(
    listener: TcpListener,
    (router, state): (Router, Arc<AppState>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            // A sweep walks the whole map: on the blocking pool it never holds up the
            // reactor threads that answer requests.
            let state = Arc::clone(&state);
            tokio::task::spawn_blocking(move || state.store.sweep(&state.faults))
                .await
                .ok();
        }
    });
    // No Nagle delay: every answer is one small write the client is waiting for.
    let listener = listener.tap_io(|tcp| {
        tcp.set_nodelay(true).ok();
    });
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    served.map_err(ServerError::Io)
}

/// A server running in the background of this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(ServerError::Io(std::io::Error::other(join))),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks one) and serves in the background.
pub async fn spawn(addr: &str, config: ServerConfig) -> Result<RunningServer, ServerError> {
    // Build first so bad keys fail here, not inside the background task.
    let built = build(&config)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_built(listener, built, async {
        stopped.await.ok();
    }));
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_schedule_stalls_only_inside_its_window() {
        let schedule = PauseSchedule {
            every: Duration::from_secs(5),
            pause_for: Duration::from_millis(500),
        };
        assert_eq!(schedule.wait_at(Duration::from_millis(100)), Duration::ZERO);
        assert_eq!(
            schedule.wait_at(Duration::from_millis(4_999)),
            Duration::ZERO
        );
        assert_eq!(
            schedule.wait_at(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
        assert_eq!(
            schedule.wait_at(Duration::from_millis(5_200)),
            Duration::from_millis(300)
        );
        assert_eq!(
            schedule.wait_at(Duration::from_millis(5_500)),
            Duration::ZERO
        );
        assert_eq!(
            schedule.wait_at(Duration::from_millis(10_100)),
            Duration::from_millis(400)
        );
    }
}

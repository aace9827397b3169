//! The reference KeyClaim server: a correct, fast implementation of SPEC.md that can
//! also run with deliberate faults (`faults`) and injected stalls (`PauseSchedule`).
//!
//! [`run`] takes its listener and a shutdown future, so tests bind port 0 and stop it
//! cleanly; [`spawn`] does that in the background for in-process use. [`Server`] is the
//! built app; [`Server::serve_connection`] speaks HTTP/1.1 on any byte stream, so the
//! fuzzer and tests drive the real connection handling without TCP.
//!
//! Every connection is bounded (SPEC.md §9): a semaphore caps how many are served at
//! once, request heads have a size cap and a deadline (which also closes idle
//! keep-alive connections), bodies have a size cap and a deadline, and an answer the
//! client will not read drops the connection after a deadline.

mod dispatch;
pub mod faults;
mod idle;
mod io;
pub mod keys;
mod metrics;
mod misanswer;
mod routes;
mod state;
pub mod store;
pub mod style;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::protocol::{CREATE_PATH, VALIDATE_PATH};
use dispatch::Dispatch;
use faults::FaultSet;
use keys::{KeyRegistry, KeySpec, KeysError};
use state::AppState;
use store::{ChallengeStore, StoreConfig};
use style::StyleSet;

/// Requests per second per key of a [`ServerConfig::new`]: none, so in-process servers
/// (tests, the embedded target) measure the server, not its limiter, unless they ask.
pub const DEFAULT_RATE_LIMIT: u32 = 0;
/// What `serve` limits each key to unless told otherwise: a public server without a
/// limit is the `never-rate-limit` fault, and its own suite fails it. Load tests of
/// `serve` pass `--rate-limit 0`.
pub const SERVE_RATE_LIMIT: u32 = 50;
/// Requests a key may send at once before `serve`'s rate counts: a whole conformance run
/// (but its rate-limit burst) fits, so no scenario waits on the limit.
pub const SERVE_RATE_BURST: u32 = 500;
/// Largest request body accepted; KeyClaim bodies are a few hundred bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;
/// What the challenge store may hold, across all keys and states (SPEC.md §9): at
/// 60-70 bytes a challenge, some 60 million, so a load test at 500,000 creates a second
/// with ttl 30 runs a minute without meeting it (each is kept for its TTL and then
/// `--retain-expired`), and a 24 GiB machine keeps most of its memory.
pub const DEFAULT_MAX_MEMORY: usize = 4 << 30;
/// The smallest `--max-memory`: each of the store's shards holds at least a few
/// thousand challenges.
pub const MIN_MAX_MEMORY: usize = 1 << 20;
/// How long used and expired challenges are remembered after their expiry.
pub const DEFAULT_RETAIN_EXPIRED: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Connections served at once; more wait in the kernel's accept backlog. Far above a
/// load generator's pool (the nginx comparison uses 50), far below memory trouble:
/// each connection holds at most a header buffer and a body under their caps.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Largest request head (request line and headers); larger gets 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a connection may go without starting a request (a slow head, or idle
/// between keep-alive requests) before it is closed; see `idle`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive after its head.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may sit unwritten because the client stopped reading.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper refuses a read buffer below this (its `MINIMUM_MAX_BUFFER_SIZE`).
const MIN_READ_BUFFER: usize = 8 * 1024;

/// Everything a server needs, resolved from the command line or a test.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub keys: Vec<KeySpec>,
    /// Requests per second per key; 0 = no limit. A key's own limit wins.
    pub rate_limit: u32,
    /// Requests a key may send at once before its rate counts; `None` = the rate.
    pub rate_burst: Option<u32>,
    pub faults: FaultSet,
    /// The choices the docs leave open, when not the reference's.
    pub styles: StyleSet,
    pub pause: Option<PauseSchedule>,
    /// Outstanding challenges one key may hold; `None` for no per-key cap.
    pub max_outstanding: Option<u64>,
    /// Bytes the challenge store may hold, across all keys and states.
    pub max_memory: usize,
    pub retain_expired: Duration,
    pub body_limit: usize,
    /// Which RSA implementation encrypts challenges.
    pub rsa_backend: crate::crypto::RsaBackend,
    /// Connections served at once: each holds buffers and a task, so the count is
    /// what bounds the server's memory against many clients.
    pub max_connections: usize,
    /// Cap on a request head, so one client cannot make the server buffer headers
    /// without end.
    pub max_header_bytes: usize,
    /// Deadline for starting a request (a head, or the next one on a keep-alive
    /// connection), against clients that send headers byte by byte (slowloris).
    pub header_timeout: Duration,
    /// Deadline for a request body after its head, against clients that stall
    /// mid-body while holding a connection.
    pub body_timeout: Duration,
    /// Deadline for writing an answer, against clients that stop reading.
    pub send_timeout: Duration,
}

impl ServerConfig {
    pub fn new(keys: Vec<KeySpec>) -> Self {
        Self {
            keys,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: None,
            faults: FaultSet::default(),
            styles: StyleSet::default(),
            pause: None,
            max_outstanding: None,
            max_memory: DEFAULT_MAX_MEMORY,
            retain_expired: DEFAULT_RETAIN_EXPIRED,
            body_limit: DEFAULT_BODY_LIMIT,
            rsa_backend: crate::crypto::RsaBackend::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
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

/// A built server: routes, state and connection settings, ready to serve connections.
/// Cloning it is cheap (reference counts), for handing to connection tasks.
#[derive(Clone)]
pub struct Server {
    service: Dispatch,
    state: Arc<AppState>,
    http: http1::Builder,
    header_timeout: Duration,
    send_timeout: Duration,
    max_connections: usize,
}

impl Server {
    /// Builds the app for `config`; bad keys fail here.
    pub fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        let keys = KeyRegistry::new(
            &config.keys,
            config.rate_limit,
            config.rate_burst,
            config.rsa_backend,
        )?;
        let all_keys = if config.faults.has(faults::Fault::HmacAnyKey) {
            keys.all()
        } else {
            Vec::new()
        };
        let state = Arc::new(AppState {
            keys,
            store: ChallengeStore::new(StoreConfig {
                max_outstanding_per_key: config.max_outstanding,
                max_memory: config.max_memory,
                retain: config.retain_expired,
                faults: config.faults,
                styles: config.styles,
                all_keys,
            }),
            faults: config.faults,
            styles: config.styles,
            body_limit: config.body_limit,
            body_timeout: config.body_timeout,
            max_outstanding: config.max_outstanding,
            counters: metrics::Counters::default(),
        });
        // Deliberately broken (`any-method`): every method is answered as POST is.
        let any_method = config.faults.has(faults::Fault::AnyMethod);
        let (create, validate) = if any_method {
            (any(create_route), any(validate_route))
        } else {
            (post(create_route), post(validate_route))
        };
        let mut router = Router::new()
            .route(CREATE_PATH, create)
            .route(VALIDATE_PATH, validate)
            .route("/healthz", get(routes::health))
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
            .with_state(Arc::clone(&state));
        // A layer must see every request, so with one the endpoints go through the router.
        let layered = misanswer::needed(&config.faults) || config.pause.is_some();
        if misanswer::needed(&config.faults) {
            router = router.layer(middleware::from_fn_with_state(
                config.faults,
                misanswer::layer,
            ));
        }
        if let Some(schedule) = config.pause {
            let started = Instant::now();
            router = router.layer(middleware::from_fn_with_state(
                (schedule, started),
                pause_layer,
            ));
        }
        let mut http = http1::Builder::new();
        http.keep_alive(true)
            // A client may shut down its sending side once its requests are out
            // (`nc -N`, some HTTP/1.0 tools): answer what it sent rather than dropping
            // requests that were already read.
            .half_close(true)
            // `idle::close_when_idle` does this for a fraction of the cost.
            .header_read_timeout(None::<Duration>)
            // Over the cap hyper answers 431 and closes.
            .max_header_size(config.max_header_bytes)
            // The read buffer never needs more than one head: body bytes are handed
            // on as they arrive. This bounds per-connection memory (default ~400 KB).
            .max_buf_size(config.max_header_bytes.max(MIN_READ_BUFFER));
        Ok(Self {
            service: Dispatch::new(Arc::clone(&state), router, !layered),
            state,
            http,
            header_timeout: config.header_timeout,
            send_timeout: config.send_timeout,
            max_connections: config.max_connections.max(1),
        })
    }

    /// A registry of this server's figures (creates, validations by verdict,
    /// rate-limited answers, the store's size and memory) for `live::Bound::serve`.
    pub fn metrics(&self) -> prometheus_client::registry::Registry {
        let mut registry = prometheus_client::registry::Registry::with_prefix("keyclaim_server");
        registry.register_collector(Box::new(Figures(Arc::clone(&self.state))));
        registry
    }

    /// Serves HTTP/1.1 on one connection until the client closes it, a deadline or a
    /// cap ends it, or the input is not HTTP. Errors are the client's and end only this
    /// connection, so they are not returned.
    pub async fn serve_connection<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.drive(io, std::convert::identity).await;
    }

    /// Serves `io` until it ends or its header deadline closes it; `watch` wraps the
    /// hyper connection (for graceful shutdown).
    async fn drive<I, W, F>(&self, io: I, watch: W)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        W: FnOnce(Connection<I>) -> F,
        F: Future<Output = Result<(), hyper::Error>>,
    {
        let (service, activity) = idle::Counted::new(self.service.clone());
        let io = TokioIo::new(io::SendDeadline::new(io, self.send_timeout));
        let connection = watch(self.http.serve_connection(io, service));
        match idle::close_when_idle(connection, &activity, self.header_timeout).await {
            Some(Err(err)) => tracing::trace!("connection ended: {err}"),
            Some(Ok(())) => {}
            None => tracing::trace!("connection closed: no request within the header timeout"),
        }
    }
}

type Connection<I> = http1::Connection<TokioIo<io::SendDeadline<I>>, idle::Counted>;

/// The endpoints as routes, for requests that go through the router (see `dispatch`).
async fn create_route(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    routes::create(&app, parts, body).await
}

async fn validate_route(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    routes::validate(&app, parts, body).await
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
    serve_built(listener, Server::new(&config)?, shutdown).await
}

/// The server's figures as `prometheus-client` collects them at each scrape.
struct Figures(Arc<AppState>);

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

impl prometheus_client::collector::Collector for Figures {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        metrics::encode(
            &self.0.counters,
            self.0.store.len(),
            self.0.store.memory(),
            encoder,
        )
    }
}

/// [`run`] for a server already built (to read its [`Server::metrics`] too).
pub async fn serve_built(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = Arc::clone(&server.state);
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            // A sweep walks the whole map: on the blocking pool it never holds up the
            // reactor threads that answer requests.
            let state = Arc::clone(&state);
            tokio::task::spawn_blocking(move || state.store.sweep())
                .await
                .ok();
        }
    });
    // A permit per connection, taken before accept: over the limit, new connections
    // wait in the kernel's backlog (connect succeeds, the answer waits) rather than
    // being accepted and dropped, so a burst slows down instead of failing.
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
        };
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        // No Nagle delay: every answer is one small write the client is waiting for.
        tcp.set_nodelay(true).ok();
        let server = server.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            server
                .drive(tcp, |connection| watcher.watch(connection))
                .await;
            drop(permit);
        });
    }
    drop(listener);
    // In-flight requests finish; idle connections close at once. Every wait a
    // connection can be in has a deadline, so this ends.
    graceful.shutdown().await;
    sweeper.abort();
    Ok(())
}

/// Per-connection accept errors (the peer gave up) are skipped; others, such as
/// running out of file descriptors, pause accepting briefly instead of spinning or
/// ending the server, as hyper and axum do.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    let server = Server::new(&config)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_built(listener, server, async {
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

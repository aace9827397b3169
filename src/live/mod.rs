//! Live metrics for dashboards: an OpenMetrics text endpoint (`GET /metrics`) that a
//! Prometheus server scrapes while a run (`run --metrics-listen`) or a server (`serve
//! --metrics-listen`) goes on. Built on the `prometheus-client` crate: this room holds
//! the endpoint ([`serve`]) and the load run's metrics ([`load`]); the reference server
//! keeps its own counters (`server::ServerMetrics`) and registers them here.
//!
//! Nothing here sits on a request's path: the load engine's aggregator hands over each
//! batch of samples under one lock, and a scrape reads what is there.

pub mod load;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The media type of the OpenMetrics text format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The path Prometheus scrapes by default.
pub const PATH: &str = "/metrics";

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

/// Serves `registry` at [`PATH`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(PATH, get(scrape)).with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A metrics listener bound before anything runs, so a bad address fails the command
/// at once (exit 2) rather than after a run.
pub struct Bound {
    listener: TcpListener,
}

impl Bound {
    /// Binds `addr` (`127.0.0.1:9464`, `[::]:9464`, `0.0.0.0:0`).
    pub async fn bind(addr: &str) -> std::io::Result<Bound> {
        Ok(Bound {
            listener: TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts serving `registry` in the background.
    pub fn serve(self, registry: Registry) -> Endpoint {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(self.listener, Arc::new(registry), async {
            stopped.await.ok();
        }));
        Endpoint { stop, task }
    }
}

/// A running metrics endpoint; [`Endpoint::stop`] ends it.
pub struct Endpoint {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Endpoint {
    /// Stops serving and waits for open scrapes to finish.
    pub async fn stop(self) {
        self.stop.send(()).ok();
        if let Ok(Err(err)) = self.task.await {
            tracing::warn!("the metrics endpoint failed: {err}");
        }
    }
}

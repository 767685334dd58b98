//! Builds the API from settings: connects, migrates, binds, then serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::Settings;
use accunode_core::dependencies::Dependencies;
use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Route, Server};

use crate::metrics::{HttpMetrics, metrics_endpoint};

/// How long in-flight requests may take to finish after a stop signal. Matches
/// the load balancer's deregistration delay, so draining never cuts a request.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(30);

/// What every handler can reach through `Data<&AppState>`.
#[derive(Clone)]
pub struct AppState {
    pub dependencies: Dependencies,
    pub settings: Arc<Settings>,
}

/// A built API, bound to its port but not yet serving.
pub struct Application {
    acceptor: TcpAcceptor,
    address: SocketAddr,
    state: AppState,
}

impl Application {
    /// Connects to PostgreSQL (waiting up to its connect timeout), applies the
    /// migrations, connects to Redis and binds the listening socket.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let dependencies = Dependencies::connect(&settings).await?;
        let requested = SocketAddr::new(settings.api.host, settings.api.port);
        let acceptor = TcpListener::bind(requested)
            .into_acceptor()
            .await
            .with_context(|| format!("binding {requested}"))?;
        let address = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .context("the listener reported no local address")?;
        Ok(Self {
            acceptor,
            address,
            state: AppState {
                dependencies,
                settings: Arc::new(settings),
            },
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let app = routes(self.state);
        tracing::info!(address = %self.address, "API listening");
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(GRACEFUL_SHUTDOWN))
            .await
            .context("serving HTTP")
    }
}

/// The whole route tree: the OpenAPI operations, their document, Swagger UI and
/// the metrics, all inside the one observing middleware.
pub fn routes(state: AppState) -> impl poem::Endpoint {
    let api = crate::api::service();
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let metrics = Arc::new(HttpMetrics::new());
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/metrics", metrics_endpoint)
        .data(state)
        .data(metrics.clone())
        .around(move |endpoint, request| {
            crate::middleware::observe(endpoint, request, metrics.clone())
        })
}

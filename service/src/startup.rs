//! Builds the API from settings: connects, migrates, binds, then serves until told to stop.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::Settings;
use accunode_core::dependencies::Dependencies;
use accunode_core::scoring::ModelKind;
use accunode_core::scoring::registry::Models;
use accunode_core::uploads::UploadStore;
use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::Cors;
use poem::{EndpointExt, Route, Server};
use tokio::signal::unix::{SignalKind, signal};

use crate::auth::password::Passwords;
use crate::auth::sessions::Sessions;
use crate::auth::tokens::TokenKeys;
use crate::cache::PredictionCache;
use crate::cloudwatch::Publisher;
use crate::email::OutboxSender;
use crate::metrics::{HttpMetrics, metrics_endpoint};
use crate::rate_limit::{RateLimiter, Throttle};
use crate::state::AppState;

/// How long in-flight requests may take to finish after a stop signal. Matches
/// the load balancer's deregistration delay, so draining never cuts a request.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(30);

/// How often queued mail is looked at when a mail server is configured.
const MAIL_INTERVAL: Duration = Duration::from_secs(2);

/// A built API, bound to its ports but not yet serving.
pub struct Application {
    acceptor: TcpAcceptor,
    address: SocketAddr,
    /// The operations listener on 127.0.0.1: metrics and detailed health,
    /// never behind the load balancer.
    ops_acceptor: TcpAcceptor,
    ops_address: SocketAddr,
    state: AppState,
    mailer: Option<OutboxSender>,
}

impl Application {
    /// Loads the model bundles, connects to PostgreSQL (waiting up to its
    /// connect timeout), applies the migrations, connects to Redis and binds
    /// the listening socket.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Models first: a misconfigured bundle fails in milliseconds, before
        // start-up waits on any connection.
        let models = Models::load(&settings.models, &settings.aws)
            .await
            .with_context(|| format!("loading the models from {}", settings.models.source))?;
        for kind in [ModelKind::Annual, ModelKind::Quarterly] {
            let bundle = models.get(kind);
            tracing::info!(
                ?kind,
                id = bundle.id(),
                version = bundle.version(),
                "model loaded"
            );
        }
        let dependencies = Dependencies::connect(&settings).await?;
        let (acceptor, address) =
            bind(SocketAddr::new(settings.api.host, settings.api.port)).await?;
        let (ops_acceptor, ops_address) = bind(SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            settings.api.ops_port,
        ))
        .await?;
        let sessions = Sessions::new(
            dependencies.pool.clone(),
            dependencies.redis.clone(),
            TokenKeys::new(&settings.jwt_secret_key, settings.api.auth.access_token_ttl),
            settings.api.auth.refresh_token_ttl,
        );
        let mailer = match &settings.api.smtp_url {
            Some(url) => Some(OutboxSender::new(
                dependencies.pool.clone(),
                url,
                &settings.api.email_from,
            )?),
            None => None,
        };
        let uploads = match &settings.bulk.location {
            Some(location) => Some(
                UploadStore::connect(
                    location.clone(),
                    settings.aws.endpoint_url.as_deref(),
                    Some(&settings.aws.region),
                )
                .await,
            ),
            None => {
                tracing::info!("BULK_UPLOAD_PATH is unset: bulk uploads answer 503");
                None
            }
        };
        let prediction_cache = PredictionCache::new(
            dependencies.redis.clone(),
            settings.api.prediction_cache_ttl,
        );
        let passwords = Passwords::new(settings.api.auth.password_hashing_slots);
        let throttle = Throttle::new(dependencies.redis.clone(), settings.api.rate_limits.enabled);
        Ok(Self {
            acceptor,
            address,
            ops_acceptor,
            ops_address,
            mailer,
            state: AppState {
                dependencies,
                uploads,
                settings: Arc::new(settings),
                models: Arc::new(models),
                sessions: Arc::new(sessions),
                passwords,
                throttle,
                prediction_cache,
                health: Arc::default(),
            },
        })
    }

    /// The password hashing slots its requests share.
    pub fn passwords(&self) -> Passwords {
        self.state.passwords.clone()
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The operations listener's address (127.0.0.1): `/metrics`, `/health`.
    pub fn ops_address(&self) -> SocketAddr {
        self.ops_address
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let reloader = tokio::spawn(reload_models(
            self.state.models.clone(),
            self.state.settings.models.reload_interval,
        ));
        let metrics = Arc::new(HttpMetrics::new());
        let publisher = match self.state.settings.aws.cloudwatch_interval {
            Some(interval) => {
                let publisher = Publisher::new(&self.state.settings.aws, metrics.clone()).await;
                Some(tokio::spawn(publisher.run(interval)))
            }
            None => None,
        };
        let mailer = self
            .mailer
            .map(|mailer| tokio::spawn(mailer.run(MAIL_INTERVAL)));
        let ops = ops_routes(self.state.clone(), metrics.clone());
        let app = routes(self.state, metrics);
        tracing::info!(address = %self.address, ops_address = %self.ops_address, "API listening");
        let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
        let ops_server = tokio::spawn(
            Server::new_with_acceptor(self.ops_acceptor).run_with_graceful_shutdown(
                ops,
                async {
                    let _ = ops_stopped.await;
                },
                Some(Duration::from_secs(1)),
            ),
        );
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(GRACEFUL_SHUTDOWN))
            .await
            .context("serving HTTP");
        let _ = stop_ops.send(());
        if let Ok(Err(error)) = ops_server.await {
            tracing::warn!(%error, "the operations listener stopped with an error");
        }
        reloader.abort();
        for task in [publisher, mailer].into_iter().flatten() {
            task.abort();
        }
        served
    }
}

/// Binds `requested`; also the address bound (the real port for port 0).
async fn bind(requested: SocketAddr) -> anyhow::Result<(TcpAcceptor, SocketAddr)> {
    let acceptor = TcpListener::bind(requested)
        .into_acceptor()
        .await
        .with_context(|| format!("binding {requested}"))?;
    let address = acceptor
        .local_addr()
        .first()
        .and_then(|addr| addr.as_socket_addr().copied())
        .context("the listener reported no local address")?;
    Ok((acceptor, address))
}

/// The operations listener's routes: the HTTP metrics and the detailed health.
fn ops_routes(state: AppState, metrics: Arc<HttpMetrics>) -> impl poem::Endpoint {
    Route::new()
        .at("/metrics", metrics_endpoint)
        .at("/health", crate::api::ops_health)
        .data(state)
        .data(metrics)
}

/// Reloads the model bundles on SIGHUP and, when configured, every `interval`.
/// A failed reload is logged and the bundles being served stay.
async fn reload_models(models: Arc<Models>, interval: Option<Duration>) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; models reload only on their interval");
            None
        }
    };
    let mut ticker = interval.map(|period| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let hangup_received = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        let tick = async {
            match ticker.as_mut() {
                Some(ticker) => drop(ticker.tick().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = hangup_received => {
                tracing::info!("SIGHUP received, reloading the models");
            }
            () = tick => {}
            else => return,
        }
        match models.reload().await {
            Ok(swaps) if swaps.is_empty() => tracing::info!("models unchanged"),
            Ok(swaps) => {
                for swap in swaps {
                    tracing::info!(kind = ?swap.kind, from = %swap.from, to = %swap.to, "model swapped");
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "model reload failed; the loaded models stay in service");
            }
        }
    }
}

/// The whole public route tree: the OpenAPI operations, their document and
/// Swagger UI, inside the middleware in the original design's order: CORS, security
/// headers, rate limiting, then (per operation) authentication. Outermost is
/// the observing layer (request id, log line, metrics, JSON errors), so every
/// answer, a 429 or a CORS preflight included, is logged and counted.
pub fn routes(state: AppState, metrics: Arc<HttpMetrics>) -> impl poem::Endpoint {
    let api = crate::api::service();
    let document = crate::api::served_document();
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let docs = api.swagger_ui();
    let limiter = Arc::new(RateLimiter {
        settings: state.settings.api.rate_limits.clone(),
        redis: state.dependencies.redis.clone(),
        sessions: state.sessions.clone(),
        trust_forwarded_for: state.settings.api.trust_forwarded_for,
    });
    let origins = state.settings.api.cors_allowed_origins.clone();
    let mut cors = Cors::new()
        .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
        .allow_headers([
            "authorization",
            "content-type",
            "if-none-match",
            "x-request-id",
        ])
        .expose_headers([
            "etag",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "x-request-id",
        ])
        .max_age(600);
    if !origins.iter().any(|origin| origin == "*") {
        cors = cors.allow_origins(origins.iter().map(String::as_str));
    }
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        // The bearer scheme reads the sessions alone, so `auth` needs no `AppState`.
        .data(state.sessions.clone())
        .data(state)
        .data(metrics.clone())
        .around(move |endpoint, request| {
            let limiter = limiter.clone();
            async move { limiter.check(endpoint, request).await }
        })
        .around(crate::control_characters::refuse_in_query)
        .around(crate::headers::secure)
        .with_if(!origins.is_empty(), cors)
        .around(move |endpoint, request| {
            crate::middleware::observe(endpoint, request, metrics.clone())
        })
}

//! The HTTP API (warp): data sets, experiments and ask/tell, jobs, the model
//! registry, serving, tokens and the audit log, and the OpenAPI description
//! of all of it. Every request passes the [guard](guard) first: the route
//! table says who may call what, and the audit log records what they did.

// The OpenAPI schema table is one `json!` literal, deeper than the default
// macro recursion limit of 128 allows.
#![recursion_limit = "256"]

pub mod auth;
pub mod guard;
mod openapi;
pub mod problem;
mod route_table;
mod routes;
mod server;
pub mod serving;
pub mod standalone;

use problem::{recover, ApiError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracseq_core::config::{ApiConfig, DeployConfig, LimitsConfig, ServingConfig};
use tracseq_core::ports::{PredictionCache, SecurityStore};
use tracseq_core::Platform;
use warp::Filter;

pub use openapi::openapi;
pub use server::tls_acceptor;

/// Everything a handler needs, shared by all requests.
pub struct ApiState {
    pub platform: Platform,
    pub api: ApiConfig,
    pub limits: LimitsConfig,
    /// What deploy jobs render with (image, registry, SageMaker role).
    pub deploy: DeployConfig,
    /// Loaded models and the deployed version of each (see [`serving`]).
    pub models: Arc<serving::ModelCache>,
    /// Wakes the scheduler when a request created work.
    pub wake: Arc<Notify>,
    /// Tokens and the audit log.
    pub security: Arc<dyn SecurityStore>,
    /// Tokens found active recently (see [`auth`]).
    pub tokens: auth::TokenCache,
    /// Audit entries that could not be written (exported in `/metrics`).
    pub audit_failures: AtomicU64,
    /// Every prediction, queued for the prediction log (see
    /// [`serving::PredictionLog`]).
    pub prediction_log: serving::PredictionLog,
    /// Answers served again without the model (see [`serving::cache`]).
    pub cache: serving::AnswerCache,
    /// Shadow copies of routed requests (see [`serving::shadow`]).
    pub shadows: serving::shadow::Shadows,
}

/// What `/predict` does beside answering: its settings, and the prediction
/// cache's shared tier when one is configured (the binary builds it from
/// `serving.redis_url`).
#[derive(Clone, Default)]
pub struct ServingSetup {
    pub config: ServingConfig,
    pub shared_cache: Option<Arc<dyn PredictionCache>>,
}

pub type Ctx = Arc<ApiState>;

impl ApiState {
    /// The shared state; inside a tokio runtime the prediction log's writer
    /// starts here (and [`serve`] flushes it at shutdown).
    pub fn new(
        platform: Platform,
        security: Arc<dyn SecurityStore>,
        api: ApiConfig,
        limits: LimitsConfig,
        deploy: DeployConfig,
        serving: ServingSetup,
        wake: Arc<Notify>,
    ) -> Ctx {
        let tokens = auth::TokenCache::new(Duration::from_millis(api.token_cache_ms));
        let prediction_log = serving::PredictionLog::new(&serving.config);
        let cache = serving::AnswerCache::new(&serving.config, serving.shared_cache);
        if tokio::runtime::Handle::try_current().is_ok() {
            prediction_log.start(platform.predictions.clone());
        }
        Arc::new(ApiState {
            platform,
            api,
            limits,
            deploy,
            models: Default::default(),
            wake,
            security,
            tokens,
            audit_failures: AtomicU64::new(0),
            prediction_log,
            cache,
            shadows: Default::default(),
        })
    }
}

/// Every route, with errors turned into JSON problems. This is what runs
/// after the guard; [`serve`] puts the guard in front of it.
pub fn routes(
    ctx: Ctx,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    routes::all(ctx)
        .recover(recover)
        .unify()
        .with(warp::trace::request())
}

/// The api as one callable service: the [guard](guard) in front of the
/// routes. Cheap to clone (both halves are shared).
#[derive(Clone)]
pub struct App {
    ctx: Ctx,
    routes: warp::filters::BoxedFilter<(warp::reply::Response,)>,
}

impl App {
    pub fn new(ctx: Ctx) -> App {
        let routes = routes(ctx.clone()).map(warp::Reply::into_response).boxed();
        App { ctx, routes }
    }

    /// Answers one request from `remote` (the client's address, recorded
    /// in the audit log).
    pub async fn handle<B>(
        &self,
        req: warp::http::Request<B>,
        remote: Option<SocketAddr>,
    ) -> warp::reply::Response
    where
        B: http_body::Body + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        guard::handle(&self.ctx, warp::service(self.routes.clone()), req, remote).await
    }
}

/// Binds `addr` (port 0 picks a free port) and serves until `shutdown`
/// resolves, then finishes in-flight requests. Returns the bound address
/// through `bound` as soon as the listener is up. With `api.tls_cert` and
/// `api.tls_key` set it speaks HTTPS only.
pub async fn serve(
    ctx: Ctx,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let tls = match (&ctx.api.tls_cert, &ctx.api.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls_acceptor(cert, key).map_err(|e| std::io::Error::other(e.to_string()))?)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%local, scheme, "api listening");
    if guard::UNAUTHENTICATED {
        tracing::error!(
            "this build has the `unauthenticated` feature: no request is checked or audited; \
             it exists for benchmarks only"
        );
    }
    // Serve what is deployed from the first request on, then follow deploys.
    if let Err(e) = ctx.models.refresh_deployments(&ctx.platform).await {
        tracing::warn!(error = %e, "reading the live deployments failed; the poller retries");
    }
    let (stop_poll, poll_stopped) = tokio::sync::oneshot::channel::<()>();
    let poller = tokio::spawn(ctx.models.clone().poll_deployments(
        ctx.platform.clone(),
        Duration::from_millis(ctx.api.deployment_poll_ms),
        async move {
            let _ = poll_stopped.await;
        },
    ));
    let _ = bound.send(local);
    server::run(ctx.clone(), listener, tls, shutdown).await;
    drop(stop_poll);
    let _ = poller.await;
    // Every request has been answered: what they logged is written now.
    ctx.prediction_log.close().await;
    Ok(())
}

/// Parses a JSON body with serde's precise messages (unknown fields, wrong
/// types, with line and column) instead of a generic rejection.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

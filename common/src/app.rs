//! Application state and the assembly every function shares: health, readiness, the
//! OpenAPI document, fallbacks, limits, panics, CORS and correlation.

use std::{ops::Deref, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticator,
    blob::Buckets,
    connections::Warehouses,
    db,
    error::{ApiError, Problem},
    extract::{Json, MAX_BODY_BYTES},
    keyring::{self, KeyRing},
    settings::Settings,
    telemetry,
};

/// The in-process column cache's budget (columns of several thousand tables).
const COLUMN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: deadpool_postgres::Pool,
    pub auth: Authenticator,
    pub buckets: Buckets,
    pub key_ring: Arc<dyn KeyRing>,
    pub warehouses: Warehouses,
    /// The data-serving caches.
    pub serving: crate::serving::Serving,
    /// Where jobs (catalog scans) run.
    pub jobs: crate::jobs::Runner,
    /// Verifies the scheduler's OIDC tokens, when `SCHEDULER_*` is configured.
    pub scheduler: Option<(crate::auth::OidcVerifier, String)>,
    /// Table columns by cache key (`catalog/columns/{connection}/{table}/{fingerprint}.json`).
    pub column_cache: moka::future::Cache<String, Arc<crate::catalog::CachedColumns>>,
    /// Which function this process serves (`teams`, …, or `bridge` for all of them).
    pub function: &'static str,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds clients once. Nothing here touches the network: the pool connects lazily, and
    /// so do the object stores and KMS clients.
    pub async fn new(settings: Settings, function: &'static str) -> anyhow::Result<Self> {
        Self::with_jobs(settings, function, None).await
    }

    /// Like [`new`](Self::new), with the job runner given instead of built from the
    /// settings (tests hand in a Lambda invoker with credentials of their own).
    pub async fn with_jobs(
        settings: Settings,
        function: &'static str,
        jobs: Option<crate::jobs::Runner>,
    ) -> anyhow::Result<Self> {
        let url = settings.database_url().context(
            "DATABASE_URL is not set: set it, or run `bridge serve`, which starts a local Postgres",
        )?;
        let db = db::pool(
            url,
            settings.database_ca_file.as_deref(),
            db::PoolOptions {
                max_size: settings.database_pool_size,
                timeout: settings.database_timeout,
                statement_timeout: Some(settings.database_statement_timeout),
            },
        )?;
        let auth = Authenticator::new(&settings.auth, settings.auth_leeway)?;
        let buckets = Buckets::open(&settings.buckets)?;
        let key_ring = keyring::from_settings(&settings.key_ring).await?;
        let scheduler = match &settings.scheduler {
            Some(s) => Some((
                crate::auth::OidcVerifier::new(
                    &s.issuer,
                    &s.audience,
                    s.jwks_url.clone(),
                    Duration::from_secs(30),
                    settings.auth_leeway,
                )?,
                s.service_account.clone(),
            )),
            None => None,
        };
        let serving = crate::serving::Serving::new(settings.result_cache_bytes);
        let jobs = match (jobs, &settings.jobs) {
            (Some(given), _) => given,
            (None, crate::settings::JobSettings::Local) => crate::jobs::Runner::Local,
            (
                None,
                crate::settings::JobSettings::Lambda {
                    function,
                    region,
                    endpoint,
                },
            ) => crate::jobs::Runner::Lambda(
                crate::jobs::LambdaInvoker::new(function.clone(), region.clone(), endpoint.clone())
                    .await?,
            ),
        };
        Ok(Self(Arc::new(Inner {
            settings,
            db,
            auth,
            buckets,
            key_ring,
            warehouses: Warehouses::default(),
            serving,
            jobs,
            scheduler,
            column_cache: moka::future::Cache::builder()
                .weigher(|_, v: &Arc<crate::catalog::CachedColumns>| v.weight())
                .max_capacity(COLUMN_CACHE_BYTES)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            function,
        })))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub function: &'static str,
    pub version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        function: state.function,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The database answers.
#[utoipa::path(get, path = "/ready", tag = "meta", responses(
    (status = 200, body = Health),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(3), db::ping(&state.db)).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ready",
            function: state.function,
            version: env!("CARGO_PKG_VERSION"),
        })),
        Ok(Err(e)) => Err(ApiError::unavailable(e)),
        Err(_) => Err(ApiError::unavailable(anyhow::anyhow!(
            "database ping timed out"
        ))),
    }
}

/// A request's deadline and what a route that waits on a warehouse may have instead.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: Option<tokio::time::Instant>,
    warehouse: Duration,
}

tokio::task_local! {
    /// The deadline of the request this task serves (axum polls a request's handler in its
    /// connection's task), so that a route can move it without a lock or an allocation.
    static DEADLINE: std::cell::Cell<Deadline>;
}

/// Gives the current request until `from_now` from now (never sooner than it had).
pub fn extend_deadline(from_now: Duration) {
    let _ = DEADLINE.try_with(|d| {
        let mut deadline = d.get();
        let wanted = tokio::time::Instant::now() + from_now;
        if let Some(current) = deadline.at
            && current < wanted
        {
            deadline.at = Some(wanted);
            d.set(deadline);
        }
    });
}

/// Lifts the current request's deadline (a stream bounds itself).
pub fn lift_deadline() {
    let _ = DEADLINE.try_with(|d| {
        let mut deadline = d.get();
        deadline.at = None;
        d.set(deadline);
    });
}

/// Before every handler: refuses input no route can take (see
/// [`refuse_control_characters`]), then runs the request under its deadline
/// (`REQUEST_TIMEOUT_MS`): past it, 503 with `Retry-After`, whatever it was waiting on (a
/// stalled database answers nothing, and a server-side `statement_timeout` cannot fire on a
/// server that does not run).
async fn guard_request(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if let Some(refusal) = refuse_control_characters(&req) {
        return refusal;
    }
    let limit = state.settings.request_timeout;
    let deadline = Deadline {
        at: Some(tokio::time::Instant::now() + limit),
        warehouse: state.settings.warehouse.query_timeout + limit,
    };
    DEADLINE
        .scope(std::cell::Cell::new(deadline), async move {
            let run = next.run(req);
            tokio::pin!(run);
            loop {
                let Some(at) = DEADLINE.with(|d| d.get().at) else {
                    return run.await;
                };
                tokio::select! {
                    response = &mut run => return response,
                    () = tokio::time::sleep_until(at) => {
                        let now = tokio::time::Instant::now();
                        if DEADLINE.with(|d| d.get().at).is_some_and(|at| at <= now) {
                            return ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "timeout",
                                "the request did not finish in time; retry shortly",
                            )
                            .into_response();
                        }
                    }
                }
            }
        })
        .await
}

/// Route layer (`middleware::from_fn(allow_warehouse_time)`) for routes that wait on a
/// warehouse: their deadline is the warehouse's query timeout plus `REQUEST_TIMEOUT_MS`.
pub async fn allow_warehouse_time(req: axum::extract::Request, next: middleware::Next) -> Response {
    if let Ok(warehouse) = DEADLINE.try_with(|d| d.get().warehouse) {
        extend_deadline(warehouse);
    }
    next.run(req).await
}

/// A path holding a control character, or a query string holding a NUL, once
/// percent-decoded: no id or slug has one, and no Postgres text column can store a NUL.
fn refuse_control_characters(req: &axum::extract::Request) -> Option<Response> {
    if has_control_character(req.uri().path().as_bytes()) {
        return Some(
            ApiError::invalid_field("path", "must not contain control characters (such as %00)")
                .into_response(),
        );
    }
    if let Some(query) = req.uri().query()
        && has_encoded_nul(query.as_bytes())
    {
        let field = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| k.replace('\0', "\\0"))
            .unwrap_or_else(|| "query".to_owned());
        return Some(
            ApiError::invalid_field(field, "must not contain a NUL character (%00)")
                .into_response(),
        );
    }
    None
}

/// Does the percent-encoded `s` decode to a control character? (No allocation: this runs on
/// every request.)
fn has_control_character(s: &[u8]) -> bool {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut i = 0;
    while i < s.len() {
        let byte = match (
            s[i],
            s.get(i + 1).copied().and_then(hex),
            s.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                i += 3;
                u8::try_from(h * 16 + l).unwrap_or(0)
            }
            (b, _, _) => {
                i += 1;
                b
            }
        };
        if byte.is_ascii_control() {
            return true;
        }
    }
    false
}

fn has_encoded_nul(s: &[u8]) -> bool {
    s.windows(3).any(|w| w == b"%00")
}

async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(description = "Bridge: warehouse catalog, dashboards as YAML, and their data, served fast."),
    modifiers(&BearerAuth),
    components(schemas(Problem, crate::error::FieldError)),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// Adds what every function serves to its routes and wraps them in the shared layers.
pub fn build(routes: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .merge(routes)
        .split_for_parts();
    api.info.title = format!("Bridge {} API", state.function);
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let document = Arc::new(std::sync::OnceLock::<Vec<u8>>::new());
    let api = Arc::new(api);
    let openapi = move || {
        let document = document.clone();
        let api = api.clone();
        async move {
            let body = document.get_or_init(|| serde_json::to_vec(&*api).unwrap_or_default());
            ([(header::CONTENT_TYPE, "application/json")], body.clone())
        }
    };
    let mut router = router
        .route("/openapi.json", axum::routing::get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response));
    if let Some(cors) = cors(&state.settings) {
        router = router.layer(cors);
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), guard_request))
        .layer(middleware::from_fn(telemetry::correlate))
        .with_state(state)
}

fn cors(settings: &Settings) -> Option<CorsLayer> {
    if settings.cors_allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                telemetry::CORRELATION_HEADER,
            ])
            .expose_headers([telemetry::CORRELATION_HEADER, header::ETAG])
            .max_age(Duration::from_secs(600)),
    )
}

/// The whole `main` of a function binary: settings, telemetry, clients, serve.
pub async fn run_function(
    function: &'static str,
    routes: fn() -> OpenApiRouter<AppState>,
    streaming: bool,
) -> ExitCode {
    start(function, routes, move |app, _, port| async move {
        crate::runtime::serve(app, port, streaming).await
    })
    .await
}

/// Like [`run_function`], for a function that also receives non-HTTP Lambda events (a
/// scheduler's): those go to `on_event`.
pub async fn run_function_with_events<F, Fut>(
    function: &'static str,
    routes: fn() -> OpenApiRouter<AppState>,
    on_event: F,
) -> ExitCode
where
    F: Fn(AppState, serde_json::Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
{
    start(function, routes, move |app, state, port| async move {
        crate::runtime::serve_with_events(app, port, move |event| on_event(state.clone(), event))
            .await
    })
    .await
}

async fn start<S, Fut>(
    function: &'static str,
    routes: fn() -> OpenApiRouter<AppState>,
    serve: S,
) -> ExitCode
where
    S: FnOnce(Router, AppState, u16) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            telemetry::init(crate::settings::LogFormat::Json);
            tracing::error!(variable = e.variable, error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let port = settings.port;
    let state = match AppState::new(settings, function).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start");
            return ExitCode::from(2);
        }
    };
    let app = build(routes(), state.clone());
    match serve(app, state, port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

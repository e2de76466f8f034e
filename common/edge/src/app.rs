//! Application state and the assembly every function shares: health, readiness, the
//! OpenAPI document, fallbacks, limits, panics, CORS and correlation.

use std::{ops::Deref, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tower_http::{
    CompressionLevel,
    catch_panic::CatchPanicLayer,
    compression::{
        CompressionLayer, Predicate,
        predicate::{NotForContentType, SizeAbove},
    },
    cors::CorsLayer,
};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticator,
    error::{ApiError, Problem},
    extract::{Json, MAX_BODY_BYTES},
    telemetry,
};
use settings::Settings;
use storage::db;

/// What every function has: its settings, Bridge's database and the authenticator. Cheap to
/// clone. A function that needs more keeps a state of its own holding one of these, and
/// implements `FromRef` for it so that the edge's extractors and routes find it.
#[derive(Clone)]
pub struct Edge(Arc<EdgeInner>);

pub struct EdgeInner {
    pub settings: Settings,
    pub db: deadpool_postgres::Pool,
    pub auth: Authenticator,
    /// Which function this process serves (`teams`, …, or `bridge` for all of them).
    pub function: &'static str,
    /// The API's rate limits per user and per team (`RATE_LIMIT_*`).
    pub limiter: crate::ratelimit::RateLimiter,
    /// Moves on when this process changes who may read what (see
    /// [`AccessEpoch`](crate::tenancy::AccessEpoch)).
    pub access_epoch: crate::tenancy::AccessEpoch,
}

impl Deref for Edge {
    type Target = EdgeInner;
    fn deref(&self) -> &EdgeInner {
        &self.0
    }
}

impl Edge {
    /// Builds the pool and the authenticator. Nothing here touches the network: the pool
    /// connects lazily.
    pub fn new(settings: Settings, function: &'static str) -> anyhow::Result<Self> {
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
        telemetry::observe_pool(&db);
        let limiter = crate::ratelimit::RateLimiter::new(settings.rate_limits);
        Ok(Self(Arc::new(EdgeInner {
            limiter,
            settings,
            db,
            auth,
            function,
            access_epoch: crate::tenancy::AccessEpoch::default(),
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
async fn health(State(state): State<Edge>) -> Json<Health> {
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
async fn ready(State(state): State<Edge>) -> Result<Json<Health>, ApiError> {
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
    State(state): State<Edge>,
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
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the path and query take {uri_len} bytes; at most {MAX_URI_BYTES} are read"
                ),
            )
            .into_response(),
        );
    }
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
    components(schemas(Problem, base::FieldError)),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// The routes with what every function serves (health, ready), and the OpenAPI document
/// describing them, as the routes declare it (`crate::openapi::finish` completes it; `build`
/// does so on the first `GET /openapi.json`, not at start). `function` names the document
/// (`bridge` for every function's routes together).
pub fn assemble<S>(
    routes: OpenApiRouter<S>,
    function: &str,
) -> (Router<S>, utoipa::openapi::OpenApi)
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
{
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .merge(routes)
        .split_for_parts();
    api.info.title = if function == "bridge" {
        "Bridge API".to_owned()
    } else {
        format!("Bridge API: the {function} function")
    };
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    (router, api)
}

/// Adds what every function serves to its routes and wraps them in the shared layers.
pub fn build<S>(routes: OpenApiRouter<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
{
    let edge = Edge::from_ref(&state);
    let (router, api) = assemble(routes, edge.function);
    let document = Arc::new(std::sync::OnceLock::<Vec<u8>>::new());
    let api = Arc::new(api);
    let openapi = move || {
        let document = document.clone();
        let api = api.clone();
        async move {
            let body = document.get_or_init(|| {
                serde_json::to_vec(&crate::openapi::finish(&api)).unwrap_or_default()
            });
            ([(header::CONTENT_TYPE, "application/json")], body.clone())
        }
    };
    let mut router = router
        .route("/openapi.json", axum::routing::get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response));
    if let Some(cors) = cors(&edge.settings) {
        router = router.layer(cors);
    }
    router
        .layer(compression())
        .layer(middleware::from_fn_with_state(edge, guard_request))
        .layer(middleware::from_fn(telemetry::correlate))
        .with_state(state)
}

/// Responses are compressed as `Accept-Encoding` asks (zstd, br, gzip), above a size where
/// it pays, never an event stream (each event must reach the client as it is written).
/// Level 4 of each: most of the size gone for little CPU (brotli's own default, 11, costs
/// milliseconds per response).
fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .quality(CompressionLevel::Precise(4))
        .compress_when(
            SizeAbove::new(MIN_COMPRESSED_BYTES)
                .and(NotForContentType::const_new("text/event-stream"))
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::GRPC),
        )
}

/// Smaller bodies are sent as they are (a compressed frame would save little or nothing).
const MIN_COMPRESSED_BYTES: u64 = 1024;

/// The longest path and query read (longer ones get 414).
const MAX_URI_BYTES: usize = 8 * 1024;

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
                header::IF_NONE_MATCH,
                telemetry::CORRELATION_HEADER,
                HeaderName::from_static("traceparent"),
                HeaderName::from_static("tracestate"),
            ])
            .expose_headers([
                telemetry::CORRELATION_HEADER,
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The whole `main` of a function binary: settings, telemetry, the [`Edge`], the function's
/// own state (`state`, from the edge), serve.
pub async fn run_function<S, B, Fut>(
    function: &'static str,
    state: B,
    routes: fn() -> OpenApiRouter<S>,
    streaming: bool,
) -> ExitCode
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
    B: FnOnce(Edge) -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    start(function, state, routes, move |app, _, port| async move {
        crate::runtime::serve(app, port, streaming).await
    })
    .await
}

/// Like [`run_function`], for a function that also receives non-HTTP Lambda events (a
/// scheduler's, a job's): those go to `on_event`.
pub async fn run_function_with_events<S, B, BFut, F, Fut>(
    function: &'static str,
    state: B,
    routes: fn() -> OpenApiRouter<S>,
    on_event: F,
) -> ExitCode
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
    B: FnOnce(Edge) -> BFut,
    BFut: Future<Output = anyhow::Result<S>>,
    F: Fn(S, serde_json::Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
{
    start(
        function,
        state,
        routes,
        move |app, state, port| async move {
            crate::runtime::serve_with_events(app, port, move |event| {
                on_event(state.clone(), event)
            })
            .await
        },
    )
    .await
}

async fn start<S, B, BFut, Run, Fut>(
    function: &'static str,
    state: B,
    routes: fn() -> OpenApiRouter<S>,
    serve: Run,
) -> ExitCode
where
    S: Clone + Send + Sync + 'static,
    Edge: FromRef<S>,
    B: FnOnce(Edge) -> BFut,
    BFut: Future<Output = anyhow::Result<S>>,
    Run: FnOnce(Router, S, u16) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            telemetry::init(settings::LogFormat::Json);
            tracing::error!(variable = e.variable, error = %e, "invalid settings");
            return ExitCode::from(2);
        }
    };
    telemetry::init_with(settings.log_format, &settings.otel, function);
    let port = settings.port;
    let built = match Edge::new(settings, function) {
        Ok(edge) => state(edge).await,
        Err(e) => Err(e),
    };
    let state = match built {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start");
            return ExitCode::from(2);
        }
    };
    let app = build(routes(), state.clone());
    let served = serve(app, state, port).await;
    telemetry::shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

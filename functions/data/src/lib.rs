//! The data function: a dashboard's data (members). Every query of the current version, or
//! one of them, with parameters from the query string; answered from cache when possible.
//! See `services::serving`.

mod encoded;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::HeaderMap,
    response::Response,
};
use base::domain::Role;
use edge::Edge;
use edge::{ApiError, ApiResult, CurrentUser, conditional, error::Problem, extract::Path};
use services::{
    AppState, dashboards::Dashboard, ready, serving, serving::DashboardData, serving::Outcome,
    serving::QueryData, serving::Ready, serving::ReadyKey, serving::Serving,
};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard_data))
        .routes(routes!(query_data))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
}

/// The dashboard's parameters, as the query string (documentation: the names and types are
/// the dashboard's own `parameters`, so the document cannot list them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DashboardParameters {
    /// Each of the dashboard's `parameters` by name, e.g. `?region=EMEA&since=2025-01-01`;
    /// unknown names and ill-typed values are refused (400) naming the parameter.
    #[param(style = Form, explode, value_type = Option<HashMap<String, String>>)]
    parameters: Option<HashMap<String, String>>,
}

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Whether a response may be kept ready: every query was served from the cache (a freshly
/// run result says `cache_hit: false`, which the next read would not) and the results stay
/// fresh for a while (a failure makes max-age 0).
fn keepable(outcomes: &[(String, Outcome)], validators: &serving::Validators) -> bool {
    validators.max_age_secs > 0
        && outcomes.iter().all(|(_, o)| {
            matches!(
                o,
                Outcome::Served {
                    cache_hit: true,
                    ..
                }
            )
        })
}

/// Puts on the `data.serve` span whether the caches answered every query.
fn record_serve(executed: usize) {
    let span = tracing::Span::current();
    span.record("cache_hit", executed == 0);
    span.record("queries_executed", executed);
}

/// The response ready at `key`, if one is: a warm read is this lookup and a write of its
/// bytes (or a 304), after the access check (see `services::ready`).
async fn ready(serving: &Serving, key: &ReadyKey, headers: &HeaderMap) -> Option<Response> {
    let ready = serving.caches().ready(key).await?;
    record_serve(0);
    serving.count_ready_hits(&ready);
    Some(ready.respond(headers))
}

/// The answer made of `outcomes`, or 304 when the caller's copy (`If-None-Match`) is
/// current. The body is sent in the coding `Accept-Encoding` prefers ([`encoded::negotiate`]),
/// compressed here rather than by the compression layer; a response made only of cached
/// results is kept ready at `key` (rendered and compressed once) until the soonest of them
/// expires.
async fn answer(
    serving: &Serving,
    headers: &HeaderMap,
    key: ReadyKey,
    coding: encoded::Coding,
    validators: &serving::Validators,
    outcomes: &[(String, Outcome)],
    body: impl FnOnce() -> Vec<u8> + Send,
) -> Response {
    if ready::is_current(headers, &validators.etag) {
        return ready::not_modified(conditional::etag(&validators.etag));
    }
    let fresh_for = Duration::from_secs(validators.max_age_secs);
    if !keepable(outcomes, validators) {
        let encoded = encoded::encode(coding, body(), fresh_for).await;
        return ready::ok(conditional::etag(&validators.etag), &encoded);
    }
    let result_keys: Vec<String> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Served { key, .. } => Some(key.clone()),
            Outcome::Failed(_) => None,
        })
        .collect();
    let made = serving
        .caches()
        .ready_or(key, &validators.etag, async {
            let encoded = encoded::encode(coding, body(), fresh_for).await;
            Ready::new(validators.etag.clone(), encoded, result_keys)
        })
        .await;
    made.respond(headers)
}

/// The data of every query of the dashboard's current version (members). Parameters come as
/// the query string (`?region=EMEA`), typed by the dashboard's `parameters`. One failing
/// query yields an `error` for it alone (`result_too_large` past the result cap,
/// `response_too_large` past the response budget). Values are JSON in column order;
/// decimals (`NUMERIC`, `BIGNUMERIC`, Postgres `numeric`) are strings holding every digit.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/data", tag = "data",
    params(("slug" = String, Path), DashboardParameters, ("If-None-Match" = Option<String>, Header, description = "ETags the caller holds: 304 when one is current")),
    responses(
        (status = 200, body = DashboardData, description = "Every query's data, or its error",
            headers(("ETag" = String, description = "The results' identity"), ("Cache-Control" = String, description = "`private, no-cache`: revalidate with the ETag"))),
        (status = 304, description = "Not modified: the `If-None-Match` copy is current"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Unknown or ill-typed parameter"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(name = "data.serve", skip_all, fields(
    dashboard_slug = %slug, cache_hit = tracing::field::Empty, queries_executed = tracing::field::Empty,
))]
async fn dashboard_data(
    State(serving): State<Serving>,
    State(edge): State<Edge>,
    user: CurrentUser,
    Path(slug): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let access = serving.access(&slug, &user, Role::Viewer).await?;
    let dashboard = access.dashboard.clone();
    edge.limiter.team(&edge.db, dashboard.team_id).await?;
    let coding = encoded::negotiate(req.headers());
    let key = ReadyKey::new(&dashboard, None, req.uri().query(), coding.token());
    if let Some(response) = ready(&serving, &key, req.headers()).await {
        return Ok(response);
    }
    // The rest, boxed: the warm read's future stays small (every layer moves it).
    Box::pin(dashboard_data_made(
        serving, edge, user, dashboard, key, coding, req,
    ))
    .await
}

/// [`dashboard_data`] past the ready responses: the queries through the caches and the
/// warehouse.
async fn dashboard_data_made(
    serving: Serving,
    edge: Edge,
    user: CurrentUser,
    dashboard: Arc<Dashboard>,
    key: ReadyKey,
    coding: encoded::Coding,
    req: Request,
) -> ApiResult<Response> {
    let plan = serving.plan(&dashboard).await?;
    let values = serving::bind_parameters(&plan.spec, &query_pairs(&req))?;
    let (outcomes, executed) = serving
        .run(dashboard.clone(), plan, values, None, user.id)
        .await;
    record_serve(executed);
    let validators = serving::validators(&dashboard, &outcomes);
    let budget = edge.settings.max_response_bytes;
    Ok(answer(
        &serving,
        req.headers(),
        key,
        coding,
        &validators,
        &outcomes,
        || serving::render_dashboard(&dashboard, &outcomes, budget),
    )
    .await)
}

/// One query's data (members): `{columns, rows, metadata}`, or a problem if it fails.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/query/{query_id}/data", tag = "data",
    params(("slug" = String, Path), ("query_id" = String, Path), DashboardParameters, ("If-None-Match" = Option<String>, Header, description = "ETags the caller holds: 304 when one is current")),
    responses(
        (status = 200, body = QueryData, description = "The query's data",
            headers(("ETag" = String, description = "The result's identity"), ("Cache-Control" = String, description = "`private, no-cache`: revalidate with the ETag"))),
        (status = 304, description = "Not modified: the `If-None-Match` copy is current"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "The warehouse refused the query"),
        (status = 502, body = Problem, content_type = "application/problem+json", description = "The warehouse failed"),
))]
#[tracing::instrument(name = "data.serve", skip_all, fields(
    dashboard_slug = %slug, query_id = %query_id, cache_hit = tracing::field::Empty,
    queries_executed = tracing::field::Empty,
))]
async fn query_data(
    State(serving): State<Serving>,
    State(edge): State<Edge>,
    user: CurrentUser,
    Path((slug, query_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let access = serving.access(&slug, &user, Role::Viewer).await?;
    let dashboard = access.dashboard.clone();
    edge.limiter.team(&edge.db, dashboard.team_id).await?;
    let coding = encoded::negotiate(req.headers());
    let key = ReadyKey::new(
        &dashboard,
        Some(&query_id),
        req.uri().query(),
        coding.token(),
    );
    if let Some(response) = ready(&serving, &key, req.headers()).await {
        return Ok(response);
    }
    Box::pin(query_data_made(
        serving, user, dashboard, query_id, key, coding, req,
    ))
    .await
}

/// [`query_data`] past the ready responses.
async fn query_data_made(
    serving: Serving,
    user: CurrentUser,
    dashboard: Arc<Dashboard>,
    query_id: String,
    key: ReadyKey,
    coding: encoded::Coding,
    req: Request,
) -> ApiResult<Response> {
    let plan = serving.plan(&dashboard).await?;
    let index = plan
        .queries
        .iter()
        .position(|q| q.id == query_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "query_not_found",
                format!("the dashboard has no query `{query_id}`"),
            )
        })?;
    let values = serving::bind_parameters(&plan.spec, &query_pairs(&req))?;
    let (outcomes, executed) = serving
        .run(dashboard.clone(), plan, values, Some(index), user.id)
        .await;
    record_serve(executed);
    let validators = serving::validators(&dashboard, &outcomes);
    let Some((_, outcome)) = outcomes.first() else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "a query ran without an outcome"
        )));
    };
    match outcome {
        Outcome::Served { .. } => Ok(answer(
            &serving,
            req.headers(),
            key,
            coding,
            &validators,
            &outcomes,
            || {
                let mut body = Vec::new();
                outcome.write_json(&mut body);
                body
            },
        )
        .await),
        Outcome::Failed(error) => Err(services::ServiceError::from_shared(error.clone()).into()),
    }
}

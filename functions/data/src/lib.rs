//! The data function: a dashboard's data (members). Every query of the current version, or
//! one of them, with parameters from the query string; answered from cache when possible.
//! See `services::serving`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use base::domain::Role;
use edge::Edge;
use edge::{ApiError, ApiResult, CurrentUser, conditional, error::Problem, extract::Path};
use services::{
    AppState, serving, serving::DashboardData, serving::Outcome, serving::QueryData,
    serving::Serving,
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

/// The answer, or 304 when the caller's copy (`If-None-Match`) is current. Private: it
/// depends on who asks. Fresh for as long as its soonest-expiring result.
fn answer(
    headers: &HeaderMap,
    validators: &serving::Validators,
    body: impl FnOnce() -> Vec<u8>,
) -> Response {
    let cache_control =
        HeaderValue::from_str(&format!("private, max-age={}", validators.max_age_secs))
            .unwrap_or(HeaderValue::from_static("private, no-cache"));
    if conditional::none_match(headers, &validators.etag) {
        return conditional::not_modified(&validators.etag, cache_control);
    }
    let caching = [
        (header::ETAG, conditional::etag(&validators.etag)),
        (header::CACHE_CONTROL, cache_control),
        (header::VARY, HeaderValue::from_static("Authorization")),
    ];
    (
        caching,
        [(header::CONTENT_TYPE, "application/json")],
        body(),
    )
        .into_response()
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
            headers(("ETag" = String, description = "The results' identity"), ("Cache-Control" = String, description = "`private, max-age=` the soonest expiry"))),
        (status = 304, description = "Not modified: the `If-None-Match` copy is current"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Unknown or ill-typed parameter"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn dashboard_data(
    State(serving): State<Serving>,
    State(edge): State<Edge>,
    user: CurrentUser,
    Path(slug): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (dashboard, _) = serving.dashboard(&slug, &user, Role::Viewer).await?;
    let plan = serving.plan(&dashboard).await?;
    let values = serving::bind_parameters(&plan.spec, &query_pairs(&req))?;
    let dashboard = Arc::new(dashboard);
    let (outcomes, _) = serving.run(dashboard.clone(), plan, values, None).await;
    let validators = serving::validators(&dashboard, &outcomes);
    Ok(answer(req.headers(), &validators, || {
        serving::render_dashboard(&dashboard, &outcomes, edge.settings.max_response_bytes)
    }))
}

/// One query's data (members): `{columns, rows, metadata}`, or a problem if it fails.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/query/{query_id}/data", tag = "data",
    params(("slug" = String, Path), ("query_id" = String, Path), DashboardParameters, ("If-None-Match" = Option<String>, Header, description = "ETags the caller holds: 304 when one is current")),
    responses(
        (status = 200, body = QueryData, description = "The query's data",
            headers(("ETag" = String, description = "The result's identity"), ("Cache-Control" = String, description = "`private, max-age=` its expiry"))),
        (status = 304, description = "Not modified: the `If-None-Match` copy is current"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "The warehouse refused the query"),
        (status = 502, body = Problem, content_type = "application/problem+json", description = "The warehouse failed"),
))]
async fn query_data(
    State(serving): State<Serving>,
    user: CurrentUser,
    Path((slug, query_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let (dashboard, _) = serving.dashboard(&slug, &user, Role::Viewer).await?;
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
    let dashboard = Arc::new(dashboard);
    let (outcomes, _) = serving
        .run(dashboard.clone(), plan, values, Some(index))
        .await;
    let validators = serving::validators(&dashboard, &outcomes);
    let Some((_, outcome)) = outcomes.into_iter().next() else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "a query ran without an outcome"
        )));
    };
    match &outcome {
        Outcome::Served { .. } => Ok(answer(req.headers(), &validators, || {
            let mut body = Vec::new();
            outcome.write_json(&mut body);
            body
        })),
        Outcome::Failed(error) => Err(services::ServiceError::from_shared(error.clone()).into()),
    }
}

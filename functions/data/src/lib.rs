//! The data function: a dashboard's data (members). Every query of the current version, or
//! one of them, with parameters from the query string; answered from cache when possible.
//! See `services::serving`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header,
    response::{IntoResponse, Response},
};
use base::domain::Role;
use edge::Edge;
use edge::{ApiError, ApiResult, CurrentUser, error::Problem, extract::Path};
use services::{AppState, serving, serving::Outcome, serving::Serving};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard_data))
        .routes(routes!(query_data))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
}

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The data of every query of the dashboard's current version (members). Parameters come as
/// the query string (`?region=EMEA`), typed by the dashboard's `parameters`. One failing
/// query yields an `error` for it alone (`result_too_large` past the result cap,
/// `response_too_large` past the response budget). Values are JSON in column order;
/// decimals (`NUMERIC`, `BIGNUMERIC`, Postgres `numeric`) are strings holding every digit.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/data", tag = "data",
    params(("slug" = String, Path)),
    responses(
        (status = 200, description = "`{dashboard_slug, version, queries: {<id>: {columns, rows, metadata} | {error}}}`", content_type = "application/json"),
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
    Ok(json(serving::render_dashboard(
        &dashboard,
        &outcomes,
        edge.settings.max_response_bytes,
    )))
}

/// One query's data (members): `{columns, rows, metadata}`, or a problem if it fails.
#[utoipa::path(get, path = "/v1/dashboards/{slug}/query/{query_id}/data", tag = "data",
    params(("slug" = String, Path), ("query_id" = String, Path)),
    responses(
        (status = 200, description = "`{columns, rows, metadata}`", content_type = "application/json"),
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
    let (outcomes, _) = serving
        .run(Arc::new(dashboard), plan, values, Some(index))
        .await;
    let Some((_, outcome)) = outcomes.into_iter().next() else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "a query ran without an outcome"
        )));
    };
    match &outcome {
        Outcome::Served { .. } => {
            let mut body = Vec::new();
            outcome.write_json(&mut body);
            Ok(json(body))
        }
        Outcome::Failed(error) => Err(services::ServiceError::from_shared(error.clone()).into()),
    }
}

//! The catalog function: scan a connection's warehouse into Postgres (editors), browse
//! datasets and tables, and read a table's columns live (members). The work is in
//! `services::catalog`, which the chat agent's tools share.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use edge::{
    ApiResult, CurrentUser, error::Problem, extract::Json, extract::Path, extract::Query,
    pagination::PageQuery,
};
use serde::Serialize;
use services::{
    AppState, catalog::Catalog, catalog::Dataset, catalog::NameCursor, catalog::ScanRun,
    catalog::Table, catalog::TableSchema,
};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scan))
        .routes(routes!(table_columns))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
        .routes(routes!(scan_status))
        .routes(routes!(list_datasets))
        .routes(routes!(list_tables))
}

/// Starts a scan of the connection's warehouse into the catalog (editor; the connection must
/// be validated). Answers 202 at once with the running scan; `GET …/scans/{scan_id}` (the
/// `Location`) follows it to `succeeded`, `partial` or `failed`.
#[utoipa::path(post, path = "/v1/connections/{id}/scan", tag = "catalog",
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, body = ScanRun, description = "The scan, `running`"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Not validated, or a scan is running"),
))]
async fn scan(
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let run = catalog.scan(id, &user).await?;
    let location = format!("/v1/connections/{id}/scans/{}", run.scan_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(run),
    ))
}

/// A non-HTTP Lambda event: a job this function handed to itself (a scan).
pub async fn on_event(
    state: AppState,
    event: serde_json::Value,
) -> Result<serde_json::Value, String> {
    match services::jobs::Job::from_event(&event) {
        Some(Ok(job)) => services::jobs::run(&state.catalog, job)
            .await
            .map_err(|e| format!("{e:#}")),
        Some(Err(e)) => Err(e),
        None => {
            tracing::warn!("ignoring an event that is neither HTTP nor a job");
            Err("unrecognised event: expected an API Gateway request or a bridge_job".into())
        }
    }
}

/// A scan of the connection, finished or running (members).
#[utoipa::path(get, path = "/v1/connections/{id}/scans/{scan_id}", tag = "catalog",
    params(("id" = Uuid, Path), ("scan_id" = Uuid, Path)),
    responses(
        (status = 200, body = ScanRun),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn scan_status(
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path((id, scan_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<ScanRun>> {
    Ok(Json(catalog.scan_status(id, scan_id, &user).await?))
}

#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
    pub next_cursor: Option<String>,
}

/// The connection's scanned datasets, by name (members).
#[utoipa::path(get, path = "/v1/connections/{id}/datasets", tag = "catalog",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = DatasetList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_datasets(
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<DatasetList>> {
    let page = page.parse::<NameCursor>()?;
    let (datasets, next_cursor) = catalog.datasets(id, &user, &page).await?;
    Ok(Json(DatasetList {
        datasets,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TableList {
    pub tables: Vec<Table>,
    pub next_cursor: Option<String>,
}

/// A dataset's scanned tables, by name (members).
#[utoipa::path(get, path = "/v1/datasets/{id}/tables", tag = "catalog",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = TableList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_tables(
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<TableList>> {
    let page = page.parse::<NameCursor>()?;
    let (tables, next_cursor) = catalog.tables(id, &user, &page).await?;
    Ok(Json(TableList {
        tables,
        next_cursor,
    }))
}

/// A table's columns (name, type, nullable, description, partitioning and clustering),
/// read live from the warehouse and cached until the table changes (members).
#[utoipa::path(get, path = "/v1/tables/{id}/columns", tag = "catalog",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = TableSchema),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json", description = "The warehouse failed"),
))]
async fn table_columns(
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<TableSchema>> {
    Ok(Json(catalog.table_columns(&user, id).await?))
}

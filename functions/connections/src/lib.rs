//! The connections function: a team's warehouse connections.
//!
//! Credentials arrive once, are checked, sealed (envelope encryption bound to the team and
//! connection) and written to the credentials bucket; Postgres keeps only a pointer and
//! non-secret details. No route ever returns them. Roles: members read; editors validate;
//! admins create and delete.

pub mod model;

use std::time::Instant;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use base::domain::Role;
use edge::{
    ApiResult, CurrentUser, error::Problem, extract::Json, extract::Path, extract::Query,
    pagination::PageQuery,
};
use services::{AppState, catalog::Catalog, connections::Connection, connections::Connections};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use model::{ConnectionList, CreateConnection, NewConnection, ValidationResult};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(validate_connection))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection, delete_connection))
}

/// Creates a connection (admin). Its credentials are checked, sealed and stored; it starts
/// `pending_validation`.
#[utoipa::path(post, path = "/v1/teams/{team_id}/connections", tag = "connections",
    params(("team_id" = Uuid, Path)), request_body = CreateConnection,
    responses(
        (status = 201, body = Connection),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Name taken"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
))]
async fn create_connection(
    State(connections): State<Connections>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Json(body): Json<CreateConnection>,
) -> ApiResult<impl IntoResponse> {
    let new = NewConnection::try_from(body)?;
    let connection = connections.create(team_id, &user, &new).await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/v1/connections/{}", connection.id),
        )],
        Json(connection),
    ))
}

/// Lists a team's connections, newest first (members).
#[utoipa::path(get, path = "/v1/teams/{team_id}/connections", tag = "connections",
    params(("team_id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = ConnectionList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn list_connections(
    State(connections): State<Connections>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<ConnectionList>> {
    let page = page.parse::<Uuid>()?;
    let mut listed = connections
        .list(team_id, &user, page.after, page.fetch_limit())
        .await?;
    let next_cursor = page.finish(&mut listed, |c| c.id);
    Ok(Json(ConnectionList {
        connections: listed,
        next_cursor,
    }))
}

/// Reads a connection (members). Never its credentials.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Connection),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn get_connection(
    State(connections): State<Connections>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Connection>> {
    let (connection, _) = connections.get(id, &user, Role::Viewer).await?;
    Ok(Json(connection))
}

/// Validates a connection (editor): decrypts its credentials, connects, and checks the
/// permissions Bridge needs. The status becomes `validated` or `failed`.
#[utoipa::path(post, path = "/v1/connections/{id}/validate", tag = "connections",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ValidationResult, description = "Ran; see `status` and `checks`"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn validate_connection(
    State(connections): State<Connections>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ValidationResult>> {
    let started = Instant::now();
    let validation = connections.validate(id, &user).await?;
    Ok(Json(ValidationResult {
        connection: validation.connection,
        outcome: validation.outcome,
        checks: validation.checks,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Deletes a connection (admin): its sealed credentials, its row and everything that hangs
/// off it.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Dashboards still use it"),
))]
async fn delete_connection(
    State(connections): State<Connections>,
    State(catalog): State<Catalog>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    connections.delete(id, &user).await?;
    catalog.forget_connection(id).await;
    Ok(StatusCode::NO_CONTENT)
}

//! The connections function: a team's warehouse connections.
//!
//! Credentials arrive once, are checked, sealed (envelope encryption bound to the team and
//! connection) and written to the credentials bucket; Postgres keeps only a pointer and
//! non-secret details. No route ever returns them. Roles: members read; editors validate;
//! admins create and delete.

pub mod model;

use std::time::{Duration, Instant};

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use base::domain::Role;
use edge::{
    ApiResult, CurrentUser, error::Problem, extract::Json, extract::Path, extract::Query,
    pagination::PageQuery, tenancy::require_team_role,
};
use platform::warehouse::AccessCheck;
use services::{AppState, connections, connections::Connection, connections::ConnectionStatus};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use model::{ConnectionList, CreateConnection, NewConnection, ValidationOutcome, ValidationResult};

/// Validation must answer within API Gateway's 29 s.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(25);

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
    State(state): State<AppState>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Json(body): Json<CreateConnection>,
) -> ApiResult<impl IntoResponse> {
    {
        let client = state.edge.db.get().await?;
        require_team_role(&client, team_id, &user, Role::Admin).await?;
    }
    let new = NewConnection::try_from(body)?;
    let id = Uuid::now_v7();
    // Sealing asks the key ring (a remote call): no pooled connection is held meanwhile.
    let (key, key_id) = connections::store_credentials(
        &*state.buckets.credentials,
        &*state.key_ring,
        team_id,
        id,
        &new.secret,
    )
    .await?;
    let client = match state.edge.db.get().await {
        Ok(client) => client,
        Err(e) => {
            let _ = state.buckets.credentials.delete(&key).await;
            return Err(e.into());
        }
    };
    let inserted = connections::insert(
        &client,
        &connections::NewRow {
            id,
            team_id,
            name: &new.name,
            dialect: new.dialect,
            credentials_key: &key,
            key_id: &key_id,
            details: &new.details,
            created_by: user.id,
        },
    )
    .await;
    let connection = match inserted {
        Ok(connection) => connection,
        Err(e) => {
            // Nothing half-written: the sealed blob goes if the row cannot be made.
            if let Err(cleanup) = state.buckets.credentials.delete(&key).await {
                tracing::error!(error = %cleanup, "removing credentials of a connection that was not created");
            }
            return Err(e);
        }
    };
    tracing::info!(connection_id = %id, %team_id, warehouse_type = %new.dialect, "connection created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/connections/{id}"))],
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
    State(state): State<AppState>,
    user: CurrentUser,
    Path(team_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<ConnectionList>> {
    let page = page.parse::<Uuid>()?;
    let client = state.edge.db.get().await?;
    require_team_role(&client, team_id, &user, Role::Viewer).await?;
    let mut connections =
        connections::list_page(&client, team_id, page.after, page.fetch_limit()).await?;
    let next_cursor = page.finish(&mut connections, |c| c.id);
    Ok(Json(ConnectionList {
        connections,
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
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Connection>> {
    let client = state.edge.db.get().await?;
    let (connection, _) = connections::load(&client, id, &user, Role::Viewer).await?;
    Ok(Json(connection))
}

/// The first failing check, as the connection's `validation_error`.
fn first_failure(checks: &[AccessCheck]) -> Option<String> {
    checks
        .iter()
        .find(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.message))
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
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ValidationResult>> {
    let started = Instant::now();
    // No pooled connection is held while the key ring and the warehouse are asked.
    let (connection, _) = {
        let client = state.edge.db.get().await?;
        connections::load(&client, id, &user, Role::Editor).await?
    };
    state.warehouses.forget(id).await;
    let secret =
        connections::load_credentials(&*state.buckets.credentials, &*state.key_ring, &connection)
            .await?;
    let checks = tokio::time::timeout(VALIDATION_TIMEOUT, async {
        match connections::connect(
            connection.warehouse_type,
            &secret,
            &state.edge.settings.warehouse,
        )
        .await
        {
            Ok(warehouse) => warehouse.check_access().await,
            Err(e) => vec![AccessCheck::failed("connect", &e)],
        }
    })
    .await
    .unwrap_or_else(|_| {
        vec![AccessCheck::failed(
            "timeout",
            &platform::warehouse::WarehouseError::Timeout(VALIDATION_TIMEOUT),
        )]
    });
    drop(secret);
    let failed = checks.iter().find(|c| !c.ok);
    let client = state.edge.db.get().await?;
    let (connection, outcome) = match failed {
        // Unreachable or slow says nothing about the credentials: the status stays as it was.
        Some(check) if check.transient() => {
            let connection = connections::by_id(&client, id)
                .await?
                .ok_or_else(connections::connection_not_found)?;
            (connection, ValidationOutcome::Unreachable)
        }
        _ => {
            let error = first_failure(&checks);
            let status = if error.is_none() {
                ConnectionStatus::Validated
            } else {
                ConnectionStatus::Failed
            };
            let connection =
                connections::record_validation(&client, id, status, error.as_deref()).await?;
            let outcome = if error.is_none() {
                ValidationOutcome::Validated
            } else {
                ValidationOutcome::Failed
            };
            (connection, outcome)
        }
    };
    tracing::info!(connection_id = %id, outcome = ?outcome, "connection validated");
    Ok(Json(ValidationResult {
        connection,
        outcome,
        checks,
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
))]
async fn delete_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut client = state.edge.db.get().await?;
    let tx = client.transaction().await?;
    let (connection, _) = connections::load(&tx, id, &user, Role::Admin).await?;
    connections::delete(&tx, id).await?;
    // The blob goes before the commit: if it cannot be deleted, the row stays and the
    // request can be retried (deleting is idempotent).
    state
        .buckets
        .credentials
        .delete(&connection.credentials_key)
        .await
        .map_err(connections::blob_error)?;
    tx.commit().await?;
    state.warehouses.forget(id).await;
    // Other processes can no longer reach these entries (the tables are gone, and the key
    // names the connection); this one drops them now.
    let prefix = format!("catalog/columns/{id}/");
    services::caches::invalidate_where(&state.column_cache, |key, _| key.starts_with(&prefix))
        .await;
    tracing::info!(connection_id = %id, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

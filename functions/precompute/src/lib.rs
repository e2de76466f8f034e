//! The precompute function: warm a dashboard's cache on demand (admins), and every
//! dashboard whose `refresh` cadence is due on a schedule — an EventBridge rule's event on
//! AWS, a Cloud Scheduler HTTP call with an OIDC token on GCP, `bridge precompute` locally.

use axum::{extract::State, http::HeaderMap};
use base::domain::Role;
use edge::{
    ApiError, ApiResult, CurrentUser, error::Problem, extract::Json, extract::Path, extract::Query,
};
use services::{
    AppState, serving::PrecomputeReport, serving::Serving, serving::WarmReport, state::Scheduler,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(precompute_dashboard))
        .routes(routes!(scheduled))
        .route_layer(axum::middleware::from_fn(edge::app::allow_warehouse_time))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Run every query on the warehouse even when its result is cached (default false).
    pub force: Option<bool>,
}

/// Runs the dashboard's queries (default parameters) and fills the cache (admin); with
/// `?force=true`, even those whose results are cached.
#[utoipa::path(post, path = "/v1/dashboards/{slug}/precompute", tag = "precompute",
    params(("slug" = String, Path), ForceQuery),
    responses(
        (status = 200, body = PrecomputeReport),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn precompute_dashboard(
    State(serving): State<Serving>,
    user: CurrentUser,
    Path(slug): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<Json<PrecomputeReport>> {
    let (dashboard, _) = serving.dashboard(&slug, &user, Role::Admin).await?;
    // The warehouse jobs of a precompute asked for by hand are charged to who asked.
    let charge = services::usage::Charge::new(Some(user.id), services::usage::Purpose::Precompute);
    let report = services::usage::charged(
        charge,
        serving.precompute(dashboard, q.force.unwrap_or(false)),
    )
    .await?;
    tracing::info!(slug = %slug, executed = report.queries_executed, hits = report.cache_hits, "precomputed");
    Ok(Json(report))
}

/// Cloud Scheduler's call: warms every dashboard that is due. Only with a Google OIDC token
/// for `SCHEDULER_OIDC_AUDIENCE` whose verified email is `SCHEDULER_SERVICE_ACCOUNT`.
#[utoipa::path(post, path = "/internal/precompute", tag = "precompute", security(()),
    responses(
        (status = 200, body = WarmReport),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No scheduler configured"),
))]
async fn scheduled(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<WarmReport>> {
    let Some(Scheduler {
        verifier,
        service_account,
    }) = &state.scheduler
    else {
        return Err(ApiError::not_found("route_not_found", "no such route"));
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send the scheduler's OIDC token as a bearer token",
            )
        })?;
    let claims = verifier.verify(token.trim()).await?;
    let email_ok = claims.email.as_deref().map(str::to_lowercase).as_deref()
        == Some(service_account.as_str())
        && claims.email_verified == Some(true);
    if !email_ok {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "the token is not the scheduler's service account",
        ));
    }
    let report = state.tick().await?;
    tracing::info!(
        warmed = report.dashboards.len(),
        failed = report.failures.len(),
        "scheduled precompute"
    );
    Ok(Json(report))
}

/// A non-HTTP Lambda event: EventBridge's scheduled event warms what is due.
pub async fn on_event(
    state: AppState,
    event: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let scheduled = event["detail-type"] == "Scheduled Event"
        && matches!(
            event["source"].as_str(),
            Some("aws.events" | "aws.scheduler")
        );
    if !scheduled {
        tracing::warn!("ignoring an event that is neither HTTP nor a schedule");
        return Err(
            "unrecognised event: expected an API Gateway request or an EventBridge scheduled event"
                .into(),
        );
    }
    let id = event["id"].as_str().unwrap_or("scheduled").to_owned();
    let report = edge::telemetry::with_correlation_id(&id, state.tick())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        warmed = report.dashboards.len(),
        failed = report.failures.len(),
        "scheduled precompute"
    );
    serde_json::to_value(report).map_err(|e| e.to_string())
}

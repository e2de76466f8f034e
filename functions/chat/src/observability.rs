//! `GET /v1/observability/{model-calls,cost-summary,tool-cache-stats}`: what the model calls
//! cost and what the tool cache saved, for team admins, over the teams they administer (or
//! the one named: 404 for strangers, 403 for members below admin). The work is in
//! `services::observability`.

use axum::extract::State;
use edge::{ApiError, ApiResult, CurrentUser, error::Problem, extract::Json, extract::Query};
use serde::{Deserialize, Serialize};
use services::{
    AppState,
    observability::{
        CallFilter, CostRow, GroupBy, ModelCallRow, Observability, ToolRow, parse_instant,
    },
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(model_calls))
        .routes(routes!(cost_summary))
        .routes(routes!(tool_cache_stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// One team (default: every team the caller administers).
    pub team_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// `anthropic`, `openai`, `builtin`.
    pub provider: Option<String>,
    /// From this date or instant (inclusive).
    pub start_date: Option<String>,
    /// Until this date or instant (exclusive).
    pub end_date: Option<String>,
    /// 1 to 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `session`, `user` or `team` (cost summary only).
    pub group_by: Option<String>,
}

fn filter(q: &CallsQuery) -> ApiResult<CallFilter> {
    Ok(CallFilter {
        team_id: q.team_id,
        session_id: q.session_id,
        provider: q.provider.clone(),
        start: q
            .start_date
            .as_deref()
            .map(|v| parse_instant("start_date", v))
            .transpose()?,
        end: q
            .end_date
            .as_deref()
            .map(|v| parse_instant("end_date", v))
            .transpose()?,
    })
}

fn limit(q: &CallsQuery) -> ApiResult<i64> {
    let l = q.limit.unwrap_or(100);
    if !(1..=200).contains(&l) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 200",
        ));
    }
    Ok(i64::from(l))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCallList {
    pub calls: Vec<ModelCallRow>,
    pub total_count: i64,
    pub next_cursor: Option<String>,
}

/// Model calls, newest first (team admins).
#[utoipa::path(get, path = "/v1/observability/model-calls", tag = "observability",
    params(CallsQuery),
    responses((status = 200, body = ModelCallList), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn model_calls(
    State(obs): State<Observability>,
    user: CurrentUser,
    Query(q): Query<CallsQuery>,
) -> ApiResult<Json<ModelCallList>> {
    if q.group_by.is_some() {
        return Err(ApiError::invalid_field(
            "group_by",
            "only for the cost summary",
        ));
    }
    let limit = limit(&q)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c)
                .map_err(|_| ApiError::invalid_field("cursor", "not a cursor this list gave"))
        })
        .transpose()?;
    let (mut calls, total_count) = obs
        .model_calls(&user, &filter(&q)?, limit + 1, before)
        .await?;
    let next_cursor = if calls.len() as i64 > limit {
        calls.truncate(limit as usize);
        calls.last().map(|c| c.id.to_string())
    } else {
        None
    };
    Ok(Json(ModelCallList {
        calls,
        total_count,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostSummary {
    pub group_by: String,
    pub summary: Vec<CostRow>,
    /// Dollars, exact.
    pub grand_total_cost_usd: String,
}

/// Cost per session, user or team, most expensive first (team admins).
#[utoipa::path(get, path = "/v1/observability/cost-summary", tag = "observability",
    params(CallsQuery),
    responses((status = 200, body = CostSummary), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn cost_summary(
    State(obs): State<Observability>,
    user: CurrentUser,
    Query(q): Query<CallsQuery>,
) -> ApiResult<Json<CostSummary>> {
    let group_by = match q.group_by.as_deref().unwrap_or("session") {
        "session" => GroupBy::Session,
        "user" => GroupBy::User,
        "team" => GroupBy::Team,
        _ => {
            return Err(ApiError::invalid_field(
                "group_by",
                "allowed values: session, user, team",
            ));
        }
    };
    if q.cursor.is_some() {
        return Err(ApiError::invalid_field(
            "cursor",
            "the summary is one page: narrow it with limit or dates",
        ));
    }
    let (summary, total) = obs
        .cost_summary(&user, &filter(&q)?, group_by, limit(&q)?)
        .await?;
    Ok(Json(CostSummary {
        group_by: q.group_by.unwrap_or_else(|| "session".into()),
        summary,
        grand_total_cost_usd: total,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TeamQuery {
    /// One team (default: every team the caller administers).
    pub team_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCacheStats {
    pub tools: Vec<ToolRow>,
    /// Hits over lookups (hits plus the misses that made the entries); null with no entries.
    pub overall_hit_rate: Option<f64>,
}

/// The tool cache's live entries and hits per tool (team admins).
#[utoipa::path(get, path = "/v1/observability/tool-cache-stats", tag = "observability",
    params(TeamQuery),
    responses((status = 200, body = ToolCacheStats), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn tool_cache_stats(
    State(obs): State<Observability>,
    user: CurrentUser,
    Query(q): Query<TeamQuery>,
) -> ApiResult<Json<ToolCacheStats>> {
    let (tools, overall_hit_rate) = obs.tool_cache(&user, q.team_id).await?;
    Ok(Json(ToolCacheStats {
        tools,
        overall_hit_rate,
    }))
}

//! What the model calls cost and what the tool cache saved, for team admins, scoped to the
//! teams they administer (the spec's 3.4): the calls themselves, their cost summed per
//! session, user or team, and the tool cache's hits per tool.

use base::domain::Role;
use deadpool_postgres::Pool;
use edge::{ApiError, ApiResult, CurrentUser, tenancy};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone)]
pub struct Observability {
    db: Pool,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observability")
    }
}

/// Which calls: the teams (resolved to those the caller administers), a time range, and
/// optional filters.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub team_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub provider: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCallRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub session_id: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub purpose: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Input read from the provider's prompt cache.
    pub cached_input_tokens: i64,
    /// Input written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// Dollars (12 decimal places); null when the model has no price.
    pub cost_usd: Option<String>,
    pub first_token_ms: Option<i32>,
    pub latency_ms: i32,
    pub stop_reason: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub executed_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostRow {
    /// The session, user or team id (null: calls outside a session, grouped by session or user).
    pub entity_id: Option<Uuid>,
    pub calls: i64,
    pub total_cost_usd: String,
    /// Calls of models without a price: when non-zero, the cost is a lower bound.
    pub unpriced_calls: i64,
    pub total_tokens: i64,
    /// Cache reads over all input, in percent.
    pub cache_hit_rate_pct: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolRow {
    pub tool_name: String,
    pub cache_entries: i64,
    pub total_hits: i64,
    pub avg_hits_per_entry: f64,
    pub bytes: i64,
}

/// How cost is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Session,
    User,
    Team,
}

impl Observability {
    pub fn new(db: Pool) -> Self {
        Self { db }
    }

    /// The teams the filter covers: the one named (its admins only: 404 for strangers, 403
    /// for members), else every team the caller administers.
    async fn teams(&self, user: &CurrentUser, team_id: Option<Uuid>) -> ApiResult<Vec<Uuid>> {
        let client = self.db.get().await?;
        if let Some(t) = team_id {
            tenancy::require_team_role(&client, t, user, Role::Admin).await?;
            return Ok(vec![t]);
        }
        Ok(client
            .query(
                "SELECT team_id FROM team_members WHERE user_id = $1 AND role = 'admin'",
                &[&user.id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Calls, newest first, `before` (a call id) for the next page; and how many match.
    pub async fn model_calls(
        &self,
        user: &CurrentUser,
        f: &CallFilter,
        limit: i64,
        before: Option<Uuid>,
    ) -> ApiResult<(Vec<ModelCallRow>, i64)> {
        let teams = self.teams(user, f.team_id).await?;
        let client = self.db.get().await?;
        let filter = "team_id = ANY($1) AND ($2::uuid IS NULL OR session_id = $2) \
             AND ($3::text IS NULL OR provider = $3) AND ($4::timestamptz IS NULL OR executed_at >= $4) \
             AND ($5::timestamptz IS NULL OR executed_at < $5)";
        let rows = client
            .query(
                &format!(
                    "SELECT id, team_id, session_id, provider, model, purpose, input_tokens, output_tokens, \
                     cached_input_tokens, cache_write_tokens, cost_usd::text, first_token_ms, latency_ms, \
                     stop_reason, error, executed_at FROM model_calls WHERE {filter} \
                     AND ($6::uuid IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
                ),
                &[&teams, &f.session_id, &f.provider, &f.start, &f.end, &before, &limit],
            )
            .await?;
        let total: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM model_calls WHERE {filter}"),
                &[&teams, &f.session_id, &f.provider, &f.start, &f.end],
            )
            .await?
            .get(0);
        let calls = rows
            .iter()
            .map(|r| ModelCallRow {
                id: r.get(0),
                team_id: r.get(1),
                session_id: r.get(2),
                provider: r.get(3),
                model: r.get(4),
                purpose: r.get(5),
                input_tokens: r.get(6),
                output_tokens: r.get(7),
                cached_input_tokens: r.get(8),
                cache_write_tokens: r.get(9),
                cost_usd: r.get(10),
                first_token_ms: r.get(11),
                latency_ms: r.get(12),
                stop_reason: r.get(13),
                error: r.get(14),
                executed_at: r.get(15),
            })
            .collect();
        Ok((calls, total))
    }

    /// Cost per session, user or team, most expensive first; and the grand total.
    pub async fn cost_summary(
        &self,
        user: &CurrentUser,
        f: &CallFilter,
        group_by: GroupBy,
        limit: i64,
    ) -> ApiResult<(Vec<CostRow>, String)> {
        let teams = self.teams(user, f.team_id).await?;
        let client = self.db.get().await?;
        let entity = match group_by {
            GroupBy::Session => "c.session_id",
            GroupBy::User => "s.user_id",
            GroupBy::Team => "c.team_id",
        };
        let filter = "c.team_id = ANY($1) AND ($2::uuid IS NULL OR c.session_id = $2) \
             AND ($3::text IS NULL OR c.provider = $3) AND ($4::timestamptz IS NULL OR c.executed_at >= $4) \
             AND ($5::timestamptz IS NULL OR c.executed_at < $5)";
        let rows = client
            .query(
                &format!(
                    "SELECT {entity}, count(*), coalesce(sum(c.cost_usd), 0)::numeric(20,12)::text, \
                     count(*) FILTER (WHERE c.cost_usd IS NULL), \
                     coalesce(sum(c.input_tokens + c.output_tokens + c.cached_input_tokens + c.cache_write_tokens), 0)::bigint, \
                     round(100.0 * sum(c.cached_input_tokens) / nullif(sum(c.input_tokens + c.cached_input_tokens + c.cache_write_tokens), 0), 2)::float8 \
                     FROM model_calls c LEFT JOIN session_manifests s ON s.id = c.session_id \
                     WHERE {filter} GROUP BY {entity} ORDER BY sum(c.cost_usd) DESC NULLS LAST, {entity} LIMIT $6"
                ),
                &[&teams, &f.session_id, &f.provider, &f.start, &f.end, &limit],
            )
            .await?;
        let total: String = client
            .query_one(
                &format!("SELECT coalesce(sum(c.cost_usd), 0)::numeric(20,12)::text FROM model_calls c WHERE {filter}"),
                &[&teams, &f.session_id, &f.provider, &f.start, &f.end],
            )
            .await?
            .get(0);
        Ok((
            rows.iter()
                .map(|r| CostRow {
                    entity_id: r.get(0),
                    calls: r.get(1),
                    total_cost_usd: r.get(2),
                    unpriced_calls: r.get(3),
                    total_tokens: r.get(4),
                    cache_hit_rate_pct: r.get(5),
                })
                .collect(),
            total,
        ))
    }

    /// The tool cache's live entries and hits per tool, most hit first; and the share of
    /// lookups answered from the cache (hits over hits plus entries: each entry was made by
    /// one miss).
    pub async fn tool_cache(
        &self,
        user: &CurrentUser,
        team_id: Option<Uuid>,
    ) -> ApiResult<(Vec<ToolRow>, Option<f64>)> {
        let teams = self.teams(user, team_id).await?;
        let client = self.db.get().await?;
        let rows = client
            .query(
                "SELECT tool_name, count(*), coalesce(sum(hit_count), 0)::bigint, \
                 coalesce(avg(hit_count), 0)::float8, coalesce(sum(size_bytes), 0)::bigint \
                 FROM tool_cache WHERE team_id = ANY($1) AND expires_at > now() \
                 GROUP BY tool_name ORDER BY 3 DESC, tool_name",
                &[&teams],
            )
            .await?;
        let tools: Vec<ToolRow> = rows
            .iter()
            .map(|r| ToolRow {
                tool_name: r.get(0),
                cache_entries: r.get(1),
                total_hits: r.get(2),
                avg_hits_per_entry: r.get(3),
                bytes: r.get(4),
            })
            .collect();
        let hits: i64 = tools.iter().map(|t| t.total_hits).sum();
        let entries: i64 = tools.iter().map(|t| t.cache_entries).sum();
        let rate = (hits + entries > 0).then(|| hits as f64 / (hits + entries) as f64);
        Ok((tools, rate))
    }
}

/// A date or date-time query parameter (`2026-12-01` or RFC 3339).
pub fn parse_instant(field: &'static str, v: &str) -> ApiResult<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| {
            ApiError::invalid_field(field, "a date (2026-12-01) or an RFC 3339 date-time")
        })?;
    Ok(date.midnight().assume_utc())
}

//! `GET /v1/teams/{team_id}/usage`: the team's cost ledger (the `usage_ledger` view of
//! migration V10: every LLM call and every warehouse job), summed per day, dashboard, user
//! or kind, with what was spent today against the team's daily budgets. Team admins only.

use base::domain::{Role, TeamSettings};
use edge::{ApiError, ApiResult, tenancy::require, tenancy::team_not_found, tenancy::team_role};
use serde::{Deserialize, Serialize};
use storage::db::Client;
use time::{Date, Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use tokio_postgres::{Row, types::Json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The longest range one request may sum.
const MAX_RANGE_DAYS: i64 = 366;
const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// From this date (`2026-12-01`, midnight UTC) or RFC 3339 instant, inclusive (default:
    /// 30 days before `to`).
    pub from: Option<String>,
    /// Until this date (midnight UTC: the day is excluded) or instant, exclusive (default:
    /// now). At most 366 days after `from`.
    pub to: Option<String>,
    /// `day` (default), `dashboard`, `user` or `kind` (`llm`, `tile`, `precompute`,
    /// `agent`, `dry_run`, `api`).
    pub group_by: Option<String>,
    /// Groups to answer, 1 to 500 (default 100); `has_more` says when more follow.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Dashboard,
    User,
    Kind,
}

impl GroupBy {
    fn parse(raw: Option<&str>) -> ApiResult<Self> {
        Ok(match raw.unwrap_or("day") {
            "day" => Self::Day,
            "dashboard" => Self::Dashboard,
            "user" => Self::User,
            "kind" => Self::Kind,
            _ => {
                return Err(ApiError::invalid_field(
                    "group_by",
                    "allowed values: day, dashboard, user, kind",
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Dashboard => "dashboard",
            Self::User => "user",
            Self::Kind => "kind",
        }
    }

    /// The group's key, its label and the join the label needs (all fixed SQL).
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Day => (
                "to_char(l.executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                "NULL::text",
                "",
            ),
            Self::Dashboard => (
                "l.dashboard_id::text",
                "d.slug",
                "LEFT JOIN dashboards d ON d.id = l.dashboard_id",
            ),
            Self::User => (
                "l.user_id::text",
                "u.email",
                "LEFT JOIN users u ON u.id = l.user_id",
            ),
            Self::Kind => ("l.kind", "NULL::text", ""),
        }
    }
}

/// What one group (or the whole range) spent.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Spending {
    pub llm_calls: i64,
    pub llm_tokens: i64,
    /// Dollars of the priced LLM calls.
    pub llm_usd: f64,
    /// LLM calls of models without a price: `llm_usd` is then a lower bound.
    pub unpriced_llm_calls: i64,
    /// Queries sent to the warehouse (tiles, precompute, the agent's).
    pub warehouse_jobs: i64,
    /// Jobs not sent because a budget was spent.
    pub skipped_jobs: i64,
    /// Dry runs (estimates; free on BigQuery).
    pub dry_runs: i64,
    /// Bytes the warehouse processed (BigQuery) or the planner estimated (Postgres).
    pub billed_bytes: i64,
    /// Bytes the dry runs estimated.
    pub estimated_bytes: i64,
    /// Dollars of the warehouse jobs priced per byte (BigQuery on demand).
    pub warehouse_usd: f64,
    pub total_usd: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The day (`YYYY-MM-DD`, UTC), dashboard id, user id or kind; null: not attributed
    /// (e.g. a model call of no dashboard, a scheduled job of no user).
    pub key: Option<String>,
    /// The dashboard's slug or the user's email, when grouped by them.
    pub label: Option<String>,
    #[serde(flatten)]
    pub spent: Spending,
}

/// Today's spending (UTC) against the team's daily budgets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Today {
    pub llm_usd: f64,
    pub billed_bytes: i64,
    pub daily_llm_usd: Option<f64>,
    pub daily_warehouse_bytes: Option<u64>,
    pub daily_generation_runs_per_user: Option<u32>,
    /// When today's budgets reset (midnight UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub team_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub group_by: String,
    pub groups: Vec<UsageGroup>,
    pub has_more: bool,
    pub totals: Spending,
    pub today: Today,
}

fn parse_bound(field: &str, raw: &str) -> ApiResult<OffsetDateTime> {
    let raw = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw, format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                "must be a date (2026-12-01) or an RFC 3339 instant (2026-12-01T12:00:00Z)",
            )
        })
}

/// The range and grouping asked for, checked.
pub struct Ask {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub group_by: GroupBy,
    pub limit: i64,
}

impl UsageQuery {
    pub fn check(self) -> ApiResult<Ask> {
        let group_by = GroupBy::parse(self.group_by.as_deref())?;
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                "must be between 1 and 500",
            ));
        }
        let to = match &self.to {
            Some(raw) => parse_bound("to", raw)?,
            None => OffsetDateTime::now_utc(),
        };
        let from = match &self.from {
            Some(raw) => parse_bound("from", raw)?,
            None => to - Duration::days(DEFAULT_RANGE_DAYS),
        };
        if from >= to {
            return Err(ApiError::invalid_field("from", "must be before `to`"));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(ApiError::invalid_field(
                "to",
                format!("the range may span at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(Ask {
            from,
            to,
            group_by,
            limit: i64::from(limit),
        })
    }
}

const SPENDING: &str = "count(*) FILTER (WHERE l.kind = 'llm'), \
     coalesce(sum(l.tokens), 0)::int8, \
     coalesce(sum(l.cost_usd) FILTER (WHERE l.kind = 'llm'), 0)::float8, \
     count(*) FILTER (WHERE l.kind = 'llm' AND l.cost_usd IS NULL), \
     count(*) FILTER (WHERE l.kind NOT IN ('llm', 'dry_run') AND l.detail <> 'skipped'), \
     count(*) FILTER (WHERE l.kind <> 'llm' AND l.detail = 'skipped'), \
     count(*) FILTER (WHERE l.kind = 'dry_run'), \
     coalesce(sum(l.billed_bytes), 0)::int8, \
     coalesce(sum(l.estimated_bytes), 0)::int8, \
     coalesce(sum(l.cost_usd) FILTER (WHERE l.kind <> 'llm'), 0)::float8";

fn spending(row: &Row, at: usize) -> Spending {
    let llm_usd: f64 = row.get(at + 2);
    let warehouse_usd: f64 = row.get(at + 9);
    Spending {
        llm_calls: row.get(at),
        llm_tokens: row.get(at + 1),
        llm_usd,
        unpriced_llm_calls: row.get(at + 3),
        warehouse_jobs: row.get(at + 4),
        skipped_jobs: row.get(at + 5),
        dry_runs: row.get(at + 6),
        billed_bytes: row.get(at + 7),
        estimated_bytes: row.get(at + 8),
        warehouse_usd,
        total_usd: llm_usd + warehouse_usd,
    }
}

/// The team's usage (admins; 404 for anyone not in the team, 403 below admin).
pub async fn usage(client: &Client, team_id: Uuid, user_id: Uuid, ask: Ask) -> ApiResult<Usage> {
    require(
        team_role(client, team_id, user_id).await?,
        Role::Admin,
        team_not_found,
    )?;
    let (key, label, join) = ask.group_by.sql();
    let order = match ask.group_by {
        GroupBy::Day => "1",
        _ => "(coalesce(sum(l.cost_usd), 0)) DESC, 1",
    };
    let rows = client
        .query(
            &format!(
                "SELECT {key}, {label}, {SPENDING} FROM usage_ledger l {join} \
                 WHERE l.team_id = $1 AND l.executed_at >= $2 AND l.executed_at < $3 \
                 GROUP BY 1, 2 ORDER BY {order} NULLS LAST LIMIT $4"
            ),
            &[&team_id, &ask.from, &ask.to, &(ask.limit + 1)],
        )
        .await?;
    let mut groups: Vec<UsageGroup> = rows
        .iter()
        .map(|r| UsageGroup {
            key: r.get(0),
            label: r.get(1),
            spent: spending(r, 2),
        })
        .collect();
    let has_more = groups.len() as i64 > ask.limit;
    groups.truncate(ask.limit as usize);
    let totals = client
        .query_one(
            &format!(
                "SELECT {SPENDING} FROM usage_ledger l \
                 WHERE l.team_id = $1 AND l.executed_at >= $2 AND l.executed_at < $3"
            ),
            &[&team_id, &ask.from, &ask.to],
        )
        .await?;
    let today = client
        .query_one(
            "SELECT t.settings, \
               (SELECT coalesce(sum(cost_usd), 0)::float8 FROM usage_ledger \
                 WHERE team_id = $1 AND kind = 'llm' AND executed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), \
               (SELECT coalesce(sum(billed_bytes), 0)::int8 FROM usage_ledger \
                 WHERE team_id = $1 AND kind <> 'llm' AND executed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
             FROM teams t WHERE t.id = $1",
            &[&team_id],
        )
        .await?;
    let settings: TeamSettings = today
        .try_get::<_, Json<TeamSettings>>(0)
        .map(|j| j.0)
        .unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    Ok(Usage {
        team_id,
        from: ask.from,
        to: ask.to,
        group_by: ask.group_by.as_str().to_owned(),
        groups,
        has_more,
        totals: spending(&totals, 0),
        today: Today {
            llm_usd: today.get(1),
            billed_bytes: today.get(2),
            daily_llm_usd: settings.daily_llm_usd,
            daily_warehouse_bytes: settings.daily_warehouse_bytes,
            daily_generation_runs_per_user: settings.daily_generation_runs_per_user,
            resets_at: (now.date() + Duration::days(1)).midnight().assume_utc(),
        },
    })
}

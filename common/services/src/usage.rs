//! The cost ledger and the team's daily budgets (issue 14).
//!
//! Every warehouse job goes through [`Metered`], the decorator [`Connections::warehouse`]
//! puts around every opened warehouse: a query or dry run writes one `warehouse_jobs` row
//! (team, connection, user, why, dashboard version or session and run, bytes, dollars,
//! outcome), and a query is refused before it is sent when the team's daily warehouse
//! budget is spent. Who is charged is the [`Charge`] of the task doing the work: a data
//! read, a precompute or a chat run sets it with [`charged`]; nothing needs to be threaded
//! through the layers between. LLM calls are recorded by `ai::calls` (`model_calls`); the
//! `usage_ledger` view (migration V10) reads both.
//!
//! Budgets are counted per UTC day. A chat or generation run is admitted in
//! [`admit_run`] under a per-team advisory lock: the dollars spent today plus the cap
//! (`CHAT_MAX_RUN_USD`) of every run still under way must stay below the budget, so racing
//! requests can overspend by at most one run's own cap.
//!
//! [`Connections::warehouse`]: crate::connections::Connections::warehouse

use std::{future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use base::domain::TeamSettings;
use deadpool_postgres::Pool;
use edge::ApiError;
use platform::warehouse::{
    AccessCheck, ColumnInfo, DatasetInfo, Dialect, DryRun, Limits, Param, QueryResult, TableInfo,
    Warehouse, WarehouseError,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// BigQuery's on-demand price, dollars per TiB processed.
pub const BIGQUERY_USD_PER_TIB: f64 = 6.25;

/// Dollars for `bytes` processed on a warehouse of `dialect` (`None`: no per-byte price).
pub fn warehouse_usd(dialect: Dialect, bytes: u64) -> Option<f64> {
    match dialect {
        Dialect::Bigquery => Some(bytes as f64 / (1u64 << 40) as f64 * BIGQUERY_USD_PER_TIB),
        Dialect::Postgres => None,
    }
}

/// Why the warehouse is asked (the ledger's `kind` for queries; dry runs are `dry_run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// A dashboard's data read that missed the caches.
    Tile,
    /// A scheduled or forced warm.
    Precompute,
    /// A chat or generation tool.
    Agent,
    /// Anything else (a dashboard check, a catalog scan's queries).
    #[default]
    Api,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tile => "tile",
            Self::Precompute => "precompute",
            Self::Agent => "agent",
            Self::Api => "api",
        }
    }
}

/// Who pays for the warehouse jobs of the current task, and what for.
#[derive(Debug, Clone, Default)]
pub struct Charge {
    pub user_id: Option<Uuid>,
    pub purpose: Purpose,
    pub dashboard: Option<(Uuid, i32)>,
    pub session_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
}

impl Charge {
    pub fn new(user_id: Option<Uuid>, purpose: Purpose) -> Self {
        Self {
            user_id,
            purpose,
            ..Self::default()
        }
    }

    pub fn with_dashboard(mut self, id: Uuid, version: i32) -> Self {
        self.dashboard = Some((id, version));
        self
    }
}

tokio::task_local! {
    static CHARGE: Charge;
}

/// Runs `f` with `charge` as the payer of its warehouse jobs. Futures it awaits (joined or
/// buffered in the same task) inherit it; a spawned task must be charged itself.
pub async fn charged<F: Future>(charge: Charge, f: F) -> F::Output {
    CHARGE.scope(charge, f).await
}

/// The current task's charge (an unattributed `api` charge outside any).
pub fn current() -> Charge {
    CHARGE.try_with(Charge::clone).unwrap_or_default()
}

/// Seconds from now to the next UTC midnight, when the daily budgets reset.
pub fn secs_to_reset() -> u64 {
    let now = OffsetDateTime::now_utc();
    let secs =
        u64::from(now.hour()) * 3600 + u64::from(now.minute()) * 60 + u64::from(now.second());
    (86_400 - secs).max(1)
}

/// The 429 of a spent budget, with `Retry-After` at the next reset.
pub fn budget_exceeded(detail: impl Into<String>) -> ApiError {
    ApiError::too_many_requests("budget_exceeded", detail.into(), secs_to_reset())
}

/// The start of today, UTC (what "daily" means for every budget).
const TODAY: &str = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";

/// What a team has spent today, against its budgets.
#[derive(Debug, Clone, Default)]
pub struct Spent {
    pub settings: TeamSettings,
    pub llm_usd: f64,
    pub billed_bytes: u64,
    /// The team's runs under way (started within the longest a run may last).
    pub runs_in_flight: i64,
    /// The user's generation runs started today (when a user was asked about).
    pub user_generations: i64,
}

impl Spent {
    /// Why nothing more may be spent on the warehouse, if so.
    pub fn warehouse_refusal(&self) -> Option<String> {
        let cap = self.settings.daily_warehouse_bytes?;
        (self.billed_bytes >= cap).then(|| {
            format!(
                "the team's daily warehouse budget of {cap} bytes is spent ({} bytes today); it resets at midnight UTC",
                self.billed_bytes
            )
        })
    }

    /// Why a run under way must stop, if so: a budget is spent.
    pub fn run_refusal(&self) -> Option<String> {
        if let Some(budget) = self.settings.daily_llm_usd
            && self.llm_usd >= budget
        {
            return Some(format!(
                "the team's daily LLM budget of ${budget:.2} is spent (${:.4} today); it resets at midnight UTC",
                self.llm_usd
            ));
        }
        self.warehouse_refusal()
    }
}

/// The team's settings (defaults for a team that is gone).
pub async fn team_settings(
    client: &impl tokio_postgres::GenericClient,
    team_id: Uuid,
) -> Result<TeamSettings, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT settings FROM teams WHERE id = $1", &[&team_id])
        .await?;
    Ok(row
        .and_then(|r| serde_json::from_value(r.get::<_, serde_json::Value>(0)).ok())
        .unwrap_or_default())
}

/// Reads the team's settings and, when it has budgets, what it spent today. `user`: also
/// count that user's generation runs; `max_run_secs`: how long a run may last.
pub async fn spent(
    client: &impl tokio_postgres::GenericClient,
    team_id: Uuid,
    user: Option<Uuid>,
    max_run_secs: f64,
) -> Result<Spent, tokio_postgres::Error> {
    let settings = team_settings(client, team_id).await?;
    if !settings.has_budget() {
        return Ok(Spent {
            settings,
            ..Spent::default()
        });
    }
    spent_against(client, settings, team_id, user, max_run_secs).await
}

/// What the team spent today, its settings already read.
async fn spent_against(
    client: &impl tokio_postgres::GenericClient,
    settings: TeamSettings,
    team_id: Uuid,
    user: Option<Uuid>,
    max_run_secs: f64,
) -> Result<Spent, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT \
                   (SELECT coalesce(sum(cost_usd), 0)::float8 FROM model_calls \
                     WHERE team_id = $1 AND executed_at >= {TODAY}), \
                   (SELECT coalesce(sum(bytes), 0)::int8 FROM warehouse_jobs \
                     WHERE team_id = $1 AND executed_at >= {TODAY} AND kind <> 'dry_run' AND status <> 'skipped'), \
                   (SELECT count(*) FROM chat_runs WHERE team_id = $1 AND status = 'running' \
                     AND started_at > now() - make_interval(secs => $3)), \
                   (SELECT count(*) FROM chat_runs r JOIN session_manifests s ON s.id = r.session_id \
                     WHERE r.team_id = $1 AND r.user_id = $2 AND s.purpose = 'generate' AND r.started_at >= {TODAY})"
            ),
            &[&team_id, &user, &max_run_secs],
        )
        .await?;
    Ok(Spent {
        settings,
        llm_usd: row.get(0),
        billed_bytes: row.get::<_, i64>(1).max(0) as u64,
        runs_in_flight: row.get(2),
        user_generations: row.get(3),
    })
}

/// The admission of a new chat or generation run, inside the transaction that inserts its
/// row: under the team's advisory lock (held to the commit), so racing requests are
/// counted one after the other. `run_usd`: the cap of one run.
pub async fn admit_run(
    tx: &tokio_postgres::Transaction<'_>,
    team_id: Uuid,
    user_id: Uuid,
    generation: bool,
    run_usd: f64,
    max_run_secs: f64,
) -> Result<(), ApiError> {
    let settings = team_settings(tx, team_id).await?;
    if !settings.has_budget() {
        return Ok(());
    }
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('bridge.budget.' || $1::uuid::text, 0))",
        &[&team_id],
    )
    .await?;
    // Counted under the lock: a racing admission has committed its run, or waits for us.
    let spent = spent_against(tx, settings, team_id, Some(user_id), max_run_secs).await?;
    if let Some(budget) = spent.settings.daily_llm_usd {
        let committed = spent.llm_usd + spent.runs_in_flight as f64 * run_usd;
        if committed >= budget {
            return Err(budget_exceeded(if spent.llm_usd >= budget {
                format!(
                    "the team's daily LLM budget of ${budget:.2} is spent (${:.4} today); it resets at midnight UTC",
                    spent.llm_usd
                )
            } else {
                format!(
                    "the team's daily LLM budget of ${budget:.2} is committed: ${:.4} spent today and {} runs under way, each allowed up to ${run_usd:.2}; try again when they end",
                    spent.llm_usd, spent.runs_in_flight
                )
            }));
        }
    }
    if let Some(reason) = spent.warehouse_refusal() {
        return Err(budget_exceeded(reason));
    }
    if generation
        && let Some(cap) = spent.settings.daily_generation_runs_per_user
        && spent.user_generations >= i64::from(cap)
    {
        return Err(budget_exceeded(format!(
            "you have started {} generation runs today, the team's daily limit per member is {cap}; it resets at midnight UTC",
            spent.user_generations
        )));
    }
    Ok(())
}

/// A warehouse whose jobs are written to the ledger and held to the team's budget.
pub struct Metered {
    inner: Arc<dyn Warehouse>,
    meter: Arc<Meter>,
}

/// What [`Metered`] records jobs with.
pub struct Meter {
    pub db: Pool,
    pub team_id: Uuid,
    pub connection_id: Uuid,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Warehouse>, meter: Meter) -> Arc<dyn Warehouse> {
        Arc::new(Self {
            inner,
            meter: Arc::new(meter),
        })
    }

    /// The refusal of a query when the team's warehouse budget is spent. A failure to read
    /// the budget does not stop the query (the per-query byte cap still holds).
    async fn refusal(&self) -> Option<String> {
        let client = match self.meter.db.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the warehouse budget");
                return None;
            }
        };
        match spent(&**client, self.meter.team_id, None, 0.0).await {
            Ok(s) => s.warehouse_refusal(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the warehouse budget");
                None
            }
        }
    }

    /// Writes one job. A failure is logged, not returned: the answer is already paid for.
    async fn record(&self, job: Job<'_>) {
        let charge = current();
        let dialect = self.inner.dialect();
        let cost = if job.status == "skipped" || job.kind == "dry_run" {
            Some(0.0)
        } else {
            warehouse_usd(dialect, job.bytes)
        };
        let written = async {
            let client = self.meter.db.get().await?;
            client
                .execute(
                    "INSERT INTO warehouse_jobs (id, team_id, connection_id, user_id, kind, warehouse_type, \
                       dashboard_id, dashboard_version, session_id, run_id, status, error_code, bytes, cost_usd, duration_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::float8::numeric, $15)",
                    &[
                        &Uuid::now_v7(),
                        &self.meter.team_id,
                        &self.meter.connection_id,
                        &charge.user_id,
                        &job.kind,
                        &dialect.as_str(),
                        &charge.dashboard.map(|d| d.0),
                        &charge.dashboard.map(|d| d.1),
                        &charge.session_id,
                        &charge.run_id,
                        &job.status,
                        &job.error_code,
                        &i64::try_from(job.bytes).unwrap_or(i64::MAX),
                        &cost,
                        &i32::try_from(job.started.elapsed().as_millis()).unwrap_or(i32::MAX),
                    ],
                )
                .await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = written {
            tracing::error!(error = %format!("{e:#}"), team_id = %self.meter.team_id, "recording a warehouse job");
        }
    }
}

struct Job<'a> {
    kind: &'a str,
    status: &'a str,
    error_code: Option<&'a str>,
    bytes: u64,
    started: Instant,
}

#[async_trait]
impl Warehouse for Metered {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn check_access(&self) -> Vec<AccessCheck> {
        self.inner.check_access().await
    }

    async fn dry_run(&self, sql: &str, params: &[Param]) -> Result<DryRun, WarehouseError> {
        let started = Instant::now();
        let result = self.inner.dry_run(sql, params).await;
        let (status, code, bytes) = match &result {
            Ok(d) => ("ok", None, d.bytes),
            Err(e) => ("error", Some(e.code()), 0),
        };
        self.record(Job {
            kind: "dry_run",
            status,
            error_code: code,
            bytes,
            started,
        })
        .await;
        result
    }

    async fn query(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
    ) -> Result<QueryResult, WarehouseError> {
        let started = Instant::now();
        let kind = current().purpose.as_str();
        if let Some(reason) = self.refusal().await {
            self.record(Job {
                kind,
                status: "skipped",
                error_code: Some("budget_exceeded"),
                bytes: 0,
                started,
            })
            .await;
            return Err(WarehouseError::BudgetExceeded(reason));
        }
        let result = self.inner.query(sql, params, limits).await;
        let (status, code, bytes) = match &result {
            Ok(r) => ("ok", None, r.bytes_scanned.unwrap_or(0)),
            Err(e) => ("error", Some(e.code()), 0),
        };
        self.record(Job {
            kind,
            status,
            error_code: code,
            bytes,
            started,
        })
        .await;
        result
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetInfo>, WarehouseError> {
        self.inner.list_datasets().await
    }

    async fn list_tables(&self, dataset: &str) -> Result<Vec<TableInfo>, WarehouseError> {
        self.inner.list_tables(dataset).await
    }

    async fn table_columns(
        &self,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, WarehouseError> {
        self.inner.table_columns(dataset, table).await
    }
}

/// Records a dashboard's precompute that was not sent (`code` says why).
pub async fn record_skip(
    db: &Pool,
    dashboard: &crate::dashboards::Dashboard,
    charge: &Charge,
    code: &str,
) {
    let written = async {
        let client = db.get().await?;
        client
            .execute(
                "INSERT INTO warehouse_jobs (id, team_id, connection_id, user_id, kind, warehouse_type, \
                   dashboard_id, dashboard_version, status, error_code, cost_usd) \
                 SELECT $1, $2, c.id, $4, $5, c.warehouse_type, $6, $7, 'skipped', $8, 0 \
                   FROM connections c WHERE c.id = $3",
                &[
                    &Uuid::now_v7(),
                    &dashboard.team_id,
                    &dashboard.connection_id,
                    &charge.user_id,
                    &charge.purpose.as_str(),
                    &dashboard.id,
                    &dashboard.version,
                    &code,
                ],
            )
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = written {
        tracing::error!(error = %format!("{e:#}"), dashboard = %dashboard.slug, "recording a skipped job");
    }
}

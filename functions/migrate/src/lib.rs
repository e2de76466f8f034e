//! The deploy step that changes Bridge's database: the migrations of `migrations/`
//! (forward-only, embedded at build time) and then the prompt blocks of `prompts/`, exactly
//! what `bridge migrate` does. The functions never migrate; this runs once per deploy,
//! before traffic moves to the new code (docs/deploys.md):
//!
//! - on AWS, as a Lambda function that Terraform invokes (`aws_lambda_invocation`) before it
//!   updates the functions; each invocation migrates and answers with its [`Report`];
//! - on GCP (or anywhere else), as a process that migrates once and exits: a Cloud Run job
//!   executed before the services' new revisions are deployed.
//!
//! Idempotent (what is applied is recorded by refinery and skipped), and safe when two deploys
//! race: `storage::db::migrate` holds a Postgres advisory lock for the whole run, so the second
//! waits for the first and then finds nothing left to apply; the prompt seeding takes its own
//! transaction-scoped lock.

use anyhow::Context;
use deadpool_postgres::Pool;
use serde::Serialize;
use settings::Settings;
use storage::db;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Migrations applied by this run (`V<n>__<name>`); empty when the database was up to date.
    pub applied: Vec<String>,
    /// Prompt blocks created, updated (a new version) and deactivated by this run.
    pub prompt_blocks: PromptChanges,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromptChanges {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deactivated: Vec<String>,
    pub unchanged: usize,
}

impl Report {
    /// One line for a log or a terminal.
    pub fn summary(&self) -> String {
        let migrations = if self.applied.is_empty() {
            "the database is up to date".to_owned()
        } else {
            format!("applied {}", self.applied.join(", "))
        };
        let p = &self.prompt_blocks;
        format!(
            "{migrations}; prompt blocks: {} new, {} updated, {} deactivated, {} unchanged",
            p.created.len(),
            p.updated.len(),
            p.deactivated.len(),
            p.unchanged
        )
    }
}

/// Applies the pending migrations, then seeds the prompt blocks, on `pool`.
pub async fn apply(pool: &Pool) -> anyhow::Result<Report> {
    let applied = db::migrate(pool).await?;
    let seeded = ai::prompts::seed(pool, &ai::prompts::embedded())
        .await
        .map_err(|e| anyhow::anyhow!("seeding prompt blocks: {e}"))?;
    Ok(Report {
        applied,
        prompt_blocks: PromptChanges {
            created: seeded.created,
            updated: seeded.updated,
            deactivated: seeded.deactivated,
            unchanged: seeded.unchanged.len(),
        },
    })
}

/// The one-connection pool a run uses: no statement timeout (a migration may rewrite a big
/// table), connects bounded by `DATABASE_TIMEOUT`.
pub fn pool(settings: &Settings) -> anyhow::Result<Pool> {
    let url = settings.database_url().context("DATABASE_URL is not set")?;
    db::pool(
        url,
        settings.database_ca_file.as_deref(),
        db::PoolOptions {
            max_size: 1,
            timeout: settings.database_timeout,
            statement_timeout: None,
        },
    )
}

/// One Lambda invocation: migrate, answer with the report. The event is not read (whoever
/// may invoke the function may migrate); a failure fails the invocation, and with it the
/// `terraform apply` that made it, before any function is updated.
pub async fn on_event(pool: Pool, _event: serde_json::Value) -> Result<serde_json::Value, String> {
    match apply(&pool).await {
        Ok(report) => {
            tracing::info!(applied = ?report.applied, "{}", report.summary());
            serde_json::to_value(&report).map_err(|e| e.to_string())
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "migrations failed");
            Err(format!("{e:#}"))
        }
    }
}

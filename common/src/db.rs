//! Postgres: the connection pool, the migrations, and helpers for turning constraint
//! violations into 4xx answers where the query runs.

use std::{path::Path, time::Duration};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

pub use deadpool_postgres::{Object as Client, Transaction};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// A pool that connects lazily: building it costs nothing, so a function's cold start
/// does not wait for the database.
pub fn pool(
    url: &str,
    ca_file: Option<&Path>,
    max_size: usize,
    timeout: Duration,
) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    pool_from_config(config, ca_file, max_size, timeout)
}

/// Like [`pool`], from an already parsed configuration.
pub fn pool_from_config(
    mut config: tokio_postgres::Config,
    ca_file: Option<&Path>,
    max_size: usize,
    timeout: Duration,
) -> anyhow::Result<Pool> {
    if config.get_application_name().is_none() {
        config.application_name("bridge");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    let tls = crate::db_tls::configure(&mut config, ca_file)?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .context("building the Postgres pool")
}

/// Applies every migration in `migrations/` not yet applied. Forward-only; safe to run
/// concurrently (refinery takes a lock) and on every start.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<String>> {
    let mut client = pool.get().await.context("connecting to run migrations")?;
    let client: &mut tokio_postgres::Client = &mut client;
    // Serialise concurrent migrators (several functions cold-starting at once).
    client
        .execute("SELECT pg_advisory_lock(7242001)", &[])
        .await
        .context("taking the migration lock")?;
    let report = embedded::migrations::runner().run_async(client).await;
    client
        .execute("SELECT pg_advisory_unlock(7242001)", &[])
        .await
        .context("releasing the migration lock")?;
    let report = report.context("applying migrations")?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Names and checksums of the embedded migrations, to key test-database templates.
pub fn migrations_fingerprint() -> String {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| format!("{}:{}", m.version(), m.checksum()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The violated constraint, when `err` is a unique violation.
pub fn unique_violation(err: &tokio_postgres::Error) -> Option<&str> {
    let db = err.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION)
        .then(|| db.constraint())
        .flatten()
}

/// The violated constraint, when `err` is a foreign-key violation.
pub fn foreign_key_violation(err: &tokio_postgres::Error) -> Option<&str> {
    let db = err.as_db_error()?;
    (db.code() == &SqlState::FOREIGN_KEY_VIOLATION)
        .then(|| db.constraint())
        .flatten()
}

/// Checks the database answers, for `GET /ready`.
pub async fn ping(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("connecting")?;
    client.simple_query("SELECT 1").await.context("SELECT 1")?;
    Ok(())
}

//! Postgres: the connection pool, and helpers for turning constraint
//! violations into 4xx answers where the query runs.

use std::{path::Path, time::Duration};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

#[cfg(feature = "migrations")]
pub use crate::migrations::{migrate, migrations_fingerprint};
pub use deadpool_postgres::{Object as Client, Transaction};

/// How Bridge's own pool behaves.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_size: usize,
    /// Bounds each wait for a connection, each connect and each recycle check.
    pub timeout: Duration,
    /// Server-side `statement_timeout` of every session (none for migrations).
    pub statement_timeout: Option<Duration>,
}

/// A pool that connects lazily: building it costs nothing, so a function's cold start
/// does not wait for the database. TLS as `sslmode` says (see [`crate::db_tls`]), verified
/// against `ca_file` or the system's roots.
pub fn pool(url: &str, ca_file: Option<&Path>, options: PoolOptions) -> anyhow::Result<Pool> {
    let target = crate::db_tls::parse(url).map_err(|m| anyhow::anyhow!("DATABASE_URL {m}"))?;
    pool_from_target(target, ca_file, options)
}

/// Like [`pool`], from an already parsed URL.
pub fn pool_from_target(
    mut target: crate::db_tls::Target,
    ca_file: Option<&Path>,
    options: PoolOptions,
) -> anyhow::Result<Pool> {
    let config = &mut target.config;
    if config.get_application_name().is_none() {
        config.application_name("bridge");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.timeout);
    }
    // A server that stops answering is noticed by the kernel, not only when a query waits.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if let Some(limit) = options.statement_timeout {
        let mut opts = config.get_options().unwrap_or_default().to_owned();
        opts.push_str(&format!(
            " -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            limit.as_millis().max(1),
            (limit * 3).as_millis().max(1)
        ));
        config.options(opts.trim());
    }
    let roots = match ca_file {
        Some(path) => crate::db_tls::Roots::File(path),
        None => crate::db_tls::Roots::System,
    };
    let tls = crate::db_tls::connector(&mut target, roots)?;
    let manager = Manager::from_config(
        target.config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.timeout))
        .create_timeout(Some(options.timeout))
        .recycle_timeout(Some(options.timeout))
        .build()
        .context("building the Postgres pool")
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

//! The migrations in `migrations/` (at the repository's root), embedded at compile time, and
//! the runner that applies them. Behind the `migrations` feature: `bridge` and the test
//! harness migrate; the functions never do, and do not link refinery.

use anyhow::Context;
use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("../../migrations");
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

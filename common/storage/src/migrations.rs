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
    let report = run_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock(7242001)", &[])
        .await
        .context("releasing the migration lock")?;
    let report = report?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Runs refinery, under the lock. A database *ahead* of this binary (a rollback: the previous
/// release's code, after the next release's migrations) is accepted, since every release works
/// with the next schema (docs/deploys.md): nothing is applied, provided every migration this
/// binary embeds is applied with the same checksum. refinery alone would refuse it
/// (`abort_missing`), and would then refuse it for out-of-order migrations too, which this
/// still does.
async fn run_locked(client: &mut tokio_postgres::Client) -> anyhow::Result<refinery::Report> {
    let runner = embedded::migrations::runner();
    let newest = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(-1);
    let history = client
        .query_opt(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .context("reading the migration history")?
        .is_some_and(|row| row.get::<_, bool>(0));
    let applied: Vec<i64> = if history {
        client
            .query("SELECT version::int8 FROM refinery_schema_history", &[])
            .await
            .context("reading the migration history")?
            .iter()
            .map(|row| row.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let ahead = applied.iter().any(|v| *v > newest);
    let unapplied = runner
        .get_migrations()
        .iter()
        .find(|m| !applied.contains(&i64::from(m.version())));
    if let (true, Some(m)) = (ahead, unapplied) {
        anyhow::bail!(
            "the database has migrations newer than this release's, but not {m}: \
             refusing to apply a migration out of order"
        );
    }
    runner
        .set_abort_missing(!ahead)
        .run_async(client)
        .await
        .context("applying migrations")
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

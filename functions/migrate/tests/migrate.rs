//! The deploy step against real Postgres: an empty database migrated once, concurrent runs
//! applying each migration once, the binary as a Cloud Run job runs it (once, then exit), and
//! as a Lambda function through cargo-lambda's runtime emulator with `events/migrate/`.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, collections::HashSet, time::Duration};

use serde_json::Value;
use testkit::{TestDb, cargo_lambda, event_files};

/// How many migrations `migrations/` holds (files named `V<n>__<name>.sql`).
fn migration_count() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with('V') && name.ends_with(".sql")
        })
        .count()
}

/// The report among the binary's stdout lines (its JSON log lines go there too).
fn report(stdout: &[u8]) -> Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v.get("applied").is_some() && v.get("prompt_blocks").is_some())
        .unwrap_or_else(|| panic!("no report in {}", String::from_utf8_lossy(stdout)))
}

fn pool(url: &str) -> deadpool_postgres::Pool {
    storage::db::pool(
        url,
        None,
        storage::db::PoolOptions {
            max_size: 1,
            timeout: Duration::from_secs(10),
            statement_timeout: None,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_once_and_a_rerun_changes_nothing() {
    let db = TestDb::empty().await;
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool(&db.url);
            tokio::spawn(async move { migrate::apply(&pool).await })
        })
        .collect();
    let mut applied = Vec::new();
    let mut created = Vec::new();
    for run in runs {
        let report = run.await.unwrap().unwrap();
        applied.extend(report.applied);
        created.extend(report.prompt_blocks.created);
    }
    let distinct: HashSet<_> = applied.iter().collect();
    assert_eq!(applied.len(), migration_count(), "{applied:?}");
    assert_eq!(
        distinct.len(),
        applied.len(),
        "no migration twice: {applied:?}"
    );
    let distinct: HashSet<_> = created.iter().collect();
    assert!(!created.is_empty(), "the prompt blocks are seeded");
    assert_eq!(distinct.len(), created.len(), "no block seeded twice");

    let again = migrate::apply(&pool(&db.url)).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert!(again.prompt_blocks.created.is_empty() && again.prompt_blocks.updated.is_empty());
    assert_eq!(
        again.summary().split(';').next(),
        Some("the database is up to date")
    );
}

/// What a Cloud Run job does: the binary off Lambda migrates once, prints its report, exits 0.
#[tokio::test]
async fn the_binary_off_lambda_migrates_once_and_exits() {
    let db = TestDb::empty().await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("LOG_FORMAT", "json")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = report(&first.stdout);
    assert_eq!(
        report["applied"].as_array().unwrap().len(),
        migration_count()
    );
    let second = run();
    assert!(second.status.success());
    let again = self::report(&second.stdout);
    assert_eq!(again["applied"], Value::Array(vec![]), "{again}");

    // A database it cannot reach: a failure, said on stderr, and a non-zero status.
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env("DATABASE_TIMEOUT_MS", "2000")
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("migrate:"));
}

/// What Terraform's `aws_lambda_invocation` does: the binary under the Lambda runtime answers
/// each invocation with its report; the first migrates, the next find nothing to do.
#[tokio::test]
async fn every_event_file_runs_through_cargo_lambda_and_the_migrate_binary() {
    let db = TestDb::empty().await;
    let env = HashMap::from([("DATABASE_URL".to_owned(), db.url.clone())]);
    let Some(mut rig) = cargo_lambda::start(env!("CARGO_BIN_EXE_migrate"), &env).await else {
        return;
    };
    let (dir, names) = event_files("migrate");
    assert!(names.contains("deploy"), "{names:?}");
    let mut applied = 0;
    for name in &names {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        for _ in 0..2 {
            let report = rig.invoke(&raw).await;
            applied += report["applied"].as_array().unwrap().len();
        }
    }
    assert_eq!(
        applied,
        migration_count(),
        "applied once over every invocation"
    );
    let log = rig.function_log();
    assert!(log.contains("through the Lambda runtime"), "{log}");
}

/// A rollback redeploys the previous release, whose step embeds fewer migrations than the
/// database has applied: it applies nothing and succeeds (docs/deploys.md). But a migration of
/// its own that the database lacks, below the newest applied, is refused, not skipped.
#[tokio::test]
async fn a_rollback_finds_the_database_ahead_and_applies_nothing() {
    let db = TestDb::empty().await;
    migrate::apply(&pool(&db.url)).await.unwrap();
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (99999, 'from_the_next_release', '2026-12-03T00:00:00Z', '1')",
            &[],
        )
        .await
        .unwrap();
    let report = migrate::apply(&pool(&db.url)).await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");

    client
        .execute("DELETE FROM refinery_schema_history WHERE version = 1", &[])
        .await
        .unwrap();
    let e = migrate::apply(&pool(&db.url)).await.unwrap_err();
    assert!(format!("{e:#}").contains("out of order"), "{e:#}");
}

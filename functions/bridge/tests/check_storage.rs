//! `bridge check-storage` and the scheduled storage integrity check, against real Postgres
//! and local file buckets: a store written through the real routes is clean; then each kind
//! of drift is made by hand (a version's YAML deleted, an orphan aged past the grace period,
//! objects corrupted), and the check names each by its key, and deletes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace, sample_dashboard};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
        .merge(precompute::router())
        .merge(chat::router())
}

/// `bridge check-storage` with the app's settings (same database, buckets, key ring).
fn check_storage(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .env_clear()
        .envs(&app.env)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("check-storage")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report of `bridge check-storage --json`, and its exit status.
fn report(app: &TestApp) -> (Option<i32>, Value) {
    let (code, stdout, stderr) = check_storage(app, &["--json"]);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {stdout}\n{stderr}"));
    (code, report)
}

/// The directory of a local bucket (`file:…`).
fn dir(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file:").expect("a local bucket"))
}

/// Makes every file under `root` an hour old: what the store looks like once the grace
/// period has passed since everything was written.
fn age(root: &Path) {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(hour_ago)
                    .unwrap();
            }
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Every finding of `kind` (`missing`, `orphaned`, `mismatched`) as (key, example).
fn findings<'a>(report: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    report[kind]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e))
        .collect()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.db
        .client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// A store with something in every bucket, written through the real routes: a validated,
/// scanned connection (sealed credentials), a dashboard in two versions (YAML), its results
/// warmed (cache), a table's columns read (cache), a chat exchange (session chunks), and an
/// artifact (sessions bucket).
async fn populated() -> (TestApp, TestWarehouse, Workspace) {
    let app = TestApp::spawn(routes()).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);
    let retitled = yaml.replace("title: Revenue overview", "title: Revenue by region");
    app.put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .raw("application/yaml", retitled)
        .send()
        .await
        .assert_status(200);
    app.post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(200);
    let table: String = app
        .db
        .client()
        .await
        .query_one("SELECT id::text FROM tables ORDER BY name LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    app.get(&format!("/v1/tables/{table}/columns"))
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(200);
    let session = app
        .post("/v1/chat/sessions")
        .bearer(&ws.token)
        .json(&json!({ "team_id": ws.team, "connection_id": ws.connection }))
        .send()
        .await;
    session.assert_status(201);
    let session = session.json()["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/chat/sessions/{session}/stream"))
        .bearer(&ws.token)
        .json(&json!({ "message": "What columns does analytics.orders have?" }))
        .send()
        .await
        .assert_status(200);
    // An artifact as `ai::artifacts` stores one: `{team}/artifacts/{sha256}`, then its row.
    let content = b"SELECT 1 AS one";
    let sha = base::crypto::sha256_hex(content);
    let key = format!("{}/artifacts/{sha}", ws.team);
    write(&dir(&app.settings.buckets.sessions).join(&key), content);
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO artifacts (id, team_id, artifact_type, content_sha256, object_key, size_bytes, mime_type) \
             VALUES (gen_random_uuid(), $1::text::uuid, 'sql', $2, $3, $4, 'application/sql')",
            &[&ws.team, &sha, &key, &(content.len() as i64)],
        )
        .await
        .unwrap();
    (app, wh, ws)
}

fn buckets_root(app: &TestApp) -> PathBuf {
    dir(&app.settings.buckets.cache)
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn check_storage_reports_a_clean_store_then_names_each_drift_and_deletes_nothing() {
    let (app, _wh, _ws) = populated().await;
    age(&buckets_root(&app));

    // Clean: every bucket listed whole, every pointer matched, the recorded SHA-256s verified.
    let (code, clean) = report(&app);
    assert_eq!(code, Some(0), "{clean:#}");
    assert_eq!(clean["clean"], true, "{clean:#}");
    assert_eq!(clean["complete"], true, "{clean:#}");
    for kind in ["missing", "orphaned", "mismatched"] {
        assert_eq!(clean[kind]["count"], 0, "{kind}: {clean:#}");
    }
    let buckets = clean["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    for b in buckets {
        assert!(b["objects_listed"].as_u64().unwrap() > 0, "{b}");
        assert!(b["rows_read"].as_u64().unwrap() > 0, "{b}");
        assert_eq!(b["listing_complete"], true, "{b}");
        assert_eq!(b["too_recent"], 0, "{b}");
    }
    let verified: u64 = buckets
        .iter()
        .map(|b| b["checksums_verified"].as_u64().unwrap())
        .sum();
    assert_eq!(verified, 3, "two YAML versions and an artifact: {clean:#}");

    // The drift, by hand.
    let client = app.db.client().await;
    let yaml_key = |v: i32| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT yaml_key FROM dashboard_versions WHERE version = $1",
                    &[&v],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let (v1, v2) = (yaml_key(1).await, yaml_key(2).await);
    let yamls = dir(&app.settings.buckets.dashboards);
    let cache = dir(&app.settings.buckets.cache);
    // (a) Missing: version 1's YAML is gone.
    std::fs::remove_file(yamls.join(&v1)).unwrap();
    // (b) Orphaned: a result no row points at, written an hour ago; and one written just now,
    // which the grace period leaves alone (its row may be about to commit).
    let orphan = "results/0190a0b0-0000-7000-8000-00000000dead/v1/revenue_total/0123abcd.json";
    write(&cache.join(orphan), b"{\"stale\":true}");
    // (c) Mismatched: version 2's YAML altered in place (same size: only its SHA-256 tells),
    // and a cached result cut short (its size tells).
    let original = std::fs::read(yamls.join(&v2)).unwrap();
    let mut altered = original.clone();
    let at = altered
        .windows(17)
        .position(|w| w == b"Revenue by region")
        .unwrap();
    altered[at] = b'r';
    std::fs::write(yamls.join(&v2), &altered).unwrap();
    let result: String = client
        .query_one(
            "SELECT blob_key FROM query_cache ORDER BY blob_key LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let full = std::fs::read(cache.join(&result)).unwrap();
    std::fs::write(cache.join(&result), &full[..full.len() / 2]).unwrap();
    age(&buckets_root(&app));
    let young = "dashboards/0190a0b0-0000-7000-8000-00000000beef/v1.yaml";
    write(&yamls.join(young), b"title: not yet committed\n");

    let rows_before = (
        scalar(&app, "SELECT count(*) FROM dashboard_versions").await,
        scalar(&app, "SELECT count(*) FROM query_cache").await,
        scalar(&app, "SELECT count(*) FROM connections").await,
        scalar(&app, "SELECT count(*) FROM session_chunks").await,
        scalar(&app, "SELECT count(*) FROM artifacts").await,
    );

    let (code, drift) = report(&app);
    assert_eq!(code, Some(1), "{drift:#}");
    assert_eq!(drift["clean"], false);
    assert_eq!(drift["complete"], true, "{drift:#}");

    let missing = findings(&drift, "missing");
    assert_eq!(drift["missing"]["count"], 1, "{drift:#}");
    assert_eq!(missing[0].0, v1);
    assert_eq!(missing[0].1["bucket"], "dashboards");
    assert_eq!(missing[0].1["kind"], "dashboard_yaml");
    assert!(
        missing[0].1["row"]
            .as_str()
            .unwrap()
            .starts_with("dashboard_versions dashboard_id="),
        "{drift:#}"
    );

    let orphaned = findings(&drift, "orphaned");
    assert_eq!(drift["orphaned"]["count"], 1, "{drift:#}");
    assert_eq!(orphaned[0].0, orphan);
    assert_eq!(orphaned[0].1["bucket"], "cache");
    assert_eq!(orphaned[0].1["kind"], "query_result");
    let dashboards = drift["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bucket"] == "dashboards")
        .unwrap();
    assert_eq!(dashboards["too_recent"], 1, "the young object: {drift:#}");

    let mismatched = findings(&drift, "mismatched");
    assert_eq!(drift["mismatched"]["count"], 2, "{drift:#}");
    let by_key = |key: &str| {
        mismatched
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key} not reported: {drift:#}"))
            .1
    };
    let yaml = by_key(&v2);
    assert_eq!(yaml["kind"], "dashboard_yaml");
    assert!(
        yaml["detail"].as_str().unwrap().contains("sha256"),
        "{yaml}"
    );
    let cut = by_key(&result);
    assert_eq!(cut["kind"], "query_result");
    assert!(
        cut["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{} bytes", full.len() / 2)),
        "{cut}"
    );
    assert!(
        cut["row"]
            .as_str()
            .unwrap()
            .starts_with("query_cache cache_key="),
        "{cut}"
    );
    // Keys and rows only: nothing of the objects' contents.
    let text = drift.to_string();
    assert!(!text.contains("stale") && !text.contains("Revenue by region"));

    // The human summary says the same, with the same exit status.
    let (code, stdout, stderr) = check_storage(&app, &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    for key in [v1.as_str(), v2.as_str(), orphan, result.as_str()] {
        assert!(stdout.contains(key), "{key} in {stdout}");
    }
    assert!(
        stdout.contains("1 missing, 1 orphaned, 2 mismatched"),
        "{stdout}"
    );
    assert!(stdout.contains("Nothing was deleted"), "{stdout}");

    // Nothing was deleted, nor repaired: objects and rows are as the drift left them.
    assert!(cache.join(orphan).exists());
    assert!(yamls.join(young).exists());
    assert!(!yamls.join(&v1).exists());
    assert_eq!(std::fs::read(yamls.join(&v2)).unwrap(), altered);
    assert_eq!(
        std::fs::read(cache.join(&result)).unwrap(),
        &full[..full.len() / 2]
    );
    let rows_after = (
        scalar(&app, "SELECT count(*) FROM dashboard_versions").await,
        scalar(&app, "SELECT count(*) FROM query_cache").await,
        scalar(&app, "SELECT count(*) FROM connections").await,
        scalar(&app, "SELECT count(*) FROM session_chunks").await,
        scalar(&app, "SELECT count(*) FROM artifacts").await,
    );
    assert_eq!(rows_before, rows_after);
}

#[tokio::test]
async fn check_storage_stops_at_its_limits_and_says_it_is_partial() {
    let (app, _wh, _ws) = populated().await;
    age(&buckets_root(&app));
    let (code, stdout, stderr) = check_storage(&app, &["--json", "--max-objects", "2"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let partial: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(partial["complete"], false, "{partial:#}");
    assert_eq!(partial["clean"], true, "a cut listing finds no false drift");
    assert!(
        partial["stopped"]
            .as_str()
            .unwrap()
            .contains("object limit"),
        "{partial:#}"
    );
    let listed: u64 = partial["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["objects_listed"].as_u64().unwrap())
        .sum();
    assert!(listed <= 2, "{partial:#}");
}

#[tokio::test]
async fn check_storage_exits_2_when_it_cannot_reach_postgres() {
    let app = TestApp::spawn(routes()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .env_clear()
        .envs(&app.env)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env("DATABASE_TIMEOUT_MS", "500")
        .args(["check-storage", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["complete"], false);
    assert!(
        !report["errors"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

#[tokio::test]
async fn check_storage_runs_from_the_tick_at_most_once_per_interval() {
    let app = TestApp::spawn(routes()).await;
    let orphan = "dashboards/0190a0b0-0000-7000-8000-00000000dead/v1.yaml";
    write(
        &dir(&app.settings.buckets.dashboards).join(orphan),
        b"title: left behind\n",
    );
    age(&buckets_root(&app));

    app.state.tick().await.unwrap();
    let client = app.db.client().await;
    let row = client
        .query_one(
            "SELECT started_at, finished_at IS NOT NULL, last_report FROM storage_checks WHERE name = 'storage'",
            &[],
        )
        .await
        .unwrap();
    let first: SystemTime = row.get(0);
    assert!(row.get::<_, bool>(1), "the run is recorded as finished");
    let last: Value = row.get(2);
    assert_eq!(last["orphaned"]["count"], 1, "{last:#}");
    assert_eq!(last["orphaned"]["examples"][0]["key"], orphan);

    // Not due again for a day: the next tick only reads the row.
    app.state.tick().await.unwrap();
    let again: SystemTime = client
        .query_one(
            "SELECT started_at FROM storage_checks WHERE name = 'storage'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, first);

    // A day later it runs again.
    client
        .execute(
            "UPDATE storage_checks SET started_at = started_at - interval '2 days'",
            &[],
        )
        .await
        .unwrap();
    app.state.tick().await.unwrap();
    let later: SystemTime = client
        .query_one(
            "SELECT started_at FROM storage_checks WHERE name = 'storage'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(later > first);
    // It reported; it did not delete.
    assert!(dir(&app.settings.buckets.dashboards).join(orphan).exists());
}

#[tokio::test]
async fn check_storage_is_not_scheduled_when_the_interval_is_zero() {
    let app = TestApp::spawn_with(routes(), &[("STORAGE_CHECK_EVERY_SECS", "0")]).await;
    app.state.tick().await.unwrap();
    let runs = scalar(&app, "SELECT count(*) FROM storage_checks").await;
    assert_eq!(runs, 0);
}

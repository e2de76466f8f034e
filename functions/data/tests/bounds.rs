//! What a cached result belongs to, and how large one may be: a deleted dashboard's cached
//! rows never reach the dashboard that takes its slug next (checked across two processes: the
//! generate routes in this test process delete, the `data` binary serves), and results are
//! bounded in bytes per query, per response and in memory.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
}

/// A team of `email`'s with a validated, scanned connection to `wh`.
async fn team(app: &TestApp, email: &str, wh: &TestWarehouse) -> Workspace {
    app.workspace_of(email, "postgres", json!({ "url": wh.reader_url }))
        .await
}

fn dashboard(slug: &str, connection: &str, sql: &str) -> String {
    format!(
        "version: 1\nkind: dashboard\nslug: {slug}\ntitle: Which warehouse\nview_type: analytical\n\
         connection: {connection}\nqueries:\n  - id: q\n    sql: |\n      {sql}\n\
         layout:\n  - {{ id: t, type: table, query: q, position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n"
    )
}

const WHICH: &str = "SELECT current_database() AS db, count(*) AS orders FROM analytics.orders";

async fn create(app: &TestApp, ws: &Workspace, yaml: &str) {
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .raw("application/yaml", yaml.to_owned())
        .send()
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_deleted_dashboards_cached_rows_never_reach_the_next_dashboard_on_its_slug() {
    let app = TestApp::spawn(routes()).await;
    let (wh_a, wh_b) = (TestWarehouse::demo().await, TestWarehouse::demo().await);
    let a = team(&app, "ada@example.com", &wh_a).await;
    let b = team(&app, "bob@example.com", &wh_b).await;
    let data = app.spawn_process(env!("CARGO_BIN_EXE_data"), &[]).await;

    // Team A's dashboard, read twice through the data process: cached there.
    create(&app, &a, &dashboard("shared-slug", &a.connection, WHICH)).await;
    let (status, first) = data
        .get_json("/v1/dashboards/shared-slug/data", &a.token)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["queries"]["q"]["rows"][0][0], json!(wh_a.db.name));
    let (_, again) = data
        .get_json("/v1/dashboards/shared-slug/data", &a.token)
        .await;
    assert_eq!(again["queries"]["q"]["metadata"]["cache_hit"], true);

    // Team A deletes it here (another process); team B takes the slug with the same SQL on
    // its own warehouse.
    app.delete("/v1/dashboards/shared-slug")
        .bearer(&a.token)
        .send()
        .await
        .assert_status(204);
    // The data process trusts its access answer for at most ACCESS_STALENESS (2 s): within
    // it, team A may still read its own dashboard's rows; past it, 404.
    let deleted = std::time::Instant::now();
    loop {
        let (status, gone) = data
            .get_json("/v1/dashboards/shared-slug/data", &a.token)
            .await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{gone}");
        assert!(
            deleted.elapsed()
                < services::ready::ACCESS_STALENESS + std::time::Duration::from_millis(750),
            "the deleted dashboard still answered after {:?}",
            deleted.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    create(&app, &b, &dashboard("shared-slug", &b.connection, WHICH)).await;

    let (status, body) = data
        .get_json("/v1/dashboards/shared-slug/data", &b.token)
        .await;
    assert_eq!(status, 200, "{body}");
    let q = &body["queries"]["q"];
    assert_eq!(
        q["rows"][0][0],
        json!(wh_b.db.name),
        "team B is served its own warehouse's rows: {body}"
    );
    assert_eq!(q["metadata"]["cache_hit"], false);
    assert_ne!(
        q["metadata"]["cached_at"],
        first["queries"]["q"]["metadata"]["cached_at"]
    );
    // And team A, no longer a member of the slug's team, is told nothing.
    let (status, _) = data
        .get_json("/v1/dashboards/shared-slug/data", &a.token)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deleting_a_dashboard_drops_its_entries_from_this_process() {
    let app = TestApp::spawn(routes()).await;
    let wh = TestWarehouse::demo().await;
    let a = team(&app, "ada@example.com", &wh).await;
    create(&app, &a, &dashboard("to-delete", &a.connection, WHICH)).await;
    app.get("/v1/dashboards/to-delete/data")
        .bearer(&a.token)
        .send()
        .await
        .assert_status(200);
    assert!(app.state.serving.caches().result_bytes().await > 0);
    app.delete("/v1/dashboards/to-delete")
        .bearer(&a.token)
        .send()
        .await
        .assert_status(204);
    assert_eq!(app.state.serving.caches().result_bytes().await, 0);
    let index: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM query_cache", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(index, 0, "and from the cache bucket's index");
}

/// A dashboard with a small query, a large one (8000 rows of ~1 KB) and two medium ones.
fn sized(connection: &str) -> String {
    format!(
        "version: 1\nkind: dashboard\nslug: sized\ntitle: Sized\nview_type: analytical\nconnection: {connection}\n\
         queries:\n\
         \x20 - id: small\n    sql: SELECT count(*) AS n FROM analytics.orders\n\
         \x20 - id: large\n    sql: SELECT order_id, repeat('x', 1000) AS pad FROM analytics.orders\n\
         \x20 - id: medium_a\n    sql: SELECT order_id, repeat('a', 100) AS pad FROM analytics.orders WHERE order_id <= 500\n\
         \x20 - id: medium_b\n    sql: SELECT order_id, repeat('b', 100) AS pad FROM analytics.orders WHERE order_id <= 500\n\
         layout:\n  - {{ id: t, type: table, query: small, position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n"
    )
}

fn error_code(body: &Value, query: &str) -> Option<String> {
    body["queries"][query]["error"]["code"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn results_are_bounded_per_query_and_per_response() {
    // 64 KiB per query, 100 KiB per response: `large` is over its cap; `medium_a` and
    // `medium_b` (~55 KB each) fit alone but not both. (Bodies are not printed on failure:
    // they are large.)
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("WAREHOUSE_MAX_RESULT_BYTES", "65536"),
            ("DATA_MAX_RESPONSE_BYTES", "102400"),
        ],
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let a = team(&app, "ada@example.com", &wh).await;
    create(&app, &a, &sized(&a.connection)).await;

    let r = app
        .get("/v1/dashboards/sized/data")
        .bearer(&a.token)
        .send()
        .await;
    r.assert_status(200);
    assert!(r.body.len() <= 102_400, "{} bytes", r.body.len());
    let body = r.json();
    assert_eq!(body["queries"]["small"]["rows"][0][0], json!(8000));
    assert_eq!(
        error_code(&body, "large").as_deref(),
        Some("result_too_large")
    );
    let message = body["queries"]["large"]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("65536"), "{message}");
    assert_eq!(error_code(&body, "medium_a"), None);
    assert_eq!(
        error_code(&body, "medium_b").as_deref(),
        Some("response_too_large")
    );
    // Alone, the query that did not fit is served.
    let r = app
        .get("/v1/dashboards/sized/query/medium_b/data")
        .bearer(&a.token)
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["rows"].as_array().unwrap().len(), 500);
    // Alone, the one over its cap is a problem naming the cap.
    let p = app
        .get("/v1/dashboards/sized/query/large/data")
        .bearer(&a.token)
        .send()
        .await
        .assert_problem(422, "result_too_large");
    assert!(p["detail"].as_str().unwrap().contains("65536"));

    // A team may lower its cap (never raise it past the server's).
    app.patch(&format!("/v1/teams/{}", a.team))
        .bearer(&a.token)
        .json(&json!({ "settings": { "max_result_bytes": 20000 } }))
        .send()
        .await
        .assert_status(200);
    let body = app
        .get("/v1/dashboards/sized/data")
        .bearer(&a.token)
        .send()
        .await
        .json();
    assert_eq!(
        error_code(&body, "medium_a").as_deref(),
        Some("result_too_large")
    );
    assert!(
        body["queries"]["medium_a"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20000")
    );
    assert_eq!(body["queries"]["small"]["rows"][0][0], json!(8000));
}

#[tokio::test]
async fn the_in_process_result_cache_stays_within_its_byte_budget() {
    // ~55 KB per medium query, a 100 KB budget: both cannot stay.
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("WAREHOUSE_MAX_RESULT_BYTES", "65536"),
            ("RESULT_CACHE_BYTES", "100000"),
        ],
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let a = team(&app, "ada@example.com", &wh).await;
    create(&app, &a, &sized(&a.connection)).await;
    for query in ["small", "medium_a", "medium_b", "small"] {
        app.get(&format!("/v1/dashboards/sized/query/{query}/data"))
            .bearer(&a.token)
            .send()
            .await
            .assert_status(200);
    }
    let held = app.state.serving.caches().result_bytes().await;
    assert!(held <= 100_000, "{held} bytes held");
    assert!(held > 0);
}

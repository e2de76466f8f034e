//! Dashboard authoring end to end, on the demo warehouse (real Postgres, read-only role):
//! validation with positions, versioned storage, If-Match, deletion, lineage, tenancy.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace, sample_dashboard};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
}

async fn setup() -> (TestApp, TestWarehouse, Workspace) {
    let app = TestApp::spawn(routes()).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    (app, wh, ws)
}

async fn validate(app: &TestApp, token: &str, yaml: &str) -> Value {
    let r = app
        .post("/v1/dashboards/validate")
        .bearer(token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await;
    r.assert_status(200);
    r.json()
}

async fn create(app: &TestApp, ws: &Workspace, yaml: &str) -> testkit::TestResponse {
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
}

#[tokio::test]
async fn the_sample_dashboards_validate_against_the_demo_warehouse() {
    let (app, _wh, ws) = setup().await;
    for name in ["revenue-overview", "web-traffic"] {
        let report = validate(&app, &ws.token, &sample_dashboard(name, &ws.connection)).await;
        assert_eq!(report["valid"], true, "{name}: {report}");
        assert_eq!(report["errors"], json!([]));
    }
}

#[tokio::test]
async fn every_problem_is_reported_at_once_with_its_line() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection)
        .replace("FROM analytics.revenue_daily", "FROM analytics.revenue_hourly")
        .replace("value: total_revenue", "value: total_revnue")
        .replace("SELECT c.segment, SUM(i.amount) AS revenue", "WITH gone AS (DELETE FROM analytics.orders RETURNING 1) SELECT c.segment, SUM(i.amount) AS revenue");
    let report = validate(&app, &ws.token, &yaml).await;
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().unwrap();
    let find = |path: &str, says: &str| {
        errors
            .iter()
            .find(|e| e["path"] == path && e["message"].as_str().unwrap().contains(says))
            .unwrap_or_else(|| panic!("no `{says}` at {path}: {report}"))
            .clone()
    };
    let missing = find("queries[0].sql", "analytics.revenue_hourly");
    assert!(missing["message"].as_str().unwrap().contains("catalog"));
    // The first line of the SQL block (the id, description and `sql: |` lines come before).
    assert_eq!(
        missing["line"],
        yaml.lines()
            .position(|l| l.contains("- id: revenue_daily"))
            .unwrap()
            + 4
    );
    find("queries[3].sql", "DELETE");
    // The bad column is found once the query's output is known from its dry run, so it is
    // reported only when that query is itself valid: revenue_total refs revenue_daily, which
    // is broken here, so fix that and check the column alone.
    let yaml = sample_dashboard("revenue-overview", &ws.connection)
        .replace("value: total_revenue", "value: total_revnue");
    let report = validate(&app, &ws.token, &yaml).await;
    let e = &report["errors"][0];
    assert_eq!(e["path"], "layout[0].value", "{report}");
    assert!(
        e["message"].as_str().unwrap().contains("total_revnue")
            && e["message"].as_str().unwrap().contains("total_revenue")
    );
    assert_eq!(
        e["line"],
        yaml.lines()
            .position(|l| l.contains("total_revnue"))
            .unwrap()
            + 1
    );
}

#[tokio::test]
async fn structural_and_syntax_errors_need_no_warehouse() {
    let (app, _wh, ws) = setup().await;
    let report = validate(
        &app,
        &ws.token,
        "version: 1\nkind: dashboard\nslug: [oops\n",
    )
    .await;
    assert_eq!(report["valid"], false);
    assert!(report["errors"][0]["line"].as_u64().is_some(), "{report}");
    let overlap = sample_dashboard("revenue-overview", &ws.connection).replace(
        "position: { x: 3, y: 0, w: 3, h: 2 }",
        "position: { x: 2, y: 0, w: 3, h: 2 }",
    );
    let report = validate(&app, &ws.token, &overlap).await;
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("overlap")),
        "{report}"
    );
}

#[tokio::test]
async fn a_dashboard_is_created_read_and_versioned() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    let r = create(&app, &ws, &yaml).await;
    r.assert_status(201);
    assert_eq!(
        r.header("location"),
        Some("/v1/dashboards/revenue-overview")
    );
    assert_eq!(r.header("etag"), Some("\"1\""));
    let d = r.json();
    assert_eq!(
        (d["version"].as_i64(), d["title"].as_str()),
        (Some(1), Some("Revenue overview"))
    );
    assert_eq!(d["refresh_every_secs"], 86_400);

    let got = app
        .get("/v1/dashboards/revenue-overview")
        .bearer(&ws.token)
        .send()
        .await;
    assert_eq!(got.header("etag"), Some("\"1\""));
    let list = app
        .get(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .send()
        .await
        .json();
    assert_eq!(list["dashboards"][0]["slug"], "revenue-overview");

    let text = app
        .get("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .send()
        .await;
    assert_eq!(
        text.header("content-type"),
        Some("application/yaml; charset=utf-8")
    );
    assert_eq!(String::from_utf8_lossy(&text.body), yaml);

    // A new version, sent as raw YAML.
    let v2 = yaml.replace("title: Revenue overview", "title: Revenue (v2)");
    let r = app
        .put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .raw("application/yaml", v2.clone())
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.json()["title"], "Revenue (v2)");
    // Writing against a stale version is refused; against the current one, accepted.
    let stale = app
        .put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "yaml": yaml }))
        .send()
        .await;
    stale.assert_problem(412, "precondition_failed");
    let fresh = app
        .put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .header("if-match", "\"2\"")
        .json(&json!({ "yaml": yaml }))
        .send()
        .await;
    fresh.assert_status(200);
    assert_eq!(fresh.json()["version"], 3);

    let old = app
        .get("/v1/dashboards/revenue-overview/yaml?version=2")
        .bearer(&ws.token)
        .send()
        .await;
    assert_eq!(String::from_utf8_lossy(&old.body), v2);
    assert_eq!(old.header("etag"), Some("\"2\""));
    app.get("/v1/dashboards/revenue-overview/yaml?version=9")
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(404, "version_not_found");

    let renamed = yaml.replace("slug: revenue-overview", "slug: revenue-renamed");
    let p = app
        .put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .json(&json!({ "yaml": renamed }))
        .send()
        .await
        .assert_problem(422, "invalid_dashboard");
    assert_eq!(p["errors"][0]["field"], "slug");
}

#[tokio::test]
async fn invalid_dashboards_and_taken_slugs_are_not_stored() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    let bad = yaml.replace("value: total_revenue", "value: nope");
    let p = create(&app, &ws, &bad)
        .await
        .assert_problem(422, "invalid_dashboard");
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "layout[0].value"),
        "{p}"
    );
    create(&app, &ws, &yaml).await.assert_status(201);
    create(&app, &ws, &yaml)
        .await
        .assert_problem(409, "slug_taken");

    // Another team cannot put its dashboard on this team's connection.
    let other = app.token("other@example.com");
    let t = app
        .post("/v1/teams")
        .bearer(&other)
        .json(&json!({ "name": "Other" }))
        .send()
        .await
        .json();
    let p = app
        .post(&format!(
            "/v1/teams/{}/dashboards",
            t["id"].as_str().unwrap()
        ))
        .bearer(&other)
        .json(&json!({ "yaml": yaml.replace("revenue-overview", "other-dash") }))
        .send()
        .await
        .assert_problem(422, "invalid_dashboard");
    assert_eq!(p["errors"][0]["field"], "connection");
    let count: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM dashboards", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn owners_and_admins_delete_and_everything_goes() {
    let (app, _wh, ws) = setup().await;
    let editor = app.member(&ws, "ed@example.com", "editor").await;
    let other_editor = app.member(&ws, "ed2@example.com", "editor").await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&editor)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);
    app.get("/v1/dashboards/revenue-overview/data")
        .bearer(&editor)
        .send()
        .await
        .assert_status(200);
    let keys: Vec<String> = app
        .db
        .client()
        .await
        .query("SELECT yaml_key FROM dashboard_versions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&other_editor)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&editor)
        .send()
        .await
        .assert_status(204);
    app.get("/v1/dashboards/revenue-overview")
        .bearer(&editor)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    assert!(app.state.buckets.dashboards.get(&keys[0]).await.is_err());
    let cached: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM query_cache", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cached, 0);

    // An admin may delete someone else's; the connection can then be deleted too.
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&editor)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);
    app.delete(&format!("/v1/connections/{}", ws.connection))
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(409, "connection_in_use");
    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(204);
}

#[tokio::test]
async fn lineage_runs_from_the_dashboard_to_warehouse_tables() {
    let (app, _wh, ws) = setup().await;
    create(
        &app,
        &ws,
        &sample_dashboard("revenue-overview", &ws.connection),
    )
    .await
    .assert_status(201);
    let l = app
        .get("/v1/dashboards/revenue-overview/lineage")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    let edges: Vec<(String, String)> = l["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let has = |a: &str, b: &str| edges.contains(&(a.to_owned(), b.to_owned()));
    assert!(has("dashboard:revenue-overview", "tile:revenue"));
    assert!(has("tile:revenue", "query:revenue_total"));
    assert!(has("query:revenue_total", "query:revenue_daily"));
    assert!(has("query:revenue_daily", "table:analytics.revenue_daily"));
    assert!(has("query:top_customers", "table:analytics.customers"));
    assert!(
        !has("query:revenue_total", "table:analytics.revenue_daily"),
        "through its ref, not directly"
    );
    let table = l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "table:analytics.orders")
        .unwrap();
    assert!(
        table["detail"].as_str().is_some(),
        "linked to the catalog: {table}"
    );
}

#[tokio::test]
async fn the_schema_is_served_to_editors() {
    let (app, _wh, _ws) = setup().await;
    let r = app.get("/v1/schemas/dashboard.json").send().await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/schema+json"));
    assert_eq!(
        r.json()["$id"],
        "https://bridge.example/v1/schemas/dashboard.json"
    );
}

#[tokio::test]
async fn strangers_get_404_and_viewers_cannot_write() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    create(&app, &ws, &yaml).await.assert_status(201);
    let viewer = app.member(&ws, "vi@example.com", "viewer").await;
    let eve = app.token("eve@example.com");

    for (req, code) in [
        (
            app.get("/v1/dashboards/revenue-overview").bearer(&eve),
            "dashboard_not_found",
        ),
        (
            app.get("/v1/dashboards/revenue-overview/yaml").bearer(&eve),
            "dashboard_not_found",
        ),
        (
            app.put("/v1/dashboards/revenue-overview/yaml")
                .bearer(&eve)
                .json(&json!({ "yaml": yaml })),
            "dashboard_not_found",
        ),
        (
            app.delete("/v1/dashboards/revenue-overview").bearer(&eve),
            "dashboard_not_found",
        ),
        (
            app.get("/v1/dashboards/revenue-overview/lineage")
                .bearer(&eve),
            "dashboard_not_found",
        ),
        (
            app.get(&format!("/v1/teams/{}/dashboards", ws.team))
                .bearer(&eve),
            "team_not_found",
        ),
        (
            app.post(&format!("/v1/teams/{}/dashboards", ws.team))
                .bearer(&eve)
                .json(&json!({ "yaml": yaml })),
            "team_not_found",
        ),
    ] {
        req.send().await.assert_problem(404, code);
    }
    // A stranger's validation cannot even see the connection.
    let report = validate(&app, &eve, &yaml).await;
    assert_eq!(report["errors"][0]["path"], "connection");

    for uri in [
        "/v1/dashboards/revenue-overview",
        "/v1/dashboards/revenue-overview/yaml",
        "/v1/dashboards/revenue-overview/lineage",
    ] {
        app.get(uri).bearer(&viewer).send().await.assert_status(200);
    }
    app.put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&viewer)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.delete("/v1/dashboards/revenue-overview")
        .bearer(&viewer)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&viewer)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.post("/v1/dashboards/validate")
        .bearer(&viewer)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_problem(403, "insufficient_role");
}

#[tokio::test]
async fn bad_bodies_and_headers_are_named() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    create(&app, &ws, &yaml).await.assert_status(201);
    let t = &ws.token;
    let cases = [
        (
            app.post("/v1/dashboards/validate")
                .bearer(t)
                .raw("text/plain", "x"),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            app.post("/v1/dashboards/validate")
                .bearer(t)
                .json(&json!({})),
            422,
            "invalid_body",
            Some("yaml"),
        ),
        (
            app.post("/v1/dashboards/validate")
                .bearer(t)
                .json(&json!({ "yaml": "x", "extra": 1 })),
            422,
            "invalid_body",
            Some("extra"),
        ),
        (
            app.post("/v1/dashboards/validate")
                .bearer(t)
                .raw("application/yaml", vec![0xff, 0xfe]),
            400,
            "invalid_encoding",
            None,
        ),
        (
            app.post("/v1/teams/nope/dashboards")
                .bearer(t)
                .json(&json!({ "yaml": yaml })),
            400,
            "invalid_parameter",
            Some("team_id"),
        ),
        (
            app.get("/v1/dashboards/revenue-overview/yaml?version=0")
                .bearer(t),
            400,
            "invalid_parameter",
            Some("version"),
        ),
        (
            app.get("/v1/dashboards/revenue-overview/yaml?version=x")
                .bearer(t),
            400,
            "invalid_parameter",
            Some("version"),
        ),
        (
            app.get("/v1/dashboards/revenue-overview/yaml?v=1")
                .bearer(t),
            400,
            "invalid_parameter",
            Some("v"),
        ),
        (
            app.put("/v1/dashboards/revenue-overview/yaml")
                .bearer(t)
                .header("if-match", "soon")
                .json(&json!({ "yaml": yaml })),
            400,
            "invalid_parameter",
            Some("If-Match"),
        ),
        (
            app.get(&format!("/v1/teams/{}/dashboards?limit=500", ws.team))
                .bearer(t),
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        (
            app.get("/v1/dashboards/nope/lineage").bearer(t),
            404,
            "dashboard_not_found",
            None,
        ),
        (
            app.get("/v1/dashboards/a%00b").bearer(t),
            400,
            "invalid_parameter",
            Some("path"),
        ),
        (
            app.get("/v1/dashboards/revenue-overview/yaml?version=1%00")
                .bearer(t),
            400,
            "invalid_parameter",
            Some("version"),
        ),
        (
            app.post("/v1/dashboards/validate")
                .bearer(t)
                .json(&json!({ "yaml": "title: \u{0}" })),
            400,
            "invalid_characters",
            Some("yaml"),
        ),
        (
            app.put("/v1/dashboards/revenue-overview/yaml")
                .bearer(t)
                .raw(
                    "application/yaml",
                    yaml.replace("title: Revenue overview", "title: \"Revenue\\0overview\""),
                ),
            422,
            "invalid_dashboard",
            Some("title"),
        ),
    ];
    for (req, status, code, field) in cases {
        let p = req.send().await.assert_problem(status, code);
        if let Some(f) = field {
            assert!(
                p["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == f),
                "{p}"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_writers_are_each_answered_the_version_they_wrote() {
    let (app, _wh, ws) = setup().await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    create(&app, &ws, &yaml).await.assert_status(201);
    let writers = 16;
    let answers = futures::future::join_all((0..writers).map(|i| {
        let body = yaml.replace("title: Revenue overview", &format!("title: Writer {i}"));
        let app = &app;
        let token = &ws.token;
        async move {
            let r = app
                .put("/v1/dashboards/revenue-overview/yaml")
                .bearer(token)
                .raw("application/yaml", body)
                .send()
                .await;
            (i, r)
        }
    }))
    .await;
    let mut versions = std::collections::BTreeSet::new();
    for (i, r) in &answers {
        r.assert_status(200);
        let version = r.json()["version"].as_i64().unwrap();
        assert_eq!(
            r.json()["title"],
            format!("Writer {i}"),
            "writer {i} was answered another's write"
        );
        assert_eq!(r.header("etag"), Some(format!("\"{version}\"").as_str()));
        let stored = app
            .get(&format!(
                "/v1/dashboards/revenue-overview/yaml?version={version}"
            ))
            .bearer(&ws.token)
            .send()
            .await;
        let text = String::from_utf8_lossy(&stored.body).into_owned();
        assert!(
            text.contains(&format!("title: Writer {i}\n")),
            "version {version} is not writer {i}'s"
        );
        versions.insert(version);
    }
    assert_eq!(
        versions.len(),
        writers,
        "every writer made a version of its own"
    );

    let deletes = futures::future::join_all((0..8).map(|_| {
        app.delete("/v1/dashboards/revenue-overview")
            .bearer(&ws.token)
            .send()
    }))
    .await;
    let mut statuses: Vec<u16> = deletes.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 404, 404, 404, 404, 404, 404, 404]);
}

//! Data serving end to end: answers checked against the warehouse's own (the demo warehouse
//! on real Postgres), cache hits in memory and in the cache bucket, invalidation by version,
//! parameters, partial failures, tenancy; and on a BigQuery stub, that concurrent misses run
//! the query once and that the team's byte cap holds.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, Workspace, sample_dashboard, service_account_key,
    stubs::bigquery::BigQueryStub, stubs::bigquery::StubQuery,
    stubs::bigquery::information_schema_tables,
};

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
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": sample_dashboard("revenue-overview", &ws.connection) }))
        .send()
        .await
        .assert_status(201);
    (app, wh, ws)
}

/// A served decimal: `numeric` values arrive as strings holding every digit.
fn decimal(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal is served as a string: {v}"))
        .parse()
        .unwrap()
}

async fn data(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app
        .get(&format!("/v1/dashboards/revenue-overview/data{query}"))
        .bearer(token)
        .send()
        .await;
    r.assert_status(200);
    r.json()
}

#[tokio::test]
async fn answers_match_the_warehouse_and_repeat_from_the_cache() {
    let (app, wh, ws) = setup().await;
    let raw = app
        .get("/v1/dashboards/revenue-overview/data")
        .bearer(&ws.token)
        .send()
        .await;
    let text = String::from_utf8_lossy(&raw.body).into_owned();
    let first = raw.json();
    assert_eq!(
        (first["dashboard_slug"].as_str(), first["version"].as_i64()),
        (Some("revenue-overview"), Some(1))
    );
    let queries = first["queries"].as_object().unwrap();
    // The queries come in the YAML's order.
    let at = |id: &str| text.find(&format!("\"{id}\":{{")).unwrap();
    let order = [
        "revenue_daily",
        "revenue_total",
        "revenue_monthly",
        "revenue_by_segment",
        "top_customers",
    ];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
    assert_eq!(queries.len(), 5);

    let total = &queries["revenue_total"];
    assert_eq!(
        total["columns"],
        json!([{ "name": "total_revenue", "type": "numeric" }, { "name": "total_orders", "type": "numeric" }])
    );
    let expected = wh
        .db
        .client()
        .await
        .query_one(
            "SELECT sum(revenue)::float8, sum(orders)::float8 FROM analytics.revenue_daily WHERE region = 'EMEA' AND date >= '2025-01-01'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        (decimal(&total["rows"][0][0]) - expected.get::<_, f64>(0)).abs() < 0.005,
        "{total}"
    );
    assert_eq!(decimal(&total["rows"][0][1]), expected.get::<_, f64>(1));
    let meta = &total["metadata"];
    assert_eq!(
        (meta["row_count"].as_i64(), meta["cache_hit"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(meta["bytes_scanned"].as_i64().unwrap() > 0 && meta["cached_at"].is_string());
    let daily = &queries["revenue_daily"];
    assert_eq!(
        daily["rows"].as_array().unwrap().len() as i64,
        daily["metadata"]["row_count"].as_i64().unwrap()
    );

    let second = data(&app, &ws.token, "").await;
    for (id, q) in second["queries"].as_object().unwrap() {
        assert_eq!(q["metadata"]["cache_hit"], true, "{id}");
        assert_eq!(q["rows"], first["queries"][id]["rows"]);
    }
    let indexed: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM query_cache", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexed, 5);
}

#[tokio::test]
async fn the_cache_bucket_serves_after_memory_is_lost() {
    let (app, _wh, ws) = setup().await;
    let first = data(&app, &ws.token, "").await;
    app.state.serving.caches().forget_in_memory();
    let again = data(&app, &ws.token, "").await;
    for (id, q) in again["queries"].as_object().unwrap() {
        assert_eq!(
            q["metadata"]["cache_hit"], true,
            "{id}: served from the cache bucket"
        );
        assert_eq!(q["rows"], first["queries"][id]["rows"]);
        assert_eq!(
            q["metadata"]["cached_at"],
            first["queries"][id]["metadata"]["cached_at"]
        );
    }
}

#[tokio::test]
async fn parameters_are_typed_bound_and_checked() {
    let (app, wh, ws) = setup().await;
    let apac = data(&app, &ws.token, "?region=APAC&since=2025-06-01").await;
    let expected: f64 = wh
        .db
        .client()
        .await
        .query_one("SELECT sum(revenue)::float8 FROM analytics.revenue_daily WHERE region = 'APAC' AND date >= '2025-06-01'", &[])
        .await
        .unwrap()
        .get(0);
    assert!((decimal(&apac["queries"]["revenue_total"]["rows"][0][0]) - expected).abs() < 0.005);
    assert_eq!(
        apac["queries"]["revenue_total"]["metadata"]["cache_hit"], false,
        "other values, another key"
    );

    for (query, field) in [
        ("?region=MARS", "region"),
        ("?since=yesterday", "since"),
        ("?since=2025-02-30", "since"),
        ("?colour=red", "colour"),
        ("?region=EMEA&region=APAC", "region"),
        ("?region=EMEA%27%20OR%201%3D1%20--", "region"),
    ] {
        let p = app
            .get(&format!("/v1/dashboards/revenue-overview/data{query}"))
            .bearer(&ws.token)
            .send()
            .await
            .assert_problem(400, "invalid_parameter");
        assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
    }
}

#[tokio::test]
async fn one_query_can_be_asked_for_alone() {
    let (app, _wh, ws) = setup().await;
    let r = app
        .get("/v1/dashboards/revenue-overview/query/revenue_total/data?region=AMER")
        .bearer(&ws.token)
        .send()
        .await;
    r.assert_status(200);
    let q = r.json();
    assert!(decimal(&q["rows"][0][0]) > 0.0);
    assert_eq!(q["metadata"]["cache_hit"], false);
    let whole = data(&app, &ws.token, "?region=AMER").await;
    assert_eq!(
        whole["queries"]["revenue_total"]["metadata"]["cache_hit"], true,
        "shared with the whole dashboard's"
    );
    app.get("/v1/dashboards/revenue-overview/query/nope/data")
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(404, "query_not_found");
}

#[tokio::test]
async fn a_new_version_is_served_fresh() {
    let (app, _wh, ws) = setup().await;
    data(&app, &ws.token, "").await;
    let yaml = sample_dashboard("revenue-overview", &ws.connection).replace(
        "SELECT SUM(revenue) AS total_revenue, SUM(orders) AS total_orders",
        "SELECT SUM(revenue) * 2 AS total_revenue, SUM(orders) AS total_orders",
    );
    app.put("/v1/dashboards/revenue-overview/yaml")
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(200);
    let before = app
        .get("/v1/dashboards/revenue-overview/yaml?version=1")
        .bearer(&ws.token)
        .send()
        .await;
    before.assert_status(200);
    let v2 = data(&app, &ws.token, "").await;
    assert_eq!(v2["version"], 2);
    let total = &v2["queries"]["revenue_total"];
    assert_eq!(total["metadata"]["cache_hit"], false);
    // Unchanged queries are new keys too (the version is part of the key).
    assert_eq!(
        v2["queries"]["top_customers"]["metadata"]["cache_hit"],
        false
    );
}

#[tokio::test]
async fn a_failing_query_fails_alone() {
    let (app, _wh, ws) = setup().await;
    let yaml = format!(
        "version: 1\nkind: dashboard\nslug: partial\ntitle: Partial\nconnection: {}\nqueries:\n  - id: fine\n    sql: SELECT count(*) AS n FROM analytics.orders\n  - id: broken\n    sql: SELECT 1 / (count(*) - count(*)) AS boom FROM analytics.orders\nlayout:\n  - {{ id: a, type: kpi, query: fine, value: n, position: {{ x: 0, y: 0, w: 3, h: 2 }} }}\n  - {{ id: b, type: kpi, query: broken, value: boom, position: {{ x: 3, y: 0, w: 3, h: 2 }} }}\n",
        ws.connection
    );
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);
    let r = app
        .get("/v1/dashboards/partial/data")
        .bearer(&ws.token)
        .send()
        .await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["queries"]["fine"]["rows"], json!([[8000]]));
    let error = &body["queries"]["broken"]["error"];
    assert_eq!(error["code"], "invalid_query", "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("division by zero")
    );
    let single = app
        .get("/v1/dashboards/partial/query/broken/data")
        .bearer(&ws.token)
        .send()
        .await;
    single.assert_problem(422, "invalid_query");
}

#[tokio::test]
async fn strangers_get_404_and_viewers_read() {
    let (app, _wh, ws) = setup().await;
    let viewer = app.member(&ws, "vi@example.com", "viewer").await;
    let eve = app.token("eve@example.com");
    app.get("/v1/dashboards/revenue-overview/data")
        .bearer(&eve)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    app.get("/v1/dashboards/revenue-overview/query/revenue_total/data")
        .bearer(&eve)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    app.get("/v1/dashboards/nope/data")
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    app.get("/v1/dashboards/revenue-overview/data")
        .send()
        .await
        .assert_problem(401, "missing_token");
    data(&app, &viewer, "").await;
}

/// A BigQuery workspace on the stub: dataset `sales` with `orders`.
async fn bigquery(stub: &BigQueryStub) -> (TestApp, Workspace) {
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("sales", "EU");
    stub.add_table("sales", "orders");
    stub.respond(
        "`acme`.`sales`.INFORMATION_SCHEMA.TABLES",
        information_schema_tables(&[("orders", "BASE TABLE", Some("day"), &["region"])]),
    );
    let schema = json!({ "fields": [{ "name": "region", "type": "STRING" }, { "name": "revenue", "type": "FLOAT64" }] });
    let rows = vec![
        json!({ "f": [{ "v": "EMEA" }, { "v": "12.5" }] }),
        json!({ "f": [{ "v": "AMER" }, { "v": "7" }] }),
    ];
    stub.respond(
        "FROM sales.orders",
        StubQuery::rows(50_000_000, schema, rows),
    );
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("BIGQUERY_API_URL", &stub.base_url),
            ("GCP_TOKEN_URI", &stub.token_url),
        ],
    )
    .await;
    let ws = app.workspace("bigquery", service_account_key("acme")).await;
    let yaml = format!(
        "version: 1\nkind: dashboard\nslug: bq-sales\ntitle: Sales\nconnection: {}\nqueries:\n  - id: by_region\n    sql: SELECT region, SUM(amount) AS revenue FROM sales.orders GROUP BY region\nlayout:\n  - {{ id: t, type: table, query: by_region, position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n",
        ws.connection
    );
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": yaml }))
        .send()
        .await
        .assert_status(201);
    (app, ws)
}

fn billable_jobs(stub: &BigQueryStub) -> Vec<Value> {
    stub.requests()
        .into_iter()
        .filter(|(p, b)| {
            p.ends_with("/queries")
                && b["dryRun"] != json!(true)
                && b["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("sales.orders"))
        })
        .map(|(_, b)| b)
        .collect()
}

#[tokio::test]
async fn concurrent_misses_run_the_warehouse_query_once() {
    let stub = BigQueryStub::start().await;
    let (app, ws) = bigquery(&stub).await;
    let requests = (0..8).map(|_| {
        app.get("/v1/dashboards/bq-sales/data")
            .bearer(&ws.token)
            .send()
    });
    let answers = futures_join(requests).await;
    for a in &answers {
        a.assert_status(200);
        assert_eq!(
            a.json()["queries"]["by_region"]["rows"],
            json!([["EMEA", 12.5], ["AMER", 7.0]])
        );
    }
    let jobs = billable_jobs(&stub);
    assert_eq!(
        jobs.len(),
        1,
        "one warehouse run for eight concurrent misses"
    );
    assert_eq!(
        jobs[0]["maximumBytesBilled"],
        json!("100000000"),
        "the team's default cap"
    );
}

#[tokio::test]
async fn the_teams_byte_cap_holds_when_serving() {
    let stub = BigQueryStub::start().await;
    let (app, ws) = bigquery(&stub).await;
    app.patch(&format!("/v1/teams/{}", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "settings": { "max_bytes_billed": 20_000_000 } }))
        .send()
        .await
        .assert_status(200);
    let body = app
        .get("/v1/dashboards/bq-sales/data")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    let error = &body["queries"]["by_region"]["error"];
    assert_eq!(error["code"], "bytes_limit_exceeded", "{body}");
    assert!(error["message"].as_str().unwrap().contains("50000000"));
    assert!(
        billable_jobs(&stub).is_empty(),
        "refused on the dry run: nothing billed"
    );
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

#[tokio::test]
async fn bigquery_tables_are_checked_with_their_project() {
    let stub = BigQueryStub::start().await;
    let (app, ws) = bigquery(&stub).await;
    let yaml = |table: &str| {
        format!(
            "version: 1\nkind: dashboard\nslug: bq-other\ntitle: Other\nconnection: {}\nqueries:\n  - id: q\n    sql: SELECT region FROM {table}\nlayout:\n  - {{ id: t, type: table, query: q, position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n",
            ws.connection
        )
    };
    let report = |yaml: String| {
        let app = &app;
        let token = ws.token.clone();
        async move {
            app.post("/v1/dashboards/validate")
                .bearer(&token)
                .json(&json!({ "yaml": yaml }))
                .send()
                .await
                .json()
        }
    };
    // `sales.orders` is scanned in the connection's project, `acme`; another project's
    // table of the same dataset and name is not.
    let other = report(yaml("`other-project.sales.orders`")).await;
    assert_eq!(other["valid"], false, "{other}");
    let message = other["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("other-project") && message.contains("`acme`"),
        "{message}"
    );
    stub.respond(
        "`ACME.sales.orders`",
        StubQuery::rows(
            1_000,
            json!({ "fields": [{ "name": "region", "type": "STRING" }] }),
            vec![],
        ),
    );
    let own = report(yaml("`ACME.sales.orders`")).await;
    assert_eq!(
        own["valid"], true,
        "project ids resolve without regard to case: {own}"
    );
}

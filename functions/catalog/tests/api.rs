//! The catalog function end to end: scans of a real Postgres warehouse (read through a
//! read-only role), of bqemulator (partitioned, clustered tables) and of a BigQuery REST
//! stub (a dataset that fails), browsing, columns, progress, and tenancy.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, emulators, service_account_key, stubs::bigquery::BigQueryStub,
    stubs::bigquery::StubQuery, stubs::bigquery::information_schema_tables as tables_answer,
};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
}

struct Fixture {
    app: TestApp,
    ada: String,
    team: String,
}

async fn fixture(vars: &[(&str, &str)]) -> Fixture {
    let app = TestApp::spawn_with(routes(), vars).await;
    let ada = app.token("ada@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "Data" }))
        .send()
        .await
        .json();
    Fixture {
        team: team["id"].as_str().unwrap().to_owned(),
        app,
        ada,
    }
}

impl Fixture {
    /// Creates and validates a connection; returns its id.
    async fn connect(&self, kind: &str, credentials: Value) -> String {
        let c = self
            .app
            .post(&format!("/v1/teams/{}/connections", self.team))
            .bearer(&self.ada)
            .json(&json!({ "name": format!("{kind}-{}", uuid::Uuid::new_v4()), "warehouse_type": kind, "credentials": credentials }))
            .send()
            .await;
        c.assert_status(201);
        let id = c.json()["id"].as_str().unwrap().to_owned();
        let v = self
            .app
            .post(&format!("/v1/connections/{id}/validate"))
            .bearer(&self.ada)
            .send()
            .await
            .json();
        assert_eq!(v["status"], "validated", "{v}");
        id
    }

    /// Starts a scan (202, `running`, a `Location`) and follows it to its end.
    async fn scan(&self, id: &str) -> Value {
        let r = self
            .app
            .post(&format!("/v1/connections/{id}/scan"))
            .bearer(&self.ada)
            .send()
            .await;
        r.assert_status(202);
        let started = r.json();
        assert_eq!(started["status"], "running");
        let location = r.header("location").unwrap().to_owned();
        assert_eq!(
            location,
            format!(
                "/v1/connections/{id}/scans/{}",
                started["scan_id"].as_str().unwrap()
            )
        );
        self.follow(&location).await
    }

    /// GETs a scan until it is no longer running.
    async fn follow(&self, location: &str) -> Value {
        let began = std::time::Instant::now();
        loop {
            let scan = self.app.get(location).bearer(&self.ada).send().await.json();
            if scan["status"] != "running" {
                return scan;
            }
            assert!(
                began.elapsed() < std::time::Duration::from_secs(60),
                "still running: {scan}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn tables(&self, connection: &str) -> Vec<Value> {
        let datasets = self
            .app
            .get(&format!("/v1/connections/{connection}/datasets"))
            .bearer(&self.ada)
            .send()
            .await
            .json();
        let mut all = Vec::new();
        for d in datasets["datasets"].as_array().unwrap() {
            let t = self
                .app
                .get(&format!(
                    "/v1/datasets/{}/tables",
                    d["id"].as_str().unwrap()
                ))
                .bearer(&self.ada)
                .send()
                .await
                .json();
            all.extend(t["tables"].as_array().unwrap().iter().cloned());
        }
        all
    }
}

fn names(tables: &[Value]) -> Vec<&str> {
    tables.iter().map(|t| t["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_postgres_scan_catalogues_readable_schemas_tables_and_views() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;

    let scan = f.scan(&id).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["datasets_scanned"], 1);
    assert_eq!(scan["tables_scanned"], 6);
    assert_eq!(scan["errors"], json!([]));

    let datasets = f
        .app
        .get(&format!("/v1/connections/{id}/datasets"))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let ds = &datasets["datasets"][0];
    assert_eq!(
        datasets["datasets"].as_array().unwrap().len(),
        1,
        "finance and system schemas are not listed"
    );
    assert_eq!(ds["name"], "analytics");
    assert_eq!(ds["table_count"], 6);
    let tables = f.tables(&id).await;
    assert_eq!(
        names(&tables),
        [
            "customers",
            "events",
            "order_items",
            "orders",
            "products",
            "revenue_daily"
        ]
    );
    let by = |n: &str| tables.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(by("revenue_daily")["table_type"], "VIEW");
    assert_eq!(by("orders")["row_count"], 8000);
    assert!(by("orders")["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(by("events")["partitioning"]["type"], "RANGE");
    assert_eq!(
        by("orders")["fully_qualified_name"],
        format!("{}.analytics.orders", wh.db.name)
    );
}

#[tokio::test]
async fn a_rescan_skips_what_did_not_change_and_follows_what_did() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    f.scan(&id).await;
    let before: Vec<Value> = f.tables(&id).await;

    let again = f.scan(&id).await;
    assert_eq!(again["tables_scanned"], 6);
    assert_eq!(again["tables_skipped"], 6);
    let after = f.tables(&id).await;
    assert_eq!(before, after, "a rescan never duplicates nor rewrites");

    let owner = wh.db.client().await;
    owner
        .batch_execute(&format!(
            "DROP VIEW analytics.revenue_daily; CREATE TABLE analytics.refunds (order_id int); \
             GRANT SELECT ON analytics.refunds TO {}; INSERT INTO analytics.products SELECT n + 100, 'p', 'toys', 1 FROM generate_series(1, 40) n; \
             ANALYZE analytics.products;",
            wh.reader
        ))
        .await
        .unwrap();
    let third = f.scan(&id).await;
    assert_eq!(third["tables_scanned"], 6);
    assert_eq!(
        third["tables_skipped"], 4,
        "refunds is new and products changed: {third}"
    );
    let tables = f.tables(&id).await;
    assert_eq!(
        names(&tables),
        [
            "customers",
            "events",
            "order_items",
            "orders",
            "products",
            "refunds"
        ]
    );
    let products = tables.iter().find(|t| t["name"] == "products").unwrap();
    assert_eq!(products["row_count"], 100);
}

#[tokio::test]
async fn scanning_needs_a_validated_connection() {
    let f = fixture(&[]).await;
    let c = f
        .app
        .post(&format!("/v1/teams/{}/connections", f.team))
        .bearer(&f.ada)
        .json(&json!({ "name": "unchecked", "warehouse_type": "postgres", "credentials": { "url": "postgres://u@db.example.com/x" } }))
        .send()
        .await
        .json();
    f.app
        .post(&format!(
            "/v1/connections/{}/scan",
            c["id"].as_str().unwrap()
        ))
        .bearer(&f.ada)
        .send()
        .await
        .assert_problem(409, "connection_not_validated");
}

#[tokio::test]
async fn a_running_scan_is_readable_and_blocks_a_second_one() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    let db = f.app.db.client().await;
    db.execute(
        "INSERT INTO scan_runs (id, connection_id, datasets_total, datasets_scanned, tables_scanned, worker) \
         VALUES ('0190d1c6-0000-7000-8000-00000000000a', $1::text::uuid, 10, 4, 120, gen_random_uuid())",
        &[&id],
    )
    .await
    .unwrap();
    let uri = format!("/v1/connections/{id}/scans/0190d1c6-0000-7000-8000-00000000000a");
    let running = f.app.get(&uri).bearer(&f.ada).send().await.json();
    assert_eq!(
        (
            running["status"].as_str(),
            running["datasets_scanned"].as_i64(),
            running["datasets_total"].as_i64()
        ),
        (Some("running"), Some(4), Some(10))
    );
    f.app
        .post(&format!("/v1/connections/{id}/scan"))
        .bearer(&f.ada)
        .send()
        .await
        .assert_problem(409, "scan_in_progress");
}

#[tokio::test]
async fn a_scan_whose_worker_died_is_run_again_then_failed() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    let db = f.app.db.client().await;
    // A scan whose worker went silent a minute ago, on its first try: whoever looks next
    // hands it to a new worker, which runs it to its end.
    db.execute(
        "INSERT INTO scan_runs (id, connection_id, worker, heartbeat_at) \
         VALUES ('0190d1c6-0000-7000-8000-00000000000b', $1::text::uuid, gen_random_uuid(), now() - interval '1 minute')",
        &[&id],
    )
    .await
    .unwrap();
    let resumed = f
        .follow(&format!(
            "/v1/connections/{id}/scans/0190d1c6-0000-7000-8000-00000000000b"
        ))
        .await;
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    assert_eq!(resumed["tables_scanned"], 6);
    let attempts: i32 = db
        .query_one(
            "SELECT attempts FROM scan_runs WHERE id = '0190d1c6-0000-7000-8000-00000000000b'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);

    // Silent again on its last try: failed, saying why, and no longer in the way.
    db.execute(
        "INSERT INTO scan_runs (id, connection_id, worker, heartbeat_at, attempts) \
         VALUES ('0190d1c6-0000-7000-8000-00000000000c', $1::text::uuid, gen_random_uuid(), now() - interval '1 minute', 2)",
        &[&id],
    )
    .await
    .unwrap();
    let failed = f
        .app
        .get(&format!(
            "/v1/connections/{id}/scans/0190d1c6-0000-7000-8000-00000000000c"
        ))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("worker"),
        "{failed}"
    );
    let scan = f.scan(&id).await;
    assert_eq!(scan["status"], "succeeded");
    assert!(scan["duration_ms"].as_i64().is_some() && scan["bridge_ms"].as_i64().is_some());
}

#[tokio::test]
async fn a_worker_that_lost_its_scan_stops_and_writes_nothing() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    let db = f.app.db.client().await;
    db.execute(
        "INSERT INTO scan_runs (id, connection_id, worker) \
         VALUES ('0190d1c6-0000-7000-8000-00000000000d', $1::text::uuid, '0190d1c6-0000-7000-8000-0000000000ff')",
        &[&id],
    )
    .await
    .unwrap();
    let scan_id: uuid::Uuid = "0190d1c6-0000-7000-8000-00000000000d".parse().unwrap();
    // Another worker's id: not this scan's.
    let outcome = f
        .app
        .state
        .catalog
        .run_scan(scan_id, uuid::Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(outcome, services::catalog::ScanOutcome::NotOurs);
    let datasets: i64 = db
        .query_one("SELECT count(*) FROM datasets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(datasets, 0);
    // Its own worker runs it.
    let worker: uuid::Uuid = "0190d1c6-0000-7000-8000-0000000000ff".parse().unwrap();
    let outcome = f.app.state.catalog.run_scan(scan_id, worker).await.unwrap();
    assert_eq!(outcome, services::catalog::ScanOutcome::Finished);
}

#[tokio::test]
async fn columns_are_read_live_then_served_from_the_cache() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    f.scan(&id).await;
    let events = f
        .tables(&id)
        .await
        .into_iter()
        .find(|t| t["name"] == "events")
        .unwrap();
    let uri = format!("/v1/tables/{}/columns", events["id"].as_str().unwrap());

    let first = f.app.get(&uri).bearer(&f.ada).send().await;
    first.assert_status(200);
    let first = first.json();
    assert_eq!(first["cached"], false);
    let cols = first["columns"].as_array().unwrap();
    let date = cols.iter().find(|c| c["name"] == "event_date").unwrap();
    assert_eq!(
        (
            date["data_type"].as_str(),
            date["nullable"].as_bool(),
            date["is_partitioning"].as_bool()
        ),
        (Some("date"), Some(false), Some(true))
    );
    assert_eq!(first["dataset"], "analytics");

    let second = f.app.get(&uri).bearer(&f.ada).send().await.json();
    assert_eq!(second["cached"], true);
    assert_eq!(second["columns"], first["columns"]);
}

#[tokio::test]
async fn cached_columns_are_read_again_when_the_tables_columns_change() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    f.scan(&id).await;
    let customers = |tables: Vec<Value>| {
        tables
            .into_iter()
            .find(|t| t["name"] == "customers")
            .unwrap()
    };
    let table = customers(f.tables(&id).await);
    let uri = format!("/v1/tables/{}/columns", table["id"].as_str().unwrap());
    f.app
        .get(&uri)
        .bearer(&f.ada)
        .send()
        .await
        .assert_status(200);
    let cached = f.app.get(&uri).bearer(&f.ada).send().await.json();
    assert_eq!(cached["cached"], true);

    // The warehouse's owner adds a column (row counts and sizes stay the same).
    wh.db
        .client()
        .await
        .batch_execute("ALTER TABLE analytics.customers ADD COLUMN loyalty_tier text")
        .await
        .unwrap();
    f.scan(&id).await;
    assert_eq!(
        customers(f.tables(&id).await)["id"],
        table["id"],
        "the same table"
    );
    let fresh = f.app.get(&uri).bearer(&f.ada).send().await.json();
    assert_eq!(
        fresh["cached"], false,
        "the new fingerprint missed the cache"
    );
    assert!(
        fresh["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "loyalty_tier"),
        "{fresh}"
    );
}

#[tokio::test]
async fn a_bigquery_dataset_that_fails_is_recorded_and_the_scan_goes_on() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("sales", "EU");
    stub.add_dataset("hr", "EU");
    stub.add_table("sales", "orders");
    stub.respond(
        "`acme`.`sales`.INFORMATION_SCHEMA.TABLES",
        tables_answer(&[
            (
                "orders",
                "BASE TABLE",
                Some("order_date"),
                &["region", "customer_id"],
            ),
            ("daily", "VIEW", None, &[]),
        ]),
    );
    stub.respond(
        "`acme`.`hr`.INFORMATION_SCHEMA.TABLES",
        StubQuery::error(403, "accessDenied", "Access Denied: Dataset acme:hr"),
    );
    let f = fixture(&[
        ("BIGQUERY_API_URL", &stub.base_url),
        ("GCP_TOKEN_URI", &stub.token_url),
    ])
    .await;
    let id = f.connect("bigquery", service_account_key("acme")).await;

    let scan = f.scan(&id).await;
    assert_eq!(scan["status"], "partial", "{scan}");
    assert_eq!(scan["datasets_scanned"], 2);
    assert_eq!(scan["tables_scanned"], 2);
    assert_eq!(scan["errors"][0]["dataset"], "acme.hr");
    assert!(
        scan["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Access Denied")
    );
    let tables = f.tables(&id).await;
    let orders = tables.iter().find(|t| t["name"] == "orders").unwrap();
    assert_eq!(orders["partitioning"], json!({ "field": "order_date" }));
    assert_eq!(orders["clustering"], json!(["region", "customer_id"]));
    assert_eq!(orders["fully_qualified_name"], "acme.sales.orders");
    assert_eq!(
        tables.iter().find(|t| t["name"] == "daily").unwrap()["table_type"],
        "VIEW"
    );
    let datasets = f
        .app
        .get(&format!("/v1/connections/{id}/datasets"))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let hr = datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "hr")
        .unwrap();
    assert!(hr["scan_error"].as_str().unwrap().contains("Access Denied"));
}

#[tokio::test]
async fn a_bigquery_emulator_scan_records_partitioning_and_clustering() {
    let Some(emu) = emulators::bigquery().await else {
        return;
    };
    let token = BigQueryStub::start().await;
    let ds = emu.fresh_dataset().await;
    let schema = json!({ "fields": [
        { "name": "day", "type": "DATE" }, { "name": "region", "type": "STRING" }, { "name": "n", "type": "INT64" },
    ]});
    emu.create_table(
        &ds,
        "events",
        schema.clone(),
        Some(json!({ "type": "DAY", "field": "day" })),
        &["region"],
    )
    .await;
    emu.create_table(&ds, "plain", schema, None, &[]).await;
    let v2 = emu.v2_base();
    let f = fixture(&[
        ("BIGQUERY_API_URL", &v2),
        ("GCP_TOKEN_URI", &token.token_url),
    ])
    .await;
    let id = f
        .connect("bigquery", service_account_key(&emu.project))
        .await;

    let scan = f.scan(&id).await;
    assert!(
        scan["status"] == "succeeded" || scan["status"] == "partial",
        "{scan}"
    );
    assert!(
        !scan["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["dataset"] == json!(format!("{}.{ds}", emu.project))),
        "{scan}"
    );
    let datasets = f
        .app
        .get(&format!("/v1/connections/{id}/datasets?limit=200"))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let mine = datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == ds.as_str())
        .unwrap()
        .clone();
    let tables = f
        .app
        .get(&format!(
            "/v1/datasets/{}/tables",
            mine["id"].as_str().unwrap()
        ))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let tables = tables["tables"].as_array().unwrap();
    assert_eq!(names(tables), ["events", "plain"]);
    assert_eq!(tables[0]["partitioning"], json!({ "field": "day" }));
    assert_eq!(tables[0]["clustering"], json!(["region"]));
    assert_eq!(tables[1]["partitioning"], Value::Null);

    let cols = f
        .app
        .get(&format!(
            "/v1/tables/{}/columns",
            tables[0]["id"].as_str().unwrap()
        ))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let region = cols["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "region")
        .unwrap()
        .clone();
    assert_eq!(region["clustering_ordinal"], 1);
}

#[tokio::test]
async fn strangers_get_404_and_viewers_cannot_scan() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    let scan = f.scan(&id).await;
    let scan_id = scan["scan_id"].as_str().unwrap();
    let tables = f.tables(&id).await;
    let table = tables[0]["id"].as_str().unwrap();
    let dataset = tables[0]["dataset_id"].as_str().unwrap();
    let eve = f.app.token("eve@example.com");
    f.app
        .post(&format!("/v1/teams/{}/members", f.team))
        .bearer(&f.ada)
        .json(&json!({ "email": "vi@example.com", "role": "viewer" }))
        .send()
        .await
        .assert_status(201);
    let vi = f.app.token("vi@example.com");

    let stranger = [
        (
            f.app
                .post(&format!("/v1/connections/{id}/scan"))
                .bearer(&eve),
            "connection_not_found",
        ),
        (
            f.app
                .get(&format!("/v1/connections/{id}/scans/{scan_id}"))
                .bearer(&eve),
            "connection_not_found",
        ),
        (
            f.app
                .get(&format!("/v1/connections/{id}/datasets"))
                .bearer(&eve),
            "connection_not_found",
        ),
        (
            f.app
                .get(&format!("/v1/datasets/{dataset}/tables"))
                .bearer(&eve),
            "dataset_not_found",
        ),
        (
            f.app
                .get(&format!("/v1/tables/{table}/columns"))
                .bearer(&eve),
            "table_not_found",
        ),
    ];
    for (req, code) in stranger {
        req.send().await.assert_problem(404, code);
    }
    f.app
        .post(&format!("/v1/connections/{id}/scan"))
        .bearer(&vi)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    for uri in [
        format!("/v1/connections/{id}/scans/{scan_id}"),
        format!("/v1/connections/{id}/datasets"),
        format!("/v1/datasets/{dataset}/tables"),
        format!("/v1/tables/{table}/columns"),
    ] {
        f.app.get(&uri).bearer(&vi).send().await.assert_status(200);
    }
}

#[tokio::test]
async fn bad_ids_limits_and_cursors_are_named() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    f.scan(&id).await;
    let cases = [
        (
            "POST",
            "/v1/connections/nope/scan".to_owned(),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (
            "GET",
            format!("/v1/connections/{id}/scans/nope"),
            400,
            "invalid_parameter",
            Some("scan_id"),
        ),
        (
            "GET",
            format!("/v1/connections/{id}/scans/0190d1c6-0000-7000-8000-000000000000"),
            404,
            "scan_not_found",
            None,
        ),
        (
            "GET",
            format!("/v1/connections/{id}/datasets?limit=0"),
            400,
            "invalid_parameter",
            Some("limit"),
        ),
        (
            "GET",
            format!("/v1/connections/{id}/datasets?cursor=xyz"),
            400,
            "invalid_parameter",
            Some("cursor"),
        ),
        (
            "GET",
            format!("/v1/connections/{id}/datasets?order=name"),
            400,
            "invalid_parameter",
            Some("order"),
        ),
        (
            "GET",
            "/v1/datasets/7/tables".to_owned(),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (
            "GET",
            "/v1/datasets/0190d1c6-0000-7000-8000-000000000000/tables".to_owned(),
            404,
            "dataset_not_found",
            None,
        ),
        (
            "GET",
            "/v1/tables/x/columns".to_owned(),
            400,
            "invalid_parameter",
            Some("id"),
        ),
        (
            "GET",
            "/v1/tables/0190d1c6-0000-7000-8000-000000000000/columns".to_owned(),
            404,
            "table_not_found",
            None,
        ),
    ];
    for (method, uri, status, code, field) in cases {
        let p = f
            .app
            .request(method.parse().unwrap(), &uri)
            .bearer(&f.ada)
            .send()
            .await
            .assert_problem(status, code);
        if let Some(field) = field {
            assert_eq!(p["errors"][0]["field"], field, "{uri}: {p}");
        }
    }
}

#[tokio::test]
async fn datasets_and_tables_are_paged_by_name() {
    let f = fixture(&[]).await;
    let wh = TestWarehouse::demo().await;
    let id = f.connect("postgres", json!({ "url": wh.reader_url })).await;
    f.scan(&id).await;
    let ds = f
        .app
        .get(&format!("/v1/connections/{id}/datasets"))
        .bearer(&f.ada)
        .send()
        .await
        .json();
    let ds = ds["datasets"][0]["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let mut uri = format!("/v1/datasets/{ds}/tables?limit=4");
    loop {
        let page = f.app.get(&uri).bearer(&f.ada).send().await.json();
        seen.extend(
            page["tables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/datasets/{ds}/tables?limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "customers",
            "events",
            "order_items",
            "orders",
            "products",
            "revenue_daily"
        ]
    );
}

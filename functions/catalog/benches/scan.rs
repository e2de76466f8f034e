//! A scan of a generated warehouse of 100 datasets and 10,000 tables, on Postgres (100
//! schemas of 100 tables, read through a read-only role) and through the BigQuery REST stub
//! (the same shape), then a rescan where nothing changed:
//! `cargo bench -p catalog --bench scan`. Reports the total time and the part spent in
//! Bridge itself (diffing and writing the catalog), apart from waiting on the warehouse.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use serde_json::{Value, json};
use testkit::{
    TestApp, TestDb, service_account_key, stubs::bigquery::BigQueryStub,
    stubs::bigquery::StubQuery, stubs::bigquery::information_schema_tables,
};

const DATASETS: usize = 100;
const TABLES: usize = 100;

async fn scan_twice(label: &str, app: &TestApp, kind: &str, credentials: Value) {
    let ada = app.token("ada@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "Bench" }))
        .send()
        .await
        .json();
    let c = app
        .post(&format!(
            "/v1/teams/{}/connections",
            team["id"].as_str().unwrap()
        ))
        .bearer(&ada)
        .json(&json!({ "name": label, "warehouse_type": kind, "credentials": credentials }))
        .send()
        .await
        .json();
    let id = c["id"].as_str().unwrap();
    let v = app
        .post(&format!("/v1/connections/{id}/validate"))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(v["status"], "validated", "{v}");
    for round in ["first scan", "rescan (unchanged)"] {
        let t = Instant::now();
        let s = app.scan(id, &ada).await;
        let wall = t.elapsed();
        assert_eq!(s["status"], "succeeded", "{s}");
        println!(
            "{label:<10} {round:<20} datasets {:>3}  tables {:>5} (skipped {:>5})  total {:>6} ms  in Bridge {:>5} ms  (request {:>6.0} ms)",
            s["datasets_scanned"],
            s["tables_scanned"],
            s["tables_skipped"],
            s["duration_ms"],
            s["bridge_ms"],
            wall.as_secs_f64() * 1000.0
        );
    }
}

#[tokio::main]
async fn main() {
    let routes = || {
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
    };

    // Postgres: 100 schemas × 100 tables.
    let wh = TestDb::empty().await;
    let owner = wh.client().await;
    let t = Instant::now();
    let reader = format!("bench_reader_{}", std::process::id());
    owner
        .batch_execute(&format!("CREATE ROLE {reader} LOGIN"))
        .await
        .unwrap();
    // One transaction per schema: 10,000 tables in one would exhaust the lock table.
    for s in 1..=DATASETS {
        owner
            .batch_execute(&format!(
                "CREATE SCHEMA ds_{s}; \
                 DO $$ BEGIN FOR t IN 1..{TABLES} LOOP \
                   EXECUTE format('CREATE TABLE ds_{s}.t_%s (id bigint PRIMARY KEY, day date, region text, amount numeric)', t); \
                 END LOOP; END $$; \
                 GRANT USAGE ON SCHEMA ds_{s} TO {reader}; GRANT SELECT ON ALL TABLES IN SCHEMA ds_{s} TO {reader};"
            ))
            .await
            .unwrap();
    }
    println!(
        "(generated {DATASETS} schemas × {TABLES} tables in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let mut cfg: tokio_postgres::Config = wh.url.parse().unwrap();
    cfg.user(&reader);
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let url = format!(
        "postgres://{reader}@{host}:{}/{}",
        cfg.get_ports().first().copied().unwrap_or(5432),
        wh.name
    );
    let app = TestApp::spawn(routes()).await;
    scan_twice("Postgres", &app, "postgres", json!({ "url": url })).await;
    owner
        .batch_execute(&format!("DROP OWNED BY {reader}; DROP ROLE {reader}"))
        .await
        .ok();

    // BigQuery through the REST stub: the same catalog.
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    let names: Vec<String> = (1..=TABLES).map(|t| format!("t_{t}")).collect();
    let tables: Vec<(&str, &str, Option<&str>, &[&str])> = names
        .iter()
        .map(|n| (n.as_str(), "BASE TABLE", Some("day"), &["region"][..]))
        .collect();
    for d in 1..=DATASETS {
        stub.add_dataset(&format!("ds_{d}"), "US");
        stub.respond(
            &format!("`bench`.`ds_{d}`.INFORMATION_SCHEMA.TABLES"),
            information_schema_tables(&tables),
        );
    }
    stub.add_table("ds_1", "t_1");
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("BIGQUERY_API_URL", &stub.base_url),
            ("GCP_TOKEN_URI", &stub.token_url),
        ],
    )
    .await;
    scan_twice("BigQuery", &app, "bigquery", service_account_key("bench")).await;
}

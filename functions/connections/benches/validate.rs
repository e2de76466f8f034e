//! Time of `POST /v1/connections/{id}/validate` against each stand-in (the whole request:
//! auth, load and decrypt the credentials, connect, run every check, record the status):
//! `cargo bench -p connections --bench validate`. bqemulator is used when it can be
//! started (scripts/test installs it).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, emulators, service_account_key, stubs::bigquery::BigQueryStub,
    stubs::bigquery::StubQuery,
};

async fn time_validate(what: &str, app: &TestApp, credentials: Value, kind: &str) {
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
        .json(&json!({ "name": what, "warehouse_type": kind, "credentials": credentials }))
        .send()
        .await
        .json();
    let uri = format!("/v1/connections/{}/validate", c["id"].as_str().unwrap());
    let mut samples = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let v = app.post(&uri).bearer(&ada).send().await.json();
        samples.push(t.elapsed());
        assert_eq!(v["status"], "validated", "{what}: {v}");
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "validate {what:<28} n=30 median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
        ms(samples[15]),
        ms(samples[26]),
        ms(samples[29])
    );
}

#[tokio::main]
async fn main() {
    let routes = || teams::router().merge(connections::router());

    let wh = TestWarehouse::demo().await;
    let app = TestApp::spawn(routes()).await;
    time_validate(
        "Postgres (demo warehouse)",
        &app,
        json!({ "url": wh.reader_url }),
        "postgres",
    )
    .await;

    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("analytics", "EU");
    stub.add_table("analytics", "orders");
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("BIGQUERY_API_URL", &stub.base_url),
            ("GCP_TOKEN_URI", &stub.token_url),
        ],
    )
    .await;
    time_validate(
        "BigQuery (REST stub)",
        &app,
        service_account_key("bench"),
        "bigquery",
    )
    .await;

    if let Some(emu) = emulators::bigquery().await {
        emu.fresh_dataset().await;
        let token = BigQueryStub::start().await;
        let v2 = emu.v2_base();
        let app = TestApp::spawn_with(
            routes(),
            &[
                ("BIGQUERY_API_URL", &v2),
                ("GCP_TOKEN_URI", &token.token_url),
            ],
        )
        .await;
        time_validate(
            "BigQuery (bqemulator)",
            &app,
            service_account_key(&emu.project),
            "bigquery",
        )
        .await;
    }
}

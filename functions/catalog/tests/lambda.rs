//! The Lambda path: every event in `events/catalog/` through `lambda_http`'s adapter, in
//! order, ids filled in from the answers before them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use common::testing::{TestApp, TestWarehouse, assert_lambda_response, event_files, lambda_invoke};
use serde_json::{Value, json};

const EXPECTED: &[(&str, u16)] = &[
    ("scan-unauthenticated", 401),
    ("scan", 200),
    ("scan-status", 200),
    ("list-datasets", 200),
    ("list-tables", 200),
    ("table-columns", 200),
];

#[tokio::test]
async fn every_event_file_runs_through_the_lambda_adapter() {
    let app = TestApp::spawn(
        teams::router()
            .merge(connections::router())
            .merge(catalog::router()),
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let token = app.token("lambda@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&token)
        .json(&json!({ "name": "Lambda" }))
        .send()
        .await
        .json();
    let c = app
        .post(&format!("/v1/teams/{}/connections", team["id"].as_str().unwrap()))
        .bearer(&token)
        .json(&json!({ "name": "Demo", "warehouse_type": "postgres", "credentials": { "url": wh.reader_url } }))
        .send()
        .await
        .json();
    let connection = c["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/connections/{connection}/validate"))
        .bearer(&token)
        .send()
        .await
        .assert_status(200);

    let (dir, on_disk) = event_files("catalog");
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        on_disk, expected,
        "every event file needs an expectation here, and vice versa"
    );

    let (mut scan, mut dataset, mut table) = (String::new(), String::new(), String::new());
    for (name, status) in EXPECTED {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap()
            .replace("{{token}}", &token)
            .replace("{{connection_id}}", &connection)
            .replace("{{scan_id}}", &scan)
            .replace("{{dataset_id}}", &dataset)
            .replace("{{table_id}}", &table);
        let event: Value = serde_json::from_str(&raw).unwrap();
        let response = lambda_invoke(&app.router, &raw).await;
        assert_lambda_response(name, &event, &response, *status);
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        match *name {
            "scan" => scan = body["scan_id"].as_str().unwrap().to_owned(),
            "list-datasets" => dataset = body["datasets"][0]["id"].as_str().unwrap().to_owned(),
            "list-tables" => table = body["tables"][0]["id"].as_str().unwrap().to_owned(),
            "table-columns" => assert!(!body["columns"].as_array().unwrap().is_empty()),
            _ => {}
        }
    }
}

//! The Lambda path: every event in `events/connections/` through `lambda_http`'s adapter.
//! Placeholders: `{{token}}`, `{{team_id}}`, `{{connection_id}}`, `{{warehouse_url}}` (a
//! real Postgres warehouse of the test) and `{{service_account_base64}}` (a key generated
//! now).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, assert_lambda_response, event_files, lambda_invoke, service_account_key,
};

const EXPECTED: &[(&str, u16)] = &[
    ("create-connection-postgres", 201),
    ("create-connection-bigquery", 201),
    ("create-connection-invalid", 422),
    ("list-connections", 200),
    ("get-connection", 200),
    ("get-connection-unauthenticated", 401),
    ("validate-connection", 200),
    ("delete-connection", 204),
];

#[tokio::test]
async fn every_event_file_runs_through_the_lambda_adapter() {
    let app = TestApp::spawn(teams::router().merge(connections::router())).await;
    let wh = TestWarehouse::demo().await;
    let token = app.token("lambda@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&token)
        .json(&json!({ "name": "Lambda" }))
        .send()
        .await
        .json();
    let team_id = team["id"].as_str().unwrap().to_owned();
    let sa = STANDARD.encode(serde_json::to_vec(&service_account_key("lambda-proj")).unwrap());

    let (dir, on_disk) = event_files("connections");
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        on_disk, expected,
        "every event file needs an expectation here, and vice versa"
    );

    let mut connection_id = String::new();
    for (name, status) in EXPECTED {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap()
            .replace("{{token}}", &token)
            .replace("{{team_id}}", &team_id)
            .replace("{{connection_id}}", &connection_id)
            .replace("{{warehouse_url}}", &wh.reader_url)
            .replace("{{service_account_base64}}", &sa);
        let event: Value = serde_json::from_str(&raw).unwrap();
        let response = lambda_invoke(&app.router, &raw).await;
        assert_lambda_response(name, &event, &response, *status);
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        if *name == "create-connection-postgres" {
            connection_id = body["id"].as_str().unwrap().to_owned();
        }
        if *name == "validate-connection" {
            assert_eq!(body["status"], "validated", "{body}");
        }
        assert!(
            !response.to_string().contains(&wh.password),
            "{name} leaked the password"
        );
    }
}

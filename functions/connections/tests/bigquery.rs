//! Validating a BigQuery connection through the API, against a stub of BigQuery's REST
//! shape (bqemulator has no permissions to check): the token exchange, a dry run of
//! `SELECT 1`, and listing datasets and tables.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use testkit::{
    TestApp, service_account_key, stubs::bigquery::BigQueryStub, stubs::bigquery::StubQuery,
};

async fn app(stub: &BigQueryStub) -> TestApp {
    TestApp::spawn_with(
        teams::router().merge(connections::router()),
        &[
            ("BIGQUERY_API_URL", &stub.base_url),
            ("GCP_TOKEN_URI", &stub.token_url),
        ],
    )
    .await
}

#[tokio::test]
async fn a_bigquery_connection_validates_when_its_permissions_are_there() {
    let stub = BigQueryStub::start().await;
    stub.respond(
        "SELECT 1",
        StubQuery::rows(0, json!({ "fields": [] }), vec![]),
    );
    stub.add_dataset("analytics", "EU");
    stub.add_table("analytics", "orders");
    let app = app(&stub).await;
    let ada = app.token("ada@example.com");
    let team = app
        .post("/v1/teams")
        .bearer(&ada)
        .json(&json!({ "name": "T" }))
        .send()
        .await
        .json();
    let key = service_account_key("acme-prod");
    let c = app
        .post(&format!(
            "/v1/teams/{}/connections",
            team["id"].as_str().unwrap()
        ))
        .bearer(&ada)
        .json(&json!({ "name": "BQ", "warehouse_type": "bigquery", "credentials": key }))
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
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "authenticate",
            "jobs.create",
            "datasets.list",
            "tables.list"
        ]
    );
    assert_eq!(stub.token_calls(), 1);

    stub.fail_all(
        403,
        "accessDenied",
        "Access Denied: User does not have bigquery.jobs.create permission in project acme-prod.",
    );
    let v = app
        .post(&format!("/v1/connections/{id}/validate"))
        .bearer(&ada)
        .send()
        .await
        .json();
    assert_eq!(v["status"], "failed");
    let error = v["validation_error"].as_str().unwrap();
    assert!(
        error.starts_with("jobs.create") && error.contains("bigquery.jobs.create"),
        "{error}"
    );
    assert!(!v.to_string().contains("PRIVATE KEY"));
    let key_text = key["private_key"].as_str().unwrap();
    assert!(!v.to_string().contains(&key_text[40..80]));
}

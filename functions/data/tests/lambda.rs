//! The Lambda path: every event in `events/data/` through `lambda_http`'s adapter.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, assert_lambda_response, event_files, lambda_event, lambda_invoke,
    sample_dashboard,
};

const EXPECTED: &[(&str, u16)] = &[
    ("dashboard-data", 200),
    ("dashboard-data-bad-parameter", 400),
    ("dashboard-data-unauthenticated", 401),
    ("query-data", 200),
];

#[tokio::test]
async fn every_event_file_runs_through_the_lambda_adapter() {
    let app = TestApp::spawn(
        teams::router()
            .merge(connections::router())
            .merge(catalog::router())
            .merge(generate::router())
            .merge(data::router()),
    )
    .await;
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

    let (_, files) = event_files("data");
    assert_eq!(
        files,
        EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect(),
        "every event file has an expectation"
    );
    for (name, status) in EXPECTED {
        let event = lambda_event(
            "data",
            name,
            &[("token", &ws.token), ("slug", "revenue-overview")],
        );
        let response = lambda_invoke(&app.router, &event.to_string()).await;
        assert_lambda_response(name, &event, &response, *status);
        if *name == "dashboard-data" {
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["queries"].as_object().unwrap().len(), 5);
        }
    }
}

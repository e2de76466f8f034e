//! The Lambda path: every event in `events/generate/` through `lambda_http`'s adapter, in
//! order, on the demo warehouse.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use testkit::{
    TestApp, TestWarehouse, assert_lambda_response, event_files, lambda_event, lambda_invoke,
    sample_dashboard,
};

const EXPECTED: &[(&str, u16)] = &[
    ("schema", 200),
    ("validate-dashboard", 200),
    ("create-dashboard-invalid", 422),
    ("create-dashboard", 201),
    ("list-dashboards", 200),
    ("get-dashboard", 200),
    ("get-yaml", 200),
    ("put-yaml", 200),
    ("put-yaml-stale", 412),
    ("get-yaml-version", 200),
    ("lineage", 200),
    ("delete-dashboard", 204),
    ("generate-dashboard", 200),
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
    let yaml = sample_dashboard("revenue-overview", &ws.connection);
    // A PUT of the current YAML makes no version: put-yaml sends a changed one.
    let yaml_v2 = yaml.replace("title: Revenue overview", "title: Revenue overview (v2)");

    let (_, files) = event_files("generate");
    assert_eq!(
        files,
        EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect(),
        "every event file has an expectation"
    );
    for (name, status) in EXPECTED {
        let event = lambda_event(
            "generate",
            name,
            &[
                ("token", &ws.token),
                ("team_id", &ws.team),
                ("slug", "revenue-overview"),
                ("yaml", &yaml),
                ("yaml_v2", &yaml_v2),
                ("yaml_raw", &yaml),
                ("connection_id", &ws.connection),
            ],
        );
        let response = lambda_invoke(&app.router, &event.to_string()).await;
        assert_lambda_response(name, &event, &response, *status);
        if *name == "generate-dashboard" {
            // The agent's run, whole: the builtin planner saves a dashboard, then completes.
            assert_eq!(response["headers"]["content-type"], "text/event-stream");
            let body = response["body"].as_str().unwrap();
            assert!(body.contains("event: dashboard_created"), "{body}");
            assert!(
                body.trim_end()
                    .split("\n\n")
                    .last()
                    .unwrap()
                    .contains("event: complete"),
                "{body}"
            );
        }
    }
}

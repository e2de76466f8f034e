//! The Lambda path: every event in `events/catalog/` through the Lambda entry point, in
//! order, ids filled in from the answers before them: API Gateway requests through
//! `lambda_http`'s adapter, and the scan job the function hands itself (`bridge_job`)
//! through `edge::runtime::dispatch` with the function's own event handler.
//!
//! And the hand-off itself: with `JOBS_RUNNER=lambda` a scan is started by an asynchronous
//! invocation of the function through the Lambda REST API (`POST /2015-03-31/functions/
//! {name}/invocations`, `X-Amz-Invocation-Type: Event`, SigV4). cargo-lambda's emulator runs
//! invocations one at a time and so cannot take one from inside another, and moto's Lambda
//! needs Docker: that call is checked against a small stub speaking the documented REST shape
//! (it answers 202 and records the event), whose recorded event is then run as Lambda would.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};
use services::{AppState, jobs::LambdaInvoker, jobs::Runner};
use settings::Settings;
use testkit::{TestApp, TestWarehouse, assert_lambda_response, event_files, lambda_invoke};

const EXPECTED: &[(&str, u16)] = &[
    ("scan-unauthenticated", 401),
    ("scan", 202),
    ("scan-status", 200),
    ("list-datasets", 200),
    ("list-tables", 200),
    ("table-columns", 200),
    ("scan-job", 0),
];

fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
}

/// A team with a validated connection to the demo warehouse: (token, connection id).
async fn connected(app: &TestApp, wh: &TestWarehouse) -> (String, String) {
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
    (token, connection)
}

/// A job event through the function's Lambda entry point, as the runtime hands it over.
async fn run_job_event(app: &TestApp, event: Value) -> Value {
    let state = app.state.clone();
    edge::runtime::dispatch(
        app.router.clone(),
        move |e| catalog::on_event(state.clone(), e),
        lambda_http::LambdaEvent::new(event, lambda_http::Context::default()),
    )
    .await
    .unwrap()
}

async fn finished(app: &TestApp, token: &str, connection: &str, scan: &str) -> Value {
    let began = std::time::Instant::now();
    loop {
        let s = app
            .get(&format!("/v1/connections/{connection}/scans/{scan}"))
            .bearer(token)
            .send()
            .await
            .json();
        if s["status"] != "running" {
            return s;
        }
        assert!(began.elapsed().as_secs() < 60, "{s}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_event_file_runs_through_the_lambda_adapter() {
    let app = TestApp::spawn(routes()).await;
    let wh = TestWarehouse::demo().await;
    let (token, connection) = connected(&app, &wh).await;

    let (dir, on_disk) = event_files("catalog");
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        on_disk, expected,
        "every event file needs an expectation here, and vice versa"
    );

    let (mut scan, mut dataset, mut table) = (String::new(), String::new(), String::new());
    let (job_scan, job_worker) = (uuid::Uuid::now_v7(), uuid::Uuid::new_v4());
    for (name, status) in EXPECTED {
        let raw = std::fs::read_to_string(dir.join(format!("{name}.json")))
            .unwrap()
            .replace("{{token}}", &token)
            .replace("{{connection_id}}", &connection)
            .replace("{{scan_id}}", &scan)
            .replace("{{dataset_id}}", &dataset)
            .replace("{{table_id}}", &table)
            .replace("{{job_scan_id}}", &job_scan.to_string())
            .replace("{{job_worker}}", &job_worker.to_string());
        let event: Value = serde_json::from_str(&raw).unwrap();
        if *name == "scan-job" {
            // The job a scan request hands to Lambda: a running scan whose worker it names.
            app.db
                .client()
                .await
                .execute(
                    "INSERT INTO scan_runs (id, connection_id, worker) VALUES ($1, $2::text::uuid, $3)",
                    &[&job_scan, &connection, &job_worker],
                )
                .await
                .unwrap();
            let out = run_job_event(&app, event).await;
            assert_eq!(out["outcome"], "finished", "{out}");
            let s = finished(&app, &token, &connection, &job_scan.to_string()).await;
            assert_eq!(s["status"], "succeeded", "{s}");
            continue;
        }
        let response = lambda_invoke(&app.router, &raw).await;
        assert_lambda_response(name, &event, &response, *status);
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        match *name {
            "scan" => {
                scan = body["scan_id"].as_str().unwrap().to_owned();
                // Run off the request, in this process (JOBS_RUNNER=local off Lambda).
                let s = finished(&app, &token, &connection, &scan).await;
                assert_eq!(s["status"], "succeeded", "{s}");
            }
            "list-datasets" => dataset = body["datasets"][0]["id"].as_str().unwrap().to_owned(),
            "list-tables" => table = body["tables"][0]["id"].as_str().unwrap().to_owned(),
            "table-columns" => assert!(!body["columns"].as_array().unwrap().is_empty()),
            _ => {}
        }
    }
}

/// What the Invoke API stub received.
#[derive(Default)]
struct Invocations(Mutex<Vec<(String, HeaderMap, Bytes)>>);

async fn invoke(
    State(seen): State<Arc<Invocations>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential="));
    if !signed {
        return StatusCode::FORBIDDEN;
    }
    seen.0.lock().unwrap().push((function, headers, body));
    StatusCode::ACCEPTED
}

#[tokio::test]
async fn on_lambda_a_scan_is_handed_to_an_asynchronous_invocation() {
    let seen = Arc::new(Invocations::default());
    let stub = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, stub).await });

    // The app as the catalog function runs on Lambda: jobs go to the Lambda API.
    let base = TestApp::spawn(routes()).await;
    let wh = TestWarehouse::demo().await;
    let mut env = base.env.clone();
    env.insert("JOBS_RUNNER".into(), "lambda".into());
    env.insert("JOBS_LAMBDA_FUNCTION".into(), "bridge-catalog".into());
    env.insert("JOBS_LAMBDA_ENDPOINT".into(), endpoint.clone());
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
    let key_id = format!("AKIA{}", base::crypto::random_token(8).to_uppercase());
    let invoker = LambdaInvoker::with_credentials(
        "bridge-catalog".into(),
        "eu-west-1".into(),
        endpoint,
        aws_credential_types::Credentials::new(
            &key_id,
            base::crypto::random_token(30),
            None,
            None,
            "test",
        ),
    );
    let state = AppState::with_jobs(
        edge::Edge::new(settings, "catalog").unwrap(),
        Some(Runner::Lambda(invoker)),
    )
    .await
    .unwrap();
    let app = base.with_state(routes(), state);
    let (token, connection) = connected(&app, &wh).await;

    let r = app
        .post(&format!("/v1/connections/{connection}/scan"))
        .bearer(&token)
        .send()
        .await;
    r.assert_status(202);
    let scan = r.json()["scan_id"].as_str().unwrap().to_owned();
    let (function, headers, body) = seen.0.lock().unwrap().pop().expect("one invocation");
    assert_eq!(function, "bridge-catalog");
    assert_eq!(headers["x-amz-invocation-type"], "Event");
    let auth = headers["authorization"].to_str().unwrap();
    assert!(
        auth.contains(&format!("Credential={key_id}/"))
            && auth.contains("/eu-west-1/lambda/aws4_request"),
        "{auth}"
    );
    // Nothing ran here: the scan waits for its invocation.
    let waiting = app
        .get(&format!("/v1/connections/{connection}/scans/{scan}"))
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(waiting["status"], "running");

    // Lambda runs the queued event on the function.
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["bridge_job"]["scan_id"], scan.as_str());
    let out = run_job_event(&app, event).await;
    assert_eq!(out["outcome"], "finished", "{out}");
    let done = finished(&app, &token, &connection, &scan).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["tables_scanned"], 6);
}

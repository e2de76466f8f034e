//! Precompute: on demand (admins), on AWS through EventBridge's scheduled event (fed
//! through the same Lambda dispatch the binary uses), and on GCP through Cloud Scheduler's
//! HTTP call with an OIDC token (from a local identity provider standing in for Google).

#![allow(clippy::unwrap_used)]

use lambda_http::{Context, LambdaEvent};
use serde_json::{Value, json};
use testkit::{
    TestApp, TestWarehouse, Workspace, assert_lambda_response, cargo_lambda, event_files,
    oidc::Idp, oidc::rsa_key, oidc::sign, sample_dashboard,
};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
        .merge(precompute::router())
}

async fn setup(vars: &[(&str, &str)]) -> (TestApp, TestWarehouse, Workspace) {
    let app = TestApp::spawn_with(routes(), vars).await;
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

#[tokio::test]
async fn an_admin_warms_a_dashboard_and_the_data_then_comes_from_cache() {
    let (app, _wh, ws) = setup(&[]).await;
    let r = app
        .post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&ws.token)
        .send()
        .await;
    r.assert_status(200);
    let report = r.json();
    assert_eq!(
        (
            report["queries_executed"].as_i64(),
            report["cache_hits"].as_i64()
        ),
        (Some(5), Some(0)),
        "{report}"
    );
    assert_eq!(report["errors"], json!([]));
    assert!(report["duration_ms"].as_i64().is_some());

    let again = app
        .post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    assert_eq!(
        (
            again["queries_executed"].as_i64(),
            again["cache_hits"].as_i64()
        ),
        (Some(0), Some(5))
    );
    let data = app
        .get("/v1/dashboards/revenue-overview/data")
        .bearer(&ws.token)
        .send()
        .await
        .json();
    assert!(
        data["queries"]
            .as_object()
            .unwrap()
            .values()
            .all(|q| q["metadata"]["cache_hit"] == true)
    );
    let at: Option<String> = app
        .db
        .client()
        .await
        .query_one("SELECT last_precomputed_at::text FROM dashboards", &[])
        .await
        .unwrap()
        .get(0);
    assert!(at.is_some());
}

#[tokio::test]
async fn only_admins_precompute_and_strangers_see_nothing() {
    let (app, _wh, ws) = setup(&[]).await;
    let editor = app.member(&ws, "ed@example.com", "editor").await;
    let eve = app.token("eve@example.com");
    app.post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&editor)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    app.post("/v1/dashboards/revenue-overview/precompute")
        .bearer(&eve)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
    app.post("/v1/dashboards/nope/precompute")
        .bearer(&ws.token)
        .send()
        .await
        .assert_problem(404, "dashboard_not_found");
}

async fn dispatch(app: &TestApp, event: Value) -> Result<Value, lambda_http::Error> {
    let state = app.state.clone();
    edge::runtime::dispatch(
        app.router.clone(),
        move |e| precompute::on_event(state.clone(), e),
        LambdaEvent::new(event, Context::default()),
    )
    .await
}

/// The event file `events/precompute/<name>.json`.
fn read(name: &str) -> String {
    std::fs::read_to_string(event_files("precompute").0.join(format!("{name}.json"))).unwrap()
}

#[tokio::test]
async fn every_precompute_event_file_runs_through_the_lambda_dispatch() {
    let (app, _wh, ws) = setup(&[]).await;
    let (_, files) = event_files("precompute");
    let expected = [
        "cloud-scheduler-http",
        "eventbridge-scheduled",
        "precompute-dashboard",
    ];
    assert_eq!(
        files.iter().map(String::as_str).collect::<Vec<_>>(),
        expected,
        "every event file is exercised here"
    );

    // EventBridge's schedule: the dashboard (refresh every 24h, never warmed) is due.
    let scheduled: Value = serde_json::from_str(&read("eventbridge-scheduled")).unwrap();
    let report = dispatch(&app, scheduled.clone()).await.unwrap();
    assert_eq!(
        report["dashboards"][0]["dashboard_slug"], "revenue-overview",
        "{report}"
    );
    assert_eq!(report["dashboards"][0]["queries_executed"], 5);
    // Run again: nothing is due any more.
    let report = dispatch(&app, scheduled).await.unwrap();
    assert_eq!(report["dashboards"], json!([]));

    // The admin's route through API Gateway.
    let raw = read("precompute-dashboard")
        .replace("{{token}}", &ws.token)
        .replace("{{slug}}", "revenue-overview");
    let event: Value = serde_json::from_str(&raw).unwrap();
    let response = dispatch(&app, event.clone()).await.unwrap();
    assert_lambda_response("precompute-dashboard", &event, &response, 200);
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["cache_hits"], 5);

    // Anything else is refused, not mistaken for HTTP.
    assert!(
        dispatch(
            &app,
            json!({ "source": "aws.s3", "detail-type": "Object Created" })
        )
        .await
        .is_err()
    );
    // cloud-scheduler-http is an HTTP request on GCP: see the next test.
}

/// A Cloud Scheduler OIDC token: issued by `idp` for `audience`, with `email`.
fn scheduler_token(
    idp: &Idp,
    key: &testkit::oidc::SigningKey,
    audience: &str,
    email: &str,
    verified: bool,
) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    sign(
        key,
        &json!({ "iss": idp.issuer, "aud": audience, "sub": "1234567890", "email": email, "email_verified": verified, "iat": now, "exp": now + 600 }),
    )
}

#[tokio::test]
async fn cloud_scheduler_calls_with_the_right_oidc_token_warm_what_is_due() {
    let idp = Idp::start().await;
    let key = rsa_key("google-1");
    idp.publish(key.jwk.clone());
    let audience = "https://precompute-abc-ew.a.run.app";
    let account = "scheduler@acme.iam.gserviceaccount.com";
    let (app, _wh, _ws) = setup(&[
        ("SCHEDULER_OIDC_ISSUER", &idp.issuer),
        ("SCHEDULER_OIDC_AUDIENCE", audience),
        ("SCHEDULER_SERVICE_ACCOUNT", account),
    ])
    .await;
    let request: Value = serde_json::from_str(&read("cloud-scheduler-http")).unwrap();
    let call = |token: Option<String>| {
        let mut req = app.request(
            request["method"].as_str().unwrap().parse().unwrap(),
            request["path"].as_str().unwrap(),
        );
        for (k, v) in request["headers"].as_object().unwrap() {
            if k != "authorization" {
                req = req.header(k, v.as_str().unwrap());
            }
        }
        if let Some(t) = token {
            req = req.bearer(&t);
        }
        req.send()
    };

    call(None).await.assert_problem(401, "missing_token");
    call(Some(scheduler_token(
        &idp,
        &key,
        "https://elsewhere.example",
        account,
        true,
    )))
    .await
    .assert_problem(401, "invalid_token");
    call(Some(scheduler_token(
        &idp,
        &key,
        audience,
        "intruder@acme.iam.gserviceaccount.com",
        true,
    )))
    .await
    .assert_problem(401, "invalid_token");
    call(Some(scheduler_token(&idp, &key, audience, account, false)))
        .await
        .assert_problem(401, "invalid_token");
    let forged = rsa_key("google-1");
    call(Some(scheduler_token(
        &idp, &forged, audience, account, true,
    )))
    .await
    .assert_problem(401, "invalid_token");

    let ok = call(Some(scheduler_token(&idp, &key, audience, account, true))).await;
    ok.assert_status(200);
    let report = ok.json();
    assert_eq!(report["dashboards"][0]["queries_executed"], 5, "{report}");
}

#[tokio::test]
async fn without_a_scheduler_configured_the_route_does_not_exist() {
    let (app, _wh, _ws) = setup(&[]).await;
    app.post("/internal/precompute")
        .bearer("anything")
        .send()
        .await
        .assert_problem(404, "route_not_found");
}

#[tokio::test]
async fn expired_results_are_swept_by_the_schedule() {
    let (app, _wh, ws) = setup(&[]).await;
    app.get("/v1/dashboards/revenue-overview/data")
        .bearer(&ws.token)
        .send()
        .await
        .assert_status(200);
    let keys: Vec<String> = app
        .db
        .client()
        .await
        .query("SELECT blob_key FROM query_cache", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys.len(), 5);
    app.db
        .client()
        .await
        .execute(
            "UPDATE query_cache SET expires_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    app.db
        .client()
        .await
        .execute("UPDATE dashboards SET refresh_every_secs = NULL", &[])
        .await
        .unwrap();
    let report = dispatch(
        &app,
        json!({ "source": "aws.events", "detail-type": "Scheduled Event", "id": "t" }),
    )
    .await
    .unwrap();
    assert_eq!(report["expired_removed"], 5);
    for key in keys {
        assert!(
            app.state.buckets.cache.get(&key).await.is_err(),
            "{key} removed"
        );
    }
}

/// The scheduled event and the admin's route through cargo-lambda's runtime emulator and
/// `cargo lambda invoke`, served by the real `precompute` binary as on Lambda.
#[tokio::test]
async fn the_precompute_binary_serves_its_events_through_cargo_lambda() {
    let (app, _wh, ws) = setup(&[]).await;
    let Some(mut rig) = cargo_lambda::start(env!("CARGO_BIN_EXE_precompute"), &app.env).await
    else {
        return;
    };

    let report = rig.invoke(&read("eventbridge-scheduled")).await;
    assert_eq!(
        report["dashboards"][0]["dashboard_slug"], "revenue-overview",
        "{report}"
    );
    assert_eq!(report["dashboards"][0]["queries_executed"], 5);

    let raw = read("precompute-dashboard")
        .replace("{{token}}", &ws.token)
        .replace("{{slug}}", "revenue-overview");
    let event: Value = serde_json::from_str(&raw).unwrap();
    let response = rig.invoke(&raw).await;
    assert_lambda_response("precompute-dashboard", &event, &response, 200);
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["cache_hits"], 5, "{body}");
    assert!(!rig.function_log().contains(&ws.token));
}

//! What every function serves and how it fails: health, readiness, the OpenAPI document,
//! correlation ids, fallbacks, limits, a broken database, panics, CORS and shutdown.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::routing::get;
use serde_json::json;
use testkit::TestApp;

#[tokio::test]
async fn health_ready_and_openapi_are_served() {
    let app = TestApp::spawn(teams::router()).await;

    let health = app.get("/health").send().await;
    health.assert_status(200);
    assert_eq!(health.json()["status"], "ok");

    let ready = app.get("/ready").send().await;
    ready.assert_status(200);
    assert_eq!(ready.json()["status"], "ready");

    let doc = app.get("/openapi.json").send().await;
    doc.assert_status(200);
    let doc = doc.json();
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    for path in [
        "/v1/teams",
        "/v1/teams/{team_id}",
        "/v1/teams/{team_id}/members",
        "/v1/teams/{team_id}/members/{user_id}",
        "/health",
        "/ready",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    assert!(doc["paths"]["/v1/teams/{team_id}"]["patch"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn correlation_ids_are_echoed_or_generated_and_match_the_trace_id() {
    let app = TestApp::spawn(teams::router()).await;

    let given = app
        .get("/health")
        .header("x-correlation-id", "req-42.a:b")
        .send()
        .await;
    assert_eq!(given.header("x-correlation-id"), Some("req-42.a:b"));

    let generated = app.get("/health").send().await;
    let id = generated.header("x-correlation-id").unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let hostile = app
        .get("/health")
        .header("x-correlation-id", "a\"b{}")
        .send()
        .await;
    assert_ne!(hostile.header("x-correlation-id"), Some("a\"b{}"));

    let problem = app
        .get("/v1/teams")
        .header("x-correlation-id", "trace-me")
        .send()
        .await;
    let p = problem.assert_problem(401, "missing_token");
    assert_eq!(p["trace_id"], "trace-me");
    assert_eq!(problem.header("x-correlation-id"), Some("trace-me"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn(teams::router()).await;
    let r = app.get("/v1/nothing-here").send().await;
    r.assert_problem(404, "route_not_found");
    assert!(r.header("x-correlation-id").is_some());
    app.delete("/v1/teams")
        .send()
        .await
        .assert_problem(405, "method_not_allowed");
    app.put("/health")
        .send()
        .await
        .assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_get_413_over_a_real_socket() {
    let app = TestApp::spawn(teams::router()).await;
    let base = app.serve().await;
    let token = app.token("ada@example.com");
    let body = format!(r#"{{"name":"{}"}}"#, "x".repeat(1024 * 1024));
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/teams"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "payload_too_large");
}

#[tokio::test]
async fn a_broken_database_gives_a_clean_500_without_internals() {
    let app = TestApp::spawn(teams::router()).await;
    let token = app.token("ada@example.com");
    app.get("/v1/teams")
        .bearer(&token)
        .send()
        .await
        .assert_status(200);
    // Break the schema underneath the running app.
    app.db
        .client()
        .await
        .batch_execute("ALTER TABLE teams RENAME COLUMN slug TO slug_gone")
        .await
        .unwrap();

    let r = app
        .post("/v1/teams")
        .bearer(&token)
        .json(&json!({ "name": "Ops" }))
        .send()
        .await;

    let p = r.assert_problem(500, "internal");
    let body = String::from_utf8_lossy(&r.body);
    for internal in ["slug", "column", "postgres", "teams", "ERROR"] {
        assert!(!body.contains(internal), "leaked `{internal}`: {body}");
    }
    assert!(p["detail"].as_str().unwrap().contains("trace_id"));
}

#[tokio::test]
async fn an_unreachable_database_is_503_and_not_ready() {
    let app = TestApp::spawn_with(
        teams::router(),
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:9/none"),
            ("DATABASE_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    app.get("/health").send().await.assert_status(200);
    let r = app.get("/ready").send().await;
    r.assert_problem(503, "unavailable");
    assert!(!String::from_utf8_lossy(&r.body).contains("127.0.0.1"));
    app.get("/v1/teams")
        .bearer(&app.token("ada@example.com"))
        .send()
        .await
        .assert_problem(503, "unavailable");
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_problem() {
    let routes = teams::router().route(
        "/boom",
        get(|| async {
            let fail = std::hint::black_box(true);
            assert!(!fail, "secret detail");
            "unreachable"
        }),
    );
    let app = TestApp::spawn(routes).await;
    let r = app
        .get("/boom")
        .header("x-correlation-id", "boom-1")
        .send()
        .await;
    let p = r.assert_problem(500, "internal");
    assert_eq!(p["trace_id"], "boom-1");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret detail"));
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let app = TestApp::spawn_with(
        teams::router(),
        &[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example, https://admin.example/",
        )],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.request("OPTIONS".parse().unwrap(), "/v1/teams")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://admin.example").await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://admin.example")
    );
    let denied = preflight("https://evil.example").await;
    assert_eq!(denied.header("access-control-allow-origin"), None);

    // Browser code can read what Bridge answers in headers: Location, ETag, the correlation
    // id, Retry-After.
    let created = app
        .post("/v1/teams")
        .bearer(&app.token("cors@example.com"))
        .header("origin", "https://app.example")
        .json(&serde_json::json!({ "name": "Cors" }))
        .send()
        .await;
    created.assert_status(201);
    let exposed = created
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in ["location", "etag", "x-correlation-id", "retry-after"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test]
async fn an_overlong_uri_gets_a_414_problem() {
    let app = TestApp::spawn(teams::router()).await;
    let long = format!("/v1/teams?cursor={}", "a".repeat(9000));
    let p = app
        .get(&long)
        .bearer(&app.token("long@example.com"))
        .send()
        .await
        .assert_problem(414, "uri_too_long");
    assert!(p["detail"].as_str().unwrap().contains("8192"), "{p}");
    // Just under the bound, the route itself answers (here: a cursor it cannot read).
    let short = format!("/v1/teams?cursor={}", "a".repeat(8000));
    app.get(&short)
        .bearer(&app.token("long@example.com"))
        .send()
        .await
        .assert_problem(400, "invalid_parameter");
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let routes = teams::router().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let app = TestApp::spawn(routes).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(edge::runtime::serve_http(
        listener,
        app.router.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let request =
        tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();

    assert_eq!(request.await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

//! The cost ledger and the daily budgets (issue 14), through the real routes on real
//! Postgres with the demo warehouse: every warehouse job and LLM call is recorded with who
//! and what it was for, `GET /v1/teams/{id}/usage` sums them, and spent budgets answer 429
//! (with `Retry-After` at midnight UTC), skip precompute, stop runs at their next step, and
//! hold under racing requests. Priced model calls come from a small stub speaking the
//! OpenAI-compatible streaming format (the builtin provider costs nothing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::{Router, body::Body, extract::State, response::Response, routing::post};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace, sample_dashboard};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
        .merge(precompute::router())
        .merge(chat::router())
}

/// Reads an SSE body to its end: `(event, data)` pairs.
async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = response.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((event, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

fn terminal(events: &[(String, Value)]) -> (String, Value) {
    let ends: Vec<_> = events
        .iter()
        .filter(|(e, _)| e == "complete" || e == "error")
        .collect();
    assert_eq!(ends.len(), 1, "exactly one terminal event: {events:?}");
    assert!(
        std::ptr::eq(ends[0], events.last().unwrap()),
        "the terminal event is the last"
    );
    ends[0].clone()
}

/// An app with `vars`, a team whose connection is the demo warehouse (scanned), and the
/// app served on a socket.
async fn demo(vars: &[(&str, &str)]) -> (TestApp, Workspace, String, TestWarehouse) {
    let app = TestApp::spawn_with(routes(), vars).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    let base = app.serve().await;
    (app, ws, base, wh)
}

async fn set_settings(app: &TestApp, ws: &Workspace, settings: Value) {
    app.patch(&format!("/v1/teams/{}", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "settings": settings }))
        .send()
        .await
        .assert_status(200);
}

async fn usage(app: &TestApp, ws: &Workspace, query: &str) -> Value {
    let r = app
        .get(&format!("/v1/teams/{}/usage?{query}", ws.team))
        .bearer(&ws.token)
        .send()
        .await;
    r.assert_status(200);
    r.json()
}

async fn generate(base: &str, token: &str, connection: &str, prompt: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/dashboards/generate"))
        .bearer_auth(token)
        .json(&json!({ "connection_id": connection, "prompt": prompt }))
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_ledger_records_every_job_and_call_and_usage_sums_them() {
    let (app, ws, base, _wh) = demo(&[]).await;

    // A generation run: dry runs and model calls, charged to the run.
    let r = generate(
        &base,
        &ws.token,
        &ws.connection,
        "A dashboard of completed revenue by region",
    )
    .await;
    assert_eq!(r.status(), 200);
    let run: String = r.headers()["x-run-id"].to_str().unwrap().to_owned();
    let evs = events(r).await;
    let (end, _) = terminal(&evs);
    assert_eq!(end, "complete", "{evs:?}");
    let created = evs
        .iter()
        .find(|(e, _)| e == "dashboard_created")
        .map(|(_, d)| d.clone())
        .expect("a dashboard_created event");
    let slug = created["slug"].as_str().unwrap().to_owned();

    // A viewer reads the data (tiles), an admin forces a precompute.
    let viewer = app.member(&ws, "viewer@example.com", "viewer").await;
    app.get(&format!("/v1/dashboards/{slug}/data"))
        .bearer(&viewer)
        .send()
        .await
        .assert_status(200);
    let report = app
        .post(&format!("/v1/dashboards/{slug}/precompute?force=true"))
        .bearer(&ws.token)
        .send()
        .await;
    report.assert_status(200);
    let queries = report.json()["queries_executed"].as_u64().unwrap();
    assert!(queries > 0);

    let db = app.db.client().await;
    let user_of = |email: &'static str| {
        let db = &db;
        async move {
            db.query_one("SELECT id FROM users WHERE email = $1", &[&email])
                .await
                .unwrap()
                .get::<_, uuid::Uuid>(0)
        }
    };
    let (admin_id, viewer_id) = (
        user_of("admin@example.com").await,
        user_of("viewer@example.com").await,
    );
    let run_id: uuid::Uuid = run.parse().unwrap();
    // The run's dry runs carry the run, its session and its user.
    let dry: Vec<_> = db
        .query(
            "SELECT user_id, session_id, run_id, status, bytes, cost_usd::float8 FROM warehouse_jobs WHERE kind = 'dry_run'",
            &[],
        )
        .await
        .unwrap();
    assert!(!dry.is_empty(), "the agent's dry runs are in the ledger");
    for r in &dry {
        assert_eq!(r.get::<_, Option<uuid::Uuid>>(0), Some(admin_id));
        assert!(r.get::<_, Option<uuid::Uuid>>(1).is_some());
        assert_eq!(r.get::<_, Option<uuid::Uuid>>(2), Some(run_id));
        assert_eq!(r.get::<_, f64>(5), 0.0, "dry runs are free");
    }
    // The tiles: the viewer, the dashboard's version.
    let tiles = db
        .query(
            "SELECT w.user_id, w.dashboard_id, w.dashboard_version, w.status, w.bytes, w.warehouse_type, w.cost_usd::text \
             FROM warehouse_jobs w WHERE w.kind = 'tile'",
            &[],
        )
        .await
        .unwrap();
    assert!(!tiles.is_empty());
    let dashboard_id: uuid::Uuid = created["dashboard_id"].as_str().unwrap().parse().unwrap();
    for t in &tiles {
        assert_eq!(t.get::<_, Option<uuid::Uuid>>(0), Some(viewer_id));
        assert_eq!(t.get::<_, Option<uuid::Uuid>>(1), Some(dashboard_id));
        assert_eq!(t.get::<_, Option<i32>>(2), Some(1));
        assert_eq!(t.get::<_, String>(3), "ok");
        assert_eq!(t.get::<_, String>(5), "postgres");
        assert!(
            t.get::<_, Option<String>>(6).is_none(),
            "Postgres has no per-byte price: unknown, not free"
        );
    }
    let precomputed: i64 = db
        .query_one(
            "SELECT count(*) FROM warehouse_jobs WHERE kind = 'precompute' AND user_id = $1 AND dashboard_id = $2 AND status = 'ok'",
            &[&admin_id, &dashboard_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(precomputed as u64, queries);
    // The model calls carry their user and run.
    let calls: i64 = db
        .query_one(
            "SELECT count(*) FROM model_calls WHERE run_id = $1 AND user_id = $2",
            &[&run_id, &admin_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(calls > 0);

    // The usage route sums the same rows, however it groups them.
    let by_kind = usage(&app, &ws, "group_by=kind").await;
    let kind = |k: &str| {
        by_kind["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("no `{k}` group in {by_kind}"))
    };
    assert_eq!(kind("llm")["llm_calls"].as_i64().unwrap(), calls);
    assert_eq!(
        kind("dry_run")["dry_runs"].as_u64().unwrap(),
        dry.len() as u64
    );
    assert_eq!(
        kind("tile")["warehouse_jobs"].as_u64().unwrap(),
        tiles.len() as u64
    );
    assert_eq!(
        kind("precompute")["warehouse_jobs"].as_u64().unwrap(),
        queries
    );
    let billed: i64 = db
        .query_one(
            "SELECT coalesce(sum(bytes), 0)::int8 FROM warehouse_jobs WHERE kind <> 'dry_run'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_kind["totals"]["billed_bytes"].as_i64().unwrap(), billed);
    for group_by in ["day", "user", "dashboard"] {
        let u = usage(&app, &ws, &format!("group_by={group_by}")).await;
        let sum: i64 = u["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["billed_bytes"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, billed, "group_by={group_by}: {u}");
        assert_eq!(u["totals"], by_kind["totals"]);
    }
    let by_user = usage(&app, &ws, "group_by=user").await;
    assert!(
        by_user["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["label"] == "viewer@example.com")
    );
    let by_dashboard = usage(&app, &ws, "group_by=dashboard").await;
    assert!(
        by_dashboard["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["label"] == slug.as_str())
    );
    // A range that ends before today holds nothing.
    let past = usage(&app, &ws, "from=2020-01-01&to=2020-02-01").await;
    assert_eq!(past["groups"], json!([]));
    assert_eq!(past["totals"]["billed_bytes"], 0);

    // Admins only: 403 below, 404 for strangers; bad queries name their field.
    app.get(&format!("/v1/teams/{}/usage", ws.team))
        .bearer(&viewer)
        .send()
        .await
        .assert_problem(403, "insufficient_role");
    let stranger = app.token("stranger@example.com");
    app.get(&format!("/v1/teams/{}/usage", ws.team))
        .bearer(&stranger)
        .send()
        .await
        .assert_problem(404, "team_not_found");
    for (query, field) in [
        ("group_by=month", "group_by"),
        ("from=yesterday", "from"),
        ("from=2026-01-01&to=2025-01-01", "from"),
        ("from=2020-01-01&to=2026-01-01", "to"),
        ("limit=0", "limit"),
        ("colour=red", ""),
    ] {
        let r = app
            .get(&format!("/v1/teams/{}/usage?{query}", ws.team))
            .bearer(&ws.token)
            .send()
            .await;
        let p = r.assert_problem(400, "invalid_parameter");
        if !field.is_empty() {
            assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
        }
    }
}

#[tokio::test]
async fn a_spent_warehouse_budget_refuses_queries_skips_precompute_and_new_runs() {
    let (app, ws, base, _wh) = demo(&[]).await;
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": sample_dashboard("revenue-overview", &ws.connection) }))
        .send()
        .await
        .assert_status(201);
    // Bad budgets name their field.
    let r = app
        .patch(&format!("/v1/teams/{}", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "settings": { "daily_warehouse_bytes": 5, "daily_llm_usd": -1 } }))
        .send()
        .await;
    let p = r.assert_problem(422, "invalid_body");
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fields.contains(&"settings.daily_warehouse_bytes".to_owned()),
        "{p}"
    );
    assert!(fields.contains(&"settings.daily_llm_usd".to_owned()), "{p}");

    set_settings(&app, &ws, json!({ "daily_warehouse_bytes": 10_485_760 })).await;
    // Today's jobs already processed 20 MB.
    let db = app.db.client().await;
    db.execute(
        "INSERT INTO warehouse_jobs (id, team_id, connection_id, kind, warehouse_type, status, bytes) \
         VALUES (gen_random_uuid(), $1::text::uuid, $2::text::uuid, 'tile', 'postgres', 'ok', 20000000)",
        &[&ws.team, &ws.connection],
    )
    .await
    .unwrap();

    // One query's data: 429 with Retry-After at midnight UTC.
    let r = reqwest::Client::new()
        .get(format!("{base}/v1/dashboards/revenue-overview/data"))
        .bearer_auth(&ws.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the dashboard answers, each query with its error"
    );
    let body: Value = r.json().await.unwrap();
    let codes: Vec<_> = body["queries"]
        .as_object()
        .unwrap()
        .values()
        .map(|q| q["error"]["code"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        codes.iter().all(|c| c == "budget_exceeded"),
        "every query refused: {body}"
    );
    let first = body["queries"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let r = reqwest::Client::new()
        .get(format!(
            "{base}/v1/dashboards/revenue-overview/query/{first}/data"
        ))
        .bearer_auth(&ws.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let secs = retry_after(&r);
    assert!((1..=86_400).contains(&secs));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "budget_exceeded");

    // Precompute skips, and the skip is in the ledger.
    let r = app
        .post("/v1/dashboards/revenue-overview/precompute?force=true")
        .bearer(&ws.token)
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["skipped"], "budget_exceeded");
    assert_eq!(r.json()["queries_executed"], 0);
    let skipped: i64 = db
        .query_one(
            "SELECT count(*) FROM warehouse_jobs WHERE kind = 'precompute' AND status = 'skipped' AND error_code = 'budget_exceeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(skipped, 1);
    // No query reached the warehouse (dry runs, free, still do: the dashboard's check).
    let sent: i64 = db
        .query_one(
            "SELECT count(*) FROM warehouse_jobs WHERE status = 'ok' AND kind <> 'dry_run' AND bytes <> 20000000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 0);

    // New generation runs: 429 before any event.
    let r = generate(&base, &ws.token, &ws.connection, "Revenue by region").await;
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r) >= 1);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "budget_exceeded");
    let u = usage(&app, &ws, "group_by=kind").await;
    assert_eq!(u["today"]["daily_warehouse_bytes"], 10_485_760);
    assert!(u["today"]["billed_bytes"].as_i64().unwrap() >= 20_000_000);
    assert!(u["totals"]["skipped_jobs"].as_i64().unwrap() >= 1);

    // Raising the budget lets everything through again.
    set_settings(&app, &ws, json!({ "daily_warehouse_bytes": 1_000_000_000 })).await;
    let r = generate(&base, &ws.token, &ws.connection, "Revenue by region").await;
    assert_eq!(r.status(), 200);
    assert_eq!(terminal(&events(r).await).0, "complete");
}

#[tokio::test]
async fn generation_runs_per_user_per_day() {
    let (app, ws, base, _wh) = demo(&[]).await;
    set_settings(&app, &ws, json!({ "daily_generation_runs_per_user": 1 })).await;
    let r = generate(&base, &ws.token, &ws.connection, "Revenue by region").await;
    assert_eq!(r.status(), 200);
    assert_eq!(terminal(&events(r).await).0, "complete");
    let r = generate(&base, &ws.token, &ws.connection, "Orders by status").await;
    assert_eq!(r.status(), 429);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "budget_exceeded");
    assert!(p["detail"].as_str().unwrap().contains("generation runs"));
    // Another member has their own allowance; chat is not a generation run.
    let editor = app.member(&ws, "editor@example.com", "editor").await;
    let r = generate(&base, &editor, &ws.connection, "Orders by status").await;
    assert_eq!(r.status(), 200);
    assert_eq!(terminal(&events(r).await).0, "complete");
}

// --- priced model calls from a stub -------------------------------------------------------

/// An OpenAI-compatible `/v1/chat/completions` that answers after `delay` with usage worth
/// $0.30 on `gpt-4.1` (150,000 input tokens at $2/M): with `tools`, always a call of
/// `list_datasets` (so the run goes on step after step), else a short text.
async fn priced_stub(delay: Duration, tools: bool) -> String {
    async fn answer(State((delay, tools)): State<(Duration, bool)>) -> Response {
        tokio::time::sleep(delay).await;
        let chunk = |v: Value| format!("data: {v}\n\n");
        let mut body = String::new();
        if tools {
            body.push_str(&chunk(json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_{}", uuid::Uuid::new_v4().simple()), "type": "function", "function": {"name": "list_datasets", "arguments": "{}"}}]}, "finish_reason": null}]})));
            body.push_str(&chunk(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            ));
        } else {
            body.push_str(&chunk(json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello."}, "finish_reason": null}]})));
            body.push_str(&chunk(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            ));
        }
        body.push_str(&chunk(json!({"choices": [], "usage": {"prompt_tokens": 150_000, "completion_tokens": 0, "total_tokens": 150_000}})));
        body.push_str("data: [DONE]\n\n");
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(body))
            .unwrap()
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(answer))
        .with_state((delay, tools));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

async fn priced_app(upstream: &str, run_usd: &str) -> (TestApp, Workspace, String, TestWarehouse) {
    demo(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", upstream),
        ("OPENAI_MODEL", "gpt-4.1"),
        ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ("CHAT_MAX_RUN_USD", run_usd),
        ("CHAT_MAX_RUN_TOKENS", "10000000"),
    ])
    .await
}

async fn chat_stream(app: &TestApp, base: &str, ws: &Workspace) -> reqwest::Response {
    let s = app
        .post("/v1/chat/sessions")
        .bearer(&ws.token)
        .json(&json!({"team_id": ws.team, "connection_id": ws.connection}))
        .send()
        .await;
    s.assert_status(201);
    let id = s.json()["id"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/sessions/{id}/stream"))
        .bearer_auth(&ws.token)
        .json(&json!({"message": "Hello"}))
        .send()
        .await
        .unwrap()
}

async fn spent_today(app: &TestApp) -> f64 {
    app.db
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(cost_usd), 0)::float8 FROM model_calls",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn runs_racing_for_the_last_dollar_overspend_by_at_most_one_run() {
    // Each run makes one call of $0.30, two seconds long (all eight arrive while the first two run); a run may cost up to $0.50.
    let upstream = priced_stub(Duration::from_secs(2), false).await;
    let (app, ws, base, _wh) = priced_app(&upstream, "0.5").await;
    set_settings(&app, &ws, json!({ "daily_llm_usd": 1.0 })).await;
    // $0.20 already spent today.
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO model_calls (id, team_id, provider, model, purpose, cost_usd, latency_ms) \
             VALUES (gen_random_uuid(), $1::text::uuid, 'openai', 'gpt-4.1', 'chat', 0.2, 10)",
            &[&ws.team],
        )
        .await
        .unwrap();

    // Eight runs at once: $0.20 + 2 × $0.50 reaches the budget, so two are admitted.
    let racers = futures::future::join_all((0..8).map(|_| chat_stream(&app, &base, &ws))).await;
    let mut admitted = Vec::new();
    for r in racers {
        match r.status().as_u16() {
            200 => admitted.push(r),
            429 => {
                assert!(retry_after(&r) >= 1);
                let p: Value = r.json().await.unwrap();
                assert_eq!(p["code"], "budget_exceeded");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted.len(), 2, "runs admitted while two are under way");
    for r in admitted {
        assert_eq!(terminal(&events(r).await).0, "complete");
    }
    let spent = spent_today(&app).await;
    assert!((spent - 0.8).abs() < 1e-9, "spent {spent}");

    // With nothing under way, one more run fits ($0.80 < $1), and takes the team over by
    // less than one run's cap; after it, nothing more starts.
    let r = chat_stream(&app, &base, &ws).await;
    assert_eq!(r.status(), 200);
    assert_eq!(terminal(&events(r).await).0, "complete");
    let spent = spent_today(&app).await;
    assert!(spent <= 1.0 + 0.5, "overspend bounded by one run: {spent}");
    let r = chat_stream(&app, &base, &ws).await;
    assert_eq!(r.status(), 429);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("is spent"), "{p}");
    let u = usage(&app, &ws, "group_by=day").await;
    assert!((u["today"]["llm_usd"].as_f64().unwrap() - spent).abs() < 1e-9);
    assert_eq!(u["today"]["daily_llm_usd"], 1.0);
}

#[tokio::test]
async fn a_run_under_way_stops_at_its_next_step_when_the_budget_is_spent() {
    // Every call asks for a tool and costs $0.30; the run may cost $5, the team $1 a day.
    let upstream = priced_stub(Duration::from_millis(10), true).await;
    let (app, ws, base, _wh) = priced_app(&upstream, "5").await;
    set_settings(&app, &ws, json!({ "daily_llm_usd": 1.0 })).await;
    let r = chat_stream(&app, &base, &ws).await;
    assert_eq!(r.status(), 200);
    let evs = events(r).await;
    let (end, data) = terminal(&evs);
    assert_eq!(end, "error", "{evs:?}");
    assert_eq!(data["code"], "budget_exceeded", "{data}");
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("daily LLM budget"),
        "{data}"
    );
    // Four calls ($1.20): the fifth step saw the budget spent and did not call.
    let spent = spent_today(&app).await;
    assert!((spent - 1.2).abs() < 1e-9, "spent {spent}: {data}");
    let status: String = app
        .db
        .client()
        .await
        .query_one("SELECT error_code FROM chat_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "budget_exceeded");
}

// --- rate limits --------------------------------------------------------------------------

#[tokio::test]
async fn a_users_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::spawn_with(routes(), &[("RATE_LIMIT_USER_PER_MIN", "20")]).await;
    let alice = app.token("alice@example.com");
    let bob = app.token("bob@example.com");
    let mut served = 0;
    let refused = loop {
        let r = app.get("/v1/teams").bearer(&alice).send().await;
        if r.status == 429 {
            break r;
        }
        r.assert_status(200);
        served += 1;
        assert!(served <= 25, "the limit never came");
    };
    // A minute's worth is the burst (one more may have refilled meanwhile).
    assert!((20..=21).contains(&served), "{served}");
    let p = refused.assert_problem(429, "rate_limited");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("20 requests a minute"),
        "{p}"
    );
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=3).contains(&wait),
        "a token comes back every 3 s: {wait}"
    );
    // Another user has a bucket of their own; requests without a user are not counted.
    app.get("/v1/teams")
        .bearer(&bob)
        .send()
        .await
        .assert_status(200);
    app.get("/health").send().await.assert_status(200);
}

#[tokio::test]
async fn a_teams_rate_limit_is_shared_by_its_members_and_by_every_instance() {
    let (app, ws, _base, _wh) = demo(&[("RATE_LIMIT_TEAM_PER_MIN", "12")]).await;
    app.post(&format!("/v1/teams/{}/dashboards", ws.team))
        .bearer(&ws.token)
        .json(&json!({ "yaml": sample_dashboard("revenue-overview", &ws.connection) }))
        .send()
        .await
        .assert_status(201);
    let a = app.member(&ws, "a@example.com", "viewer").await;
    let b = app.member(&ws, "b@example.com", "viewer").await;
    let mut codes = Vec::new();
    for n in 0..16 {
        let token = if n % 2 == 0 { &a } else { &b };
        let r = app
            .get("/v1/dashboards/revenue-overview/data")
            .bearer(token)
            .send()
            .await;
        codes.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            let p = r.json();
            assert_eq!(p["code"], "rate_limited");
            assert!(p["detail"].as_str().unwrap().contains("your team"), "{p}");
        }
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!(
        (12..=13).contains(&ok),
        "the team's 12 a minute, both members together: {codes:?}"
    );
    // Another instance (a limiter of its own, with no lease) sees the same spent bucket.
    let other = edge::ratelimit::RateLimiter::new(settings::RateLimits {
        user_per_min: None,
        team_per_min: Some(12),
    });
    let team: uuid::Uuid = ws.team.parse().unwrap();
    let e = other
        .team(&app.state.edge.db, team)
        .await
        .expect_err("the bucket is shared");
    assert_eq!(e.code, "rate_limited");
    // Team management routes are not counted against the team.
    app.get(&format!("/v1/teams/{}", ws.team))
        .bearer(&a)
        .send()
        .await
        .assert_status(200);
}

//! `POST /v1/dashboards/generate` end to end on real Postgres with the demo warehouse: the
//! builtin provider goes from a sentence to a saved dashboard with live data through the
//! same tools and events a model would; a follow-up in the same session writes a new
//! version; tenancy and roles; bad bodies; and the guarantees the tools enforce (no save of
//! YAML that did not validate, nor of SQL that was not dry-run; unknown names answered with
//! the nearest real ones), driven by a scripted model behind an Anthropic-format stub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::{Router, body::Body, extract::State, response::Response, routing::post};
use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
}

struct Fixture {
    app: TestApp,
    ws: Workspace,
    _wh: TestWarehouse,
}

async fn fixture(vars: &[(&str, &str)]) -> Fixture {
    let app = TestApp::spawn_with(routes(), vars).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    Fixture { app, ws, _wh: wh }
}

#[derive(Debug, Clone)]
struct Sse {
    id: Option<i32>,
    event: String,
    data: Value,
}

fn parse_sse(body: &[u8]) -> Vec<Sse> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if data.is_empty() {
            continue;
        }
        out.push(Sse {
            id,
            event,
            data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
        });
    }
    out
}

impl Fixture {
    async fn generate_as(&self, token: &str, body: Value) -> testkit::TestResponse {
        self.app
            .post("/v1/dashboards/generate")
            .bearer(token)
            .json(&body)
            .send()
            .await
    }

    async fn generate(&self, body: Value) -> Vec<Sse> {
        let r = self.generate_as(&self.ws.token, body).await;
        r.assert_status(200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert!(r.header("x-run-id").is_some());
        let events = parse_sse(&r.body);
        check_run(&events);
        events
    }
}

fn check_run(events: &[Sse]) {
    assert_eq!(events[0].event, "run", "{events:?}");
    let ids: Vec<i32> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as i32).collect::<Vec<_>>());
    let terminals = events
        .iter()
        .filter(|e| e.event == "complete" || e.event == "error")
        .count();
    assert_eq!(terminals, 1, "exactly one terminal event: {events:?}");
    let last = &events.last().unwrap().event;
    assert!(last == "complete" || last == "error");
}

/// The tools called, in order.
fn tools(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "tool_call")
        .map(|e| e.data["tool"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_builtin_agent_goes_from_a_sentence_to_a_dashboard_with_live_data() {
    let f = fixture(&[]).await;
    let events = f
        .generate(json!({"connection_id": f.ws.connection, "prompt": "How many orders do we get per region?"}))
        .await;
    let called = tools(&events);
    let first_save = called
        .iter()
        .position(|t| t == "save_dashboard_yaml")
        .unwrap();
    assert!(
        called[..first_save].contains(&"run_dry_run_query".to_owned())
            && called[..first_save].contains(&"validate_dashboard_yaml".to_owned()),
        "dry runs and a validation before the save: {called:?}"
    );
    for t in ["list_datasets", "list_tables", "get_table_schema"] {
        assert!(called.contains(&t.to_owned()), "{t}: {called:?}");
    }
    let created = events
        .iter()
        .find(|e| e.event == "dashboard_created")
        .expect("dashboard_created");
    let slug = created.data["slug"].as_str().unwrap().to_owned();
    assert_eq!(created.data["version"], 1);
    assert_eq!(
        created.data["preview_url"],
        format!("/v1/dashboards/{slug}/data")
    );
    let done = events.last().unwrap();
    assert_eq!(done.event, "complete", "{done:?}");
    assert_eq!(done.data["dashboard"]["slug"], slug.as_str());
    let cost = events.iter().rfind(|e| e.event == "cost_update").unwrap();
    assert!(cost.data["warehouse_bytes_estimated"].as_u64().is_some());

    // The dashboard renders with live data: orders per region, from the warehouse.
    let data = f
        .app
        .get(&format!("/v1/dashboards/{slug}/data"))
        .bearer(&f.ws.token)
        .send()
        .await;
    data.assert_status(200);
    let data = data.json();
    let breakdown = &data["queries"]["breakdown"];
    let rows = breakdown["rows"].as_array().expect("breakdown rows");
    assert_eq!(rows.len(), 3, "three regions: {breakdown}");
    let total = &data["queries"]["total"]["rows"][0];
    assert!(total.to_string().contains("8000"), "{total}");

    // What the run used is kept with it, and with the version it saved.
    let c = f.app.db.client().await;
    let row = c
        .query_one(
            "SELECT status, total_tokens, warehouse_bytes, dashboard_version, dashboard_id IS NOT NULL FROM chat_runs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "complete");
    assert!(row.get::<_, i64>(1) > 0);
    assert_eq!(row.get::<_, Option<i32>>(3), Some(1));
    assert!(row.get::<_, bool>(4));

    // A follow-up in the same session changes the same dashboard: version 2.
    let session = events[0].data["session_id"].as_str().unwrap().to_owned();
    let again = f
        .generate(json!({"connection_id": f.ws.connection, "session_id": session, "prompt": "Add a chart of orders per month"}))
        .await;
    let created = again
        .iter()
        .find(|e| e.event == "dashboard_created")
        .unwrap_or_else(|| panic!("{again:?}"));
    assert_eq!(created.data["slug"], slug.as_str());
    assert_eq!(created.data["version"], 2);
    let yaml = f
        .app
        .get(&format!("/v1/dashboards/{slug}/yaml"))
        .bearer(&f.ws.token)
        .send()
        .await;
    assert!(
        String::from_utf8_lossy(&yaml.body).contains("per_month"),
        "the new version has the monthly chart"
    );
}

#[tokio::test]
async fn a_requested_slug_is_used_and_a_taken_one_is_refused_up_front_by_the_tools() {
    let f = fixture(&[]).await;
    let events = f
        .generate(json!({"connection_id": f.ws.connection, "prompt": "Show me events by event type", "slug": "web-events"}))
        .await;
    let created = events
        .iter()
        .find(|e| e.event == "dashboard_created")
        .unwrap();
    assert_eq!(created.data["slug"], "web-events");
    // The planner's own slug for the same question twice: the second run hears it is
    // taken, picks another, validates again and saves.
    let prompt =
        json!({"connection_id": f.ws.connection, "prompt": "Which page gets the most events?"});
    let one = f.generate(prompt.clone()).await;
    let two = f.generate(prompt).await;
    let slug = |ev: &[Sse]| {
        ev.iter()
            .find(|e| e.event == "dashboard_created")
            .map(|e| e.data["slug"].as_str().unwrap().to_owned())
    };
    let (a, b) = (slug(&one).unwrap(), slug(&two).unwrap());
    assert_ne!(a, b);
    assert!(b.starts_with(&a), "{a} {b}");
}

#[tokio::test]
async fn generate_answers_404_to_outsiders_403_to_viewers_and_names_bad_fields() {
    let f = fixture(&[]).await;
    let body = json!({"connection_id": f.ws.connection, "prompt": "orders per region"});
    // Another team's admin: the connection does not exist for them.
    let other = f.app.token("stranger@example.com");
    f.app
        .post("/v1/teams")
        .bearer(&other)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .assert_status(201);
    f.generate_as(&other, body.clone())
        .await
        .assert_problem(404, "connection_not_found");
    let viewer = f.app.member(&f.ws, "viewer@example.com", "viewer").await;
    f.generate_as(&viewer, body.clone())
        .await
        .assert_status(403);
    // Bad bodies: the field is named; nothing is started.
    for (bad, field) in [
        (json!({"connection_id": f.ws.connection}), "prompt"),
        (
            json!({"connection_id": f.ws.connection, "prompt": "   "}),
            "prompt",
        ),
        (
            json!({"connection_id": f.ws.connection, "prompt": "x", "slug": "Not A Slug"}),
            "slug",
        ),
        (
            json!({"connection_id": "nope", "prompt": "x"}),
            "connection_id",
        ),
    ] {
        let r = f.generate_as(&f.ws.token, bad.clone()).await;
        assert!(r.status.is_client_error(), "{bad}: {}", r.status);
        let p = r.json();
        assert!(p.to_string().contains(field), "{bad}: {p}");
    }
    // A chat session is not a generation session, and a colleague's session is not yours.
    let chat_session = {
        let c = f.app.db.client().await;
        c.query_one("SELECT count(*) FROM chat_runs", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(chat_session, 0, "no run started");
    let events = f.generate(body.clone()).await;
    let session = events[0].data["session_id"].as_str().unwrap();
    let editor = f.app.member(&f.ws, "editor@example.com", "editor").await;
    f.generate_as(
        &editor,
        json!({"connection_id": f.ws.connection, "prompt": "more", "session_id": session}),
    )
    .await
    .assert_status(404);
}

// --- a scripted model behind an Anthropic-format stub -----------------------------------

/// A model that answers each request with the next of `turns` (a tool call, or text), in
/// Anthropic's streaming format, and keeps the requests it was sent.
#[derive(Clone, Default)]
struct Script {
    turns: Arc<Mutex<Vec<Value>>>,
    seen: Arc<Mutex<Vec<Value>>>,
}

fn anthropic_stream(turn: &Value) -> String {
    let mut out = String::new();
    let mut push = |event: &str, data: Value| {
        out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    };
    push(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": {"input_tokens": 1200, "output_tokens": 1}}}),
    );
    let stop = if let Some(text) = turn["text"].as_str() {
        push(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        push(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        );
        push(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        );
        "end_turn"
    } else {
        push(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": format!("toolu_{}", turn["tool"].as_str().unwrap()), "name": turn["tool"], "input": {}}}),
        );
        push(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": turn["input"].to_string()}}),
        );
        push(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        );
        "tool_use"
    };
    push(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 80}}),
    );
    push("message_stop", json!({"type": "message_stop"}));
    out
}

async fn answer(State(script): State<Script>, body: axum::body::Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    script.seen.lock().unwrap().push(request);
    let turn = {
        let mut turns = script.turns.lock().unwrap();
        if turns.is_empty() {
            json!({"text": "Done."})
        } else {
            turns.remove(0)
        }
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(anthropic_stream(&turn)))
        .unwrap()
}

async fn scripted(turns: Vec<Value>) -> (String, Script) {
    let script = Script {
        turns: Arc::new(Mutex::new(turns)),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/messages", post(answer))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), script)
}

/// A key for the stub (generated: no secret is committed).
fn key() -> String {
    format!("sk-ant-test-{}", uuid::Uuid::new_v4().simple())
}

fn yaml(connection: &str, sql: &str) -> String {
    format!(
        "version: 1\nkind: dashboard\nslug: regions\ntitle: Orders by region\nconnection: {connection}\nqueries:\n  - id: by_region\n    sql: {sql}\nlayout:\n  - {{ id: chart, type: bar, query: by_region, x: region, y: [orders], position: {{ x: 0, y: 0, w: 12, h: 4 }} }}\n"
    )
}

/// The model in this script makes the mistakes the tools exist to catch: a table that is
/// not there, a column that is not there, a save of YAML that never validated; each answer
/// names what to do, and the model recovers the way a real one does.
#[tokio::test]
async fn the_tools_refuse_unproven_saves_and_answer_unknown_names_with_the_nearest() {
    let placeholder = "CONNECTION";
    let good_sql = "SELECT region, COUNT(*) AS orders FROM analytics.orders GROUP BY region";
    let good = yaml(placeholder, good_sql);
    let turns = vec![
        json!({"tool": "run_dry_run_query", "input": {"sql": "SELECT region, COUNT(*) AS orders FROM analytics.order GROUP BY region"}}),
        json!({"tool": "run_dry_run_query", "input": {"sql": "SELECT regin, COUNT(*) AS orders FROM analytics.orders GROUP BY regin"}}),
        json!({"tool": "save_dashboard_yaml", "input": {"yaml": good}}),
        json!({"tool": "validate_dashboard_yaml", "input": {"yaml": good}}),
        json!({"tool": "save_dashboard_yaml", "input": {"yaml": good}}),
        json!({"text": "Saved the dashboard `regions`."}),
    ];
    let (upstream, script) = scripted(turns).await;
    let f = fixture(&[
        ("LLM_PROVIDER", "anthropic"),
        ("ANTHROPIC_API_KEY", &key()),
        ("ANTHROPIC_BASE_URL", &upstream),
    ])
    .await;
    // The script's YAML needs the real connection id.
    {
        let mut turns = script.turns.lock().unwrap();
        for t in turns.iter_mut() {
            if let Some(y) = t["input"]["yaml"].as_str() {
                t["input"]["yaml"] = json!(y.replace(placeholder, &f.ws.connection));
            }
        }
    }
    let events = f
        .generate(json!({"connection_id": f.ws.connection, "prompt": "Orders by region"}))
        .await;
    let results: Vec<&Sse> = events.iter().filter(|e| e.event == "tool_result").collect();
    assert_eq!(results.len(), 5, "{events:?}");
    let text = |i: usize| results[i].data["result"].to_string();
    assert_eq!(results[0].data["is_error"], true);
    assert!(
        text(0).contains("analytics.orders"),
        "nearest table: {}",
        text(0)
    );
    assert_eq!(results[1].data["is_error"], true);
    assert!(text(1).contains("region"), "nearest column: {}", text(1));
    assert_eq!(
        results[2].data["is_error"], true,
        "no save before validation"
    );
    assert!(text(2).contains("did not validate"), "{}", text(2));
    assert_eq!(results[3].data["result"]["valid"], true, "{}", text(3));
    assert_eq!(results[4].data["is_error"], false, "{}", text(4));
    let created = events
        .iter()
        .find(|e| e.event == "dashboard_created")
        .unwrap();
    assert_eq!(created.data["slug"], "regions");
    assert_eq!(events.last().unwrap().event, "complete");
    // The model was told the run's connection and warehouse in the last system block.
    let seen = script.seen.lock().unwrap();
    let system = seen[0]["system"].to_string();
    assert!(system.contains("Generation context"), "{system}");
    assert!(system.contains(&f.ws.connection));
}

/// A model that stops without saving: the run ends with `error` `no_dashboard`, saying why.
#[tokio::test]
async fn a_run_that_saves_nothing_says_why() {
    let (upstream, _script) =
        scripted(vec![json!({"text": "I cannot find any sales data here."})]).await;
    let f = fixture(&[
        ("LLM_PROVIDER", "anthropic"),
        ("ANTHROPIC_API_KEY", &key()),
        ("ANTHROPIC_BASE_URL", &upstream),
    ])
    .await;
    let events = f
        .generate(json!({"connection_id": f.ws.connection, "prompt": "Sales by store"}))
        .await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "no_dashboard");
    assert!(
        last.data["message"]
            .as_str()
            .unwrap()
            .contains("cannot find any sales data")
    );
}

/// Every tool is scoped to the caller's team and the run's connection: a model that names
/// another team's table, connection or dashboard is told "not found" (or never sees it), and
/// nothing of the other team's leaks into a result.
#[tokio::test]
async fn no_tool_reaches_another_teams_warehouse_or_dashboards() {
    let placeholder = "OTHER_CONNECTION";
    let foreign = yaml(
        placeholder,
        "SELECT region, COUNT(*) AS orders FROM analytics.orders GROUP BY region",
    );
    let turns = vec![
        json!({"tool": "list_tables", "input": {"dataset": "analytics"}}),
        json!({"tool": "get_table_schema", "input": {"dataset": "analytics", "table": "payroll"}}),
        json!({"tool": "run_dry_run_query", "input": {"sql": "SELECT SUM(salary) AS s FROM analytics.payroll"}}),
        json!({"tool": "validate_dashboard_yaml", "input": {"yaml": foreign}}),
        json!({"tool": "save_dashboard_yaml", "input": {"yaml": foreign}}),
        json!({"tool": "list_dashboards", "input": {}}),
        json!({"text": "I found nothing to build."}),
    ];
    let (upstream, script) = scripted(turns).await;
    let f = fixture(&[
        ("LLM_PROVIDER", "anthropic"),
        ("ANTHROPIC_API_KEY", &key()),
        ("ANTHROPIC_BASE_URL", &upstream),
    ])
    .await;
    // Another team, its own warehouse with a table this team's does not have, a dashboard.
    let other_wh = TestWarehouse::demo().await;
    other_wh
        .db
        .client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE analytics.payroll (employee text, salary numeric); \
             GRANT SELECT ON analytics.payroll TO {};",
            other_wh.reader
        ))
        .await
        .unwrap();
    let other = f
        .app
        .workspace_of(
            "other-admin@example.com",
            "postgres",
            json!({ "url": other_wh.reader_url }),
        )
        .await;
    f.app
        .post(&format!("/v1/teams/{}/dashboards", other.team))
        .bearer(&other.token)
        .json(&json!({"yaml": testkit::sample_dashboard("revenue-overview", &other.connection)}))
        .send()
        .await
        .assert_status(201);
    {
        let mut turns = script.turns.lock().unwrap();
        for t in turns.iter_mut() {
            if let Some(y) = t["input"]["yaml"].as_str() {
                t["input"]["yaml"] = json!(y.replace(placeholder, &other.connection));
            }
        }
    }
    let events = f
        .generate(json!({"connection_id": f.ws.connection, "prompt": "Payroll by employee"}))
        .await;
    let results: Vec<&Sse> = events.iter().filter(|e| e.event == "tool_result").collect();
    assert_eq!(results.len(), 6, "{events:?}");
    let text = |i: usize| results[i].data["result"].to_string();
    assert_eq!(results[0].data["is_error"], false, "{}", text(0));
    assert!(!text(0).contains("payroll"), "{}", text(0));
    for i in [1, 2] {
        assert_eq!(results[i].data["is_error"], true, "{}", text(i));
        assert!(
            ["not found", "no table", "not in the connection's catalog"]
                .iter()
                .any(|m| text(i).contains(m)),
            "{}",
            text(i)
        );
    }
    assert!(
        results[3].data["result"]["valid"] == false || results[3].data["is_error"] == true,
        "{}",
        text(3)
    );
    assert_eq!(results[4].data["is_error"], true, "{}", text(4));
    assert!(!text(5).contains("revenue-overview"), "{}", text(5));
    for r in &results {
        assert!(!r.data.to_string().contains(&other.connection) || r.data["is_error"] == true);
    }
    assert!(events.iter().all(|e| e.event != "dashboard_created"));
    let last = events.last().unwrap();
    assert_eq!(last.data["code"], "no_dashboard", "{last:?}");
    // Nothing was saved for either team.
    let listed = f
        .app
        .get(&format!("/v1/teams/{}/dashboards", f.ws.team))
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(
        listed["dashboards"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

/// The builtin agent on the BigQuery wire (bqemulator; its dry runs answer no bytes, which
/// the tools report as 0): a partitioned table, the dialect's SQL, a saved dashboard whose
/// data comes back from the emulator.
#[tokio::test]
async fn the_builtin_agent_writes_a_dashboard_on_bigquery() {
    let Some(emu) = testkit::emulators::bigquery().await else {
        return;
    };
    let token = testkit::stubs::bigquery::BigQueryStub::start().await;
    let ds = emu.fresh_dataset().await;
    let schema = json!({ "fields": [
        { "name": "order_day", "type": "DATE" }, { "name": "region", "type": "STRING" }, { "name": "amount", "type": "FLOAT64" },
    ]});
    emu.create_table(
        &ds,
        "sales",
        schema,
        Some(json!({ "type": "DAY", "field": "order_day" })),
        &["region"],
    )
    .await;
    let rows: Vec<Value> = (1..=9)
        .map(|i: usize| {
            let region = ["EMEA", "AMER", "APAC"][i % 3];
            json!({ "order_day": format!("2025-03-0{i}"), "region": region, "amount": i as f64 * 2.5 })
        })
        .collect();
    emu.insert_rows(&ds, "sales", &rows).await;
    let v2 = emu.v2_base();
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("BIGQUERY_API_URL", &v2),
            ("GCP_TOKEN_URI", &token.token_url),
        ],
    )
    .await;
    let ws = app
        .workspace("bigquery", testkit::service_account_key(&emu.project))
        .await;
    let r = app
        .post("/v1/dashboards/generate")
        .bearer(&ws.token)
        .json(&json!({"connection_id": ws.connection, "prompt": "Sales amount by region per day"}))
        .send()
        .await;
    r.assert_status(200);
    let events = parse_sse(&r.body);
    check_run(&events);
    let last = events.last().unwrap();
    assert_eq!(last.event, "complete", "{events:?}");
    let created = events
        .iter()
        .find(|e| e.event == "dashboard_created")
        .expect("dashboard_created");
    let slug = created.data["slug"].as_str().unwrap();
    let yaml = app
        .get(&format!("/v1/dashboards/{slug}/yaml"))
        .bearer(&ws.token)
        .send()
        .await;
    let yaml = String::from_utf8_lossy(&yaml.body).into_owned();
    assert!(yaml.contains(&format!("{ds}.sales")), "{yaml}");
    let data = app
        .get(&format!("/v1/dashboards/{slug}/data"))
        .bearer(&ws.token)
        .send()
        .await;
    data.assert_status(200);
    let data = data.json();
    let breakdown = &data["queries"]["breakdown"]["rows"];
    // EMEA 3, 6, 9 → 45; APAC 2, 5, 8 → 37.5; AMER 1, 4, 7 → 30, ordered by the sum.
    assert_eq!(
        breakdown,
        &json!([["EMEA", 45.0], ["APAC", 37.5], ["AMER", 30.0]]),
        "{data}"
    );
    let total = data["queries"]["total"]["rows"][0].to_string();
    assert!(total.contains("112.5"), "{data}");
}

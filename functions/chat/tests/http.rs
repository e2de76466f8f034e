//! The chat function end to end, over a real socket, on real Postgres with the demo
//! warehouse: the builtin provider answering about the catalog through the tools; a model
//! behind an OpenAI-compatible stub (a local server speaking the documented stream format)
//! for the slow, failing and endless cases; replay after `Last-Event-ID`; cancellation;
//! one run at a time; tenancy and roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::{Router, body::Body, response::Response, routing::post};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{TestApp, TestWarehouse, Workspace};

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(chat::router())
}

struct Fixture {
    app: TestApp,
    base: String,
    ws: Workspace,
    http: reqwest::Client,
    _wh: TestWarehouse,
}

async fn fixture(vars: &[(&str, &str)]) -> Fixture {
    let app = TestApp::spawn_with(routes(), vars).await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    let base = app.serve().await;
    Fixture {
        app,
        base,
        ws,
        http: reqwest::Client::new(),
        _wh: wh,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<i32>,
    event: String,
    data: Value,
}

/// Reads an SSE response to its end (or `limit` events).
async fn read_events(response: reqwest::Response, limit: usize) -> Vec<Sse> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut bytes = response.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
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
                continue; // a heartbeat comment, or retry alone
            }
            out.push(Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            });
            if out.len() >= limit {
                return out;
            }
        }
    }
    out
}

impl Fixture {
    async fn session(&self, token: &str) -> Value {
        let r = self
            .app
            .post("/v1/chat/sessions")
            .bearer(token)
            .json(&json!({"team_id": self.ws.team, "connection_id": self.ws.connection}))
            .send()
            .await;
        r.assert_status(201);
        r.json()
    }

    async fn stream(&self, session: &str, token: &str, message: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/sessions/{session}/stream", self.base))
            .bearer_auth(token)
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap()
    }

    async fn ask(&self, session: &str, message: &str) -> Vec<Sse> {
        let r = self.stream(session, &self.ws.token, message).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        assert!(r.headers().contains_key("x-run-id"));
        read_events(r, 1000).await
    }
}

fn check_run(events: &[Sse]) {
    assert_eq!(events[0].event, "run", "{events:?}");
    let ids: Vec<i32> = events
        .iter()
        .map(|e| e.id.expect("every event has an id"))
        .collect();
    assert_eq!(
        ids,
        (1..=events.len() as i32).collect::<Vec<_>>(),
        "ids count the run's events"
    );
    let terminals = events
        .iter()
        .filter(|e| e.event == "complete" || e.event == "error")
        .count();
    assert_eq!(terminals, 1, "exactly one terminal event: {events:?}");
    let last = events.last().unwrap();
    assert!(
        last.event == "complete" || last.event == "error",
        "the terminal event is last"
    );
}

fn text(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_builtin_model_answers_about_the_catalog_through_the_tools() {
    let f = fixture(&[]).await;
    let s = f.session(&f.ws.token).await;
    assert_eq!(s["provider"], "builtin");
    assert_eq!(
        s["tools"],
        json!(["list_datasets", "list_tables", "get_table_schema"])
    );
    let id = s["id"].as_str().unwrap();

    let events = f.ask(id, "Which datasets are there?").await;
    check_run(&events);
    let mut names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    names.dedup(); // the first token at once, the rest coalesced
    assert_eq!(
        names,
        vec![
            "run",
            "cost_update",
            "tool_call",
            "tool_result",
            "token",
            "cost_update",
            "complete"
        ],
        "{events:?}"
    );
    assert_eq!(events[2].data["tool"], "list_datasets");
    assert!(text(&events).contains("analytics"), "{}", text(&events));
    assert!(events[0].data["replay_token"].as_str().unwrap().len() >= 32);

    let events = f.ask(id, "Which tables are in dataset analytics?").await;
    check_run(&events);
    assert_eq!(events[2].data["args"], json!({"dataset": "analytics"}));
    assert!(text(&events).contains("orders"), "{}", text(&events));

    let events = f.ask(id, "What columns does analytics.orders have?").await;
    check_run(&events);
    assert_eq!(events[2].data["tool"], "get_table_schema");
    assert!(text(&events).contains("order_id"), "{}", text(&events));

    let events = f.ask(id, "Write me a poem").await;
    check_run(&events);
    assert!(
        text(&events).contains("cannot"),
        "says plainly what it cannot do"
    );

    // The history, newest first, from the JSONL log.
    let page = f
        .app
        .get(&format!("/v1/chat/sessions/{id}/messages?limit=3"))
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["total_count"], 14,
        "4 questions, 3 calls and their 3 results, 4 answers: {page}"
    );
    let users = f
        .app
        .get(&format!(
            "/v1/chat/sessions/{id}/messages?role=user&limit=200"
        ))
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(
        users["messages"].as_array().unwrap().len(),
        7,
        "questions and tool results"
    );
    let s = f
        .app
        .get(&format!("/v1/chat/sessions/{id}"))
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(s["message_count"], 14);
    assert_eq!(s["total_cost_usd"], "0.000000000000");
    assert!(s["total_tokens"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_run_replays_after_last_event_id_and_ends_with_204() {
    let f = fixture(&[]).await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let events = f.ask(id, "Which datasets are there?").await;
    let run = events[0].data["run_id"].as_str().unwrap().to_owned();
    let token = events[0].data["replay_token"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/chat/sessions/{id}/runs/{run}/events", f.base);

    // EventSource's way: the token in the query, Last-Event-ID in a header.
    let r = f
        .http
        .get(format!("{url}?token={token}"))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let replayed = read_events(r, 100).await;
    assert_eq!(
        replayed,
        events[3..].to_vec(),
        "every event after the third, exactly once"
    );
    // All delivered: 204, and EventSource stops.
    let last = events.last().unwrap().id.unwrap();
    let r = f
        .http
        .get(format!("{url}?token={token}"))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // With a bearer instead of the token; `after` for fetch clients.
    let r = f
        .http
        .get(format!("{url}?after=0"))
        .bearer_auth(&f.ws.token)
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(r, 100).await, events);
    // A wrong token, or none: 404. The token opens nothing else.
    let r = f
        .http
        .get(format!("{url}?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = f
        .http
        .get(format!("{}/v1/chat/sessions/{id}", f.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the replay token is not a bearer token");
    // A stranger's bearer: 404 for the replay and for cancel.
    let stranger = f.app.token("mallory@example.com");
    let r = f
        .http
        .get(format!("{url}?after=0"))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    f.app
        .post(&format!("/v1/chat/sessions/{id}/runs/{run}/cancel"))
        .bearer(&stranger)
        .send()
        .await
        .assert_status(404);
    // Another session's id with this run: not found.
    let other = f.session(&f.ws.token).await;
    let r = f
        .http
        .get(format!(
            "{}/v1/chat/sessions/{}/runs/{run}/events?token={token}",
            f.base,
            other["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sessions_belong_to_their_user_and_team() {
    let f = fixture(&[]).await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let editor = f.app.member(&f.ws, "eve@example.com", "editor").await;
    let viewer = f.app.member(&f.ws, "vic@example.com", "viewer").await;
    let stranger = f.app.token("mallory@example.com");

    // A stranger: 404 on everything, never 403.
    for path in [
        format!("/v1/chat/sessions/{id}"),
        format!("/v1/chat/sessions/{id}/messages"),
    ] {
        f.app
            .get(&path)
            .bearer(&stranger)
            .send()
            .await
            .assert_problem(404, "session_not_found");
    }
    f.app
        .delete(&format!("/v1/chat/sessions/{id}"))
        .bearer(&stranger)
        .send()
        .await
        .assert_status(404);
    let r = f.stream(id, &stranger, "hi").await;
    assert_eq!(r.status(), 404);
    // Another team's admin creating a session on this team: 404.
    f.app
        .post("/v1/chat/sessions")
        .bearer(&stranger)
        .json(&json!({"team_id": f.ws.team}))
        .send()
        .await
        .assert_status(404);
    // A colleague (editor) does not see someone else's session.
    f.app
        .get(&format!("/v1/chat/sessions/{id}"))
        .bearer(&editor)
        .send()
        .await
        .assert_status(404);
    assert_eq!(f.stream(id, &editor, "hi").await.status(), 404);
    // A viewer may not start a session.
    f.app
        .post("/v1/chat/sessions")
        .bearer(&viewer)
        .json(&json!({"team_id": f.ws.team}))
        .send()
        .await
        .assert_status(403);
    // The editor's own session: the team admin may read it but not speak in it.
    let theirs = f
        .app
        .post("/v1/chat/sessions")
        .bearer(&editor)
        .json(&json!({"team_id": f.ws.team, "connection_id": f.ws.connection}))
        .send()
        .await
        .json();
    let theirs = theirs["id"].as_str().unwrap();
    f.app
        .get(&format!("/v1/chat/sessions/{theirs}"))
        .bearer(&f.ws.token)
        .send()
        .await
        .assert_status(200);
    assert_eq!(f.stream(theirs, &f.ws.token, "hi").await.status(), 404);
    // Lists: the caller's own.
    let mine = f
        .app
        .get("/v1/chat/sessions")
        .bearer(&editor)
        .send()
        .await
        .json();
    assert_eq!(mine["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(mine["sessions"][0]["id"], theirs);
    let current = f
        .app
        .get("/v1/chat/sessions/current")
        .bearer(&editor)
        .send()
        .await
        .json();
    assert_eq!(current["id"], theirs);
    // Archived: not current any more, takes no messages.
    f.app
        .post(&format!("/v1/chat/sessions/{theirs}/archive"))
        .bearer(&editor)
        .send()
        .await
        .assert_status(200);
    f.app
        .get("/v1/chat/sessions/current")
        .bearer(&editor)
        .send()
        .await
        .assert_status(404);
    assert_eq!(f.stream(theirs, &editor, "hi").await.status(), 409);
    f.app
        .delete(&format!("/v1/chat/sessions/{theirs}"))
        .bearer(&editor)
        .send()
        .await
        .assert_status(204);
    f.app
        .get(&format!("/v1/chat/sessions/{theirs}"))
        .bearer(&editor)
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let f = fixture(&[]).await;
    let p = f
        .app
        .post("/v1/chat/sessions")
        .bearer(&f.ws.token)
        .json(&json!({"team_id": f.ws.team, "tools": ["drop_database"]}))
        .send()
        .await;
    assert!(
        p.json()["detail"].as_str().unwrap().contains("tools"),
        "{}",
        p.json()
    );
    let p = f
        .app
        .post("/v1/chat/sessions")
        .bearer(&f.ws.token)
        .json(&json!({"team_id": f.ws.team, "provider": "google"}))
        .send()
        .await;
    assert!(
        p.json()["detail"].as_str().unwrap().contains("provider"),
        "{}",
        p.json()
    );
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let r = f
        .http
        .post(format!("{}/v1/chat/sessions/{id}/stream", f.base))
        .bearer_auth(&f.ws.token)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = f.stream(id, &f.ws.token, "   ").await;
    assert!(r.status().is_client_error());
}

// --- a model behind an OpenAI-compatible stub -------------------------------------------

/// Serves `/v1/chat/completions` as `mode` says: `slow` streams a word every 100 ms for
/// ever; `fail` sends two words, then an in-band error.
async fn stub(mode: &'static str) -> String {
    let answer = move || async move {
        let chunk = |text: &str| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
            )
        };
        let head = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(chunk("Hello ")),
            Ok(chunk("there ")),
        ]);
        let recorded = |name: &str| {
            std::fs::read(format!(
                "{}/../../common/llm/tests/data/openai/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        match mode {
            "cut" => {
                return Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from(recorded("cut.sse")))
                    .unwrap();
            }
            "529" => {
                return Response::builder()
                    .status(529)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        r#"{"error":{"message":"Overloaded","type":"overloaded_error"}}"#,
                    ))
                    .unwrap();
            }
            "stall" => {
                let half = recorded("text.sse");
                let half = half[..half.len() / 2].to_vec();
                let body = Body::from_stream(
                    futures::stream::once(async move { Ok::<_, std::io::Error>(half) })
                        .chain(futures::stream::pending()),
                );
                return Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(body)
                    .unwrap();
            }
            _ => {}
        }
        let body = match mode {
            "slow" => Body::from_stream(head.chain(futures::stream::unfold(
                0u32,
                move |n| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok(format!(
                            "data: {}\n\n",
                            json!({"choices": [{"index": 0, "delta": {"content": "la "}}]})
                        )),
                        n + 1,
                    ))
                },
            ))),
            _ => Body::from_stream(head.chain(futures::stream::iter(vec![Ok(format!(
                "data: {}\n\n",
                json!({"error": {"message": "Overloaded", "type": "overloaded_error"}})
            ))]))),
        };
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    };
    let app = Router::new().route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

async fn run_status(f: &Fixture, run: &str) -> String {
    let c = f.app.db.client().await;
    c.query_one(
        "SELECT status FROM chat_runs WHERE id = $1::text::uuid",
        &[&run],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn cancel_stops_a_run_within_a_second_and_one_run_at_a_time() {
    let upstream = stub("slow").await;
    let f = fixture(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &upstream),
        ("OPENAI_MODEL", "stub-model"),
    ])
    .await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let r = f.stream(id, &f.ws.token, "Talk to me").await;
    assert_eq!(r.status(), 200);
    let run = r.headers()["x-run-id"].to_str().unwrap().to_owned();
    // A second stream while this one runs: 409.
    let second = f.stream(id, &f.ws.token, "And me").await;
    assert_eq!(second.status(), 409);
    let reader = tokio::spawn(read_events(r, 10_000));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let asked = Instant::now();
    f.app
        .post(&format!("/v1/chat/sessions/{id}/runs/{run}/cancel"))
        .bearer(&f.ws.token)
        .send()
        .await
        .assert_status(202);
    let events = reader.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_millis(2500),
        "stopped after {:?}",
        asked.elapsed()
    );
    check_run(&events);
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.data["code"].as_str()),
        ("error", Some("cancelled"))
    );
    assert!(
        text(&events).starts_with("Hello there la"),
        "tokens were relayed as they came"
    );
    assert_eq!(run_status(&f, &run).await, "cancelled");
    // The model call was recorded, with the error, and its cost unknown (no price).
    let c = f.app.db.client().await;
    let row = c
        .query_one(
            "SELECT error, cost_usd IS NULL FROM model_calls WHERE session_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("cancelled"));
    assert!(row.get::<_, bool>(1));
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_run() {
    let upstream = stub("slow").await;
    let f = fixture(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &upstream)]).await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let r = f.stream(id, &f.ws.token, "Talk to me").await;
    let run = r.headers()["x-run-id"].to_str().unwrap().to_owned();
    let first = read_events(r, 3).await; // and drop the connection
    assert_eq!(first[0].event, "run");
    let began = Instant::now();
    while run_status(&f, &run).await == "running" {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the run did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run_status(&f, &run).await, "cancelled");
    // Its terminal event was kept: a replay ends with it.
    let r = f
        .http
        .get(format!(
            "{}/v1/chat/sessions/{id}/runs/{run}/events",
            f.base
        ))
        .bearer_auth(&f.ws.token)
        .send()
        .await
        .unwrap();
    let all = read_events(r, 10_000).await;
    check_run(&all);
    assert_eq!(all.last().unwrap().data["code"], "cancelled");
    // The session takes a new message.
    let again = f.stream(id, &f.ws.token, "Again").await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_provider_failing_mid_stream_ends_the_run_with_a_coded_error() {
    let upstream = stub("fail").await;
    let f = fixture(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &upstream)]).await;
    let s = f.session(&f.ws.token).await;
    let events = f.ask(s["id"].as_str().unwrap(), "Hi").await;
    check_run(&events);
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["code"], "provider_overloaded", "{last:?}");
    assert_eq!(text(&events), "Hello there ");
}

#[tokio::test]
async fn the_step_limit_ends_a_run() {
    let f = fixture(&[("CHAT_MAX_STEPS", "1")]).await;
    let s = f.session(&f.ws.token).await;
    let events = f
        .ask(s["id"].as_str().unwrap(), "Which datasets are there?")
        .await;
    check_run(&events);
    assert_eq!(events.last().unwrap().data["code"], "step_limit");
}

#[tokio::test]
async fn export_and_observability_for_admins() {
    let f = fixture(&[]).await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    f.ask(id, "Which datasets are there?").await;
    let again = f.ask(id, "Which datasets are there?").await;
    let result = again.iter().find(|e| e.event == "tool_result").unwrap();
    assert_eq!(
        result.data["cached"], true,
        "the same call again: from the tool cache"
    );

    // Export: the session, its messages oldest first, its model calls.
    let r = f
        .app
        .get(&format!("/v1/chat/sessions/{id}/export"))
        .bearer(&f.ws.token)
        .send()
        .await;
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains(&format!("chat-{id}.jsonl"))
    );
    let lines: Vec<Value> = String::from_utf8(r.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "session");
    let messages: Vec<&Value> = lines.iter().filter(|l| l["type"] == "message").collect();
    assert_eq!(messages.len(), 8);
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(
        lines.iter().filter(|l| l["type"] == "model_call").count(),
        4
    );

    // Observability: the admin sees the team's calls, costs and cache hits.
    let calls = f
        .app
        .get("/v1/observability/model-calls?limit=3")
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(calls["total_count"], 4, "{calls}");
    assert_eq!(calls["calls"].as_array().unwrap().len(), 3);
    let next = calls["next_cursor"].as_str().unwrap();
    let rest = f
        .app
        .get(&format!(
            "/v1/observability/model-calls?limit=3&cursor={next}"
        ))
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(rest["calls"].as_array().unwrap().len(), 1);
    for group in ["session", "user", "team"] {
        let sum = f
            .app
            .get(&format!(
                "/v1/observability/cost-summary?group_by={group}&team_id={}&start_date=2020-01-01",
                f.ws.team
            ))
            .bearer(&f.ws.token)
            .send()
            .await
            .json();
        assert_eq!(
            sum["summary"].as_array().unwrap().len(),
            1,
            "{group}: {sum}"
        );
        assert_eq!(sum["summary"][0]["calls"], 4);
        assert_eq!(sum["grand_total_cost_usd"], "0.000000000000");
    }
    let tools = f
        .app
        .get("/v1/observability/tool-cache-stats")
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert_eq!(tools["tools"][0]["tool_name"], "list_datasets", "{tools}");
    assert_eq!(tools["tools"][0]["total_hits"], 1);
    assert_eq!(tools["overall_hit_rate"], 0.5);

    // Members below admin: 403 naming the team; strangers: 404, or nothing of theirs.
    let editor = f.app.member(&f.ws, "eve@example.com", "editor").await;
    f.app
        .get(&format!(
            "/v1/observability/model-calls?team_id={}",
            f.ws.team
        ))
        .bearer(&editor)
        .send()
        .await
        .assert_status(403);
    let stranger = f.app.token("mallory@example.com");
    f.app
        .get(&format!(
            "/v1/observability/cost-summary?team_id={}",
            f.ws.team
        ))
        .bearer(&stranger)
        .send()
        .await
        .assert_status(404);
    let none = f
        .app
        .get("/v1/observability/model-calls")
        .bearer(&stranger)
        .send()
        .await
        .json();
    assert_eq!(none["total_count"], 0);
    f.app
        .get(&format!("/v1/chat/sessions/{id}/export"))
        .bearer(&stranger)
        .send()
        .await
        .assert_status(404);
    // Bad parameters name the field.
    let p = f
        .app
        .get("/v1/observability/cost-summary?group_by=planet")
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert!(p["detail"].as_str().unwrap().contains("group_by"), "{p}");
    let p = f
        .app
        .get("/v1/observability/model-calls?start_date=yesterday")
        .bearer(&f.ws.token)
        .send()
        .await
        .json();
    assert!(p["detail"].as_str().unwrap().contains("start_date"), "{p}");
}

#[tokio::test]
async fn sigterm_drains_running_streams_with_an_error_event() {
    // The drain signal is process-wide: this test runs alone in its process (nextest), and
    // checks what a run does when the process is asked to stop.
    let upstream = stub("slow").await;
    let f = fixture(&[("LLM_PROVIDER", "openai"), ("OPENAI_BASE_URL", &upstream)]).await;
    let s = f.session(&f.ws.token).await;
    let r = f
        .stream(s["id"].as_str().unwrap(), &f.ws.token, "Talk to me")
        .await;
    let reader = tokio::spawn(read_events(r, 10_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge::runtime::draining().cancel();
    let events = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended")
        .unwrap();
    check_run(&events);
    assert_eq!(events.last().unwrap().data["code"], "shutting_down");
}

#[tokio::test]
async fn recorded_provider_failures_end_runs_with_their_codes() {
    for (mode, vars, code) in [
        ("cut", vec![], "provider_error"),
        ("529", vec![("LLM_MAX_RETRIES", "0")], "provider_overloaded"),
        ("stall", vec![("LLM_IDLE_TIMEOUT_MS", "300")], "timeout"),
    ] {
        let upstream = stub(mode).await;
        let mut all = vec![
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", upstream.as_str()),
        ];
        all.extend(vars);
        let f = fixture(&all).await;
        let s = f.session(&f.ws.token).await;
        let events = f.ask(s["id"].as_str().unwrap(), "Hi").await;
        check_run(&events);
        let last = events.last().unwrap();
        assert_eq!(
            (last.event.as_str(), last.data["code"].as_str()),
            ("error", Some(code)),
            "{mode}: {events:?}"
        );
        if mode == "cut" {
            assert_eq!(
                text(&events),
                "The query returned 42 rows",
                "text before the cut reached the client"
            );
        }
    }
}

/// The real local model (scripts/test starts it): a streamed run that ends with one terminal
/// event, and whose tool calls, if it makes any, name offered tools with arguments that fit.
#[tokio::test]
async fn a_run_with_the_real_local_model() {
    let Ok(url) = std::env::var("BRIDGE_TEST_LLM_URL") else {
        assert!(
            std::env::var("BRIDGE_REQUIRE_LOCAL_LLM").as_deref() != Ok("1"),
            "the local model should be running"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "\n*** SKIPPED: the local model is not running (scripts/test starts it) ***\n"
            );
        }
        return;
    };
    let model =
        std::env::var("BRIDGE_TEST_LLM_MODEL").unwrap_or_else(|_| "qwen2.5-coder-0.5b".into());
    let f = fixture(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", url.as_str()),
        ("OPENAI_MODEL", model.as_str()),
        ("LLM_MAX_TOKENS", "128"),
        ("CHAT_MAX_STEPS", "3"),
    ])
    .await;
    let s = f.session(&f.ws.token).await;
    let events = f
        .ask(
            s["id"].as_str().unwrap(),
            "Which datasets are there? Use the tools.",
        )
        .await;
    check_run(&events);
    for call in events.iter().filter(|e| e.event == "tool_call") {
        let tool = call.data["tool"].as_str().unwrap();
        assert!(
            ["list_datasets", "list_tables", "get_table_schema"].contains(&tool),
            "{call:?}"
        );
    }
    let last = events.last().unwrap();
    assert!(
        last.event == "complete"
            || ["step_limit", "budget_exceeded", "timeout"]
                .contains(&last.data["code"].as_str().unwrap_or("")),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_run_whose_process_died_is_ended_with_an_error_event() {
    let f = fixture(&[]).await;
    let s = f.session(&f.ws.token).await;
    let id = s["id"].as_str().unwrap();
    let c = f.app.db.client().await;
    // A run left `running` by a process that died 40 s ago, after sending one event.
    let run = uuid::Uuid::new_v4();
    c.execute(
        "INSERT INTO chat_runs (id, session_id, team_id, user_id, replay_token_hash, replay_expires_at, heartbeat_at) \
         SELECT $1, id, team_id, user_id, repeat('0', 64), now() + interval '1 hour', now() - interval '40 seconds' \
         FROM session_manifests WHERE id = $2::text::uuid",
        &[&run, &id],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO chat_run_events (run_id, seq, event, data) VALUES ($1, 1, 'run', '{}')",
        &[&run],
    )
    .await
    .unwrap();
    // The session takes a new message: the dead run is ended first.
    let events = f.ask(id, "Which datasets are there?").await;
    check_run(&events);
    let r = f
        .http
        .get(format!(
            "{}/v1/chat/sessions/{id}/runs/{run}/events?after=0",
            f.base
        ))
        .bearer_auth(&f.ws.token)
        .send()
        .await
        .unwrap();
    let ended = read_events(r, 10).await;
    assert_eq!(ended.len(), 2);
    assert_eq!(
        (ended[1].event.as_str(), ended[1].data["code"].as_str()),
        ("error", Some("internal"))
    );
}

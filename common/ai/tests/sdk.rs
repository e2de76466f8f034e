//! The AI SDK against real parts: a fresh Postgres database per test, and the blob store
//! adapters Bridge ships — a local directory, S3 on moto, and GCS through a stub of its
//! documented JSON API (no GCS emulator does generation preconditions).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use ai::{
    artifacts::{Artifacts, NewArtifact},
    calls::{CallContext, ModelCalls},
    prompts,
    sessions::{NewSession, Sessions},
    tool_cache::ToolCache,
    tools::{Registry, Tool, ToolContext, ToolError},
};
use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::Pool;
use llm::{Content, Message, PriceTable, Provider, Request, Role, ToolCall, builtin::Builtin};
use platform::blob::{BlobStore, ObjectStoreBlobs};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use testkit::{TempDir, TestDb, emulators, stubs::gcs::GcsStub};
use uuid::Uuid;

async fn pool(db: &TestDb) -> Pool {
    storage::db::pool(
        &db.url,
        None,
        storage::db::PoolOptions {
            max_size: 16,
            timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(10)),
        },
    )
    .unwrap()
}

struct World {
    db: TestDb,
    pool: Pool,
    team: Uuid,
    user: Uuid,
    connection: Uuid,
}

async fn world() -> World {
    let db = TestDb::fresh().await;
    let pool = pool(&db).await;
    let (team, user, connection) = team_with_connection(&pool).await;
    World {
        db,
        pool,
        team,
        user,
        connection,
    }
}

async fn team_with_connection(pool: &Pool) -> (Uuid, Uuid, Uuid) {
    let c = pool.get().await.unwrap();
    let (team, user, connection) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    c.execute(
        "INSERT INTO users (id, issuer, subject, email) VALUES ($1, 'test', $2, $3)",
        &[&user, &user.to_string(), &format!("{user}@example.com")],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO teams (id, name, slug, created_by) VALUES ($1, 'T', $2, $3)",
        &[
            &team,
            &format!("t-{}", &team.simple().to_string()[..12]),
            &user,
        ],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO connections (id, team_id, name, warehouse_type, credentials_key, key_id) \
         VALUES ($1, $2, 'c', 'postgres', $3, 'local')",
        &[&connection, &team, &format!("k-{connection}")],
    )
    .await
    .unwrap();
    (team, user, connection)
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Each blob backend, with what keeps it alive.
enum Keep {
    Dir(#[allow(dead_code)] TempDir),
    Gcs(#[allow(dead_code)] GcsStub),
    None,
}

async fn backends() -> Vec<(&'static str, Arc<dyn BlobStore>, Keep)> {
    let mut out: Vec<(&'static str, Arc<dyn BlobStore>, Keep)> = Vec::new();
    let dir = TempDir::new("bridge-ai-blobs");
    let store = ObjectStoreBlobs::open(&format!("file:{}", dir.0.display()), &[]).unwrap();
    out.push(("local directory", Arc::new(store), Keep::Dir(dir)));
    let stub = GcsStub::start("bridge-sessions").await;
    let store = ObjectStoreBlobs::open(
        "gs://bridge-sessions/sessions",
        &opts(&[
            ("google_base_url", &stub.base_url),
            ("google_bearer_token", "t"),
            ("allow_http", "true"),
        ]),
    )
    .unwrap();
    out.push((
        "GCS (stub of the JSON API)",
        Arc::new(store),
        Keep::Gcs(stub),
    ));
    if let Some(moto) = emulators::moto().await {
        let bucket = moto.fresh_bucket().await;
        let store = ObjectStoreBlobs::open(
            &format!("s3://{bucket}/sessions"),
            &opts(&[
                ("aws_endpoint", &moto.endpoint),
                ("aws_allow_http", "true"),
                ("aws_access_key_id", "testing"),
                ("aws_secret_access_key", "testing"),
                ("aws_region", "us-east-1"),
                ("aws_virtual_hosted_style_request", "false"),
            ]),
        )
        .unwrap();
        out.push(("S3 (moto)", Arc::new(store), Keep::None));
    }
    out
}

fn new_session(w: &World) -> NewSession {
    NewSession {
        team_id: w.team,
        user_id: w.user,
        connection_id: Some(w.connection),
        dashboard_id: None,
        purpose: "chat".into(),
        title: Some("Revenue".into()),
        provider: "builtin".into(),
        model: "builtin".into(),
        tools: vec!["list_tables".into()],
    }
}

#[tokio::test]
async fn a_hundred_concurrent_appends_lose_no_message_on_every_backend() {
    let w = world().await;
    for (name, blobs, _keep) in backends().await {
        let sessions = Sessions::new(w.pool.clone(), blobs);
        let s = sessions.create(new_session(&w)).await.unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    sessions
                        .append(s.id, &[Message::user(format!("message {i}"))])
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seqs: Vec<i32> = Vec::new();
        for t in tasks {
            seqs.extend(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=100).collect::<Vec<_>>(),
            "{name}: every append got its own number"
        );
        let m = sessions.get(s.id).await.unwrap();
        assert_eq!(m.message_count, 100, "{name}");
        let page = sessions.history(s.id, 200, None).await.unwrap();
        assert_eq!(page.len(), 100, "{name}: every message was kept");
        let mut texts: Vec<String> = page.iter().map(|m| m.message.text()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 100, "{name}: no message written twice or lost");
        assert!(
            page.windows(2).all(|w| w[0].seq > w[1].seq),
            "{name}: newest first"
        );
    }
}

#[tokio::test]
async fn chunks_rotate_and_history_pages_newest_first_across_them() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs.clone());
    let s = sessions.create(new_session(&w)).await.unwrap();
    // ~2,000 characters each: a chunk holds ~10,000 tokens, so about 20 of them.
    for i in 1..=70 {
        let text = format!("{i:03} {}", "x".repeat(2000));
        sessions.append(s.id, &[Message::user(text)]).await.unwrap();
    }
    let c = w.pool.get().await.unwrap();
    let chunks: i64 = c
        .query_one(
            "SELECT count(*) FROM session_chunks WHERE session_id = $1",
            &[&s.id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(chunks >= 3, "rotated into {chunks} chunks");
    let m = sessions.get(s.id).await.unwrap();
    assert_eq!(
        m.messages_key.as_deref(),
        Some(format!("{}/messages-{chunks:04}.jsonl", s.id).as_str())
    );
    // Page through 15 at a time.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = sessions.history(s.id, 15, cursor).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|m| m.seq);
        seen.extend(page.into_iter().map(|m| m.seq));
    }
    assert_eq!(seen, (1..=70).rev().collect::<Vec<_>>());
    let recent = sessions.recent(s.id, 3).await.unwrap();
    assert_eq!(
        recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![68, 69, 70]
    );
    assert!(recent[2].message.text().starts_with("070 "));
}

#[tokio::test]
async fn lines_never_committed_are_skipped_and_dropped() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs.clone());
    let s = sessions.create(new_session(&w)).await.unwrap();
    sessions
        .append(s.id, &[Message::user("one")])
        .await
        .unwrap();
    // A writer that wrote its line and lost its transaction: seq 2 in the object only.
    let key = format!("{}/messages-0001.jsonl", s.id);
    let blob = blobs.get(&key).await.unwrap();
    let mut bytes = blob.bytes.to_vec();
    bytes.extend_from_slice(
        br#"{"seq":2,"at":"2026-01-01T00:00:00Z","role":"user","content":[{"type":"text","text":"ghost"}]}"#,
    );
    bytes.push(b'\n');
    blobs.put(&key, Bytes::from(bytes)).await.unwrap();
    let page = sessions.history(s.id, 10, None).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.message.text()).collect::<Vec<_>>(),
        vec!["one"]
    );
    sessions
        .append(s.id, &[Message::user("two")])
        .await
        .unwrap();
    let page = sessions.history(s.id, 10, None).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|m| (m.seq, m.message.text()))
            .collect::<Vec<_>>(),
        vec![(2, "two".to_owned()), (1, "one".to_owned())]
    );
    let raw = String::from_utf8(blobs.get(&key).await.unwrap().bytes.to_vec()).unwrap();
    assert!(
        !raw.contains("ghost"),
        "the next append dropped the uncommitted line"
    );
}

#[tokio::test]
async fn deleting_a_session_deletes_its_objects_and_calls() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs.clone());
    let calls = ModelCalls::new(w.pool.clone(), Arc::new(PriceTable::builtin()));
    let s = sessions.create(new_session(&w)).await.unwrap();
    sessions
        .append(s.id, &[Message::user("hello")])
        .await
        .unwrap();
    let ctx = CallContext {
        team_id: w.team,
        session_id: Some(s.id),
        purpose: "chat".into(),
        user_id: None,
        run_id: None,
    };
    calls
        .call(
            &Builtin::default(),
            &Request::new(vec![Message::user("hi")], 64),
            &ctx,
            |_| {},
        )
        .await
        .unwrap();
    sessions.delete(s.id).await.unwrap();
    assert!(matches!(
        sessions.get(s.id).await,
        Err(ai::AiError::NotFound(_))
    ));
    assert!(
        blobs
            .get(&format!("{}/messages-0001.jsonl", s.id))
            .await
            .is_err()
    );
    let c = w.pool.get().await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM model_calls WHERE session_id = $1",
            &[&s.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[derive(Debug)]
struct Fixed {
    provider: &'static str,
    model: &'static str,
    usage: llm::Usage,
}

#[async_trait]
impl Provider for Fixed {
    fn name(&self) -> &'static str {
        self.provider
    }
    fn default_model(&self) -> &str {
        self.model
    }
    async fn stream(&self, _: &Request) -> Result<llm::EventStream, llm::LlmError> {
        use futures::StreamExt;
        let events = vec![
            Ok(llm::Event::TextDelta("ok".into())),
            Ok(llm::Event::Usage(self.usage)),
            Ok(llm::Event::Stop(llm::StopReason::EndTurn)),
        ];
        Ok(futures::stream::iter(events).boxed())
    }
}

#[tokio::test]
async fn model_calls_are_costed_exactly_and_session_totals_match_their_sum() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs);
    let calls = ModelCalls::new(w.pool.clone(), Arc::new(PriceTable::builtin()));
    let s = sessions.create(new_session(&w)).await.unwrap();
    let ctx = CallContext {
        team_id: w.team,
        session_id: Some(s.id),
        purpose: "chat".into(),
        user_id: None,
        run_id: None,
    };
    let usage = llm::Usage {
        input_tokens: 50,
        output_tokens: 87,
        cache_read_tokens: 3400,
        cache_write_tokens: 1200,
    };
    let sonnet = Fixed {
        provider: "anthropic",
        model: "claude-sonnet-4-5-20250929",
        usage,
    };
    let request = Request::new(vec![Message::user("hi")], 64);
    calls.call(&sonnet, &request, &ctx, |_| {}).await.unwrap();
    calls.call(&sonnet, &request, &ctx, |_| {}).await.unwrap();
    let local = Fixed {
        provider: "openai",
        model: "qwen2.5-coder-0.5b",
        usage,
    };
    calls.call(&local, &request, &ctx, |_| {}).await.unwrap();
    // A call that fails is recorded too, with its error.
    let down = llm::openai::OpenAi::new(&unreachable_settings()).unwrap();
    let e = calls
        .call(&down, &request, &ctx, |_| {})
        .await
        .expect_err("unreachable");
    assert!(
        matches!(e, ai::AiError::Llm(llm::LlmError::Connect { .. })),
        "{e:?}"
    );

    let records = calls.for_session(s.id, 10).await.unwrap();
    assert_eq!(records.len(), 4);
    let failed = &records[0];
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .starts_with("llm_unreachable"),
        "{failed:?}"
    );
    let priced: Vec<_> = records
        .iter()
        .filter(|r| r.model.starts_with("claude"))
        .collect();
    assert_eq!(priced.len(), 2);
    for r in &priced {
        assert_eq!(r.cost_usd.as_deref(), Some("0.006975000000"));
        assert_eq!(r.usage.cache_read_tokens, 3400);
        assert_eq!(r.usage.cache_write_tokens, 1200);
        assert!(r.first_token_ms.is_some());
    }
    let unpriced = records
        .iter()
        .find(|r| r.model.starts_with("qwen"))
        .unwrap();
    assert_eq!(unpriced.cost_usd, None, "unknown, not zero");

    let m = sessions.get(s.id).await.unwrap();
    assert_eq!(m.total_cost_usd, "0.013950000000");
    assert_eq!(
        m.unpriced_calls, 1,
        "the local model's call; the failed one is gpt-4o-mini's, priced at 0 tokens"
    );
    assert_eq!(m.input_tokens, 150);
    assert_eq!(m.cache_read_tokens, 3 * 3400);
    assert_eq!(m.total_tokens, 3 * (50 + 87 + 3400 + 1200));
}

fn unreachable_settings() -> settings::LlmSettings {
    let mut s = settings::LlmSettings::openai_compatible("http://127.0.0.1:9/v1", "gpt-4o-mini");
    s.connect_timeout = Duration::from_millis(500);
    s.max_retries = 0;
    s
}

#[tokio::test]
async fn a_rolling_summary_after_fifty_messages() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs);
    let calls = ModelCalls::new(w.pool.clone(), Arc::new(PriceTable::builtin()));
    let s = sessions.create(new_session(&w)).await.unwrap();
    let provider = Builtin::default();
    for i in 0..49 {
        sessions
            .append(
                s.id,
                &[Message::user(format!("step {i}: {}", "y".repeat(40)))],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        sessions
            .summarize_if_due(&calls, &provider, s.id, 50)
            .await
            .unwrap(),
        None
    );
    sessions
        .append(s.id, &[Message::assistant("the 50th")])
        .await
        .unwrap();
    let summary = sessions
        .summarize_if_due(&calls, &provider, s.id, 50)
        .await
        .unwrap()
        .expect("due at 50");
    assert!(!summary.is_empty() && summary.chars().count() < 500);
    let m = sessions.get(s.id).await.unwrap();
    assert_eq!(m.summary.as_deref(), Some(summary.as_str()));
    assert_eq!(m.summary_through, 50);
    let records = calls.for_session(s.id, 5).await.unwrap();
    assert_eq!(records[0].purpose, "session_summary");
    assert_eq!(records[0].provider, "builtin");
    assert_eq!(
        sessions
            .summarize_if_due(&calls, &provider, s.id, 50)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn prompt_blocks_seed_with_versions() {
    let db = TestDb::fresh().await;
    let pool = pool(&db).await;
    let files = prompts::embedded();
    assert!(files.len() >= 3, "the prompts/ files are embedded");
    let first = prompts::seed(&pool, &files).await.unwrap();
    assert_eq!(first.created.len(), files.len());
    let again = prompts::seed(&pool, &files).await.unwrap();
    assert_eq!(
        again.unchanged.len(),
        files.len(),
        "an unchanged file changes nothing"
    );
    let active = prompts::active(&pool).await.unwrap();
    assert_eq!(active[0].name, "system_prompt_dashboard_creation");
    assert!(active.iter().all(|b| b.version == 1));

    // A changed text: a new version, the old one inactive. A removed file: deactivated.
    let (name0, text0) = files[0];
    let changed = text0.replace(
        "You are Bridge's dashboard author.",
        "You are Bridge's author.",
    );
    let edited = vec![(name0, changed.as_str()), files[1]];
    let done = prompts::seed(&pool, &edited).await.unwrap();
    assert_eq!(
        done.updated,
        vec!["system_prompt_dashboard_creation".to_owned()]
    );
    assert_eq!(done.deactivated.len(), files.len() - 2);
    let active = prompts::active(&pool).await.unwrap();
    assert_eq!(active.len(), 2);
    assert_eq!(active[0].version, 2);
    assert!(active[0].content.starts_with("You are Bridge's author."));
    let c = pool.get().await.unwrap();
    let versions: i64 = c
        .query_one(
            "SELECT count(*) FROM prompt_blocks WHERE name = 'system_prompt_dashboard_creation'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 2, "the old version is kept, inactive");
    let bad = prompts::seed(&pool, &[("x.md", "no header")]).await;
    assert!(matches!(
        bad,
        Err(ai::AiError::Invalid {
            field: "prompts",
            ..
        })
    ));
}

/// The cached prefix is byte-identical across the turns of a session and across sessions:
/// the serialized request of turn 1 and turn 5 agree up to the last breakpoint before the
/// history.
#[tokio::test]
async fn the_cached_prefix_is_the_same_bytes_on_turn_one_and_turn_five() {
    let db = TestDb::fresh().await;
    let pool = pool(&db).await;
    prompts::seed(&pool, &prompts::embedded()).await.unwrap();
    let registry = Registry::new(None).register(ListTables).register(Slow);
    let build = |history: Vec<Message>, blocks: &[prompts::Block]| {
        let mut r = Request::new(history, 512);
        r.system = prompts::system_blocks(blocks);
        r.tools = registry.specs();
        r.cache_history = true;
        r
    };
    let blocks_1 = prompts::active(&pool).await.unwrap();
    let turn1 = build(vec![Message::user("first question")], &blocks_1);
    let mut history = vec![Message::user("first question")];
    for i in 0..4 {
        history.push(Message::assistant(format!("answer {i}")));
        history.push(Message::user(format!("question {}", i + 2)));
    }
    // Another process, later: the blocks are read again.
    let blocks_5 = prompts::active(&pool).await.unwrap();
    let turn5 = build(history, &blocks_5);

    let a1 = llm::anthropic::body(&turn1, "claude-sonnet-4-5");
    let a5 = llm::anthropic::body(&turn5, "claude-sonnet-4-5");
    // Anthropic's prefix order: tools, then system. Both identical, byte for byte.
    assert_eq!(a1["tools"].to_string(), a5["tools"].to_string());
    assert_eq!(a1["system"].to_string(), a5["system"].to_string());
    assert_eq!(
        a1["messages"][0]
            .to_string()
            .replace("\"cache_control\":{\"type\":\"ephemeral\"},", ""),
        a5["messages"][0].to_string(),
        "the first message differs only by turn 1's history breakpoint"
    );
    let breakpoints = |v: &Value| v.to_string().matches("cache_control").count();
    assert!(
        breakpoints(&a5) <= llm::anthropic::MAX_BREAKPOINTS,
        "at most four breakpoints"
    );
    assert_eq!(
        breakpoints(&a1),
        breakpoints(&a5),
        "old markers do not pile up in history"
    );
    let last = &a5["messages"][8]["content"][0]["cache_control"];
    assert_eq!(
        last["type"], "ephemeral",
        "the newest message is the last breakpoint"
    );

    let o1 = llm::openai::body(&turn1, "gpt-4o-mini");
    let o5 = llm::openai::body(&turn5, "gpt-4o-mini");
    assert_eq!(o1["messages"][0].to_string(), o5["messages"][0].to_string());
    assert_eq!(o1["messages"][1].to_string(), o5["messages"][1].to_string());
    assert_eq!(o1["tools"].to_string(), o5["tools"].to_string());
}

// --- tools -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListTablesInput {
    /// The dataset (a schema, on Postgres).
    dataset: String,
    /// How many tables at most.
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct TablesOutput {
    tables: Vec<String>,
    calls: u64,
}

static LIST_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct ListTables;

#[async_trait]
impl Tool for ListTables {
    type Input = ListTablesInput;
    type Output = TablesOutput;
    fn name(&self) -> &'static str {
        "list_tables"
    }
    fn description(&self) -> &'static str {
        "Lists the tables of a dataset."
    }
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
    async fn call(
        &self,
        _: &ToolContext,
        input: ListTablesInput,
    ) -> Result<TablesOutput, ToolError> {
        if input.dataset == "missing" {
            return Err(ToolError::NotFound("no dataset `missing`".into()));
        }
        let n = input.limit.unwrap_or(3) as usize;
        let calls = LIST_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let tables = (0..n)
            .map(|i| format!("{}.table_{i:05}", input.dataset))
            .collect();
        Ok(TablesOutput { tables, calls })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SlowInput {}

struct Slow;

#[async_trait]
impl Tool for Slow {
    type Input = SlowInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "slow"
    }
    fn description(&self) -> &'static str {
        "Takes its time."
    }
    async fn call(&self, _: &ToolContext, _: SlowInput) -> Result<Value, ToolError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(json!({}))
    }
}

fn call(name: &str, args: Value) -> ToolCall {
    ToolCall::parse(format!("call_{name}"), name.into(), args.to_string())
}

fn ctx(w: &World, team: Uuid, connection: Uuid) -> ToolContext {
    ToolContext {
        team_id: team,
        user_id: w.user,
        connection_id: Some(connection),
        session_id: None,
        cache_epoch: "scan-1".into(),
        facts: Default::default(),
    }
}

#[tokio::test]
async fn tool_arguments_are_validated_before_the_tool_runs() {
    let w = world().await;
    let registry = Registry::new(None).register(ListTables).register(Slow);
    let spec = &registry.specs()[0];
    assert_eq!(spec.name, "list_tables");
    assert_eq!(spec.input_schema["required"], json!(["dataset"]));
    assert_eq!(spec.input_schema["properties"]["dataset"]["type"], "string");
    assert!(spec.input_schema.get("$schema").is_none());

    let c = ctx(&w, w.team, w.connection);
    let before = LIST_CALLS.load(std::sync::atomic::Ordering::SeqCst);
    let missing = registry.run(&c, &call("list_tables", json!({}))).await;
    assert!(missing.is_error);
    assert!(missing.content.contains("dataset"), "{}", missing.content);
    let wrong = registry
        .run(&c, &call("list_tables", json!({"dataset": 7})))
        .await;
    assert!(
        wrong.is_error && wrong.content.contains("`/dataset`"),
        "{}",
        wrong.content
    );
    let extra = registry
        .run(
            &c,
            &call("list_tables", json!({"dataset": "a", "drop": true})),
        )
        .await;
    assert!(extra.is_error, "unknown fields refused: {}", extra.content);
    let unknown = registry.run(&c, &call("drop_tables", json!({}))).await;
    assert!(
        unknown.is_error && unknown.content.contains("list_tables, slow"),
        "{}",
        unknown.content
    );
    let cut = ToolCall::parse(
        "c".into(),
        "list_tables".into(),
        "{\"dataset\": \"re".into(),
    );
    assert!(registry.run(&c, &cut).await.is_error);
    assert_eq!(
        LIST_CALLS.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "no refused call ran the tool"
    );
    let not_found = registry
        .run(&c, &call("list_tables", json!({"dataset": "missing"})))
        .await;
    assert!(not_found.is_error && not_found.content.contains("no dataset"));
}

#[tokio::test]
async fn results_are_capped_and_slow_tools_stopped() {
    let w = world().await;
    let mut registry = Registry::new(None).register(ListTables).register(Slow);
    registry.max_result_bytes = 2048;
    registry.timeout = Duration::from_millis(200);
    let c = ctx(&w, w.team, w.connection);
    let big = registry
        .run(
            &c,
            &call("list_tables", json!({"dataset": "retail", "limit": 1000})),
        )
        .await;
    assert!(!big.is_error && big.truncated);
    assert!(big.content.len() <= 2048, "{} bytes", big.content.len());
    assert!(big.content.contains("[truncated: the result has"));
    let slow = registry.run(&c, &call("slow", json!({}))).await;
    assert!(
        slow.is_error && slow.content.contains("longer than"),
        "{}",
        slow.content
    );
}

#[tokio::test]
async fn the_tool_cache_is_scoped_by_team_and_connection_and_never_shared() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(1); // GCS stub
    let cache = ToolCache::new(w.pool.clone(), blobs);
    let registry = Registry::new(Some(cache.clone())).register(ListTables);
    let args = json!({"dataset": "retail", "limit": 2});
    let reordered: Value = serde_json::from_str(r#"{"limit": 2, "dataset": "retail"}"#).unwrap();
    let mine = ctx(&w, w.team, w.connection);

    let first = registry
        .run(&mine, &call("list_tables", args.clone()))
        .await;
    assert!(!first.is_error && !first.cached);
    let second = registry.run(&mine, &call("list_tables", reordered)).await;
    assert!(second.cached, "same canonical arguments: a hit");
    assert_eq!(first.content, second.content);

    // Another team, even asking with the first team's connection id, never sees it.
    let (other_team, _, other_connection) = team_with_connection(&w.pool).await;
    let foreign = registry
        .run(
            &ctx(&w, other_team, w.connection),
            &call("list_tables", args.clone()),
        )
        .await;
    assert!(!foreign.cached, "never shared across teams");
    let theirs = registry
        .run(
            &ctx(&w, other_team, other_connection),
            &call("list_tables", args.clone()),
        )
        .await;
    assert!(!theirs.cached);
    // A new scan (epoch) is never answered from the old one's cache.
    let mut rescanned = mine.clone();
    rescanned.cache_epoch = "scan-2".into();
    assert!(
        !registry
            .run(&rescanned, &call("list_tables", args.clone()))
            .await
            .cached
    );

    let stats = cache.stats(w.team).await.unwrap();
    assert_eq!(stats[0].tool_name, "list_tables");
    assert_eq!(stats[0].hits, 1);
    let c = w.pool.get().await.unwrap();
    let foreign_rows: i64 = c
        .query_one(
            "SELECT count(*) FROM tool_cache WHERE team_id = $1 AND connection_id = $2",
            &[&other_team, &w.connection],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        foreign_rows, 0,
        "a result for another team's connection is not stored"
    );

    // Deleting the connection makes its entries unreachable.
    c.execute("DELETE FROM connections WHERE id = $1", &[&w.connection])
        .await
        .unwrap();
    assert!(
        cache
            .get(
                ai::tool_cache::Scope {
                    team_id: w.team,
                    connection_id: w.connection
                },
                &ai::tool_cache::key("list_tables", 1, "scan-1", &args)
            )
            .await
            .unwrap()
            .is_none()
    );
    // Expired entries are reaped with their payloads.
    c.execute(
        "UPDATE tool_cache SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    assert!(cache.reap().await.unwrap() >= 1);
}

#[tokio::test]
async fn artifacts_are_stored_once_per_team() {
    let w = world().await;
    for (name, blobs, _keep) in backends().await {
        let artifacts = Artifacts::new(w.pool.clone(), blobs.clone());
        let yaml = Bytes::from(format!("version: 1\nslug: a-{}\n", Uuid::new_v4()));
        let new = |team| NewArtifact {
            team_id: team,
            session_id: None,
            artifact_type: "yaml",
            mime_type: "application/yaml",
            metadata: json!({"filename": "a.yaml"}),
            content: yaml.clone(),
        };
        let a = artifacts.put(new(w.team)).await.unwrap();
        assert!(!a.deduplicated, "{name}");
        let b = artifacts.put(new(w.team)).await.unwrap();
        assert!(b.deduplicated, "{name}");
        assert_eq!(
            (a.id, b.ref_count),
            (b.id, 2),
            "{name}: one artifact, two references"
        );
        let (got, bytes) = artifacts.get(w.team, a.id).await.unwrap();
        assert_eq!(bytes, yaml);
        assert_eq!(got.content_sha256, base::crypto::sha256_hex(&yaml));
        let (other, _, _) = team_with_connection(&w.pool).await;
        assert!(
            matches!(
                artifacts.get(other, a.id).await,
                Err(ai::AiError::NotFound(_))
            ),
            "{name}"
        );
        let theirs = artifacts.put(new(other)).await.unwrap();
        assert!(
            !theirs.deduplicated && theirs.id != a.id,
            "{name}: nothing shared across teams"
        );
    }
}

#[tokio::test]
async fn the_builtin_provider_drives_tools_end_to_end() {
    let w = world().await;
    let (_, blobs, _keep) = backends().await.remove(0);
    let sessions = Sessions::new(w.pool.clone(), blobs);
    let calls = ModelCalls::new(w.pool.clone(), Arc::new(PriceTable::builtin()));
    #[derive(Debug, Deserialize, JsonSchema)]
    struct NoArgs {}
    struct Datasets;
    #[async_trait]
    impl Tool for Datasets {
        type Input = NoArgs;
        type Output = Value;
        fn name(&self) -> &'static str {
            "list_datasets"
        }
        fn description(&self) -> &'static str {
            "Lists datasets."
        }
        async fn call(&self, _: &ToolContext, _: NoArgs) -> Result<Value, ToolError> {
            Ok(json!({"datasets": ["analytics"]}))
        }
    }
    let registry = Registry::new(None).register(ListTables).register(Datasets);
    let s = sessions.create(new_session(&w)).await.unwrap();
    let provider = Builtin::default();
    let ctx_call = CallContext {
        team_id: w.team,
        session_id: Some(s.id),
        purpose: "chat".into(),
        user_id: None,
        run_id: None,
    };
    let tctx = ctx(&w, w.team, w.connection);
    let mut history = vec![Message::user("What is in my warehouse?")];
    sessions.append(s.id, &history).await.unwrap();
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= 4, "the loop stops");
        let mut r = Request::new(history.clone(), 256);
        r.tools = registry.specs();
        let turn = calls.call(&provider, &r, &ctx_call, |_| {}).await.unwrap();
        let assistant = turn.message();
        let mut results: Vec<Content> = turn.refused_calls();
        for c in turn.runnable_calls() {
            results.push(registry.run(&tctx, c).await.to_content());
        }
        history.push(assistant.clone());
        sessions.append(s.id, &[assistant]).await.unwrap();
        if results.is_empty() {
            break;
        }
        let m = Message {
            role: Role::User,
            content: results,
        };
        history.push(m.clone());
        sessions.append(s.id, &[m]).await.unwrap();
    }
    assert!(
        history.last().unwrap().text().contains("analytics"),
        "{:?}",
        history.last()
    );
    let m = sessions.get(s.id).await.unwrap();
    assert_eq!(m.message_count, 4);
    assert_eq!(
        m.total_cost_usd, "0.000000000000",
        "the builtin model is free, and priced as such"
    );
    assert_eq!(m.unpriced_calls, 0);
    drop(w.db);
}

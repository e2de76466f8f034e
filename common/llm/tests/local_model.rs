//! The OpenAI-compatible adapter against a real model: Qwen2.5-Coder-0.5B served by
//! llama.cpp's server, installed and started by `scripts/test` (`ensure_local_llm`,
//! `start_local_llm` in scripts/lib.sh), which exports `BRIDGE_TEST_LLM_URL` and
//! `BRIDGE_TEST_LLM_MODEL`. With `BRIDGE_REQUIRE_LOCAL_LLM=1` a missing model fails the test;
//! without it the test says loudly that it did not run.
//!
//! A small model's answers are not to be trusted for content: the test asserts structure —
//! a streamed call of the offered tool whose input parses against its schema, then, with the
//! tool's result sent back, an answer that ends in a stop reason.

#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use llm::{Content, Event, Message, Provider, Request, Role, StopReason, SystemBlock, ToolSpec};
use serde_json::json;

fn local_model() -> Option<(String, String)> {
    let url = std::env::var("BRIDGE_TEST_LLM_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let model =
        std::env::var("BRIDGE_TEST_LLM_MODEL").unwrap_or_else(|_| "qwen2.5-coder-0.5b".into());
    match url {
        Some(url) => Some((url, model)),
        None => {
            assert!(
                std::env::var("BRIDGE_REQUIRE_LOCAL_LLM").as_deref() != Ok("1"),
                "BRIDGE_REQUIRE_LOCAL_LLM=1 but BRIDGE_TEST_LLM_URL is not set"
            );
            eprintln!(
                "\n*** the local model is not running: the real-model test did not run. \
                 scripts/test installs and starts it (see its log for why it could not). ***\n"
            );
            None
        }
    }
}

fn settings(url: &str, model: &str) -> settings::LlmSettings {
    let mut s = settings::LlmSettings::openai_compatible(url, model);
    s.first_byte_timeout = Duration::from_secs(120);
    s.idle_timeout = Duration::from_secs(60);
    s.max_retries = 1;
    s.max_tokens = 256;
    s
}

#[tokio::test]
async fn a_streamed_tool_call_round_trip_with_the_local_model() {
    let Some((url, model)) = local_model() else {
        return;
    };
    let provider = llm::openai::OpenAi::new(&settings(&url, &model)).expect("provider");
    let tool = ToolSpec {
        name: "list_tables".into(),
        description: "List the tables of a dataset.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"dataset": {"type": "string", "description": "The dataset's name"}},
            "required": ["dataset"],
        }),
    };
    let mut request = Request::new(
        vec![Message::user("List the tables in dataset retail.")],
        128,
    );
    request.system = vec![SystemBlock {
        text: "You are a data assistant. Use the tools to answer.".into(),
        cache: true,
    }];
    request.tools = vec![tool];
    request.temperature = Some(0.0);
    request.seed = Some(7);

    let started = Instant::now();
    let stream = provider.stream(&request).await.expect("the model answers");
    let mut deltas = 0;
    let turn = llm::collect(stream, started, |e| {
        if matches!(e, Event::ToolCallDelta { .. }) {
            deltas += 1;
        }
    })
    .await
    .expect("a complete turn");
    eprintln!(
        "local model: first event after {:?}, {} tool-call fragments, usage {:?}",
        turn.first_event, deltas, turn.usage
    );
    assert_eq!(turn.stop, StopReason::ToolUse, "{turn:?}");
    let calls = turn.runnable_calls();
    assert_eq!(calls.len(), 1, "{turn:?}");
    assert_eq!(calls[0].name, "list_tables");
    let input = calls[0].input.clone().expect("parsed");
    assert!(
        input["dataset"].is_string(),
        "input follows the schema: {input}"
    );
    assert!(deltas >= 1, "the call arrived streamed");
    assert!(
        turn.usage.output_tokens > 0 && turn.usage.input_tokens + turn.usage.cache_read_tokens > 0
    );

    // Send the result back; the model answers in text.
    let call_id = calls[0].id.clone();
    request.messages.push(turn.message());
    request.messages.push(Message {
        role: Role::User,
        content: vec![Content::ToolResult {
            tool_use_id: call_id,
            content: json!({"tables": ["orders", "customers", "products"]}).to_string(),
            is_error: false,
        }],
    });
    request.tool_choice = llm::ToolChoice::None;
    let started = Instant::now();
    let stream = provider.stream(&request).await.expect("second call");
    let answer = llm::collect(stream, started, |_| {})
        .await
        .expect("an answer");
    assert!(
        matches!(answer.stop, StopReason::EndTurn | StopReason::MaxTokens),
        "{answer:?}"
    );
    assert!(!answer.text.trim().is_empty(), "a text answer");
    assert!(answer.tool_calls.is_empty(), "tool_choice none: no calls");
}

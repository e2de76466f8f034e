//! Anthropic Messages, streamed (`POST {ANTHROPIC_BASE_URL}/v1/messages`,
//! `anthropic-version: 2023-06-01`).
//!
//! The stream: `message_start` (usage: input, cache writes, cache reads), then per content
//! block `content_block_start` / `content_block_delta`* / `content_block_stop`, then
//! `message_delta` (stop reason; its usage is cumulative: it overwrites, never adds) and
//! `message_stop`, the terminal block. `ping` and unknown event types are ignored. An
//! in-band `error` event after the 200 is an error; so is a stream that ends before
//! `message_stop`.
//!
//! Blocks: `text_delta` becomes [`Event::TextDelta`]; a `tool_use` block's `input_json_delta`
//! fragments are accumulated and parsed at its stop (empty meaning `{}`). Thinking blocks
//! (`thinking_delta`, `signature_delta`) are dropped on purpose: Bridge does not ask for
//! extended thinking, so none need to be sent back; redacted and server-tool blocks too.
//!
//! Prompt caching: at most four `cache_control` breakpoints per request. The request is
//! rebuilt from the provider-neutral history on every call, so markers never pile up: one on
//! the last tool (the tools are the start of the prefix), then the last system blocks asking
//! for one, then, with [`Request::cache_history`], the newest message's last block.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_stream::Sse;

use crate::{
    Breaker, Content, Event, EventStream, LlmError, Provider, Request, Role, StopReason, ToolCall,
    ToolChoice, Usage,
    transport::{Decoder, Transport, json},
};

pub const API_VERSION: &str = "2023-06-01";
/// The most `cache_control` breakpoints one request may carry.
pub const MAX_BREAKPOINTS: usize = 4;
const NAME: &str = "anthropic";

#[derive(Debug)]
pub struct Anthropic {
    transport: Transport,
    base_url: String,
    api_key: SecretString,
    model: String,
}

impl Anthropic {
    pub fn new(settings: &settings::LlmSettings) -> Result<Self, LlmError> {
        let api_key = settings
            .anthropic
            .api_key
            .clone()
            .ok_or_else(|| LlmError::Config("ANTHROPIC_API_KEY is not set".into()))?;
        Ok(Self {
            transport: Transport::new(NAME, settings)?,
            base_url: settings.anthropic.base_url.clone(),
            api_key,
            model: settings.anthropic.model.clone(),
        })
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &Request) -> Result<EventStream, LlmError> {
        let body = body(request, &self.model);
        let url = format!("{}/v1/messages", self.base_url);
        let response = self
            .transport
            .open(|| {
                self.transport
                    .client
                    .post(&url)
                    .header("x-api-key", self.api_key.expose_secret())
                    .header("anthropic-version", API_VERSION)
                    .header("accept", "text/event-stream")
                    .json(&body)
            })
            .await?;
        Ok(self.transport.drive(response, StreamDecoder::default()))
    }

    fn breaker(&self) -> Option<&Breaker> {
        Some(&self.transport.breaker)
    }
}

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The request body, as `POST /v1/messages` takes it.
pub fn body(request: &Request, default_model: &str) -> Value {
    let model = if request.model.is_empty() {
        default_model
    } else {
        &request.model
    };
    let mut budget = MAX_BREAKPOINTS;
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
        .collect();
    if let Some(last) = tools.last_mut() {
        last["cache_control"] = ephemeral();
        budget -= 1;
    }
    let history_breakpoint = request.cache_history && !request.messages.is_empty();
    if history_breakpoint {
        budget -= 1;
    }
    // The last `budget` system blocks asking for a breakpoint get one.
    let wanted: Vec<usize> = request
        .system
        .iter()
        .enumerate()
        .filter(|(_, b)| b.cache)
        .map(|(i, _)| i)
        .collect();
    let keep: Vec<usize> = wanted.iter().rev().take(budget).copied().collect();
    let system: Vec<Value> = request
        .system
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut block = json!({"type": "text", "text": b.text});
            if keep.contains(&i) {
                block["cache_control"] = ephemeral();
            }
            block
        })
        .collect();
    let last = request.messages.len().saturating_sub(1);
    let messages: Vec<Value> = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut content: Vec<Value> = m.content.iter().map(content_json).collect();
            if history_breakpoint
                && i == last
                && let Some(block) = content.last_mut()
            {
                block["cache_control"] = ephemeral();
            }
            json!({
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": content,
            })
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Any => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

fn content_json(c: &Content) -> Value {
    match c {
        Content::Text { text } => json!({"type": "text", "text": text}),
        Content::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Content::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut v =
                json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error {
                v["is_error"] = json!(true);
            }
            v
        }
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(rename = "type")]
    kind: String,
    index: Option<usize>,
    message: Option<StartMessage>,
    content_block: Option<BlockStart>,
    delta: Option<Delta>,
    usage: Option<UsageIn>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    usage: Option<UsageIn>,
}

#[derive(Debug, Deserialize)]
struct BlockStart {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UsageIn {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
    Ignored,
}

#[derive(Default)]
pub struct StreamDecoder {
    blocks: HashMap<usize, Block>,
    usage: Usage,
    stop: Option<StopReason>,
}

impl StreamDecoder {
    /// Usage fields present overwrite: `message_delta` carries cumulative counts.
    fn take_usage(&mut self, u: &UsageIn) {
        if let Some(v) = u.input_tokens {
            self.usage.input_tokens = v;
        }
        if let Some(v) = u.output_tokens {
            self.usage.output_tokens = v;
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.usage.cache_write_tokens = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.usage.cache_read_tokens = v;
        }
    }
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "end_turn" | "pause_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

impl Decoder for StreamDecoder {
    fn feed(&mut self, sse: Sse, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let Some(data) = sse.data.as_deref() else {
            return Ok(false);
        };
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Chunk = json(NAME, data)?;
        match chunk.kind.as_str() {
            "message_start" => {
                if let Some(u) = chunk.message.as_ref().and_then(|m| m.usage.as_ref()) {
                    self.take_usage(u);
                }
            }
            "content_block_start" => {
                let index = chunk.index.unwrap_or(0);
                let block = match chunk.content_block {
                    Some(b) if b.kind == "text" => Block::Text,
                    Some(b) if b.kind == "tool_use" => {
                        let id = b.id.unwrap_or_default();
                        let name = b.name.unwrap_or_default();
                        out.push_back(Event::ToolCallStart {
                            index,
                            id: id.clone(),
                            name: name.clone(),
                        });
                        Block::Tool {
                            id,
                            name,
                            json: String::new(),
                        }
                    }
                    _ => Block::Ignored,
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let index = chunk.index.unwrap_or(0);
                let Some(delta) = chunk.delta else {
                    return Ok(false);
                };
                match (self.blocks.get_mut(&index), delta.kind.as_deref()) {
                    (Some(Block::Text), Some("text_delta")) => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            out.push_back(Event::TextDelta(text));
                        }
                    }
                    (Some(Block::Tool { json, .. }), Some("input_json_delta")) => {
                        if let Some(fragment) = delta.partial_json.filter(|f| !f.is_empty()) {
                            json.push_str(&fragment);
                            out.push_back(Event::ToolCallDelta { index, fragment });
                        }
                    }
                    // Thinking, signatures, citations, blocks we ignore: dropped on purpose.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = chunk.index.unwrap_or(0);
                if let Some(Block::Tool { id, name, json }) = self.blocks.remove(&index) {
                    out.push_back(Event::ToolCall {
                        index,
                        call: ToolCall::parse(id, name, json),
                    });
                }
            }
            "message_delta" => {
                if let Some(reason) = chunk.delta.and_then(|d| d.stop_reason) {
                    self.stop = Some(stop_reason(&reason));
                }
                if let Some(u) = &chunk.usage {
                    self.take_usage(u);
                    out.push_back(Event::Usage(self.usage));
                }
            }
            "message_stop" => {
                // A tool block never stopped (cut short): still reported, so the caller can
                // tell the model it was not run.
                let mut open: Vec<_> = self.blocks.drain().collect();
                open.sort_by_key(|(i, _)| *i);
                for (index, block) in open {
                    if let Block::Tool { id, name, json } = block {
                        out.push_back(Event::ToolCall {
                            index,
                            call: ToolCall::parse(id, name, json),
                        });
                    }
                }
                out.push_back(Event::Usage(self.usage));
                out.push_back(Event::Stop(self.stop.take().unwrap_or(StopReason::EndTurn)));
                return Ok(true);
            }
            "error" => {
                let e = chunk.error.unwrap_or(ErrorBody {
                    kind: None,
                    message: None,
                });
                return Err(LlmError::Stream {
                    provider: NAME,
                    kind: e.kind.unwrap_or_else(|| "error".into()),
                    message: crate::truncate(&e.message.unwrap_or_default(), 500),
                });
            }
            // ping, and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    fn truncated(&self) -> LlmError {
        LlmError::Truncated {
            provider: NAME,
            expected: "message_stop",
        }
    }
}

//! OpenAI-compatible Chat Completions, streamed (`POST {OPENAI_BASE_URL}/chat/completions`):
//! OpenAI, vLLM, Ollama, llama.cpp's server.
//!
//! The stream: `data: {chat.completion.chunk}` blocks, `delta.content` pieces and
//! `delta.tool_calls` fragments keyed by `index`, a `finish_reason`, then — with
//! `stream_options.include_usage` — one chunk with `"choices": []` and the usage, and
//! `data: [DONE]`, the terminal block. A stream that ends before `[DONE]` is an error, and so
//! is an `{"error": …}` chunk (vLLM and others send one mid-stream).
//!
//! Tool calls: the first fragment of a call carries its `id` and name, later ones only
//! `arguments` pieces at the same `index`. Ollama sends each call whole in one delta and may
//! reuse index 0 for every call: a fragment whose `id` differs from the call at its index
//! starts a new call. Calls are complete at the `finish_reason`. Servers that finish tool
//! calls with `stop` (Ollama) are read as `tool_calls`.
//!
//! Usage: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; the cached part is
//! taken out so that [`Usage`] counts each token once. Extra fields (llama.cpp's `timings`,
//! `reasoning_content`) are ignored.

use std::collections::VecDeque;

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

const NAME: &str = "openai";

#[derive(Debug)]
pub struct OpenAi {
    transport: Transport,
    base_url: String,
    api_key: Option<SecretString>,
    model: String,
}

impl OpenAi {
    pub fn new(settings: &settings::LlmSettings) -> Result<Self, LlmError> {
        Ok(Self {
            transport: Transport::new(NAME, settings)?,
            base_url: settings.openai.base_url.clone(),
            api_key: settings.openai.api_key.clone(),
            model: settings.openai.model.clone(),
        })
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &Request) -> Result<EventStream, LlmError> {
        let body = body(request, &self.model);
        let url = format!("{}/chat/completions", self.base_url);
        let response = self
            .transport
            .open(|| {
                let mut r = self
                    .transport
                    .client
                    .post(&url)
                    .header("accept", "text/event-stream")
                    .json(&body);
                if let Some(key) = &self.api_key {
                    r = r.bearer_auth(key.expose_secret());
                }
                r
            })
            .await?;
        Ok(self.transport.drive(response, StreamDecoder::default()))
    }

    fn breaker(&self) -> Option<&Breaker> {
        Some(&self.transport.breaker)
    }
}

/// The request body, as `POST /chat/completions` takes it. The system blocks become one
/// system message (joined by blank lines), so that the prefix the server caches is the same
/// bytes on every turn.
pub fn body(request: &Request, default_model: &str) -> Value {
    let model = if request.model.is_empty() {
        default_model
    } else {
        &request.model
    };
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        let text: Vec<&str> = request.system.iter().map(|b| b.text.as_str()).collect();
        messages.push(json!({"role": "system", "content": text.join("\n\n")}));
    }
    for m in &request.messages {
        match m.role {
            Role::Assistant => {
                let text = m.text();
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|c| match c {
                        Content::ToolUse { id, name, input } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { Value::String(text) },
                });
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::User => {
                // Tool results first (they answer the previous assistant message), then text.
                for c in &m.content {
                    if let Content::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } = c
                    {
                        let content = if *is_error {
                            format!("Error: {content}")
                        } else {
                            content.clone()
                        };
                        messages.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}),
                        );
                    }
                }
                let text = m.text();
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema,
                }})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Any => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(seed) = request.seed {
        body["seed"] = json!(seed);
    }
    body
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<UsageIn>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<CallDelta>>,
}

#[derive(Debug, Deserialize)]
struct CallDelta {
    #[serde(default)]
    index: usize,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

struct Slot {
    index: usize,
    id: String,
    name: String,
    arguments: String,
    announced: bool,
}

#[derive(Default)]
pub struct StreamDecoder {
    slots: Vec<Slot>,
    /// Calls numbered in arrival order, for the events' `index` (Ollama reuses 0).
    usage: Option<Usage>,
    finish: Option<String>,
    emitted_calls: bool,
}

impl StreamDecoder {
    fn fragment(&mut self, d: CallDelta, out: &mut VecDeque<Event>) {
        let (name, arguments) = match d.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let id = d.id.filter(|s| !s.is_empty());
        let at = self.slots.iter().rposition(|s| s.index == d.index);
        let new_call = match (at, &id) {
            (None, _) => true,
            (Some(at), Some(id)) => !self.slots[at].id.is_empty() && self.slots[at].id != *id,
            (Some(_), None) => false,
        };
        let at = if new_call {
            self.slots.push(Slot {
                index: d.index,
                id: id.clone().unwrap_or_default(),
                name: String::new(),
                arguments: String::new(),
                announced: false,
            });
            self.slots.len() - 1
        } else {
            at.unwrap_or(0)
        };
        let position = at;
        let slot = &mut self.slots[at];
        if slot.id.is_empty()
            && let Some(id) = id
        {
            slot.id = id;
        }
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            slot.name.push_str(&name);
        }
        if !slot.announced && !slot.name.is_empty() {
            slot.announced = true;
            if slot.id.is_empty() {
                slot.id = format!("call_{position}");
            }
            out.push_back(Event::ToolCallStart {
                index: position,
                id: slot.id.clone(),
                name: slot.name.clone(),
            });
        }
        if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
            slot.arguments.push_str(&fragment);
            out.push_back(Event::ToolCallDelta {
                index: position,
                fragment,
            });
        }
    }

    fn complete_calls(&mut self, out: &mut VecDeque<Event>) {
        for (position, slot) in self.slots.drain(..).enumerate() {
            let id = if slot.id.is_empty() {
                format!("call_{position}")
            } else {
                slot.id
            };
            out.push_back(Event::ToolCall {
                index: position,
                call: ToolCall::parse(id, slot.name, slot.arguments),
            });
            self.emitted_calls = true;
        }
    }
}

impl Decoder for StreamDecoder {
    fn feed(&mut self, sse: Sse, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let Some(data) = sse.data.as_deref() else {
            return Ok(false);
        };
        let data = data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        if data == "[DONE]" {
            self.complete_calls(out);
            if let Some(u) = self.usage {
                out.push_back(Event::Usage(u));
            }
            let stop = match self.finish.take().as_deref() {
                Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
                Some("stop") if self.emitted_calls => StopReason::ToolUse,
                Some("stop") => StopReason::EndTurn,
                Some("length") => StopReason::MaxTokens,
                Some("content_filter") => StopReason::Refusal,
                Some(other) => StopReason::Other(other.to_owned()),
                None if self.emitted_calls => StopReason::ToolUse,
                None => StopReason::EndTurn,
            };
            out.push_back(Event::Stop(stop));
            return Ok(true);
        }
        let chunk: Chunk = json(NAME, data)?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            let kind = error
                .get("type")
                .or_else(|| error.get("code"))
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_else(|| "error".into());
            return Err(LlmError::Stream {
                provider: NAME,
                kind,
                message: crate::truncate(&message, 500),
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(Event::TextDelta(text));
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.fragment(call, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.complete_calls(out);
                self.finish = Some(reason);
            }
        }
        if let Some(u) = chunk.usage {
            let cached = u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(u.prompt_tokens);
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens - cached,
                output_tokens: u.completion_tokens,
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            });
        }
        Ok(false)
    }

    fn truncated(&self) -> LlmError {
        LlmError::Truncated {
            provider: NAME,
            expected: "data: [DONE]",
        }
    }
}

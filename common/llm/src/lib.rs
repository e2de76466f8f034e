//! `llm`: the LLM provider port. A [`Provider`] takes one provider-neutral [`Request`] and
//! answers one stream of [`Event`]s: text deltas, tool calls (announced, their argument
//! fragments, then complete with parsed JSON input), usage, and exactly one [`Event::Stop`]
//! last — or an [`LlmError`], after which the stream ends. Dropping the stream cancels the
//! call (the connection closes with it).
//!
//! Adapters speak each documented wire format directly over `reqwest`, with a WHATWG SSE
//! parser (`sse-stream`):
//! - [`anthropic`]: Anthropic Messages (`anthropic-version: 2023-06-01`), tools, prompt
//!   caching with at most four `cache_control` breakpoints per request;
//! - [`openai`]: OpenAI-compatible Chat Completions (OpenAI, vLLM, Ollama, llama.cpp);
//! - [`builtin`]: deterministic, offline, no key: the default when no provider is configured.
//!
//! Every network adapter shares [`transport`]: retries with backoff and jitter on 429, 529,
//! 5xx and connection failures before the first byte (honouring `retry-after`), an idle
//! timeout between chunks, and a circuit breaker per provider ([`breaker`]). [`prices`] turns
//! usage into dollars from a price table kept as data.

use std::{fmt, pin::Pin, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod anthropic;
pub mod breaker;
pub mod builtin;
pub mod openai;
pub mod prices;
pub mod telemetry;
pub mod transport;

pub use breaker::{Breaker, BreakerState};
pub use prices::{Cost, PriceTable};

/// Who said a message. System text is not a message: it is [`Request::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        text: String,
    },
    /// A tool call the assistant made.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// What a tool answered, sent back in a user message.
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Content>,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![Content::Text { text: text.into() }],
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![Content::Text { text: text.into() }],
        }
    }

    /// The message's text parts, joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A block of system text. `cache` marks a prompt-cache breakpoint after it: everything up
/// to and including this block is the cacheable prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemBlock {
    pub text: String,
    #[serde(default)]
    pub cache: bool,
}

/// A tool offered to the model: its name, what it does, and its input's JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call (Anthropic `any`, OpenAI `required`).
    Any,
    /// This tool.
    Tool(String),
}

/// One model call, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The provider's model name; empty means the provider's configured default.
    #[serde(default)]
    pub model: String,
    pub system: Vec<SystemBlock>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub tool_choice: ToolChoice,
    pub max_tokens: u32,
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Sampling seed, where the provider takes one (OpenAI-compatible servers).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Also mark the newest message as a cache breakpoint, so that the next turn reads the
    /// whole conversation so far from the prompt cache.
    #[serde(default)]
    pub cache_history: bool,
}

impl Request {
    pub fn new(messages: Vec<Message>, max_tokens: u32) -> Self {
        Self {
            model: String::new(),
            system: Vec::new(),
            messages,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            max_tokens,
            temperature: None,
            seed: None,
            cache_history: false,
        }
    }
}

/// Tokens of one call. `input_tokens` counts only input that was neither read from nor
/// written to the prompt cache, so the four fields add up to what was billed, once each
/// (OpenAI's `prompt_tokens` includes its `cached_tokens`: the adapter takes them out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

impl Usage {
    /// All input, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }

    pub fn total(&self) -> u64 {
        self.total_input() + self.output_tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// The model wants its tool calls run.
    ToolUse,
    /// Cut off by `max_tokens` (OpenAI: `length`). Any tool call in this answer may be cut
    /// too: it must not be run.
    MaxTokens,
    StopSequence,
    /// The provider refused (Anthropic `refusal`, OpenAI `content_filter`).
    Refusal,
    Other(String),
}

/// A complete tool call. `input` is `None` when `arguments` is not a JSON object (a call cut
/// off mid-way, or a model that wrote something else): such a call is never run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them.
    pub arguments: String,
    pub input: Option<Value>,
}

impl ToolCall {
    /// Parses `arguments`: empty means `{}`; anything but a JSON object is `None`.
    pub fn parse(id: String, name: String, arguments: String) -> Self {
        let input = if arguments.trim().is_empty() {
            Some(Value::Object(Default::default()))
        } else {
            serde_json::from_str::<Value>(&arguments)
                .ok()
                .filter(Value::is_object)
        };
        Self {
            id,
            name,
            arguments,
            input,
        }
    }
}

/// What a provider stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    TextDelta(String),
    /// A tool call began (its id and name are known).
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallDelta {
        index: usize,
        fragment: String,
    },
    /// A tool call is complete; `call.input` is its parsed input.
    ToolCall {
        index: usize,
        call: ToolCall,
    },
    /// Usage so far (the last one of a stream is the call's total).
    Usage(Usage),
    /// The end of the answer: always the last event of a stream that did not fail.
    Stop(StopReason),
}

/// Why a call failed. Messages never carry a key or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The provider answered an HTTP error (after any retries).
    #[error("{provider} answered HTTP {status}: {message}")]
    Http {
        provider: &'static str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// An error event inside a stream that had begun (Anthropic `event: error`, an
    /// OpenAI-compatible `{"error": …}` chunk).
    #[error("{provider} stream error ({kind}): {message}")]
    Stream {
        provider: &'static str,
        kind: String,
        message: String,
    },
    /// The stream ended before its terminal event (`message_stop`, `data: [DONE]`).
    #[error("{provider} stream ended before its end (no {expected})")]
    Truncated {
        provider: &'static str,
        expected: &'static str,
    },
    /// No chunk arrived within the idle timeout.
    #[error("{provider} stream stalled: nothing for {0:?}", .idle)]
    Idle {
        provider: &'static str,
        idle: Duration,
    },
    /// The connection failed or timed out (after any retries).
    #[error("{provider} could not be reached: {message}")]
    Connect {
        provider: &'static str,
        message: String,
    },
    /// A chunk that does not parse as its documented shape.
    #[error("{provider} sent an unreadable chunk: {message}")]
    Decode {
        provider: &'static str,
        message: String,
    },
    /// The provider's circuit is open after repeated failures.
    #[error("{provider} is failing; calls resume in {retry_in:?}")]
    CircuitOpen {
        provider: &'static str,
        retry_in: Duration,
    },
    /// The request cannot be sent as asked (for instance no API key configured).
    #[error("{0}")]
    Config(String),
}

impl LlmError {
    /// Was the failure the provider's (counted by the circuit breaker)? A request the caller
    /// got wrong (4xx other than 408/429) is not.
    pub fn is_provider_failure(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            LlmError::Config(_) | LlmError::CircuitOpen { .. } => false,
            _ => true,
        }
    }

    /// A stable code for logs and for clients.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Http { status: 429, .. } => "llm_rate_limited",
            LlmError::Http { status, .. } if *status >= 500 => "llm_unavailable",
            LlmError::Http { .. } => "llm_rejected",
            LlmError::Stream { .. } => "llm_stream_error",
            LlmError::Truncated { .. } => "llm_truncated",
            LlmError::Idle { .. } => "llm_stalled",
            LlmError::Connect { .. } => "llm_unreachable",
            LlmError::Decode { .. } => "llm_bad_chunk",
            LlmError::CircuitOpen { .. } => "llm_circuit_open",
            LlmError::Config(_) => "llm_not_configured",
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, LlmError>> + Send>>;

/// The provider port.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// `anthropic`, `openai`, `builtin`: what `model_calls.provider` records.
    fn name(&self) -> &'static str;
    /// The model used when a request names none.
    fn default_model(&self) -> &str;
    /// Starts a call. Errors before the first event (refused, unreachable, circuit open)
    /// come here; errors after it come in the stream.
    async fn stream(&self, request: &Request) -> Result<EventStream, LlmError>;
    /// The circuit breaker's state, for health and metrics.
    fn breaker(&self) -> Option<&Breaker> {
        None
    }
}

pub type DynProvider = Arc<dyn Provider>;

/// One answer, collected from a stream: the assistant message to keep in history, the tool
/// calls to run, usage, and timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub stop: StopReason,
    /// From the start of the call to its first event.
    pub first_event: Option<Duration>,
}

impl Turn {
    /// The assistant message for the history: its text, then its tool calls. A call whose
    /// input did not parse is kept with `{}` and is never run.
    pub fn message(&self) -> Message {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(Content::Text {
                text: self.text.clone(),
            });
        }
        for call in &self.tool_calls {
            content.push(Content::ToolUse {
                id: call.id.clone(),
                name: call.name.clone(),
                input: call
                    .input
                    .clone()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            });
        }
        Message {
            role: Role::Assistant,
            content,
        }
    }

    /// The calls that may run: none when the answer was cut off (`max_tokens`), else those
    /// whose input parsed.
    pub fn runnable_calls(&self) -> Vec<&ToolCall> {
        if self.stop == StopReason::MaxTokens {
            return Vec::new();
        }
        self.tool_calls
            .iter()
            .filter(|c| c.input.is_some())
            .collect()
    }

    /// The results to send back for calls that will not run, telling the model why.
    pub fn refused_calls(&self) -> Vec<Content> {
        let cut = self.stop == StopReason::MaxTokens;
        self.tool_calls
            .iter()
            .filter(|c| cut || c.input.is_none())
            .map(|c| Content::ToolResult {
                tool_use_id: c.id.clone(),
                content: if cut {
                    "Not run: your answer was cut off by the output token limit, so this call's \
                     arguments may be incomplete. Make the call again, with shorter arguments."
                        .to_owned()
                } else {
                    format!(
                        "Not run: the arguments are not a JSON object: {}",
                        truncate(&c.arguments, 200)
                    )
                },
                is_error: true,
            })
            .collect()
    }
}

/// Reads a stream to its end. `on_event` sees every event as it arrives (to relay deltas).
pub async fn collect(
    mut stream: EventStream,
    started: std::time::Instant,
    mut on_event: impl FnMut(&Event),
) -> Result<Turn, LlmError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut usage = Usage::default();
    let mut first_event = None;
    while let Some(event) = stream.next().await {
        let event = event?;
        if first_event.is_none() {
            first_event = Some(started.elapsed());
        }
        on_event(&event);
        match event {
            Event::TextDelta(t) => text.push_str(&t),
            Event::ToolCall { call, .. } => tool_calls.push(call),
            Event::Usage(u) => usage = u,
            Event::Stop(stop) => {
                return Ok(Turn {
                    text,
                    tool_calls,
                    usage,
                    stop,
                    first_event,
                });
            }
            Event::ToolCallStart { .. } | Event::ToolCallDelta { .. } => {}
        }
    }
    Err(LlmError::Truncated {
        provider: "stream",
        expected: "stop event",
    })
}

/// At most `max` bytes of `s`, cut on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Builds the configured provider from settings.
pub fn from_settings(settings: &settings::LlmSettings) -> Result<DynProvider, LlmError> {
    use settings::LlmProviderKind;
    Ok(match settings.provider {
        LlmProviderKind::Anthropic => Arc::new(anthropic::Anthropic::new(settings)?),
        LlmProviderKind::OpenAi => Arc::new(openai::OpenAi::new(settings)?),
        LlmProviderKind::Builtin => Arc::new(builtin::Builtin::default()),
    })
}

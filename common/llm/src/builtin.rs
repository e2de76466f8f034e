//! `builtin`: a deterministic provider that needs no key and no network, the default when
//! no provider key is configured, so that `scripts/run` works offline end to end.
//!
//! What it answers comes from a [`Planner`]: given the whole request (system, history,
//! tools), the next reply — text, tool calls, or both. The answer is streamed like a real
//! model's (text in word-sized deltas, each tool call announced, its arguments in fragments,
//! then usage and a stop reason), so everything downstream runs the same code paths. Usage
//! is estimated at four characters a token; its cost is zero because nothing is billed
//! (the price table lists `builtin` at 0).
//!
//! The default planner, [`FirstTool`], calls the first offered tool that needs no arguments
//! when the conversation has not called one yet, then answers with what the tools returned.
//! The dashboard agent gives it a real plan (its own planner).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;

use crate::{
    Content, Event, EventStream, LlmError, Provider, Request, Role, StopReason, ToolCall, Usage,
};

/// The next reply of a deterministic model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub text: String,
    /// Tool name and input.
    pub tool_calls: Vec<(String, Value)>,
}

pub trait Planner: Send + Sync + fmt::Debug {
    fn reply(&self, request: &Request) -> Reply;
}

#[derive(Debug, Clone)]
pub struct Builtin {
    planner: Arc<dyn Planner>,
}

impl Default for Builtin {
    fn default() -> Self {
        Self::new(Arc::new(FirstTool))
    }
}

impl Builtin {
    pub fn new(planner: Arc<dyn Planner>) -> Self {
        Self { planner }
    }
}

pub const MODEL: &str = "builtin";

#[async_trait]
impl Provider for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn default_model(&self) -> &str {
        MODEL
    }

    async fn stream(&self, request: &Request) -> Result<EventStream, LlmError> {
        let reply = self.planner.reply(request);
        Ok(futures::stream::iter(events(request, reply).into_iter().map(Ok)).boxed())
    }
}

fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The events a real model would stream for `reply`, cut at `max_tokens` like one.
pub fn events(request: &Request, reply: Reply) -> Vec<Event> {
    let mut out = Vec::new();
    let budget = request.max_tokens as usize * 4;
    let mut written = 0usize;
    let mut cut = false;
    for piece in reply.text.split_inclusive(' ') {
        if written + piece.len() > budget {
            cut = true;
            break;
        }
        written += piece.len();
        out.push(Event::TextDelta(piece.to_owned()));
    }
    let called = !reply.tool_calls.is_empty() && !cut;
    if !cut {
        let seen = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|c| matches!(c, Content::ToolUse { .. }))
            .count();
        for (index, (name, input)) in reply.tool_calls.into_iter().enumerate() {
            let id = format!("builtin_{:04}", seen + index + 1);
            let arguments = input.to_string();
            out.push(Event::ToolCallStart {
                index,
                id: id.clone(),
                name: name.clone(),
            });
            out.push(Event::ToolCallDelta {
                index,
                fragment: arguments.clone(),
            });
            written += arguments.len();
            out.push(Event::ToolCall {
                index,
                call: ToolCall::parse(id, name, arguments),
            });
        }
    }
    let input_chars: usize = request.system.iter().map(|b| b.text.len()).sum::<usize>()
        + request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .map(|c| match c {
                Content::Text { text } => text.len(),
                Content::ToolUse { input, .. } => input.to_string().len(),
                Content::ToolResult { content, .. } => content.len(),
            })
            .sum::<usize>();
    out.push(Event::Usage(Usage {
        input_tokens: estimate_tokens(input_chars),
        output_tokens: estimate_tokens(written),
        cache_read_tokens: 0,
        cache_write_tokens: 0,
    }));
    out.push(Event::Stop(if cut {
        StopReason::MaxTokens
    } else if called {
        StopReason::ToolUse
    } else {
        StopReason::EndTurn
    }));
    out
}

/// Calls the first offered tool that needs no arguments, once; then answers with what the
/// tools returned (or echoes the question when there is nothing to call).
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstTool;

impl Planner for FirstTool {
    fn reply(&self, request: &Request) -> Reply {
        let results: Vec<&str> = request
            .messages
            .last()
            .filter(|m| m.role == Role::User)
            .map(|m| {
                m.content
                    .iter()
                    .filter_map(|c| match c {
                        Content::ToolResult { content, .. } => Some(content.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !results.is_empty() {
            let shown: Vec<String> = results.iter().map(|r| crate::truncate(r, 300)).collect();
            return Reply {
                text: format!("The tools returned: {}", shown.join(" | ")),
                tool_calls: Vec::new(),
            };
        }
        let called_before = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|c| matches!(c, Content::ToolUse { .. }));
        let free_tool = request.tools.iter().find(|t| {
            t.input_schema
                .get("required")
                .and_then(Value::as_array)
                .is_none_or(|r| r.is_empty())
        });
        if !called_before
            && request.tool_choice != crate::ToolChoice::None
            && let Some(tool) = free_tool
        {
            return Reply {
                text: format!("Let me call {}.", tool.name),
                tool_calls: vec![(tool.name.clone(), Value::Object(Default::default()))],
            };
        }
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User && !m.text().is_empty())
            .map(|m| m.text())
            .unwrap_or_default();
        Reply {
            text: format!(
                "I am Bridge's builtin model: I answer without a language model. You said: {}",
                crate::truncate(&question, 300)
            ),
            tool_calls: Vec::new(),
        }
    }
}

//! `ai`: the AI SDK Bridge's chat and dashboard agent are built on (the spec's "Universal AI
//! SDK", phase 2.12). It has no HTTP routes of its own.
//!
//! - [`sessions`]: a conversation's manifest in Postgres (`session_manifests`, with pointers,
//!   counters and costs) and its messages as JSONL chunks in the sessions bucket, appended by
//!   one writer at a time (a row lock) behind conditional puts, paged newest first, with a
//!   rolling summary;
//! - [`calls`]: every provider call recorded in `model_calls` — tokens, cache reads and writes
//!   apart, latency to first token, purpose, error, cost from the price table — with the
//!   session's totals updated in the same transaction;
//! - [`prompts`]: the prompt blocks of `prompts/`, seeded with versions into `prompt_blocks`
//!   and placed first in every request in a stable order, so the cached prefix is the same
//!   bytes every turn;
//! - [`tools`]: tools as typed Rust (input struct → JSON Schema by `schemars`), arguments
//!   validated before they run, results capped; [`tool_cache`]: their results by SHA-256 of
//!   name and canonical arguments, scoped by team and connection;
//! - [`artifacts`]: content-addressed objects, stored once per team.

pub mod artifacts;
pub mod calls;
pub mod prompts;
pub mod sessions;
pub mod telemetry;
pub mod tool_cache;
pub mod tools;

use platform::blob::BlobError;

/// What the SDK's operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input the caller got wrong: the field and why.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("object storage: {0}")]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Llm(#[from] llm::LlmError),
    #[error("{0}")]
    Internal(String),
}

impl AiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

pub type Result<T, E = AiError> = std::result::Result<T, E>;

/// JSON with object keys sorted at every depth and no insignificant whitespace: the same
/// value always gives the same bytes, whatever order its keys arrived in.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&map[*k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}}"#)
                .expect("json");
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, {"c": 3, "d": 2}]}, "b": 1}"#)
                .expect("json");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }
}

//! The tool registry: tools as typed Rust. A tool names an input struct (its JSON Schema made
//! by `schemars`, listed to providers in their own formats by the adapters) and an output
//! (`serde`). Before a tool runs, the model's arguments are validated against the schema,
//! and a refusal names the path and the problem, so the model can correct itself. Results
//! are capped in size (cut with a note saying so), and a tool may run at most its time limit.
//! Tools that declare a TTL have their results cached ([`crate::tool_cache`]) per team and
//! connection.
//!
//! Tenancy is the tool's own business: the [`ToolContext`] says who asks (team, user,
//! connection), and a tool reaching another team's object answers "not found", as the
//! routes do.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use llm::{ToolCall, ToolSpec};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

use crate::tool_cache::{self, Scope, ToolCache};

/// Who is asking, for tenancy and for the cache's scope.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub connection_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// What else makes cached results (for catalog tools: the connection's last scan), so
    /// that a new scan is never answered from an old one's cache.
    pub cache_epoch: String,
    /// What earlier calls of the same run established (which SQL was dry-run, which YAML
    /// validated), for the checks of later ones. A fresh one for each run.
    pub facts: Arc<RunFacts>,
}

/// Facts one run's tools established, and the quantities they used (warehouse bytes…), for
/// the tools that come after them in the same run and for the run's totals. Guarantees such
/// as "nothing is saved that was not dry-run in this run" are checked against it by code,
/// not asked of the model.
#[derive(Debug, Default)]
pub struct RunFacts(std::sync::Mutex<FactsInner>);

#[derive(Debug, Default)]
struct FactsInner {
    facts: std::collections::HashSet<String>,
    totals: BTreeMap<&'static str, u64>,
    values: BTreeMap<&'static str, String>,
}

impl RunFacts {
    fn inner(&self) -> std::sync::MutexGuard<'_, FactsInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Records that `fact` holds for the rest of the run.
    pub fn record(&self, fact: impl Into<String>) {
        self.inner().facts.insert(fact.into());
    }
    pub fn holds(&self, fact: &str) -> bool {
        self.inner().facts.contains(fact)
    }
    /// Adds `n` to the run's total of `what`.
    pub fn add(&self, what: &'static str, n: u64) {
        let mut inner = self.inner();
        let t = inner.totals.entry(what).or_default();
        *t = t.saturating_add(n);
    }
    pub fn total(&self, what: &'static str) -> u64 {
        self.inner().totals.get(what).copied().unwrap_or(0)
    }
    /// Sets a named value of the run (what was asked of it, what it produced).
    pub fn set(&self, what: &'static str, value: impl Into<String>) {
        self.inner().values.insert(what, value.into());
    }
    pub fn get(&self, what: &'static str) -> Option<String> {
        self.inner().values.get(what).cloned()
    }
}

/// Why a tool did not answer; the message goes to the model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong in a way the model can fix.
    #[error("{0}")]
    Invalid(String),
    /// What was asked for does not exist (or belongs to another team).
    #[error("{0}")]
    NotFound(String),
    /// The tool failed; the message must be safe to show the model.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Tool: Send + Sync + 'static {
    type Input: DeserializeOwned + JsonSchema + Send;
    type Output: Serialize + Send;

    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// Cache results this long, per team and connection; `None`: never.
    fn cache_ttl(&self) -> Option<Duration> {
        None
    }
    /// Part of the cache key: raise it when the output's shape or meaning changes.
    fn version(&self) -> i32 {
        1
    }
    async fn call(&self, ctx: &ToolContext, input: Self::Input) -> Result<Self::Output, ToolError>;
}

/// The JSON Schema of a tool's input, inlined (no `$ref`s), without `$schema` and `title`.
pub fn input_schema<T: JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(map) = value.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
        map.entry("properties")
            .or_insert_with(|| Value::Object(Default::default()));
    }
    value
}

#[async_trait]
trait Erased: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    fn validator(&self) -> &jsonschema::Validator;
    fn cache_ttl(&self) -> Option<Duration>;
    fn version(&self) -> i32;
    async fn invoke(&self, ctx: &ToolContext, input: Value) -> Result<Value, ToolError>;
}

struct Typed<T: Tool> {
    tool: T,
    spec: ToolSpec,
    validator: jsonschema::Validator,
}

#[async_trait]
impl<T: Tool> Erased for Typed<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    fn validator(&self) -> &jsonschema::Validator {
        &self.validator
    }
    fn cache_ttl(&self) -> Option<Duration> {
        self.tool.cache_ttl()
    }
    fn version(&self) -> i32 {
        self.tool.version()
    }
    async fn invoke(&self, ctx: &ToolContext, input: Value) -> Result<Value, ToolError> {
        let input: T::Input = serde_json::from_value(input)
            .map_err(|e| ToolError::Invalid(format!("the arguments do not fit: {e}")))?;
        let span = tracing::info_span!("tool.call", tool = %self.spec.name);
        let output = tracing::Instrument::instrument(self.tool.call(ctx, input), span).await?;
        serde_json::to_value(output)
            .map_err(|e| ToolError::Failed(format!("the result could not be written: {e}")))
    }
}

/// What running a call gave: the text for the model's tool result, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolOutcome {
    pub tool_use_id: String,
    pub name: String,
    /// The result as JSON text (or the error), capped.
    pub content: String,
    pub is_error: bool,
    pub cached: bool,
    pub truncated: bool,
    pub duration_ms: u64,
}

impl ToolOutcome {
    pub fn to_content(&self) -> llm::Content {
        llm::Content::ToolResult {
            tool_use_id: self.tool_use_id.clone(),
            content: self.content.clone(),
            is_error: self.is_error,
        }
    }
}

/// The tools one agent may use, by name.
#[derive(Clone)]
pub struct Registry {
    tools: BTreeMap<&'static str, Arc<dyn Erased>>,
    cache: Option<ToolCache>,
    /// The most bytes of a result the model sees.
    pub max_result_bytes: usize,
    /// The most time one call may take.
    pub timeout: Duration,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

/// The default cap on a result the model sees.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024;
/// Results above this are not cached.
pub const MAX_CACHED_BYTES: usize = 1024 * 1024;

impl Registry {
    pub fn new(cache: Option<ToolCache>) -> Self {
        Self {
            tools: BTreeMap::new(),
            cache,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds a tool. Panics on a duplicate name or a schema that does not compile: both are
    /// programming errors, found by the first test that builds the registry.
    pub fn register<T: Tool>(mut self, tool: T) -> Self {
        let schema = input_schema::<T::Input>();
        #[allow(clippy::expect_used)]
        let validator = jsonschema::validator_for(&schema).expect("a tool's input schema compiles");
        let spec = ToolSpec {
            name: tool.name().to_owned(),
            description: tool.description().to_owned(),
            input_schema: schema,
        };
        let name = tool.name();
        let previous = self.tools.insert(
            name,
            Arc::new(Typed {
                tool,
                spec,
                validator,
            }),
        );
        assert!(previous.is_none(), "two tools are named `{name}`");
        self
    }

    /// The tools' specs, by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec().clone()).collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.tools.keys().copied().collect()
    }

    fn error(&self, call: &ToolCall, message: String, started: std::time::Instant) -> ToolOutcome {
        ToolOutcome {
            tool_use_id: call.id.clone(),
            name: call.name.clone(),
            content: llm::truncate(&message, self.max_result_bytes),
            is_error: true,
            cached: false,
            truncated: false,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Runs one call: checks the tool and its arguments, answers from the cache or runs the
    /// tool within its time limit, and caps the result.
    pub async fn run(&self, ctx: &ToolContext, call: &ToolCall) -> ToolOutcome {
        let started = std::time::Instant::now();
        let Some(tool) = self.tools.get(call.name.as_str()) else {
            let known = self.names().join(", ");
            return self.error(
                call,
                format!(
                    "There is no tool `{}`. The tools are: {known}.",
                    llm::truncate(&call.name, 80)
                ),
                started,
            );
        };
        let Some(input) = call.input.clone() else {
            return self.error(
                call,
                format!(
                    "The arguments are not a JSON object: {}",
                    llm::truncate(&call.arguments, 200)
                ),
                started,
            );
        };
        let problems: Vec<String> = tool
            .validator()
            .iter_errors(&input)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() {
                    "the arguments".to_owned()
                } else {
                    format!("`{at}`")
                };
                format!("{at}: {e}")
            })
            .collect();
        if !problems.is_empty() {
            return self.error(
                call,
                format!(
                    "The arguments do not match the tool's schema: {}. The schema: {}",
                    problems.join("; "),
                    llm::truncate(&tool.spec().input_schema.to_string(), 1500)
                ),
                started,
            );
        }
        let cache = match (tool.cache_ttl(), ctx.connection_id, &self.cache) {
            (Some(ttl), Some(connection_id), Some(cache)) => Some((
                cache,
                ttl,
                Scope {
                    team_id: ctx.team_id,
                    connection_id,
                },
                tool_cache::key(&call.name, tool.version(), &ctx.cache_epoch, &input),
            )),
            _ => None,
        };
        if let Some((cache, _, scope, key)) = &cache {
            match cache.get(*scope, key).await {
                Ok(Some(bytes)) => {
                    return self.finish(
                        call,
                        String::from_utf8_lossy(&bytes).into_owned(),
                        true,
                        started,
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tool = %call.name, error = %e, "tool cache unavailable; running the tool")
                }
            }
        }
        let result = match tokio::time::timeout(self.timeout, tool.invoke(ctx, input)).await {
            Err(_) => Err(ToolError::Failed(format!(
                "The tool took longer than {} s and was stopped.",
                self.timeout.as_secs()
            ))),
            Ok(r) => r,
        };
        match result {
            Ok(value) => {
                let text = value.to_string();
                if let Some((cache, ttl, scope, key)) = &cache
                    && text.len() <= MAX_CACHED_BYTES
                    && let Err(e) = cache
                        .put(
                            *scope,
                            &call.name,
                            tool.version(),
                            key,
                            Bytes::from(text.clone()),
                            *ttl,
                        )
                        .await
                {
                    tracing::warn!(tool = %call.name, error = %e, "a tool result could not be cached");
                }
                self.finish(call, text, false, started)
            }
            Err(e) => self.error(call, e.to_string(), started),
        }
    }

    fn finish(
        &self,
        call: &ToolCall,
        text: String,
        cached: bool,
        started: std::time::Instant,
    ) -> ToolOutcome {
        let (content, truncated) = cap(text, self.max_result_bytes);
        ToolOutcome {
            tool_use_id: call.id.clone(),
            name: call.name.clone(),
            content,
            is_error: false,
            cached,
            truncated,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// At most `max` bytes of a result, cut on a character boundary with a note saying how much
/// was left out.
pub fn cap(text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let note_room = 120;
    let mut end = max.saturating_sub(note_room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let total = text.len();
    let mut out = text;
    out.truncate(end);
    out.push_str(&format!(
        "\n[truncated: the result has {total} bytes; the first {end} are shown. Ask for less (a filter, a limit).]"
    ));
    (out, true)
}

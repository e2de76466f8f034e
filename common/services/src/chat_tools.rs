//! The catalog tools chat offers a model (and the builtin planner that calls them without
//! one): which datasets a connection has, which tables a dataset holds, what columns a table
//! has. Each answers through [`Catalog`] as the caller, so a tool call obeys the same
//! tenancy as the routes: another team's connection is "not found".

use std::{sync::Arc, time::Duration};

use ai::tools::{Tool, ToolContext, ToolError};
use async_trait::async_trait;
use edge::{ApiError, CurrentUser, pagination::Page};
use llm::{Content, Request, Role, builtin::Planner, builtin::Reply};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::{Catalog, NameCursor};

/// The names of the catalog tools.
pub const CATALOG_TOOLS: [&str; 3] = ["list_datasets", "list_tables", "get_table_schema"];

fn user(ctx: &ToolContext) -> CurrentUser {
    CurrentUser {
        id: ctx.user_id,
        email: None,
    }
}

fn connection(ctx: &ToolContext) -> Result<uuid::Uuid, ToolError> {
    ctx.connection_id.ok_or_else(|| {
        ToolError::Invalid(
            "This session has no connection: start one with a connection_id to explore a warehouse."
                .into(),
        )
    })
}

fn failed(e: ApiError) -> ToolError {
    let p = e.to_problem();
    if p.status == 404 {
        ToolError::NotFound(p.detail)
    } else if p.status < 500 {
        ToolError::Invalid(p.detail)
    } else {
        ToolError::Failed("The catalog could not be read just now.".into())
    }
}

const MAX_LISTED: u32 = 200;

/// The real names nearest to `wanted` (edit distance, case-insensitive), best first, for a
/// "not found" that helps the model repair the name.
pub fn nearest<'a>(
    wanted: &str,
    names: impl IntoIterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let wanted = wanted.to_lowercase();
    let mut scored: Vec<(f64, &str)> = names
        .into_iter()
        .map(|name| {
            let lower = name.to_lowercase();
            let mut score = strsim::normalized_damerau_levenshtein(&wanted, &lower);
            if lower.contains(&wanted) || wanted.contains(&lower) {
                score = score.max(0.6);
            }
            (score, name)
        })
        .filter(|(score, _)| *score >= 0.34)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// ` Nearest names: a, b.` (or nothing).
pub fn nearest_note<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let near = nearest(wanted, names, 3);
    if near.is_empty() {
        String::new()
    } else {
        format!(" The nearest names: {}.", near.join(", "))
    }
}

async fn dataset_id(
    catalog: &Catalog,
    ctx: &ToolContext,
    name: &str,
) -> Result<uuid::Uuid, ToolError> {
    let conn = connection(ctx)?;
    let mut after: Option<NameCursor> = None;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let page = Page {
            limit: MAX_LISTED,
            after: after.take(),
        };
        let (datasets, next) = catalog
            .datasets(conn, &user(ctx), &page)
            .await
            .map_err(failed)?;
        if let Some(d) = datasets.iter().find(|d| d.name == name) {
            return Ok(d.id);
        }
        seen.extend(datasets.iter().map(|d| d.name.clone()));
        match (next, datasets.last()) {
            (Some(_), Some(last)) => after = Some(NameCursor(last.name.clone(), last.id)),
            _ => break,
        }
    }
    Err(ToolError::NotFound(format!(
        "There is no dataset `{}` in this connection's catalog; list_datasets names them.{}",
        llm::truncate(name, 100),
        nearest_note(name, seen.iter().map(String::as_str))
    )))
}

#[derive(Clone)]
pub struct ListDatasets(pub Catalog);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Debug, Serialize)]
pub struct DatasetsOut {
    /// `postgres` or `bigquery`: the SQL dialect to write.
    pub warehouse: String,
    pub datasets: Vec<Value>,
    pub truncated: bool,
}

#[async_trait]
impl Tool for ListDatasets {
    type Input = NoInput;
    type Output = DatasetsOut;
    fn name(&self) -> &'static str {
        "list_datasets"
    }
    fn description(&self) -> &'static str {
        "Lists the datasets (BigQuery) or schemas (Postgres) of the session's connection, with their table counts, as the last catalog scan found them, and which SQL dialect the warehouse speaks."
    }
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(600))
    }
    async fn call(&self, ctx: &ToolContext, _: NoInput) -> Result<DatasetsOut, ToolError> {
        let conn = connection(ctx)?;
        let page = Page {
            limit: MAX_LISTED,
            after: None,
        };
        let (datasets, next) = self
            .0
            .datasets(conn, &user(ctx), &page)
            .await
            .map_err(failed)?;
        let warehouse = self.0.dialect(conn).await.map_err(failed)?;
        Ok(DatasetsOut {
            warehouse: warehouse.as_str().to_owned(),
            datasets: datasets
                .iter()
                .map(|d| json!({"name": d.name, "tables": d.table_count, "description": d.description}))
                .collect(),
            truncated: next.is_some(),
        })
    }
}

#[derive(Clone)]
pub struct ListTables(pub Catalog);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetInput {
    /// The dataset's name, as list_datasets gives it.
    pub dataset: String,
}

#[async_trait]
impl Tool for ListTables {
    type Input = DatasetInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "list_tables"
    }
    fn description(&self) -> &'static str {
        "Lists the tables and views of one dataset: type, row count, size in bytes, partitioning and clustering."
    }
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(600))
    }
    async fn call(&self, ctx: &ToolContext, input: DatasetInput) -> Result<Value, ToolError> {
        let id = dataset_id(&self.0, ctx, &input.dataset).await?;
        let page = Page {
            limit: MAX_LISTED,
            after: None,
        };
        let (tables, next) = self.0.tables(id, &user(ctx), &page).await.map_err(failed)?;
        Ok(json!({
            "dataset": input.dataset,
            "tables": tables.iter().map(|t| json!({
                "name": t.name, "type": t.table_type, "rows": t.row_count, "size_bytes": t.size_bytes,
                "partitioning": t.partitioning, "clustering": t.clustering,
            })).collect::<Vec<_>>(),
            "truncated": next.is_some(),
        }))
    }
}

#[derive(Clone)]
pub struct GetTableSchema(pub Catalog);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableInput {
    /// The dataset's name.
    pub dataset: String,
    /// The table's name, as list_tables gives it.
    pub table: String,
}

#[async_trait]
impl Tool for GetTableSchema {
    type Input = TableInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "get_table_schema"
    }
    fn description(&self) -> &'static str {
        "The columns of one table: names, types, whether they may be null, descriptions, partitioning and clustering."
    }
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(600))
    }
    async fn call(&self, ctx: &ToolContext, input: TableInput) -> Result<Value, ToolError> {
        let id = dataset_id(&self.0, ctx, &input.dataset).await?;
        let mut after: Option<NameCursor> = None;
        let mut seen: Vec<String> = Vec::new();
        let table = loop {
            let page = Page {
                limit: MAX_LISTED,
                after: after.take(),
            };
            let (tables, next) = self.0.tables(id, &user(ctx), &page).await.map_err(failed)?;
            if let Some(t) = tables.iter().find(|t| t.name == input.table) {
                break t.id;
            }
            seen.extend(tables.iter().map(|t| t.name.clone()));
            match (next, tables.last()) {
                (Some(_), Some(last)) => after = Some(NameCursor(last.name.clone(), last.id)),
                _ => {
                    return Err(ToolError::NotFound(format!(
                        "There is no table `{}` in dataset `{}`; list_tables names them.{}",
                        llm::truncate(&input.table, 100),
                        llm::truncate(&input.dataset, 100),
                        nearest_note(&input.table, seen.iter().map(String::as_str))
                    )));
                }
            }
        };
        let schema = self
            .0
            .table_columns(&user(ctx), table)
            .await
            .map_err(failed)?;
        Ok(json!({
            "dataset": input.dataset,
            "table": input.table,
            "columns": schema.columns.iter().map(|c| json!({
                "name": c.name, "type": c.data_type, "nullable": c.nullable,
                "description": c.description, "partitioning": c.is_partitioning,
            })).collect::<Vec<_>>(),
        }))
    }
}

/// The registry of the catalog tools named in `names` (all of them when empty).
pub fn registry(
    catalog: &Catalog,
    cache: Option<ai::tool_cache::ToolCache>,
    names: &[String],
) -> ai::tools::Registry {
    let wanted = |n: &str| names.is_empty() || names.iter().any(|w| w == n);
    let mut r = ai::tools::Registry::new(cache);
    if wanted("list_datasets") {
        r = r.register(ListDatasets(catalog.clone()));
    }
    if wanted("list_tables") {
        r = r.register(ListTables(catalog.clone()));
    }
    if wanted("get_table_schema") {
        r = r.register(GetTableSchema(catalog.clone()));
    }
    r
}

/// The builtin model's plan for chat: it answers questions about the catalog through the
/// same tools a model would call, and says plainly what it cannot do.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogPlanner;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('.').to_owned())
        .collect()
}

impl Planner for CatalogPlanner {
    fn reply(&self, request: &Request) -> Reply {
        let offered = |name: &str| request.tools.iter().any(|t| t.name == name);
        let last = request.messages.last();
        // After tool results: say what they hold.
        if let Some(m) = last.filter(|m| m.role == Role::User) {
            let results: Vec<(&str, bool)> = m
                .content
                .iter()
                .filter_map(|c| match c {
                    Content::ToolResult {
                        content, is_error, ..
                    } => Some((content.as_str(), *is_error)),
                    _ => None,
                })
                .collect();
            if !results.is_empty() {
                return Reply {
                    text: describe_results(&results),
                    tool_calls: Vec::new(),
                };
            }
        }
        let question = last.map(|m| m.text()).unwrap_or_default();
        let lower = question.to_lowercase();
        let ws = words(&question);
        // "columns of analytics.orders", "describe orders in analytics"
        let qualified = ws
            .iter()
            .find(|w| w.contains('.') && !w.starts_with('.') && !w.ends_with('.'));
        let after = |key: &str| -> Option<String> {
            let i = ws.iter().position(|w| w.eq_ignore_ascii_case(key))?;
            ws.get(i + 1).cloned()
        };
        if (lower.contains("column") || lower.contains("describe") || lower.contains("schema of"))
            && offered("get_table_schema")
        {
            if let Some(q) = qualified
                && let Some((d, t)) = q.split_once('.')
            {
                return call("get_table_schema", json!({"dataset": d, "table": t}));
            }
            if let (Some(t), Some(d)) = (
                after("table").or_else(|| after("of")),
                after("in").or_else(|| after("dataset")),
            ) {
                return call("get_table_schema", json!({"dataset": d, "table": t}));
            }
            return Reply {
                text: "Which table? Name it as dataset.table, for example `analytics.orders`."
                    .into(),
                tool_calls: Vec::new(),
            };
        }
        if lower.contains("table")
            && offered("list_tables")
            && let Some(d) = after("dataset")
                .or_else(|| after("in"))
                .or_else(|| after("schema"))
        {
            return call("list_tables", json!({"dataset": d}));
        }
        if (lower.contains("dataset")
            || lower.contains("schema")
            || lower.contains("table")
            || lower.contains("what data"))
            && offered("list_datasets")
        {
            return call("list_datasets", json!({}));
        }
        Reply {
            text: "I am Bridge's builtin assistant, which works without a language model. I can tell you \
                   which datasets your connection has (\"which datasets are there?\"), which tables a \
                   dataset holds (\"tables in dataset analytics\") and what columns a table has \
                   (\"columns of analytics.orders\"). I cannot write SQL, answer questions about the \
                   data itself, or build dashboards: configure a model provider (ANTHROPIC_API_KEY or \
                   OPENAI_BASE_URL) for that."
                .into(),
            tool_calls: Vec::new(),
        }
    }
}

fn call(name: &str, input: Value) -> Reply {
    Reply {
        text: String::new(),
        tool_calls: vec![(name.to_owned(), input)],
    }
}

fn describe_results(results: &[(&str, bool)]) -> String {
    let mut out = Vec::new();
    for (content, is_error) in results {
        if *is_error {
            out.push(format!(
                "That did not work: {}",
                llm::truncate(content, 300)
            ));
            continue;
        }
        let v: Value = serde_json::from_str(content).unwrap_or(Value::Null);
        if let Some(ds) = v.get("datasets").and_then(Value::as_array) {
            let names: Vec<String> = ds
                .iter()
                .map(|d| {
                    format!(
                        "{} ({} tables)",
                        d["name"].as_str().unwrap_or("?"),
                        d["tables"]
                    )
                })
                .collect();
            out.push(if names.is_empty() {
                "The catalog has no datasets yet: scan the connection first.".into()
            } else {
                format!(
                    "The connection has {} datasets: {}.",
                    names.len(),
                    names.join(", ")
                )
            });
        } else if let Some(cols) = v.get("columns").and_then(Value::as_array) {
            let names: Vec<String> = cols
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["type"].as_str().unwrap_or("")
                    )
                })
                .collect();
            out.push(format!(
                "{}.{} has {} columns: {}.",
                v["dataset"].as_str().unwrap_or("?"),
                v["table"].as_str().unwrap_or("?"),
                names.len(),
                names.join(", ")
            ));
        } else if let Some(ts) = v.get("tables").and_then(Value::as_array) {
            let names: Vec<&str> = ts.iter().filter_map(|t| t["name"].as_str()).collect();
            out.push(format!(
                "Dataset {} holds {} tables: {}.",
                v["dataset"].as_str().unwrap_or("?"),
                names.len(),
                names.join(", ")
            ));
        } else {
            out.push(llm::truncate(content, 500));
        }
    }
    out.join(" ")
}

/// The builtin provider: the dashboard planner when the request offers the tool that saves
/// a dashboard (a generation run), the catalog planner otherwise (chat).
pub fn builtin() -> Arc<dyn llm::Provider> {
    Arc::new(llm::builtin::Builtin::new(Arc::new(BuiltinPlanner)))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinPlanner;

impl Planner for BuiltinPlanner {
    fn reply(&self, request: &Request) -> Reply {
        if request
            .tools
            .iter()
            .any(|t| t.name == "save_dashboard_yaml")
        {
            crate::generate_planner::DashboardPlanner.reply(request)
        } else {
            CatalogPlanner.reply(request)
        }
    }
}

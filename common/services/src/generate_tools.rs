//! The dashboard agent's tools: the catalog tools of chat ([`crate::chat_tools`]), and the
//! ones that prove and write a dashboard — `run_dry_run_query` (the SQL guard, the catalog,
//! then the warehouse's dry run under the team's byte cap), `validate_dashboard_yaml`
//! (exactly `POST /v1/dashboards/validate`), `save_dashboard_yaml`, `list_dashboards`.
//!
//! Each answers as the caller, for the session's team and connection only: another team's
//! connection, table or dashboard is "not found", as on the routes.
//!
//! What is enforced here rather than asked of the model, through the run's
//! [`RunFacts`](ai::tools::RunFacts):
//! - a save names YAML that validated in this run, byte for byte, and every one of its
//!   compiled queries was dry-run in this run (by `run_dry_run_query`, or by the validation,
//!   which dry-runs every query): SQL that changed since is refused;
//! - a dashboard's connection is the session's;
//! - a session that wrote a dashboard edits that one (a new version), and a run asked for a
//!   slug saves under it;
//! - a name that is not in the catalog is answered with the nearest real ones.

use std::collections::HashSet;

use ai::tools::{Tool, ToolContext, ToolError};
use async_trait::async_trait;
use base::{
    crypto::sha256_hex,
    domain::{Role, TeamSettings},
};
use edge::{CurrentUser, pagination::Page};
use platform::warehouse::{Dialect, Warehouse};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

use crate::{
    catalog::Catalog,
    chat_tools::{self, nearest_note},
    connections::{self, Connection},
    dashboards::Dashboards,
};

/// The tools a generation session uses.
pub const GENERATE_TOOLS: [&str; 7] = [
    "list_datasets",
    "list_tables",
    "get_table_schema",
    "run_dry_run_query",
    "validate_dashboard_yaml",
    "save_dashboard_yaml",
    "list_dashboards",
];

/// What the run's facts call a dry-run query, by its SQL (whitespace does not count).
pub fn dry_run_fact(sql: &str) -> String {
    let normal: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    format!("dry_run:{}", sha256_hex(normal.join(" ").as_bytes()))
}

/// What the run's facts call YAML that validated, by its exact text.
pub fn valid_yaml_fact(yaml: &str) -> String {
    format!("valid_yaml:{}", sha256_hex(yaml.as_bytes()))
}

/// The run's total of warehouse bytes its dry runs estimated.
pub const BYTES_ESTIMATED: &str = "warehouse_bytes_estimated";
/// The run's slug, when the request named one.
pub const WANTED_SLUG: &str = "slug";
/// What the run saved (slug, version, id), once it has.
pub const SAVED: &str = "saved";

/// BigQuery's on-demand price per TiB read (the estimate a dry run's bytes are priced at).
pub use crate::usage::BIGQUERY_USD_PER_TIB;

fn user(ctx: &ToolContext) -> CurrentUser {
    CurrentUser {
        id: ctx.user_id,
        email: None,
    }
}

fn failed(e: edge::ApiError) -> ToolError {
    let p = e.to_problem();
    if p.status == 404 {
        ToolError::NotFound(p.detail)
    } else if p.status < 500 {
        ToolError::Invalid(p.detail)
    } else {
        tracing::warn!(status = p.status, "a dashboard tool failed");
        ToolError::Failed("That could not be done just now; try again.".into())
    }
}

fn db_failed(e: impl std::fmt::Display) -> ToolError {
    tracing::warn!(error = %e, "a dashboard tool's database read failed");
    ToolError::Failed("That could not be done just now; try again.".into())
}

/// The session's connection (editors of its team), its team's settings and its warehouse.
struct Scope {
    connection: Connection,
    settings: TeamSettings,
    warehouse: Arc<dyn Warehouse>,
    /// Every scanned table, as (dataset, table, id).
    tables: Vec<(String, String, Uuid)>,
    home: String,
}

async fn scope(dashboards: &Dashboards, ctx: &ToolContext) -> Result<Scope, ToolError> {
    let id = ctx.connection_id.ok_or_else(|| {
        ToolError::Invalid("This session has no connection to write a dashboard on.".into())
    })?;
    let inner = &dashboards.0;
    let client = inner.db.get().await.map_err(db_failed)?;
    let (connection, _) = connections::load(&client, id, &user(ctx), Role::Editor)
        .await
        .map_err(failed)?;
    if connection.team_id != ctx.team_id {
        return Err(ToolError::NotFound("no such connection".into()));
    }
    let settings = crate::usage::team_settings(&**client, connection.team_id)
        .await
        .map_err(db_failed)?;
    let scanned = crate::catalog::scanned_tables(&client, connection.id)
        .await
        .map_err(db_failed)?;
    drop(client);
    let home = scanned.first().map(|t| t.home.clone()).unwrap_or_default();
    let tables = scanned
        .into_iter()
        .map(|t| (t.dataset, t.table, t.id))
        .collect();
    let warehouse = inner
        .connections
        .warehouse(&connection)
        .await
        .map_err(|e| failed(e.into()))?;
    Ok(Scope {
        connection,
        settings,
        warehouse,
        tables,
        home,
    })
}

impl Scope {
    fn dialect(&self) -> Dialect {
        self.connection.warehouse_type
    }

    /// The scanned table `t` names, or "not found" with the nearest real names.
    fn table(&self, t: &sqlguard::TableRef) -> Result<Uuid, ToolError> {
        if let Some(other) = t.catalog.as_deref() {
            let same = match self.dialect() {
                Dialect::Bigquery => other.eq_ignore_ascii_case(&self.home),
                Dialect::Postgres => other == self.home,
            };
            if !same {
                return Err(ToolError::NotFound(format!(
                    "`{t}` is outside the connection's {} `{}`: only its scanned tables may be read.",
                    match self.dialect() {
                        Dialect::Bigquery => "project",
                        Dialect::Postgres => "database",
                    },
                    self.home
                )));
            }
        }
        if let Some((_, _, id)) = self
            .tables
            .iter()
            .find(|(d, n, _)| *d == t.dataset && *n == t.table)
        {
            return Ok(*id);
        }
        let names: Vec<String> = self
            .tables
            .iter()
            .map(|(d, n, _)| format!("{d}.{n}"))
            .collect();
        Err(ToolError::NotFound(format!(
            "`{}.{}` is not in the connection's catalog.{}",
            t.dataset,
            t.table,
            nearest_note(
                &format!("{}.{}", t.dataset, t.table),
                names.iter().map(String::as_str)
            )
        )))
    }

    fn cap(&self) -> u64 {
        self.settings.max_bytes_billed()
    }

    fn cost_usd(&self, bytes: u64) -> f64 {
        crate::usage::warehouse_usd(self.dialect(), bytes).unwrap_or(0.0)
    }
}

/// The name a warehouse error says is unknown (`column "x" does not exist`, BigQuery's
/// `Unrecognized name: x`).
fn unknown_name(message: &str) -> Option<String> {
    if let Some(rest) = message.split("Unrecognized name: ").nth(1) {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return (!name.is_empty()).then_some(name);
    }
    if message.contains("does not exist") && message.contains("column") {
        let quoted = message.split('"').nth(1)?;
        let name = quoted.rsplit('.').next().unwrap_or(quoted);
        return (!name.is_empty()).then(|| name.to_owned());
    }
    None
}

/// A hint naming the real columns nearest to what `message` says is unknown, among the
/// columns of `tables`.
async fn column_hint(
    catalog: &Catalog,
    ctx: &ToolContext,
    message: &str,
    tables: &[Uuid],
) -> String {
    let Some(wanted) = unknown_name(message) else {
        return String::new();
    };
    let mut columns: Vec<String> = Vec::new();
    for t in tables {
        if let Ok(schema) = catalog.table_columns(&user(ctx), *t).await {
            columns.extend(schema.columns.into_iter().map(|c| c.name));
        }
    }
    nearest_note(&wanted, columns.iter().map(String::as_str))
}

/// The tables a query names, its templates (`{{ … }}`) read as NULL, when it parses.
fn tables_of(sql: &str, dialect: Dialect) -> Vec<sqlguard::TableRef> {
    let mut plain = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        plain.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                plain.push_str("NULL");
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = "";
            }
        }
    }
    plain.push_str(rest);
    sqlguard::check(&plain, dialect).unwrap_or_default()
}

#[derive(Clone)]
pub struct RunDryRunQuery {
    pub dashboards: Dashboards,
    pub catalog: Catalog,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlInput {
    /// One read-only SELECT in the connection's dialect, with literal values (no
    /// `{{ param(…) }}` templates: validate_dashboard_yaml dry-runs those with the
    /// parameters' defaults).
    pub sql: String,
}

#[async_trait]
impl Tool for RunDryRunQuery {
    type Input = SqlInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "run_dry_run_query"
    }
    fn description(&self) -> &'static str {
        "Proves a query without running it: Bridge's SQL guard, then the catalog (every table must be scanned), then the warehouse's dry run. Answers the estimated bytes, their cost in USD and the output columns; refused above the team's byte cap. A dashboard can only be saved with queries proven in this run."
    }
    async fn call(&self, ctx: &ToolContext, input: SqlInput) -> Result<Value, ToolError> {
        if input.sql.len() > 100_000 {
            return Err(ToolError::Invalid("The SQL is over 100,000 bytes.".into()));
        }
        if input.sql.contains("{{") {
            return Err(ToolError::Invalid(
                "run_dry_run_query takes plain SQL with literal values. Queries with {{ param(…) }} or {{ ref(…) }} are dry-run by validate_dashboard_yaml, with the parameters' defaults.".into(),
            ));
        }
        let scope = scope(&self.dashboards, ctx).await?;
        let refs = sqlguard::check(&input.sql, scope.dialect()).map_err(|problems| {
            ToolError::Invalid(format!(
                "Bridge's SQL guard refused the query: {}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let mut tables = Vec::new();
        for t in &refs {
            tables.push(scope.table(t)?);
        }
        let dry = match scope.warehouse.dry_run(&input.sql, &[]).await {
            Ok(d) => d,
            Err(e) => {
                let message = e.to_string();
                let hint = column_hint(&self.catalog, ctx, &message, &tables).await;
                return Err(ToolError::Invalid(format!(
                    "The warehouse refused the dry run: {}{hint}",
                    llm::truncate(&message, 600)
                )));
            }
        };
        ctx.facts.add(BYTES_ESTIMATED, dry.bytes);
        let cap = scope.cap();
        if dry.bytes > cap {
            return Err(ToolError::Invalid(format!(
                "The warehouse estimates this query reads {} bytes, over the team's cap of {cap} bytes: filter on the partitioning column, or select fewer columns.",
                dry.bytes
            )));
        }
        ctx.facts.record(dry_run_fact(&input.sql));
        Ok(json!({
            "valid": true,
            "bytes_estimated": dry.bytes,
            "byte_cap": cap,
            "cost_estimate_usd": scope.cost_usd(dry.bytes),
            "columns": dry.columns.iter().map(|c| json!({"name": c.name, "type": c.data_type})).collect::<Vec<_>>(),
        }))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct YamlInput {
    /// The whole dashboard YAML.
    pub yaml: String,
}

/// The most YAML a dashboard tool takes.
const MAX_YAML_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct ValidateDashboardYaml {
    pub dashboards: Dashboards,
    pub catalog: Catalog,
}

/// Checks `yaml` for the session (its connection only) and records what it proves.
async fn validate(
    dashboards: &Dashboards,
    catalog: &Catalog,
    ctx: &ToolContext,
    yaml: &str,
) -> Result<Value, ToolError> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(ToolError::Invalid(format!(
            "The YAML is over {MAX_YAML_BYTES} bytes."
        )));
    }
    let connection = ctx.connection_id.ok_or_else(|| {
        ToolError::Invalid("This session has no connection to write a dashboard on.".into())
    })?;
    let parsed = dashboard::validate::parse(yaml);
    if let Some(spec) = &parsed.spec
        && spec.connection != connection
    {
        let (line, column) = parsed.locate("connection");
        return Ok(json!({
            "valid": false,
            "errors": [{"path": "connection", "line": line, "column": column,
                "message": format!("must be this session's connection, {connection}")}],
            "warnings": [],
        }));
    }
    let outcome = dashboards
        .check(&user(ctx), yaml, Some(ctx.team_id))
        .await
        .map_err(failed)?;
    let mut report = serde_json::to_value(&outcome.report).map_err(db_failed)?;
    if let Some(checked) = &outcome.checked {
        ctx.facts.record(valid_yaml_fact(yaml));
        for q in &checked.queries {
            ctx.facts.record(dry_run_fact(&q.sql));
        }
    } else if let (Some(spec), Some(errors)) = (
        parsed.spec.as_ref(),
        report.get_mut("errors").and_then(Value::as_array_mut),
    ) {
        // Unknown columns: name the nearest real ones of the query's tables.
        let dialect = catalog
            .dialect(connection)
            .await
            .unwrap_or(Dialect::Postgres);
        let scanned: Vec<(String, String, Uuid)> = match dashboards.0.db.get().await {
            Ok(client) => crate::catalog::scanned_tables(&client, connection)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.dataset, t.table, t.id))
                .collect(),
            Err(_) => Vec::new(),
        };
        for e in errors.iter_mut() {
            let path = e["path"].as_str().unwrap_or_default().to_owned();
            let message = e["message"].as_str().unwrap_or_default().to_owned();
            let Some(i) = path
                .strip_prefix("queries[")
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(q) = spec.queries.get(i) else {
                continue;
            };
            let ids: Vec<Uuid> = tables_of(&q.sql, dialect)
                .iter()
                .filter_map(|t| {
                    scanned
                        .iter()
                        .find(|(d, n, _)| *d == t.dataset && *n == t.table)
                        .map(|(_, _, id)| *id)
                })
                .collect();
            let hint = column_hint(catalog, ctx, &message, &ids).await;
            if !hint.is_empty() {
                e["message"] = Value::String(format!("{message}{hint}"));
            }
        }
    }
    Ok(report)
}

#[async_trait]
impl Tool for ValidateDashboardYaml {
    type Input = YamlInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "validate_dashboard_yaml"
    }
    fn description(&self) -> &'static str {
        "Validates a whole dashboard YAML exactly as POST /v1/dashboards/validate does (schema, layout, the SQL guard, the catalog, a dry run of every query with the parameters' defaults, the tiles' columns against the queries' output): every problem at once, with its path, line and column. Only YAML that validated in this run can be saved."
    }
    async fn call(&self, ctx: &ToolContext, input: YamlInput) -> Result<Value, ToolError> {
        validate(&self.dashboards, &self.catalog, ctx, &input.yaml).await
    }
}

#[derive(Clone)]
pub struct SaveDashboardYaml {
    pub dashboards: Dashboards,
    pub sessions: ai::sessions::Sessions,
}

#[async_trait]
impl Tool for SaveDashboardYaml {
    type Input = YamlInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "save_dashboard_yaml"
    }
    fn description(&self) -> &'static str {
        "Saves a dashboard YAML that validated in this run (byte for byte): a new dashboard, or a new version of this session's dashboard. Answers its slug, version and where to see it."
    }
    async fn call(&self, ctx: &ToolContext, input: YamlInput) -> Result<Value, ToolError> {
        let yaml = input.yaml;
        if yaml.len() > MAX_YAML_BYTES {
            return Err(ToolError::Invalid(format!(
                "The YAML is over {MAX_YAML_BYTES} bytes."
            )));
        }
        if !ctx.facts.holds(&valid_yaml_fact(&yaml)) {
            return Err(ToolError::Invalid(
                "This YAML did not validate in this run (or it changed since): call validate_dashboard_yaml with exactly this YAML, fix what it reports, then save it.".into(),
            ));
        }
        let parsed = dashboard::validate::parse(&yaml);
        let Some(spec) = parsed.spec else {
            return Err(ToolError::Invalid(
                "The YAML does not parse; validate it first.".into(),
            ));
        };
        if Some(spec.connection) != ctx.connection_id {
            return Err(ToolError::Invalid(
                "The dashboard's connection must be this session's.".into(),
            ));
        }
        let dialect = self
            .dashboards
            .0
            .connections
            .get(spec.connection, &user(ctx), Role::Editor)
            .await
            .map_err(failed)?
            .0
            .warehouse_type;
        let (compiled, _) = dashboard::compile::compile(&spec, dialect);
        let unproven: Vec<&str> = compiled
            .iter()
            .filter(|q| !ctx.facts.holds(&dry_run_fact(&q.sql)))
            .map(|q| q.id.as_str())
            .collect();
        if !unproven.is_empty() {
            return Err(ToolError::Invalid(format!(
                "These queries were not dry-run in this run: {}. Dry-run them (run_dry_run_query) or validate the YAML again, then save.",
                unproven.join(", ")
            )));
        }
        // Which dashboard this run may write.
        let session = match ctx.session_id {
            Some(id) => Some(self.sessions.get(id).await.map_err(|_| {
                ToolError::Failed("This session could not be read just now.".into())
            })?),
            None => None,
        };
        let linked = match session.as_ref().and_then(|s| s.dashboard_id) {
            Some(id) => {
                let client = self.dashboards.0.db.get().await.map_err(db_failed)?;
                client
                    .query_opt("SELECT slug FROM dashboards WHERE id = $1", &[&id])
                    .await
                    .map_err(db_failed)?
                    .map(|r| r.get::<_, String>(0))
            }
            None => None,
        };
        let wanted = linked.clone().or_else(|| ctx.facts.get(WANTED_SLUG));
        if let Some(w) = &wanted
            && *w != spec.slug
        {
            return Err(ToolError::Invalid(format!(
                "Save this dashboard with `slug: {w}`{}.",
                if linked.is_some() {
                    " (this session's dashboard: a change is a new version of it)"
                } else {
                    " (the slug this request asked for)"
                }
            )));
        }
        let user = user(ctx);
        let (dashboard, created) = if linked.is_some() {
            let before = self
                .dashboards
                .get(&spec.slug, &user, Role::Editor)
                .await
                .map_err(failed)?
                .0
                .version;
            let d = self
                .dashboards
                .update_from_yaml(&spec.slug, &user, &yaml, None)
                .await
                .map_err(failed)?;
            if d.version == before {
                return Err(ToolError::Invalid(
                    "This YAML is the dashboard's current version already: change something first."
                        .into(),
                ));
            }
            (d, false)
        } else {
            match self
                .dashboards
                .create_from_yaml(ctx.team_id, &user, &yaml)
                .await
            {
                Ok(d) => (d, true),
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
                    let free = self
                        .dashboards
                        .free_slug(&spec.slug)
                        .await
                        .map_err(failed)?;
                    return Err(ToolError::Invalid(format!(
                        "The slug `{}` is taken: choose another one (`{free}` is free), validate, then save.",
                        spec.slug
                    )));
                }
                Err(e) => return Err(failed(e)),
            }
        };
        if let Some(id) = ctx.session_id
            && let Err(e) = self.sessions.set_dashboard(id, dashboard.id).await
        {
            tracing::warn!(session = %id, error = %e, "linking a session to its dashboard");
        }
        ctx.facts.set(
            SAVED,
            json!({"slug": dashboard.slug, "version": dashboard.version, "dashboard_id": dashboard.id})
                .to_string(),
        );
        Ok(json!({
            "saved": true,
            "created": created,
            "slug": dashboard.slug,
            "version": dashboard.version,
            "dashboard_id": dashboard.id,
            "title": dashboard.title,
            "preview_url": preview_url(&dashboard.slug),
        }))
    }
}

/// Where a saved dashboard's live data is read.
pub fn preview_url(slug: &str) -> String {
    format!("/v1/dashboards/{slug}/data")
}

#[derive(Clone)]
pub struct ListDashboards(pub Dashboards);

#[async_trait]
impl Tool for ListDashboards {
    type Input = chat_tools::NoInput;
    type Output = Value;
    fn name(&self) -> &'static str {
        "list_dashboards"
    }
    fn description(&self) -> &'static str {
        "Lists the team's dashboards (slug, title, description, version, connection), to reuse a good query or avoid a taken slug."
    }
    async fn call(&self, ctx: &ToolContext, _: chat_tools::NoInput) -> Result<Value, ToolError> {
        let page = Page {
            limit: 100,
            after: None,
        };
        let (listed, next) = self
            .0
            .list_for(ctx.team_id, &user(ctx), &page)
            .await
            .map_err(failed)?;
        Ok(json!({
            "dashboards": listed.iter().map(|d| json!({
                "slug": d.slug, "title": d.title, "description": d.description,
                "version": d.version, "connection_id": d.connection_id,
            })).collect::<Vec<_>>(),
            "truncated": next.is_some(),
        }))
    }
}

/// The registry of the tools named in `names` (catalog and dashboard tools).
pub fn registry(
    catalog: &Catalog,
    dashboards: &Dashboards,
    sessions: &ai::sessions::Sessions,
    cache: Option<ai::tool_cache::ToolCache>,
    names: &[String],
) -> ai::tools::Registry {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut r = chat_tools::registry(catalog, cache, names);
    if wanted.contains("run_dry_run_query") {
        r = r.register(RunDryRunQuery {
            dashboards: dashboards.clone(),
            catalog: catalog.clone(),
        });
    }
    if wanted.contains("validate_dashboard_yaml") {
        r = r.register(ValidateDashboardYaml {
            dashboards: dashboards.clone(),
            catalog: catalog.clone(),
        });
    }
    if wanted.contains("save_dashboard_yaml") {
        r = r.register(SaveDashboardYaml {
            dashboards: dashboards.clone(),
            sessions: sessions.clone(),
        });
    }
    if wanted.contains("list_dashboards") {
        r = r.register(ListDashboards(dashboards.clone()));
    }
    r
}

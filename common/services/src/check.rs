//! Validation against the warehouse, on top of what `validate::parse` checks alone: the
//! YAML's connection (which decides the team, the dialect and the catalog), compilation,
//! the SQL guard on each compiled query, its tables against the connection's scanned
//! catalog, a dry run under the team's byte cap, and tiles' columns against the dry run's
//! output schema. Every problem at once, each with its path and YAML line and column.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use sqlguard::TableRef;

use crate::{
    connections, connections::Connection, connections::ConnectionStatus, dashboards::Dashboards,
};
use base::domain::Role;
use dashboard::{
    compile::{CompiledQuery, compile},
    spec::{DashboardSpec, ParamType},
    validate::{self, Issue, Parsed},
};
use edge::{ApiError, ApiResult, CurrentUser};
use platform::{warehouse::Column, warehouse::Param, warehouse::ParamValue, warehouse::Warehouse};

/// Dry runs of one dashboard at once.
const DRY_RUN_PARALLELISM: usize = 4;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssueBody {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl From<Issue> for IssueBody {
    fn from(i: Issue) -> Self {
        Self {
            path: i.path,
            line: i.line,
            column: i.column,
            message: i.message,
        }
    }
}

/// The answer of `POST /v1/dashboards/validate`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    pub errors: Vec<IssueBody>,
    pub warnings: Vec<IssueBody>,
}

/// A dashboard that passed every check, ready to store.
pub struct Checked {
    pub spec: DashboardSpec,
    pub connection: Connection,
    pub queries: Vec<CompiledQuery>,
    /// Tables each query reads, by query id (for lineage).
    pub tables: HashMap<String, Vec<TableRef>>,
}

pub struct Outcome {
    pub report: ValidationReport,
    pub checked: Option<Checked>,
}

fn issue(parsed: &Parsed, path: &str, message: impl Into<String>) -> Issue {
    let (line, column) = parsed.locate(path);
    Issue {
        path: path.to_owned(),
        line,
        column,
        message: message.into(),
    }
}

/// A stand-in value for a parameter without a default, so the query can be dry-run.
fn placeholder(t: &ParamType) -> ParamValue {
    match t {
        ParamType::String => ParamValue::String(String::new()),
        ParamType::Int => ParamValue::Int(0),
        ParamType::Float => ParamValue::Float(0.0),
        ParamType::Bool => ParamValue::Bool(false),
        ParamType::Date => ParamValue::Date(time::OffsetDateTime::now_utc().date()),
        ParamType::Timestamp => ParamValue::Timestamp(time::OffsetDateTime::now_utc()),
    }
}

impl Dashboards {
    /// Checks `yaml` completely. `team` (when creating under a team) must own the connection.
    /// A caller who may not read the connection sees it as not found, in the report; one who
    /// reads it without the editor role gets 403.
    pub async fn check(
        &self,
        user: &CurrentUser,
        yaml: &str,
        team: Option<Uuid>,
    ) -> ApiResult<Outcome> {
        let parsed = validate::parse(yaml);
        let mut errors: Vec<Issue> = parsed.errors.clone();
        let warnings: Vec<Issue> = parsed.warnings.clone();
        let finish = |errors: Vec<Issue>, warnings: Vec<Issue>, checked: Option<Checked>| Outcome {
            report: ValidationReport {
                valid: errors.is_empty(),
                errors: errors.into_iter().map(Into::into).collect(),
                warnings: warnings.into_iter().map(Into::into).collect(),
            },
            checked,
        };
        let Some(spec) = parsed.spec.clone() else {
            return Ok(finish(errors, warnings, None));
        };

        let client = self.0.db.get().await?;
        let loaded = connections::load(&client, spec.connection, user, Role::Editor).await;
        let connection = match loaded {
            Ok((c, _)) => c,
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
                errors.push(issue(
                    &parsed,
                    "connection",
                    "no connection with this id in your teams",
                ));
                return Ok(finish(errors, warnings, None));
            }
            Err(e) => return Err(e),
        };
        if team.is_some_and(|t| t != connection.team_id) {
            errors.push(issue(
                &parsed,
                "connection",
                "this connection belongs to another team",
            ));
        }
        if connection.status != ConnectionStatus::Validated {
            errors.push(issue(
                &parsed,
                "connection",
                "the connection is not validated; validate it first",
            ));
        }
        let dialect = connection.warehouse_type;

        // Compile (refs inlined, params bound). Template and ref problems were reported by the
        // structural checks already when those failed; otherwise they are new here.
        let structural_failed = !parsed.errors.is_empty();
        let (compiled, compile_errors) = compile(&spec, dialect);
        if !structural_failed {
            for e in compile_errors {
                errors.push(issue(
                    &parsed,
                    &format!("queries[{}].sql", e.query),
                    e.message,
                ));
            }
        }

        // The guard, then the catalog: every table a query reads must be a scanned table of
        // this connection, compared on all three parts (project or database too: a scanned
        // `analytics.t` says nothing about `other-project.analytics.t`).
        let catalog: HashSet<(String, String, String)> =
            crate::catalog::scanned_tables(&client, connection.id)
                .await?
                .into_iter()
                .map(|t| (t.home, t.dataset, t.table))
                .collect();
        let home = catalog
            .iter()
            .next()
            .map(|(home, _, _)| home.clone())
            .unwrap_or_default();
        let same_catalog = |written: &str| match dialect {
            // Project ids are lower case; BigQuery resolves them without regard to case.
            platform::warehouse::Dialect::Bigquery => written.eq_ignore_ascii_case(&home),
            platform::warehouse::Dialect::Postgres => written == home,
        };
        let team_settings = crate::usage::team_settings(&**client, connection.team_id).await?;
        drop(client);
        let mut tables: HashMap<String, Vec<TableRef>> = HashMap::new();
        let mut runnable: Vec<usize> = Vec::new();
        let mut unscanned = false;
        for (i, q) in compiled.iter().enumerate() {
            let path = format!("queries[{i}].sql");
            match sqlguard::check(&q.sql, dialect) {
                Err(problems) => {
                    for p in problems {
                        let at = match (p.line, p.column) {
                            (Some(l), Some(c)) => {
                                format!(" (line {l}, column {c} of the compiled query)")
                            }
                            _ => String::new(),
                        };
                        errors.push(issue(&parsed, &path, format!("{}{at}", p.message)));
                    }
                }
                Ok(refs) => {
                    let mut ok = true;
                    for t in &refs {
                        if catalog.is_empty() {
                            unscanned = true;
                            ok = false;
                        } else if let Some(other) =
                            t.catalog.as_deref().filter(|c| !same_catalog(c))
                        {
                            let (what, whose) = match dialect {
                                platform::warehouse::Dialect::Bigquery => ("project", "project"),
                                platform::warehouse::Dialect::Postgres => ("database", "database"),
                            };
                            errors.push(issue(
                            &parsed,
                            &path,
                            format!(
                                "`{t}` is in the {what} `{other}`, not the connection's {whose} `{home}`: \
                                 only tables of the connection's scanned catalog may be read"
                            ),
                        ));
                            ok = false;
                        } else if !catalog.contains(&(
                            home.clone(),
                            t.dataset.clone(),
                            t.table.clone(),
                        )) {
                            errors.push(issue(
                            &parsed,
                            &path,
                            format!(
                                "`{}.{}` is not in the connection's scanned catalog; check the name, or scan the connection again",
                                t.dataset, t.table
                            ),
                        ));
                            ok = false;
                        }
                    }
                    tables.insert(q.id.clone(), refs);
                    if ok {
                        runnable.push(i);
                    }
                }
            }
        }
        if unscanned {
            errors.push(issue(
                &parsed,
                "connection",
                "the connection's catalog is empty; scan the connection first",
            ));
        }

        // Dry runs: bytes under the cap, and the output columns for the tiles.
        let mut columns: HashMap<String, Vec<Column>> = HashMap::new();
        if !runnable.is_empty() && connection.status == ConnectionStatus::Validated {
            let warehouse = self.0.connections.warehouse(&connection).await?;
            let cap = team_settings.max_bytes_billed();
            let mut running = futures::stream::iter(runnable)
                .map(|i| dry_run(warehouse.clone(), &spec, &compiled[i], i))
                .buffer_unordered(DRY_RUN_PARALLELISM);
            while let Some((i, result)) = running.next().await {
                let path = format!("queries[{i}].sql");
                match result {
                Ok(dry) if dry.bytes > cap => errors.push(issue(
                    &parsed,
                    &path,
                    format!(
                        "the warehouse estimates this query reads {} bytes, over the team's cap of {cap} bytes (settings.max_bytes_billed); filter on the partitioning column or select fewer columns",
                        dry.bytes
                    ),
                )),
                Ok(dry) => {
                    columns.insert(compiled[i].id.clone(), dry.columns);
                }
                Err(e) => errors.push(issue(&parsed, &path, format!("the warehouse refused the dry run: {e}"))),
            }
            }
        }

        // Tiles' columns exist in their query's output.
        for (t, tile) in spec.layout.iter().enumerate() {
            let Some(query) = tile.query.as_deref() else {
                continue;
            };
            let Some(cols) = columns.get(query) else {
                continue;
            };
            for (field, column) in tile.column_refs() {
                if !cols.iter().any(|c| c.name == column) {
                    let have: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
                    errors.push(issue(
                        &parsed,
                        &format!("layout[{t}].{field}"),
                        format!(
                            "`{column}` is not a column of query `{query}` (it has: {})",
                            have.join(", ")
                        ),
                    ));
                }
            }
        }

        errors.sort_by_key(|i| (i.line.unwrap_or(usize::MAX), i.column.unwrap_or(0)));
        let checked = if errors.is_empty() {
            Some(Checked {
                spec,
                connection,
                queries: compiled,
                tables,
            })
        } else {
            None
        };
        Ok(finish(errors, warnings, checked))
    }
}

async fn dry_run(
    warehouse: Arc<dyn Warehouse>,
    spec: &DashboardSpec,
    query: &CompiledQuery,
    index: usize,
) -> (
    usize,
    Result<platform::warehouse::DryRun, platform::warehouse::WarehouseError>,
) {
    let params: Vec<Param> = query
        .params
        .iter()
        .map(|name| {
            let value = spec
                .parameters
                .iter()
                .find(|p| &p.id == name)
                .map(|p| {
                    p.default
                        .as_ref()
                        .and_then(|d| p.r#type.from_json(d).ok())
                        .unwrap_or_else(|| placeholder(&p.r#type))
                })
                .unwrap_or(ParamValue::String(String::new()));
            Param {
                name: name.clone(),
                value,
            }
        })
        .collect();
    (index, warehouse.dry_run(&query.sql, &params).await)
}

/// A checked dashboard, or 422 with the report (for writes).
pub fn require_valid(outcome: Outcome) -> Result<Checked, ApiError> {
    match outcome.checked {
        Some(c) => Ok(c),
        None => {
            let errors = outcome
                .report
                .errors
                .into_iter()
                .map(|i| {
                    edge::error::FieldError::new(
                        i.path,
                        match (i.line, i.column) {
                            (Some(l), Some(c)) => format!("{} (line {l}, column {c})", i.message),
                            _ => i.message,
                        },
                    )
                })
                .collect::<Vec<_>>();
            Err(crate::error::ServiceError::InvalidDashboard(errors).into())
        }
    }
}

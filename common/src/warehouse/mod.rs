//! The warehouse port: what Bridge asks of a customer's warehouse, and two adapters
//! (BigQuery, and Postgres, which is also the local demo warehouse).
//!
//! Every query runs under [`Limits`]: a byte cap (BigQuery's `maximumBytesBilled`; on
//! Postgres the planner's estimate), a timeout and a row cap. Values come back as JSON in
//! the order of the columns. Errors are [`WarehouseError`]s whose messages are fit for the
//! person who owns the warehouse, and never carry the credentials.

pub mod bigquery;
pub mod postgres;

use std::{fmt, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// SQL dialects Bridge parses and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Bigquery,
    Postgres,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bigquery => "bigquery",
            Self::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bigquery" => Some(Self::Bigquery),
            "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bound query parameter's value. Parameters are always bound, never spliced into SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Date(time::Date),
    Timestamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
}

/// A named parameter. BigQuery binds by name (`@name`); Postgres by position (`$1` is the
/// first of the slice).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: ParamValue,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refuse queries expected to read more than this many bytes.
    pub max_bytes: u64,
    pub timeout: Duration,
    /// Rows kept; more are dropped and the result is marked truncated.
    pub max_rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// The warehouse's own type name (`INT64`, `int8`, `TIMESTAMP`, …).
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, Clone)]
pub struct DryRun {
    /// Estimated bytes the query would read.
    pub bytes: u64,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Bytes the warehouse processed (BigQuery), or the planner's estimate (Postgres).
    pub bytes_scanned: Option<u64>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// The dataset id (BigQuery) or schema name (Postgres).
    pub name: String,
    pub fully_qualified_name: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub fully_qualified_name: String,
    /// `TABLE`, `VIEW`, `MATERIALIZED_VIEW` or `EXTERNAL`.
    pub table_type: String,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    /// e.g. `{"type": "DAY", "field": "order_date"}`.
    pub partitioning: Option<serde_json::Value>,
    pub clustering: Option<Vec<String>>,
    pub last_modified: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
    pub description: Option<String>,
    pub is_partitioning: bool,
    /// 1-based position among the clustering columns, if clustered on this one.
    pub clustering_ordinal: Option<i32>,
}

/// One permission or reachability check of `check_access`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AccessCheck {
    pub name: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("the warehouse rejected the credentials: {0}")]
    Credentials(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("the query is invalid: {0}")]
    InvalidQuery(String),
    #[error("the query would read {} bytes, over the cap of {limit} bytes", estimated.map_or_else(|| "more than the cap of".to_owned(), |e| e.to_string()))]
    BytesLimit { limit: u64, estimated: Option<u64> },
    #[error("the query did not finish within {0:?}")]
    Timeout(Duration),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the warehouse is unreachable: {0}")]
    Unavailable(String),
}

impl WarehouseError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "warehouse_credentials_rejected",
            Self::PermissionDenied(_) => "warehouse_permission_denied",
            Self::InvalidQuery(_) => "invalid_query",
            Self::BytesLimit { .. } => "bytes_limit_exceeded",
            Self::Timeout(_) => "query_timeout",
            Self::NotFound(_) => "warehouse_object_not_found",
            Self::Unsupported(_) => "unsupported",
            Self::Unavailable(_) => "warehouse_unavailable",
        }
    }

    /// Removes every occurrence of each secret from the message (defence in depth: drivers
    /// should not echo credentials, and this makes sure).
    pub fn redact(self, secrets: &[&str]) -> Self {
        let clean = |m: String| {
            secrets
                .iter()
                .filter(|s| s.len() >= 4)
                .fold(m, |m, s| m.replace(s, "[redacted]"))
        };
        match self {
            Self::Credentials(m) => Self::Credentials(clean(m)),
            Self::PermissionDenied(m) => Self::PermissionDenied(clean(m)),
            Self::InvalidQuery(m) => Self::InvalidQuery(clean(m)),
            Self::NotFound(m) => Self::NotFound(clean(m)),
            Self::Unsupported(m) => Self::Unsupported(clean(m)),
            Self::Unavailable(m) => Self::Unavailable(clean(m)),
            other => other,
        }
    }
}

/// A connected warehouse.
#[async_trait]
pub trait Warehouse: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Checks that the credentials work and carry the permissions Bridge needs.
    async fn check_access(&self) -> Vec<AccessCheck>;
    /// Estimates bytes and reports the output columns, without running the query.
    async fn dry_run(&self, sql: &str, params: &[Param]) -> Result<DryRun, WarehouseError>;
    async fn query(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
    ) -> Result<QueryResult, WarehouseError>;
    async fn list_datasets(&self) -> Result<Vec<DatasetInfo>, WarehouseError>;
    async fn list_tables(&self, dataset: &str) -> Result<Vec<TableInfo>, WarehouseError>;
    async fn table_columns(
        &self,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, WarehouseError>;
}

/// Trims a driver's message to its first line and a sane length.
pub(crate) fn short(msg: impl fmt::Display) -> String {
    let s = msg.to_string();
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line.to_owned()
    }
}

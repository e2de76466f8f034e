//! The warehouse port: what Bridge asks of a customer's warehouse, and two adapters
//! (BigQuery, and Postgres, which is also the local demo warehouse).
//!
//! Every query runs under [`Limits`]: a byte cap (BigQuery's `maximumBytesBilled`; on
//! Postgres the planner's estimate), a timeout, a row cap and a cap on the result's size
//! (reading stops as soon as the rows read so far exceed it). Values come back as JSON in
//! the order of the columns; decimals (`NUMERIC`, `BIGNUMERIC`, Postgres `numeric`) as
//! JSON strings holding every digit, since a JSON number would be read as a double. Errors are [`WarehouseError`]s whose messages are fit for the
//! person who owns the warehouse, and never carry the credentials.

pub mod bigquery;
pub mod postgres;

use std::{fmt, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use base::{Dialect, Param, ParamValue};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refuse queries expected to read more than this many bytes.
    pub max_bytes: u64,
    pub timeout: Duration,
    /// Rows kept; more are dropped and the result is marked truncated.
    pub max_rows: usize,
    /// The most bytes the result may take as JSON; a larger one is an error
    /// ([`WarehouseError::ResultTooLarge`]), not a truncation.
    pub max_result_bytes: usize,
}

/// About how many bytes `v` takes as JSON: exact for everything but escapes in strings
/// and the digits of floats. Cheap enough to run on every cell, so that reading a result
/// can stop as soon as it is too large, before it is all in memory.
pub fn json_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => digits(u),
            (None, Some(i)) => 1 + digits(i.unsigned_abs()),
            _ => 24,
        },
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.len() + items.iter().map(json_size).sum::<usize>(),
        Value::Object(members) => {
            2 + members.len() * 2
                + members
                    .iter()
                    .map(|(k, v)| k.len() + 2 + json_size(v))
                    .sum::<usize>()
        }
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Adds rows' sizes as they are read, and says when the result is over its cap.
#[derive(Debug)]
pub struct ResultBudget {
    used: usize,
    limit: usize,
}

impl ResultBudget {
    pub fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    /// Counts one row (its cells, commas and brackets); an error once over the cap.
    pub fn add(&mut self, row: &[serde_json::Value]) -> Result<(), WarehouseError> {
        self.used += 3 + row.len() + row.iter().map(json_size).sum::<usize>();
        if self.used > self.limit {
            Err(WarehouseError::ResultTooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }
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
    /// A digest of the columns (names, types, nullability, descriptions), when the listing
    /// can tell it cheaply: it changes when a column is added, dropped or changed, so
    /// that columns cached under the table's fingerprint are read again.
    pub columns_digest: Option<String>,
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
    /// The failure's stable code (`warehouse_unavailable`, `warehouse_credentials_rejected`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl AccessCheck {
    /// A check's outcome: what it found, or why it failed.
    pub fn of(name: &str, result: Result<String, WarehouseError>) -> Self {
        match result {
            Ok(message) => Self {
                name: name.to_owned(),
                ok: true,
                message,
                code: None,
            },
            Err(e) => Self::failed(name, &e),
        }
    }

    pub fn failed(name: &str, e: &WarehouseError) -> Self {
        Self {
            name: name.to_owned(),
            ok: false,
            message: e.to_string(),
            code: Some(e.code().to_owned()),
        }
    }

    /// Did it fail for a reason that says nothing about the credentials (the warehouse was
    /// unreachable or slow)?
    pub fn transient(&self) -> bool {
        !self.ok
            && matches!(
                self.code.as_deref(),
                Some("warehouse_unavailable" | "query_timeout")
            )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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
    #[error(
        "the result is larger than the cap of {limit} bytes: select fewer columns or rows, or aggregate"
    )]
    ResultTooLarge { limit: usize },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the warehouse is unreachable: {0}")]
    Unavailable(String),
    /// Not sent: the team's daily warehouse budget is spent (decided by the caller that
    /// meters jobs, never by an adapter).
    #[error("{0}")]
    BudgetExceeded(String),
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
            Self::ResultTooLarge { .. } => "result_too_large",
            Self::NotFound(_) => "warehouse_object_not_found",
            Self::Unsupported(_) => "unsupported",
            Self::Unavailable(_) => "warehouse_unavailable",
            Self::BudgetExceeded(_) => "budget_exceeded",
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

/// The first `N` cells of a metadata row Bridge asked for: a shorter row (a warehouse or
/// proxy answering with fewer columns than the query names) is an error, not a panic.
pub(crate) fn cells<'a, const N: usize>(
    row: &'a [serde_json::Value],
    what: &str,
) -> Result<&'a [serde_json::Value; N], WarehouseError> {
    row.get(..N)
        .and_then(|cells| <&[serde_json::Value; N]>::try_from(cells).ok())
        .ok_or_else(|| {
            WarehouseError::Unavailable(format!(
                "the warehouse answered {what} with {} columns where {N} were asked for",
                row.len()
            ))
        })
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

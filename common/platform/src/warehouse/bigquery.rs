//! BigQuery through its REST API (`jobs.query`, `jobs.getQueryResults`, `jobs.cancel`,
//! `datasets.list`, `tables.list`), spoken directly with `reqwest` and the typed bodies below. Every job that can bill carries `maximumBytesBilled`; dry runs come
//! before runs; results are paged with page tokens up to the row cap; a job that outlives
//! its timeout is cancelled.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Number, Value};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{
    AccessCheck, Column, ColumnInfo, DatasetInfo, Dialect, DryRun, Limits, Param, ParamValue,
    QueryResult, ResultBudget, TableInfo, Warehouse, WarehouseError, cells, short,
};
use crate::{gcp::AuthError, gcp::BIGQUERY_SCOPE, gcp::GoogleAuth, gcp::ServiceAccountKey};

/// A token that could not be had, as the warehouse owner can act on it.
fn auth_error(e: AuthError) -> WarehouseError {
    match e {
        AuthError::Rejected(m) => WarehouseError::Credentials(format!(
            "Google rejected the service-account key: {}",
            short(m)
        )),
        AuthError::Unavailable(m) => WarehouseError::Unavailable(format!(
            "Google's token endpoint could not be reached: {}",
            short(m)
        )),
    }
}

/// Caps for Bridge's own metadata queries (INFORMATION_SCHEMA bills at least 10 MB).
const METADATA_LIMITS: Limits = Limits {
    max_bytes: 100_000_000,
    timeout: Duration::from_secs(30),
    max_rows: 100_000,
    max_result_bytes: 256 * 1024 * 1024,
};
const PAGE_ROWS: usize = 10_000;

// ------------------------------------------------------------------ REST bodies
// https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query and getQueryResults:
// only the fields Bridge sends or reads. 64-bit numbers travel as strings.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest<'a> {
    query: &'a str,
    use_legacy_sql: bool,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_bytes_billed: Option<String>,
    timeout_ms: u32,
    max_results: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    query_parameters: Vec<QueryParameter>,
    use_query_cache: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryParameter {
    name: String,
    parameter_type: ParameterType,
    parameter_value: ParameterValue,
}

#[derive(Serialize)]
struct ParameterType {
    r#type: &'static str,
}

#[derive(Serialize)]
struct ParameterValue {
    value: String,
}

/// The answer of `jobs.query` and of `jobs.getQueryResults` (the same shape).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct QueryResponse {
    job_reference: Option<JobReference>,
    schema: Option<TableSchema>,
    rows: Vec<TableRow>,
    page_token: Option<String>,
    total_rows: Option<String>,
    total_bytes_processed: Option<String>,
    job_complete: Option<bool>,
    errors: Vec<ErrorProto>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
struct JobReference {
    job_id: String,
    location: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TableSchema {
    fields: Vec<TableFieldSchema>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct TableFieldSchema {
    name: String,
    r#type: String,
    mode: Option<String>,
    fields: Vec<TableFieldSchema>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TableRow {
    f: Vec<TableCell>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TableCell {
    v: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorProto {
    reason: Option<String>,
    message: Option<String>,
}

/// The body of an HTTP error: `{"error": {"code", "message", "errors": [{"reason"}]}}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorDetail {
    code: u16,
    message: String,
    errors: Vec<ErrorProto>,
}

pub struct BigQueryWarehouse {
    auth: GoogleAuth,
    http: reqwest::Client,
    base: String,
    project: String,
    /// Rows asked for per page (BigQuery may answer fewer).
    page_rows: usize,
}

fn timestamp_to_rfc3339(seconds: &str) -> Option<String> {
    let secs: f64 = seconds.parse().ok()?;
    let nanos = (secs * 1e9).round() as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn type_name(field: &TableFieldSchema) -> String {
    if field.r#type.is_empty() {
        "STRING".into()
    } else {
        field.r#type.clone()
    }
}

/// One cell of BigQuery's `{"f": [{"v": …}]}` rows, typed by its schema field.
fn convert(field: &TableFieldSchema, value: &Value) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    if field.mode.as_deref() == Some("REPEATED") {
        let scalar = TableFieldSchema {
            mode: None,
            ..field.clone()
        };
        return Value::Array(
            value
                .as_array()
                .map(|a| a.iter().map(|item| convert(&scalar, &item["v"])).collect())
                .unwrap_or_default(),
        );
    }
    let ty = type_name(field);
    let s = value.as_str();
    match ty.as_str() {
        "RECORD" | "STRUCT" => {
            let fields = &field.fields;
            let cells = value["f"].as_array().cloned().unwrap_or_default();
            Value::Object(
                fields
                    .iter()
                    .zip(cells.iter())
                    .map(|(f, c)| (f.name.clone(), convert(f, &c["v"])))
                    .collect(),
            )
        }
        "INTEGER" | "INT64" => s
            .and_then(|s| s.parse::<i64>().ok())
            .map_or_else(|| value.clone(), Value::from),
        // Decimals stay the strings BigQuery sends, with every digit.
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => value.clone(),
        "FLOAT" | "FLOAT64" => s
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        "BOOLEAN" | "BOOL" => s.map_or_else(
            || value.clone(),
            |s| Value::Bool(s.eq_ignore_ascii_case("true")),
        ),
        "TIMESTAMP" => s
            .and_then(timestamp_to_rfc3339)
            .map_or_else(|| value.clone(), Value::String),
        _ => value.clone(),
    }
}

fn convert_rows(
    schema: &[TableFieldSchema],
    rows: &[TableRow],
    into: &mut Vec<Vec<Value>>,
    cap: usize,
    budget: &mut ResultBudget,
) -> Result<(), WarehouseError> {
    for row in rows {
        if into.len() >= cap {
            break;
        }
        let converted: Vec<Value> = schema
            .iter()
            .enumerate()
            .map(|(i, f)| row.f.get(i).map_or(Value::Null, |c| convert(f, &c.v)))
            .collect();
        budget.add(&converted)?;
        into.push(converted);
    }
    Ok(())
}

fn bq_param(p: &Param) -> QueryParameter {
    let (ty, value) = match &p.value {
        ParamValue::Bool(b) => ("BOOL", b.to_string()),
        ParamValue::Int(i) => ("INT64", i.to_string()),
        ParamValue::Float(f) => ("FLOAT64", f.to_string()),
        ParamValue::String(s) => ("STRING", s.clone()),
        ParamValue::Date(d) => ("DATE", d.to_string()),
        ParamValue::Timestamp(t) => (
            "TIMESTAMP",
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        ),
    };
    QueryParameter {
        name: p.name.clone(),
        parameter_type: ParameterType { r#type: ty },
        parameter_value: ParameterValue { value },
    }
}

/// BigQuery's HTTP error, mapped to what a warehouse owner can act on.
fn http_error(status: reqwest::StatusCode, body: &[u8], limit: Option<u64>) -> WarehouseError {
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
        return WarehouseError::Unavailable(format!("BigQuery answered {status}"));
    };
    let reason = error
        .errors
        .first()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    let msg = short(&error.message);
    let code = if error.code == 0 {
        status.as_u16()
    } else {
        error.code
    };
    match (reason.as_str(), code) {
        ("bytesBilledLimitExceeded", _) => WarehouseError::BytesLimit {
            limit: limit.unwrap_or(0),
            estimated: None,
        },
        (_, 401) => WarehouseError::Credentials(msg),
        ("accessDenied", _) | (_, 403) => WarehouseError::PermissionDenied(msg),
        ("notFound", _) | (_, 404) => WarehouseError::NotFound(msg),
        ("invalidQuery" | "invalid" | "responseTooLarge", _) | (_, 400) => {
            WarehouseError::InvalidQuery(msg)
        }
        _ => WarehouseError::Unavailable(msg),
    }
}

impl BigQueryWarehouse {
    /// From a service-account key (JSON). The key's own `token_uri` is ignored for
    /// `token_uri` (Google's, unless an emulator's is configured).
    pub async fn from_service_account(
        key_json: &[u8],
        base_url: &str,
        token_uri: &str,
    ) -> Result<Self, WarehouseError> {
        let key: ServiceAccountKey = serde_json::from_slice(key_json).map_err(|_| {
            WarehouseError::Credentials("the stored key is not a service-account key".into())
        })?;
        let project = key.project_id.clone().ok_or_else(|| {
            WarehouseError::Credentials("the service-account key names no project_id".into())
        })?;
        let auth =
            GoogleAuth::service_account(key, token_uri, &[BIGQUERY_SCOPE]).map_err(auth_error)?;
        Self::with_auth(auth, project, base_url).await
    }

    pub async fn with_auth(
        auth: GoogleAuth,
        project: String,
        base_url: &str,
    ) -> Result<Self, WarehouseError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| WarehouseError::Unavailable(short(e)))?;
        Ok(Self {
            auth,
            http,
            base,
            project,
            page_rows: PAGE_ROWS,
        })
    }

    /// Asks for `rows` rows per page instead of 10000 (tests exercise paging with this).
    pub fn with_page_rows(mut self, rows: usize) -> Self {
        self.page_rows = rows.max(1);
        self
    }

    /// Sends one REST call with a fresh token; a non-2xx answer is mapped by
    /// [`http_error`] (`limit`: the byte cap the call ran under, for its message).
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        limit: Option<u64>,
    ) -> Result<T, WarehouseError> {
        let token = self.auth.token().await.map_err(auth_error)?;
        let r = crate::telemetry::propagate(request)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| WarehouseError::Unavailable(short(e.without_url())))?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| WarehouseError::Unavailable(short(e.without_url())))?;
        if !status.is_success() {
            return Err(http_error(status, &body, limit));
        }
        serde_json::from_slice(&body).map_err(|e| {
            WarehouseError::Unavailable(format!("BigQuery's answer could not be read: {e}"))
        })
    }

    /// A GET of the REST API (listings).
    async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, WarehouseError> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.call(request, None).await
    }

    fn project_url(&self, rest: &str) -> String {
        format!("{}/projects/{}{rest}", self.base, self.project)
    }

    async fn run(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
        dry_run: bool,
    ) -> Result<(Vec<TableFieldSchema>, QueryResult), WarehouseError> {
        let deadline = Instant::now() + limits.timeout;
        let wait_ms = |d: Instant| {
            u32::try_from(
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(10_000),
            )
            .unwrap_or(10_000)
        };
        let page = u32::try_from(limits.max_rows.clamp(1, self.page_rows)).unwrap_or(10_000);
        let request = QueryRequest {
            query: sql,
            use_legacy_sql: false,
            dry_run,
            maximum_bytes_billed: (!dry_run).then(|| limits.max_bytes.to_string()),
            timeout_ms: wait_ms(deadline),
            max_results: page,
            parameter_mode: (!params.is_empty()).then_some("NAMED"),
            query_parameters: params.iter().map(bq_param).collect(),
            use_query_cache: true,
        };
        let cap = Some(limits.max_bytes);
        let first: QueryResponse = tokio::time::timeout_at(
            deadline,
            self.call(
                self.http.post(self.project_url("/queries")).json(&request),
                cap,
            ),
        )
        .await
        .map_err(|_| WarehouseError::Timeout(limits.timeout))??;
        // Some servers answer a failed query with 200 and an `errors` array.
        if let Some(err) = first.errors.first() {
            let msg = short(err.message.as_deref().unwrap_or("the query failed"));
            return Err(match err.reason.as_deref() {
                Some("bytesBilledLimitExceeded") => WarehouseError::BytesLimit {
                    limit: limits.max_bytes,
                    estimated: None,
                },
                Some("accessDenied") => WarehouseError::PermissionDenied(msg),
                _ => WarehouseError::InvalidQuery(msg),
            });
        }
        let mut bytes = first
            .total_bytes_processed
            .as_deref()
            .and_then(|b| b.parse::<u64>().ok());
        let mut schema = first.schema.map(|s| s.fields).unwrap_or_default();
        let mut rows = Vec::new();
        let mut budget = ResultBudget::new(limits.max_result_bytes);
        if dry_run {
            let columns = schema
                .iter()
                .map(|f| Column {
                    name: f.name.clone(),
                    data_type: type_name(f),
                })
                .collect();
            return Ok((
                schema,
                QueryResult {
                    columns,
                    rows,
                    bytes_scanned: bytes,
                    truncated: false,
                },
            ));
        }
        let job = first.job_reference.clone().unwrap_or_default();
        let job_id = job.job_id;
        let location = job.location;
        let mut complete = first.job_complete.unwrap_or(true);
        let mut token = first.page_token.clone();
        if complete {
            convert_rows(
                &schema,
                &first.rows,
                &mut rows,
                limits.max_rows,
                &mut budget,
            )?;
        }
        let mut total_rows = first
            .total_rows
            .as_deref()
            .and_then(|t| t.parse::<usize>().ok());
        // Wait for the job, then page through its rows up to the cap.
        while !complete || (token.is_some() && rows.len() < limits.max_rows) {
            if Instant::now() >= deadline {
                self.cancel(&job_id, location.as_deref()).await;
                return Err(WarehouseError::Timeout(limits.timeout));
            }
            let mut query = vec![
                ("maxResults", page.to_string()),
                ("timeoutMs", wait_ms(deadline).to_string()),
            ];
            if let Some(location) = &location {
                query.push(("location", location.clone()));
            }
            if let (true, Some(token)) = (complete, &token) {
                query.push(("pageToken", token.clone()));
            }
            let request = self
                .http
                .get(self.project_url(&format!("/queries/{job_id}")))
                .query(&query);
            let next: QueryResponse = tokio::time::timeout_at(deadline, self.call(request, cap))
                .await
                .map_err(|_| WarehouseError::Timeout(limits.timeout))??;
            if let Some(err) = next.errors.first() {
                return Err(WarehouseError::InvalidQuery(short(
                    err.message.as_deref().unwrap_or("the query failed"),
                )));
            }
            if !next.job_complete.unwrap_or(true) {
                continue;
            }
            if !complete {
                complete = true;
                schema = next.schema.map(|s| s.fields).unwrap_or(schema);
            }
            bytes = next
                .total_bytes_processed
                .as_deref()
                .and_then(|b| b.parse().ok())
                .or(bytes);
            total_rows = next
                .total_rows
                .as_deref()
                .and_then(|t| t.parse().ok())
                .or(total_rows);
            convert_rows(&schema, &next.rows, &mut rows, limits.max_rows, &mut budget)?;
            token = next.page_token;
        }
        let truncated = total_rows.is_some_and(|t| t > rows.len())
            || (token.is_some() && rows.len() >= limits.max_rows);
        let columns = schema
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                data_type: type_name(f),
            })
            .collect();
        Ok((
            schema,
            QueryResult {
                columns,
                rows,
                bytes_scanned: bytes,
                truncated,
            },
        ))
    }

    /// `jobs.cancel`, best effort: the job is over its time, and its answer changes nothing.
    async fn cancel(&self, job_id: &str, location: Option<&str>) {
        let mut request = self
            .http
            .post(self.project_url(&format!("/jobs/{job_id}/cancel")));
        if let Some(location) = location {
            request = request.query(&[("location", location)]);
        }
        let _ = self.call::<Value>(request, None).await;
    }

    /// Descriptions and last-modified times from `INFORMATION_SCHEMA.SCHEMATA(_OPTIONS)`, one
    /// query per region the datasets live in. Metadata is a nicety: failures leave it empty.
    async fn enrich_datasets(&self, datasets: &mut [DatasetInfo]) {
        let mut regions: Vec<String> = datasets.iter().filter_map(|d| d.location.clone()).collect();
        regions.sort();
        regions.dedup();
        let project = self.project.replace('`', "");
        for region in regions {
            let qualifier = format!("region-{}", region.to_lowercase());
            if !qualifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                continue;
            }
            let sql = format!(
                "SELECT schema_name, last_modified_time FROM `{project}`.`{qualifier}`.INFORMATION_SCHEMA.SCHEMATA"
            );
            if let Ok((_, r)) = self.run(&sql, &[], &METADATA_LIMITS, false).await {
                for row in r.rows {
                    let (Some(name), Some(when)) = (
                        row.first().and_then(Value::as_str),
                        row.get(1).and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let when =
                        OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339)
                            .ok();
                    if let Some(d) = datasets.iter_mut().find(|d| d.name == name) {
                        d.last_modified = when;
                    }
                }
            }
            let sql = format!(
                "SELECT schema_name, option_value FROM `{project}`.`{qualifier}`.INFORMATION_SCHEMA.SCHEMATA_OPTIONS \
                 WHERE option_name = 'description'"
            );
            if let Ok((_, r)) = self.run(&sql, &[], &METADATA_LIMITS, false).await {
                for row in r.rows {
                    let (Some(name), Some(text)) = (
                        row.first().and_then(Value::as_str),
                        row.get(1).and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    if let Some(d) = datasets.iter_mut().find(|d| d.name == name) {
                        d.description = Some(text.trim_matches('"').to_owned());
                    }
                }
            }
        }
    }

    /// Row counts, sizes and last-modified times from the dataset's `__TABLES__`, where
    /// BigQuery exposes it (emulators do not: then they stay unknown).
    async fn table_stats(
        &self,
        path: &str,
    ) -> std::collections::HashMap<String, (Option<i64>, Option<i64>, Option<OffsetDateTime>)> {
        let sql = format!(
            "SELECT table_id, row_count, size_bytes, last_modified_time FROM {path}.__TABLES__"
        );
        let Ok((_, r)) = self.run(&sql, &[], &METADATA_LIMITS, false).await else {
            return Default::default();
        };
        r.rows
            .into_iter()
            .filter_map(|row| {
                let [name, rows, size, millis] = cells::<4>(&row, "__TABLES__").ok()?;
                let name = name.as_str()?.to_owned();
                let when = millis.as_i64().and_then(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                });
                Some((name, (rows.as_i64(), size.as_i64(), when)))
            })
            .collect()
    }

    fn dataset_path(&self, dataset: &str) -> Result<String, WarehouseError> {
        dataset_path(&self.project, dataset)
    }
}

/// `` `project`.`dataset` `` for SQL, when `dataset` is a plain dataset id (letters, digits
/// and underscores, as BigQuery requires): nothing else can reach the SQL text.
fn dataset_path(project: &str, dataset: &str) -> Result<String, WarehouseError> {
    let plain = !dataset.is_empty()
        && dataset.len() <= 1024
        && dataset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plain {
        return Err(WarehouseError::NotFound(format!("dataset `{dataset}`")));
    }
    Ok(format!("`{}`.`{dataset}`", project.replace('`', "")))
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn dialect(&self) -> Dialect {
        Dialect::Bigquery
    }

    #[tracing::instrument(name = "warehouse.check_access", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn check_access(&self) -> Vec<AccessCheck> {
        let mut checks = Vec::new();
        let mut push = |name: &str, r: Result<String, WarehouseError>| {
            let ok = r.is_ok();
            checks.push(AccessCheck::of(name, r));
            ok
        };
        let authed = self
            .auth
            .token()
            .await
            .map(|_| "Google issued an access token".to_owned())
            .map_err(auth_error);
        if !push("authenticate", authed) {
            return checks;
        }
        let dry = self
            .dry_run("SELECT 1", &[])
            .await
            .map(|d| format!("a dry run of SELECT 1 would read {} bytes", d.bytes));
        push("jobs.create", dry);
        let datasets = self.list_datasets().await;
        let first = datasets
            .as_ref()
            .ok()
            .and_then(|d| d.first().map(|d| d.name.clone()));
        push(
            "datasets.list",
            datasets.map(|d| format!("{} datasets visible in {}", d.len(), self.project)),
        );
        if let Some(dataset) = first {
            let path = format!("/projects/{}/datasets/{dataset}/tables", self.project);
            let tables = self.get_json(&path, &[("maxResults", "1".into())]).await;
            push(
                "tables.list",
                tables.map(|_| format!("tables of `{dataset}` can be listed")),
            );
        }
        checks
    }

    #[tracing::instrument(name = "warehouse.dry_run", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn dry_run(&self, sql: &str, params: &[Param]) -> Result<DryRun, WarehouseError> {
        let (_, r) = self.run(sql, params, &METADATA_LIMITS, true).await?;
        Ok(DryRun {
            bytes: r.bytes_scanned.unwrap_or(0),
            columns: r.columns,
        })
    }

    /// A dry run first (free): a query estimated over the cap is refused before any job
    /// can bill. The job itself still carries `maximumBytesBilled`, for when the estimate
    /// is low (BigQuery bills at least 10 MiB, and clustering makes estimates upper bounds).
    #[tracing::instrument(name = "warehouse.query", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn query(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
    ) -> Result<QueryResult, WarehouseError> {
        let started = Instant::now();
        let estimate = self
            .run(
                sql,
                params,
                &Limits {
                    timeout: limits.timeout,
                    ..METADATA_LIMITS
                },
                true,
            )
            .await?
            .1;
        if let Some(bytes) = estimate.bytes_scanned
            && bytes > limits.max_bytes
        {
            return Err(WarehouseError::BytesLimit {
                limit: limits.max_bytes,
                estimated: Some(bytes),
            });
        }
        let remaining = limits
            .timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        Ok(self
            .run(
                sql,
                params,
                &Limits {
                    timeout: remaining,
                    ..*limits
                },
                false,
            )
            .await?
            .1)
    }

    #[tracing::instrument(name = "warehouse.list_datasets", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn list_datasets(&self) -> Result<Vec<DatasetInfo>, WarehouseError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("maxResults", "1000".to_owned())];
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let page = self
                .get_json(&format!("/projects/{}/datasets", self.project), &query)
                .await?;
            for d in page["datasets"].as_array().into_iter().flatten() {
                let Some(name) = string(&d["datasetReference"]["datasetId"]) else {
                    continue;
                };
                out.push(DatasetInfo {
                    fully_qualified_name: format!("{}.{name}", self.project),
                    name,
                    description: None,
                    location: string(&d["location"]),
                    last_modified: None,
                });
            }
            token = string(&page["nextPageToken"]);
            if token.is_none() {
                break;
            }
        }
        self.enrich_datasets(&mut out).await;
        Ok(out)
    }

    #[tracing::instrument(name = "warehouse.list_tables", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn list_tables(&self, dataset: &str) -> Result<Vec<TableInfo>, WarehouseError> {
        let path = self.dataset_path(dataset)?;
        // Every column comes along (not only the partitioning and clustering keys), so that
        // the table's fingerprint changes with its columns and cached columns are refreshed.
        let sql = format!(
            "SELECT t.table_name, t.table_type, \
                    ARRAY(SELECT AS STRUCT c.column_name, c.data_type, c.is_nullable, c.is_partitioning_column, \
                                           c.clustering_ordinal_position \
                          FROM {path}.INFORMATION_SCHEMA.COLUMNS c \
                          WHERE c.table_name = t.table_name ORDER BY c.ordinal_position) AS columns \
             FROM {path}.INFORMATION_SCHEMA.TABLES t ORDER BY t.table_name"
        );
        let (_, r) = self.run(&sql, &[], &METADATA_LIMITS, false).await?;
        let stats = self.table_stats(&path).await;
        let mut tables = Vec::with_capacity(r.rows.len());
        for row in r.rows {
            let [name, kind, columns] = cells::<3>(&row, "INFORMATION_SCHEMA.TABLES")?;
            let name = name.as_str().unwrap_or_default().to_owned();
            let (row_count, size_bytes, last_modified) =
                stats.get(&name).copied().unwrap_or_default();
            let table_type = match kind.as_str().unwrap_or("BASE TABLE") {
                "VIEW" => "VIEW",
                "MATERIALIZED VIEW" => "MATERIALIZED_VIEW",
                "EXTERNAL" => "EXTERNAL",
                _ => "TABLE",
            };
            let columns = columns.as_array().cloned().unwrap_or_default();
            let partition = columns
                .iter()
                .find(|k| k["is_partitioning_column"] == "YES")
                .and_then(|k| string(&k["column_name"]));
            let mut clustered: Vec<(i64, String)> = columns
                .iter()
                .filter_map(|k| {
                    Some((
                        k["clustering_ordinal_position"].as_i64()?,
                        string(&k["column_name"])?,
                    ))
                })
                .collect();
            clustered.sort();
            tables.push(TableInfo {
                fully_qualified_name: format!("{}.{dataset}.{name}", self.project),
                name,
                table_type: table_type.into(),
                row_count,
                size_bytes,
                partitioning: partition.map(|field| serde_json::json!({ "field": field })),
                clustering: (!clustered.is_empty())
                    .then(|| clustered.into_iter().map(|(_, c)| c).collect()),
                last_modified,
                columns_digest: Some(base::crypto::sha256_hex(
                    Value::Array(columns).to_string().as_bytes(),
                )),
            });
        }
        Ok(tables)
    }

    #[tracing::instrument(name = "warehouse.table_columns", skip_all, fields(otel.kind = "client", warehouse = "bigquery"))]
    async fn table_columns(
        &self,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, WarehouseError> {
        let path = self.dataset_path(dataset)?;
        let sql = format!(
            "SELECT column_name, data_type, is_nullable, is_partitioning_column, clustering_ordinal_position \
             FROM {path}.INFORMATION_SCHEMA.COLUMNS WHERE table_name = @table ORDER BY ordinal_position"
        );
        let params = [Param {
            name: "table".into(),
            value: ParamValue::String(table.to_owned()),
        }];
        let (_, r) = self.run(&sql, &params, &METADATA_LIMITS, false).await?;
        if r.rows.is_empty() {
            return Err(WarehouseError::NotFound(format!(
                "table `{dataset}.{table}`"
            )));
        }
        r.rows
            .iter()
            .map(|row| {
                let [name, ty, nullable, partitioning, clustering] =
                    cells::<5>(row, "INFORMATION_SCHEMA.COLUMNS")?;
                Ok(ColumnInfo {
                    name: name.as_str().unwrap_or_default().to_owned(),
                    data_type: ty.as_str().unwrap_or_default().to_owned(),
                    nullable: nullable.as_str() != Some("NO"),
                    description: None,
                    is_partitioning: partitioning.as_str() == Some("YES"),
                    clustering_ordinal: clustering.as_i64().and_then(|v| i32::try_from(v).ok()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_by_their_schema() {
        let f = |t: &str| TableFieldSchema {
            name: "x".into(),
            r#type: t.into(),
            ..Default::default()
        };
        assert_eq!(convert(&f("INT64"), &Value::from("42")), Value::from(42));
        assert_eq!(
            convert(&f("FLOAT64"), &Value::from("1.5")),
            Value::from(1.5)
        );
        assert_eq!(
            convert(&f("NUMERIC"), &Value::from("12345678901234567.89")),
            Value::from("12345678901234567.89"),
            "decimals keep every digit"
        );
        assert_eq!(
            convert(
                &f("BIGNUMERIC"),
                &Value::from("-0.00000000000000000000000000000000000001")
            ),
            Value::from("-0.00000000000000000000000000000000000001")
        );
        assert_eq!(convert(&f("BOOL"), &Value::from("true")), Value::Bool(true));
        assert_eq!(
            convert(&f("TIMESTAMP"), &Value::from("1.7E9")),
            Value::from("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            convert(&f("DATE"), &Value::from("2026-01-02")),
            Value::from("2026-01-02")
        );
        assert_eq!(convert(&f("STRING"), &Value::Null), Value::Null);
        let mut rep = f("INT64");
        rep.mode = Some("REPEATED".into());
        assert_eq!(
            convert(&rep, &serde_json::json!([{ "v": "1" }, { "v": "2" }])),
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn dataset_names_cannot_escape_their_quotes() {
        assert_eq!(
            dataset_path("my-proj", "analytics_prod").expect("plain"),
            "`my-proj`.`analytics_prod`"
        );
        assert_eq!(
            dataset_path("my`proj", "a").expect("plain"),
            "`myproj`.`a`",
            "a backquote in the project cannot close the quote"
        );
        for bad in [
            "a`; DROP",
            "",
            "a.b",
            "a b",
            "a-b",
            "a\u{0}b",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(dataset_path("p", bad), Err(WarehouseError::NotFound(_))),
                "{bad:?} must be refused"
            );
        }
    }
}

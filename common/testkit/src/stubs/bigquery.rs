//! A BigQuery stub following the documented REST shapes of
//! [`jobs.query`](https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query),
//! [`jobs.getQueryResults`](https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/getQueryResults),
//! [`datasets.list`](https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/list),
//! [`tables.list`](https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/list), the
//! JSON error shape (<https://cloud.google.com/bigquery/docs/error-messages>), and an
//! OAuth 2.0 token endpoint for the service-account JWT-bearer grant
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).
//!
//! Why it exists: `bqemulator` runs real SQL but fakes what Bridge's cost controls depend
//! on: dry runs always report 0 bytes, `maximumBytesBilled` is ignored, a bad query answers
//! HTTP 200 with a top-level `errors` array instead of 400 with `error.errors[].reason`,
//! and it has neither auth nor a token endpoint. Here a test decides, per query, the bytes a
//! query would process, the schema and rows it returns, or the error it fails with; the
//! JSON follows the documented REST shapes (jobs.query, jobs.getQueryResults, datasets.list,
//! tables.list), which the adapter in `platform::warehouse::bigquery` reads.
//!
//! - Results are configured with [`BigQueryStub::respond`]: the first rule whose text occurs
//!   in the SQL wins; a query no rule matches fails with 400 `invalidQuery`.
//! - `dryRun: true` answers `totalBytesProcessed`, `schema`, `jobComplete: true`, no rows.
//! - Otherwise a `maximumBytesBilled` below the bytes the query would bill fails with 400
//!   `bytesBilledLimitExceeded`, as BigQuery does; else rows, paged by `maxResults` with a
//!   `pageToken`, continued with `getQueryResults`.
//! - API calls need `Authorization: Bearer <STUB_TOKEN>` (the token the token endpoint hands
//!   out; [`BigQueryStub::service_account_key`] is a key whose `token_uri` points there).
//! - [`BigQueryStub::fail_all`] answers every API call with one error (permission tests).
//! - [`BigQueryStub::requests`] records every API request, to assert what was sent.
//! - [`BigQueryStub::simulate_load`] makes queries take time (a latency drawn per query) and
//!   run at most N at once, the rest waiting their turn, as BigQuery queues a project's
//!   interactive queries past its concurrency; [`BigQueryStub::load`] reports the peaks
//!   (`bench/capacity.sh`).

#![allow(clippy::unwrap_used, clippy::result_large_err)] // test support: handlers answer early with a Response

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

/// The access token the stub's token endpoint hands out and its API requires.
pub const STUB_TOKEN: &str = "ya29.a0AfB_bridgeStubAccessToken0123456789";

/// What a query matching a rule answers.
#[derive(Debug, Clone, Default)]
pub struct StubQuery {
    /// Bytes the query processes (`totalBytesProcessed`, dry run or not).
    pub total_bytes: u64,
    /// A BigQuery `TableSchema` (`{"fields": [{"name", "type", "mode"?}, …]}`); a bare
    /// array of fields is accepted too.
    pub schema: Value,
    /// Rows in BigQuery's `f`/`v` form (`{"f": [{"v": "1"}, …]}`); a bare array of cell
    /// values is turned into that form.
    pub rows: Vec<Value>,
    /// Fail instead, dry run or not: (HTTP status, reason, message).
    pub error: Option<(u16, &'static str, &'static str)>,
}

impl StubQuery {
    /// A query that processes `total_bytes` and returns `rows` of `schema`.
    pub fn rows(total_bytes: u64, schema: Value, rows: Vec<Value>) -> Self {
        Self {
            total_bytes,
            schema,
            rows,
            error: None,
        }
    }

    /// A query that fails with `status`, `reason` and `message`.
    pub fn error(status: u16, reason: &'static str, message: &'static str) -> Self {
        Self {
            error: Some((status, reason, message)),
            ..Self::default()
        }
    }
}

/// A running BigQuery stub. `base_url` is the v2 base (what
/// `ClientBuilder::with_v2_base_url` takes); `token_url` is its OAuth token endpoint.
#[derive(Clone)]
pub struct BigQueryStub {
    pub base_url: String,
    pub token_url: String,
    state: Arc<Inner>,
}

struct Job {
    project: String,
    location: String,
    schema: Value,
    rows: Vec<Value>,
    total_bytes: u64,
}

#[derive(Default)]
struct Inner {
    rules: Mutex<Vec<(String, StubQuery)>>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    datasets: Mutex<Vec<(String, String)>>,
    tables: Mutex<Vec<(String, String)>>,
    fail_all: Mutex<Option<(u16, String, String)>>,
    requests: Mutex<Vec<(String, Value)>>,
    token_calls: AtomicUsize,
    minimum_billing: AtomicBool,
    load: Mutex<Option<Arc<Load>>>,
    /// Don't keep every request (a load test sends tens of thousands).
    forget_requests: AtomicBool,
}

/// A simulated warehouse's latency and concurrency ([`BigQueryStub::simulate_load`]).
struct Load {
    min: std::time::Duration,
    max: std::time::Duration,
    slots: tokio::sync::Semaphore,
    seed: std::sync::atomic::AtomicU64,
    running: AtomicUsize,
    queued: AtomicUsize,
    peak_running: AtomicUsize,
    peak_queued: AtomicUsize,
    completed: AtomicUsize,
}

/// What [`BigQueryStub::load`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Most queries running at once (at most the concurrency limit).
    pub peak_running: usize,
    /// Most queries waiting for a slot at once.
    pub peak_queued: usize,
    /// Queries that ran (dry runs are not counted: they take no slot).
    pub completed: usize,
}

impl Load {
    /// A latency uniform in [min, max], from a SplitMix64 sequence (reproducible run to run).
    fn latency(&self) -> std::time::Duration {
        let mut z = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let span = self.max.saturating_sub(self.min).as_micros() as u64;
        self.min + std::time::Duration::from_micros(if span == 0 { 0 } else { z % (span + 1) })
    }

    /// Waits for a slot, then for the query's latency.
    async fn run(&self) {
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_queued.fetch_max(waiting, Ordering::SeqCst);
        let permit = self.slots.acquire().await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_running.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(self.latency()).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
        drop(permit);
    }
}

const V2: &str = "/bigquery/v2";
const MIB: u64 = 1024 * 1024;

impl BigQueryStub {
    pub async fn start() -> BigQueryStub {
        let state = Arc::new(Inner::default());
        let router = Router::new()
            .route("/token", post(token))
            .route(&format!("{V2}/projects/{{project}}/queries"), post(query))
            .route(
                &format!("{V2}/projects/{{project}}/queries/{{job_id}}"),
                get(query_results),
            )
            .route(
                &format!("{V2}/projects/{{project}}/datasets"),
                get(list_datasets),
            )
            .route(
                &format!("{V2}/projects/{{project}}/datasets/{{dataset}}/tables"),
                get(list_tables),
            )
            .fallback(unknown)
            .with_state(state.clone());
        let root = super::serve(router).await;
        BigQueryStub {
            base_url: format!("{root}{V2}"),
            token_url: format!("{root}/token"),
            state,
        }
    }

    /// Queries whose SQL contains `sql_contains` answer `answer` (first matching rule wins).
    pub fn respond(&self, sql_contains: &str, answer: StubQuery) {
        self.state
            .rules
            .lock()
            .unwrap()
            .push((sql_contains.to_owned(), answer));
    }

    /// Lists `id` (in `location`, e.g. "US") in `datasets.list`.
    pub fn add_dataset(&self, id: &str, location: &str) {
        self.state
            .datasets
            .lock()
            .unwrap()
            .push((id.to_owned(), location.to_owned()));
    }

    /// Lists `table` in `tables.list` of `dataset`.
    pub fn add_table(&self, dataset: &str, table: &str) {
        self.state
            .tables
            .lock()
            .unwrap()
            .push((dataset.to_owned(), table.to_owned()));
    }

    /// Answers every API call (not the token endpoint) with this error from now on, e.g.
    /// `fail_all(403, "accessDenied", "Access Denied: Project p: User does not have …")`.
    pub fn fail_all(&self, status: u16, reason: &str, message: &str) {
        *self.state.fail_all.lock().unwrap() =
            Some((status, reason.to_owned(), message.to_owned()));
    }

    /// Undoes [`fail_all`](Self::fail_all).
    pub fn stop_failing(&self) {
        *self.state.fail_all.lock().unwrap() = None;
    }

    /// Bills like BigQuery on demand: at least 10 MiB for a query that reads any bytes,
    /// rounded up to a whole MiB, so a `maximumBytesBilled` under 10 MiB fails every such
    /// query. Off by default: the cap is then compared with `total_bytes` itself.
    pub fn minimum_billing(&self, on: bool) {
        self.state.minimum_billing.store(on, Ordering::SeqCst);
    }

    /// Every API request so far: (path, body). A GET's "body" is its query parameters as
    /// a JSON object of strings.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many tokens the token endpoint handed out.
    pub fn token_calls(&self) -> usize {
        self.state.token_calls.load(Ordering::SeqCst)
    }

    /// From now on every query that is not a dry run takes a latency drawn uniformly from
    /// `min..=max`, with at most `concurrency` running at once; the others wait for a slot
    /// (BigQuery queues interactive queries past a project's concurrency rather than refusing
    /// them). Requests are no longer recorded ([`requests`](Self::requests) stays as it was).
    pub fn simulate_load(
        &self,
        min: std::time::Duration,
        max: std::time::Duration,
        concurrency: usize,
    ) {
        *self.state.load.lock().unwrap() = Some(Arc::new(Load {
            min,
            max: max.max(min),
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
            seed: std::sync::atomic::AtomicU64::new(0x5eed),
            running: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            peak_running: AtomicUsize::new(0),
            peak_queued: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
        }));
        self.state.forget_requests.store(true, Ordering::SeqCst);
    }

    /// Peaks and counts since [`simulate_load`](Self::simulate_load) (zeros without it).
    pub fn load(&self) -> LoadReport {
        match self.state.load.lock().unwrap().as_ref() {
            Some(l) => LoadReport {
                peak_running: l.peak_running.load(Ordering::SeqCst),
                peak_queued: l.peak_queued.load(Ordering::SeqCst),
                completed: l.completed.load(Ordering::SeqCst),
            },
            None => LoadReport::default(),
        }
    }

    /// A service-account key file (as JSON) whose `token_uri` is this stub's token endpoint,
    /// with a real RSA key (generated once per process), so that a client's JWT-bearer
    /// exchange runs for real.
    pub fn service_account_key(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": "test-proj",
            "private_key_id": "stub-key-1",
            "private_key": test_rsa_pem(),
            "client_email": "bridge-test@test-proj.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_url,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/bridge-test%40test-proj.iam.gserviceaccount.com",
        })
    }
}

fn test_rsa_pem() -> String {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use base64::{Engine, engine::general_purpose::STANDARD};
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    })
    .clone()
}

/// BigQuery's error shape: `{"error": {"code", "message", "errors": [{"message",
/// "domain", "reason"}], "status"}}`.
pub fn bq_error(code: u16, reason: &str, message: &str) -> Response {
    let mut detail = json!({"message": message, "domain": "global", "reason": reason});
    if reason == "invalidQuery" {
        detail["location"] = json!("q");
        detail["locationType"] = json!("parameter");
    }
    let body = json!({"error": {
        "code": code,
        "message": message,
        "errors": [detail],
        "status": super::google_status(code),
    }});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

/// Records the request, then checks the token and the fail-all switch.
fn gate(state: &Inner, uri: &Uri, headers: &HeaderMap, body: Value) -> Result<(), Response> {
    if !state.forget_requests.load(Ordering::SeqCst) {
        state
            .requests
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), body));
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth {
        None => {
            let message = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
            return Err(unauthenticated(message, "required", "Login Required."));
        }
        Some(a) if a != format!("Bearer {STUB_TOKEN}") => {
            let message = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
            return Err(unauthenticated(message, "authError", "Invalid Credentials"));
        }
        Some(_) => {}
    }
    if let Some((code, reason, message)) = state.fail_all.lock().unwrap().clone() {
        return Err(bq_error(code, &reason, &message));
    }
    Ok(())
}

fn unauthenticated(message: &str, reason: &str, detail: &str) -> Response {
    let body = json!({"error": {
        "code": 401,
        "message": message,
        "errors": [{"message": detail, "domain": "global", "reason": reason,
                    "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED",
    }});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn query_as_json(query: &HashMap<String, String>) -> Value {
    Value::Object(
        query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// An int64 field, which Google's JSON writes as a string (a number is accepted too).
fn int_field(body: &Value, field: &str) -> Result<Option<u64>, Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(bq_error(
            400,
            "invalid",
            &format!("Invalid value for {field}: {other}"),
        )),
    }
}

fn schema_json(schema: &Value) -> Value {
    match schema {
        Value::Array(fields) => json!({ "fields": fields }),
        Value::Null => json!({ "fields": [] }),
        other => other.clone(),
    }
}

fn row_json(row: &Value) -> Value {
    match row {
        Value::Array(cells) => {
            json!({ "f": cells.iter().map(|v| json!({"v": v})).collect::<Vec<_>>() })
        }
        other => other.clone(),
    }
}

fn page_token(offset: usize) -> String {
    format!("stubpage{offset}")
}

fn parse_page_token(token: &str) -> Option<usize> {
    token.strip_prefix("stubpage")?.parse().ok()
}

fn new_job_id() -> String {
    format!("job_{}", uuid::Uuid::new_v4().simple())
}

/// The bytes a query bills: its bytes, or with minimum billing at least 10 MiB, rounded up
/// to whole MiB (a query that reads nothing bills nothing).
fn billed(total: u64, minimum: bool) -> u64 {
    if !minimum || total == 0 {
        total
    } else {
        total.div_ceil(MIB).max(10) * MIB
    }
}

async fn token(State(state): State<Arc<Inner>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let oauth_error = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            );
        }
        None => return oauth_error("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    if assertion.split('.').count() != 3 {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    state.token_calls.fetch_add(1, Ordering::SeqCst);
    Json(json!({"access_token": STUB_TOKEN, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

async fn query(
    State(state): State<Arc<Inner>>,
    Path(project): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(refused) = gate(&state, &uri, &headers, body.clone()) {
        return refused;
    }
    let Some(sql) = body.get("query").and_then(Value::as_str) else {
        return bq_error(400, "invalid", "Required parameter is missing: query");
    };
    let rule = state
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|(needle, _)| sql.contains(needle.as_str()))
        .map(|(_, answer)| answer.clone());
    let Some(answer) = rule else {
        return bq_error(
            400,
            "invalidQuery",
            &format!("Syntax error: the BigQuery stub has no rule matching this query: {sql}"),
        );
    };
    if let Some((code, reason, message)) = answer.error {
        return bq_error(code, reason, message);
    }
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or("US")
        .to_owned();
    let schema = schema_json(&answer.schema);
    if body.get("dryRun").and_then(Value::as_bool) == Some(true) {
        return Json(json!({
            "kind": "bigquery#queryResponse",
            "schema": schema,
            "jobReference": {"projectId": project, "location": location},
            "totalBytesProcessed": answer.total_bytes.to_string(),
            "jobComplete": true,
            "cacheHit": false,
        }))
        .into_response();
    }
    let (cap, max_results) = match (
        int_field(&body, "maximumBytesBilled"),
        int_field(&body, "maxResults"),
    ) {
        (Ok(cap), Ok(max)) => (cap, max),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let bill = billed(
        answer.total_bytes,
        state.minimum_billing.load(Ordering::SeqCst),
    );
    if let Some(cap) = cap
        && cap < bill
    {
        return bq_error(
            400,
            "bytesBilledLimitExceeded",
            &format!("Query exceeded limit for bytes billed: {cap}. {bill} or higher required."),
        );
    }
    let load = state.load.lock().unwrap().clone();
    if let Some(load) = load {
        load.run().await;
    }
    let job_id = new_job_id();
    let job = Arc::new(Job {
        project,
        location,
        schema,
        rows: answer.rows.iter().map(row_json).collect(),
        total_bytes: answer.total_bytes,
    });
    state
        .jobs
        .lock()
        .unwrap()
        .insert(job_id.clone(), job.clone());
    let mut page = results_page(&job, &job_id, 0, max_results);
    page["kind"] = json!("bigquery#queryResponse");
    page["totalBytesBilled"] = json!(bill.to_string());
    Json(page).into_response()
}

/// One page of a job's rows from `offset`, with a `pageToken` when more follow.
fn results_page(job: &Job, job_id: &str, offset: usize, max_results: Option<u64>) -> Value {
    let total = job.rows.len();
    let offset = offset.min(total);
    let end = match max_results {
        Some(n) => offset.saturating_add(n as usize).min(total),
        None => total,
    };
    let mut page = json!({
        "schema": job.schema,
        "jobReference": {"projectId": job.project, "jobId": job_id, "location": job.location},
        "totalRows": total.to_string(),
        "totalBytesProcessed": job.total_bytes.to_string(),
        "jobComplete": true,
        "cacheHit": false,
    });
    // Like BigQuery, an empty page carries no `rows` at all.
    if end > offset {
        page["rows"] = Value::Array(job.rows[offset..end].to_vec());
    }
    if end < total {
        page["pageToken"] = json!(page_token(end));
    }
    page
}

async fn query_results(
    State(state): State<Arc<Inner>>,
    Path((project, job_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params_json = query_as_json(&params);
    if let Err(refused) = gate(&state, &uri, &headers, params_json.clone()) {
        return refused;
    }
    let job = state.jobs.lock().unwrap().get(&job_id).cloned();
    let Some(job) = job.filter(|j| j.project == project) else {
        return bq_error(
            404,
            "notFound",
            &format!("Not found: Job {project}:{job_id}"),
        );
    };
    let max_results = match int_field(&params_json, "maxResults") {
        Ok(m) => m,
        Err(e) => return e,
    };
    let offset = match (params.get("pageToken"), params.get("startIndex")) {
        (Some(token), _) => match parse_page_token(token) {
            Some(o) => o,
            None => return bq_error(400, "invalid", &format!("Invalid page token: {token}")),
        },
        (None, Some(start)) => match start.parse() {
            Ok(s) => s,
            Err(_) => return bq_error(400, "invalid", &format!("Invalid startIndex: {start}")),
        },
        (None, None) => 0,
    };
    let mut page = results_page(&job, &job_id, offset, max_results);
    page["kind"] = json!("bigquery#getQueryResultsResponse");
    page["etag"] = json!(format!("\"{job_id}-{offset}\""));
    Json(page).into_response()
}

/// Pages `items` by `maxResults`/`pageToken`: (page, next token).
fn paged<T: Clone>(
    items: &[T],
    params: &HashMap<String, String>,
) -> Result<(Vec<T>, Option<String>), Response> {
    let offset = match params.get("pageToken") {
        Some(t) => parse_page_token(t)
            .ok_or_else(|| bq_error(400, "invalid", &format!("Invalid page token: {t}")))?,
        None => 0,
    }
    .min(items.len());
    let max = match params.get("maxResults") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| bq_error(400, "invalid", &format!("Invalid maxResults: {m}")))?,
        None => usize::MAX,
    };
    let end = offset.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| page_token(end));
    Ok((items[offset..end].to_vec(), next))
}

async fn list_datasets(
    State(state): State<Arc<Inner>>,
    Path(project): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = gate(&state, &uri, &headers, query_as_json(&params)) {
        return refused;
    }
    let all = state.datasets.lock().unwrap().clone();
    let (page, next) = match paged(&all, &params) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let datasets: Vec<Value> = page
        .iter()
        .map(|(id, location)| {
            json!({
                "kind": "bigquery#dataset",
                "id": format!("{project}:{id}"),
                "datasetReference": {"datasetId": id, "projectId": project},
                "location": location,
            })
        })
        .collect();
    let mut body = json!({
        "kind": "bigquery#datasetList",
        "etag": format!("\"{}\"", all.len()),
        "datasets": datasets,
    });
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Json(body).into_response()
}

async fn list_tables(
    State(state): State<Arc<Inner>>,
    Path((project, dataset)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = gate(&state, &uri, &headers, query_as_json(&params)) {
        return refused;
    }
    let known = state
        .datasets
        .lock()
        .unwrap()
        .iter()
        .any(|(id, _)| *id == dataset);
    let all: Vec<String> = state
        .tables
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| *d == dataset)
        .map(|(_, t)| t.clone())
        .collect();
    if !known && all.is_empty() {
        return bq_error(
            404,
            "notFound",
            &format!("Not found: Dataset {project}:{dataset}"),
        );
    }
    let (page, next) = match paged(&all, &params) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let tables: Vec<Value> = page
        .iter()
        .map(|table| {
            json!({
                "kind": "bigquery#table",
                "id": format!("{project}:{dataset}.{table}"),
                "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                "type": "TABLE",
                "creationTime": "1700000000000",
            })
        })
        .collect();
    let mut body = json!({
        "kind": "bigquery#tableList",
        "etag": format!("\"{}\"", all.len()),
        "tables": tables,
        "totalItems": all.len(),
    });
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Json(body).into_response()
}

async fn unknown(
    State(state): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(refused) = gate(&state, &uri, &headers, body) {
        return refused;
    }
    bq_error(
        404,
        "notFound",
        &format!(
            "The BigQuery stub does not implement {method} {}",
            uri.path()
        ),
    )
}

/// The answer to Bridge's per-dataset `INFORMATION_SCHEMA.TABLES` query (table name, type,
/// and an array of its partitioning and clustering columns): `(name, table_type,
/// partitioning column, clustering columns)` per table.
pub fn information_schema_tables(tables: &[(&str, &str, Option<&str>, &[&str])]) -> StubQuery {
    let schema = json!({ "fields": [
        { "name": "table_name", "type": "STRING" },
        { "name": "table_type", "type": "STRING" },
        { "name": "keys", "type": "RECORD", "mode": "REPEATED", "fields": [
            { "name": "column_name", "type": "STRING" },
            { "name": "is_partitioning_column", "type": "STRING" },
            { "name": "clustering_ordinal_position", "type": "INT64" },
        ]},
    ]});
    let rows = tables
        .iter()
        .map(|(name, kind, part, clusters)| {
            let mut keys: Vec<Value> = Vec::new();
            if let Some(p) = part {
                keys.push(json!({ "v": { "f": [{ "v": p }, { "v": "YES" }, { "v": null }] } }));
            }
            for (i, c) in clusters.iter().enumerate() {
                keys.push(json!({ "v": { "f": [{ "v": c }, { "v": "NO" }, { "v": (i + 1).to_string() }] } }));
            }
            json!({ "f": [{ "v": name }, { "v": kind }, { "v": keys }] })
        })
        .collect();
    StubQuery::rows(10_485_760, schema, rows)
}

//! The Python emulators the tests run against: `moto` (S3 and AWS KMS on one port) and
//! `bqemulator` (BigQuery's REST API over DuckDB). The README's "Tests" section says what
//! each one covers, and which stubs stand in where one lacks a behaviour.
//!
//! A test asks for one with [`moto()`] or [`bigquery()`], which find it in this order:
//! 1. the URL `scripts/test` exports (`BRIDGE_TEST_MOTO_URL`, `BRIDGE_TEST_BQ_URL` and
//!    `BRIDGE_TEST_BQ_PROJECT`);
//! 2. an instance a previous test process started, recorded in
//!    `target/emulators/<name>.json`, if it still answers;
//! 3. a new instance started from `.venv-emu` (which `scripts/test` installs), on free
//!    loopback ports, under a file lock so that parallel test processes (nextest runs one
//!    per test) start one between them. It is recorded and left running for the next test;
//!    `scripts/test` stops recorded instances when it starts and when it ends.
//!
//! When none can be had, `BRIDGE_REQUIRE_EMULATORS=1` (set by `scripts/test`) makes that a
//! panic; otherwise a loud `SKIPPED:` line is printed and the caller returns early:
//!
//! ```ignore
//! let Some(moto) = emulators::moto().await else { return };
//! ```

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// moto's server: S3 (path-style) and AWS KMS on one endpoint. Any credentials work.
#[derive(Debug, Clone)]
pub struct Moto {
    pub endpoint: String,
}

/// bqemulator's REST API (no auth). `endpoint` is the REST root; the v2 API is under
/// [`v2_base`](Self::v2_base).
#[derive(Debug, Clone)]
pub struct BigQueryEmulator {
    pub endpoint: String,
    pub project: String,
}

/// moto, found or started (see the module documentation); `None` after printing why.
pub async fn moto() -> Option<Moto> {
    static MOTO: OnceCell<Result<String, String>> = OnceCell::const_new();
    let found = MOTO.get_or_init(|| locate(&MOTO_SPEC)).await;
    settle(&MOTO_SPEC, found).map(|endpoint| Moto { endpoint })
}

/// bqemulator, found or started (see the module documentation); `None` after printing why.
pub async fn bigquery() -> Option<BigQueryEmulator> {
    static BQ: OnceCell<Result<String, String>> = OnceCell::const_new();
    let found = BQ.get_or_init(|| locate(&BQ_SPEC)).await;
    settle(&BQ_SPEC, found).map(|endpoint| BigQueryEmulator {
        endpoint,
        project: std::env::var("BRIDGE_TEST_BQ_PROJECT").unwrap_or_else(|_| BQ_PROJECT.into()),
    })
}

/// The project bqemulator is started with (and `scripts/test` exports).
pub const BQ_PROJECT: &str = "test-proj";

struct Spec {
    name: &'static str,
    env: &'static str,
    program: &'static str,
    /// Path probed for readiness; `None`: any HTTP answer on `/` will do.
    ready_path: Option<&'static str>,
    args: fn(u16, u16) -> Vec<String>,
}

const MOTO_SPEC: Spec = Spec {
    name: "moto",
    env: "BRIDGE_TEST_MOTO_URL",
    program: "moto_server",
    ready_path: None,
    args: |port, _| {
        vec![
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    },
};

const BQ_SPEC: Spec = Spec {
    name: "bqemulator",
    env: "BRIDGE_TEST_BQ_URL",
    program: "bqemulator",
    ready_path: Some("/readyz"),
    args: |port, grpc| {
        vec![
            "start".into(),
            "--rest-host".into(),
            "127.0.0.1".into(),
            "--rest-port".into(),
            port.to_string(),
            "--grpc-host".into(),
            "127.0.0.1".into(),
            "--grpc-port".into(),
            grpc.to_string(),
            "--project".into(),
            BQ_PROJECT.into(),
        ]
    },
};

/// How long a freshly started emulator may take to answer (bqemulator takes 2–5 s).
const START_TIMEOUT: Duration = Duration::from_secs(90);

fn settle(spec: &Spec, found: &Result<String, String>) -> Option<String> {
    match found {
        Ok(endpoint) => Some(endpoint.clone()),
        Err(why) => {
            unavailable(spec.name, why);
            None
        }
    }
}

/// `name` cannot be had: a panic under `BRIDGE_REQUIRE_EMULATORS=1`, else a loud `SKIPPED:`
/// line (the caller then returns early).
pub fn unavailable(name: &str, why: &str) {
    if std::env::var("BRIDGE_REQUIRE_EMULATORS").is_ok_and(|v| v == "1") {
        panic!("BRIDGE_REQUIRE_EMULATORS=1 but {name} is not available: {why}")
    }
    eprintln!(
        "\n*** SKIPPED: {name} is not available ({why}); this test did not run. \
         Run scripts/test to install the emulators. ***\n"
    );
}

/// The workspace's target directory, found the way the Postgres harness finds it.
fn emulators_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("emulators")
}

pub(crate) fn repo_root() -> PathBuf {
    // This crate is `common/testkit`.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `.venv-emu` at the repository root, where `scripts/test` installs the emulators.
pub(crate) fn venv_bin(program: &str) -> PathBuf {
    repo_root().join(".venv-emu/bin").join(program)
}

async fn locate(spec: &'static Spec) -> Result<String, String> {
    if let Ok(url) = std::env::var(spec.env) {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let dir = emulators_dir();
    let record = dir.join(format!("{}.json", spec.name));
    if let Some(endpoint) = recorded(spec, &record).await {
        return Ok(endpoint);
    }
    let program = venv_bin(spec.program);
    if !program.exists() {
        return Err(format!(
            "{} is not installed ({} is missing) and {} is not set",
            spec.program,
            program.display(),
            spec.env
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // One starter at a time across processes; the others wait, then find its record.
    let lock_path = dir.join(format!("{}.lock", spec.name));
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .unwrap()
    .map_err(|e| format!("locking {}: {e}", dir.display()))?;
    let result = match recorded(spec, &record).await {
        Some(endpoint) => Ok(endpoint),
        None => start(spec, &program, &dir, &record).await,
    };
    drop(lock);
    result
}

/// The endpoint in `record`, if that instance still answers.
async fn recorded(spec: &Spec, record: &Path) -> Option<String> {
    let text = std::fs::read_to_string(record).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    let endpoint = value["endpoint"].as_str()?.to_owned();
    ready(spec, &endpoint).await.then_some(endpoint)
}

async fn ready(spec: &Spec, endpoint: &str) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("{endpoint}{}", spec.ready_path.unwrap_or("/"));
    match client.get(url).send().await {
        Ok(r) => spec.ready_path.is_none() || r.status().is_success(),
        Err(_) => false,
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

async fn start(spec: &Spec, program: &Path, dir: &Path, record: &Path) -> Result<String, String> {
    use std::os::unix::process::CommandExt;

    let (port, grpc) = (free_port()?, free_port()?);
    let log_path = dir.join(format!("{}.log", spec.name));
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let began = Instant::now();
    let mut child = Command::new(program)
        .args((spec.args)(port, grpc))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // Its own process group: outlives this test process, stopped by scripts/test.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    loop {
        if ready(spec, &endpoint).await {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} exited with {status} while starting; see {}",
                spec.program,
                log_path.display()
            ));
        }
        if began.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            return Err(format!(
                "{} did not become ready within {START_TIMEOUT:?}; see {}",
                spec.program,
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value = json!({
        "endpoint": endpoint,
        "port": port,
        "grpc_port": grpc,
        "pid": child.id(),
        "program": spec.program,
        "started_in_ms": began.elapsed().as_millis() as u64,
    });
    let tmp = record.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&value).unwrap())
        .and_then(|()| std::fs::rename(&tmp, record))
        .map_err(|e| format!("recording {}: {e}", record.display()))?;
    eprintln!(
        "started {} on {endpoint} in {:?} (pid {}, log {}); scripts/test stops it",
        spec.program,
        began.elapsed(),
        child.id(),
        log_path.display()
    );
    Ok(endpoint)
}

/// A unique lowercase suffix for names made per test.
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn expect_ok(what: &str, response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{what}: HTTP {status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

impl Moto {
    /// Creates a bucket with a unique name and returns the name. moto accepts unsigned
    /// path-style `PUT /<bucket>` (it does not check signatures).
    pub async fn fresh_bucket(&self) -> String {
        let name = format!("bridge-test-{}", unique());
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name} on moto: {e}"));
        let status = response.status();
        assert!(
            status.is_success(),
            "creating bucket {name}: HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        );
        name
    }

    /// An AWS KMS client for moto: dummy static credentials, region us-east-1.
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// Creates a symmetric key and returns its ARN.
    pub async fn create_kms_key(&self) -> String {
        let out = self
            .kms_client()
            .create_key()
            .description("bridge test key")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateKey on moto: {e:?}"));
        out.key_metadata()
            .and_then(|m| m.arn())
            .expect("CreateKey answers an ARN")
            .to_owned()
    }
}

impl BigQueryEmulator {
    /// The v2 API base, e.g. `http://127.0.0.1:P/bigquery/v2`.
    pub fn v2_base(&self) -> String {
        format!("{}/bigquery/v2", self.endpoint)
    }

    fn project_url(&self) -> String {
        format!("{}/projects/{}", self.v2_base(), self.project)
    }

    /// Creates `dataset` (location US) and returns the dataset resource.
    pub async fn create_dataset(&self, dataset: &str) -> Value {
        let body = json!({
            "datasetReference": {"projectId": self.project, "datasetId": dataset},
            "location": "US",
        });
        let response = reqwest::Client::new()
            .post(format!("{}/datasets", self.project_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_ok(&format!("creating dataset {dataset}"), response).await
    }

    /// Creates a dataset with a unique name and returns the name.
    pub async fn fresh_dataset(&self) -> String {
        let name = format!("ds_{}", unique());
        self.create_dataset(&name).await;
        name
    }

    /// Creates `dataset.table` with `schema` (a BigQuery `TableSchema`: `{"fields": [...]}`),
    /// optional `timePartitioning` and clustering, and returns the table resource.
    pub async fn create_table(
        &self,
        dataset: &str,
        table: &str,
        schema: Value,
        time_partitioning: Option<Value>,
        clustering_fields: &[&str],
    ) -> Value {
        let mut body = json!({
            "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
            "schema": schema,
        });
        if let Some(tp) = time_partitioning {
            body["timePartitioning"] = tp;
        }
        if !clustering_fields.is_empty() {
            body["clustering"] = json!({ "fields": clustering_fields });
        }
        let response = reqwest::Client::new()
            .post(format!("{}/datasets/{dataset}/tables", self.project_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_ok(&format!("creating table {dataset}.{table}"), response).await
    }

    /// Streams `rows` (plain JSON objects, column name to value) into `dataset.table`
    /// with `tabledata.insertAll`; panics on any insert error.
    pub async fn insert_rows(&self, dataset: &str, table: &str, rows: &[Value]) {
        let body = json!({
            "kind": "bigquery#tableDataInsertAllRequest",
            "rows": rows.iter().map(|r| json!({"insertId": unique(), "json": r})).collect::<Vec<_>>(),
        });
        let response = reqwest::Client::new()
            .post(format!(
                "{}/datasets/{dataset}/tables/{table}/insertAll",
                self.project_url()
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        let answer = expect_ok(&format!("insertAll into {dataset}.{table}"), response).await;
        let errors = answer["insertErrors"].as_array().map_or(0, Vec::len);
        assert_eq!(errors, 0, "insertAll into {dataset}.{table}: {answer}");
    }
}

//! `testkit`, the integration-test harness (a dev-dependency only): a fresh, migrated Postgres database
//! per test, an app built on it exactly as a function builds its own, dev tokens, and a
//! small request builder that drives the router in-process (or over a real socket).
//!
//! The server is found in this order: `BRIDGE_TEST_DATABASE_URL`; a Postgres answering on
//! 127.0.0.1:5432 as `postgres`; else a throwaway cluster under `target/test-postgres`,
//! started the way `bridge serve` starts one (`BRIDGE_TEST_PG=embedded` forces that).
//! Databases are cloned from a template migrated once per migration set, which makes a
//! fresh database cost a few milliseconds; each is dropped when its test ends.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{collections::HashMap, path::PathBuf, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;

use services::AppState;

use edge::{app::build, auth::mint_dev_token};

use base::{crypto::random_token, domain::Email};

use storage::{db, localpg::LocalPostgres};

use settings::Settings;

static SERVER: OnceCell<String> = OnceCell::const_new();

fn with_db(url: &str, db: &str) -> String {
    let mut cfg: tokio_postgres::Config = url.parse().expect("valid admin URL");
    cfg.dbname(db);
    // Rebuild a URL from the parts that matter for the harness.
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("postgres");
    let password = cfg
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    if host.starts_with('/') {
        format!("postgres://{user}{password}@localhost:{port}/{db}?host={host}")
    } else {
        format!("postgres://{user}{password}@{host}:{port}/{db}")
    }
}

async fn answers(url: &str) -> bool {
    let connect = tokio_postgres::connect(url, NoTls);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

fn test_cluster_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
        .join("test-postgres")
}

/// The admin URL of the Postgres server the tests use.
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("BRIDGE_TEST_DATABASE_URL") {
                return url;
            }
            let embedded = std::env::var("BRIDGE_TEST_PG").is_ok_and(|v| v == "embedded");
            let local = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
            if !embedded && answers(&local).await {
                return local;
            }
            let dir = test_cluster_dir();
            let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&dir))
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("no Postgres for tests: {e:#}"));
            pg.url("postgres")
        })
        .await
        .clone()
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn fingerprint_hash() -> u64 {
    // FNV-1a: stable across processes and Rust versions, unlike DefaultHasher.
    db::migrations_fingerprint()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// Runs `sql`, retrying while another session still holds the database it names (a
/// template's last connections close asynchronously).
async fn retry_in_use(client: &tokio_postgres::Client, sql: &str) {
    for attempt in 0..100 {
        match client.execute(sql, &[]).await {
            Ok(_) => return,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && attempt < 99 =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("test database setup: {e}"),
        }
    }
}

/// Creates (once per migration set, across processes) the migrated template database.
async fn template(server: &str) -> String {
    let hash = fingerprint_hash();
    let name = format!("bridge_tpl_{:012x}", hash & 0xffff_ffff_ffff);
    let client = admin(server).await;
    let lock_key = (hash >> 1) as i64;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
        .await
        .unwrap();
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        client
            .execute(
                &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
                &[],
            )
            .await
            .unwrap();
        client
            .execute(&format!("CREATE DATABASE {building}"), &[])
            .await
            .unwrap();
        {
            let pool = db::pool(
                &with_db(server, &building),
                None,
                db::PoolOptions {
                    max_size: 2,
                    timeout: Duration::from_secs(10),
                    statement_timeout: None,
                },
            )
            .unwrap();
            db::migrate(&pool)
                .await
                .unwrap_or_else(|e| panic!("migrating the template: {e:#}"));
            pool.close();
        }
        retry_in_use(
            &client,
            &format!("ALTER DATABASE {building} RENAME TO {name}"),
        )
        .await;
        drop_stale(&client).await;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
        .await
        .unwrap();
    name
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Drops test databases and roles left behind by crashed runs (older than an hour; their
/// names carry their creation time).
async fn drop_stale(client: &tokio_postgres::Client) {
    let now = unix_now();
    let stale = |name: &str| {
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        now.saturating_sub(created) > 3600
    };
    let sweeps = [
        (
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'bridge\\_t\\_%'",
            "DATABASE",
            " WITH (FORCE)",
        ),
        (
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'bridge\\_r\\_%'",
            "ROLE",
            "",
        ),
    ];
    for (query, kind, suffix) in sweeps {
        for row in client.query(query, &[]).await.unwrap_or_default() {
            let name: String = row.get(0);
            if stale(&name) {
                let _ = client
                    .execute(&format!("DROP {kind} IF EXISTS \"{name}\"{suffix}"), &[])
                    .await;
            }
        }
    }
}

/// A database of its own for one test, dropped when this value is dropped.
pub struct TestDb {
    pub url: String,
    pub name: String,
    server: String,
}

impl TestDb {
    pub async fn fresh() -> Self {
        let server = server_url().await;
        let template = template(&server).await;
        Self::create(server, &format!("TEMPLATE {template}")).await
    }

    /// A database with nothing in it, not even the migrations.
    pub async fn empty() -> Self {
        Self::create(server_url().await, "").await
    }

    /// Names carry their creation time, so that crashed runs' leftovers can be swept.
    async fn create(server: String, options: &str) -> Self {
        let name = format!(
            "bridge_t_{}_{}",
            unix_now(),
            random_token(6).to_lowercase().replace(['-', '_'], "x")
        );
        let client = admin(&server).await;
        retry_in_use(&client, &format!("CREATE DATABASE \"{name}\" {options}")).await;
        Self {
            url: with_db(&server, &name),
            name,
            server,
        }
    }

    /// A direct connection, for arranging and asserting state.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Dropped from inside a test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&server, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .execute(
                            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            &[],
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// The demo warehouse (`samplefiles/demo-warehouse.sql`) in a database of its own, plus a
/// `finance` schema its reader role cannot read.
pub const DEMO_WAREHOUSE_SQL: &str = include_str!("../../../samplefiles/demo-warehouse.sql");

/// A Postgres warehouse for one test: the demo data, a login role that may only read
/// `analytics`, and a `finance` schema it may not read.
pub struct TestWarehouse {
    pub db: TestDb,
    /// URL of the read-only role (what a team would register as a connection).
    pub reader_url: String,
    pub reader: String,
    pub password: String,
}

impl TestWarehouse {
    pub async fn demo() -> Self {
        let server = server_url().await;
        let hash = DEMO_WAREHOUSE_SQL
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let template = format!("bridge_demo_{:012x}", hash & 0xffff_ffff_ffff);
        let client = admin(&server).await;
        let lock_key = (hash >> 2) as i64;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
            .await
            .unwrap();
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            client
                .execute(
                    &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
                    &[],
                )
                .await
                .unwrap();
            client
                .execute(&format!("CREATE DATABASE {building}"), &[])
                .await
                .unwrap();
            {
                let wh = admin(&with_db(&server, &building)).await;
                wh.batch_execute(DEMO_WAREHOUSE_SQL).await.unwrap();
                wh.batch_execute(
                    "CREATE SCHEMA finance; \
                     CREATE TABLE finance.salaries (employee text, salary numeric); \
                     INSERT INTO finance.salaries VALUES ('ada', 1);",
                )
                .await
                .unwrap();
            }
            retry_in_use(
                &client,
                &format!("ALTER DATABASE {building} RENAME TO {template}"),
            )
            .await;
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
            .await
            .unwrap();
        let db = TestDb::create(server.clone(), &format!("TEMPLATE {template}")).await;
        let reader = format!(
            "bridge_r_{}_{}",
            unix_now(),
            random_token(6).to_lowercase().replace(['-', '_'], "x")
        );
        let password = random_token(18);
        let wh = db.client().await;
        wh.batch_execute(&format!(
            "CREATE ROLE {reader} LOGIN PASSWORD '{password}'; \
             GRANT CONNECT ON DATABASE \"{name}\" TO {reader}; \
             GRANT USAGE ON SCHEMA analytics TO {reader}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {reader}; \
             REVOKE ALL ON SCHEMA public FROM PUBLIC;",
            name = db.name
        ))
        .await
        .unwrap();
        let mut cfg: tokio_postgres::Config = db.url.parse().unwrap();
        cfg.user(&reader);
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let reader_url = format!("postgres://{reader}:{password}@{host}:{port}/{}", db.name);
        Self {
            db,
            reader_url,
            reader,
            password,
        }
    }
}

impl Drop for TestWarehouse {
    fn drop(&mut self) {
        let server = self.db.server.clone();
        let (name, role) = (self.db.name.clone(), self.reader.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&server, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .execute(
                            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                            &[],
                        )
                        .await;
                    let _ = client
                        .execute(&format!("DROP ROLE IF EXISTS {role}"), &[])
                        .await;
                }
            });
        })
        .join();
    }
}

/// An app on a fresh database, built as a function builds its own.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub settings: Settings,
    /// The environment the settings were read from, for a binary to run with the same.
    pub env: HashMap<String, String>,
    pub db: TestDb,
    _data_dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestApp {
    /// `routes` on a fresh database with dev-mode auth and a generated secret.
    pub async fn spawn(routes: OpenApiRouter<AppState>) -> Self {
        Self::spawn_with(routes, &[]).await
    }

    /// Like [`spawn`](Self::spawn), with extra (or overriding) settings.
    pub async fn spawn_with(routes: OpenApiRouter<AppState>, vars: &[(&str, &str)]) -> Self {
        if std::env::var_os("BRIDGE_TEST_LOG").is_some() {
            edge::telemetry::init(settings::LogFormat::Pretty);
        }
        let db = TestDb::fresh().await;
        let data_dir = TempDir::new("bridge-test");
        let mut env: HashMap<String, String> = HashMap::from([
            ("BRIDGE_ENV".into(), "test".into()),
            ("DATABASE_URL".into(), db.url.clone()),
            ("DATABASE_POOL_SIZE".into(), "4".into()),
            ("BRIDGE_DEV_JWT_SECRET".into(), random_token(32)),
            ("BRIDGE_DATA_DIR".into(), data_dir.0.display().to_string()),
        ]);
        for (k, v) in vars {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = Settings::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("test settings: {e}"));
        if settings.otel.enabled() {
            // Process-wide, once: a test that exports runs in a process of its own (nextest).
            edge::telemetry::init_with(settings::LogFormat::Pretty, &settings.otel, "test");
        }
        let state = AppState::from_settings(settings.clone(), "test")
            .await
            .unwrap();
        let router = build(routes, state.clone());
        Self {
            router,
            state,
            settings,
            env,
            db,
            _data_dir: data_dir,
        }
    }

    /// The same app (database, settings, secret) served by `state` instead: a state built
    /// differently, e.g. with another job runner.
    pub fn with_state(mut self, routes: OpenApiRouter<AppState>, state: AppState) -> Self {
        self.router = build(routes, state.clone());
        self.state = state;
        self
    }

    /// A dev token for `email` (subject derived from the email, so it is stable).
    pub fn token(&self, email: &str) -> String {
        self.token_with_ttl(email, Duration::from_secs(3600))
    }

    pub fn token_with_ttl(&self, email: &str, ttl: Duration) -> String {
        let email = Email::parse(email).unwrap();
        mint_dev_token(&self.settings.auth, &format!("sub-{email}"), &email, ttl).unwrap()
    }

    /// The claims a dev token for `email` carries, to tamper with before [`sign`](Self::sign).
    pub fn claims(&self, email: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        serde_json::json!({
            "sub": format!("sub-{email}"),
            "email": email,
            "iss": self.settings.auth.issuer(),
            "aud": self.settings.auth.audience(),
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// Signs any claims with this app's dev secret (HS256).
    pub fn sign(&self, claims: &Value) -> String {
        let settings::AuthSettings::Dev { secret, .. } = &self.settings.auth else {
            panic!("sign() needs a dev-mode app");
        };
        use secrecy::ExposeSecret;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.expose_secret().as_bytes()),
        )
        .unwrap()
    }

    pub fn request(&self, method: Method, uri: &str) -> RequestBuilder<'_> {
        RequestBuilder::to(&self.router, method, uri)
    }

    /// `routes` served by a state of their own on this app's database, buckets and secret:
    /// another process, as far as caches go (in-process caches and the access epoch are
    /// its own). Send it requests with [`RequestBuilder::to`].
    pub async fn another_process(&self, routes: OpenApiRouter<AppState>) -> Router {
        let state = AppState::from_settings(self.settings.clone(), "test")
            .await
            .unwrap();
        build(routes, state)
    }

    pub fn get(&self, uri: &str) -> RequestBuilder<'_> {
        self.request(Method::GET, uri)
    }
    pub fn post(&self, uri: &str) -> RequestBuilder<'_> {
        self.request(Method::POST, uri)
    }
    pub fn put(&self, uri: &str) -> RequestBuilder<'_> {
        self.request(Method::PUT, uri)
    }
    pub fn patch(&self, uri: &str) -> RequestBuilder<'_> {
        self.request(Method::PATCH, uri)
    }
    pub fn delete(&self, uri: &str) -> RequestBuilder<'_> {
        self.request(Method::DELETE, uri)
    }

    /// Runs a function binary (e.g. `env!("CARGO_BIN_EXE_data")`) as a process of its own
    /// with this app's settings (same database, buckets and signing secret) and `extra`
    /// variables, until the returned handle drops: a second process with caches of its own.
    pub async fn spawn_process(&self, binary: &str, extra: &[(&str, &str)]) -> FunctionProcess {
        let port = emulators::free_port().unwrap();
        let log = TempDir::new("bridge-process");
        let mut cmd = tokio::process::Command::new(binary);
        cmd.env_clear()
            .envs(&self.env)
            .env("PORT", port.to_string())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(std::fs::File::create(log.0.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(log.0.join("stderr.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        let mut process = FunctionProcess {
            base,
            child,
            log,
            http: reqwest::Client::new(),
        };
        loop {
            if let Ok(r) = process
                .http
                .get(format!("{}/health", process.base))
                .send()
                .await
                && r.status().is_success()
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{binary} exited ({status}): {}", process.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{binary} did not answer /health within 30 s: {}",
                process.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Serves the app on a real socket (127.0.0.1, a free port) until the test ends.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }
}

/// A function binary running as its own process; killed on drop.
pub struct FunctionProcess {
    pub base: String,
    child: tokio::process::Child,
    log: TempDir,
    pub http: reqwest::Client,
}

impl FunctionProcess {
    /// A GET with a bearer token: status and JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// What the process printed so far.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.log.0.join(f)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }
}

pub struct RequestBuilder<'a> {
    router: &'a Router,
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Body,
}

impl<'a> RequestBuilder<'a> {
    /// A request to `router` (e.g. [`TestApp::another_process`]'s).
    pub fn to(router: &'a Router, method: Method, uri: &str) -> Self {
        RequestBuilder {
            router,
            method,
            uri: uri.to_owned(),
            headers: HeaderMap::new(),
            body: Body::empty(),
        }
    }
}

impl RequestBuilder<'_> {
    pub fn bearer(self, token: &str) -> Self {
        self.header(header::AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub fn json(mut self, value: &Value) -> Self {
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.body = Body::from(serde_json::to_vec(value).unwrap());
        self
    }

    /// A raw body with the given content type (for malformed-input tests).
    pub fn raw(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        if !content_type.is_empty() {
            self.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        self.body = Body::from(body.into());
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut req = Request::builder().method(self.method).uri(&self.uri);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(self.body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts a problem+json answer with `status` and `code`, and returns it.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some(edge::error::PROBLEM_JSON),
            "content type"
        );
        let p = self.json();
        assert_eq!(p["code"], code, "problem: {p}");
        assert_eq!(p["status"], status);
        assert!(
            p["trace_id"].as_str().is_some_and(|t| !t.is_empty()),
            "trace_id: {p}"
        );
        p
    }
}

pub mod browser;
pub mod cargo_lambda;
pub mod emulators;
pub mod oidc;
pub mod stubs;

/// A service-account key file (JSON) whose RSA key is generated now: it belongs to no Google
/// account. `token_uri` is a placeholder; Bridge always uses `GCP_TOKEN_URI` instead.
pub fn service_account_key(project_id: &str) -> Value {
    use aws_lc_rs::encoding::AsDer;
    use base64::{Engine, engine::general_purpose::STANDARD};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let b64 = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    serde_json::json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": random_token(20),
        "private_key": pem,
        "client_email": format!("bridge-reader@{project_id}.iam.gserviceaccount.com"),
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
}

/// Feeds a raw API Gateway v2 event through `lambda_http`'s own adapter (what
/// `lambda_http::run` wraps the router in) and returns the serialised Lambda response.
pub async fn lambda_invoke(router: &Router, raw_event: &str) -> Value {
    use lambda_http::{Adapter, Context, LambdaEvent, Service, request::LambdaRequest};
    let request: LambdaRequest = serde_json::from_str(raw_event).unwrap();
    let mut adapter = Adapter::from(router.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(&response).unwrap()
}

/// The event files (names without `.json`) of `events/<function>/`, and their directory.
pub fn event_files(function: &str) -> (PathBuf, std::collections::BTreeSet<String>) {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events")).join(function);
    let names = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    (dir, names)
}

/// Checks a Lambda response against its event: status, correlation id (the event's header,
/// else API Gateway's request id) echoed, and problem bodies carrying it as `trace_id`.
#[track_caller]
pub fn assert_lambda_response(name: &str, event: &Value, response: &Value, status: u16) {
    assert_eq!(response["statusCode"], status, "{name}: {response}");
    let expected_id = event["headers"]["x-correlation-id"]
        .as_str()
        .or(event["requestContext"]["requestId"].as_str())
        .unwrap();
    assert_eq!(
        response["headers"]["x-correlation-id"], expected_id,
        "{name}: correlation id"
    );
    if status >= 400 {
        assert_eq!(
            response["headers"]["content-type"], "application/problem+json",
            "{name}"
        );
        let problem: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(problem["trace_id"], expected_id, "{name}");
    }
}

/// A team whose admin holds `token`, with a validated and scanned connection.
pub struct Workspace {
    pub team: String,
    pub connection: String,
    pub token: String,
}

impl TestApp {
    /// Creates a team (admin `admin@example.com`) and a connection with `credentials`,
    /// validates and scans it. The app must mount the teams, connections and catalog routes.
    pub async fn workspace(&self, kind: &str, credentials: Value) -> Workspace {
        self.workspace_of("admin@example.com", kind, credentials)
            .await
    }

    /// Like [`workspace`](Self::workspace), with `email` as the team's admin.
    pub async fn workspace_of(&self, email: &str, kind: &str, credentials: Value) -> Workspace {
        let token = self.token(email);
        let team = self
            .post("/v1/teams")
            .bearer(&token)
            .json(&serde_json::json!({ "name": "Analytics" }))
            .send()
            .await;
        team.assert_status(201);
        let team = team.json()["id"].as_str().unwrap().to_owned();
        let c = self
            .post(&format!("/v1/teams/{team}/connections"))
            .bearer(&token)
            .json(&serde_json::json!({ "name": format!("{kind} warehouse"), "warehouse_type": kind, "credentials": credentials }))
            .send()
            .await;
        c.assert_status(201);
        let connection = c.json()["id"].as_str().unwrap().to_owned();
        let v = self
            .post(&format!("/v1/connections/{connection}/validate"))
            .bearer(&token)
            .send()
            .await
            .json();
        assert_eq!(v["status"], "validated", "{v}");
        self.scan(&connection, &token).await;
        Workspace {
            team,
            connection,
            token,
        }
    }

    /// Scans `connection` and waits for the scan to finish; asserts it read the catalog.
    pub async fn scan(&self, connection: &str, token: &str) -> Value {
        let started = self
            .post(&format!("/v1/connections/{connection}/scan"))
            .bearer(token)
            .send()
            .await;
        assert!(
            started.status == StatusCode::ACCEPTED || started.status == StatusCode::OK,
            "scan: {}",
            String::from_utf8_lossy(&started.body)
        );
        let mut scan = started.json();
        let began = std::time::Instant::now();
        while scan["status"] == "running" {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the scan did not finish: {scan}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
            scan = self
                .get(&format!(
                    "/v1/connections/{connection}/scans/{}",
                    scan["scan_id"].as_str().unwrap()
                ))
                .bearer(token)
                .send()
                .await
                .json();
        }
        assert!(
            scan["status"] == "succeeded" || scan["status"] == "partial",
            "{scan}"
        );
        scan
    }

    /// A team member with `role`, returning their token.
    pub async fn member(&self, ws: &Workspace, email: &str, role: &str) -> String {
        self.post(&format!("/v1/teams/{}/members", ws.team))
            .bearer(&ws.token)
            .json(&serde_json::json!({ "email": email, "role": role }))
            .send()
            .await
            .assert_status(201);
        self.token(email)
    }
}

/// A sample dashboard of `samplefiles/dashboards/`, pointed at `connection`.
pub fn sample_dashboard(name: &str, connection: &str) -> String {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samplefiles/dashboards"
    ))
    .join(format!("{name}.yaml"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("00000000-0000-4000-8000-000000000001", connection)
}

/// Reads `events/<function>/<name>.json`, filling `{{placeholder}}`s: in the headers, path
/// and query by plain substitution; inside the body after decoding it, so that values which
/// need escaping (YAML in a JSON body) are escaped for where they land.
pub fn lambda_event(function: &str, name: &str, values: &[(&str, &str)]) -> Value {
    let (dir, _) = event_files(function);
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let body = event.get("body").and_then(Value::as_str).map(str::to_owned);
    if let Some(obj) = event.as_object_mut() {
        obj.remove("body");
    }
    let mut text = event.to_string();
    for (k, v) in values {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    let mut event: Value = serde_json::from_str(&text).unwrap();
    if let Some(mut body) = body {
        let json_body = event["headers"]["content-type"] == "application/json";
        for (k, v) in values {
            let escaped = if json_body {
                serde_json::to_string(v)
                    .unwrap()
                    .trim_matches('"')
                    .to_owned()
            } else {
                (*v).to_owned()
            };
            body = body.replace(&format!("{{{{{k}}}}}"), &escaped);
        }
        event["body"] = Value::String(body);
    }
    event
}

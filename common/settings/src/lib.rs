//! Typed settings, read from the environment once at start-up.
//!
//! Every variable is listed in `.env.example` and in the README. Secrets are held as
//! [`SecretString`], whose `Debug` prints `[REDACTED]`, so `Settings` can be logged whole.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

/// Where this process runs. `production` refuses development-only conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!(
                "`{other}` is not one of development, test, production"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("`{other}` is not one of json, pretty")),
        }
    }
}

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// RS256/ES256 tokens from an OpenID Connect issuer, checked against its JWKS.
    Oidc {
        issuer: String,
        audience: String,
        /// When unset, found through `{issuer}/.well-known/openid-configuration`.
        jwks_url: Option<String>,
        /// `AUTH_JWKS_MIN_REFRESH_SECS`: least time between two JWKS fetches caused by
        /// tokens naming an unknown key id (default 30 s).
        jwks_min_refresh: Duration,
    },
    /// HS256 tokens signed with a shared secret; refused in production.
    Dev {
        secret: SecretString,
        issuer: String,
        audience: String,
    },
}

impl AuthSettings {
    pub fn issuer(&self) -> &str {
        match self {
            Self::Oidc { issuer, .. } | Self::Dev { issuer, .. } => issuer,
        }
    }
    pub fn audience(&self) -> &str {
        match self {
            Self::Oidc { audience, .. } | Self::Dev { audience, .. } => audience,
        }
    }
}

/// Clock skew tolerated on `exp` and `nbf` unless `AUTH_LEEWAY_SECS` says otherwise.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The most skew `AUTH_LEEWAY_SECS` may allow.
pub const MAX_LEEWAY_SECS: u64 = 300;
pub const DEFAULT_DEV_ISSUER: &str = "bridge-dev";
pub const DEFAULT_AUDIENCE: &str = "bridge";
/// File under `BRIDGE_DATA_DIR` holding the generated development signing secret.
pub const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// Where each purpose's objects live (URLs: `file:…`, `memory://`, `gs://…`, `s3://…`).
#[derive(Debug, Clone)]
pub struct BucketSettings {
    pub credentials: String,
    pub dashboards: String,
    pub sessions: String,
    pub cache: String,
    /// Extra object_store options (tests point these at emulators and stubs).
    pub options: Vec<(String, String)>,
}

/// Which key ring wraps data keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRingSettings {
    /// A 256-bit key in a 0600 file under `BRIDGE_DATA_DIR` (development only).
    LocalFile(PathBuf),
    /// AWS KMS: a key ARN, id or alias. Endpoint via the SDK's `AWS_ENDPOINT_URL_KMS`.
    AwsKms(String),
    /// Google Cloud KMS: `projects/…/locations/…/keyRings/…/cryptoKeys/…`.
    GcpKms { key_name: String, endpoint: String },
}

/// How Bridge talks to warehouses.
#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    /// `BIGQUERY_API_URL`: the BigQuery v2 REST base (an emulator's, in tests).
    pub bigquery_api_url: String,
    /// `GCP_TOKEN_URI`: where service-account keys are exchanged for tokens. Always used
    /// instead of the key's own `token_uri`, so a stored key cannot aim Bridge elsewhere.
    pub gcp_token_uri: String,
    /// `WAREHOUSE_QUERY_TIMEOUT_SECS` (default 30).
    pub query_timeout: Duration,
    /// `WAREHOUSE_MAX_ROWS`: rows kept from one query (default 10000).
    pub max_rows: usize,
    /// `WAREHOUSE_MAX_RESULT_BYTES`: the most bytes one query's result may take as JSON
    /// (default 4 MiB); a team can lower it (`settings.max_result_bytes`). A larger result
    /// is an error for that query (`result_too_large`).
    pub max_result_bytes: usize,
    /// `WAREHOUSE_ALLOW_PRIVATE_HOSTS`: may Postgres warehouses live on loopback or private
    /// addresses? Default: yes outside production, no in production.
    pub allow_private_hosts: bool,
    /// May a Postgres warehouse's `sslmode` allow plain text (disable, allow, prefer)? Not in
    /// production.
    pub allow_plaintext: bool,
}

/// Who may call the scheduled precompute entry over HTTP (Cloud Scheduler with an OIDC
/// token): tokens from `issuer` for `audience`, with `service_account` as their verified email.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub issuer: String,
    pub audience: String,
    pub service_account: String,
    pub jwks_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    /// `PORT`: where the plain HTTP server listens (Cloud Run, local).
    pub port: u16,
    /// `DATABASE_URL`; `None` lets `bridge serve` start its own throwaway Postgres.
    pub database_url: Option<SecretString>,
    pub database_pool_size: usize,
    pub database_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: server-side `statement_timeout` of Bridge's own
    /// sessions (default 10000).
    pub database_statement_timeout: Duration,
    /// `REQUEST_TIMEOUT_MS`: the most time a request may take (default 10000); routes that
    /// wait on a warehouse get `WAREHOUSE_QUERY_TIMEOUT_SECS` plus this. Past it the answer
    /// is 503 with `Retry-After`, so a stalled database cannot hold requests.
    pub request_timeout: Duration,
    /// `DATABASE_CA_FILE`: PEM bundle to verify the server with when `sslmode=require`.
    pub database_ca_file: Option<PathBuf>,
    /// `BRIDGE_DATA_DIR`: local state (throwaway Postgres, dev secret, local buckets).
    pub data_dir: PathBuf,
    pub auth: AuthSettings,
    pub log_format: LogFormat,
    pub buckets: BucketSettings,
    pub key_ring: KeyRingSettings,
    pub warehouse: WarehouseSettings,
    /// `SCHEDULER_OIDC_AUDIENCE` and `SCHEDULER_SERVICE_ACCOUNT` (both or neither; plus
    /// optional `SCHEDULER_OIDC_ISSUER`, default Google, and `SCHEDULER_JWKS_URL`).
    pub scheduler: Option<SchedulerSettings>,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed to call the API from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// `CONSOLE_ENABLED`: whether `bridge serve` serves the developer console at `/console`
    /// (default: on, except in production).
    pub console_enabled: bool,
    /// `DATA_MAX_RESPONSE_BYTES`: the most bytes a whole dashboard's data response may take
    /// (default 5 MiB, under the 6 MB a buffered Lambda response can carry).
    pub max_response_bytes: usize,
    /// `AUTH_LEEWAY_SECS`: clock skew tolerated on tokens' `exp` and `nbf` (default 30 s,
    /// at most 300).
    pub auth_leeway: Duration,
    /// `RESULT_CACHE_BYTES`: the in-process budget of cached query results (default 64 MiB).
    pub result_cache_bytes: u64,
    /// Where jobs (catalog scans) run.
    pub jobs: JobSettings,
    /// Which LLM provider the chat and the dashboard agent use, and how it is reached.
    pub llm: LlmSettings,
    /// `STORAGE_CHECK_EVERY_SECS`: how often the scheduled tick runs the storage integrity
    /// check (default 86400, a day); `None` (0) never.
    pub storage_check_every: Option<Duration>,
    /// API rate limits (token buckets in Postgres, shared by every instance).
    pub rate_limits: RateLimits,
    /// OpenTelemetry: the standard `OTEL_*` variables (export is off unless an OTLP
    /// endpoint is set).
    pub otel: OtelSettings,
}

/// Requests per minute allowed, each a token bucket that holds a minute's worth (the burst)
/// and refills continuously; `None` (0): no limit. The defaults apply in production only
/// (development and tests run unlimited unless a variable is set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_LIMIT_USER_PER_MIN` (production default 1200): every authenticated request of
    /// one user.
    pub user_per_min: Option<u32>,
    /// `RATE_LIMIT_TEAM_PER_MIN` (production default 6000): the requests of all of a team's
    /// members that reach its warehouse or its LLM budget (dashboard data, chat and
    /// generation runs).
    pub team_per_min: Option<u32>,
}

pub const DEFAULT_RATE_LIMIT_USER_PER_MIN: u32 = 1200;
pub const DEFAULT_RATE_LIMIT_TEAM_PER_MIN: u32 = 6000;

/// OpenTelemetry export over OTLP/HTTP (protobuf), read from the standard variables:
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
/// `…_METRICS_ENDPOINT`), `OTEL_EXPORTER_OTLP_HEADERS` (never logged), `OTEL_SERVICE_NAME`
/// (default: the function's name), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
/// (default `parentbased_always_on`), `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000).
#[derive(Clone)]
pub struct OtelSettings {
    /// Where spans go (`…/v1/traces`); `None`: no span is exported.
    pub traces_endpoint: Option<String>,
    /// Where metrics go (`…/v1/metrics`); `None`: no metric is exported.
    pub metrics_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values percent-decoded), e.g. a vendor's key.
    pub headers: Vec<(String, SecretString)>,
    pub service_name: Option<String>,
    pub sampler: OtelSampler,
    pub metric_export_interval: Duration,
}

impl std::fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelSettings")
            .field("traces_endpoint", &self.traces_endpoint)
            .field("metrics_endpoint", &self.metrics_endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("sampler", &self.sampler)
            .field("metric_export_interval", &self.metric_export_interval)
            .finish()
    }
}

impl OtelSettings {
    /// Is anything exported?
    pub fn enabled(&self) -> bool {
        self.traces_endpoint.is_some() || self.metrics_endpoint.is_some()
    }
}

/// `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG`, a ratio in [0, 1], for the ratio
/// samplers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OtelSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

fn otel_settings(get: &impl Fn(&str) -> Option<String>) -> Result<OtelSettings, SettingsError> {
    let trimmed = |name: &str| get(name).map(|v| v.trim().to_owned());
    let base = trimmed("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| v.trim_end_matches('/').to_owned());
    let signal = |var: &'static str, path: &str| -> Result<Option<String>, SettingsError> {
        let url = match trimmed(var) {
            Some(url) => url,
            None => match &base {
                Some(base) => format!("{base}{path}"),
                None => return Ok(None),
            },
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err(var, "must be an http:// or https:// URL"));
        }
        Ok(Some(url))
    };
    if let Some(base) = &base
        && !(base.starts_with("http://") || base.starts_with("https://"))
    {
        return Err(err(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "must be an http:// or https:// URL",
        ));
    }
    let traces_endpoint = signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces")?;
    let metrics_endpoint = signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics")?;
    let mut headers = Vec::new();
    for pair in get("OTEL_EXPORTER_OTLP_HEADERS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(err(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "expected key=value pairs",
            ));
        };
        let v = percent_decode(v.trim());
        headers.push((k.trim().to_owned(), SecretString::from(v)));
    }
    let ratio = || -> Result<f64, SettingsError> {
        match trimmed("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| err("OTEL_TRACES_SAMPLER_ARG", "must be a ratio in [0, 1]")),
        }
    };
    let sampler = match trimmed("OTEL_TRACES_SAMPLER").as_deref() {
        None | Some("parentbased_always_on") => OtelSampler::ParentBasedAlwaysOn,
        Some("always_on") => OtelSampler::AlwaysOn,
        Some("always_off") => OtelSampler::AlwaysOff,
        Some("traceidratio") => OtelSampler::TraceIdRatio(ratio()?),
        Some("parentbased_always_off") => OtelSampler::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => OtelSampler::ParentBasedTraceIdRatio(ratio()?),
        Some(_) => {
            return Err(err(
                "OTEL_TRACES_SAMPLER",
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    };
    let metric_export_interval =
        Duration::from_millis(parse_num(get, "OTEL_METRIC_EXPORT_INTERVAL", 60_000u64)?.max(100));
    Ok(OtelSettings {
        traces_endpoint,
        metrics_endpoint,
        headers,
        service_name: trimmed("OTEL_SERVICE_NAME"),
        sampler,
        metric_export_interval,
    })
}

/// `%XX` escapes decoded (the OTLP headers variable is a W3C baggage-style list).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `LLM_PROVIDER`: `anthropic`, `openai` (any OpenAI-compatible Chat Completions server:
/// OpenAI, vLLM, Ollama, llama.cpp) or `builtin` (deterministic, offline, no key). Default:
/// `anthropic` when `ANTHROPIC_API_KEY` is set, else `openai` when `OPENAI_API_KEY` is set,
/// else `builtin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProviderKind {
    Anthropic,
    OpenAi,
    Builtin,
}

impl FromStr for LlmProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anthropic" => Ok(Self::Anthropic),
            "openai" => Ok(Self::OpenAi),
            "builtin" => Ok(Self::Builtin),
            other => Err(format!(
                "`{other}` is not a provider (anthropic, openai, builtin)"
            )),
        }
    }
}

/// One provider's endpoint: `{ANTHROPIC,OPENAI}_BASE_URL`, `…_API_KEY` (never logged) and
/// `…_MODEL`.
#[derive(Debug, Clone)]
pub struct LlmEndpoint {
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub provider: LlmProviderKind,
    pub anthropic: LlmEndpoint,
    pub openai: LlmEndpoint,
    /// `LLM_CONNECT_TIMEOUT_MS` (default 10000): to open the connection.
    pub connect_timeout: Duration,
    /// `LLM_FIRST_BYTE_TIMEOUT_MS` (default 60000): from the request to the response head.
    pub first_byte_timeout: Duration,
    /// `LLM_IDLE_TIMEOUT_MS` (default 30000): the longest silence between two chunks of a
    /// stream; past it the stream is an error, not a hang.
    pub idle_timeout: Duration,
    /// `LLM_MAX_RETRIES` (default 3): retries of 429, 529, 5xx and connection failures before
    /// the first byte, with exponential backoff and jitter, honouring `retry-after`.
    pub max_retries: usize,
    /// `LLM_RETRY_MAX_DELAY_MS` (default 20000): the longest wait between two attempts,
    /// including a `retry-after` the provider asks for; a longer ask fails at once.
    pub retry_max_delay: Duration,
    /// `LLM_BREAKER_FAILURES` (default 5): consecutive failures that open a provider's circuit.
    pub breaker_failures: u32,
    /// `LLM_BREAKER_COOLDOWN_SECS` (default 300): how long an open circuit refuses calls
    /// before letting one trial call through (half-open).
    pub breaker_cooldown: Duration,
    /// `LLM_MAX_TOKENS` (default 4096): the output tokens one model call may produce.
    pub max_tokens: u32,
    /// `LLM_PRICES_FILE`: a JSON price table replacing the built-in one.
    pub prices_file: Option<PathBuf>,
    /// What one chat run may spend before it is stopped.
    pub run_limits: RunLimits,
}

/// The bounds of one chat run (an answer to one message, tool loop included): on Lambda,
/// where a client's disconnect is not signalled, these are what stop a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    /// `CHAT_MAX_STEPS` (default 20): model calls per run.
    pub steps: u32,
    /// `CHAT_MAX_RUN_SECS` (default 300): wall clock.
    pub wall: Duration,
    /// `CHAT_MAX_RUN_TOKENS` (default 200000): input and output tokens, all calls together.
    pub tokens: u64,
    /// `CHAT_MAX_RUN_USD` (default 1.00): dollars, all calls together.
    pub usd: f64,
}

/// `JOBS_RUNNER`: `local` (a task in this process; the default off Lambda) or `lambda` (an
/// asynchronous invocation of `JOBS_LAMBDA_FUNCTION`, default this function
/// (`AWS_LAMBDA_FUNCTION_NAME`), in `AWS_REGION`, at `JOBS_LAMBDA_ENDPOINT` if set; the
/// default on Lambda).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSettings {
    Local,
    Lambda {
        function: String,
        region: String,
        endpoint: Option<String>,
    },
}

/// Defaults of the result bounds.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;
pub const DEFAULT_RESULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// A day between two scheduled storage integrity checks.
pub const DEFAULT_STORAGE_CHECK_EVERY_SECS: u64 = 86_400;

/// A setting that could not be read; names the variable and never echoes a secret's value.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub message: String,
}

fn err(variable: &'static str, message: impl fmt::Display) -> SettingsError {
    SettingsError {
        variable,
        message: message.to_string(),
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let parse = |name: &'static str| -> Result<Option<_>, SettingsError> {
            get(name).map(|v| v.trim().to_owned()).map(Ok).transpose()
        };

        let environment = match parse("BRIDGE_ENV")? {
            Some(v) => v.parse().map_err(|e| err("BRIDGE_ENV", e))?,
            None => Environment::Development,
        };
        let port = parse_num(&get, "PORT", 8080u16)?;
        let database_url = get("DATABASE_URL").map(SecretString::from);
        let database_pool_size = parse_num(&get, "DATABASE_POOL_SIZE", 8usize)?;
        if database_pool_size == 0 {
            return Err(err("DATABASE_POOL_SIZE", "must be at least 1"));
        }
        let database_timeout =
            Duration::from_millis(parse_num(&get, "DATABASE_TIMEOUT_MS", 5_000u64)?);
        let database_statement_timeout =
            Duration::from_millis(parse_num(&get, "DATABASE_STATEMENT_TIMEOUT_MS", 10_000u64)?);
        let request_timeout =
            Duration::from_millis(parse_num(&get, "REQUEST_TIMEOUT_MS", 10_000u64)?);
        if request_timeout < Duration::from_millis(100) {
            return Err(err("REQUEST_TIMEOUT_MS", "must be at least 100"));
        }
        let database_ca_file = parse("DATABASE_CA_FILE")?.map(PathBuf::from);
        let data_dir = PathBuf::from(parse("BRIDGE_DATA_DIR")?.unwrap_or_else(|| ".bridge".into()));
        let log_format = match parse("LOG_FORMAT")? {
            Some(v) => v.parse().map_err(|e| err("LOG_FORMAT", e))?,
            None => LogFormat::Json,
        };
        let cors_allowed_origins = parse("CORS_ALLOWED_ORIGINS")?
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for origin in &cors_allowed_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(err(
                    "CORS_ALLOWED_ORIGINS",
                    format!("`{origin}` must start with https:// or http://"),
                ));
            }
        }

        let mode = parse("AUTH_MODE")?;
        let auth = match mode.as_deref() {
            Some("oidc") => AuthSettings::Oidc {
                issuer: get("AUTH_ISSUER")
                    .ok_or_else(|| err("AUTH_ISSUER", "is required when AUTH_MODE=oidc"))?
                    .trim()
                    .trim_end_matches('/')
                    .to_owned(),
                audience: get("AUTH_AUDIENCE")
                    .ok_or_else(|| err("AUTH_AUDIENCE", "is required when AUTH_MODE=oidc"))?
                    .trim()
                    .to_owned(),
                jwks_url: parse("AUTH_JWKS_URL")?,
                jwks_min_refresh: Duration::from_secs(parse_num(
                    &get,
                    "AUTH_JWKS_MIN_REFRESH_SECS",
                    30u64,
                )?),
            },
            Some("dev") | None => {
                if environment == Environment::Production {
                    return Err(err(
                        "AUTH_MODE",
                        if mode.is_some() {
                            "dev tokens are refused when BRIDGE_ENV=production; use AUTH_MODE=oidc"
                        } else {
                            "must be set to oidc when BRIDGE_ENV=production"
                        },
                    ));
                }
                let secret = match get("BRIDGE_DEV_JWT_SECRET") {
                    Some(s) => s,
                    None => load_or_create_dev_secret(&data_dir)
                        .map_err(|e| err("BRIDGE_DEV_JWT_SECRET", e))?,
                };
                if secret.len() < 32 {
                    return Err(err(
                        "BRIDGE_DEV_JWT_SECRET",
                        "must be at least 32 characters long",
                    ));
                }
                AuthSettings::Dev {
                    secret: SecretString::from(secret),
                    issuer: parse("AUTH_ISSUER")?.unwrap_or_else(|| DEFAULT_DEV_ISSUER.into()),
                    audience: parse("AUTH_AUDIENCE")?.unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
                }
            }
            Some(other) => {
                return Err(err(
                    "AUTH_MODE",
                    format!("`{other}` is not one of oidc, dev"),
                ));
            }
        };

        let bucket = |name: &'static str, purpose: &str| -> Result<String, SettingsError> {
            let url = parse(name)?.unwrap_or_else(|| {
                format!("file:{}", data_dir.join("buckets").join(purpose).display())
            });
            if !["file:", "memory:", "gs://", "s3://"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return Err(err(
                    name,
                    format!("`{url}` must start with file:, memory:, gs:// or s3://"),
                ));
            }
            Ok(url)
        };
        let buckets_env = (
            bucket("CREDENTIALS_BUCKET", "credentials")?,
            bucket("DASHBOARDS_BUCKET", "dashboards")?,
            bucket("SESSIONS_BUCKET", "sessions")?,
            bucket("CACHE_BUCKET", "cache")?,
        );
        let buckets = BucketSettings {
            credentials: buckets_env.0,
            dashboards: buckets_env.1,
            sessions: buckets_env.2,
            cache: buckets_env.3,
            options: Vec::new(),
        };
        let key_ring = match parse("KMS_KEY_URI")? {
            None if environment == Environment::Production => {
                return Err(err(
                    "KMS_KEY_URI",
                    "is required when BRIDGE_ENV=production (awskms://… or gcpkms://…)",
                ));
            }
            None => KeyRingSettings::LocalFile(data_dir.join("keyring.key")),
            Some(uri) => {
                if let Some(key) = uri.strip_prefix("awskms://") {
                    KeyRingSettings::AwsKms(key.to_owned())
                } else if let Some(name) = uri.strip_prefix("gcpkms://") {
                    if !name.starts_with("projects/") || !name.contains("/cryptoKeys/") {
                        return Err(err(
                            "KMS_KEY_URI",
                            "gcpkms:// must name projects/…/locations/…/keyRings/…/cryptoKeys/…",
                        ));
                    }
                    KeyRingSettings::GcpKms {
                        key_name: name.to_owned(),
                        endpoint: parse("GCP_KMS_ENDPOINT")?
                            .unwrap_or_else(|| "https://cloudkms.googleapis.com".into())
                            .trim_end_matches('/')
                            .to_owned(),
                    }
                } else if uri.starts_with("file:") && environment != Environment::Production {
                    KeyRingSettings::LocalFile(PathBuf::from(uri.trim_start_matches("file:")))
                } else {
                    return Err(err(
                        "KMS_KEY_URI",
                        "must be awskms://<key>, gcpkms://projects/… (or file:<path> outside production)",
                    ));
                }
            }
        };
        if environment == Environment::Production {
            for (name, url) in [
                ("CREDENTIALS_BUCKET", &buckets.credentials),
                ("DASHBOARDS_BUCKET", &buckets.dashboards),
                ("SESSIONS_BUCKET", &buckets.sessions),
                ("CACHE_BUCKET", &buckets.cache),
            ] {
                if !(url.starts_with("gs://") || url.starts_with("s3://")) {
                    return Err(err(
                        name,
                        "must be a gs:// or s3:// bucket when BRIDGE_ENV=production",
                    ));
                }
            }
        }
        let warehouse = WarehouseSettings {
            bigquery_api_url: parse("BIGQUERY_API_URL")?
                .unwrap_or_else(|| "https://bigquery.googleapis.com/bigquery/v2".into())
                .trim_end_matches('/')
                .to_owned(),
            gcp_token_uri: parse("GCP_TOKEN_URI")?
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            query_timeout: Duration::from_secs(parse_num(
                &get,
                "WAREHOUSE_QUERY_TIMEOUT_SECS",
                30u64,
            )?),
            max_rows: parse_num(&get, "WAREHOUSE_MAX_ROWS", 10_000usize)?,
            max_result_bytes: parse_num(
                &get,
                "WAREHOUSE_MAX_RESULT_BYTES",
                DEFAULT_MAX_RESULT_BYTES,
            )?,
            allow_plaintext: environment != Environment::Production,
            allow_private_hosts: match parse("WAREHOUSE_ALLOW_PRIVATE_HOSTS")?.as_deref() {
                None => environment != Environment::Production,
                Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    return Err(err(
                        "WAREHOUSE_ALLOW_PRIVATE_HOSTS",
                        format!("`{other}` is not true or false"),
                    ));
                }
            },
        };

        if warehouse.max_rows == 0 {
            return Err(err("WAREHOUSE_MAX_ROWS", "must be at least 1"));
        }
        if warehouse.max_result_bytes < 1024 {
            return Err(err("WAREHOUSE_MAX_RESULT_BYTES", "must be at least 1024"));
        }
        let max_response_bytes =
            parse_num(&get, "DATA_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)?;
        if max_response_bytes < warehouse.max_result_bytes + 4096 {
            return Err(err(
                "DATA_MAX_RESPONSE_BYTES",
                "must exceed WAREHOUSE_MAX_RESULT_BYTES by at least 4096, so that any one result fits",
            ));
        }
        let auth_leeway = parse_num(&get, "AUTH_LEEWAY_SECS", DEFAULT_LEEWAY_SECS)?;
        if auth_leeway > MAX_LEEWAY_SECS {
            return Err(err(
                "AUTH_LEEWAY_SECS",
                format!("must be at most {}", MAX_LEEWAY_SECS),
            ));
        }
        let auth_leeway = Duration::from_secs(auth_leeway);
        let result_cache_bytes = parse_num(&get, "RESULT_CACHE_BYTES", DEFAULT_RESULT_CACHE_BYTES)?;
        let storage_check_every = match parse_num(
            &get,
            "STORAGE_CHECK_EVERY_SECS",
            DEFAULT_STORAGE_CHECK_EVERY_SECS,
        )? {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        let production = environment == Environment::Production;
        let rate = |name: &'static str, default: u32| -> Result<Option<u32>, SettingsError> {
            let n = parse_num(&get, name, if production { default } else { 0 })?;
            Ok((n > 0).then_some(n))
        };
        let rate_limits = RateLimits {
            user_per_min: rate("RATE_LIMIT_USER_PER_MIN", DEFAULT_RATE_LIMIT_USER_PER_MIN)?,
            team_per_min: rate("RATE_LIMIT_TEAM_PER_MIN", DEFAULT_RATE_LIMIT_TEAM_PER_MIN)?,
        };
        let on_lambda = get("AWS_LAMBDA_RUNTIME_API").is_some();
        let jobs = match parse("JOBS_RUNNER")?.as_deref() {
            Some("local") => JobSettings::Local,
            None if !on_lambda => JobSettings::Local,
            Some("lambda") | None => JobSettings::Lambda {
                function: parse("JOBS_LAMBDA_FUNCTION")?
                    .or_else(|| get("AWS_LAMBDA_FUNCTION_NAME"))
                    .ok_or_else(|| {
                        err(
                            "JOBS_LAMBDA_FUNCTION",
                            "is required with JOBS_RUNNER=lambda off Lambda",
                        )
                    })?,
                region: parse("AWS_REGION")?.unwrap_or_else(|| "us-east-1".into()),
                endpoint: parse("JOBS_LAMBDA_ENDPOINT")?,
            },
            Some(other) => {
                return Err(err(
                    "JOBS_RUNNER",
                    format!("`{other}` is not one of local, lambda"),
                ));
            }
        };
        let scheduler = match (
            parse("SCHEDULER_OIDC_AUDIENCE")?,
            parse("SCHEDULER_SERVICE_ACCOUNT")?,
        ) {
            (None, None) => None,
            (Some(audience), Some(service_account)) => Some(SchedulerSettings {
                issuer: parse("SCHEDULER_OIDC_ISSUER")?
                    .unwrap_or_else(|| "https://accounts.google.com".into())
                    .trim_end_matches('/')
                    .to_owned(),
                audience,
                service_account: service_account.to_lowercase(),
                jwks_url: parse("SCHEDULER_JWKS_URL")?,
            }),
            (Some(_), None) => {
                return Err(err(
                    "SCHEDULER_SERVICE_ACCOUNT",
                    "is required with SCHEDULER_OIDC_AUDIENCE",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "SCHEDULER_OIDC_AUDIENCE",
                    "is required with SCHEDULER_SERVICE_ACCOUNT",
                ));
            }
        };
        let llm = llm_settings(&get)?;
        let otel = otel_settings(&get)?;
        let console_enabled = match parse("CONSOLE_ENABLED")?.as_deref() {
            None => environment != Environment::Production,
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(err(
                    "CONSOLE_ENABLED",
                    format!("`{other}` is not true or false"),
                ));
            }
        };
        Ok(Self {
            environment,
            port,
            database_url,
            database_pool_size,
            database_timeout,
            database_statement_timeout,
            request_timeout,
            database_ca_file,
            data_dir,
            auth,
            log_format,
            buckets,
            key_ring,
            warehouse,
            scheduler,
            cors_allowed_origins,
            console_enabled,
            max_response_bytes,
            auth_leeway,
            result_cache_bytes,
            jobs,
            llm,
            storage_check_every,
            rate_limits,
            otel,
        })
    }

    /// The database URL, for the few places that must hand it to a driver.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_ref().map(|s| s.expose_secret())
    }
}

impl LlmSettings {
    /// What an empty environment gives (the builtin provider, the default timeouts): a base
    /// for tests and tools to adjust.
    pub fn defaults() -> Self {
        #[allow(clippy::expect_used)]
        llm_settings(&|_| None).expect("the defaults are valid")
    }

    /// The defaults, aimed at an OpenAI-compatible server (a local model, a test server).
    pub fn openai_compatible(base_url: &str, model: &str) -> Self {
        let mut s = Self::defaults();
        s.provider = LlmProviderKind::OpenAi;
        s.openai.base_url = base_url.trim_end_matches('/').to_owned();
        s.openai.model = model.to_owned();
        s
    }
}

fn llm_settings(get: &impl Fn(&str) -> Option<String>) -> Result<LlmSettings, SettingsError> {
    let endpoint = |prefix: &'static str,
                    url_var: &'static str,
                    default_url: &str,
                    model_var: &'static str,
                    default_model: &str|
     -> Result<LlmEndpoint, SettingsError> {
        let base_url = get(url_var)
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| default_url.to_owned());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(err(url_var, "must be an http(s) URL"));
        }
        let key_var = if prefix == "ANTHROPIC" {
            "ANTHROPIC_API_KEY"
        } else {
            "OPENAI_API_KEY"
        };
        Ok(LlmEndpoint {
            base_url,
            api_key: get(key_var).map(|v| SecretString::from(v.trim().to_owned())),
            model: get(model_var)
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| default_model.to_owned()),
        })
    };
    let anthropic = endpoint(
        "ANTHROPIC",
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com",
        "ANTHROPIC_MODEL",
        "claude-sonnet-4-5",
    )?;
    let openai = endpoint(
        "OPENAI",
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "OPENAI_MODEL",
        "gpt-4o-mini",
    )?;
    let provider = match get("LLM_PROVIDER") {
        Some(v) => v.trim().parse().map_err(|e| err("LLM_PROVIDER", e))?,
        None if anthropic.api_key.is_some() => LlmProviderKind::Anthropic,
        None if openai.api_key.is_some() => LlmProviderKind::OpenAi,
        None => LlmProviderKind::Builtin,
    };
    if provider == LlmProviderKind::Anthropic && anthropic.api_key.is_none() {
        return Err(err(
            "ANTHROPIC_API_KEY",
            "is required with LLM_PROVIDER=anthropic",
        ));
    }
    let ms = |name: &'static str, default: u64| -> Result<Duration, SettingsError> {
        let v = parse_num(get, name, default)?;
        if v == 0 {
            return Err(err(name, "must be at least 1"));
        }
        Ok(Duration::from_millis(v))
    };
    let breaker_failures = parse_num(get, "LLM_BREAKER_FAILURES", 5u32)?;
    if breaker_failures == 0 {
        return Err(err("LLM_BREAKER_FAILURES", "must be at least 1"));
    }
    let max_tokens = parse_num(get, "LLM_MAX_TOKENS", 4096u32)?;
    if !(16..=128_000).contains(&max_tokens) {
        return Err(err("LLM_MAX_TOKENS", "must be between 16 and 128000"));
    }
    Ok(LlmSettings {
        provider,
        anthropic,
        openai,
        connect_timeout: ms("LLM_CONNECT_TIMEOUT_MS", 10_000)?,
        first_byte_timeout: ms("LLM_FIRST_BYTE_TIMEOUT_MS", 60_000)?,
        idle_timeout: ms("LLM_IDLE_TIMEOUT_MS", 30_000)?,
        max_retries: parse_num(get, "LLM_MAX_RETRIES", 3usize)?.min(10),
        retry_max_delay: ms("LLM_RETRY_MAX_DELAY_MS", 20_000)?,
        breaker_failures,
        breaker_cooldown: Duration::from_secs(parse_num(get, "LLM_BREAKER_COOLDOWN_SECS", 300u64)?),
        max_tokens,
        prices_file: get("LLM_PRICES_FILE").map(|v| PathBuf::from(v.trim())),
        run_limits: RunLimits {
            steps: match parse_num(get, "CHAT_MAX_STEPS", 20u32)? {
                0 => return Err(err("CHAT_MAX_STEPS", "must be at least 1")),
                n => n.min(200),
            },
            wall: Duration::from_secs(parse_num(get, "CHAT_MAX_RUN_SECS", 300u64)?.clamp(1, 3600)),
            tokens: parse_num(get, "CHAT_MAX_RUN_TOKENS", 200_000u64)?,
            usd: {
                let usd = parse_num(get, "CHAT_MAX_RUN_USD", 1.0f64)?;
                if !usd.is_finite() || usd < 0.0 {
                    return Err(err("CHAT_MAX_RUN_USD", "must be a non-negative number"));
                }
                usd
            },
        },
    })
}

fn parse_num<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError>
where
    T::Err: fmt::Display,
{
    match get(name) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| err(name, format!("`{}` is not a valid number: {e}", v.trim()))),
        None => Ok(default),
    }
}

/// The development signing secret lives in a 0600 file under the data directory, so that
/// `bridge serve` and `bridge token` agree without anyone choosing a secret by hand.
fn load_or_create_dev_secret(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(DEV_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = base::crypto::random_token(32);
    base::fsutil::write_private(&path, secret.as_bytes())?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_are_local_development() {
        let s = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET)]).expect("settings");
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.port, 8080);
        assert!(s.database_url.is_none());
        assert!(matches!(s.auth, AuthSettings::Dev { .. }));
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn llm_provider_defaults_to_builtin_without_a_key() {
        let s = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET)]).expect("settings");
        assert_eq!(s.llm.provider, LlmProviderKind::Builtin);
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ])
        .expect("settings");
        assert_eq!(s.llm.provider, LlmProviderKind::Anthropic);
        assert!(
            !format!("{s:?}").contains("sk-ant-test"),
            "the key is never printed"
        );
        let e = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("LLM_PROVIDER", "anthropic"),
        ])
        .expect_err("a key is needed");
        assert_eq!(e.variable, "ANTHROPIC_API_KEY");
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1/"),
        ])
        .expect("a local OpenAI-compatible server needs no key");
        assert_eq!(s.llm.openai.base_url, "http://127.0.0.1:8081/v1");
        let e = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET), ("LLM_PROVIDER", "gpt")])
            .expect_err("unknown provider");
        assert_eq!(e.variable, "LLM_PROVIDER");
    }

    #[test]
    fn production_refuses_dev_tokens() {
        let e = settings(&[
            ("BRIDGE_ENV", "production"),
            ("AUTH_MODE", "dev"),
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
        ])
        .expect_err("must refuse");
        assert_eq!(e.variable, "AUTH_MODE");
        let e = settings(&[("BRIDGE_ENV", "production")]).expect_err("must refuse");
        assert_eq!(e.variable, "AUTH_MODE");
    }

    #[test]
    fn oidc_needs_issuer_and_audience() {
        let e = settings(&[("AUTH_MODE", "oidc")]).expect_err("issuer");
        assert_eq!(e.variable, "AUTH_ISSUER");
        let e = settings(&[("AUTH_MODE", "oidc"), ("AUTH_ISSUER", "https://id.example")])
            .expect_err("audience");
        assert_eq!(e.variable, "AUTH_AUDIENCE");
        let s = settings(&[
            ("BRIDGE_ENV", "production"),
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", "https://id.example/"),
            ("AUTH_AUDIENCE", "bridge"),
            ("KMS_KEY_URI", "awskms://alias/bridge"),
            ("CREDENTIALS_BUCKET", "s3://c"),
            ("DASHBOARDS_BUCKET", "s3://d"),
            ("SESSIONS_BUCKET", "s3://s"),
            ("CACHE_BUCKET", "s3://x"),
        ])
        .expect("settings");
        assert_eq!(s.auth.issuer(), "https://id.example");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("DATABASE_POOL_SIZE", "0"),
            ("BRIDGE_ENV", "staging"),
            ("LOG_FORMAT", "xml"),
            ("AUTH_MODE", "basic"),
            ("CORS_ALLOWED_ORIGINS", "example.com"),
            ("CACHE_BUCKET", "ftp://x"),
            ("KMS_KEY_URI", "vault://x"),
            ("KMS_KEY_URI", "gcpkms://nope"),
            ("WAREHOUSE_MAX_ROWS", "many"),
            ("WAREHOUSE_ALLOW_PRIVATE_HOSTS", "maybe"),
        ] {
            let e = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET), (var, value)]).expect_err(var);
            assert_eq!(e.variable, var, "{e}");
        }
        let e = settings(&[("BRIDGE_DEV_JWT_SECRET", "short")]).expect_err("short");
        assert_eq!(e.variable, "BRIDGE_DEV_JWT_SECRET");
        assert!(!e.to_string().contains("short"), "never echo a secret");
    }

    #[test]
    fn opentelemetry_reads_the_standard_variables() {
        let s = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET)]).expect("settings");
        assert!(!s.otel.enabled(), "nothing is exported without an endpoint");
        assert_eq!(s.otel.sampler, OtelSampler::ParentBasedAlwaysOn);
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "https://m.example/v1/m",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret, x-team = a"),
            ("OTEL_SERVICE_NAME", "bridge-data"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ])
        .expect("settings");
        let o = &s.otel;
        assert_eq!(
            o.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            o.metrics_endpoint.as_deref(),
            Some("https://m.example/v1/m")
        );
        assert_eq!(o.headers.len(), 2);
        assert_eq!(o.headers[0].0, "api-key");
        assert_eq!(o.headers[0].1.expose_secret(), "s=cret");
        assert!(
            !format!("{o:?}").contains("cret"),
            "header values never print"
        );
        assert_eq!(o.service_name.as_deref(), Some("bridge-data"));
        assert_eq!(o.sampler, OtelSampler::ParentBasedTraceIdRatio(0.1));
        for (var, bad) in [
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ] {
            let mut vars = vec![
                ("BRIDGE_DEV_JWT_SECRET", SECRET),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ];
            vars.retain(|(k, _)| *k != var);
            vars.push((var, bad));
            let e = settings(&vars).expect_err(bad);
            assert_eq!(e.variable, var);
        }
    }

    #[test]
    fn storage_checks_run_daily_unless_disabled() {
        let s = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET)]).expect("settings");
        assert_eq!(s.storage_check_every, Some(Duration::from_secs(86_400)));
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("STORAGE_CHECK_EVERY_SECS", " 3600 "),
        ])
        .expect("settings");
        assert_eq!(s.storage_check_every, Some(Duration::from_secs(3600)));
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("STORAGE_CHECK_EVERY_SECS", "0"),
        ])
        .expect("settings");
        assert_eq!(s.storage_check_every, None);
        for bad in ["daily", "-1", "1.5"] {
            let e = settings(&[
                ("BRIDGE_DEV_JWT_SECRET", SECRET),
                ("STORAGE_CHECK_EVERY_SECS", bad),
            ])
            .expect_err(bad);
            assert_eq!(e.variable, "STORAGE_CHECK_EVERY_SECS", "{e}");
        }
    }

    #[test]
    fn production_needs_a_kms_and_keeps_warehouses_off_private_hosts() {
        let base = [
            ("BRIDGE_ENV", "production"),
            ("AUTH_MODE", "oidc"),
            ("AUTH_ISSUER", "https://id.example"),
            ("AUTH_AUDIENCE", "bridge"),
        ];
        let e = settings(&base).expect_err("kms");
        assert_eq!(e.variable, "KMS_KEY_URI");
        let mut vars = base.to_vec();
        vars.push((
            "KMS_KEY_URI",
            "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
        ));
        let e = settings(&vars).expect_err("local buckets");
        assert_eq!(e.variable, "CREDENTIALS_BUCKET");
        vars.extend([
            ("CREDENTIALS_BUCKET", "gs://c"),
            ("DASHBOARDS_BUCKET", "gs://d"),
            ("SESSIONS_BUCKET", "gs://s"),
            ("CACHE_BUCKET", "gs://x"),
        ]);
        let s = settings(&vars).expect("settings");
        assert!(!s.warehouse.allow_private_hosts);
        assert!(matches!(s.key_ring, KeyRingSettings::GcpKms { .. }));
        let dev = settings(&[("BRIDGE_DEV_JWT_SECRET", SECRET)]).expect("dev");
        assert!(dev.warehouse.allow_private_hosts);
        assert!(matches!(dev.key_ring, KeyRingSettings::LocalFile(_)));
        assert!(dev.buckets.credentials.starts_with("file:"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = settings(&[
            ("BRIDGE_DEV_JWT_SECRET", SECRET),
            ("DATABASE_URL", "postgres://u:hunter2hunter2@db/x"),
        ])
        .expect("settings");
        let printed = format!("{s:?}");
        assert!(!printed.contains(SECRET));
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn dev_secret_is_generated_once_and_private() {
        let dir = std::env::temp_dir().join(format!("bridge-settings-{}", uuid::Uuid::new_v4()));
        let dir_s = dir.to_string_lossy().into_owned();
        let a = settings(&[("BRIDGE_DATA_DIR", &dir_s)]).expect("settings");
        let b = settings(&[("BRIDGE_DATA_DIR", &dir_s)]).expect("settings");
        let (AuthSettings::Dev { secret: sa, .. }, AuthSettings::Dev { secret: sb, .. }) =
            (&a.auth, &b.auth)
        else {
            panic!("dev mode expected");
        };
        assert_eq!(sa.expose_secret(), sb.expose_secret());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(DEV_SECRET_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }
}

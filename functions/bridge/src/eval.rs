//! `bridge eval samplefiles/evals/`: the dashboard agent against golden questions.
//!
//! Bridge is served on a loopback port (every function's routes, as `bridge serve` does), a
//! team of its own connects the demo warehouse and scans it, and each question of the
//! directory's `*.jsonl` files goes through `POST /v1/dashboards/generate` as a user would send
//! it. The saved dashboard's data is read back through `GET /v1/dashboards/{slug}/data` and
//! scored against the record's reference SQL, run on the demo warehouse itself (execution
//! match, `samplefiles/evals/README.md`). The run's stream says the rest: whether every saved
//! query was dry-run first, steps, tokens, USD, warehouse bytes, tool-cache hits and the time
//! to `dashboard_created`.
//!
//! `--record DIR` puts a recording proxy between Bridge and the model's provider and keeps
//! every response as it came (`DIR/<id>.json`); `--replay DIR` serves them back in order, so a
//! real model's run is scored again offline, with no key and no network.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base::domain::Email;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use services::AppState;
use settings::{LlmProviderKind, Settings};
use sse_stream::SseByteStream;
use storage::db;

/// One golden question (a line of a `.jsonl` file).
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub tier: String,
    pub facts: Vec<Fact>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Fact {
    pub name: String,
    pub sql: String,
}

/// What the command was asked to do (`bridge eval --help`).
#[derive(clap::Args)]
pub struct Options {
    /// Directory of `*.jsonl` question files.
    pub dir: PathBuf,
    /// Only questions of this tier (`basic` or `advanced`).
    #[arg(long)]
    pub tier: Option<String>,
    /// Only these question ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// At most this many questions (after --tier and --only).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the whole report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the provider's responses in this directory (a recording to replay).
    #[arg(long, conflicts_with = "replay")]
    pub record: Option<PathBuf>,
    /// Serve the provider's responses from a recording instead of calling a provider.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// The demo warehouse's URL when it is already loaded (else it is loaded as
    /// `bridge demo-warehouse` does).
    #[arg(long, env = "EVAL_WAREHOUSE_URL", hide_env_values = true)]
    pub warehouse_url: Option<String>,
    /// Database to load the demo warehouse into.
    #[arg(long, default_value = "bridge_demo")]
    pub database: String,
    /// Fail (exit 1) when fewer questions than this share (0 to 1) match.
    #[arg(long)]
    pub min_match: Option<f64>,
}

/// One question's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub id: String,
    pub tier: String,
    /// `complete`, or the `error` event's code.
    pub ended: String,
    pub message: Option<String>,
    pub slug: Option<String>,
    pub version: Option<i64>,
    pub saved: bool,
    /// Every query of the saved dashboard answered with rows.
    pub queries_ran: bool,
    pub facts: Vec<FactOutcome>,
    pub execution_match: bool,
    /// Every saved query's SQL went through `run_dry_run_query` earlier in the run.
    pub dry_run_before_save: bool,
    pub steps: u64,
    pub tokens: u64,
    pub cost_usd: f64,
    pub warehouse_bytes: u64,
    pub tool_calls: Vec<String>,
    pub cacheable_results: u64,
    pub cached_results: u64,
    pub ms_to_dashboard: Option<f64>,
    pub ms_total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FactOutcome {
    pub name: String,
    pub matched: bool,
    /// The dashboard query that holds it.
    pub query: Option<String>,
    pub rows: usize,
}

/// The figures over a set of outcomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub questions: usize,
    pub saved: usize,
    pub queries_ran: usize,
    pub execution_match: usize,
    pub dry_run_before_save: usize,
    pub mean_steps: f64,
    pub mean_tokens: f64,
    pub usd_per_dashboard: f64,
    pub total_usd: f64,
    pub mean_warehouse_bytes: f64,
    pub tool_cache_hit_rate: Option<f64>,
    pub median_ms_to_dashboard: Option<f64>,
    pub max_ms_to_dashboard: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub provider: String,
    pub model: String,
    pub summary: Summary,
    pub tiers: BTreeMap<String, Summary>,
    pub outcomes: Vec<Outcome>,
}

/// The tools whose results go through the tool cache.
const CACHEABLE: &[&str] = &[
    "list_datasets",
    "list_tables",
    "get_table_schema",
    "list_dashboards",
];

pub fn load(dir: &Path) -> anyhow::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .jsonl file", dir.display());
    }
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", file.display(), n + 1))?;
            if r.facts.is_empty() {
                bail!("{}:{}: `{}` has no facts", file.display(), n + 1, r.id);
            }
            if !seen.insert(r.id.clone()) {
                bail!("{}:{}: `{}` appears twice", file.display(), n + 1, r.id);
            }
            records.push(r);
        }
    }
    Ok(records)
}

/// Recorded provider responses: what `--record` writes and `--replay` serves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Recording {
    id: String,
    responses: Vec<RecordedResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedResponse {
    status: u16,
    content_type: String,
    body: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordingMeta {
    provider: String,
    model: String,
    summary: Option<Summary>,
}

/// The question being run, and what the provider answered for it so far.
#[derive(Default)]
struct Tape {
    current: String,
    served: usize,
    recordings: HashMap<String, Recording>,
}

#[derive(Clone)]
struct Relay {
    tape: Arc<Mutex<Tape>>,
    /// Where `--record` forwards to; `None` replays.
    upstream: Option<(String, reqwest::Client)>,
}

async fn relay(State(r): State<Relay>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some((upstream, client)) = &r.upstream else {
        let mut tape = r.tape.lock().unwrap_or_else(|e| e.into_inner());
        let tape = &mut *tape;
        let next = tape
            .recordings
            .get(&tape.current)
            .and_then(|rec| rec.responses.get(tape.served))
            .cloned();
        tape.served += 1;
        return match next {
            Some(rec) => (
                StatusCode::from_u16(rec.status).unwrap_or(StatusCode::BAD_GATEWAY),
                [("content-type", rec.content_type)],
                rec.body,
            )
                .into_response(),
            None => (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json".to_owned())],
                json!({"error": {"message": "the recording has no more responses for this question", "type": "invalid_request_error"}}).to_string(),
            )
                .into_response(),
        };
    };
    let url = format!(
        "{upstream}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let mut req = client.post(url).body(body);
    for (name, value) in &headers {
        if matches!(name.as_str(), "host" | "content-length") {
            continue;
        }
        req = req.header(name, value);
    }
    let (status, content_type, body) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            match resp.text().await {
                Ok(t) => (status, ct, t),
                Err(e) => (502, "text/plain".to_owned(), format!("upstream: {e}")),
            }
        }
        Err(e) => (502, "text/plain".to_owned(), format!("upstream: {e}")),
    };
    {
        let mut tape = r.tape.lock().unwrap_or_else(|e| e.into_inner());
        let current = tape.current.clone();
        let rec = tape.recordings.entry(current.clone()).or_default();
        rec.id = current;
        rec.responses.push(RecordedResponse {
            status,
            content_type: content_type.clone(),
            body: body.clone(),
        });
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        [("content-type", content_type)],
        body,
    )
        .into_response()
}

/// Starts the relay on a loopback port; answers the base URL to give the provider.
async fn start_relay(relay_state: Relay) -> anyhow::Result<String> {
    let router = axum::Router::new().fallback(relay).with_state(relay_state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}

fn provider_name(kind: LlmProviderKind) -> &'static str {
    match kind {
        LlmProviderKind::Anthropic => "anthropic",
        LlmProviderKind::OpenAi => "openai",
        LlmProviderKind::Builtin => "builtin",
    }
}

/// Runs the questions; prints the table and the figures; answers the report.
pub async fn run(mut settings: Settings, opts: Options) -> anyhow::Result<Report> {
    let mut records = load(&opts.dir)?;
    if let Some(tier) = &opts.tier {
        records.retain(|r| &r.tier == tier);
    }
    if !opts.only.is_empty() {
        records.retain(|r| opts.only.contains(&r.id));
    }
    if let Some(n) = opts.limit {
        records.truncate(n);
    }
    if records.is_empty() {
        bail!("no question is left to run after --tier/--only/--limit");
    }

    let tape = Arc::new(Mutex::new(Tape::default()));
    if let Some(dir) = &opts.replay {
        let meta: RecordingMeta = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json"))
                .with_context(|| format!("reading {}/meta.json", dir.display()))?,
        )?;
        let mut recordings = HashMap::new();
        for r in &records {
            let path = dir.join(format!("{}.json", r.id));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let rec: Recording = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", path.display()))?;
                recordings.insert(r.id.clone(), rec);
            }
        }
        records.retain(|r| recordings.contains_key(&r.id));
        if records.is_empty() {
            bail!("{} holds no recording of these questions", dir.display());
        }
        tape.lock().unwrap_or_else(|e| e.into_inner()).recordings = recordings;
        let base = start_relay(Relay {
            tape: tape.clone(),
            upstream: None,
        })
        .await?;
        let llm = &mut settings.llm;
        match meta.provider.as_str() {
            "anthropic" => {
                llm.provider = LlmProviderKind::Anthropic;
                llm.anthropic.base_url = base;
                llm.anthropic.model = meta.model;
                llm.anthropic.api_key = Some(secrecy::SecretString::from("replayed".to_owned()));
            }
            "openai" => {
                llm.provider = LlmProviderKind::OpenAi;
                llm.openai.base_url = format!("{base}/v1");
                llm.openai.model = meta.model;
            }
            other => bail!("a recording of provider `{other}` cannot be replayed"),
        }
        llm.max_retries = 0;
    } else if opts.record.is_some() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(900))
            .build()?;
        let llm = &mut settings.llm;
        let endpoint = match llm.provider {
            LlmProviderKind::Anthropic => &mut llm.anthropic,
            LlmProviderKind::OpenAi => &mut llm.openai,
            LlmProviderKind::Builtin => bail!("--record needs LLM_PROVIDER anthropic or openai"),
        };
        let parsed = reqwest::Url::parse(&endpoint.base_url)?;
        let origin = parsed.origin().ascii_serialization();
        let path = parsed.path().trim_end_matches('/').to_owned();
        let base = start_relay(Relay {
            tape: tape.clone(),
            upstream: Some((origin, client)),
        })
        .await?;
        endpoint.base_url = format!("{base}{path}");
        // The relay answers once the whole response has come.
        llm.first_byte_timeout = llm.first_byte_timeout.max(Duration::from_secs(600));
    }

    let provider = provider_name(settings.llm.provider).to_owned();
    let model = match settings.llm.provider {
        LlmProviderKind::Anthropic => settings.llm.anthropic.model.clone(),
        LlmProviderKind::OpenAi => settings.llm.openai.model.clone(),
        LlmProviderKind::Builtin => "builtin".to_owned(),
    };

    let warehouse_url = match &opts.warehouse_url {
        Some(u) => u.clone(),
        None => crate::load_demo_warehouse(&settings, &opts.database).await?,
    };
    let email = Email::parse(&format!(
        "eval-{}@example.com",
        base::crypto::random_token(6).to_lowercase()
    ))
    .map_err(|m| anyhow::anyhow!("{m}"))?;
    let token = edge::auth::mint_dev_token(
        &settings.auth,
        &format!("dev|{email}"),
        &email,
        Duration::from_secs(12 * 3600),
    )
    .context("bridge eval signs its own dev tokens: run it with AUTH_MODE=dev (the default)")?;

    let state = AppState::from_settings(settings, "bridge").await?;
    db::migrate(&state.edge.db).await?;
    crate::seed_prompts(&state.edge.db).await?;
    let router = edge::app::build(crate::all_routes(), state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(edge::runtime::serve_http(listener, router, async move {
        let _ = stop_rx.await;
    }));

    let api = Api {
        http: reqwest::Client::new(),
        base,
        token,
    };
    let result = async {
        let (_team, connection) = api.workspace(&warehouse_url).await?;
        let reader = db::pool(
            &warehouse_url,
            None,
            db::PoolOptions {
                max_size: 1,
                timeout: Duration::from_secs(10),
                statement_timeout: Some(Duration::from_secs(30)),
            },
        )?;
        let reader = reader
            .get()
            .await
            .context("connecting to the demo warehouse")?;
        println!(
            "Running {} questions with provider {provider} ({model})\n",
            records.len()
        );
        let mut outcomes = Vec::new();
        for r in &records {
            {
                let mut t = tape.lock().unwrap_or_else(|e| e.into_inner());
                t.current = r.id.clone();
                t.served = 0;
                if opts.record.is_some() {
                    // Kept even if the provider never answers (a run that times out first).
                    t.recordings.insert(
                        r.id.clone(),
                        Recording {
                            id: r.id.clone(),
                            responses: Vec::new(),
                        },
                    );
                }
            }
            let o = api.question(&connection, r, &reader).await?;
            println!("{}", line(&o));
            outcomes.push(o);
        }
        anyhow::Ok(outcomes)
    }
    .await;
    let _ = stop_tx.send(());
    let _ = server.await;
    let outcomes = result?;

    let mut tiers: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for o in &outcomes {
        tiers.entry(o.tier.clone()).or_default().push(o.clone());
    }
    let report = Report {
        provider,
        model,
        summary: summarise(&outcomes),
        tiers: tiers
            .iter()
            .map(|(k, v)| (k.clone(), summarise(v)))
            .collect(),
        outcomes,
    };
    println!();
    print_summary("all", &report.summary);
    if report.tiers.len() > 1 {
        for (tier, s) in &report.tiers {
            print_summary(tier, s);
        }
    }
    if let Some(dir) = &opts.record {
        std::fs::create_dir_all(dir)?;
        let t = tape.lock().unwrap_or_else(|e| e.into_inner());
        for (id, rec) in &t.recordings {
            std::fs::write(
                dir.join(format!("{id}.json")),
                serde_json::to_string_pretty(rec)? + "\n",
            )?;
        }
        let meta = RecordingMeta {
            provider: report.provider.clone(),
            model: report.model.clone(),
            summary: Some(report.summary.clone()),
        };
        std::fs::write(
            dir.join("meta.json"),
            serde_json::to_string_pretty(&meta)? + "\n",
        )?;
        println!(
            "Recorded {} questions in {}",
            t.recordings.len(),
            dir.display()
        );
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(report)
}

fn line(o: &Outcome) -> String {
    let mark = |b: bool| if b { "yes" } else { "no" };
    format!(
        "{:<28} {:<9} saved {:<3} ran {:<3} match {:<3} dry-run {:<3} steps {:>2} tokens {:>6} ${:.4} {:>8} B {}{}",
        o.id,
        o.tier,
        mark(o.saved),
        mark(o.queries_ran),
        mark(o.execution_match),
        mark(o.dry_run_before_save),
        o.steps,
        o.tokens,
        o.cost_usd,
        o.warehouse_bytes,
        o.ms_to_dashboard
            .map(|ms| format!("{ms:.0} ms to dashboard"))
            .unwrap_or_else(|| format!("ended {}", o.ended)),
        o.message
            .as_deref()
            .filter(|_| !o.saved)
            .map(|m| format!(": {}", llm::truncate(m, 120)))
            .unwrap_or_default(),
    )
}

fn print_summary(name: &str, s: &Summary) {
    let pct = |n: usize| 100.0 * n as f64 / s.questions.max(1) as f64;
    println!(
        "{name}: {q} questions; valid saved dashboard {sv} ({:.0}%); every query ran {qr}; execution match {em} ({:.0}%); \
         dry-run before save {dr}; mean steps {:.1}; mean tokens {:.0}; USD/dashboard {:.4}; mean warehouse bytes {:.0}; \
         tool-cache hit rate {}; time to dashboard_created median {} max {}",
        pct(s.saved),
        pct(s.execution_match),
        s.mean_steps,
        s.mean_tokens,
        s.usd_per_dashboard,
        s.mean_warehouse_bytes,
        s.tool_cache_hit_rate
            .map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "n/a".into()),
        s.median_ms_to_dashboard
            .map(|m| format!("{m:.0} ms"))
            .unwrap_or_else(|| "n/a".into()),
        s.max_ms_to_dashboard
            .map(|m| format!("{m:.0} ms"))
            .unwrap_or_else(|| "n/a".into()),
        q = s.questions,
        sv = s.saved,
        qr = s.queries_ran,
        em = s.execution_match,
        dr = s.dry_run_before_save,
    );
}

pub fn summarise(outcomes: &[Outcome]) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let saved = count(|o| o.saved);
    let total_usd: f64 = outcomes.iter().map(|o| o.cost_usd).sum();
    let cacheable: u64 = outcomes.iter().map(|o| o.cacheable_results).sum();
    let cached: u64 = outcomes.iter().map(|o| o.cached_results).sum();
    let mut times: Vec<f64> = outcomes.iter().filter_map(|o| o.ms_to_dashboard).collect();
    times.sort_by(f64::total_cmp);
    Summary {
        questions: outcomes.len(),
        saved,
        queries_ran: count(|o| o.queries_ran),
        execution_match: count(|o| o.execution_match),
        dry_run_before_save: count(|o| o.dry_run_before_save),
        mean_steps: outcomes.iter().map(|o| o.steps as f64).sum::<f64>() / n,
        mean_tokens: outcomes.iter().map(|o| o.tokens as f64).sum::<f64>() / n,
        usd_per_dashboard: total_usd / saved.max(1) as f64,
        total_usd,
        mean_warehouse_bytes: outcomes
            .iter()
            .map(|o| o.warehouse_bytes as f64)
            .sum::<f64>()
            / n,
        tool_cache_hit_rate: (cacheable > 0).then(|| cached as f64 / cacheable as f64),
        median_ms_to_dashboard: (!times.is_empty()).then(|| times[times.len() / 2]),
        max_ms_to_dashboard: times.last().copied(),
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.send(method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!("{path} answered {status}: {v}");
        }
        Ok(v)
    }

    /// A team, the demo warehouse connected to it, validated and scanned.
    async fn workspace(&self, warehouse_url: &str) -> anyhow::Result<(String, String)> {
        use reqwest::Method;
        let team = self
            .expect(Method::POST, "/v1/teams", Some(json!({"name": "Evals"})))
            .await?;
        let team = team["id"].as_str().context("team id")?.to_owned();
        let c = self
            .expect(
                Method::POST,
                &format!("/v1/teams/{team}/connections"),
                Some(json!({"name": "Demo warehouse", "warehouse_type": "postgres", "credentials": {"url": warehouse_url}})),
            )
            .await?;
        let connection = c["id"].as_str().context("connection id")?.to_owned();
        let v = self
            .expect(
                Method::POST,
                &format!("/v1/connections/{connection}/validate"),
                None,
            )
            .await?;
        if v["status"] != "validated" {
            bail!("the demo warehouse did not validate: {v}");
        }
        let mut scan = self
            .expect(
                Method::POST,
                &format!("/v1/connections/{connection}/scan"),
                None,
            )
            .await?;
        let began = Instant::now();
        while scan["status"] == "running" {
            if began.elapsed() > Duration::from_secs(120) {
                bail!("the catalog scan did not finish: {scan}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let id = scan["scan_id"].as_str().context("scan id")?.to_owned();
            scan = self
                .expect(
                    Method::GET,
                    &format!("/v1/connections/{connection}/scans/{id}"),
                    None,
                )
                .await?;
        }
        if scan["status"] != "succeeded" && scan["status"] != "partial" {
            bail!("the catalog scan failed: {scan}");
        }
        Ok((team, connection))
    }

    async fn question(
        &self,
        connection: &str,
        r: &Record,
        reader: &deadpool_postgres::Object,
    ) -> anyhow::Result<Outcome> {
        let mut o = Outcome {
            id: r.id.clone(),
            tier: r.tier.clone(),
            ..Outcome::default()
        };
        let began = Instant::now();
        let resp = self
            .http
            .post(format!("{}/v1/dashboards/generate", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"connection_id": connection, "prompt": r.question}))
            .send()
            .await?;
        if resp.status() != 200 {
            let status = resp.status();
            bail!("generate answered {status}: {}", resp.text().await?);
        }
        let mut events = SseByteStream::new(resp.bytes_stream());
        // SQL dry-run so far (whitespace-normalised), and what each save was shown.
        let mut dry_run: Vec<String> = Vec::new();
        let mut pending: HashMap<String, (String, Value)> = HashMap::new();
        let mut unproven_save = false;
        while let Some(event) = events.next().await {
            let event = event.context("reading the stream")?;
            let (Some(name), Some(data)) = (event.event, event.data) else {
                continue;
            };
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            match name.as_str() {
                "tool_call" => {
                    let tool = data["tool"].as_str().unwrap_or_default().to_owned();
                    o.tool_calls.push(tool.clone());
                    if let Some(id) = data["id"].as_str() {
                        pending.insert(id.to_owned(), (tool, data["args"].clone()));
                    }
                }
                "tool_result" => {
                    let tool = data["tool"].as_str().unwrap_or_default();
                    let ok = data["is_error"] != true;
                    if CACHEABLE.contains(&tool) && ok {
                        o.cacheable_results += 1;
                        if data["cached"] == true {
                            o.cached_results += 1;
                        }
                    }
                    let call = data["id"].as_str().and_then(|id| pending.remove(id));
                    if let Some((tool, args)) = call
                        && ok
                    {
                        if tool == "run_dry_run_query"
                            && let Some(sql) = args["sql"].as_str()
                        {
                            dry_run.push(squash(sql));
                        }
                        if tool == "save_dashboard_yaml"
                            && let Some(yaml) = args["yaml"].as_str()
                        {
                            let queries = saved_queries(yaml);
                            if queries.is_empty()
                                || !queries.iter().all(|q| dry_run.contains(&squash(q)))
                            {
                                unproven_save = true;
                            }
                        }
                    }
                }
                "dashboard_created" => {
                    o.ms_to_dashboard
                        .get_or_insert(began.elapsed().as_secs_f64() * 1e3);
                    o.slug = data["slug"].as_str().map(str::to_owned);
                    o.version = data["version"].as_i64();
                }
                "cost_update" => {
                    o.tokens = data["tokens"].as_u64().unwrap_or(o.tokens);
                    o.cost_usd = data["cost_usd"].as_f64().unwrap_or(o.cost_usd);
                    o.steps = data["step"].as_u64().unwrap_or(o.steps);
                    o.warehouse_bytes = data["warehouse_bytes_estimated"]
                        .as_u64()
                        .unwrap_or(o.warehouse_bytes);
                }
                "complete" => {
                    o.ended = "complete".into();
                    o.steps = data["steps"].as_u64().unwrap_or(o.steps);
                    o.tokens = data["total_tokens"].as_u64().unwrap_or(o.tokens);
                    o.cost_usd = data["total_cost_usd"].as_f64().unwrap_or(o.cost_usd);
                    o.warehouse_bytes = data["warehouse_bytes_estimated"]
                        .as_u64()
                        .unwrap_or(o.warehouse_bytes);
                    break;
                }
                "error" => {
                    o.ended = data["code"].as_str().unwrap_or("error").to_owned();
                    o.message = data["message"].as_str().map(str::to_owned);
                    break;
                }
                _ => {}
            }
        }
        o.ms_total = began.elapsed().as_secs_f64() * 1e3;
        if o.ended.is_empty() {
            o.ended = "stream_ended".into();
            o.message = Some("the stream ended without a terminal event".into());
        }
        o.saved = o.ended == "complete" && o.slug.is_some();
        o.dry_run_before_save = o.saved && !unproven_save;
        let Some(slug) = o.slug.clone().filter(|_| o.saved) else {
            o.facts = r
                .facts
                .iter()
                .map(|f| FactOutcome {
                    name: f.name.clone(),
                    matched: false,
                    query: None,
                    rows: 0,
                })
                .collect();
            return Ok(o);
        };
        let (status, data) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/dashboards/{slug}/data"),
                None,
            )
            .await?;
        let mut results: Vec<(String, Vec<Vec<Value>>)> = Vec::new();
        o.queries_ran = status == 200;
        if let Some(queries) = data["queries"].as_object() {
            for (id, q) in queries {
                match q["rows"].as_array() {
                    Some(rows) if q.get("error").is_none() => {
                        results.push((id.clone(), rows.iter().map(row_values).collect()))
                    }
                    _ => o.queries_ran = false,
                }
            }
        } else {
            o.queries_ran = false;
        }
        for f in &r.facts {
            let rows = fact_rows(reader, &f.sql)
                .await
                .with_context(|| format!("`{}`: the fact `{}`", r.id, f.name))?;
            let holder = results
                .iter()
                .find(|(_, have)| contains_all(have, &rows))
                .map(|(id, _)| id.clone());
            o.facts.push(FactOutcome {
                name: f.name.clone(),
                matched: holder.is_some(),
                query: holder,
                rows: rows.len(),
            });
        }
        o.execution_match = o.facts.iter().all(|f| f.matched);
        Ok(o)
    }
}

/// SQL with its whitespace runs made one space.
fn squash(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `sql` of every query of a dashboard's YAML.
fn saved_queries(yaml: &str) -> Vec<String> {
    dashboard::validate::parse(yaml)
        .spec
        .map(|spec| spec.queries.into_iter().map(|q| q.sql).collect())
        .unwrap_or_default()
}

fn row_values(row: &Value) -> Vec<Value> {
    match row {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// The fact's rows, as the warehouse renders them in JSON (numbers, `YYYY-MM-DD` dates).
async fn fact_rows(
    reader: &deadpool_postgres::Object,
    sql: &str,
) -> anyhow::Result<Vec<Vec<Value>>> {
    let rows = reader
        .query(&format!("SELECT to_jsonb(f)::text FROM ({sql}) AS f"), &[])
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.get(0);
            let v: Value = serde_json::from_str(&text)?;
            Ok(row_values(&v))
        })
        .collect()
}

/// Every fact row is held by some dashboard row: each of its values is among that row's.
pub fn contains_all(have: &[Vec<Value>], facts: &[Vec<Value>]) -> bool {
    facts.iter().all(|fact| {
        have.iter()
            .any(|row| fact.iter().all(|v| row.iter().any(|h| same(v, h))))
    })
}

/// Equal as the README says: numbers within a relative 1e-6, dates as `YYYY-MM-DD`.
pub fn same(fact: &Value, have: &Value) -> bool {
    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn day(s: &str) -> Option<&str> {
        let b = s.as_bytes();
        (b.len() >= 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b[..4]
                .iter()
                .chain(&b[5..7])
                .chain(&b[8..10])
                .all(u8::is_ascii_digit)
            && (b.len() == 10 || matches!(b[10], b'T' | b' ')))
        .then(|| &s[..10])
    }
    match (fact, have) {
        (Value::Null, h) => h.is_null(),
        (Value::Number(_), h) => match (number(fact), number(h)) {
            (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()),
            _ => false,
        },
        (Value::String(a), Value::String(b)) => match (day(a), day(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_as_the_readme_says() {
        assert!(same(&json!(548.29041792), &json!("548.2904179233")));
        assert!(!same(&json!(548.29), &json!(548.3)));
        assert!(same(&json!(0), &json!(0.0)));
        assert!(same(&json!("2024-03-01"), &json!("2024-03-01T00:00:00Z")));
        assert!(!same(&json!("2024-03-01"), &json!("2024-03-02")));
        assert!(same(&json!("EMEA"), &json!("EMEA")));
        assert!(!same(&json!("EMEA"), &json!("emea")));
        assert!(same(&Value::Null, &Value::Null));
        assert!(!same(&json!(1), &Value::Null));
    }

    #[test]
    fn a_fact_is_held_by_rows_with_every_value_in_any_order() {
        let have = vec![
            vec![json!("EMEA"), json!(10), json!(3)],
            vec![json!("APAC"), json!(20), json!(4)],
        ];
        assert!(contains_all(&have, &[vec![json!(20), json!("APAC")]]));
        assert!(contains_all(&have, &[vec![json!(10)], vec![json!(4)]]));
        assert!(!contains_all(&have, &[vec![json!("EMEA"), json!(20)]]));
        assert!(!contains_all(&have, &[vec![json!("AMER")]]));
    }

    #[test]
    fn the_golden_questions_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samplefiles/evals");
        let records = load(&dir).unwrap();
        assert!(records.len() >= 30, "{}", records.len());
        assert!(
            records
                .iter()
                .all(|r| r.tier == "basic" || r.tier == "advanced")
        );
    }
}

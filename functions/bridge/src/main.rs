//! `bridge`: the local stand-in for API Gateway and the operator's tool.
//!
//! - `bridge serve`: every function's routes on one port. Without `DATABASE_URL` it starts a
//!   throwaway Postgres under `BRIDGE_DATA_DIR` and stops it on exit.
//! - `bridge migrate`: applies the migrations in `migrations/`.
//! - `bridge token --email you@example.com`: prints a dev token (AUTH_MODE=dev only).
//! - `bridge eval samplefiles/evals/`: the dashboard agent against the golden questions.
//! - `bridge check-storage [--json]`: drift between Postgres's pointers and the buckets'
//!   objects, reported (never deleted); exit status 0 clean, 1 findings, 2 error.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use base::domain::Email;
use clap::{Parser, Subcommand};
use edge::{app, auth::mint_dev_token, runtime, telemetry};
use secrecy::SecretString;
use services::AppState;
use settings::{LogFormat, Settings};
use storage::{db, localpg::LocalPostgres};
use utoipa_axum::router::OpenApiRouter;

mod console;
mod eval;

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Bridge: every function on one port, migrations, dev tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function's routes on one port (the local API Gateway).
    Serve {
        /// Port to listen on (default: $PORT, else 8080).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind; use 0.0.0.0 to accept connections from other machines.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Database the console's "Connect the demo warehouse" loads it into (development).
        #[arg(long, default_value = "bridge_demo")]
        demo_database: String,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Load the demo warehouse (samplefiles/demo-warehouse.sql) into a database of its own and
    /// print how to connect it.
    DemoWarehouse {
        /// Database to load it into.
        #[arg(long, default_value = "bridge_demo")]
        database: String,
    },
    /// Warm every dashboard whose `refresh` cadence is due (what the schedulers trigger in
    /// the cloud), and remove expired cached results.
    Precompute,
    /// Compare Postgres's pointers with the buckets' objects and report drift: missing
    /// objects, orphaned objects, sizes or checksums that differ (docs/storage-integrity.md).
    /// Reads only; deletes nothing. Exit status: 0 clean, 1 findings, 2 error.
    CheckStorage(CheckStorageOptions),
    /// Print the OpenAPI document of every route (what `GET /openapi.json` serves).
    Openapi,
    /// Run the dashboard agent on golden questions (`samplefiles/evals/`) and score it: valid
    /// saved dashboards, execution match, dry-run before save, steps, tokens, USD, bytes.
    Eval(eval::Options),
    /// Print a development token (AUTH_MODE=dev).
    Token {
        /// Whose token: the email claim (and the user Bridge creates on first sight).
        #[arg(long)]
        email: String,
        /// Hours until it expires.
        #[arg(long, default_value_t = 12)]
        hours: u64,
    },
}

#[derive(clap::Args)]
struct CheckStorageOptions {
    /// Print the report as JSON (only the report on stdout, no log lines).
    #[arg(long)]
    json: bool,
    /// Objects listed in all, shared among the buckets.
    #[arg(long, default_value_t = services::integrity::Limits::default().max_objects)]
    max_objects: usize,
    /// Rows read in all, shared among the tables.
    #[arg(long, default_value_t = services::integrity::Limits::default().max_rows)]
    max_rows: usize,
    /// Seconds the check may take; past them it reports what it confirmed.
    #[arg(long, default_value_t = services::integrity::Limits::default().time_budget.as_secs())]
    max_secs: u64,
    /// Objects changed within this many seconds are not judged (their rows may not have
    /// committed yet).
    #[arg(long, default_value_t = services::integrity::DEFAULT_GRACE.as_secs())]
    grace_secs: u64,
    /// Example keys shown per kind of finding.
    #[arg(long, default_value_t = services::integrity::Limits::default().examples)]
    examples: usize,
    /// Do not read and hash the objects whose rows record a SHA-256 (sizes are still compared).
    #[arg(long)]
    no_checksums: bool,
}

/// Every function's routes: what API Gateway would route to each function, on one router.
fn all_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(teams::router())
        .merge(connections::router())
        .merge(catalog::router())
        .merge(generate::router())
        .merge(data::router())
        .merge(precompute::router())
        .merge(chat::router())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Openapi) {
        // Its output is the document: no settings needed, no log lines on stdout.
        return match openapi() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bridge: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bridge: invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    let log_format = if std::env::var_os("LOG_FORMAT").is_some() {
        settings.log_format
    } else {
        LogFormat::Pretty
    };
    if let Command::CheckStorage(opts) = cli.command {
        // Its own exit statuses; with --json, stdout is the report alone (no log lines).
        if !opts.json {
            telemetry::init(log_format);
        }
        return check_storage(settings, opts).await;
    }
    // Spans and metrics are exported (with `OTEL_EXPORTER_OTLP_ENDPOINT`) by the commands
    // that serve or run work.
    if matches!(cli.command, Command::Serve { .. } | Command::Precompute) {
        telemetry::init_with(log_format, &settings.otel, "bridge");
    } else {
        telemetry::init(log_format);
    }
    let result = match cli.command {
        Command::Serve {
            port,
            host,
            demo_database,
        } => serve(settings, host, port, demo_database).await,
        Command::Migrate => migrate(settings).await,
        Command::Token { email, hours } => token(&settings, &email, hours),
        Command::DemoWarehouse { database } => demo_warehouse(settings, &database).await,
        Command::Precompute => precompute(settings).await,
        // Handled above, with its own exit statuses.
        Command::CheckStorage(_) => Ok(()),
        Command::Openapi => openapi(),
        Command::Eval(opts) => run_eval(settings, opts).await,
    };
    telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn openapi() -> anyhow::Result<()> {
    let (_, api) = app::assemble(all_routes(), "bridge");
    println!(
        "{}",
        serde_json::to_string_pretty(&edge::openapi::finish(&api))?
    );
    Ok(())
}

/// Settings with a database: `DATABASE_URL`, or the local throwaway cluster.
async fn with_database(settings: Settings) -> anyhow::Result<(Settings, Option<LocalPostgres>)> {
    open_database(settings, false).await
}

/// Like [`with_database`]; `quiet` says so on stderr instead of stdout (whose output is a
/// document, e.g. `check-storage --json`).
async fn open_database(
    mut settings: Settings,
    quiet: bool,
) -> anyhow::Result<(Settings, Option<LocalPostgres>)> {
    if settings.database_url.is_some() {
        return Ok((settings, None));
    }
    let dir = settings.data_dir.join("postgres");
    let shown = dir.display().to_string();
    let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&dir)).await??;
    let says = format!(
        "Local Postgres on 127.0.0.1:{} (data in {shown})",
        pg.port()
    );
    if quiet {
        eprintln!("{says}");
    } else {
        println!("{says}");
    }
    let admin = db::pool(
        &pg.url("postgres"),
        None,
        one_connection(Duration::from_secs(10)),
    )?;
    let client = admin
        .get()
        .await
        .context("connecting to the local Postgres")?;
    if client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'bridge'", &[])
        .await?
        .is_none()
    {
        client.batch_execute("CREATE DATABASE bridge").await?;
    }
    settings.database_url = Some(SecretString::from(pg.url("bridge")));
    Ok((settings, Some(pg)))
}

/// Stops the local cluster if this command started it (not one a running `bridge serve` owns).
async fn stop(pg: Option<LocalPostgres>) {
    stop_quietly(pg, false).await;
}

/// Like [`stop`]; `quiet` says so on stderr.
async fn stop_quietly(pg: Option<LocalPostgres>, quiet: bool) {
    if let Some(pg) = pg.filter(|pg| pg.started_here) {
        match tokio::task::spawn_blocking(move || pg.stop()).await {
            Ok(Ok(())) if quiet => eprintln!("Local Postgres stopped"),
            Ok(Ok(())) => println!("Local Postgres stopped"),
            Ok(Err(e)) => eprintln!("bridge: stopping the local Postgres: {e:#}"),
            Err(e) => eprintln!("bridge: stopping the local Postgres: {e}"),
        }
    }
}

async fn serve(
    settings: Settings,
    host: std::net::IpAddr,
    port: Option<u16>,
    demo_database: String,
) -> anyhow::Result<()> {
    let port = port.unwrap_or(settings.port);
    let (settings, pg) = with_database(settings).await?;
    let result = async {
        let mut routes = all_routes();
        if console::enabled(&settings) {
            let for_demo = settings.clone();
            let demo: console::DemoLoader = std::sync::Arc::new(move || {
                let (s, database) = (for_demo.clone(), demo_database.clone());
                Box::pin(async move { load_demo_warehouse(&s, &database).await })
            });
            routes = routes.merge(OpenApiRouter::from(console::routes(&settings, demo)));
        }
        let console_on = console::enabled(&settings);
        let state = AppState::from_settings(settings, "bridge").await?;
        let applied = db::migrate(&state.edge.db).await?;
        if !applied.is_empty() {
            println!("Applied migrations: {}", applied.join(", "));
        }
        seed_prompts(&state.edge.db).await?;
        let router = app::build(routes, state);
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        println!(
            "Bridge is serving every function on http://{}",
            listener.local_addr()?
        );
        if console_on {
            println!("The console: http://{}/console", listener.local_addr()?);
        }
        runtime::serve_http(listener, router, runtime::shutdown_signal()).await
    }
    .await;
    stop(pg).await;
    result
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let (settings, pg) = with_database(settings).await?;
    let result = async {
        let url = settings.database_url().context("no database")?;
        let pool = db::pool(
            url,
            settings.database_ca_file.as_deref(),
            one_connection(settings.database_timeout),
        )?;
        // The same step the deploys run (functions/migrate: a Lambda invocation, a Cloud Run
        // job): migrations, then the prompt blocks.
        let report = migrate::apply(&pool).await?;
        if report.applied.is_empty() {
            println!("The database is up to date");
        } else {
            println!("Applied migrations: {}", report.applied.join(", "));
        }
        let p = &report.prompt_blocks;
        for (what, names) in [
            ("new", &p.created),
            ("updated", &p.updated),
            ("deactivated", &p.deactivated),
        ] {
            if !names.is_empty() {
                println!("Prompt blocks {what}: {}", names.join(", "));
            }
        }
        Ok(())
    }
    .await;
    stop(pg).await;
    result
}

/// Seeds the prompt blocks of `prompts/` (embedded at build time) into `prompt_blocks`: a
/// changed file makes a new version, a removed one is deactivated.
async fn seed_prompts(pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    let done = ai::prompts::seed(pool, &ai::prompts::embedded())
        .await
        .map_err(|e| anyhow::anyhow!("seeding prompt blocks: {e}"))?;
    for (what, names) in [
        ("new", &done.created),
        ("updated", &done.updated),
        ("deactivated", &done.deactivated),
    ] {
        if !names.is_empty() {
            println!("Prompt blocks {what}: {}", names.join(", "));
        }
    }
    Ok(())
}

fn token(settings: &Settings, email: &str, hours: u64) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let token = mint_dev_token(
        &settings.auth,
        &format!("dev|{email}"),
        &email,
        Duration::from_secs(hours * 3600),
    )?;
    println!("{token}");
    Ok(())
}

const DEMO_SQL: &str = include_str!("../../../samplefiles/demo-warehouse.sql");
const DEMO_READER: &str = "bridge_demo_reader";

/// Loads the demo data (once) and a read-only role, on the server Bridge itself uses.
async fn demo_warehouse(settings: Settings, database: &str) -> anyhow::Result<()> {
    let (settings, pg) = with_database(settings).await?;
    let result = async {
        let reader_url = load_demo_warehouse(&settings, database).await?;
        println!(
            "\nConnect it to a team (TEAM is a team id from POST /v1/teams):\n\n\
             curl -s -X POST http://127.0.0.1:{}/v1/teams/$TEAM/connections \\\n  \
             -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"name\": \"Demo warehouse\", \"warehouse_type\": \"postgres\", \"credentials\": {{\"url\": \"{reader_url}\"}}}}'\n",
            settings.port
        );
        Ok(())
    }
    .await;
    stop(pg).await;
    result
}

/// Loads samplefiles/demo-warehouse.sql into `database` (once) on Bridge's own server, gives
/// the read-only role a new password, and answers the reader's URL.
async fn load_demo_warehouse(settings: &Settings, database: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !database.is_empty()
            && database
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "--database must be lower-case letters, digits and underscores"
    );
    let url = settings.database_url().context("no database")?;
    let mut server =
        storage::db_tls::parse(url).map_err(|m| anyhow::anyhow!("DATABASE_URL {m}"))?;
    let admin = db::pool(
        url,
        settings.database_ca_file.as_deref(),
        one_connection(settings.database_timeout),
    )?;
    let client = admin.get().await.context("connecting")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await?;
    }
    server.config.dbname(database);
    let demo = db::pool_from_target(
        server.clone(),
        settings.database_ca_file.as_deref(),
        one_connection(settings.database_timeout),
    )?;
    let demo = demo
        .get()
        .await
        .context("connecting to the demo database")?;
    let loaded = demo
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'analytics'",
            &[],
        )
        .await?
        .is_some();
    if !loaded {
        demo.batch_execute(DEMO_SQL)
            .await
            .context("loading samplefiles/demo-warehouse.sql")?;
        println!("Loaded the demo warehouse into database `{database}`");
    } else {
        println!("The demo warehouse is already in database `{database}`");
    }
    let password = base::crypto::random_token(18);
    let role_exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&DEMO_READER])
        .await?
        .is_some();
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    client
        .batch_execute(&format!(
            "{verb} ROLE {DEMO_READER} LOGIN PASSWORD '{password}'"
        ))
        .await?;
    demo.batch_execute(&format!(
        "GRANT CONNECT ON DATABASE {database} TO {DEMO_READER}; GRANT USAGE ON SCHEMA analytics TO {DEMO_READER}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {DEMO_READER};"
    ))
    .await?;
    let server = &server.config;
    let host = match server.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = server.get_ports().first().copied().unwrap_or(5432);
    Ok(format!(
        "postgres://{DEMO_READER}:{password}@{host}:{port}/{database}"
    ))
}

async fn run_eval(settings: Settings, opts: eval::Options) -> anyhow::Result<()> {
    let min_match = opts.min_match;
    let (settings, pg) = with_database(settings).await?;
    let result = eval::run(settings, opts).await;
    stop(pg).await;
    let report = result?;
    if let Some(min) = min_match {
        let share = report.summary.execution_match as f64 / report.summary.questions.max(1) as f64;
        anyhow::ensure!(
            share >= min,
            "execution match {:.3} is under --min-match {min}",
            share
        );
    }
    Ok(())
}

async fn precompute(settings: Settings) -> anyhow::Result<()> {
    let (settings, pg) = with_database(settings).await?;
    let result = async {
        let state = AppState::from_settings(settings, "bridge").await?;
        db::migrate(&state.edge.db).await?;
        let report = state.tick().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        for d in &report.dashboards {
            println!(
                "{} v{}: {} queries run, {} from cache, {} failed, {} ms",
                d.dashboard_slug,
                d.version,
                d.queries_executed,
                d.cache_hits,
                d.errors.len(),
                d.duration_ms
            );
        }
        for f in &report.failures {
            println!("{}: {}", f.query, f.message);
        }
        println!(
            "{} dashboards warmed, {} failed, {} expired results removed, {} ms",
            report.dashboards.len(),
            report.failures.len(),
            report.expired_removed,
            report.duration_ms
        );
        Ok(())
    }
    .await;
    stop(pg).await;
    result
}

/// `bridge check-storage`: the integrity check, read-only (no migrations either). Exit status
/// 0 when clean, 1 when anything was found, 2 when it could not run.
async fn check_storage(settings: Settings, opts: CheckStorageOptions) -> ExitCode {
    let limits = services::integrity::Limits {
        max_objects: opts.max_objects,
        max_rows: opts.max_rows,
        time_budget: Duration::from_secs(opts.max_secs),
        grace: Duration::from_secs(opts.grace_secs),
        examples: opts.examples,
        verify_checksums: !opts.no_checksums,
    };
    let ran = async {
        let (settings, pg) = open_database(settings, opts.json).await?;
        let report = async {
            let state = AppState::from_settings(settings, "bridge").await?;
            Ok::<_, anyhow::Error>(services::integrity::check_storage(&state, &limits).await)
        }
        .await;
        stop_quietly(pg, opts.json).await;
        report
    }
    .await;
    let report = match ran {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bridge: {e:#}");
            return ExitCode::from(2);
        }
    };
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("bridge: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        println!("{report}");
    }
    if report.findings() > 0 {
        ExitCode::from(1)
    } else if !report.errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// A one-connection pool for the CLI's own work (migrations run without a statement timeout).
fn one_connection(timeout: Duration) -> db::PoolOptions {
    db::PoolOptions {
        max_size: 1,
        timeout,
        statement_timeout: None,
    }
}

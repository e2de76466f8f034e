//! Chat: sessions of one user within a team, and runs — one answer to one message, the
//! model's tool loop included — streamed as events that are kept, so a client that lost its
//! connection replays them from any process.
//!
//! Who may see a session: its owner; and, to oversee what is spent, the team's admins, who
//! may read, archive and delete it but not speak in it. Anyone else gets 404 (another team's
//! session, or a colleague's). Starting a session and streaming need the editor role.
//!
//! A run: `run` (its id and a replay token), then `token` deltas (the first at once, later
//! ones coalesced every 50 ms), `tool_call` / `tool_result` pairs, `cost_update` after each
//! model call, and exactly one terminal event, `complete` or `error` (`code`:
//! `provider_overloaded`, `rate_limited`, `provider_error`, `budget_exceeded`, `timeout`,
//! `step_limit`, `cancelled`, `internal`). Every event is written to `chat_run_events`
//! before it is sent; the terminal one together with the run's status, in one transaction.
//! A run stops when the client goes away, when `cancel` is asked (checked every second),
//! or at its limits: steps, wall clock, tokens and dollars per run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ai::{
    calls::{CallRecord, ModelCalls},
    sessions::{Manifest, NewSession, Sessions, Status},
    tool_cache::ToolCache,
    tools::{RunFacts, ToolContext},
};
use base::domain::Role;
use deadpool_postgres::Pool;
use edge::{ApiError, ApiResult, CurrentUser, tenancy};
use futures::StreamExt;
use llm::{Content, DynProvider, Event, LlmError, Message, Request, StopReason, Usage};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{catalog::Catalog, dashboards::Dashboards, generate_tools};

/// One event of a run, as kept and as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEvent {
    pub seq: i32,
    pub event: String,
    pub data: Value,
}

#[derive(Clone)]
pub struct Chat(Arc<Inner>);

struct Inner {
    db: Pool,
    /// The edge, for the team's rate limit on new runs.
    edge: edge::Edge,
    sessions: Sessions,
    calls: ModelCalls,
    tool_cache: ToolCache,
    catalog: Catalog,
    dashboards: Dashboards,
    provider: DynProvider,
    limits: settings::RunLimits,
    max_tokens: u32,
    /// The active prompt blocks as system blocks, read at most every [`PROMPTS_FRESH_FOR`]
    /// (they change when `bridge migrate` seeds new versions).
    prompts: tokio::sync::Mutex<Option<(Instant, Arc<Vec<llm::SystemBlock>>)>>,
    /// Tool registries by tool set (building one generates and compiles their schemas).
    registries: std::sync::Mutex<std::collections::HashMap<Vec<String>, ai::tools::Registry>>,
}

/// How long the prompt blocks read from Postgres are used before they are read again.
const PROMPTS_FRESH_FOR: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("provider", &self.0.provider.name())
            .finish()
    }
}

/// What `POST /v1/chat/sessions` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewChat {
    pub team_id: Uuid,
    pub connection_id: Option<Uuid>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tools: Option<Vec<String>>,
}

/// What `POST /v1/dashboards/generate` asks for.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    pub connection_id: Uuid,
    pub prompt: String,
    pub slug: Option<String>,
    pub session_id: Option<Uuid>,
}

/// The purpose of a session that writes a dashboard.
pub const GENERATE_PURPOSE: &str = "generate";

/// What a generation run adds to a chat run: a last system block about the run, and the
/// facts its tools prove.
struct Generation {
    context: String,
    facts: Arc<RunFacts>,
}

/// What a generation run saved (slug, version, dashboard id), with where to see it.
fn saved(facts: &RunFacts) -> Option<Value> {
    let mut v: Value = serde_json::from_str(&facts.get(generate_tools::SAVED)?).ok()?;
    let slug = v["slug"].as_str()?.to_owned();
    v["preview_url"] = json!(generate_tools::preview_url(&slug));
    Some(v)
}

/// A slug as the dashboard schema has it: at most 64 lowercase letters and digits in words
/// joined by single hyphens.
fn check_slug(slug: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&slug.len())
        && slug.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "slug",
            "at most 64 lowercase letters and digits, in words joined by single hyphens (e.g. revenue-overview)",
        ))
    }
}

fn check_message(field: &'static str, message: &str) -> ApiResult<()> {
    let chars = message.chars().count();
    if message.trim().is_empty() || chars > MAX_MESSAGE_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("1 to {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A started run: its id, its session's, and its live events.
pub struct Started {
    pub run_id: Uuid,
    pub session_id: Uuid,
    pub events: mpsc::Receiver<RunEvent>,
}

/// How long a run's replay token opens its events.
const REPLAY_TOKEN_LIFETIME: time::Duration = time::Duration::hours(24);
/// A running run whose heartbeat (every second) is this old has lost its process.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// Token deltas are coalesced this long (the first is sent at once).
const COALESCE: Duration = Duration::from_millis(50);
/// History sent with each model call.
const HISTORY: usize = 40;
/// The longest message a user may send.
pub const MAX_MESSAGE_CHARS: usize = 32_000;

/// An AI SDK error as the API answers it.
pub fn ai_error(e: ai::AiError) -> ApiError {
    match e {
        ai::AiError::NotFound(what) => ApiError::not_found("not_found", format!("no such {what}")),
        ai::AiError::Invalid { field, message } => ApiError::invalid_field(field, message),
        other => ApiError::internal(anyhow::anyhow!("{other}")),
    }
}

fn session_not_found() -> ApiError {
    ApiError::not_found("session_not_found", "no such chat session")
}

impl Chat {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Pool,
        edge: edge::Edge,
        sessions: Sessions,
        calls: ModelCalls,
        tool_cache: ToolCache,
        catalog: Catalog,
        dashboards: Dashboards,
        provider: DynProvider,
        limits: settings::RunLimits,
        max_tokens: u32,
    ) -> Self {
        Self(Arc::new(Inner {
            db,
            edge,
            sessions,
            calls,
            tool_cache,
            catalog,
            dashboards,
            provider,
            limits,
            max_tokens,
            prompts: tokio::sync::Mutex::new(None),
            registries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// The active prompt blocks, as the system blocks of a request.
    async fn system_blocks(&self) -> Result<Arc<Vec<llm::SystemBlock>>, ai::AiError> {
        let mut cached = self.0.prompts.lock().await;
        if let Some((at, blocks)) = cached.as_ref()
            && at.elapsed() < PROMPTS_FRESH_FOR
        {
            return Ok(blocks.clone());
        }
        let blocks = ai::prompts::active(&self.0.db).await?;
        let blocks = Arc::new(ai::prompts::system_blocks(&blocks));
        *cached = Some((Instant::now(), blocks.clone()));
        Ok(blocks)
    }

    /// The registry of `tools` (built once per tool set).
    fn registry(&self, tools: &[String]) -> ai::tools::Registry {
        let mut all = self.0.registries.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(tools.to_vec())
            .or_insert_with(|| {
                generate_tools::registry(
                    &self.0.catalog,
                    &self.0.dashboards,
                    &self.0.sessions,
                    Some(self.0.tool_cache.clone()),
                    tools,
                )
            })
            .clone()
    }

    pub fn provider(&self) -> &DynProvider {
        &self.0.provider
    }

    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    pub fn calls(&self) -> &ModelCalls {
        &self.0.calls
    }

    /// Starts a session (editors of the team).
    pub async fn create(&self, user: &CurrentUser, new: NewChat) -> ApiResult<Manifest> {
        let client = self.0.db.get().await?;
        tenancy::require_team_role(&client, new.team_id, user, Role::Editor).await?;
        if let Some(connection) = new.connection_id {
            let row = client
                .query_opt(
                    "SELECT team_id FROM connections WHERE id = $1",
                    &[&connection],
                )
                .await?;
            if row.map(|r| r.get::<_, Uuid>(0)) != Some(new.team_id) {
                return Err(ApiError::invalid_field(
                    "connection_id",
                    "no such connection in this team",
                ));
            }
        }
        let provider = self.0.provider.name();
        if let Some(p) = &new.provider
            && p != provider
        {
            return Err(ApiError::invalid_field(
                "provider",
                format!(
                    "`{}` is not configured here; this deployment uses `{provider}`",
                    llm::truncate(p, 40)
                ),
            ));
        }
        let model = new
            .model
            .unwrap_or_else(|| self.0.provider.default_model().to_owned());
        if model.is_empty() || model.len() > 100 {
            return Err(ApiError::invalid_field("model", "1 to 100 characters"));
        }
        let tools = new.tools.unwrap_or_else(|| {
            crate::chat_tools::CATALOG_TOOLS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        if let Some(t) = tools
            .iter()
            .find(|t| !crate::chat_tools::CATALOG_TOOLS.contains(&t.as_str()))
        {
            return Err(ApiError::invalid_field(
                "tools",
                format!(
                    "`{}` is not a tool; the tools are {}",
                    llm::truncate(t, 60),
                    crate::chat_tools::CATALOG_TOOLS.join(", ")
                ),
            ));
        }
        // Given back before the session store takes one of its own: holding it there made
        // concurrent creations wait on each other until the pool timed out.
        drop(client);
        self.0
            .sessions
            .create(NewSession {
                team_id: new.team_id,
                user_id: user.id,
                connection_id: new.connection_id,
                dashboard_id: None,
                purpose: "chat".into(),
                title: None,
                provider: provider.to_owned(),
                model,
                tools,
            })
            .await
            .map_err(ai_error)
    }

    /// The session, if the caller may see it: its owner at `needed`, or an admin of its team
    /// when `admins_too`. Anyone else: 404.
    pub async fn session(
        &self,
        id: Uuid,
        user: &CurrentUser,
        needed: Role,
        admins_too: bool,
    ) -> ApiResult<Manifest> {
        let m = match self.0.sessions.get(id).await {
            Ok(m) => m,
            Err(ai::AiError::NotFound(_)) => return Err(session_not_found()),
            Err(e) => return Err(ai_error(e)),
        };
        let client = self.0.db.get().await?;
        let role = tenancy::team_role(&client, m.team_id, user.id).await?;
        let Some(role) = role else {
            return Err(session_not_found());
        };
        if m.user_id == user.id {
            tenancy::require(Some(role), needed, session_not_found)?;
            return Ok(m);
        }
        if admins_too && role == Role::Admin {
            return Ok(m);
        }
        Err(session_not_found())
    }

    /// The caller's sessions, newest first (all their teams, or one).
    pub async fn list(
        &self,
        user: &CurrentUser,
        team_id: Option<Uuid>,
        status: Option<Status>,
        limit: usize,
        before: Option<Uuid>,
    ) -> ApiResult<Vec<Manifest>> {
        let client = self.0.db.get().await?;
        let teams: Vec<Uuid> = match team_id {
            Some(t) => {
                tenancy::require_team_role(&client, t, user, Role::Viewer).await?;
                vec![t]
            }
            None => client
                .query(
                    "SELECT team_id FROM team_members WHERE user_id = $1",
                    &[&user.id],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut all = Vec::new();
        for t in teams {
            all.extend(
                self.0
                    .sessions
                    .list(t, user.id, status, limit, before)
                    .await
                    .map_err(ai_error)?,
            );
        }
        all.sort_by_key(|m| std::cmp::Reverse(m.id));
        all.truncate(limit);
        Ok(all)
    }

    pub async fn archive(&self, id: Uuid, user: &CurrentUser) -> ApiResult<Manifest> {
        self.session(id, user, Role::Viewer, true).await?;
        self.0
            .sessions
            .set_status(id, Status::Archived)
            .await
            .map_err(ai_error)?;
        self.0.sessions.get(id).await.map_err(ai_error)
    }

    pub async fn delete(&self, id: Uuid, user: &CurrentUser) -> ApiResult<()> {
        self.session(id, user, Role::Viewer, true).await?;
        self.0.sessions.delete(id).await.map_err(ai_error)
    }

    /// Asks a running run to stop; it ends with `error` `cancelled` within a second.
    pub async fn cancel(
        &self,
        session_id: Uuid,
        run_id: Uuid,
        user: &CurrentUser,
    ) -> ApiResult<()> {
        self.session(session_id, user, Role::Viewer, true).await?;
        let client = self.0.db.get().await?;
        let n = client
            .execute(
                "UPDATE chat_runs SET cancel_requested = true WHERE id = $1 AND session_id = $2",
                &[&run_id, &session_id],
            )
            .await?;
        if n == 0 {
            return Err(ApiError::not_found("run_not_found", "no such run"));
        }
        Ok(())
    }

    /// Ends runs whose process went silent (no heartbeat for [`ABANDONED_AFTER`]) with an
    /// `error` event, so that no stream dies silently and the session takes messages again;
    /// one session's, or every one. Returns how many.
    pub async fn reap(&self, session: Option<Uuid>) -> ApiResult<u64> {
        let client = self.0.db.get().await?;
        let secs = ABANDONED_AFTER.as_secs_f64();
        let n = client
            .execute(
                "WITH dead AS ( \
                   SELECT id FROM chat_runs WHERE status = 'running' \
                     AND heartbeat_at < now() - make_interval(secs => $2::float8) \
                     AND ($1::uuid IS NULL OR session_id = $1) FOR UPDATE SKIP LOCKED), \
                 ended AS ( \
                   INSERT INTO chat_run_events (run_id, seq, event, data) \
                   SELECT d.id, coalesce((SELECT max(seq) FROM chat_run_events e WHERE e.run_id = d.id), 0) + 1, \
                          'error', '{\"code\": \"internal\", \"message\": \"The process running this answer stopped; send the message again.\"}'::jsonb \
                   FROM dead d RETURNING run_id, seq) \
                 UPDATE chat_runs r SET status = 'error', error_code = 'internal', finished_at = now(), last_seq = ended.seq \
                 FROM ended WHERE r.id = ended.run_id",
                &[&session, &secs],
            )
            .await?;
        if n > 0 {
            tracing::warn!(runs = n, "ended chat runs whose process went silent");
        }
        Ok(n)
    }

    /// The tool cache's expired entries and their payloads go.
    pub async fn reap_tool_cache(&self) -> ApiResult<usize> {
        self.0.tool_cache.reap().await.map_err(ai_error)
    }

    /// Starts a run answering `message` (the session's owner, an editor). 409 while another
    /// run of the session is under way.
    pub async fn start(
        &self,
        session_id: Uuid,
        user: &CurrentUser,
        message: String,
    ) -> ApiResult<Started> {
        let session = self.session(session_id, user, Role::Editor, false).await?;
        if session.purpose == GENERATE_PURPOSE {
            return Err(ApiError::conflict(
                "generation_session",
                "this session writes a dashboard: continue it with POST /v1/dashboards/generate and its session_id",
            ));
        }
        self.start_run(session, user, message, None).await
    }

    /// Starts a generation run (`POST /v1/dashboards/generate`): a new `generate` session on
    /// the connection (editors of its team; 404 for anyone else), or the next message of one,
    /// whose run may write the session's dashboard.
    pub async fn generate(&self, user: &CurrentUser, g: NewGeneration) -> ApiResult<Started> {
        check_message("prompt", &g.prompt)?;
        if let Some(slug) = &g.slug {
            check_slug(slug)?;
        }
        let (connection, _) = self
            .0
            .dashboards
            .0
            .connections
            .get(g.connection_id, user, Role::Editor)
            .await?;
        let session = match g.session_id {
            Some(id) => {
                let m = self.session(id, user, Role::Editor, false).await?;
                if m.purpose != GENERATE_PURPOSE {
                    return Err(ApiError::invalid_field(
                        "session_id",
                        "not a generation session: chat sessions stream at /v1/chat/sessions/{id}/stream",
                    ));
                }
                if m.connection_id != Some(connection.id) {
                    return Err(ApiError::invalid_field(
                        "session_id",
                        "this session writes a dashboard on another connection",
                    ));
                }
                m
            }
            None => self
                .0
                .sessions
                .create(NewSession {
                    team_id: connection.team_id,
                    user_id: user.id,
                    connection_id: Some(connection.id),
                    dashboard_id: None,
                    purpose: GENERATE_PURPOSE.into(),
                    title: Some(llm::truncate(g.prompt.trim(), 120)),
                    provider: self.0.provider.name().to_owned(),
                    model: self.0.provider.default_model().to_owned(),
                    tools: generate_tools::GENERATE_TOOLS
                        .iter()
                        .map(|t| (*t).to_owned())
                        .collect(),
                })
                .await
                .map_err(ai_error)?,
        };
        // The session's dashboard, when it wrote one: the run edits it.
        let linked = match session.dashboard_id {
            Some(id) => {
                let client = self.0.db.get().await?;
                client
                    .query_opt("SELECT slug, version FROM dashboards WHERE id = $1", &[&id])
                    .await?
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1)))
            }
            None => None,
        };
        if let (Some((linked, _)), Some(wanted)) = (&linked, &g.slug)
            && linked != wanted
        {
            return Err(ApiError::invalid_field(
                "slug",
                format!("this session edits the dashboard `{linked}`"),
            ));
        }
        let facts = RunFacts::default();
        if let Some(slug) = &g.slug {
            facts.set(generate_tools::WANTED_SLUG, slug.clone());
        }
        let mut context = format!(
            "{}\n\nThis run writes one dashboard with the tools; the tools enforce what follows, so follow it and read their answers.\n\n- connection_id: {}\n- warehouse: {}\n",
            crate::generate_planner::CONTEXT_HEADING,
            connection.id,
            connection.warehouse_type.as_str(),
        );
        if let Some(slug) = &g.slug {
            context.push_str(&format!("- slug: {slug}\n"));
        }
        match &linked {
            Some((slug, version)) => context.push_str(&format!(
                "- dashboard: {slug} version {version}\n\nThis session wrote `{slug}`: the request changes it, saved as its next version with the same slug.\n"
            )),
            None => context.push_str(
                "\nSave a new dashboard (choose a kebab-case slug unless one is given above).\n",
            ),
        }
        let generation = Generation {
            context,
            facts: Arc::new(facts),
        };
        self.start_run(session, user, g.prompt, Some(generation))
            .await
    }

    async fn start_run(
        &self,
        session: Manifest,
        user: &CurrentUser,
        message: String,
        generation: Option<Generation>,
    ) -> ApiResult<Started> {
        let session_id = session.id;
        if session.status != Status::Active {
            return Err(ApiError::conflict(
                "session_archived",
                "the session is archived",
            ));
        }
        check_message(
            if generation.is_some() {
                "prompt"
            } else {
                "message"
            },
            &message,
        )?;
        self.0
            .edge
            .limiter
            .team(&self.0.db, session.team_id)
            .await?;
        // A run whose process died must not hold the session for ever.
        self.reap(Some(session_id)).await?;
        let run_id = Uuid::now_v7();
        let token = base::crypto::random_token(32);
        let mut client = self.0.db.get().await?;
        let tx = client.transaction().await?;
        // The daily budgets: a spent one answers 429 (see `usage::admit_run`).
        let limits = self.0.limits;
        crate::usage::admit_run(
            &tx,
            session.team_id,
            user.id,
            generation.is_some(),
            limits.usd,
            limits.wall.as_secs_f64() + 60.0,
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO chat_runs (id, session_id, team_id, user_id, replay_token_hash, replay_expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &run_id,
                    &session_id,
                    &session.team_id,
                    &user.id,
                    &base::crypto::sha256_hex(token.as_bytes()),
                    &(OffsetDateTime::now_utc() + REPLAY_TOKEN_LIFETIME),
                ],
            )
            .await;
        if let Err(e) = inserted {
            if storage::db::unique_violation(&e).is_some() {
                return Err(ApiError::conflict(
                    "run_in_progress",
                    "this session is answering another message; wait for it, or cancel it",
                ));
            }
            return Err(e.into());
        }
        tx.commit().await?;
        drop(client);
        let (tx, rx) = mpsc::channel(256);
        let run = Run {
            chat: self.clone(),
            id: run_id,
            session,
            user: user.id,
            tx,
            seq: 0,
            client_gone: false,
            stop: CancellationToken::new(),
            draining: Arc::default(),
            facts: generation
                .as_ref()
                .map(|g| g.facts.clone())
                .unwrap_or_default(),
            generation: generation.map(|g| g.context),
            used_tokens: 0,
            used_usd: 0.0,
        };
        // The run's warehouse jobs (the tools' queries and dry runs) are charged to it.
        let charge = crate::usage::Charge {
            user_id: Some(user.id),
            purpose: crate::usage::Purpose::Agent,
            dashboard: None,
            session_id: Some(session_id),
            run_id: Some(run_id),
        };
        let span = tracing::info_span!(
            "chat.stream",
            session_id = %session_id,
            run_id = %run_id,
            generation = run.generation.is_some(),
        );
        tokio::spawn(crate::usage::charged(
            charge,
            tracing::Instrument::instrument(run.drive(message, token), span),
        ));
        Ok(Started {
            run_id,
            session_id,
            events: rx,
        })
    }

    /// Who may replay a run: its session's viewers as [`Chat::session`] says, or anyone
    /// holding the run's replay token. Returns whether the run has finished.
    pub async fn authorize_replay(
        &self,
        session_id: Uuid,
        run_id: Uuid,
        user: Option<&CurrentUser>,
        token: Option<&str>,
    ) -> ApiResult<()> {
        let client = self.0.db.get().await?;
        let row = client
            .query_opt(
                "SELECT replay_token_hash, replay_expires_at > now() FROM chat_runs WHERE id = $1 AND session_id = $2",
                &[&run_id, &session_id],
            )
            .await?
            .ok_or_else(|| ApiError::not_found("run_not_found", "no such run"))?;
        if let Some(user) = user {
            self.session(session_id, user, Role::Viewer, true).await?;
            return Ok(());
        }
        let hash: String = row.get(0);
        let live: bool = row.get(1);
        match token {
            Some(t) if live && base::crypto::sha256_hex(t.as_bytes()) == hash => Ok(()),
            _ => Err(ApiError::not_found("run_not_found", "no such run")),
        }
    }

    /// The run's events after `after` (at most `limit`), and whether they are its last: the
    /// run has ended and nothing follows them.
    pub async fn events_after(
        &self,
        run_id: Uuid,
        after: i32,
        limit: i64,
    ) -> ApiResult<(Vec<RunEvent>, bool)> {
        let client = self.0.db.get().await?;
        // The status first: a run's terminal event commits with its status, so once the
        // status says it ended, the read below sees every event it wrote.
        let status: String = client
            .query_one("SELECT status FROM chat_runs WHERE id = $1", &[&run_id])
            .await?
            .get(0);
        let rows = client
            .query(
                "SELECT seq, event, data FROM chat_run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&run_id, &after, &limit],
            )
            .await?;
        let ended = status != "running" && (rows.len() as i64) < limit;
        Ok((
            rows.iter()
                .map(|r| RunEvent {
                    seq: r.get(0),
                    event: r.get(1),
                    data: r.get(2),
                })
                .collect(),
            ended,
        ))
    }
}

/// One run, driven by a task of its own.
struct Run {
    chat: Chat,
    id: Uuid,
    session: Manifest,
    user: Uuid,
    tx: mpsc::Sender<RunEvent>,
    seq: i32,
    client_gone: bool,
    /// Cancelled when the client goes away or `cancel` is asked (a watcher checks every
    /// second), or when the run ends.
    stop: CancellationToken,
    /// Set when the stop came from the process shutting down.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// What this run's tools proved (dry runs, validations) and what it saved.
    facts: Arc<RunFacts>,
    /// A generation run's context block (the last system block).
    generation: Option<String>,
    /// What the run has used so far.
    used_tokens: u64,
    used_usd: f64,
}

/// Why a run ended badly.
struct Stop {
    code: &'static str,
    message: String,
}

impl Stop {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn llm_stop(e: &LlmError) -> Stop {
    let code = match e {
        LlmError::Http { status: 429, .. } => "rate_limited",
        LlmError::Http { status: 529, .. } | LlmError::CircuitOpen { .. } => "provider_overloaded",
        LlmError::Stream { kind, .. } if kind.contains("overloaded") => "provider_overloaded",
        LlmError::Stream { kind, .. } if kind.contains("rate") => "rate_limited",
        LlmError::Idle { .. } => "timeout",
        _ => "provider_error",
    };
    Stop::new(code, e.to_string())
}

impl Run {
    /// Stops the run when a budget of its team was spent since it started (by it or by
    /// others): checked before each model call after the first.
    async fn check_budget(&self) -> Result<(), Stop> {
        let client = self
            .chat
            .0
            .db
            .get()
            .await
            .map_err(|e| Stop::new("internal", e.to_string()))?;
        let spent = crate::usage::spent(&**client, self.session.team_id, None, 0.0)
            .await
            .map_err(|e| Stop::new("internal", e.to_string()))?;
        match spent.run_refusal() {
            Some(reason) => Err(Stop::new("budget_exceeded", reason)),
            None => Ok(()),
        }
    }

    /// Writes an event, then sends it. A client that went away only stops the sending.
    async fn emit(&mut self, event: &str, data: Value) -> Result<(), Stop> {
        self.seq += 1;
        let client = self
            .chat
            .0
            .db
            .get()
            .await
            .map_err(|e| Stop::new("internal", e.to_string()))?;
        client
            .execute(
                "INSERT INTO chat_run_events (run_id, seq, event, data) VALUES ($1, $2, $3, $4)",
                &[&self.id, &self.seq, &event, &data],
            )
            .await
            .map_err(|e| Stop::new("internal", e.to_string()))?;
        if !self.client_gone {
            let e = RunEvent {
                seq: self.seq,
                event: event.to_owned(),
                data,
            };
            if self.tx.send(e).await.is_err() {
                self.client_gone = true;
            }
        }
        Ok(())
    }

    /// The terminal event and the run's end, in one transaction, then sent.
    async fn finish(&mut self, outcome: Result<Value, Stop>) {
        let outcome = match outcome {
            Err(s)
                if s.code == "cancelled"
                    && self.draining.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                Err(Stop::new(
                    "shutting_down",
                    "the server is restarting; send the message again",
                ))
            }
            other => other,
        };
        self.seq += 1;
        let (event, data, status, code) = match outcome {
            Ok(data) => ("complete", data, "complete", None),
            Err(stop) => {
                let status = if stop.code == "cancelled" {
                    "cancelled"
                } else {
                    "error"
                };
                let message = if stop.code == "internal" {
                    tracing::error!(run = %self.id, error = %stop.message, "a chat run failed");
                    "Something went wrong on our side; the run was stopped.".to_owned()
                } else {
                    llm::truncate(&stop.message, 500)
                };
                (
                    "error",
                    json!({"code": stop.code, "message": message}),
                    status,
                    Some(stop.code),
                )
            }
        };
        let written = async {
            let mut client = self.chat.0.db.get().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO chat_run_events (run_id, seq, event, data) VALUES ($1, $2, $3, $4)",
                &[&self.id, &self.seq, &event, &data],
            )
            .await?;
            let bytes = self.facts.total(generate_tools::BYTES_ESTIMATED) as i64;
            let (dashboard_id, version) = saved(&self.facts)
                .map(|v| {
                    (
                        v["dashboard_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()),
                        v["version"].as_i64().map(|n| n as i32),
                    )
                })
                .unwrap_or((None, None));
            tx.execute(
                "UPDATE chat_runs SET status = $2, error_code = $3, last_seq = $4, finished_at = now(), \
                   total_tokens = $5, cost_usd = $6, warehouse_bytes = $7, dashboard_id = $8, dashboard_version = $9 \
                 WHERE id = $1",
                &[
                    &self.id,
                    &status,
                    &code,
                    &self.seq,
                    &(self.used_tokens as i64),
                    &self.used_usd,
                    &bytes,
                    &dashboard_id,
                    &version,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = written {
            tracing::error!(run = %self.id, error = %e, "a chat run's end could not be written");
        }
        if !self.client_gone {
            let _ = self
                .tx
                .send(RunEvent {
                    seq: self.seq,
                    event: event.to_owned(),
                    data,
                })
                .await;
        }
    }

    async fn drive(mut self, message: String, token: String) {
        let started = Instant::now();
        let watcher = self.watch();
        let first = self
            .emit(
                "run",
                json!({"run_id": self.id, "session_id": self.session.id, "replay_token": token}),
            )
            .await;
        let outcome = match first {
            Ok(()) => self.converse(message, started).await,
            Err(e) => Err(e),
        };
        self.finish(outcome).await;
        watcher.abort();
    }

    async fn converse(&mut self, message: String, started: Instant) -> Result<Value, Stop> {
        let chat = self.chat.clone();
        let sessions = &chat.0.sessions;
        let internal = |e: ai::AiError| Stop::new("internal", e.to_string());
        // What the first model call needs is read at once, side by side, and the user's
        // message is written meanwhile (its append is awaited before anything else is
        // appended): the call starts as early as it can. History is what the session held
        // when the run started (no other run can add to it: one run at a time).
        let user_message = Message::user(message);
        let appending = {
            let sessions = sessions.clone();
            let id = self.session.id;
            let m = user_message.clone();
            tokio::spawn(async move { sessions.append(id, std::slice::from_ref(&m)).await })
        };
        let mut appending = Some(appending);
        let before = self.session.message_count.saturating_add(1);
        let (past, system, epoch) = tokio::join!(
            sessions.history(self.session.id, HISTORY - 1, Some(before)),
            chat.system_blocks(),
            self.catalog_epoch(),
        );
        let mut system = system.map_err(internal)?.as_ref().clone();
        if let Some(context) = &self.generation {
            system.push(llm::SystemBlock {
                text: context.clone(),
                cache: false,
            });
        }
        let registry = chat.registry(&self.session.tools);
        let tool_ctx = ToolContext {
            team_id: self.session.team_id,
            user_id: self.user,
            connection_id: self.session.connection_id,
            session_id: Some(self.session.id),
            cache_epoch: epoch,
            facts: self.facts.clone(),
        };
        let mut history: Vec<Message> = past
            .map_err(internal)?
            .into_iter()
            .rev()
            .map(|m| m.message)
            .collect();
        history.push(user_message);
        // A history must open with the user's words, not a tool result without its call.
        while history.first().is_some_and(|m| {
            m.role != llm::Role::User
                || m.content
                    .iter()
                    .any(|c| matches!(c, Content::ToolResult { .. }))
        }) {
            history.remove(0);
        }
        let limits = chat.0.limits;
        let mut total = Usage::default();
        let mut cost_pico: u64 = 0;
        let mut unpriced = false;
        for step in 1..=limits.steps {
            if step > 1 {
                self.check_budget().await?;
            }
            let mut request = Request::new(history.clone(), chat.0.max_tokens);
            request.model = self.session.model.clone();
            request.system = system.clone();
            request.tools = registry.specs();
            request.cache_history = true;
            let called = self.model_call(&request, started, &limits).await;
            if let Some(pending) = appending.take() {
                pending
                    .await
                    .map_err(|e| Stop::new("internal", e.to_string()))?
                    .map_err(internal)?;
            }
            let (turn, record) = called?;
            total.input_tokens += turn.usage.input_tokens;
            total.output_tokens += turn.usage.output_tokens;
            total.cache_read_tokens += turn.usage.cache_read_tokens;
            total.cache_write_tokens += turn.usage.cache_write_tokens;
            match chat.0.calls.prices().cost(&record.model, &turn.usage) {
                Some(c) => cost_pico += c.0,
                None => unpriced = true,
            }
            let cost_usd = cost_pico as f64 / 1e12;
            self.used_tokens = total.total();
            self.used_usd = cost_usd;
            let mut cost = json!({"tokens": total.total(), "cost_usd": cost_usd, "cost_known": !unpriced, "step": step});
            if self.generation.is_some() {
                cost["warehouse_bytes_estimated"] =
                    json!(self.facts.total(generate_tools::BYTES_ESTIMATED));
            }
            self.emit("cost_update", cost).await?;
            let assistant = turn.message();
            if !assistant.content.is_empty() {
                sessions
                    .append(self.session.id, std::slice::from_ref(&assistant))
                    .await
                    .map_err(internal)?;
                history.push(assistant);
            }
            let mut results = turn.refused_calls();
            for call in turn.runnable_calls() {
                self.emit(
                    "tool_call",
                    json!({"id": call.id, "tool": call.name, "args": call.input}),
                )
                .await?;
                let outcome = tokio::select! {
                    o = registry.run(&tool_ctx, call) => o,
                    _ = self.stopped() => return Err(Stop::new("cancelled", "the run was cancelled")),
                };
                let result: Value = serde_json::from_str(&outcome.content)
                    .unwrap_or(Value::String(outcome.content.clone()));
                let created = (call.name == "save_dashboard_yaml" && !outcome.is_error)
                    .then(|| {
                        json!({
                            "slug": result["slug"], "version": result["version"],
                            "preview_url": result["preview_url"], "dashboard_id": result["dashboard_id"],
                            "created": result["created"],
                        })
                    });
                self.emit(
                    "tool_result",
                    json!({"id": call.id, "tool": call.name, "result": result, "is_error": outcome.is_error, "cached": outcome.cached, "truncated": outcome.truncated}),
                )
                .await?;
                if let Some(created) = created {
                    self.emit("dashboard_created", created).await?;
                }
                results.push(outcome.to_content());
            }
            if results.is_empty() {
                if turn.stop == StopReason::Refusal {
                    return Err(Stop::new("provider_error", "the model refused to answer"));
                }
                let mut done = json!({
                    "total_tokens": total.total(),
                    "total_cost_usd": cost_usd,
                    "cost_known": !unpriced,
                    "steps": step,
                });
                if self.generation.is_some() {
                    let Some(dashboard) = saved(&self.facts) else {
                        let said = turn.text.trim();
                        return Err(Stop::new(
                            "no_dashboard",
                            if said.is_empty() {
                                "The run ended without saving a dashboard.".to_owned()
                            } else {
                                format!(
                                    "The run ended without saving a dashboard: {}",
                                    llm::truncate(said, 400)
                                )
                            },
                        ));
                    };
                    done["dashboard"] = dashboard;
                    done["warehouse_bytes_estimated"] =
                        json!(self.facts.total(generate_tools::BYTES_ESTIMATED));
                }
                return Ok(done);
            }
            let tool_message = Message {
                role: llm::Role::User,
                content: results,
            };
            sessions
                .append(self.session.id, std::slice::from_ref(&tool_message))
                .await
                .map_err(internal)?;
            history.push(tool_message);
            if total.total() > limits.tokens {
                return Err(Stop::new(
                    "budget_exceeded",
                    format!("the run used more than {} tokens", limits.tokens),
                ));
            }
            if cost_usd > limits.usd {
                return Err(Stop::new(
                    "budget_exceeded",
                    format!("the run cost more than ${:.2}", limits.usd),
                ));
            }
        }
        Err(Stop::new(
            "step_limit",
            format!("the run took more than {} model calls", limits.steps),
        ))
    }

    /// Resolves when the run must stop: the client went away, or cancel was asked.
    async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Watches for a stop every second until the run ends: the client gone (a stream
    /// nobody reads), or `cancel_requested` set (by any process).
    fn watch(&self) -> tokio::task::JoinHandle<()> {
        let stop = self.stop.clone();
        let draining = self.draining.clone();
        let tx = self.tx.clone();
        let db = self.chat.0.db.clone();
        let id = self.id;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => { stop.cancel(); return; }
                    _ = edge::runtime::draining().cancelled() => { draining.store(true, std::sync::atomic::Ordering::SeqCst); stop.cancel(); return; }
                    _ = tick.tick() => {
                        let asked = match db.get().await {
                            Ok(client) => client
                                .query_opt(
                                    "UPDATE chat_runs SET heartbeat_at = now() WHERE id = $1 RETURNING cancel_requested",
                                    &[&id],
                                )
                                .await
                                .ok()
                                .flatten()
                                .is_some_and(|r| r.get::<_, bool>(0)),
                            Err(_) => false,
                        };
                        if asked {
                            stop.cancel();
                            return;
                        }
                    }
                }
            }
        })
    }

    /// What the catalog tools' cache answers depend on: the connection's last finished scan.
    async fn catalog_epoch(&self) -> String {
        let Some(conn) = self.session.connection_id else {
            return String::new();
        };
        let Ok(client) = self.chat.0.db.get().await else {
            return String::new();
        };
        client
            .query_opt(
                "SELECT id::text FROM scan_runs WHERE connection_id = $1 AND status <> 'running' ORDER BY started_at DESC LIMIT 1",
                &[&conn],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default()
    }

    /// One model call, relaying text as it comes (the first delta at once, then coalesced),
    /// recorded in `model_calls` whatever happens.
    async fn model_call(
        &mut self,
        request: &Request,
        run_started: Instant,
        limits: &settings::RunLimits,
    ) -> Result<(llm::Turn, CallRecord), Stop> {
        let chat = self.chat.clone();
        let provider = chat.0.provider.clone();
        let started = Instant::now();
        let deadline = run_started + limits.wall;
        let mut usage = Usage::default();
        let mut first = None;
        let mut text = String::new();
        let mut pending = String::new();
        let mut last_flush: Option<Instant> = None;
        let mut tool_calls = Vec::new();
        let mut stop = None;
        let mut failure: Option<Stop> = None;
        let span = ai::llm_span!(
            provider.name(),
            if request.model.is_empty() {
                provider.default_model()
            } else {
                request.model.as_str()
            }
        );
        let opened = tokio::select! {
            s = tracing::Instrument::instrument(provider.stream(request), span.clone()) => Some(s),
            _ = tokio::time::sleep_until(deadline.into()) => None,
            _ = self.stopped() => { failure = Some(Stop::new("cancelled", "the run was cancelled")); None }
        };
        match opened {
            None if failure.is_none() => {
                failure = Some(Stop::new(
                    "timeout",
                    "the run took longer than its time limit",
                ))
            }
            None => {}
            Some(Err(e)) => failure = Some(llm_stop(&e)),
            Some(Ok(mut stream)) => loop {
                let flush_at = last_flush.map(|t| t + COALESCE);
                let next = tokio::select! {
                    e = stream.next() => e,
                    _ = async { if let Some(at) = flush_at { tokio::time::sleep_until(at.into()).await } else { std::future::pending::<()>().await } }, if !pending.is_empty() => {
                        let t = std::mem::take(&mut pending);
                        if let Err(s) = self.emit("token", json!({"text": t})).await { failure = Some(s); break; }
                        last_flush = Some(Instant::now());
                        continue;
                    }
                    _ = tokio::time::sleep_until(deadline.into()) => { failure = Some(Stop::new("timeout", "the run took longer than its time limit")); break; }
                    _ = self.stopped() => { failure = Some(Stop::new("cancelled", "the run was cancelled")); break; }
                };
                match next {
                    None => {
                        failure = Some(Stop::new(
                            "provider_error",
                            "the provider's stream ended early",
                        ));
                        break;
                    }
                    Some(Err(e)) => {
                        failure = Some(llm_stop(&e));
                        break;
                    }
                    Some(Ok(event)) => {
                        if first.is_none() {
                            first = Some(started.elapsed());
                        }
                        match event {
                            Event::TextDelta(t) => {
                                text.push_str(&t);
                                pending.push_str(&t);
                                let due = last_flush.is_none_or(|at| at.elapsed() >= COALESCE);
                                if due {
                                    let t = std::mem::take(&mut pending);
                                    if let Err(s) = self.emit("token", json!({"text": t})).await {
                                        failure = Some(s);
                                        break;
                                    }
                                    last_flush = Some(Instant::now());
                                }
                            }
                            Event::ToolCall { call, .. } => tool_calls.push(call),
                            Event::Usage(u) => usage = u,
                            Event::Stop(s) => {
                                stop = Some(s);
                                break;
                            }
                            Event::ToolCallStart { .. } | Event::ToolCallDelta { .. } => {}
                        }
                    }
                }
            },
        }
        // Text the model produced reaches the client even when the stream then failed.
        let emit_failed = failure.as_ref().is_some_and(|f| f.code == "internal");
        if !emit_failed && !pending.is_empty() {
            let t = std::mem::take(&mut pending);
            if let Err(s) = self.emit("token", json!({"text": t})).await {
                failure = Some(s);
            }
        }
        let model = if request.model.is_empty() {
            provider.default_model().to_owned()
        } else {
            request.model.clone()
        };
        let ctx = ai::calls::CallContext {
            team_id: self.session.team_id,
            session_id: Some(self.session.id),
            purpose: if self.generation.is_some() {
                "generate".into()
            } else {
                "chat".into()
            },
            user_id: Some(self.user),
            run_id: Some(self.id),
        };
        let record = chat.0.calls.record_of(
            provider.as_ref(),
            &model,
            &ctx,
            ai::calls::Finished {
                usage,
                first_event: first,
                latency: started.elapsed(),
                stop: stop.as_ref(),
                error: failure
                    .as_ref()
                    .map(|f| format!("{}: {}", f.code, f.message)),
            },
        );
        span.in_scope(|| ai::telemetry::recorded(&record));
        if let Err(e) = chat.0.calls.record(&record).await {
            tracing::error!(run = %self.id, error = %e, "a model call could not be recorded");
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let stop = stop.unwrap_or(StopReason::EndTurn);
        Ok((
            llm::Turn {
                text,
                tool_calls,
                usage,
                stop,
                first_event: first,
            },
            record,
        ))
    }
}

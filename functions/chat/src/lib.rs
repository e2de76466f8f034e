//! The chat function: sessions, and a streamed answer to each message — the model's tool
//! loop over the session's connection catalog — as server-sent events that are kept, so a
//! client that lost its connection replays what it missed (`…/runs/{run_id}/events` after
//! `Last-Event-ID`). The work is in `services::chat`; who may see what is said there.

use std::time::Duration;

use axum::{
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use edge::{
    ApiError, ApiResult, CurrentUser, Edge, error::Problem, extract::Json, extract::Path,
    extract::Query,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use services::{
    AppState,
    chat::{Chat, NewChat},
    run_stream::{sse_event, sse_response},
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

mod observability;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(current_session))
        .routes(routes!(get_session, delete_session))
        .routes(routes!(archive_session))
        .routes(routes!(stream))
        .routes(routes!(replay))
        .routes(routes!(cancel))
        .routes(routes!(messages))
        .routes(routes!(export))
        .merge(observability::router())
}

/// A chat session, as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub connection_id: Option<Uuid>,
    pub dashboard_id: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub tools: Vec<String>,
    /// `active`, `archived` or `error`.
    pub status: String,
    pub message_count: i32,
    pub summary: Option<String>,
    pub total_tokens: i64,
    /// Dollars, exact (12 decimal places).
    pub total_cost_usd: String,
    /// Calls of models without a price: when non-zero, the total is a lower bound.
    pub unpriced_calls: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_message_at: Option<time::OffsetDateTime>,
}

impl From<ai::sessions::Manifest> for Session {
    fn from(m: ai::sessions::Manifest) -> Self {
        Self {
            id: m.id,
            team_id: m.team_id,
            user_id: m.user_id,
            connection_id: m.connection_id,
            dashboard_id: m.dashboard_id,
            provider: m.provider,
            model: m.model,
            tools: m.tools,
            status: m.status.as_str().to_owned(),
            message_count: m.message_count,
            summary: m.summary,
            total_tokens: m.total_tokens,
            total_cost_usd: m.total_cost_usd,
            unpriced_calls: m.unpriced_calls,
            created_at: m.created_at,
            last_message_at: m.last_message_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub team_id: Uuid,
    /// The connection whose catalog the tools look at.
    pub connection_id: Option<Uuid>,
    /// The configured provider's name (`anthropic`, `openai`, `builtin`); another is refused.
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Tools by name (default: all of `list_datasets`, `list_tables`, `get_table_schema`).
    pub tools: Option<Vec<String>>,
}

/// Starts a session (editors of the team).
#[utoipa::path(post, path = "/v1/chat/sessions", tag = "chat",
    request_body = CreateSession,
    responses(
        (status = 201, body = Session),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn create_session(
    State(chat): State<Chat>,
    user: CurrentUser,
    Json(body): Json<CreateSession>,
) -> ApiResult<impl IntoResponse> {
    let m = chat
        .create(
            &user,
            NewChat {
                team_id: body.team_id,
                connection_id: body.connection_id,
                provider: body.provider,
                model: body.model,
                tools: body.tools,
            },
        )
        .await?;
    let location = format!("/v1/chat/sessions/{}", m.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(Session::from(m)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One team's sessions (default: all the caller's teams).
    pub team_id: Option<Uuid>,
    /// `active` or `archived`.
    pub status: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    pub next_cursor: Option<String>,
}

fn status_param(s: Option<&str>) -> ApiResult<Option<ai::sessions::Status>> {
    match s {
        None => Ok(None),
        Some("active") => Ok(Some(ai::sessions::Status::Active)),
        Some("archived") => Ok(Some(ai::sessions::Status::Archived)),
        Some(_) => Err(ApiError::invalid_field(
            "status",
            "allowed values: active, archived",
        )),
    }
}

/// The caller's sessions, newest first.
#[utoipa::path(get, path = "/v1/chat/sessions", tag = "chat",
    params(ListQuery),
    responses((status = 200, body = SessionList), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_sessions(
    State(chat): State<Chat>,
    user: CurrentUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<SessionList>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 200",
        ));
    }
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            Uuid::parse_str(c)
                .map_err(|_| ApiError::invalid_field("cursor", "not a cursor this list gave"))?,
        ),
    };
    let status = status_param(q.status.as_deref())?;
    let mut sessions = chat
        .list(&user, q.team_id, status, limit as usize + 1, before)
        .await?;
    let next_cursor = if sessions.len() > limit as usize {
        sessions.truncate(limit as usize);
        sessions.last().map(|s| s.id.to_string())
    } else {
        None
    };
    Ok(Json(SessionList {
        sessions: sessions.into_iter().map(Session::from).collect(),
        next_cursor,
    }))
}

/// The caller's most recent active session (404 when there is none).
#[utoipa::path(get, path = "/v1/chat/sessions/current", tag = "chat",
    responses((status = 200, body = Session), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn current_session(State(chat): State<Chat>, user: CurrentUser) -> ApiResult<Json<Session>> {
    let sessions = chat
        .list(&user, None, Some(ai::sessions::Status::Active), 200, None)
        .await?;
    sessions
        .into_iter()
        .max_by_key(|s| (s.last_message_at.unwrap_or(s.created_at), s.id))
        .map(|s| Json(Session::from(s)))
        .ok_or_else(|| ApiError::not_found("session_not_found", "no active chat session"))
}

/// A session (its owner, or an admin of its team).
#[utoipa::path(get, path = "/v1/chat/sessions/{id}", tag = "chat",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Session), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_session(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Session>> {
    Ok(Json(Session::from(
        chat.session(id, &user, base::domain::Role::Viewer, true)
            .await?,
    )))
}

/// Deletes a session: its messages, runs and model calls (its owner, or an admin).
#[utoipa::path(delete, path = "/v1/chat/sessions/{id}", tag = "chat",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn delete_session(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    chat.delete(id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Archives a session: it no longer takes messages, nor counts as current.
#[utoipa::path(post, path = "/v1/chat/sessions/{id}/archive", tag = "chat",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Session), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn archive_session(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Session>> {
    Ok(Json(Session::from(chat.archive(id, &user).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamBody {
    /// 1 to 32,000 characters.
    pub message: String,
}

/// Answers a message (the session's owner, an editor), as `text/event-stream`: `run`
/// `{run_id, session_id, replay_token}`, `token` `{text}`, `tool_call` `{id, tool, args}`,
/// `tool_result` `{id, tool, result, is_error, cached, truncated}`, `cost_update`
/// `{tokens, cost_usd, cost_known, step}`, then exactly one of `complete`
/// `{total_tokens, total_cost_usd, cost_known, steps}` or `error` `{code, message}`. Every
/// event carries an `id:` (its number in the run). 409 while another run of the session is
/// under way. Closing the connection stops the run.
#[utoipa::path(post, path = "/v1/chat/sessions/{id}/stream", tag = "chat",
    params(("id" = Uuid, Path)),
    request_body = StreamBody,
    responses(
        (status = 200, content_type = "text/event-stream", description = "The run's events", headers(("x-run-id" = String, description = "The run's id"))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Another run is under way, or the session is archived"),
))]
async fn stream(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Json(body): Json<StreamBody>,
) -> ApiResult<Response> {
    Ok(services::run_stream::live(
        chat.start(id, &user, body.message).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    /// Replay after this event (fetch clients; EventSource sends `Last-Event-ID`).
    pub after: Option<i32>,
    /// The run's replay token (from its `run` event), for clients that cannot send an
    /// `Authorization` header. It opens this run's events alone.
    pub token: Option<String>,
}

/// Optional authentication: the bearer's identity when an Authorization header is sent.
struct MaybeUser(Option<CurrentUser>);

impl<S> FromRequestParts<S> for MaybeUser
where
    S: Send + Sync,
    Edge: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            Ok(Self(Some(
                CurrentUser::from_request_parts(parts, state).await?,
            )))
        } else {
            Ok(Self(None))
        }
    }
}

const REPLAY_POLL: Duration = Duration::from_millis(200);

/// A run's events after `Last-Event-ID` (or `?after=`), then its live ones until its end;
/// 204 once a finished run has nothing more to send (EventSource then stops reconnecting).
/// Authorised by the bearer (who may see the session) or by the run's replay token.
#[utoipa::path(get, path = "/v1/chat/sessions/{id}/runs/{run_id}/events", tag = "chat",
    params(("id" = Uuid, Path), ("run_id" = Uuid, Path), ReplayQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last event received")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "The events after the one named"),
        (status = 204, description = "The run has ended and every event was delivered"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn replay(
    State(chat): State<Chat>,
    MaybeUser(user): MaybeUser,
    Path((id, run_id)): Path<(Uuid, Uuid)>,
    Query(q): Query<ReplayQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    chat.authorize_replay(id, run_id, user.as_ref(), q.token.as_deref())
        .await?;
    let after = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(v) => v
            .trim()
            .parse::<i32>()
            .map_err(|_| ApiError::invalid_field("Last-Event-ID", "an event id of this run"))?,
        None => q.after.unwrap_or(0),
    };
    let (first, ended) = chat.events_after(run_id, after, 500).await?;
    if first.is_empty() && ended {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let state = (
        chat,
        run_id,
        after,
        first.into_iter().collect::<std::collections::VecDeque<_>>(),
        ended,
        false,
    );
    let stream = futures::stream::unfold(
        state,
        |(chat, run_id, mut after, mut queue, mut ended, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(e) = queue.pop_front() {
                    after = e.seq;
                    let terminal = e.event == "complete" || e.event == "error";
                    let event = sse_event(&e);
                    return Some((event, (chat, run_id, after, queue, ended, terminal)));
                }
                if ended {
                    return None;
                }
                tokio::time::sleep(REPLAY_POLL).await;
                match chat.events_after(run_id, after, 500).await {
                    Ok((more, now_ended)) => {
                        queue.extend(more);
                        ended = now_ended;
                    }
                    Err(e) => {
                        tracing::warn!(run = %run_id, error = %e, "replaying a run's events");
                        return None;
                    }
                }
            }
        },
    );
    Ok(sse_response(stream, Some(run_id)))
}

/// Asks a run to stop (its owner, or an admin): it ends with `error` `cancelled` within a
/// second.
#[utoipa::path(post, path = "/v1/chat/sessions/{id}/runs/{run_id}/cancel", tag = "chat",
    params(("id" = Uuid, Path), ("run_id" = Uuid, Path)),
    responses((status = 202, description = "Asked to stop"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn cancel(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path((id, run_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    chat.cancel(id, run_id, &user).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// 1 to 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Messages to skip, newest first (default 0).
    pub offset: Option<u32>,
    /// `user` or `assistant`.
    pub role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoredMessage {
    pub seq: i32,
    pub role: String,
    /// The message's parts: `text`, `tool_use`, `tool_result`.
    #[schema(value_type = Vec<Object>)]
    pub content: Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: time::OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<StoredMessage>,
    pub total_count: i32,
    pub has_more: bool,
}

/// A session's messages, newest first, from its log in the sessions bucket.
#[utoipa::path(get, path = "/v1/chat/sessions/{id}/messages", tag = "chat",
    params(("id" = Uuid, Path), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn messages(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<MessagePage>> {
    let m = chat
        .session(id, &user, base::domain::Role::Viewer, true)
        .await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 200",
        ));
    }
    let role = match q.role.as_deref() {
        None => None,
        Some("user") => Some(llm_role(true)),
        Some("assistant") => Some(llm_role(false)),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "role",
                "allowed values: user, assistant",
            ));
        }
    };
    let offset = q.offset.unwrap_or(0) as usize;
    // Newest first, `offset` skipped, across chunks (a page reads at most a few chunks).
    let mut out = Vec::new();
    let mut skipped = 0usize;
    let mut cursor = None;
    let mut has_more = false;
    'pages: loop {
        let page = chat
            .sessions()
            .history(id, 200, cursor)
            .await
            .map_err(services::chat::ai_error)?;
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|p| p.seq);
        for s in page {
            if role.is_some_and(|r| s.message.role != r) {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if out.len() == limit as usize {
                has_more = true;
                break 'pages;
            }
            out.push(StoredMessage {
                seq: s.seq,
                role: if s.message.role == llm_role(true) {
                    "user".into()
                } else {
                    "assistant".into()
                },
                content: serde_json::to_value(&s.message.content).unwrap_or(Value::Null),
                timestamp: s.at,
            });
        }
    }
    Ok(Json(MessagePage {
        messages: out,
        total_count: m.message_count,
        has_more,
    }))
}

fn llm_role(user: bool) -> llm::Role {
    if user {
        llm::Role::User
    } else {
        llm::Role::Assistant
    }
}

/// The most messages an export carries (a session rotates chunks at 1,000 messages; this
/// bounds one download).
const MAX_EXPORT_MESSAGES: usize = 20_000;

/// The whole session as JSONL, for download: a `session` line, every message oldest first
/// (`message` lines), then every model call (`model_call` lines). Its owner, or an admin.
#[utoipa::path(get, path = "/v1/chat/sessions/{id}/export", tag = "chat",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, content_type = "application/x-ndjson", description = "One JSON object per line"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
))]
async fn export(
    State(chat): State<Chat>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let m = chat
        .session(id, &user, base::domain::Role::Viewer, true)
        .await?;
    let mut messages = Vec::new();
    let mut cursor = None;
    loop {
        let page = chat
            .sessions()
            .history(id, 200, cursor)
            .await
            .map_err(services::chat::ai_error)?;
        if page.is_empty() || messages.len() >= MAX_EXPORT_MESSAGES {
            break;
        }
        cursor = page.last().map(|p| p.seq);
        messages.extend(page);
    }
    messages.truncate(MAX_EXPORT_MESSAGES);
    messages.reverse();
    let calls = chat
        .calls()
        .for_session(id, 200)
        .await
        .map_err(services::chat::ai_error)?;
    let mut out = Vec::new();
    let mut line = |v: Value| {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    };
    line(serde_json::json!({"type": "session", "session": Session::from(m)}));
    for s in messages {
        line(
            serde_json::json!({"type": "message", "seq": s.seq, "at": s.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(), "message": s.message}),
        );
    }
    for c in calls.into_iter().rev() {
        line(serde_json::json!({"type": "model_call", "call": c}));
    }
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/x-ndjson".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"chat-{id}.jsonl\""),
            ),
        ],
        out,
    )
        .into_response())
}

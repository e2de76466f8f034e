//! Sessions: the manifest in Postgres (`session_manifests`), the messages as JSONL chunks in
//! the sessions bucket (`{session_id}/messages-0001.jsonl`, …), one line per message.
//!
//! **One writer per session, by design.** An append takes the manifest's row lock
//! (`SELECT … FOR UPDATE`) for its whole read-append-write, so appends to one session are
//! serialised across every process; the message numbers (`seq`) are handed out under that
//! lock. The object write is a conditional put as well (create-if-absent for a new chunk,
//! replace-if-unchanged for the current one): a writer that lost its lock without knowing
//! (its database session died mid-append) cannot overwrite another's lines. Lines an append
//! wrote but never committed (the object written, the transaction lost) carry a `seq` the
//! manifest does not count; readers skip them and the next append drops them.
//!
//! Chunks rotate at the spec's thresholds: 1,000 messages or about 10,000 tokens (at four
//! characters a token) in the current chunk. Postgres knows every chunk (`session_chunks`),
//! so nothing lists the bucket. History pages newest first across chunks.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::Pool;
use platform::blob::{BlobError, BlobStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{AiError, Result};

/// A chunk takes at most this many messages…
pub const CHUNK_MAX_MESSAGES: i32 = 1000;
/// …or about this many tokens (four characters each).
pub const CHUNK_MAX_TOKENS: i64 = 10_000;
/// The largest one message may be, as a JSON line.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// The most messages one history page returns.
pub const MAX_PAGE: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Archived,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Archived => "archived",
            Status::Error => "error",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "archived" => Status::Archived,
            "error" => Status::Error,
            _ => Status::Active,
        }
    }
}

/// A session's manifest: who, what for, which model, where its messages are, what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub id: Uuid,
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub connection_id: Option<Uuid>,
    pub dashboard_id: Option<Uuid>,
    pub purpose: String,
    pub title: Option<String>,
    pub provider: String,
    pub model: String,
    /// The tools the session may use, by name.
    pub tools: Vec<String>,
    pub status: Status,
    /// The object the next message goes to.
    pub messages_key: Option<String>,
    pub message_count: i32,
    pub summary: Option<String>,
    pub summary_through: i32,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub total_tokens: i64,
    /// The priced calls' total, in dollars (12 decimal places, as text: exact).
    pub total_cost_usd: String,
    /// Calls of models without a price: when non-zero, the total is a lower bound.
    pub unpriced_calls: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_message_at: Option<OffsetDateTime>,
}

const MANIFEST_COLUMNS: &str = "id, team_id, user_id, connection_id, dashboard_id, purpose, \
    title, provider, model, tools, status, messages_key, message_count, summary, summary_through, \
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, \
    total_cost_usd::text AS total_cost_usd, unpriced_calls, created_at, updated_at, last_message_at";

impl Manifest {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            team_id: r.try_get("team_id")?,
            user_id: r.try_get("user_id")?,
            connection_id: r.try_get("connection_id")?,
            dashboard_id: r.try_get("dashboard_id")?,
            purpose: r.try_get("purpose")?,
            title: r.try_get("title")?,
            provider: r.try_get("provider")?,
            model: r.try_get("model")?,
            tools: r.try_get("tools")?,
            status: Status::parse(r.try_get::<_, &str>("status")?),
            messages_key: r.try_get("messages_key")?,
            message_count: r.try_get("message_count")?,
            summary: r.try_get("summary")?,
            summary_through: r.try_get("summary_through")?,
            input_tokens: r.try_get("input_tokens")?,
            output_tokens: r.try_get("output_tokens")?,
            cache_read_tokens: r.try_get("cache_read_tokens")?,
            cache_write_tokens: r.try_get("cache_write_tokens")?,
            total_tokens: r.try_get("total_tokens")?,
            total_cost_usd: r.try_get("total_cost_usd")?,
            unpriced_calls: r.try_get("unpriced_calls")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            last_message_at: r.try_get("last_message_at")?,
        })
    }
}

/// What a new session is for.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub connection_id: Option<Uuid>,
    pub dashboard_id: Option<Uuid>,
    /// `chat`, `dashboard_generation`, …
    pub purpose: String,
    pub title: Option<String>,
    pub provider: String,
    pub model: String,
    pub tools: Vec<String>,
}

/// One message as stored: its number in the session, when, and the provider-neutral message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub message: llm::Message,
}

#[derive(Debug, Clone)]
pub struct Sessions {
    pool: Pool,
    blobs: Arc<dyn BlobStore>,
}

fn chunk_key(session: Uuid, chunk_no: i32) -> String {
    format!("{session}/messages-{chunk_no:04}.jsonl")
}

/// The committed lines of a chunk: those numbered first_seq .. first_seq + count - 1.
fn committed(bytes: &[u8], first_seq: i32, count: i32) -> Result<Vec<StoredMessage>> {
    let last = first_seq + count - 1;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for line in bytes.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let m: StoredMessage = serde_json::from_slice(line)
            .map_err(|e| AiError::Internal(format!("a session chunk holds a bad line: {e}")))?;
        if m.seq >= first_seq && m.seq <= last {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.seq);
    out.dedup_by_key(|m| m.seq);
    Ok(out)
}

impl Sessions {
    pub fn new(pool: Pool, blobs: Arc<dyn BlobStore>) -> Self {
        Self { pool, blobs }
    }

    pub async fn create(&self, new: NewSession) -> Result<Manifest> {
        if let Some(t) = &new.title
            && t.chars().count() > 200
        {
            return Err(AiError::invalid("title", "at most 200 characters"));
        }
        let client = self.pool.get().await?;
        let id = Uuid::now_v7();
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO session_manifests (id, team_id, user_id, connection_id, \
                     dashboard_id, purpose, title, provider, model, tools) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {MANIFEST_COLUMNS}"
                ),
                &[
                    &id,
                    &new.team_id,
                    &new.user_id,
                    &new.connection_id,
                    &new.dashboard_id,
                    &new.purpose,
                    &new.title,
                    &new.provider,
                    &new.model,
                    &new.tools,
                ],
            )
            .await?;
        Manifest::from_row(&row)
    }

    /// The manifest, whoever owns it: callers check the team.
    pub async fn get(&self, id: Uuid) -> Result<Manifest> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {MANIFEST_COLUMNS} FROM session_manifests WHERE id = $1"),
                &[&id],
            )
            .await?
            .ok_or(AiError::NotFound("session"))?;
        Manifest::from_row(&row)
    }

    /// A user's sessions in a team, newest first, `before` (a session id) for the next page.
    pub async fn list(
        &self,
        team_id: Uuid,
        user_id: Uuid,
        status: Option<Status>,
        limit: usize,
        before: Option<Uuid>,
    ) -> Result<Vec<Manifest>> {
        let client = self.pool.get().await?;
        let limit = limit.clamp(1, MAX_PAGE) as i64;
        let status = status.map(Status::as_str);
        let rows = client
            .query(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM session_manifests \
                     WHERE team_id = $1 AND user_id = $2 AND ($3::text IS NULL OR status = $3) \
                       AND ($4::uuid IS NULL OR id < $4) \
                     ORDER BY id DESC LIMIT $5"
                ),
                &[&team_id, &user_id, &status, &before, &limit],
            )
            .await?;
        rows.iter().map(Manifest::from_row).collect()
    }

    pub async fn set_status(&self, id: Uuid, status: Status) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE session_manifests SET status = $2, updated_at = now() WHERE id = $1",
                &[&id, &status.as_str()],
            )
            .await?;
        if n == 0 {
            return Err(AiError::NotFound("session"));
        }
        Ok(())
    }

    /// Links the session to the dashboard it wrote (a follow-up edits that one).
    pub async fn set_dashboard(&self, id: Uuid, dashboard_id: Uuid) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE session_manifests SET dashboard_id = $2, updated_at = now() WHERE id = $1",
                &[&id, &dashboard_id],
            )
            .await?;
        if n == 0 {
            return Err(AiError::NotFound("session"));
        }
        Ok(())
    }

    pub async fn set_summary(&self, id: Uuid, summary: &str, through: i32) -> Result<()> {
        let summary: String = summary.trim().chars().take(499).collect();
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE session_manifests SET summary = $2, summary_through = $3, \
                 updated_at = now() WHERE id = $1",
                &[&id, &summary, &through],
            )
            .await?;
        Ok(())
    }

    /// Appends messages in order; returns their numbers. All or none: on any error nothing is
    /// counted (lines already in the object are skipped by readers and dropped by the next
    /// append).
    pub async fn append(&self, id: Uuid, messages: &[llm::Message]) -> Result<Vec<i32>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT message_count FROM session_manifests WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .ok_or(AiError::NotFound("session"))?;
        let count: i32 = row.try_get(0)?;
        let now = OffsetDateTime::now_utc();
        let mut lines = Vec::new();
        let mut seqs = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let stored = StoredMessage {
                seq: count + 1 + i as i32,
                at: now,
                message: message.clone(),
            };
            let line = serde_json::to_vec(&stored)
                .map_err(|e| AiError::Internal(format!("cannot serialise a message: {e}")))?;
            if line.len() > MAX_MESSAGE_BYTES {
                return Err(AiError::invalid(
                    "message",
                    format!("a message may take at most {MAX_MESSAGE_BYTES} bytes as JSON"),
                ));
            }
            seqs.push(stored.seq);
            lines.push(line);
        }
        let new_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

        let current = tx
            .query_opt(
                "SELECT chunk_no, first_seq, message_count, bytes, est_tokens \
                 FROM session_chunks WHERE session_id = $1 ORDER BY chunk_no DESC LIMIT 1",
                &[&id],
            )
            .await?;
        let rotate = match &current {
            None => true,
            Some(c) => {
                let n: i32 = c.try_get("message_count")?;
                let tokens: i64 = c.try_get("est_tokens")?;
                n > 0 && (n + lines.len() as i32 > CHUNK_MAX_MESSAGES || tokens >= CHUNK_MAX_TOKENS)
            }
        };
        let (chunk_no, first_seq, prior_count) = match (&current, rotate) {
            (Some(c), false) => (
                c.try_get::<_, i32>("chunk_no")?,
                c.try_get::<_, i32>("first_seq")?,
                c.try_get::<_, i32>("message_count")?,
            ),
            (Some(c), true) => (c.try_get::<_, i32>("chunk_no")? + 1, count + 1, 0),
            (None, _) => (1, count + 1, 0),
        };
        let key = chunk_key(id, chunk_no);

        // Read the current object (if any), keep its committed lines, add the new ones, and
        // write it back only if it is still the version read.
        let mut body = Vec::new();
        let written = match self.blobs.get(&key).await {
            Ok(blob) => {
                for m in committed(&blob.bytes, first_seq, prior_count)? {
                    body.extend(
                        serde_json::to_vec(&m).map_err(|e| AiError::Internal(e.to_string()))?,
                    );
                    body.push(b'\n');
                }
                for l in &lines {
                    body.extend_from_slice(l);
                    body.push(b'\n');
                }
                self.blobs
                    .replace(&key, Bytes::from(body.clone()), &blob.version)
                    .await?
            }
            Err(BlobError::NotFound(_)) => {
                if prior_count > 0 {
                    return Err(AiError::Internal(format!(
                        "session {id}: chunk {chunk_no} holds {prior_count} messages but its object is missing"
                    )));
                }
                for l in &lines {
                    body.extend_from_slice(l);
                    body.push(b'\n');
                }
                self.blobs.create(&key, Bytes::from(body.clone())).await?
            }
            Err(e) => return Err(e.into()),
        };
        let chunk_count = prior_count + lines.len() as i32;
        let bytes = body.len() as i64;
        let est_tokens = (bytes + 3) / 4;
        tx.execute(
            "INSERT INTO session_chunks (session_id, chunk_no, object_key, first_seq, \
             message_count, bytes, est_tokens, e_tag, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (session_id, chunk_no) DO UPDATE SET message_count = excluded.message_count, \
               bytes = excluded.bytes, est_tokens = excluded.est_tokens, e_tag = excluded.e_tag, \
               version = excluded.version",
            &[
                &id,
                &chunk_no,
                &key,
                &first_seq,
                &chunk_count,
                &bytes,
                &est_tokens,
                &written.e_tag,
                &written.version,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE session_manifests SET message_count = message_count + $2, messages_key = $3, \
             last_message_at = now(), updated_at = now() WHERE id = $1",
            &[&id, &(lines.len() as i32), &key],
        )
        .await?;
        tx.commit().await?;
        tracing::debug!(session = %id, chunk = chunk_no, appended = lines.len(), new_bytes, "session messages appended");
        Ok(seqs)
    }

    /// A page of history, newest first: at most `limit` messages numbered below `before`
    /// (all, when `None`). The next page's cursor is the last message's `seq`.
    pub async fn history(
        &self,
        id: Uuid,
        limit: usize,
        before: Option<i32>,
    ) -> Result<Vec<StoredMessage>> {
        let limit = limit.clamp(1, MAX_PAGE);
        let client = self.pool.get().await?;
        let before = before.unwrap_or(i32::MAX);
        let chunks = client
            .query(
                "SELECT object_key, first_seq, message_count FROM session_chunks \
                 WHERE session_id = $1 AND first_seq < $2 AND message_count > 0 \
                 ORDER BY chunk_no DESC",
                &[&id, &before],
            )
            .await?;
        let mut out = Vec::with_capacity(limit);
        for c in chunks {
            let key: String = c.try_get(0)?;
            let first: i32 = c.try_get(1)?;
            let count: i32 = c.try_get(2)?;
            let blob = match self.blobs.get(&key).await {
                Ok(b) => b,
                Err(BlobError::NotFound(_)) => {
                    tracing::warn!(session = %id, key, "a session chunk is missing; its messages are skipped");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut messages = committed(&blob.bytes, first, count)?;
            messages.retain(|m| m.seq < before);
            for m in messages.into_iter().rev() {
                out.push(m);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The last `n` messages, oldest first: what a model call sends as history.
    pub async fn recent(&self, id: Uuid, n: usize) -> Result<Vec<StoredMessage>> {
        let mut page = self.history(id, n, None).await?;
        page.reverse();
        Ok(page)
    }

    /// Deletes the session: its chunks' objects, then its rows (model calls go with it).
    pub async fn delete(&self, id: Uuid) -> Result<()> {
        let client = self.pool.get().await?;
        let keys = client
            .query(
                "SELECT object_key FROM session_chunks WHERE session_id = $1",
                &[&id],
            )
            .await?;
        // The rows first: once they are gone nothing can find the objects, even if deleting
        // an object fails below.
        let n = client
            .execute("DELETE FROM session_manifests WHERE id = $1", &[&id])
            .await?;
        if n == 0 {
            return Err(AiError::NotFound("session"));
        }
        for k in keys {
            let key: String = k.try_get(0)?;
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(session = %id, key, error = %e, "a deleted session's chunk stays in the bucket");
            }
        }
        Ok(())
    }

    /// Keeps the summary current: once a session passes `every` messages past its summary,
    /// asks `provider` for a new one (< 500 characters) over the summary so far and the newer
    /// messages, records the call, and stores it.
    pub async fn summarize_if_due(
        &self,
        calls: &crate::calls::ModelCalls,
        provider: &dyn llm::Provider,
        id: Uuid,
        every: i32,
    ) -> Result<Option<String>> {
        let m = self.get(id).await?;
        if m.message_count - m.summary_through < every {
            return Ok(None);
        }
        let newer = (m.message_count - m.summary_through).clamp(1, MAX_PAGE as i32) as usize;
        let messages = self.recent(id, newer).await?;
        let mut transcript = String::new();
        if let Some(s) = &m.summary {
            transcript.push_str(&format!("Summary so far: {s}\n\n"));
        }
        for s in &messages {
            let role = match s.message.role {
                llm::Role::User => "user",
                llm::Role::Assistant => "assistant",
            };
            let text = s.message.text();
            if !text.is_empty() {
                transcript.push_str(&format!("{role}: {}\n", llm::truncate(&text, 2000)));
            }
        }
        let transcript = llm::truncate(&transcript, 60_000);
        let mut request = llm::Request::new(
            vec![llm::Message::user(format!(
                "Summarize this conversation in fewer than 500 characters. Focus on: the goal, \
                 the key decisions, the current state. Answer with the summary only.\n\n{transcript}"
            ))],
            200,
        );
        request.model = m.model.clone();
        let ctx = crate::calls::CallContext {
            team_id: m.team_id,
            session_id: Some(id),
            purpose: "session_summary".into(),
            user_id: Some(m.user_id),
            run_id: None,
        };
        let turn = calls.call(provider, &request, &ctx, |_| {}).await?;
        let summary: String = turn.text.trim().chars().take(499).collect();
        self.set_summary(id, &summary, m.message_count).await?;
        Ok(Some(summary))
    }
}

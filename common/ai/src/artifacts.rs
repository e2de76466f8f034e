//! Artifacts (`artifacts`): content-addressed by SHA-256 and stored once per team. The
//! object is `{team}/artifacts/{sha256}` in the sessions bucket, written create-if-absent (two
//! writers of the same bytes both succeed, one object results); the row is unique per (team,
//! hash) and counts its references. Another team storing the same bytes gets its own object:
//! nothing is shared across teams, not even the fact that a content exists.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::Pool;
use platform::blob::{BlobError, BlobStore};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AiError, Result};

/// The largest artifact stored.
pub const MAX_ARTIFACT_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub id: Uuid,
    pub team_id: Uuid,
    pub session_id: Option<Uuid>,
    pub artifact_type: String,
    pub content_sha256: String,
    pub size_bytes: i64,
    pub mime_type: String,
    pub metadata: serde_json::Value,
    pub ref_count: i32,
    /// True when these bytes were already stored: nothing new was written.
    pub deduplicated: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Artifacts {
    pool: Pool,
    blobs: Arc<dyn BlobStore>,
}

/// What is being stored.
#[derive(Debug, Clone)]
pub struct NewArtifact<'a> {
    pub team_id: Uuid,
    pub session_id: Option<Uuid>,
    /// `yaml`, `sql`, `json`, …
    pub artifact_type: &'a str,
    pub mime_type: &'a str,
    pub metadata: serde_json::Value,
    pub content: Bytes,
}

fn from_row(r: &tokio_postgres::Row, deduplicated: bool) -> Result<Artifact> {
    Ok(Artifact {
        id: r.try_get("id")?,
        team_id: r.try_get("team_id")?,
        session_id: r.try_get("session_id")?,
        artifact_type: r.try_get("artifact_type")?,
        content_sha256: r.try_get("content_sha256")?,
        size_bytes: r.try_get("size_bytes")?,
        mime_type: r.try_get("mime_type")?,
        metadata: r.try_get("metadata")?,
        ref_count: r.try_get("ref_count")?,
        deduplicated,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, team_id, session_id, artifact_type, content_sha256, size_bytes, \
    mime_type, metadata, ref_count, created_at";

impl Artifacts {
    pub fn new(pool: Pool, blobs: Arc<dyn BlobStore>) -> Self {
        Self { pool, blobs }
    }

    pub async fn put(&self, new: NewArtifact<'_>) -> Result<Artifact> {
        if new.content.len() > MAX_ARTIFACT_BYTES {
            return Err(AiError::invalid(
                "content",
                format!("an artifact may take at most {MAX_ARTIFACT_BYTES} bytes"),
            ));
        }
        let valid_type = new
            .artifact_type
            .starts_with(|c: char| c.is_ascii_lowercase())
            && new.artifact_type.len() <= 30
            && new
                .artifact_type
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_type {
            return Err(AiError::invalid(
                "artifact_type",
                "lower_snake_case, at most 30 characters",
            ));
        }
        let sha = base::crypto::sha256_hex(&new.content);
        let object_key = format!("{}/artifacts/{sha}", new.team_id);
        match self.blobs.create(&object_key, new.content.clone()).await {
            Ok(_) | Err(BlobError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO artifacts (id, team_id, session_id, artifact_type, content_sha256, \
                     object_key, size_bytes, mime_type, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (team_id, content_sha256) DO UPDATE SET ref_count = artifacts.ref_count + 1 \
                     RETURNING {COLUMNS}, (xmax <> 0) AS existed"
                ),
                &[
                    &Uuid::now_v7(),
                    &new.team_id,
                    &new.session_id,
                    &new.artifact_type,
                    &sha,
                    &object_key,
                    &(new.content.len() as i64),
                    &new.mime_type,
                    &new.metadata,
                ],
            )
            .await?;
        let existed: bool = row.try_get("existed")?;
        from_row(&row, existed)
    }

    /// The artifact and its bytes; another team's is not found.
    pub async fn get(&self, team_id: Uuid, id: Uuid) -> Result<(Artifact, Bytes)> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS}, object_key FROM artifacts WHERE id = $1 AND team_id = $2"
                ),
                &[&id, &team_id],
            )
            .await?
            .ok_or(AiError::NotFound("artifact"))?;
        let key: String = row.try_get("object_key")?;
        let blob = self.blobs.get(&key).await?;
        Ok((from_row(&row, false)?, blob.bytes))
    }
}

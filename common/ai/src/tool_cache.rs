//! The tool cache (`tool_cache`): a tool's result for given arguments, scoped by team and
//! connection — never shared across teams. The key is the SHA-256 of the tool's name, its
//! version, the caller's epoch (what else makes the result: the catalog scan it read, say)
//! and its canonical arguments. The payload lives in the cache bucket under the team and
//! connection (`{team}/{connection}/tools/{tool}/{key}.json`); Postgres holds the pointer,
//! the expiry and the hit count. Deleting the team or the connection deletes the rows, so no
//! process can find the payloads again; [`ToolCache::reap`] deletes expired payloads.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use deadpool_postgres::Pool;
use platform::blob::{BlobError, BlobStore};
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone)]
pub struct ToolCache {
    pool: Pool,
    blobs: Arc<dyn BlobStore>,
}

/// Where an entry belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub team_id: Uuid,
    pub connection_id: Uuid,
}

/// The key of a tool's result.
pub fn key(tool: &str, version: i32, epoch: &str, args: &serde_json::Value) -> String {
    let canonical = crate::canonical_json(args);
    let material = format!("{tool}\0{version}\0{epoch}\0{canonical}");
    base::crypto::sha256_hex(material.as_bytes())
}

/// Hit counts per tool, for observability.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolStats {
    pub tool_name: String,
    pub entries: i64,
    pub hits: i64,
    pub bytes: i64,
}

impl ToolCache {
    pub fn new(pool: Pool, blobs: Arc<dyn BlobStore>) -> Self {
        Self { pool, blobs }
    }

    /// The cached payload, if a live entry exists (counting the hit).
    pub async fn get(&self, scope: Scope, key: &str) -> Result<Option<Bytes>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE tool_cache SET hit_count = hit_count + 1, last_accessed = now() \
                 WHERE team_id = $1 AND connection_id = $2 AND cache_key = $3 AND expires_at > now() \
                 RETURNING object_key",
                &[&scope.team_id, &scope.connection_id, &key],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let object_key: String = row.try_get(0)?;
        match self.blobs.get(&object_key).await {
            Ok(blob) => Ok(Some(blob.bytes)),
            Err(BlobError::NotFound(_)) => {
                // The payload went (reaped, or a lifecycle rule): the entry goes too.
                client
                    .execute(
                        "DELETE FROM tool_cache WHERE team_id = $1 AND connection_id = $2 AND cache_key = $3",
                        &[&scope.team_id, &scope.connection_id, &key],
                    )
                    .await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a payload for `ttl`.
    pub async fn put(
        &self,
        scope: Scope,
        tool: &str,
        version: i32,
        key: &str,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<()> {
        let object_key = format!(
            "{}/{}/tools/{tool}/{key}.json",
            scope.team_id, scope.connection_id
        );
        let size = payload.len() as i64;
        self.blobs.put(&object_key, payload).await?;
        let ttl_secs = i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX);
        let client = self.pool.get().await?;
        let stored = client
            .execute(
                "INSERT INTO tool_cache (team_id, connection_id, cache_key, tool_name, version, \
                 object_key, size_bytes, ttl_seconds, expires_at) \
                 SELECT $1::uuid, $2::uuid, $3::text, $4::text, $5::int, $6::text, $7::bigint, $8::int, \
                   now() + $8::int * interval '1 second' \
                 WHERE EXISTS (SELECT 1 FROM connections WHERE id = $2 AND team_id = $1) \
                 ON CONFLICT (team_id, connection_id, cache_key) DO UPDATE SET \
                   object_key = excluded.object_key, size_bytes = excluded.size_bytes, \
                   ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at, \
                   version = excluded.version, created_at = now()",
                &[
                    &scope.team_id,
                    &scope.connection_id,
                    &key,
                    &tool,
                    &version,
                    &object_key,
                    &size,
                    &ttl_secs,
                ],
            )
            .await?;
        if stored == 0 {
            // The connection went (or is not the team's) while the tool ran: keep nothing.
            let _ = self.blobs.delete(&object_key).await;
        }
        Ok(())
    }

    /// Deletes expired entries and their payloads; returns how many.
    pub async fn reap(&self) -> Result<usize> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "DELETE FROM tool_cache WHERE expires_at <= now() RETURNING object_key",
                &[],
            )
            .await?;
        for r in &rows {
            let key: String = r.try_get(0)?;
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(key, error = %e, "an expired tool-cache payload stays in the bucket");
            }
        }
        Ok(rows.len())
    }

    /// Entries and hits per tool of a team.
    pub async fn stats(&self, team_id: Uuid) -> Result<Vec<ToolStats>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT tool_name, count(*), coalesce(sum(hit_count), 0)::bigint, \
                 coalesce(sum(size_bytes), 0)::bigint FROM tool_cache \
                 WHERE team_id = $1 AND expires_at > now() GROUP BY tool_name ORDER BY tool_name",
                &[&team_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ToolStats {
                    tool_name: r.try_get(0)?,
                    entries: r.try_get(1)?,
                    hits: r.try_get(2)?,
                    bytes: r.try_get(3)?,
                })
            })
            .collect()
    }
}

//! Prompt blocks: the files of `prompts/` (embedded in the binary at build time), one block
//! per file, each opening with a small header:
//!
//! ```text
//! ---
//! name: dashboard_yaml_schema
//! type: system            # system | user_template | context
//! cache_control: ephemeral # or none
//! position: 10            # blocks are placed by (position, name)
//! ---
//! The block's text…
//! ```
//!
//! [`seed`] (run by `bridge migrate`) writes them into `prompt_blocks`: a file whose text
//! changed makes a new version and deactivates the old one; a file that went away
//! deactivates its block; an unchanged file changes nothing. [`active`] loads the active
//! blocks in their stable order, and [`system_blocks`] turns them into the request's system
//! blocks, so that the cached prefix is the same bytes on every turn of every session.

use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use crate::{AiError, Result};

/// The files of `prompts/`, as (file name, text), sorted by name.
pub fn embedded() -> Vec<(&'static str, &'static str)> {
    let mut files: Vec<(&'static str, &'static str)> =
        include!(concat!(env!("OUT_DIR"), "/prompts.rs")).to_vec();
    files.sort_by_key(|(name, _)| *name);
    files
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub name: String,
    pub block_type: String,
    pub content: String,
    pub version: i32,
    pub cache_control: Option<String>,
    pub position: i32,
    pub sha256: String,
}

/// Parses one file's header and text.
pub fn parse(file: &str, text: &str) -> Result<Block> {
    let bad = |m: String| AiError::invalid("prompts", format!("{file}: {m}"));
    let rest = text
        .strip_prefix("---\n")
        .ok_or_else(|| bad("must open with a `---` header".into()))?;
    let (header, body) = rest
        .split_once("\n---\n")
        .ok_or_else(|| bad("the header must end with a `---` line".into()))?;
    let (mut name, mut block_type, mut cache, mut position) = (None, None, None, 100);
    for line in header.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("`{line}` is not `key: value`")))?;
        let v = v.trim();
        match k.trim() {
            "name" => name = Some(v.to_owned()),
            "type" => block_type = Some(v.to_owned()),
            "cache_control" => cache = (v != "none").then(|| v.to_owned()),
            "position" => {
                position = v
                    .parse()
                    .map_err(|_| bad(format!("position `{v}` is not a number")))?
            }
            other => return Err(bad(format!("unknown header field `{other}`"))),
        }
    }
    let name = name.ok_or_else(|| bad("the header needs a name".into()))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.len() > 80
    {
        return Err(bad(format!("name `{name}` must be lower_snake_case")));
    }
    let block_type = block_type.unwrap_or_else(|| "system".into());
    if !["system", "user_template", "context"].contains(&block_type.as_str()) {
        return Err(bad(format!(
            "type `{block_type}` is not system, user_template or context"
        )));
    }
    if let Some(c) = &cache
        && c != "ephemeral"
    {
        return Err(bad(format!("cache_control `{c}` is not ephemeral or none")));
    }
    let content = body.trim().to_owned();
    if content.is_empty() {
        return Err(bad("the block has no text".into()));
    }
    Ok(Block {
        sha256: base::crypto::sha256_hex(content.as_bytes()),
        name,
        block_type,
        content,
        version: 0,
        cache_control: cache,
        position,
    })
}

/// What [`seed`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deactivated: Vec<String>,
}

/// Brings `prompt_blocks` in line with `files` (name, text), in one transaction.
pub async fn seed(pool: &Pool, files: &[(&str, &str)]) -> Result<Seeded> {
    let mut blocks = Vec::new();
    for (file, text) in files {
        blocks.push(parse(file, text)?);
    }
    let mut names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(AiError::invalid(
            "prompts",
            format!("two files name the block `{}`", w[0]),
        ));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One seeder at a time (two cold starts migrating together).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('bridge.prompt_blocks'))",
        &[],
    )
    .await?;
    let mut done = Seeded::default();
    for b in &blocks {
        let current = tx
            .query_opt(
                "SELECT sha256, version, cache_control, block_type, position FROM prompt_blocks \
                 WHERE name = $1 AND is_active",
                &[&b.name],
            )
            .await?;
        let latest: Option<i32> = tx
            .query_one(
                "SELECT max(version) FROM prompt_blocks WHERE name = $1",
                &[&b.name],
            )
            .await?
            .try_get(0)?;
        match current {
            Some(row)
                if row.try_get::<_, &str>(0)? == b.sha256
                    && row.try_get::<_, Option<String>>(2)? == b.cache_control
                    && row.try_get::<_, &str>(3)? == b.block_type
                    && row.try_get::<_, i32>(4)? == b.position =>
            {
                done.unchanged.push(b.name.clone());
                continue;
            }
            Some(_) => {
                tx.execute(
                    "UPDATE prompt_blocks SET is_active = false, updated_at = now() \
                     WHERE name = $1 AND is_active",
                    &[&b.name],
                )
                .await?;
                done.updated.push(b.name.clone());
            }
            None => done.created.push(b.name.clone()),
        }
        let version = latest.unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO prompt_blocks (id, name, block_type, content, sha256, version, \
             cache_control, position, is_active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)",
            &[
                &Uuid::now_v7(),
                &b.name,
                &b.block_type,
                &b.content,
                &b.sha256,
                &version,
                &b.cache_control,
                &b.position,
            ],
        )
        .await?;
    }
    let gone = tx
        .query(
            "UPDATE prompt_blocks SET is_active = false, updated_at = now() \
             WHERE is_active AND NOT (name = ANY($1)) RETURNING name",
            &[&names],
        )
        .await?;
    for r in gone {
        done.deactivated.push(r.try_get(0)?);
    }
    tx.commit().await?;
    Ok(done)
}

/// The active blocks, by (position, name).
pub async fn active(pool: &Pool) -> Result<Vec<Block>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT name, block_type, content, version, cache_control, position, sha256 \
             FROM prompt_blocks WHERE is_active ORDER BY position, name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Block {
                name: r.try_get(0)?,
                block_type: r.try_get(1)?,
                content: r.try_get(2)?,
                version: r.try_get(3)?,
                cache_control: r.try_get(4)?,
                position: r.try_get(5)?,
                sha256: r.try_get(6)?,
            })
        })
        .collect()
}

/// The system and context blocks as a request's system blocks, in order, each marked for
/// caching as its header says (the adapter keeps the last ones within its breakpoint budget).
/// `user_template` blocks are templates for messages, not system text.
pub fn system_blocks(blocks: &[Block]) -> Vec<llm::SystemBlock> {
    blocks
        .iter()
        .filter(|b| b.block_type != "user_template")
        .map(|b| llm::SystemBlock {
            text: b.content.clone(),
            cache: b.cache_control.is_some(),
        })
        .collect()
}

//! Storage integrity (issue 14, spec 2.11): drift between Postgres's pointers and the
//! buckets' objects, reported, never repaired. Nothing here deletes or writes an object.
//!
//! For each bucket, the rows that point into it are read first, then the bucket is listed
//! (both bounded by [`Limits`]), and three kinds of finding come out:
//!
//! - **missing**: a row points at a key with no object;
//! - **orphaned**: an object no row points at. Every writer puts the object before its row
//!   commits, so objects changed within the grace period are not judged;
//! - **mismatched**: an object whose size, or SHA-256, is not what its row records (only
//!   where the row records one: dashboard YAML versions and artifacts have both; cached
//!   results, tool results and session chunks a size; credentials and table columns none).
//!
//! Every candidate is confirmed before it is reported: the rows are read again (a row
//! deleted, or rewritten, meanwhile clears it) and, for orphans and mismatches, the object's
//! head is read again. The report carries counts and a few example keys per kind, never an
//! object's contents. The scheduled tick runs it at most once per
//! `STORAGE_CHECK_EVERY_SECS` ([`run_if_due`], claimed through `storage_checks`); `bridge
//! check-storage` runs it by hand. The runbook is `docs/storage-integrity.md`.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use platform::blob::{BlobError, BlobMeta, BlobStore, Buckets};
use serde::Serialize;
use time::OffsetDateTime;

use crate::AppState;

/// Objects changed more recently than this are not judged (their row may not have
/// committed yet, or may be about to change with them).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// The name of the check's row in `storage_checks`.
pub const CHECK_NAME: &str = "storage";

/// Heads at once; objects read (to hash) at once.
const HEADS_AT_ONCE: usize = 16;
const GETS_AT_ONCE: usize = 4;
/// Candidates re-read from Postgres per statement.
const RECHECK_BATCH: usize = 1000;
/// Errors kept in a report; the rest are counted.
const MAX_ERRORS: usize = 20;

/// How much one run may do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Objects listed in all (shared out among the buckets).
    pub max_objects: usize,
    /// Rows read in all (shared out among the tables).
    pub max_rows: usize,
    /// Wall-clock time; past it the run stops and reports what it confirmed.
    pub time_budget: Duration,
    /// Objects changed within this long are not judged.
    pub grace: Duration,
    /// Example keys kept per finding kind.
    pub examples: usize,
    /// Read the objects whose rows record a SHA-256 and hash them.
    pub verify_checksums: bool,
}

impl Default for Limits {
    /// What `bridge check-storage` runs with.
    fn default() -> Self {
        Self {
            max_objects: 200_000,
            max_rows: 200_000,
            time_budget: Duration::from_secs(300),
            grace: DEFAULT_GRACE,
            examples: 10,
            verify_checksums: true,
        }
    }
}

impl Limits {
    /// What the scheduled tick runs with: it shares the tick's time (and, behind Cloud
    /// Scheduler, the request's deadline), so it is small; a bigger store is checked in
    /// part, and `bridge check-storage` checks it whole.
    pub fn scheduled() -> Self {
        Self {
            max_objects: 50_000,
            max_rows: 50_000,
            time_budget: Duration::from_secs(20),
            ..Self::default()
        }
    }
}

/// Bridge's buckets, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Dashboards,
    Credentials,
    Sessions,
    Cache,
}

impl Bucket {
    pub const ALL: [Bucket; 4] = [
        Bucket::Dashboards,
        Bucket::Credentials,
        Bucket::Sessions,
        Bucket::Cache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Dashboards => "dashboards",
            Bucket::Credentials => "credentials",
            Bucket::Sessions => "sessions",
            Bucket::Cache => "cache",
        }
    }

    fn store(self, buckets: &Buckets) -> &Arc<dyn BlobStore> {
        match self {
            Bucket::Dashboards => &buckets.dashboards,
            Bucket::Credentials => &buckets.credentials,
            Bucket::Sessions => &buckets.sessions,
            Bucket::Cache => &buckets.cache,
        }
    }

    /// The kinds of object it holds that rows point at.
    fn kinds(self) -> &'static [ObjectKind] {
        match self {
            Bucket::Dashboards => &[ObjectKind::DashboardYaml],
            Bucket::Credentials => &[ObjectKind::Credentials],
            Bucket::Sessions => &[ObjectKind::SessionChunk, ObjectKind::Artifact],
            Bucket::Cache => &[
                ObjectKind::QueryResult,
                ObjectKind::ToolResult,
                ObjectKind::TableColumns,
            ],
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an object is, by the rows that point at it (or, for an orphan, by its key's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `connections.credentials_key`: a sealed envelope.
    Credentials,
    /// `dashboard_versions.yaml_key` (size and SHA-256 recorded).
    DashboardYaml,
    /// `query_cache.blob_key` (size recorded).
    QueryResult,
    /// `tool_cache.object_key` (size recorded).
    ToolResult,
    /// A scanned table's cached columns: the key is made of the `tables` row (connection,
    /// table, fingerprint). A cache that may be absent, so never "missing".
    TableColumns,
    /// `session_chunks.object_key` (size recorded).
    SessionChunk,
    /// `artifacts.object_key` (size and SHA-256 recorded).
    Artifact,
    /// An object whose key has none of Bridge's shapes.
    Unrecognised,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Credentials => "credentials",
            ObjectKind::DashboardYaml => "dashboard_yaml",
            ObjectKind::QueryResult => "query_result",
            ObjectKind::ToolResult => "tool_result",
            ObjectKind::TableColumns => "table_columns",
            ObjectKind::SessionChunk => "session_chunk",
            ObjectKind::Artifact => "artifact",
            ObjectKind::Unrecognised => "unrecognised",
        }
    }

    /// The rows pointing at objects of this kind, as `key, size, sha256, row_id`.
    fn rows_sql(self) -> Option<&'static str> {
        Some(match self {
            ObjectKind::Credentials => {
                "SELECT credentials_key AS key, NULL::bigint AS size, NULL::text AS sha256, \
                 'connections id=' || id AS row_id FROM connections"
            }
            ObjectKind::DashboardYaml => {
                "SELECT yaml_key AS key, size_bytes::bigint AS size, sha256, \
                 'dashboard_versions dashboard_id=' || dashboard_id || ' version=' || version AS row_id \
                 FROM dashboard_versions"
            }
            ObjectKind::QueryResult => {
                "SELECT blob_key AS key, size_bytes::bigint AS size, NULL::text AS sha256, \
                 'query_cache cache_key=' || cache_key AS row_id FROM query_cache"
            }
            ObjectKind::ToolResult => {
                "SELECT object_key AS key, size_bytes AS size, NULL::text AS sha256, \
                 'tool_cache team_id=' || team_id || ' connection_id=' || connection_id || \
                 ' cache_key=' || cache_key AS row_id FROM tool_cache"
            }
            ObjectKind::TableColumns => {
                "SELECT 'catalog/columns/' || d.connection_id || '/' || t.id || '/' || t.fingerprint || '.json' AS key, \
                 NULL::bigint AS size, NULL::text AS sha256, 'tables id=' || t.id AS row_id \
                 FROM tables t JOIN datasets d ON d.id = t.dataset_id"
            }
            ObjectKind::SessionChunk => {
                "SELECT object_key AS key, bytes AS size, NULL::text AS sha256, \
                 'session_chunks session_id=' || session_id || ' chunk_no=' || chunk_no AS row_id \
                 FROM session_chunks"
            }
            ObjectKind::Artifact => {
                "SELECT object_key AS key, size_bytes AS size, content_sha256 AS sha256, \
                 'artifacts id=' || id AS row_id FROM artifacts"
            }
            ObjectKind::Unrecognised => return None,
        })
    }

    /// A cache filled on demand: a row without its object is not drift.
    fn optional(self) -> bool {
        self == ObjectKind::TableColumns
    }

    /// What an object no row points at looks like it is, by its key.
    fn of_key(bucket: Bucket, key: &str) -> Self {
        match bucket {
            Bucket::Dashboards if key.starts_with("dashboards/") && key.ends_with(".yaml") => {
                ObjectKind::DashboardYaml
            }
            Bucket::Credentials if key.ends_with("/credentials.json") => ObjectKind::Credentials,
            Bucket::Sessions if key.contains("/artifacts/") => ObjectKind::Artifact,
            Bucket::Sessions if key.ends_with(".jsonl") => ObjectKind::SessionChunk,
            Bucket::Cache if key.starts_with("results/") => ObjectKind::QueryResult,
            Bucket::Cache if key.starts_with("catalog/columns/") => ObjectKind::TableColumns,
            Bucket::Cache if key.contains("/tools/") => ObjectKind::ToolResult,
            _ => ObjectKind::Unrecognised,
        }
    }
}

/// What one run found.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrityReport {
    /// No finding of any kind (see `complete` and `errors` for how much was looked at).
    pub clean: bool,
    /// Every row read, every bucket listed whole, every candidate confirmed or cleared,
    /// within the limits and without errors.
    pub complete: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub grace_secs: u64,
    pub buckets: Vec<BucketReport>,
    /// Rows whose object is gone.
    pub missing: Findings,
    /// Objects no row points at.
    pub orphaned: Findings,
    /// Objects whose size or SHA-256 is not what their row records.
    pub mismatched: Findings,
    /// Why the run stopped before it was done, if it did (a limit).
    pub stopped: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketReport {
    pub bucket: Bucket,
    /// The bucket's URL (`s3://…`, `gs://…`, `file:…`).
    pub location: String,
    pub rows_read: usize,
    /// Every row pointing into the bucket was read (otherwise orphans are not judged).
    pub rows_complete: bool,
    pub objects_listed: usize,
    /// The whole bucket was listed (otherwise rows off the listing are checked one by one).
    pub listing_complete: bool,
    /// Objects changed within the grace period, not judged this run.
    pub too_recent: usize,
    /// Objects read and hashed against their row's SHA-256.
    pub checksums_verified: usize,
    /// Candidates the time budget left neither confirmed nor cleared.
    pub unconfirmed: usize,
}

/// One kind of finding: how many, and the first few.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub count: usize,
    pub examples: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub bucket: Bucket,
    pub key: String,
    pub kind: ObjectKind,
    /// The row that points at the key (`table column=value …`); none for an orphan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    /// What differs, for a mismatch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl IntegrityReport {
    /// Findings of every kind.
    pub fn findings(&self) -> usize {
        self.missing.count + self.orphaned.count + self.mismatched.count
    }
}

/// A row's pointer: what it records of its object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pointer {
    kind: ObjectKind,
    size: Option<i64>,
    sha256: Option<String>,
    row: String,
}

/// A candidate finding, before it is confirmed.
#[derive(Debug, Clone)]
struct Candidate {
    key: String,
    kind: ObjectKind,
    /// The pointer as it was judged (none for an orphan).
    pointer: Option<Pointer>,
    detail: Option<String>,
    /// Judged on size (so a fresh head may clear it), rather than on content.
    by_size: bool,
}

/// The storage check over `state`'s database and buckets.
pub async fn check_storage(state: &AppState, limits: &Limits) -> IntegrityReport {
    check(&state.edge.db, &state.buckets, limits).await
}

/// The storage check over `db` and `buckets`, within `limits`.
pub async fn check(db: &Pool, buckets: &Buckets, limits: &Limits) -> IntegrityReport {
    let mut run = Run {
        limits: limits.clone(),
        started: Instant::now(),
        rows_left: limits.max_rows,
        objects_left: limits.max_objects,
        kinds_left: Bucket::ALL.iter().map(|b| b.kinds().len()).sum::<usize>(),
        report: IntegrityReport {
            clean: true,
            complete: true,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 0,
            grace_secs: limits.grace.as_secs(),
            buckets: Vec::new(),
            missing: Findings::default(),
            orphaned: Findings::default(),
            mismatched: Findings::default(),
            stopped: None,
            errors: Vec::new(),
        },
        errors_omitted: 0,
    };
    for (i, bucket) in Bucket::ALL.iter().enumerate() {
        let store = bucket.store(buckets).clone();
        let report = run
            .bucket(db, store.as_ref(), *bucket, Bucket::ALL.len() - i)
            .await;
        run.report.buckets.push(report);
    }
    run.finish()
}

struct Run {
    limits: Limits,
    started: Instant,
    rows_left: usize,
    objects_left: usize,
    kinds_left: usize,
    report: IntegrityReport,
    errors_omitted: usize,
}

impl Run {
    fn out_of_time(&mut self) -> bool {
        let over = self.started.elapsed() >= self.limits.time_budget;
        if over && self.report.stopped.is_none() {
            self.report.stopped = Some(format!(
                "the time budget of {} s ran out",
                self.limits.time_budget.as_secs()
            ));
        }
        over
    }

    fn error(&mut self, message: String) {
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push(message);
        } else {
            self.errors_omitted += 1;
        }
    }

    fn finish(mut self) -> IntegrityReport {
        if self.errors_omitted > 0 {
            let n = self.errors_omitted;
            self.report
                .errors
                .push(format!("{n} more errors not shown"));
        }
        let r = &mut self.report;
        r.clean = r.findings() == 0;
        r.complete = r.stopped.is_none()
            && r.errors.is_empty()
            && r.buckets
                .iter()
                .all(|b| b.rows_complete && b.listing_complete && b.unconfirmed == 0);
        r.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.report
    }

    fn recent(&self, meta: &BlobMeta, now: OffsetDateTime) -> bool {
        let grace = time::Duration::try_from(self.limits.grace).unwrap_or(time::Duration::MAX);
        // A time in the future (clock skew) is recent too.
        now - meta.last_modified < grace
    }

    /// Reads the rows pointing into `bucket`, within this bucket's share of the rows left.
    async fn rows(&mut self, db: &Pool, bucket: Bucket) -> (HashMap<String, Pointer>, bool) {
        let mut pointers = HashMap::new();
        let mut complete = true;
        let client = match db.get().await {
            Ok(c) => c,
            Err(e) => {
                self.error(format!("{bucket}: connecting to Postgres: {e}"));
                self.kinds_left -= bucket.kinds().len();
                return (pointers, false);
            }
        };
        for kind in bucket.kinds() {
            let share = self.rows_left / self.kinds_left.max(1);
            self.kinds_left = self.kinds_left.saturating_sub(1);
            let Some(sql) = kind.rows_sql() else {
                continue;
            };
            if self.out_of_time() {
                complete = false;
                continue;
            }
            let limit = i64::try_from(share).unwrap_or(i64::MAX).saturating_add(1);
            let stmt = format!("SELECT key, size, sha256, row_id FROM ({sql}) r LIMIT $1");
            let rows = match client.query(&stmt, &[&limit]).await {
                Ok(rows) => rows,
                Err(e) => {
                    self.error(format!(
                        "{bucket}: reading the rows of {}: {e}",
                        kind.name()
                    ));
                    complete = false;
                    continue;
                }
            };
            if rows.len() > share {
                complete = false;
                if self.report.stopped.is_none() {
                    self.report.stopped = Some(format!(
                        "the row limit ({}) was reached",
                        self.limits.max_rows
                    ));
                }
            }
            for row in rows.iter().take(share) {
                pointers.insert(row.get(0), pointer(*kind, row));
            }
            self.rows_left -= rows.len().min(share);
        }
        (pointers, complete)
    }

    async fn bucket(
        &mut self,
        db: &Pool,
        store: &dyn BlobStore,
        bucket: Bucket,
        buckets_left: usize,
    ) -> BucketReport {
        let mut report = BucketReport {
            bucket,
            location: store.location().to_owned(),
            rows_read: 0,
            rows_complete: false,
            objects_listed: 0,
            listing_complete: false,
            too_recent: 0,
            checksums_verified: 0,
            unconfirmed: 0,
        };
        // The rows first, then the listing: an object put after the rows were read is
        // younger than the grace period, and a row deleted meanwhile is caught on recheck.
        let (pointers, rows_complete) = self.rows(db, bucket).await;
        report.rows_read = pointers.len();
        report.rows_complete = rows_complete;

        let share = self.objects_left / buckets_left.max(1);
        if self.out_of_time() {
            return report;
        }
        let listing = match store.list("", share).await {
            Ok(l) => l,
            Err(e) => {
                self.error(format!("{bucket}: listing {}: {e}", store.location()));
                return report;
            }
        };
        if listing.truncated && self.report.stopped.is_none() {
            self.report.stopped = Some(format!(
                "the object limit ({}) was reached",
                self.limits.max_objects
            ));
        }
        self.objects_left -= listing.objects.len().min(self.objects_left);
        report.objects_listed = listing.objects.len();
        report.listing_complete = !listing.truncated;
        let listed: HashMap<String, BlobMeta> = listing
            .objects
            .into_iter()
            .map(|m| (m.key.clone(), m))
            .collect();
        let now = OffsetDateTime::now_utc();

        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let mut to_hash = Vec::new();
        let mut to_head = Vec::new();
        // Rows → objects.
        for (key, p) in &pointers {
            if p.kind.optional() {
                continue;
            }
            match listed.get(key) {
                Some(meta) => self.judge(
                    key,
                    p,
                    meta,
                    now,
                    &mut report,
                    &mut mismatched,
                    &mut to_hash,
                ),
                None if report.listing_complete => missing.push(candidate(key, p, None, false)),
                None => to_head.push(key.clone()),
            }
        }
        let (heads, skipped) = self.heads(store, to_head).await;
        report.unconfirmed += skipped;
        for (key, head) in heads {
            let Some(p) = pointers.get(&key) else {
                continue;
            };
            match head {
                Ok(meta) => self.judge(
                    &key,
                    p,
                    &meta,
                    now,
                    &mut report,
                    &mut mismatched,
                    &mut to_hash,
                ),
                Err(BlobError::NotFound(_)) => missing.push(candidate(&key, p, None, false)),
                Err(e) => self.error(format!("{bucket}: {e}")),
            }
        }
        // Contents, where the row records a SHA-256.
        let mut hashed = to_hash.into_iter().peekable();
        while hashed.peek().is_some() {
            if self.out_of_time() {
                report.unconfirmed += hashed.count();
                break;
            }
            let batch: Vec<String> = hashed.by_ref().take(GETS_AT_ONCE).collect();
            let reads = futures::future::join_all(batch.iter().map(|k| store.get(k))).await;
            for (key, read) in batch.iter().zip(reads) {
                let Some(p) = pointers.get(key) else {
                    continue;
                };
                match read {
                    Ok(blob) => {
                        report.checksums_verified += 1;
                        let actual = base::crypto::sha256_hex(&blob.bytes);
                        let recorded = p.sha256.as_deref().unwrap_or_default();
                        if !actual.eq_ignore_ascii_case(recorded) {
                            let detail = format!("sha256 is {actual}, the row records {recorded}");
                            mismatched.push(candidate(key, p, Some(detail), false));
                        }
                    }
                    Err(BlobError::NotFound(_)) => missing.push(candidate(key, p, None, false)),
                    Err(e) => self.error(format!("{bucket}: {e}")),
                }
            }
        }
        // Objects → rows: only when every row was read, or an unread row would look absent.
        let mut orphaned = Vec::new();
        if report.rows_complete {
            for (key, meta) in &listed {
                if pointers.contains_key(key) {
                    continue;
                }
                if self.recent(meta, now) {
                    report.too_recent += 1;
                } else {
                    orphaned.push(Candidate {
                        key: key.clone(),
                        kind: ObjectKind::of_key(bucket, key),
                        pointer: None,
                        detail: None,
                        by_size: false,
                    });
                }
            }
        }
        drop(listed);
        self.confirm(
            db,
            store,
            bucket,
            &mut report,
            missing,
            mismatched,
            orphaned,
        )
        .await;
        report
    }

    /// Compares a listed (or headed) object with its pointer.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        key: &str,
        p: &Pointer,
        meta: &BlobMeta,
        now: OffsetDateTime,
        report: &mut BucketReport,
        mismatched: &mut Vec<Candidate>,
        to_hash: &mut Vec<String>,
    ) {
        if self.recent(meta, now) {
            report.too_recent += 1;
            return;
        }
        if let Some(size) = p.size
            && u64::try_from(size).ok() != Some(meta.size)
        {
            let detail = format!("the object is {} bytes, the row records {size}", meta.size);
            mismatched.push(candidate(key, p, Some(detail), true));
        } else if self.limits.verify_checksums && p.sha256.is_some() {
            to_hash.push(key.to_owned());
        }
    }

    /// Heads of `keys`, a few at a time, until the time budget runs out; answers the heads
    /// read and how many keys were left.
    async fn heads(
        &mut self,
        store: &dyn BlobStore,
        keys: Vec<String>,
    ) -> (Vec<(String, Result<BlobMeta, BlobError>)>, usize) {
        let mut out = Vec::with_capacity(keys.len());
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            if self.out_of_time() {
                return (out, keys.count());
            }
            let batch: Vec<String> = keys.by_ref().take(HEADS_AT_ONCE).collect();
            let heads = futures::future::join_all(batch.iter().map(|k| store.head(k))).await;
            out.extend(batch.into_iter().zip(heads));
        }
        (out, 0)
    }

    /// Reads again, for `keys`, the rows of `bucket`'s kinds.
    async fn recheck(
        &mut self,
        db: &Pool,
        bucket: Bucket,
        keys: &[String],
    ) -> Option<HashMap<String, Pointer>> {
        let mut found = HashMap::new();
        if keys.is_empty() {
            return Some(found);
        }
        let client = match db.get().await {
            Ok(c) => c,
            Err(e) => {
                self.error(format!("{bucket}: connecting to Postgres: {e}"));
                return None;
            }
        };
        for kind in bucket.kinds() {
            let Some(sql) = kind.rows_sql() else {
                continue;
            };
            let stmt =
                format!("SELECT key, size, sha256, row_id FROM ({sql}) r WHERE key = ANY($1)");
            for batch in keys.chunks(RECHECK_BATCH) {
                match client.query(&stmt, &[&batch]).await {
                    Ok(rows) => {
                        for row in &rows {
                            found.insert(row.get(0), pointer(*kind, row));
                        }
                    }
                    Err(e) => {
                        self.error(format!(
                            "{bucket}: re-reading the rows of {}: {e}",
                            kind.name()
                        ));
                        return None;
                    }
                }
            }
        }
        Some(found)
    }

    /// Confirms the candidates against Postgres again (and the objects' heads, for orphans
    /// and size mismatches), and reports those that still stand.
    #[allow(clippy::too_many_arguments)]
    async fn confirm(
        &mut self,
        db: &Pool,
        store: &dyn BlobStore,
        bucket: Bucket,
        report: &mut BucketReport,
        missing: Vec<Candidate>,
        mismatched: Vec<Candidate>,
        orphaned: Vec<Candidate>,
    ) {
        let keys: Vec<String> = missing
            .iter()
            .chain(&mismatched)
            .chain(&orphaned)
            .map(|c| c.key.clone())
            .collect();
        let Some(rows) = self.recheck(db, bucket, &keys).await else {
            report.unconfirmed += keys.len();
            return;
        };
        // Missing: the row is still there (and its object was absent after it was read).
        for c in missing {
            if rows.get(&c.key) == c.pointer.as_ref() {
                self.found(bucket, c, Which::Missing);
            }
        }
        // Orphaned and size-mismatched: the object is as it was judged, and so is the row.
        let orphaned: Vec<Candidate> = orphaned
            .into_iter()
            .filter(|c| !rows.contains_key(&c.key))
            .collect();
        let (by_size, by_content): (Vec<Candidate>, Vec<Candidate>) = mismatched
            .into_iter()
            .filter(|c| rows.get(&c.key) == c.pointer.as_ref())
            .partition(|c| c.by_size);
        for c in by_content {
            self.found(bucket, c, Which::Mismatched);
        }
        let mut pending: HashMap<String, (Candidate, Which)> = HashMap::new();
        for c in orphaned {
            pending.insert(c.key.clone(), (c, Which::Orphaned));
        }
        for c in by_size {
            pending.insert(c.key.clone(), (c, Which::Mismatched));
        }
        let (heads, skipped) = self.heads(store, pending.keys().cloned().collect()).await;
        report.unconfirmed += skipped;
        let now = OffsetDateTime::now_utc();
        for (key, head) in heads {
            let Some((c, which)) = pending.remove(&key) else {
                continue;
            };
            match head {
                Ok(meta) if self.recent(&meta, now) => report.too_recent += 1,
                Ok(meta) => {
                    let still = match (which, c.pointer.as_ref().and_then(|p| p.size)) {
                        (Which::Mismatched, Some(size)) => {
                            u64::try_from(size).ok() != Some(meta.size)
                        }
                        _ => true,
                    };
                    if still {
                        self.found(bucket, c, which);
                    }
                }
                // Deleted meanwhile: no longer an orphan, nor a mismatch.
                Err(BlobError::NotFound(_)) => {}
                Err(e) => {
                    report.unconfirmed += 1;
                    self.error(format!("{bucket}: {e}"));
                }
            }
        }
    }

    fn found(&mut self, bucket: Bucket, c: Candidate, which: Which) {
        let examples = self.limits.examples;
        let findings = match which {
            Which::Missing => &mut self.report.missing,
            Which::Orphaned => &mut self.report.orphaned,
            Which::Mismatched => &mut self.report.mismatched,
        };
        findings.count += 1;
        if findings.examples.len() < examples {
            findings.examples.push(Finding {
                bucket,
                key: c.key,
                kind: c.kind,
                row: c.pointer.map(|p| p.row),
                detail: c.detail,
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Missing,
    Orphaned,
    Mismatched,
}

fn pointer(kind: ObjectKind, row: &tokio_postgres::Row) -> Pointer {
    Pointer {
        kind,
        size: row.get(1),
        sha256: row.get(2),
        row: row.get(3),
    }
}

fn candidate(key: &str, p: &Pointer, detail: Option<String>, by_size: bool) -> Candidate {
    Candidate {
        key: key.to_owned(),
        kind: p.kind,
        pointer: Some(p.clone()),
        detail,
        by_size,
    }
}

impl fmt::Display for IntegrityReport {
    /// A human summary: the counts, each bucket, the examples, what limited the run.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Storage check: {} missing, {} orphaned, {} mismatched ({}, {} ms)",
            self.missing.count,
            self.orphaned.count,
            self.mismatched.count,
            if self.complete { "complete" } else { "partial" },
            self.duration_ms
        )?;
        for b in &self.buckets {
            writeln!(
                f,
                "  {} ({}): {} rows{}, {} objects{}, {} too recent to judge (grace {} s), {} checksums verified{}",
                b.bucket,
                b.location,
                b.rows_read,
                if b.rows_complete { "" } else { " (not all)" },
                b.objects_listed,
                if b.listing_complete { "" } else { " (not all)" },
                b.too_recent,
                self.grace_secs,
                b.checksums_verified,
                if b.unconfirmed > 0 {
                    format!(", {} unconfirmed", b.unconfirmed)
                } else {
                    String::new()
                }
            )?;
        }
        for (what, findings) in [
            ("missing (a row points at no object)", &self.missing),
            ("orphaned (no row points at the object)", &self.orphaned),
            (
                "mismatched (the object is not what its row records)",
                &self.mismatched,
            ),
        ] {
            if findings.count == 0 {
                continue;
            }
            writeln!(f, "{what}: {}", findings.count)?;
            for e in &findings.examples {
                write!(f, "  {} {} [{}", e.bucket, e.key, e.kind.name())?;
                if let Some(row) = &e.row {
                    write!(f, "; {row}")?;
                }
                write!(f, "]")?;
                if let Some(detail) = &e.detail {
                    write!(f, ": {detail}")?;
                }
                writeln!(f)?;
            }
            if findings.count > findings.examples.len() {
                writeln!(
                    f,
                    "  … and {} more",
                    findings.count - findings.examples.len()
                )?;
            }
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "Stopped early: {why}")?;
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        write!(
            f,
            "Nothing was deleted (docs/storage-integrity.md says what to do)."
        )
    }
}

/// The scheduled run: if `STORAGE_CHECK_EVERY_SECS` is set and the last run started at
/// least that long ago, claims the run (one statement, so that concurrent ticks start one),
/// runs the check with [`Limits::scheduled`], logs what it found and records it in
/// `storage_checks`. When it is not due this costs one row read. Never fails the tick.
pub async fn run_if_due(state: &AppState) -> Option<IntegrityReport> {
    let every = state.edge.settings.storage_check_every?;
    match claim(&state.edge.db, every).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "claiming the storage integrity check");
            return None;
        }
    }
    let report = check_storage(state, &Limits::scheduled()).await;
    log(&report);
    if let Err(e) = record(&state.edge.db, &report).await {
        tracing::warn!(error = %format!("{e:#}"), "recording the storage integrity check");
    }
    Some(report)
}

/// Whether this tick runs the check: it is due, and no concurrent tick claimed it first.
async fn claim(db: &Pool, every: Duration) -> anyhow::Result<bool> {
    let client = db.get().await?;
    let secs = every.as_secs_f64();
    let due = client
        .query_opt(
            "SELECT started_at <= now() - make_interval(secs => $1) FROM storage_checks WHERE name = $2",
            &[&secs, &CHECK_NAME],
        )
        .await?;
    if let Some(row) = due
        && !row.get::<_, bool>(0)
    {
        return Ok(false);
    }
    let claimed = client
        .query_opt(
            "INSERT INTO storage_checks (name, started_at) VALUES ($2, now()) \
             ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at \
             WHERE storage_checks.started_at <= now() - make_interval(secs => $1) \
             RETURNING 1",
            &[&secs, &CHECK_NAME],
        )
        .await?;
    Ok(claimed.is_some())
}

async fn record(db: &Pool, report: &IntegrityReport) -> anyhow::Result<()> {
    let client = db.get().await?;
    let summary = serde_json::to_value(report)?;
    client
        .execute(
            "UPDATE storage_checks SET finished_at = now(), last_report = $2 WHERE name = $1",
            &[&CHECK_NAME, &summary],
        )
        .await?;
    Ok(())
}

/// Findings as warnings (counts, then each example's key); a clean run as one info line.
fn log(report: &IntegrityReport) {
    if report.clean {
        tracing::info!(
            complete = report.complete,
            duration_ms = report.duration_ms,
            "storage integrity: Postgres and the buckets agree"
        );
    } else {
        tracing::warn!(
            missing = report.missing.count,
            orphaned = report.orphaned.count,
            mismatched = report.mismatched.count,
            complete = report.complete,
            "storage integrity: drift between Postgres and the buckets (nothing was deleted; see docs/storage-integrity.md)"
        );
        for (finding, findings) in [
            ("missing", &report.missing),
            ("orphaned", &report.orphaned),
            ("mismatched", &report.mismatched),
        ] {
            for e in &findings.examples {
                tracing::warn!(
                    finding,
                    bucket = e.bucket.name(),
                    key = %e.key,
                    kind = e.kind.name(),
                    row = e.row.as_deref(),
                    detail = e.detail.as_deref(),
                    "storage integrity finding"
                );
            }
        }
    }
    if let Some(why) = &report.stopped {
        tracing::warn!(reason = %why, "storage integrity: the check stopped early");
    }
    for e in &report.errors {
        tracing::warn!(error = %e, "storage integrity check");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_named_by_the_shape_of_their_key() {
        let id = "0190a0b0-0000-7000-8000-000000000001";
        for (bucket, key, kind) in [
            (
                Bucket::Dashboards,
                format!("dashboards/{id}/v3.yaml"),
                ObjectKind::DashboardYaml,
            ),
            (
                Bucket::Credentials,
                format!("teams/{id}/connections/{id}/credentials.json"),
                ObjectKind::Credentials,
            ),
            (
                Bucket::Sessions,
                format!("{id}/messages-0001.jsonl"),
                ObjectKind::SessionChunk,
            ),
            (
                Bucket::Sessions,
                format!("{id}/artifacts/{}", "a".repeat(64)),
                ObjectKind::Artifact,
            ),
            (
                Bucket::Cache,
                format!("results/{id}/v1/q/abc.json"),
                ObjectKind::QueryResult,
            ),
            (
                Bucket::Cache,
                format!("catalog/columns/{id}/{id}/f.json"),
                ObjectKind::TableColumns,
            ),
            (
                Bucket::Cache,
                format!("{id}/{id}/tools/list_tables/{}.json", "b".repeat(64)),
                ObjectKind::ToolResult,
            ),
            (
                Bucket::Cache,
                "stray.txt".to_owned(),
                ObjectKind::Unrecognised,
            ),
        ] {
            assert_eq!(ObjectKind::of_key(bucket, &key), kind, "{key}");
        }
    }

    #[test]
    fn every_kind_a_bucket_holds_has_its_rows() {
        for bucket in Bucket::ALL {
            for kind in bucket.kinds() {
                assert!(kind.rows_sql().is_some(), "{kind:?}");
            }
        }
    }

    #[test]
    fn the_scheduled_limits_are_smaller_than_the_manual_ones() {
        let (s, d) = (Limits::scheduled(), Limits::default());
        assert!(s.time_budget < d.time_budget && s.max_objects <= d.max_objects);
        assert_eq!(s.grace, DEFAULT_GRACE);
    }
}

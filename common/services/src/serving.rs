//! Serving a dashboard's data, fast and cheaply.
//!
//! The current version's YAML is compiled once per process into a plan of self-contained
//! queries. Each query's result is keyed `dash:{slug}:q:{hash}:v:{version}`, the hash
//! covering everything that makes the result: the dashboard's own id (a slug can be
//! deleted and taken again by another team; an id is never reused), its team and
//! connection, the compiled SQL, the bound parameter values and the limits that shape the
//! rows. So no entry is ever served to another dashboard, and an entry of a deleted
//! dashboard is unreachable in every process (a request resolves the slug to the live
//! dashboard first); the deleting process also drops its entries at once. Keys are looked
//! up in three places:
//! an in-process cache (L1, each entry expiring with its TTL), then the cache bucket through
//! its Postgres index (L2, with expiry and hit counts), then the warehouse. Concurrent misses
//! on one key run the warehouse query once. Queries run in parallel, bounded; one failing
//! yields an error for that query only. Results are bounded in bytes: a query whose result
//! is over the cap answers `result_too_large`, and the whole response stays under a budget
//! (a buffered Lambda response can carry 6 MB), queries past it answering
//! `response_too_large`. The in-process caches are bounded in bytes too; among them, the
//! data responses' bodies as sent (rendered and compressed once, see [`BodyKey`]).
//! Precompute walks the same path.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use dashboard::{
    compile::{CompiledQuery, compile},
    spec::DashboardSpec,
    validate,
};

use crate::error::{ServiceError, ServiceResult};
use edge::{ApiError, ApiResult};

use crate::{
    connections, connections::Connections, dashboards, dashboards::Dashboard,
    dashboards::Dashboards,
};
use platform::blob::BlobStore;

use platform::{
    warehouse::Dialect, warehouse::Limits, warehouse::Param, warehouse::ParamValue,
    warehouse::WarehouseError,
};

/// Queries of one dashboard run at once.
pub const QUERY_PARALLELISM: usize = 8;
/// Dashboards warmed at once by the scheduler.
pub const WARM_PARALLELISM: usize = 4;

/// A compiled version of a dashboard.
pub struct Plan {
    pub dashboard_id: Uuid,
    /// Bytes of the YAML it was compiled from (its weight in the plan cache).
    pub yaml_bytes: usize,
    pub version: i32,
    pub dialect: Dialect,
    pub spec: DashboardSpec,
    pub queries: Vec<CompiledQuery>,
    /// Per query, a digest of what makes its results and does not change with a request:
    /// the dashboard's id, team and connection, the version, the query's id and compiled
    /// SQL. A request's key adds the bound values and the limits ([`cache_key`]).
    identities: Vec<[u8; 32]>,
}

/// The request-independent part of a query's cache identity.
fn identity(dashboard: &Dashboard, query: &CompiledQuery) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"bridge-result-v1\0");
    ctx.update(dashboard.id.as_bytes());
    ctx.update(dashboard.team_id.as_bytes());
    ctx.update(dashboard.connection_id.as_bytes());
    ctx.update(&dashboard.version.to_le_bytes());
    for part in [&query.id, &query.sql, &query.hash] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One query's result, as cached.
pub struct CachedResult {
    /// The dashboard it belongs to: deleting the dashboard drops it.
    pub dashboard_id: Uuid,
    /// `"columns":[…],"rows":[…]`: the object's members, ready to splice into a response.
    pub body: Bytes,
    pub row_count: usize,
    pub truncated: bool,
    pub bytes_scanned: Option<u64>,
    pub duration_ms: u64,
    pub cached_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

struct UntilExpiry;

impl moka::Expiry<String, Arc<CachedResult>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Arc<CachedResult>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        let left = v.expires_at - OffsetDateTime::now_utc();
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }
}

pub use crate::ready::{Access, EncodedBody, Ready, ReadyKey};

/// The serving caches, one per process: who may read which dashboard (see
/// [`crate::ready`]), compiled plans, results (L1), responses ready to send, and hit counts
/// waiting to be written.
pub struct Caches {
    access: moka::future::Cache<(Uuid, String), Arc<Access>>,
    epoch: edge::tenancy::AccessEpoch,
    plans: moka::future::Cache<(Uuid, i32), Arc<Plan>>,
    results: moka::future::Cache<String, Arc<CachedResult>>,
    ready: moka::future::Cache<ReadyKey, Arc<Ready>>,
    hits: Mutex<HashMap<String, i64>>,
    /// Ready responses hit since the last write of the counts (each counts its own).
    dirty: Mutex<Vec<Arc<Ready>>>,
    started: Instant,
    /// When the counts were last written: milliseconds after `started`.
    flushed_at: std::sync::atomic::AtomicU64,
}

/// The plan cache's budget, in bytes of YAML (plans are a few times their YAML).
const PLAN_CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl Caches {
    /// Caches whose results take at most `result_bytes` bytes in all, and ready responses
    /// half as many (a body is its results spliced together, and a compressed one a
    /// fraction of that); access answers made before `epoch` moves are not trusted.
    pub fn new(result_bytes: u64, epoch: edge::tenancy::AccessEpoch) -> Self {
        Self {
            access: moka::future::Cache::builder()
                .max_capacity(crate::ready::ACCESS_ENTRIES)
                .time_to_live(crate::ready::ACCESS_STALENESS)
                .build(),
            epoch,
            plans: moka::future::Cache::builder()
                .weigher(|_, p: &Arc<Plan>| {
                    u32::try_from(p.yaml_bytes.saturating_mul(4)).unwrap_or(u32::MAX)
                })
                .max_capacity(PLAN_CACHE_BYTES)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            results: moka::future::Cache::builder()
                .weigher(|k: &String, v: &Arc<CachedResult>| {
                    u32::try_from(v.body.len() + k.len() + 128).unwrap_or(u32::MAX)
                })
                .max_capacity(result_bytes)
                .expire_after(UntilExpiry)
                .build(),
            ready: moka::future::Cache::builder()
                .weigher(|k: &ReadyKey, v: &Arc<Ready>| {
                    let keys: usize = v.result_keys.iter().map(|k| k.len() + 24).sum();
                    let size = v.body.bytes.len() + v.etag.len() + keys + k.weight();
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .max_capacity(result_bytes / 2)
                .expire_after(crate::ready::UntilStale)
                .build(),
            hits: Mutex::new(HashMap::new()),
            dirty: Mutex::new(Vec::new()),
            started: Instant::now(),
            flushed_at: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Hit counts reach Postgres in batches, not one write per request.
const HIT_FLUSH_EVERY: Duration = Duration::from_secs(5);

impl Caches {
    /// Drops what this process holds in memory (plans, results and bodies); the cache
    /// bucket still has the results.
    pub fn forget_in_memory(&self) {
        self.access.invalidate_all();
        self.plans.invalidate_all();
        self.results.invalidate_all();
        self.ready.invalidate_all();
    }

    /// Drops a deleted dashboard's plans, results and responses from this process's memory.
    pub async fn forget_dashboard(&self, dashboard_id: Uuid) {
        crate::caches::invalidate_where(&self.plans, |(id, _), _| *id == dashboard_id).await;
        crate::caches::invalidate_where(&self.results, |_, r| r.dashboard_id == dashboard_id).await;
        self.forget_ready(dashboard_id).await;
    }

    /// Drops the dashboard's ready responses (its results were just replaced).
    pub async fn forget_ready(&self, dashboard_id: Uuid) {
        crate::caches::invalidate_where(&self.ready, |k, _| k.dashboard_id() == dashboard_id).await;
    }

    /// This process changed who may read what: no access answer made before is trusted.
    pub fn access_changed(&self) {
        self.epoch.changed();
    }

    /// The response ready at `key`, if one is.
    pub async fn ready(&self, key: &ReadyKey) -> Option<Arc<Ready>> {
        self.ready.get(key).await
    }

    /// The response ready at `key` with ETag `etag`, else `make`'s, stored for its
    /// `fresh_for`; concurrent misses on one key make it once. The caller asks only for
    /// responses worth keeping (made of results all from the cache, fresh for some time),
    /// once the caller was allowed to read the dashboard at the key's version.
    pub async fn ready_or(
        &self,
        key: ReadyKey,
        etag: &str,
        make: impl Future<Output = Ready> + Send,
    ) -> Arc<Ready> {
        let made = self
            .ready
            .entry(key)
            .and_compute_with(|entry| async move {
                match entry {
                    Some(e) if e.value().etag == etag => moka::ops::compute::Op::Nop,
                    // Absent, or made of other results than the ones served now (replaced
                    // since by a forced precompute): these replace it.
                    _ => moka::ops::compute::Op::Put(Arc::new(make.await)),
                }
            })
            .await;
        match made.into_entry() {
            Some(entry) => entry.into_value(),
            None => unreachable!("a compute that puts or keeps leaves an entry"),
        }
    }

    /// Bytes the ready-response cache holds now (after pending evictions), and its entries.
    pub async fn body_bytes(&self) -> (u64, u64) {
        self.ready.run_pending_tasks().await;
        (self.ready.weighted_size(), self.ready.entry_count())
    }

    /// Bytes the in-process result cache holds now (after pending evictions).
    pub async fn result_bytes(&self) -> u64 {
        self.results.run_pending_tasks().await;
        self.results.weighted_size()
    }
}

/// The serving service: a dashboard's plan, its queries answered through the caches and
/// the warehouse, precompute and the scheduled warm-up. Built from the pool, the
/// connections and dashboards services, the cache bucket and the serving caches; cheap to
/// clone.
#[derive(Clone)]
pub struct Serving(Arc<ServingInner>);

struct ServingInner {
    db: deadpool_postgres::Pool,
    connections: Connections,
    dashboards: Dashboards,
    cache: Arc<dyn BlobStore>,
    caches: Arc<Caches>,
}

impl Serving {
    pub fn new(
        db: deadpool_postgres::Pool,
        connections: Connections,
        dashboards: Dashboards,
        cache: Arc<dyn BlobStore>,
        caches: Arc<Caches>,
    ) -> Self {
        Self(Arc::new(ServingInner {
            db,
            connections,
            dashboards,
            cache,
            caches,
        }))
    }

    /// The dashboard at `slug` and the caller's role in its team (see
    /// [`Dashboards::get`]).
    pub async fn dashboard(
        &self,
        slug: &str,
        user: &edge::CurrentUser,
        needed: base::domain::Role,
    ) -> ApiResult<(Dashboard, base::domain::Role)> {
        self.0.dashboards.get(slug, user, needed).await
    }

    /// The caches this service fills (shared with the dashboards service, which empties
    /// them of what changes).
    pub fn caches(&self) -> &Caches {
        &self.0.caches
    }

    /// Who `user` is to the dashboard at `slug`: the dashboard and their role (see
    /// [`crate::ready`]: trusted for [`crate::ready::ACCESS_STALENESS`], or until this
    /// process changes who may read what). 404 for non-members, 403 below `needed`.
    pub async fn access(
        &self,
        slug: &str,
        user: &edge::CurrentUser,
        needed: base::domain::Role,
    ) -> ApiResult<Arc<Access>> {
        let caches = &self.0.caches;
        let epoch = caches.epoch.now();
        let key = (user.id, slug.to_owned());
        let access = match caches.access.get(&key).await {
            Some(a) if a.epoch == epoch => a,
            _ => {
                let (dashboard, role) = self
                    .0
                    .dashboards
                    .get(slug, user, base::domain::Role::Viewer)
                    .await?;
                let access = Arc::new(Access {
                    dashboard: Arc::new(dashboard),
                    role,
                    epoch,
                });
                caches.access.insert(key, access.clone()).await;
                access
            }
        };
        edge::tenancy::require(Some(access.role), needed, dashboards::dashboard_not_found)?;
        Ok(access)
    }

    /// Counts a hit on each of a ready response's results: an atomic add on the response,
    /// whose count joins the batch when it is written.
    pub fn count_ready_hits(&self, ready: &Arc<Ready>) {
        if ready.hits.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut dirty = self
                .0
                .caches
                .dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            dirty.push(ready.clone());
        }
        self.flush_hits_when_due();
    }

    fn count_hit(&self, key: &str) {
        {
            let mut hits = self.0.caches.hits.lock().unwrap_or_else(|p| p.into_inner());
            match hits.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    hits.insert(key.to_owned(), 1);
                }
            }
        }
        self.flush_hits_when_due();
    }

    /// Every [`HIT_FLUSH_EVERY`], one caller writes the counts gathered since.
    fn flush_hits_when_due(&self) {
        let caches = &self.0.caches;
        let now = u64::try_from(caches.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = caches.flushed_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < HIT_FLUSH_EVERY.as_millis() as u64
            || caches
                .flushed_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let dirty = std::mem::take(&mut *caches.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let batch = {
            let mut hits = caches.hits.lock().unwrap_or_else(|p| p.into_inner());
            for ready in dirty {
                let n = ready.hits.swap(0, Ordering::Relaxed);
                for key in ready.result_keys.iter() {
                    *hits.entry(key.clone()).or_default() += n;
                }
            }
            std::mem::take(&mut *hits)
        };
        if batch.is_empty() {
            return;
        }
        let db = self.0.db.clone();
        tokio::spawn(async move {
            let (keys, counts): (Vec<String>, Vec<i64>) = batch.into_iter().unzip();
            let result = async {
                let client = db.get().await?;
                client
                    .execute(
                        "UPDATE query_cache q SET hits = q.hits + u.n, last_hit_at = now() \
                         FROM unnest($1::text[], $2::int8[]) AS u(key, n) WHERE q.cache_key = u.key",
                        &[&keys, &counts],
                    )
                    .await?;
                Ok::<_, ApiError>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "flushing cache hit counts");
            }
        });
    }
}

impl Serving {
    /// The plan of the dashboard's current version, compiled once per process.
    pub async fn plan(&self, dashboard: &Dashboard) -> ApiResult<Arc<Plan>> {
        self.0
            .caches
            .plans
            .try_get_with((dashboard.id, dashboard.version), async {
                let (_, yaml) = self.0.dashboards.yaml(dashboard, None).await?;
                let text = std::str::from_utf8(&yaml).map_err(ApiError::internal)?;
                let parsed = validate::parse(text);
                let spec = parsed.spec.ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!(
                        "stored YAML of {} v{} no longer parses",
                        dashboard.slug,
                        dashboard.version
                    ))
                })?;
                let client = self.0.db.get().await?;
                let dialect = connections::dialect_of(&client, dashboard.connection_id)
                    .await?
                    .ok_or_else(connections::connection_not_found)?;
                let (queries, errors) = tracing::info_span!(
                    "dashboard.compile",
                    dashboard_slug = %dashboard.slug,
                    version = dashboard.version,
                )
                .in_scope(|| compile(&spec, dialect));
                if !errors.is_empty() || !parsed.errors.is_empty() {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "stored YAML of {} v{} is no longer valid: {errors:?} {:?}",
                        dashboard.slug,
                        dashboard.version,
                        parsed.errors
                    )));
                }
                let identities = queries.iter().map(|q| identity(dashboard, q)).collect();
                Ok::<_, ApiError>(Arc::new(Plan {
                    dashboard_id: dashboard.id,
                    yaml_bytes: yaml.len(),
                    version: dashboard.version,
                    dialect,
                    spec,
                    queries,
                    identities,
                }))
            })
            .await
            .map_err(|e: Arc<ApiError>| {
                Arc::try_unwrap(e)
                    .unwrap_or_else(|e| ApiError::new(e.status, e.code, e.detail.clone()))
            })
    }
}

/// Parameter values from a query string, typed by the dashboard's `parameters`, defaults
/// applied. Unknown names and ill-typed values are refused, naming the parameter.
pub fn bind_parameters(
    spec: &DashboardSpec,
    raw: &[(String, String)],
) -> ApiResult<HashMap<String, ParamValue>> {
    let mut values = HashMap::new();
    for (name, value) in raw {
        let Some(p) = spec.parameters.iter().find(|p| &p.id == name) else {
            let known: Vec<&str> = spec.parameters.iter().map(|p| p.id.as_str()).collect();
            return Err(ApiError::invalid_field(
                name.clone(),
                if known.is_empty() {
                    "is not a parameter of this dashboard (it has none)".to_owned()
                } else {
                    format!(
                        "is not a parameter of this dashboard (it has {})",
                        known.join(", ")
                    )
                },
            ));
        };
        if values.contains_key(name) {
            return Err(ApiError::invalid_field(
                name.clone(),
                "is given more than once",
            ));
        }
        let v = p
            .r#type
            .parse_value(value)
            .map_err(|m| ApiError::invalid_field(name.clone(), m))?;
        if let Some(allowed) = &p.allowed {
            let ok = allowed
                .iter()
                .any(|a| p.r#type.from_json(a).ok().as_ref() == Some(&v));
            if !ok {
                // Listed as the YAML writes them, at most 20 (the YAML bounds them anyway).
                let shown: Vec<String> = allowed
                    .iter()
                    .take(20)
                    .map(|a| match a {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                let more = if allowed.len() > shown.len() {
                    ", …"
                } else {
                    ""
                };
                return Err(ApiError::invalid_field(
                    name.clone(),
                    format!("must be one of: {}{more}", shown.join(", ")),
                ));
            }
        }
        values.insert(name.clone(), v);
    }
    for p in &spec.parameters {
        if values.contains_key(&p.id) {
            continue;
        }
        match &p.default {
            Some(d) => {
                let v = p
                    .r#type
                    .from_json(d)
                    .map_err(|m| ApiError::internal(anyhow::anyhow!("default of {}: {m}", p.id)))?;
                values.insert(p.id.clone(), v);
            }
            None if p.required => {
                return Err(ApiError::invalid_field(
                    p.id.clone(),
                    "is required by this dashboard",
                ));
            }
            None => {}
        }
    }
    Ok(values)
}

/// How one query was answered.
pub enum Outcome {
    Served {
        result: Arc<CachedResult>,
        cache_hit: bool,
        /// The result's cache key (it covers everything that makes the result).
        key: String,
    },
    Failed(Arc<ServiceError>),
}

/// How a query's result was made.
#[derive(Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub row_count: usize,
    /// Rows past the row cap were dropped.
    pub truncated: bool,
    /// What the warehouse read (billed, on BigQuery), when it says.
    pub bytes_scanned: Option<u64>,
    /// How long the warehouse took, when the result was made.
    pub duration_ms: u64,
    /// Served from Bridge's cache (no warehouse query ran for this request).
    pub cache_hit: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub cached_at: OffsetDateTime,
}

// What the data routes answer, for the OpenAPI document; the bytes are written by
// `Outcome::write_json` and `render_dashboard` (a test checks they agree).

/// One query's data: its columns, its rows (values in column order; decimals as strings
/// holding every digit), and how it was made.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryData {
    pub columns: Vec<platform::warehouse::Column>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub metadata: Metadata,
}

/// Why one query has no data (the others still answer).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryFailed {
    pub error: QueryError,
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryError {
    /// A stable code, e.g. `result_too_large`, `response_too_large`, `parameter_required`.
    pub code: String,
    pub message: String,
}

/// A query's answer inside a dashboard's data.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
pub enum QueryAnswer {
    Data(QueryData),
    Failed(QueryFailed),
}

/// Every query of a dashboard's current version, by query id.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardData {
    pub dashboard_slug: String,
    pub version: i32,
    pub queries: HashMap<String, QueryAnswer>,
}

impl Outcome {
    /// The query's object in a response.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Outcome::Served {
                result, cache_hit, ..
            } => {
                out.push(b'{');
                out.extend_from_slice(&result.body);
                out.extend_from_slice(b",\"metadata\":");
                let meta = Metadata {
                    row_count: result.row_count,
                    truncated: result.truncated,
                    bytes_scanned: result.bytes_scanned,
                    duration_ms: result.duration_ms,
                    cache_hit: *cache_hit,
                    cached_at: result.cached_at,
                };
                let _ = serde_json::to_writer(&mut *out, &meta);
                out.push(b'}');
            }
            Outcome::Failed(error) => {
                let _ = serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({
                        "error": { "code": error.code(), "message": error.public_message() }
                    }),
                );
            }
        }
    }
}

/// What a data response's HTTP caching headers say: its `ETag` (a digest of the results'
/// identities: their cache keys, which cover everything that makes them, and when each was
/// made; or a failure's code) and how long it stays fresh (the soonest expiry among its
/// results; 0 when a query failed, so that a retry is not kept from the warehouse).
pub struct Validators {
    pub etag: String,
    pub max_age_secs: u64,
}

pub fn validators(dashboard: &Dashboard, outcomes: &[(String, Outcome)]) -> Validators {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(dashboard.id.as_bytes());
    ctx.update(&dashboard.version.to_le_bytes());
    let now = OffsetDateTime::now_utc();
    let mut max_age = u64::MAX;
    for (id, outcome) in outcomes {
        ctx.update(&(id.len() as u64).to_le_bytes());
        ctx.update(id.as_bytes());
        match outcome {
            Outcome::Served { result, key, .. } => {
                ctx.update(b"s");
                ctx.update(&(key.len() as u64).to_le_bytes());
                ctx.update(key.as_bytes());
                ctx.update(&result.cached_at.unix_timestamp_nanos().to_le_bytes());
                let left = (result.expires_at - now).whole_seconds();
                max_age = max_age.min(u64::try_from(left).unwrap_or(0));
            }
            Outcome::Failed(error) => {
                ctx.update(b"f");
                ctx.update(error.code().as_bytes());
                max_age = 0;
            }
        }
    }
    Validators {
        etag: base::crypto::hex(&ctx.finish().as_ref()[..16]),
        max_age_secs: if max_age == u64::MAX { 0 } else { max_age },
    }
}

/// The key of one query's result: `dash:{slug}:q:{hash}:v:{version}`, where the hash covers
/// everything that makes the result (see the module's documentation): the plan's identity of
/// the query, the bound values (names, types and values) and the limits. The slug and version
/// are there for people reading the index; the hash alone tells entries apart.
fn cache_key(
    dashboard: &Dashboard,
    identity: &[u8; 32],
    params: &[Param],
    limits: &Limits,
) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(identity);
    ctx.update(&(limits.max_rows as u64).to_le_bytes());
    ctx.update(&(limits.max_result_bytes as u64).to_le_bytes());
    for p in params {
        ctx.update(&(p.name.len() as u64).to_le_bytes());
        ctx.update(p.name.as_bytes());
        let value = match &p.value {
            ParamValue::Bool(b) => vec![b'b', u8::from(*b)],
            ParamValue::Int(i) => [&[b'i'][..], &i.to_le_bytes()].concat(),
            ParamValue::Float(f) => [&[b'f'][..], &f.to_bits().to_le_bytes()].concat(),
            ParamValue::String(s) => {
                [&[b's'][..], &(s.len() as u64).to_le_bytes(), s.as_bytes()].concat()
            }
            ParamValue::Date(d) => [&[b'd'][..], &d.to_julian_day().to_le_bytes()].concat(),
            ParamValue::Timestamp(t) => {
                [&[b't'][..], &t.unix_timestamp_nanos().to_le_bytes()].concat()
            }
        };
        ctx.update(&value);
    }
    let digest = ctx.finish();
    format!(
        "dash:{}:q:{}:v:{}",
        dashboard.slug,
        base::crypto::hex(&digest.as_ref()[..16]),
        dashboard.version
    )
}

fn blob_key(dashboard_id: Uuid, version: i32, query_id: &str, key: &str) -> String {
    let hash = key
        .split(":q:")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or("x");
    format!("results/{dashboard_id}/v{version}/{query_id}/{hash}.json")
}

impl Serving {
    /// The limits a dashboard's queries run under: the settings', narrowed by the team's.
    pub fn limits(&self, dashboard: &Dashboard) -> Limits {
        let w = self.0.connections.settings();
        Limits {
            max_bytes: dashboard.max_bytes_billed,
            timeout: w.query_timeout,
            max_rows: w.max_rows,
            max_result_bytes: dashboard
                .max_result_bytes
                .map_or(w.max_result_bytes, |team| team.min(w.max_result_bytes)),
        }
    }
}

/// One query to answer from L2 or the warehouse: its bound values, limits and cache key;
/// `fresh` skips L2 (a forced precompute).
struct Ask<'a> {
    query: &'a CompiledQuery,
    params: &'a [Param],
    limits: &'a Limits,
    key: &'a str,
    fresh: bool,
}

/// The result stored in the cache bucket: the body and what metadata needs.
#[derive(Serialize, serde::Deserialize)]
struct StoredResult {
    body: String,
    row_count: usize,
    truncated: bool,
    bytes_scanned: Option<u64>,
    duration_ms: u64,
    #[serde(with = "time::serde::rfc3339")]
    cached_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl Serving {
    /// L2, then the warehouse. Returns the result and whether the warehouse ran.
    async fn load_or_run(
        &self,
        dashboard: &Dashboard,
        plan: &Plan,
        ask: Ask<'_>,
    ) -> ServiceResult<(Arc<CachedResult>, bool)> {
        let Ask {
            query,
            params,
            limits,
            key,
            fresh,
        } = ask;
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, key, "serving a query");
            ServiceError::internal(anyhow::anyhow!("serving a query failed"))
        };
        let client = self.0.db.get().await.map_err(|e| internal(&e))?;
        let indexed = if fresh {
            None
        } else {
            client
                .query_opt(
                    "SELECT blob_key FROM query_cache WHERE cache_key = $1 AND dashboard_id = $2 AND expires_at > now()",
                    &[&key, &dashboard.id],
                )
                .await
                .map_err(|e| internal(&e))?
        };
        if let Some(row) = indexed {
            let blob_key: String = row.get(0);
            if let Ok(blob) = self.0.cache.get(&blob_key).await
                && let Ok(stored) = serde_json::from_slice::<StoredResult>(&blob.bytes)
                && stored.body.len() <= limits.max_result_bytes
            {
                return Ok((
                    Arc::new(CachedResult {
                        dashboard_id: dashboard.id,
                        body: Bytes::from(stored.body),
                        row_count: stored.row_count,
                        truncated: stored.truncated,
                        bytes_scanned: stored.bytes_scanned,
                        duration_ms: stored.duration_ms,
                        cached_at: stored.cached_at,
                        expires_at: stored.expires_at,
                    }),
                    false,
                ));
            }
        }
        let connection = connections::by_id(&client, dashboard.connection_id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or(ServiceError::NotFound(crate::error::Missing::Connection))?;
        drop(client);
        let warehouse = self.0.connections.warehouse(&connection).await?;
        let started = Instant::now();
        // The SQL's hash, never its text's parameter values (they are bound, not in it).
        let span = tracing::info_span!(
            "sql.execute",
            dashboard_slug = %dashboard.slug,
            query_id = %query.id,
            query_hash = %&base::crypto::sha256_hex(query.sql.as_bytes())[..16],
            dialect = warehouse.dialect().as_str(),
            cache_hit = false,
            bytes_scanned = tracing::field::Empty,
            rows = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let ran = tracing::Instrument::instrument(
            warehouse.query(&query.sql, params, limits),
            span.clone(),
        )
        .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.record("duration_ms", duration_ms);
        crate::telemetry::warehouse_query(
            warehouse.dialect().as_str(),
            ran.is_ok(),
            ran.as_ref().ok().and_then(|r| r.bytes_scanned),
        );
        let result = ran?;
        span.record("rows", result.rows.len());
        if let Some(b) = result.bytes_scanned {
            span.record("bytes_scanned", b);
        }
        let (row_count, truncated, bytes_scanned) =
            (result.rows.len(), result.truncated, result.bytes_scanned);
        #[derive(Serialize)]
        struct Body<'a> {
            columns: &'a [platform::warehouse::Column],
            rows: &'a [Vec<serde_json::Value>],
        }
        let mut body = serde_json::to_vec(&Body {
            columns: &result.columns,
            rows: &result.rows,
        })
        .map_err(|e| internal(&e))?;
        drop(result);
        // The adapters stop reading past the cap by an estimate; this is the exact check.
        if body.len() > limits.max_result_bytes + 2 {
            return Err(WarehouseError::ResultTooLarge {
                limit: limits.max_result_bytes,
            }
            .into());
        }
        // Keep the members only: `{"columns":…,"rows":…}` → `"columns":…,"rows":…`.
        body.pop();
        body.remove(0);
        let now = OffsetDateTime::now_utc();
        let ttl = plan.spec.cache_ttl();
        let expires_at = now + ttl;
        let cached = CachedResult {
            dashboard_id: dashboard.id,
            body: Bytes::from(body),
            row_count,
            truncated,
            bytes_scanned,
            duration_ms,
            cached_at: now,
            expires_at,
        };
        self.store_l2(dashboard, query, key, &cached).await;
        Ok((Arc::new(cached), true))
    }
}

impl Serving {
    /// Writes a fresh result to the cache bucket and its index. A failure only costs a future
    /// miss, so it is logged, not returned.
    async fn store_l2(
        &self,
        dashboard: &Dashboard,
        query: &CompiledQuery,
        key: &str,
        r: &CachedResult,
    ) {
        let blob_key = blob_key(dashboard.id, dashboard.version, &query.id, key);
        let stored = StoredResult {
            body: String::from_utf8_lossy(&r.body).into_owned(),
            row_count: r.row_count,
            truncated: r.truncated,
            bytes_scanned: r.bytes_scanned,
            duration_ms: r.duration_ms,
            cached_at: r.cached_at,
            expires_at: r.expires_at,
        };
        let outcome = async {
        let bytes = serde_json::to_vec(&stored)?;
        let size = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.0.cache.put(&blob_key, Bytes::from(bytes)).await?;
        let client = self.0.db.get().await?;
        client
            .execute(
                "INSERT INTO query_cache (cache_key, dashboard_id, version, query_id, blob_key, row_count, bytes_scanned, \
                                          size_bytes, duration_ms, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (cache_key) DO UPDATE SET blob_key = EXCLUDED.blob_key, row_count = EXCLUDED.row_count, \
                   bytes_scanned = EXCLUDED.bytes_scanned, size_bytes = EXCLUDED.size_bytes, duration_ms = EXCLUDED.duration_ms, \
                   created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
                &[
                    &key,
                    &dashboard.id,
                    &dashboard.version,
                    &query.id,
                    &blob_key,
                    &i32::try_from(r.row_count).unwrap_or(i32::MAX),
                    &r.bytes_scanned.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    &size,
                    &i32::try_from(r.duration_ms).unwrap_or(i32::MAX),
                    &r.cached_at,
                    &r.expires_at,
                ],
            )
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %format!("{e:#}"), key, "caching a result");
        }
    }
}

impl Serving {
    /// One query through L1, L2 and the warehouse; concurrent misses share one run.
    async fn answer(
        &self,
        dashboard: Arc<Dashboard>,
        plan: Arc<Plan>,
        index: usize,
        values: Arc<HashMap<String, ParamValue>>,
        fresh: bool,
    ) -> (usize, Outcome, bool) {
        let query = &plan.queries[index];
        let mut params = Vec::with_capacity(query.params.len());
        for name in &query.params {
            match values.get(name) {
                Some(v) => params.push(Param {
                    name: name.clone(),
                    value: v.clone(),
                }),
                None => {
                    let outcome =
                        Outcome::Failed(Arc::new(ServiceError::ParameterRequired(name.clone())));
                    return (index, outcome, false);
                }
            }
        }
        let limits = self.limits(&dashboard);
        let key = cache_key(&dashboard, &plan.identities[index], &params, &limits);
        if fresh {
            // Forced: the warehouse runs whatever the caches hold, and its result replaces it.
            return match self
                .load_or_run(
                    &dashboard,
                    &plan,
                    Ask {
                        query,
                        params: &params,
                        limits: &limits,
                        key: &key,
                        fresh: true,
                    },
                )
                .await
            {
                Ok((result, _)) => {
                    self.0
                        .caches
                        .results
                        .insert(key.clone(), result.clone())
                        .await;
                    let outcome = Outcome::Served {
                        result,
                        cache_hit: false,
                        key,
                    };
                    (index, outcome, true)
                }
                Err(e) => (index, Outcome::Failed(Arc::new(e)), false),
            };
        }
        if let Some(result) = self.0.caches.results.get(&key).await {
            self.count_hit(&key);
            return (
                index,
                Outcome::Served {
                    result,
                    cache_hit: true,
                    key,
                },
                false,
            );
        }
        let ran = std::sync::atomic::AtomicBool::new(false);
        let loaded = self
            .0
            .caches
            .results
            .try_get_with(key.clone(), async {
                let (result, executed) = self
                    .load_or_run(
                        &dashboard,
                        &plan,
                        Ask {
                            query,
                            params: &params,
                            limits: &limits,
                            key: &key,
                            fresh: false,
                        },
                    )
                    .await?;
                ran.store(executed, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, ServiceError>(result)
            })
            .await;
        let executed = ran.load(std::sync::atomic::Ordering::Relaxed);
        match loaded {
            Ok(result) => {
                if !executed {
                    self.count_hit(&key);
                }
                (
                    index,
                    Outcome::Served {
                        result,
                        cache_hit: !executed,
                        key,
                    },
                    executed,
                )
            }
            Err(e) => (index, Outcome::Failed(e), false),
        }
    }
}

impl Serving {
    /// Answers the chosen queries (all when `only` is `None`), in parallel, in plan order,
    /// for `viewer` (who the warehouse jobs of cache misses are charged to). Returns each
    /// outcome and how many ran on the warehouse.
    pub async fn run(
        &self,
        dashboard: Arc<Dashboard>,
        plan: Arc<Plan>,
        values: HashMap<String, ParamValue>,
        only: Option<usize>,
        viewer: Uuid,
    ) -> (Vec<(String, Outcome)>, usize) {
        let charge = crate::usage::Charge::new(Some(viewer), crate::usage::Purpose::Tile);
        crate::usage::charged(charge, self.run_with(dashboard, plan, values, only, false)).await
    }

    /// [`run`](Self::run); `fresh`: every query runs on the warehouse, whatever the caches
    /// hold, and its result replaces theirs.
    async fn run_with(
        &self,
        dashboard: Arc<Dashboard>,
        plan: Arc<Plan>,
        values: HashMap<String, ParamValue>,
        only: Option<usize>,
        fresh: bool,
    ) -> (Vec<(String, Outcome)>, usize) {
        let values = Arc::new(values);
        let charge = crate::usage::current().with_dashboard(dashboard.id, dashboard.version);
        crate::usage::charged(
            charge,
            self.run_charged(dashboard, plan, values, only, fresh),
        )
        .await
    }

    async fn run_charged(
        &self,
        dashboard: Arc<Dashboard>,
        plan: Arc<Plan>,
        values: Arc<HashMap<String, ParamValue>>,
        only: Option<usize>,
        fresh: bool,
    ) -> (Vec<(String, Outcome)>, usize) {
        let indices: Vec<usize> = match only {
            Some(i) => vec![i],
            None => (0..plan.queries.len()).collect(),
        };
        let mut running = futures::stream::iter(indices)
            .map(|i| self.answer(dashboard.clone(), plan.clone(), i, values.clone(), fresh))
            .buffer_unordered(QUERY_PARALLELISM);
        let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
        let mut executed = 0;
        while let Some((i, outcome, ran)) = running.next().await {
            executed += usize::from(ran);
            if let Outcome::Served { cache_hit, .. } = &outcome {
                crate::telemetry::cache_lookup(*cache_hit);
            }
            outcomes.push((i, outcome));
        }
        outcomes.sort_by_key(|(i, _)| *i);
        (
            outcomes
                .into_iter()
                .map(|(i, o)| (plan.queries[i].id.clone(), o))
                .collect(),
            executed,
        )
    }
}

/// The whole dashboard's data response, at most `budget` bytes: a query whose data would
/// take the response past it (in plan order) answers `response_too_large` instead, and can
/// still be read alone through the one-query route.
pub fn render_dashboard(
    dashboard: &Dashboard,
    outcomes: &[(String, Outcome)],
    budget: usize,
) -> Vec<u8> {
    /// Room for a query's metadata, or for the error that replaces it.
    const ROOM: usize = 512;
    let wanted: usize = outcomes
        .iter()
        .map(|(_, o)| match o {
            Outcome::Served { result, .. } => result.body.len() + ROOM,
            Outcome::Failed(_) => ROOM,
        })
        .sum();
    let mut out = Vec::with_capacity(wanted.min(budget) + 128);
    out.extend_from_slice(b"{\"dashboard_slug\":");
    let _ = serde_json::to_writer(&mut out, &dashboard.slug);
    out.extend_from_slice(format!(",\"version\":{},\"queries\":{{", dashboard.version).as_bytes());
    for (n, (id, outcome)) in outcomes.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, id);
        out.push(b':');
        match outcome {
            Outcome::Served { result, .. } if out.len() + result.body.len() + 2 * ROOM > budget => {
                Outcome::Failed(Arc::new(ServiceError::ResponseTooLarge {
                    budget,
                    slug: dashboard.slug.clone(),
                    query: id.clone(),
                }))
                .write_json(&mut out);
            }
            _ => outcome.write_json(&mut out),
        }
    }
    out.extend_from_slice(b"}}");
    out
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryFailure {
    pub query: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrecomputeReport {
    pub dashboard_slug: String,
    pub version: i32,
    pub queries_executed: usize,
    pub cache_hits: usize,
    pub errors: Vec<QueryFailure>,
    pub duration_ms: u64,
    /// Why nothing ran, when the dashboard was skipped (`budget_exceeded`: the team's daily
    /// warehouse budget is spent). The skip is in the cost ledger too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Serving {
    /// Fills the cache for the dashboard's current version with default parameter values.
    #[tracing::instrument(name = "precompute.run", skip_all, fields(
        dashboard_slug = %dashboard.slug, force = force, queries_executed = tracing::field::Empty,
        cache_hits = tracing::field::Empty,
    ))]
    pub async fn precompute(
        &self,
        dashboard: Dashboard,
        force: bool,
    ) -> ApiResult<PrecomputeReport> {
        let started = Instant::now();
        let charge = crate::usage::Charge {
            purpose: crate::usage::Purpose::Precompute,
            ..crate::usage::current()
        };
        let refusal = {
            let client = self.0.db.get().await?;
            crate::usage::spent(&**client, dashboard.team_id, None, 0.0)
                .await?
                .warehouse_refusal()
        };
        if let Some(reason) = refusal {
            crate::usage::record_skip(&self.0.db, &dashboard, &charge, "budget_exceeded").await;
            tracing::warn!(dashboard = %dashboard.slug, reason, "precompute skipped");
            let client = self.0.db.get().await?;
            client
                .execute(
                    "UPDATE dashboards SET last_precomputed_at = now() WHERE id = $1",
                    &[&dashboard.id],
                )
                .await?;
            return Ok(PrecomputeReport {
                dashboard_slug: dashboard.slug.clone(),
                version: dashboard.version,
                queries_executed: 0,
                cache_hits: 0,
                errors: Vec::new(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                skipped: Some("budget_exceeded".to_owned()),
            });
        }
        let plan = self.plan(&dashboard).await?;
        let values = bind_parameters(&plan.spec, &[]).unwrap_or_default();
        let dashboard = Arc::new(dashboard);
        let (outcomes, executed) = crate::usage::charged(
            charge,
            self.run_with(dashboard.clone(), plan, values, None, force),
        )
        .await;
        if force {
            // Its results were replaced: responses made of the old ones must not be served.
            self.0.caches.forget_ready(dashboard.id).await;
        }
        let mut hits = 0;
        let mut errors = Vec::new();
        for (id, o) in &outcomes {
            match o {
                Outcome::Served {
                    cache_hit: true, ..
                } => hits += 1,
                Outcome::Served { .. } => {}
                Outcome::Failed(error) => {
                    errors.push(QueryFailure {
                        query: id.clone(),
                        code: error.code().to_owned(),
                        message: error.public_message().into_owned(),
                    });
                }
            }
        }
        let span = tracing::Span::current();
        span.record("queries_executed", executed);
        span.record("cache_hits", hits);
        let client = self.0.db.get().await?;
        client
            .execute(
                "UPDATE dashboards SET last_precomputed_at = now() WHERE id = $1",
                &[&dashboard.id],
            )
            .await?;
        Ok(PrecomputeReport {
            dashboard_slug: dashboard.slug.clone(),
            version: dashboard.version,
            queries_executed: executed,
            cache_hits: hits,
            errors,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            skipped: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WarmReport {
    pub dashboards: Vec<PrecomputeReport>,
    /// Dashboards that could not be warmed at all, and why.
    pub failures: Vec<QueryFailure>,
    /// Expired cached results removed.
    pub expired_removed: usize,
    pub duration_ms: u64,
}

impl Serving {
    async fn warm_one(&self, dashboard: Dashboard) -> Result<PrecomputeReport, QueryFailure> {
        let slug = dashboard.slug.clone();
        self.precompute(dashboard, false)
            .await
            .map_err(|e| QueryFailure {
                query: slug,
                code: e.code.to_owned(),
                message: e.detail.to_string(),
            })
    }
}

impl Serving {
    /// The scheduled entry: warms every dashboard whose `refresh` cadence is due (bounded
    /// concurrency), then removes expired results from the cache bucket and index.
    pub async fn warm_due(&self) -> ApiResult<WarmReport> {
        let started = Instant::now();
        let client = self.0.db.get().await?;
        let rows = client
        .query(
            &format!(
                "SELECT {} FROM dashboards d JOIN teams t ON t.id = d.team_id \
                 WHERE d.refresh_every_secs IS NOT NULL \
                   AND (d.last_precomputed_at IS NULL \
                        OR d.last_precomputed_at + make_interval(secs => d.refresh_every_secs) <= now() + interval '30 seconds') \
                 ORDER BY d.last_precomputed_at NULLS FIRST",
                dashboards::DASHBOARD_COLUMNS
            ),
            &[],
        )
        .await?;
        let due: Vec<Dashboard> = rows.iter().map(Dashboard::from_row).collect();
        // No pooled connection is held while the warehouses run the queries.
        drop(client);
        let mut running = futures::stream::iter(due)
            .map(|d| self.warm_one(d))
            .buffer_unordered(WARM_PARALLELISM);
        let (mut reports, mut failures) = (Vec::new(), Vec::new());
        while let Some(r) = running.next().await {
            match r {
                Ok(r) => reports.push(r),
                Err(f) => failures.push(f),
            }
        }
        let client = self.0.db.get().await?;
        let expired = client
            .query(
                "DELETE FROM query_cache WHERE expires_at < now() RETURNING blob_key",
                &[],
            )
            .await?;
        for row in &expired {
            let key: String = row.get(0);
            if let Err(e) = self.0.cache.delete(&key).await {
                tracing::warn!(error = %e, key, "removing an expired result");
            }
        }
        Ok(WarmReport {
            dashboards: reports,
            failures,
            expired_removed: expired.len(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn dashboard() -> Dashboard {
        let now = OffsetDateTime::now_utc();
        Dashboard {
            id: Uuid::now_v7(),
            team_id: Uuid::now_v7(),
            connection_id: Uuid::now_v7(),
            slug: "revenue".into(),
            title: "Revenue".into(),
            description: None,
            view_type: "analytical".into(),
            owner_user_id: None,
            version: 3,
            refresh_every_secs: None,
            cache_ttl_secs: 60,
            last_precomputed_at: None,
            created_at: now,
            updated_at: now,
            yaml_url: String::new(),
            yaml_key: String::new(),
            max_bytes_billed: 1,
            max_result_bytes: None,
        }
    }

    fn served(rows: &str) -> Outcome {
        let now = OffsetDateTime::now_utc();
        Outcome::Served {
            result: Arc::new(CachedResult {
                dashboard_id: Uuid::nil(),
                body: Bytes::from(format!(
                    r#""columns":[{{"name":"day","type":"date"}},{{"name":"n","type":"numeric"}}],"rows":{rows}"#
                )),
                row_count: 1,
                truncated: false,
                bytes_scanned: None,
                duration_ms: 4,
                cached_at: now,
                expires_at: now + time::Duration::seconds(60),
            }),
            cache_hit: true,
            key: format!("dash:revenue:q:{rows}:v:3"),
        }
    }

    /// The OpenAPI document's schemas of the data routes describe the bytes they send: the
    /// documentation types (which refuse unknown fields) read what `render_dashboard` and
    /// `write_json` write.
    #[test]
    fn the_documented_data_shapes_read_what_is_served() {
        let d = dashboard();
        let outcomes = vec![
            ("daily".to_owned(), served(r#"[["2025-01-01","12.50"]]"#)),
            (
                "broken".to_owned(),
                Outcome::Failed(Arc::new(ServiceError::ParameterRequired("region".into()))),
            ),
        ];
        let body = render_dashboard(&d, &outcomes, 1 << 20);
        let parsed: DashboardData = serde_json::from_slice(&body).expect("DashboardData");
        assert_eq!(parsed.version, 3);
        assert!(matches!(parsed.queries["daily"], QueryAnswer::Data(_)));
        let QueryAnswer::Failed(failed) = &parsed.queries["broken"] else {
            panic!("a failure reads as one");
        };
        assert_eq!(failed.error.code, "parameter_required");
        let mut one = Vec::new();
        outcomes[0].1.write_json(&mut one);
        let q: QueryData = serde_json::from_slice(&one).expect("QueryData");
        assert_eq!(q.columns[1].data_type, "numeric");
        assert!(q.metadata.cache_hit);
    }

    #[test]
    fn the_etag_follows_the_results_and_max_age_the_soonest_expiry() {
        let d = dashboard();
        let a = vec![("daily".to_owned(), served("[[1]]"))];
        let b = vec![("daily".to_owned(), served("[[2]]"))];
        let (va, vb) = (validators(&d, &a), validators(&d, &b));
        assert_ne!(va.etag, vb.etag);
        assert_eq!(va.etag.len(), 32);
        assert!((58..=60).contains(&va.max_age_secs), "{}", va.max_age_secs);
        let failed = vec![(
            "daily".to_owned(),
            Outcome::Failed(Arc::new(ServiceError::ParameterRequired("x".into()))),
        )];
        assert_eq!(validators(&d, &failed).max_age_secs, 0);
    }
}

//! The catalog: a connection's datasets and tables, scanned from the warehouse into
//! Postgres, browsed from there, and column schemas read live (and cached).
//!
//! A scan lists the datasets, then reads each dataset's tables with bounded parallelism,
//! writing each dataset's tables as they arrive in a few set-based statements (`unnest`,
//! never a round trip per table). Tables whose fingerprint (type, counts, sizes,
//! partitioning, clustering, last-modified) has not changed are skipped; tables gone from
//! the warehouse are removed. A dataset that fails is recorded and the scan goes on. Each
//! scan is a `scan_runs` row whose counters move as it runs, so a client can show progress.
//!
//! A scan is a job ([`crate::jobs`]): `POST …/scan` records it and answers 202; a worker
//! runs it under a lease, with a heartbeat; a scan whose worker went silent for
//! [`STALE_AFTER`] is handed to a new worker, or failed after [`MAX_ATTEMPTS`] tries.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Clash, Missing, ServiceError};
use edge::{ApiError, ApiResult, CurrentUser, pagination::Page, tenancy::require};

use crate::{
    connections::CONNECTION_COLUMNS, connections::Connection, connections::ConnectionStatus,
    connections::Connections, connections::connection_not_found, connections::warehouse_error,
    jobs::Job, jobs::Runner,
};

use deadpool_postgres::Pool;
use platform::blob::BlobStore;
use storage::db::unique_violation;

use base::domain::Role;

use platform::{
    warehouse::ColumnInfo, warehouse::DatasetInfo, warehouse::TableInfo, warehouse::Warehouse,
};

/// Datasets read at once during a scan.
pub const SCAN_PARALLELISM: usize = 8;
/// How long one dataset's tables may take to list.
pub const DATASET_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ScanError {
    /// The dataset that failed (null when the scan itself failed, e.g. listing datasets).
    pub dataset: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanRun {
    pub scan_id: Uuid,
    pub connection_id: Uuid,
    /// `running`, `succeeded`, `partial` (some datasets failed) or `failed`.
    pub status: String,
    pub datasets_total: Option<i32>,
    pub datasets_scanned: i32,
    pub tables_scanned: i32,
    /// Tables found unchanged since the last scan, so not rewritten.
    pub tables_skipped: i32,
    pub errors: Vec<ScanError>,
    /// Time spent in Bridge itself, apart from waiting on the warehouse.
    pub bridge_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

const SCAN_COLUMNS: &str = "id, connection_id, status, datasets_total, datasets_scanned, tables_scanned, \
     tables_skipped, errors, bridge_ms, duration_ms, started_at, finished_at";

impl ScanRun {
    fn from_row(r: &Row) -> Self {
        Self {
            scan_id: r.get("id"),
            connection_id: r.get("connection_id"),
            status: r.get("status"),
            datasets_total: r.get("datasets_total"),
            datasets_scanned: r.get("datasets_scanned"),
            tables_scanned: r.get("tables_scanned"),
            tables_skipped: r.get("tables_skipped"),
            errors: serde_json::from_value(r.get("errors")).unwrap_or_default(),
            bridge_ms: r.get("bridge_ms"),
            duration_ms: r.get("duration_ms"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
        }
    }
}

/// Digest of what a scan reads about a table: equal digests mean nothing changed.
pub fn fingerprint(t: &TableInfo) -> String {
    let material = serde_json::json!([
        t.table_type,
        t.row_count,
        t.size_bytes,
        t.partitioning,
        t.clustering,
        t.last_modified
            .map(|d| d.unix_timestamp_nanos().to_string()),
        t.columns_digest,
    ]);
    base::crypto::hex(&base::crypto::sha256(material.to_string().as_bytes())[..16])
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How often a running scan's worker says it is alive.
/// The catalog service: scans (as jobs), the scanned catalog, and columns read live with
/// their cache. Built from the pool, the connections service, the cache bucket and the job
/// runner; cheap to clone.
#[derive(Clone)]
pub struct Catalog(Arc<CatalogInner>);

struct CatalogInner {
    db: Pool,
    connections: Connections,
    cache: Arc<dyn BlobStore>,
    /// Table columns by cache key (`catalog/columns/{connection}/{table}/{fingerprint}.json`).
    columns: moka::future::Cache<String, Arc<CachedColumns>>,
    jobs: Runner,
}

/// The in-process column cache's budget (columns of several thousand tables).
const COLUMN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Catalog {
    pub fn new(
        db: Pool,
        connections: Connections,
        cache: Arc<dyn BlobStore>,
        jobs: Runner,
    ) -> Self {
        Self(Arc::new(CatalogInner {
            db,
            connections,
            cache,
            columns: moka::future::Cache::builder()
                .weigher(|_, v: &Arc<CachedColumns>| v.weight())
                .max_capacity(COLUMN_CACHE_BYTES)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            jobs,
        }))
    }

    /// Starts a scan of connection `id` (editors; it must be validated).
    pub async fn scan(&self, id: Uuid, user: &CurrentUser) -> ApiResult<ScanRun> {
        let (connection, _) = self.0.connections.get(id, user, Role::Editor).await?;
        self.start_scan(&connection, user).await
    }

    /// A scan of connection `id`, finished or running (members). Whoever looks finds a scan
    /// whose worker died already handed on, or failed.
    pub async fn scan_status(
        &self,
        id: Uuid,
        scan_id: Uuid,
        user: &CurrentUser,
    ) -> ApiResult<ScanRun> {
        self.0.connections.get(id, user, Role::Viewer).await?;
        self.reap(Some(id)).await?;
        let client = self.0.db.get().await?;
        scan_run(&client, id, scan_id).await
    }

    /// A page of connection `id`'s scanned datasets, by name (members).
    pub async fn datasets(
        &self,
        id: Uuid,
        user: &CurrentUser,
        page: &Page<NameCursor>,
    ) -> ApiResult<(Vec<Dataset>, Option<String>)> {
        let client = self.0.db.get().await?;
        crate::connections::load(&client, id, user, Role::Viewer).await?;
        list_datasets(&client, id, page).await
    }

    /// The warehouse type of connection `id` (it was read by a caller allowed to).
    pub async fn dialect(&self, id: Uuid) -> ApiResult<platform::warehouse::Dialect> {
        let client = self.0.db.get().await?;
        crate::connections::dialect_of(&client, id)
            .await?
            .ok_or_else(crate::connections::connection_not_found)
    }

    /// A page of dataset `id`'s scanned tables, by name (members).
    pub async fn tables(
        &self,
        id: Uuid,
        user: &CurrentUser,
        page: &Page<NameCursor>,
    ) -> ApiResult<(Vec<Table>, Option<String>)> {
        let client = self.0.db.get().await?;
        load_dataset(&client, id, user, Role::Viewer).await?;
        list_tables(&client, id, page).await
    }

    /// Every scanned table of a connection (no tenancy check: for callers that hold the
    /// right to it already, e.g. through its dashboard).
    pub async fn scanned(&self, connection_id: Uuid) -> ApiResult<Vec<ScannedTable>> {
        let client = self.0.db.get().await?;
        Ok(scanned_tables(&client, connection_id).await?)
    }

    /// Drops this process's cached columns of a deleted connection. (Other processes can no
    /// longer reach theirs: the tables are gone, and every key names the connection.)
    pub async fn forget_connection(&self, connection_id: Uuid) {
        let prefix = format!("catalog/columns/{connection_id}/");
        crate::caches::invalidate_where(&self.0.columns, |key, _| key.starts_with(&prefix)).await;
    }
}

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// A running scan silent for this long lost its worker (a crash, a timeout, a redeploy).
pub const STALE_AFTER: Duration = Duration::from_secs(45);
/// A scan is tried this many times in all before its lost workers fail it.
pub const MAX_ATTEMPTS: i32 = 2;

impl Catalog {
    /// Starts a scan of `connection` (the caller has checked it may) as a job, and answers at
    /// once with the running scan; `GET …/scans/{id}` follows it.
    pub async fn start_scan(
        &self,
        connection: &Connection,
        user: &CurrentUser,
    ) -> ApiResult<ScanRun> {
        if connection.status != ConnectionStatus::Validated {
            return Err(ServiceError::Conflict(Clash::ConnectionNotValidated).into());
        }
        self.reap(Some(connection.id)).await?;
        let scan_id = Uuid::now_v7();
        let worker = Uuid::new_v4();
        let row = {
            let client = self.0.db.get().await?;
            let inserted = client
            .query_one(
                &format!(
                    "INSERT INTO scan_runs (id, connection_id, started_by, worker) VALUES ($1, $2, $3, $4) \
                     RETURNING {SCAN_COLUMNS}"
                ),
                &[&scan_id, &connection.id, &user.id, &worker],
            )
            .await;
            match inserted {
                Ok(row) => row,
                Err(e) => {
                    return Err(match unique_violation(&e) {
                        Some("scan_runs_one_running_idx") => {
                            ServiceError::Conflict(Clash::ScanInProgress).into()
                        }
                        _ => e.into(),
                    });
                }
            }
        };
        if let Err(e) = self
            .0
            .jobs
            .dispatch(self, Job::Scan { scan_id, worker })
            .await
        {
            let client = self.0.db.get().await?;
            client
            .execute(
                "UPDATE scan_runs SET status = 'failed', finished_at = now(), \
                 errors = '[{\"dataset\": null, \"message\": \"the scan could not be started\"}]'::jsonb \
                 WHERE id = $1",
                &[&scan_id],
            )
            .await?;
            return Err(ServiceError::unavailable(e.context("starting a scan")).into());
        }
        Ok(ScanRun::from_row(&row))
    }
}

impl Catalog {
    /// Finds running scans whose worker went silent (of one connection, or all): each is run
    /// again by a new worker, or failed once it has been tried [`MAX_ATTEMPTS`] times. Cheap
    /// when there is nothing to do; run by every look at a scan and by the scheduled tick.
    pub async fn reap(&self, connection: Option<Uuid>) -> ApiResult<()> {
        let stale = f64::from(u32::try_from(STALE_AFTER.as_secs()).unwrap_or(u32::MAX));
        let client = self.0.db.get().await?;
        client
        .execute(
            "UPDATE scan_runs SET status = 'failed', finished_at = now(), \
             errors = errors || '[{\"dataset\": null, \"message\": \"the worker running this scan stopped answering, and so did the one that took over\"}]'::jsonb \
             WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
               AND attempts >= $2 AND ($3::uuid IS NULL OR connection_id = $3)",
            &[&stale, &MAX_ATTEMPTS, &connection],
        )
        .await?;
        let resumed = client
        .query(
            "UPDATE scan_runs SET attempts = attempts + 1, worker = gen_random_uuid(), heartbeat_at = now() \
             WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
               AND attempts < $2 AND ($3::uuid IS NULL OR connection_id = $3) \
             RETURNING id, worker",
            &[&stale, &MAX_ATTEMPTS, &connection],
        )
        .await?;
        drop(client);
        for row in resumed {
            let (scan_id, worker): (Uuid, Uuid) = (row.get("id"), row.get("worker"));
            tracing::warn!(%scan_id, "a scan's worker went silent; running it again");
            if let Err(e) = self
                .0
                .jobs
                .dispatch(self, Job::Scan { scan_id, worker })
                .await
            {
                tracing::error!(%scan_id, error = %format!("{e:#}"), "resuming a scan");
            }
        }
        Ok(())
    }
}

/// What a worker made of its scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanOutcome {
    /// Ran to its end (`succeeded`, `partial` or `failed` on the row).
    Finished,
    /// The scan is not this worker's (any more): another took it over, or it is over.
    NotOurs,
}

impl Catalog {
    /// Runs scan `scan_id` as `worker` (the job's entry point). Writes its progress and its
    /// heartbeat as it goes, holds no pooled connection while it waits on the warehouse, and
    /// stops as soon as it learns the scan was handed to another worker.
    pub async fn run_scan(&self, scan_id: Uuid, worker: Uuid) -> anyhow::Result<ScanOutcome> {
        let connection = {
            let client = self.0.db.get().await?;
            let Some(row) = client
            .query_opt(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM scan_runs s JOIN connections c ON c.id = s.connection_id \
                     WHERE s.id = $1 AND s.worker = $2 AND s.status = 'running'"
                ),
                &[&scan_id, &worker],
            )
            .await?
        else {
            return Ok(ScanOutcome::NotOurs);
        };
            Connection::from_row(&row)
        };
        let lost = async {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let beat = async {
                    let client = self.0.db.get().await?;
                    let n = client
                    .execute(
                        "UPDATE scan_runs SET heartbeat_at = now() WHERE id = $1 AND worker = $2 AND status = 'running'",
                        &[&scan_id, &worker],
                    )
                    .await?;
                    Ok::<_, ApiError>(n)
                };
                match beat.await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%scan_id, error = %e, "a scan's heartbeat"),
                }
            }
        };
        tokio::select! {
            done = self.scan_body(&connection, scan_id, worker) => done.map_err(|e| anyhow::anyhow!("{e}"))?,
            () = lost => {
                tracing::warn!(%scan_id, "another worker has this scan; stopping");
                return Ok(ScanOutcome::NotOurs);
            }
        }
        Ok(ScanOutcome::Finished)
    }
}

impl Catalog {
    async fn scan_body(
        &self,
        connection: &Connection,
        scan_id: Uuid,
        worker: Uuid,
    ) -> ApiResult<()> {
        let started = Instant::now();
        let mut bridge = Duration::ZERO;
        let mut errors: Vec<ScanError> = Vec::new();
        let finish = async |status: &str, errors: &[ScanError], bridge: Duration| {
            let client = self.0.db.get().await?;
            client
            .execute(
                "UPDATE scan_runs SET status = $3, errors = $4, bridge_ms = $5, duration_ms = $6, finished_at = now(), \
                 heartbeat_at = now() WHERE id = $1 AND worker = $2",
                &[&scan_id, &worker, &status, &serde_json::to_value(errors).unwrap_or_default(), &ms(bridge), &ms(started.elapsed())],
            )
            .await?;
            tracing::info!(
                connection_id = %connection.id, %scan_id, status, bridge_ms = ms(bridge),
                duration_ms = ms(started.elapsed()), "catalog scanned"
            );
            Ok::<_, ApiError>(())
        };

        let warehouse = match self.0.connections.warehouse(connection).await {
            Ok(w) => w,
            Err(e) => {
                errors.push(ScanError {
                    dataset: None,
                    message: e.public_message().into_owned(),
                });
                return finish("failed", &errors, bridge).await;
            }
        };
        let datasets = match tokio::time::timeout(DATASET_TIMEOUT, warehouse.list_datasets()).await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                errors.push(ScanError {
                    dataset: None,
                    message: e.to_string(),
                });
                return finish("failed", &errors, bridge).await;
            }
            Err(_) => {
                errors.push(ScanError {
                    dataset: None,
                    message: "listing datasets timed out".into(),
                });
                return finish("failed", &errors, bridge).await;
            }
        };

        let t = Instant::now();
        let ids = {
            let mut client = self.0.db.get().await?;
            upsert_datasets(&mut client, connection.id, scan_id, &datasets).await?
        };
        bridge += t.elapsed();

        // At most SCAN_PARALLELISM datasets are read at once; each is written as it arrives,
        // on a connection taken from the pool for that write only.
        let names: Vec<(String, String)> = datasets
            .iter()
            .map(|d| (d.name.clone(), d.fully_qualified_name.clone()))
            .collect();
        let mut reads = futures::stream::iter(
            names
                .into_iter()
                .map(move |(name, fqn)| read_dataset(warehouse.clone(), name, fqn)),
        )
        .buffer_unordered(SCAN_PARALLELISM);
        let (mut scanned, mut skipped) = (0i64, 0i64);
        while let Some((fqn, tables)) = reads.next().await {
            let t = Instant::now();
            let Some(&dataset_id) = ids.get(&fqn) else {
                continue;
            };
            let mut client = self.0.db.get().await?;
            match tables {
                Ok(tables) => {
                    let (written, unchanged) =
                        write_tables(&mut client, dataset_id, &tables).await?;
                    scanned += written + unchanged;
                    skipped += unchanged;
                }
                Err(message) => {
                    client
                        .execute(
                            "UPDATE datasets SET scan_error = $2, updated_at = now() WHERE id = $1",
                            &[&dataset_id, &message],
                        )
                        .await?;
                    errors.push(ScanError {
                        dataset: Some(fqn),
                        message,
                    });
                }
            }
            client
            .execute(
                "UPDATE scan_runs SET datasets_scanned = datasets_scanned + 1, tables_scanned = $3, tables_skipped = $4, \
                 errors = $5, heartbeat_at = now() WHERE id = $1 AND worker = $2",
                &[&scan_id, &worker, &(scanned as i32), &(skipped as i32), &serde_json::to_value(&errors).unwrap_or_default()],
            )
            .await?;
            bridge += t.elapsed();
        }
        let status = if errors.is_empty() {
            "succeeded"
        } else {
            "partial"
        };
        finish(status, &errors, bridge).await
    }
}

async fn read_dataset(
    warehouse: Arc<dyn Warehouse>,
    name: String,
    fqn: String,
) -> (String, Result<Vec<TableInfo>, String>) {
    let tables = match tokio::time::timeout(DATASET_TIMEOUT, warehouse.list_tables(&name)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "listing tables took over {} s",
            DATASET_TIMEOUT.as_secs()
        )),
    };
    (fqn, tables)
}

/// One statement upserts every dataset; another removes those gone from the warehouse.
async fn upsert_datasets(
    client: &mut deadpool_postgres::Object,
    connection_id: Uuid,
    scan_id: Uuid,
    datasets: &[DatasetInfo],
) -> ApiResult<HashMap<String, Uuid>> {
    let tx = client.transaction().await?;
    let ids: Vec<Uuid> = datasets.iter().map(|_| Uuid::now_v7()).collect();
    let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    let fqns: Vec<&str> = datasets
        .iter()
        .map(|d| d.fully_qualified_name.as_str())
        .collect();
    let descriptions: Vec<Option<&str>> =
        datasets.iter().map(|d| d.description.as_deref()).collect();
    let locations: Vec<Option<&str>> = datasets.iter().map(|d| d.location.as_deref()).collect();
    let modified: Vec<Option<OffsetDateTime>> = datasets.iter().map(|d| d.last_modified).collect();
    let rows = tx
        .query(
            "INSERT INTO datasets (id, connection_id, name, fully_qualified_name, description, location, last_modified) \
             SELECT u.id, $1, u.name, u.fqn, u.description, u.location, u.modified \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) \
                  AS u(id, name, fqn, description, location, modified) \
             ON CONFLICT (connection_id, fully_qualified_name) DO UPDATE SET \
                 name = EXCLUDED.name, description = EXCLUDED.description, location = EXCLUDED.location, \
                 last_modified = EXCLUDED.last_modified, scan_error = NULL, updated_at = now() \
             RETURNING fully_qualified_name, id",
            &[&connection_id, &ids, &names, &fqns, &descriptions, &locations, &modified],
        )
        .await?;
    tx.execute(
        "DELETE FROM datasets WHERE connection_id = $1 AND NOT (fully_qualified_name = ANY($2))",
        &[&connection_id, &fqns],
    )
    .await?;
    tx.execute(
        "UPDATE scan_runs SET datasets_total = $2 WHERE id = $1",
        &[&scan_id, &i32::try_from(datasets.len()).unwrap_or(i32::MAX)],
    )
    .await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Writes one dataset's tables: new and changed ones in one upsert, vanished ones in one
/// delete. Returns (written, unchanged).
async fn write_tables(
    client: &mut deadpool_postgres::Object,
    dataset_id: Uuid,
    tables: &[TableInfo],
) -> ApiResult<(i64, i64)> {
    let tx = client.transaction().await?;
    let known: HashMap<String, String> = tx
        .query(
            "SELECT fully_qualified_name, fingerprint FROM tables WHERE dataset_id = $1",
            &[&dataset_id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let prints: Vec<String> = tables.iter().map(fingerprint).collect();
    let changed: Vec<usize> = (0..tables.len())
        .filter(|&i| known.get(&tables[i].fully_qualified_name) != Some(&prints[i]))
        .collect();
    if !changed.is_empty() {
        let pick = |f: &dyn Fn(&TableInfo) -> Option<String>| -> Vec<Option<String>> {
            changed.iter().map(|&i| f(&tables[i])).collect()
        };
        let ids: Vec<Uuid> = changed.iter().map(|_| Uuid::now_v7()).collect();
        let names = pick(&|t| Some(t.name.clone()));
        let fqns = pick(&|t| Some(t.fully_qualified_name.clone()));
        let types = pick(&|t| Some(t.table_type.clone()));
        let rows: Vec<Option<i64>> = changed.iter().map(|&i| tables[i].row_count).collect();
        let sizes: Vec<Option<i64>> = changed.iter().map(|&i| tables[i].size_bytes).collect();
        let parts: Vec<Option<serde_json::Value>> = changed
            .iter()
            .map(|&i| tables[i].partitioning.clone())
            .collect();
        let clusters: Vec<Option<serde_json::Value>> = changed
            .iter()
            .map(|&i| tables[i].clustering.as_ref().map(|c| serde_json::json!(c)))
            .collect();
        let modified: Vec<Option<OffsetDateTime>> =
            changed.iter().map(|&i| tables[i].last_modified).collect();
        let fps: Vec<&str> = changed.iter().map(|&i| prints[i].as_str()).collect();
        tx.execute(
            "INSERT INTO tables (id, dataset_id, name, fully_qualified_name, table_type, row_count, size_bytes, \
                                 partitioning, clustering, last_modified, fingerprint) \
             SELECT u.id, $1, u.name, u.fqn, u.kind, u.row_count, u.size_bytes, u.partitioning, u.clustering, u.modified, u.fp \
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::jsonb[], $9::jsonb[], \
                         $10::timestamptz[], $11::text[]) \
                  AS u(id, name, fqn, kind, row_count, size_bytes, partitioning, clustering, modified, fp) \
             ON CONFLICT (dataset_id, fully_qualified_name) DO UPDATE SET \
                 name = EXCLUDED.name, table_type = EXCLUDED.table_type, row_count = EXCLUDED.row_count, \
                 size_bytes = EXCLUDED.size_bytes, partitioning = EXCLUDED.partitioning, clustering = EXCLUDED.clustering, \
                 last_modified = EXCLUDED.last_modified, fingerprint = EXCLUDED.fingerprint, updated_at = now()",
            &[&dataset_id, &ids, &names, &fqns, &types, &rows, &sizes, &parts, &clusters, &modified, &fps],
        )
        .await?;
    }
    let all: Vec<&str> = tables
        .iter()
        .map(|t| t.fully_qualified_name.as_str())
        .collect();
    tx.execute(
        "DELETE FROM tables WHERE dataset_id = $1 AND NOT (fully_qualified_name = ANY($2))",
        &[&dataset_id, &all],
    )
    .await?;
    tx.execute(
        "UPDATE datasets SET table_count = $2, scan_error = NULL, updated_at = now() WHERE id = $1",
        &[
            &dataset_id,
            &i32::try_from(tables.len()).unwrap_or(i32::MAX),
        ],
    )
    .await?;
    tx.commit().await?;
    let written = changed.len() as i64;
    Ok((written, tables.len() as i64 - written))
}

pub async fn scan_run(
    client: &deadpool_postgres::Object,
    connection_id: Uuid,
    scan_id: Uuid,
) -> ApiResult<ScanRun> {
    let row = client
        .query_opt(
            &format!("SELECT {SCAN_COLUMNS} FROM scan_runs WHERE id = $1 AND connection_id = $2"),
            &[&scan_id, &connection_id],
        )
        .await?
        .ok_or_else(|| ApiError::from(ServiceError::NotFound(Missing::Scan)))?;
    Ok(ScanRun::from_row(&row))
}

// ------------------------------------------------------------------ browsing

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dataset {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub name: String,
    pub fully_qualified_name: String,
    pub description: Option<String>,
    pub location: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_modified: Option<OffsetDateTime>,
    pub table_count: i32,
    /// Why the last scan could not read this dataset's tables, if it could not.
    pub scan_error: Option<String>,
}

/// How a table is partitioned (documentation of [`Table::partitioning`]).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Partitioning {
    /// BigQuery: the partitioning column.
    field: Option<String>,
    /// Postgres: `RANGE`, `LIST` or `HASH`.
    r#type: Option<String>,
    /// Postgres: the partition key.
    key: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Table {
    pub id: Uuid,
    pub dataset_id: Uuid,
    pub name: String,
    pub fully_qualified_name: String,
    /// `TABLE`, `VIEW`, `MATERIALIZED_VIEW` or `EXTERNAL`.
    pub table_type: String,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    #[schema(value_type = Option<Partitioning>)]
    pub partitioning: Option<serde_json::Value>,
    pub clustering: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_modified: Option<OffsetDateTime>,
    #[serde(skip)]
    pub fingerprint: String,
}

const DATASET_COLUMNS: &str = "d.id, d.connection_id, d.name, d.fully_qualified_name, d.description, d.location, \
     d.last_modified, d.table_count, d.scan_error";
const TABLE_COLUMNS: &str = "t.id, t.dataset_id, t.name, t.fully_qualified_name, t.table_type, t.row_count, \
     t.size_bytes, t.partitioning, t.clustering, t.last_modified, t.fingerprint";

fn dataset_from_row(r: &Row) -> Dataset {
    Dataset {
        id: r.get("id"),
        connection_id: r.get("connection_id"),
        name: r.get("name"),
        fully_qualified_name: r.get("fully_qualified_name"),
        description: r.get("description"),
        location: r.get("location"),
        last_modified: r.get("last_modified"),
        table_count: r.get("table_count"),
        scan_error: r.get("scan_error"),
    }
}

fn table_from_row(r: &Row) -> Table {
    Table {
        id: r.get("id"),
        dataset_id: r.get("dataset_id"),
        name: r.get("name"),
        fully_qualified_name: r.get("fully_qualified_name"),
        table_type: r.get("table_type"),
        row_count: r.get("row_count"),
        size_bytes: r.get("size_bytes"),
        partitioning: r.get("partitioning"),
        clustering: r
            .get::<_, Option<serde_json::Value>>("clustering")
            .and_then(|v| serde_json::from_value(v).ok()),
        last_modified: r.get("last_modified"),
        fingerprint: r.get("fingerprint"),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NameCursor(pub String, pub Uuid);

pub async fn list_datasets(
    client: &deadpool_postgres::Object,
    connection_id: Uuid,
    page: &Page<NameCursor>,
) -> ApiResult<(Vec<Dataset>, Option<String>)> {
    let (after_name, after_id) = match &page.after {
        Some(NameCursor(n, i)) => (Some(n.as_str()), Some(*i)),
        None => (None, None),
    };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.connection_id = $1 \
             AND ($2::text IS NULL OR (d.name, d.id) > ($2, $3)) ORDER BY d.name, d.id LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&connection_id, &after_name, &after_id, &page.fetch_limit()],
        )
        .await?;
    let mut items: Vec<Dataset> = rows.iter().map(dataset_from_row).collect();
    let next = page.finish(&mut items, |d| NameCursor(d.name.clone(), d.id));
    Ok((items, next))
}

/// A dataset and its connection, for a caller with at least `needed` in its team.
pub async fn load_dataset(
    client: &deadpool_postgres::Object,
    id: Uuid,
    user: &CurrentUser,
    needed: Role,
) -> ApiResult<Dataset> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DATASET_COLUMNS}, m.role FROM datasets d JOIN connections c ON c.id = d.connection_id \
             LEFT JOIN team_members m ON m.team_id = c.team_id AND m.user_id = $2 WHERE d.id = $1"
        ))
        .await?;
    let not_found = || ApiError::from(ServiceError::NotFound(Missing::Dataset));
    let row = client
        .query_opt(&stmt, &[&id, &user.id])
        .await?
        .ok_or_else(not_found)?;
    require(
        row.get::<_, Option<&str>>("role").and_then(Role::parse),
        needed,
        not_found,
    )?;
    Ok(dataset_from_row(&row))
}

pub async fn list_tables(
    client: &deadpool_postgres::Object,
    dataset_id: Uuid,
    page: &Page<NameCursor>,
) -> ApiResult<(Vec<Table>, Option<String>)> {
    let (after_name, after_id) = match &page.after {
        Some(NameCursor(n, i)) => (Some(n.as_str()), Some(*i)),
        None => (None, None),
    };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TABLE_COLUMNS} FROM tables t WHERE t.dataset_id = $1 \
             AND ($2::text IS NULL OR (t.name, t.id) > ($2, $3)) ORDER BY t.name, t.id LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&dataset_id, &after_name, &after_id, &page.fetch_limit()],
        )
        .await?;
    let mut items: Vec<Table> = rows.iter().map(table_from_row).collect();
    let next = page.finish(&mut items, |t| NameCursor(t.name.clone(), t.id));
    Ok((items, next))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TableSchema {
    pub table: Table,
    pub dataset: String,
    pub columns: Vec<ColumnInfo>,
    /// Whether the columns came from Bridge's cache rather than the warehouse just now.
    pub cached: bool,
}

/// How long cached columns are trusted without a rescan noticing a change.
pub const COLUMNS_MAX_AGE: time::Duration = time::Duration::hours(1);

/// A table's columns as cached, in-process and in the cache bucket.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CachedColumns {
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
    pub columns: Vec<ColumnInfo>,
}

impl CachedColumns {
    /// About what the entry holds in memory, for the cache's byte budget.
    pub fn weight(&self) -> u32 {
        let bytes: usize = self
            .columns
            .iter()
            .map(|c| {
                64 + c.name.len()
                    + c.data_type.len()
                    + c.description.as_ref().map_or(0, String::len)
            })
            .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

impl Catalog {
    /// Columns of a table, read live from the warehouse and cached (in-process, and in the
    /// cache bucket) for as long as the table's fingerprint stays the same.
    pub async fn table_columns(
        &self,
        user: &CurrentUser,
        table_id: Uuid,
    ) -> ApiResult<TableSchema> {
        let client = self.0.db.get().await?;
        let stmt = client
        .prepare_cached(&format!(
            "SELECT {TABLE_COLUMNS}, d.name AS dataset_name, c.id AS connection_id, m.role FROM tables t JOIN datasets d ON d.id = t.dataset_id \
             JOIN connections c ON c.id = d.connection_id \
             LEFT JOIN team_members m ON m.team_id = c.team_id AND m.user_id = $2 WHERE t.id = $1"
        ))
        .await?;
        let not_found = || ApiError::from(ServiceError::NotFound(Missing::Table));
        let row = client
            .query_opt(&stmt, &[&table_id, &user.id])
            .await?
            .ok_or_else(not_found)?;
        require(
            row.get::<_, Option<&str>>("role").and_then(Role::parse),
            Role::Viewer,
            not_found,
        )?;
        let table = table_from_row(&row);
        let dataset: String = row.get("dataset_name");
        let connection_id: Uuid = row.get("connection_id");

        // Everything that makes the answer: the connection (so no entry crosses a team), the
        // table and its fingerprint (which covers its columns, so a rescan that sees them change
        // makes a new key). Entries also age out after COLUMNS_MAX_AGE, rescan or not.
        let key = format!(
            "catalog/columns/{connection_id}/{table_id}/{}.json",
            table.fingerprint
        );
        let fresh = |read_at: OffsetDateTime| OffsetDateTime::now_utc() - read_at < COLUMNS_MAX_AGE;
        if let Some(cached) = self.0.columns.get(&key).await
            && fresh(cached.read_at)
        {
            return Ok(TableSchema {
                table,
                dataset,
                columns: cached.columns.clone(),
                cached: true,
            });
        }
        if let Ok(blob) = self.0.cache.get(&key).await
            && let Ok(stored) = serde_json::from_slice::<CachedColumns>(&blob.bytes)
            && fresh(stored.read_at)
        {
            let columns = stored.columns.clone();
            self.0.columns.insert(key, Arc::new(stored)).await;
            return Ok(TableSchema {
                table,
                dataset,
                columns,
                cached: true,
            });
        }
        let connection = crate::connections::by_id(&client, connection_id)
            .await?
            .ok_or_else(connection_not_found)?;
        drop(client);
        let warehouse = self.0.connections.warehouse(&connection).await?;
        let columns = warehouse
            .table_columns(&dataset, &table.name)
            .await
            .map_err(warehouse_error)?;
        let stored = CachedColumns {
            read_at: OffsetDateTime::now_utc(),
            columns: columns.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&stored) {
            // The cache is an optimisation: failing to fill it is not the caller's problem.
            if let Err(e) = self.0.cache.put(&key, bytes.into()).await {
                tracing::warn!(error = %e, "caching table columns");
            }
        }
        self.0.columns.insert(key, Arc::new(stored)).await;
        Ok(TableSchema {
            table,
            dataset,
            columns,
            cached: false,
        })
    }
}

/// One scanned table of a connection, as the checks and the lineage name it.
pub struct ScannedTable {
    pub id: Uuid,
    /// The dataset (BigQuery) or schema (Postgres).
    pub dataset: String,
    /// The project (BigQuery) or database (Postgres) the dataset lives in.
    pub home: String,
    pub table: String,
}

/// Every scanned table of a connection.
pub async fn scanned_tables(
    client: &impl deadpool_postgres::GenericClient,
    connection_id: Uuid,
) -> Result<Vec<ScannedTable>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT t.id, d.name AS dataset, d.fully_qualified_name, t.name AS table_name \
             FROM tables t JOIN datasets d ON d.id = t.dataset_id WHERE d.connection_id = $1",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&connection_id])
        .await?
        .iter()
        .map(|r| {
            let dataset: String = r.get("dataset");
            let qualified: String = r.get("fully_qualified_name");
            let home = qualified
                .strip_suffix(&format!(".{dataset}"))
                .unwrap_or_default()
                .to_owned();
            ScannedTable {
                id: r.get("id"),
                dataset,
                home,
                table: r.get("table_name"),
            }
        })
        .collect())
}

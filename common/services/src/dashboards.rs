//! Dashboards as stored: a row of metadata and pointers in Postgres, and one immutable YAML
//! object per version in the dashboards bucket. Writes are ordered so nothing is left
//! half-written: the version's object is created (only if absent) inside the transaction
//! that records it, and removed again if that transaction cannot commit.

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Clash, Missing, ServiceError};
use edge::{
    ApiError, ApiResult, CurrentUser,
    pagination::Page,
    tenancy::{require, require_team_role},
};

use std::sync::Arc;

use deadpool_postgres::Pool;
use platform::blob::BlobStore;

use crate::{
    check::{Checked, require_valid},
    connections::Connections,
    serving::Caches,
};

use platform::blob::BlobError;

use base::{crypto::sha256_hex, domain::Role};

use storage::db::unique_violation;

/// The dashboards service: dashboards as stored (rows and YAML versions), and the checks of
/// a dashboard against its warehouse ([`crate::check`]). Built from the pool, the
/// connections service, the dashboards and cache buckets, and the serving caches (a change
/// drops what they hold of it); cheap to clone.
#[derive(Clone)]
pub struct Dashboards(pub(crate) Arc<DashboardsInner>);

pub(crate) struct DashboardsInner {
    pub(crate) db: Pool,
    pub(crate) connections: Connections,
    /// One immutable YAML object per version.
    yamls: Arc<dyn BlobStore>,
    /// Cached results (removed with the dashboard).
    cache: Arc<dyn BlobStore>,
    caches: Arc<Caches>,
}

impl Dashboards {
    pub fn new(
        db: Pool,
        connections: Connections,
        yamls: Arc<dyn BlobStore>,
        cache: Arc<dyn BlobStore>,
        caches: Arc<Caches>,
    ) -> Self {
        Self(Arc::new(DashboardsInner {
            db,
            connections,
            yamls,
            cache,
            caches,
        }))
    }

    /// The dashboard at `slug` and the caller's role in its team: 404 for non-members, 403
    /// below `needed`.
    pub async fn get(
        &self,
        slug: &str,
        user: &CurrentUser,
        needed: Role,
    ) -> ApiResult<(Dashboard, Role)> {
        let client = self.0.db.get().await?;
        load(&client, slug, user, needed).await
    }

    /// A page of the team's dashboards, by slug (members).
    pub async fn list_for(
        &self,
        team_id: Uuid,
        user: &CurrentUser,
        page: &Page<String>,
    ) -> ApiResult<(Vec<Dashboard>, Option<String>)> {
        let client = self.0.db.get().await?;
        require_team_role(&client, team_id, user, Role::Viewer).await?;
        list(&client, team_id, page).await
    }

    /// Validates `yaml` fully and stores it as a new dashboard of the team (editors).
    pub async fn create_from_yaml(
        &self,
        team_id: Uuid,
        user: &CurrentUser,
        yaml: &str,
    ) -> ApiResult<Dashboard> {
        {
            let client = self.0.db.get().await?;
            require_team_role(&client, team_id, user, Role::Editor).await?;
        }
        let checked = require_valid(self.check(user, yaml, Some(team_id)).await?)?;
        let dashboard = self
            .create(team_id, user, &DashboardMeta::of(&checked), yaml)
            .await?;
        tracing::info!(slug = %dashboard.slug, %team_id, "dashboard created");
        Ok(dashboard)
    }

    /// Validates `yaml` fully and stores it as the next version of the dashboard at `slug`
    /// (editors); with `expected` (from `If-Match`), only if the current version is one of
    /// them. YAML identical to the current version's makes no new version: the answer is the
    /// dashboard as it is. The slug cannot change.
    pub async fn update_from_yaml(
        &self,
        slug: &str,
        user: &CurrentUser,
        yaml: &str,
        expected: Option<&[i32]>,
    ) -> ApiResult<Dashboard> {
        let (current, _) = self.get(slug, user, Role::Editor).await?;
        if let Some(expected) = expected
            && !expected.contains(&current.version)
        {
            return Err(ServiceError::VersionMismatch {
                current: current.version,
            }
            .into());
        }
        if self.current_sha256(&current).await? == sha256_hex(yaml.as_bytes()) {
            return Ok(current);
        }
        let checked = require_valid(self.check(user, yaml, Some(current.team_id)).await?)?;
        if checked.spec.slug != current.slug {
            return Err(ServiceError::InvalidDashboard(vec![base::FieldError::new(
                "slug",
                format!(
                    "must stay `{}`: a dashboard's slug cannot change",
                    current.slug
                ),
            )])
            .into());
        }
        let dashboard = self
            .update(&current, user, &DashboardMeta::of(&checked), yaml, expected)
            .await?;
        if dashboard.version != current.version {
            tracing::info!(slug = %dashboard.slug, version = dashboard.version, "dashboard updated");
        }
        Ok(dashboard)
    }

    async fn current_sha256(&self, dashboard: &Dashboard) -> ApiResult<String> {
        let client = self.0.db.get().await?;
        let row = client
            .query_opt(
                "SELECT sha256 FROM dashboard_versions WHERE dashboard_id = $1 AND version = $2",
                &[&dashboard.id, &dashboard.version],
            )
            .await?
            .ok_or_else(dashboard_not_found)?;
        Ok(row.get("sha256"))
    }

    /// A page of the dashboard's versions, newest first (members).
    pub async fn versions(
        &self,
        slug: &str,
        user: &CurrentUser,
        page: &Page<i32>,
    ) -> ApiResult<(Vec<Version>, Option<String>)> {
        let (dashboard, _) = self.get(slug, user, Role::Viewer).await?;
        let client = self.0.db.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT v.version, v.created_by, u.email AS author_email, v.created_at, v.size_bytes, v.sha256 \
                 FROM dashboard_versions v LEFT JOIN users u ON u.id = v.created_by \
                 WHERE v.dashboard_id = $1 AND ($2::int4 IS NULL OR v.version < $2) \
                 ORDER BY v.version DESC LIMIT $3",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&dashboard.id, &page.after, &page.fetch_limit()])
            .await?;
        let mut versions: Vec<Version> = rows
            .iter()
            .map(|r| Version {
                version: r.get("version"),
                created_by: r.get("created_by"),
                author_email: r.get("author_email"),
                created_at: r.get("created_at"),
                size_bytes: r.get("size_bytes"),
                sha256: r.get("sha256"),
            })
            .collect();
        let next = page.finish(&mut versions, |v| v.version);
        Ok((versions, next))
    }

    /// The YAML of the dashboard at `slug` (members): the current version, or `version`.
    pub async fn yaml_of(
        &self,
        slug: &str,
        user: &CurrentUser,
        version: Option<i32>,
    ) -> ApiResult<(i32, Bytes)> {
        let (dashboard, _) = self.get(slug, user, Role::Viewer).await?;
        self.yaml(&dashboard, version).await
    }

    /// Deletes the dashboard at `slug`: its owner (an editor still) or a team admin.
    pub async fn delete_by(&self, slug: &str, user: &CurrentUser) -> ApiResult<()> {
        let (dashboard, role) = self.get(slug, user, Role::Viewer).await?;
        let owner = dashboard.owner_user_id == Some(user.id) && role >= Role::Editor;
        if !owner && role < Role::Admin {
            return Err(ApiError::forbidden(
                "only the dashboard's owner or a team admin may delete it",
            ));
        }
        self.delete(&dashboard).await?;
        tracing::info!(%slug, "dashboard deleted");
        Ok(())
    }
}

impl DashboardMeta {
    /// What Postgres keeps of a checked dashboard.
    pub fn of(checked: &Checked) -> Self {
        let spec = &checked.spec;
        Self {
            slug: spec.slug.clone(),
            title: spec.title.clone(),
            description: spec.description.clone(),
            view_type: spec.view_type.as_str().to_owned(),
            connection_id: checked.connection.id,
            refresh_every_secs: spec
                .refresh_every()
                .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
            cache_ttl_secs: i32::try_from(spec.cache_ttl().as_secs()).unwrap_or(i32::MAX),
        }
    }
}

/// One stored version of a dashboard's YAML.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Version {
    pub version: i32,
    /// Who wrote it (null once that user is gone).
    pub created_by: Option<Uuid>,
    pub author_email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Bytes of YAML.
    pub size_bytes: i32,
    /// SHA-256 of the YAML, hex.
    pub sha256: String,
}

/// What a dashboard's YAML says that Postgres keeps (the rest stays in the YAML).
#[derive(Debug, Clone)]
pub struct DashboardMeta {
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub view_type: String,
    pub connection_id: Uuid,
    pub refresh_every_secs: Option<i32>,
    pub cache_ttl_secs: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dashboard {
    pub id: Uuid,
    pub team_id: Uuid,
    pub connection_id: Uuid,
    /// Globally unique; the dashboard's address.
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub view_type: String,
    pub owner_user_id: Option<Uuid>,
    /// The current version; every YAML update makes a new, immutable one.
    pub version: i32,
    pub refresh_every_secs: Option<i32>,
    pub cache_ttl_secs: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_precomputed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Where to read the YAML.
    pub yaml_url: String,
    #[serde(skip)]
    pub yaml_key: String,
    /// The team's byte cap per query.
    #[serde(skip)]
    pub max_bytes_billed: u64,
    /// The team's cap on one query's result, if it set one.
    #[serde(skip)]
    pub max_result_bytes: Option<usize>,
}

pub const DASHBOARD_COLUMNS: &str = "d.id, d.team_id, d.connection_id, d.slug, d.title, d.description, d.view_type, \
     d.owner_user_id, d.version, d.refresh_every_secs, d.cache_ttl_secs, d.last_precomputed_at, d.created_at, \
     d.updated_at, d.yaml_key, t.settings";

impl Dashboard {
    pub fn from_row(r: &Row) -> Self {
        let slug: String = r.get("slug");
        let settings: serde_json::Value = r.get("settings");
        let team: base::domain::TeamSettings = serde_json::from_value(settings).unwrap_or_default();
        Self {
            id: r.get("id"),
            team_id: r.get("team_id"),
            connection_id: r.get("connection_id"),
            yaml_url: format!("/v1/dashboards/{slug}/yaml"),
            slug,
            title: r.get("title"),
            description: r.get("description"),
            view_type: r.get("view_type"),
            owner_user_id: r.get("owner_user_id"),
            version: r.get("version"),
            refresh_every_secs: r.get("refresh_every_secs"),
            cache_ttl_secs: r.get("cache_ttl_secs"),
            last_precomputed_at: r.get("last_precomputed_at"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            yaml_key: r.get("yaml_key"),
            max_bytes_billed: team.max_bytes_billed(),
            max_result_bytes: team.max_result_bytes,
        }
    }
}

pub fn dashboard_not_found() -> ApiError {
    ServiceError::NotFound(Missing::Dashboard).into()
}

/// The dashboard at `slug` and the caller's role in its team: 404 for non-members, 403 below
/// `needed`.
pub async fn load(
    client: &impl deadpool_postgres::GenericClient,
    slug: &str,
    user: &CurrentUser,
    needed: Role,
) -> ApiResult<(Dashboard, Role)> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DASHBOARD_COLUMNS}, m.role FROM dashboards d JOIN teams t ON t.id = d.team_id \
             LEFT JOIN team_members m ON m.team_id = d.team_id AND m.user_id = $2 WHERE d.slug = $1"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&slug, &user.id])
        .await?
        .ok_or_else(dashboard_not_found)?;
    let role = require(
        row.get::<_, Option<&str>>("role").and_then(Role::parse),
        needed,
        dashboard_not_found,
    )?;
    Ok((Dashboard::from_row(&row), role))
}

pub async fn list(
    client: &deadpool_postgres::Object,
    team_id: Uuid,
    page: &Page<String>,
) -> ApiResult<(Vec<Dashboard>, Option<String>)> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {DASHBOARD_COLUMNS} FROM dashboards d JOIN teams t ON t.id = d.team_id \
             WHERE d.team_id = $1 AND ($2::text IS NULL OR d.slug > $2) ORDER BY d.slug LIMIT $3"
        ))
        .await?;
    let rows = client
        .query(&stmt, &[&team_id, &page.after, &page.fetch_limit()])
        .await?;
    let mut items: Vec<Dashboard> = rows.iter().map(Dashboard::from_row).collect();
    let next = page.finish(&mut items, |d| d.slug.clone());
    Ok((items, next))
}

fn yaml_key(dashboard_id: Uuid, version: i32) -> String {
    format!("dashboards/{dashboard_id}/v{version}.yaml")
}

async fn reload(client: &impl deadpool_postgres::GenericClient, id: Uuid) -> ApiResult<Dashboard> {
    let row = client
        .query_one(
            &format!("SELECT {DASHBOARD_COLUMNS} FROM dashboards d JOIN teams t ON t.id = d.team_id WHERE d.id = $1"),
            &[&id],
        )
        .await?;
    Ok(Dashboard::from_row(&row))
}

fn slug_taken(slug: &str) -> ApiError {
    ServiceError::Conflict(Clash::SlugTaken(slug.to_owned())).into()
}

impl Dashboards {
    /// The first of `base-2`, `base-3`, … that no dashboard holds (slugs are global), cut so
    /// that it stays within 64 characters.
    pub async fn free_slug(&self, base: &str) -> ApiResult<String> {
        let base = base.get(..58).unwrap_or(base).trim_end_matches('-');
        let client = self.0.db.get().await?;
        let like = format!(
            "{}-%",
            base.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let taken: std::collections::HashSet<String> = client
            .query("SELECT slug FROM dashboards WHERE slug LIKE $1", &[&like])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = (2..)
            .find(|n| !taken.contains(&format!("{base}-{n}")))
            .unwrap_or(2);
        Ok(format!("{base}-{n}"))
    }

    /// Stores a new dashboard (version 1).
    pub async fn create(
        &self,
        team_id: Uuid,
        user: &CurrentUser,
        meta: &DashboardMeta,
        yaml: &str,
    ) -> ApiResult<Dashboard> {
        let mut client = self.0.db.get().await?;
        let id = Uuid::now_v7();
        let key = yaml_key(id, 1);
        let tx = client.transaction().await?;
        let inserted = tx
        .execute(
            "INSERT INTO dashboards (id, team_id, connection_id, slug, title, description, view_type, owner_user_id, \
                                     version, yaml_key, refresh_every_secs, cache_ttl_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11)",
            &[
                &id,
                &team_id,
                &meta.connection_id,
                &meta.slug,
                &meta.title,
                &meta.description,
                &meta.view_type,
                &user.id,
                &key,
                &meta.refresh_every_secs,
                &meta.cache_ttl_secs,
            ],
        )
        .await;
        if let Err(e) = inserted {
            return Err(match unique_violation(&e) {
                Some("dashboards_slug_key") => slug_taken(&meta.slug),
                _ => e.into(),
            });
        }
        tx.execute(
        "INSERT INTO dashboard_versions (dashboard_id, version, yaml_key, sha256, size_bytes, created_by) \
         VALUES ($1, 1, $2, $3, $4, $5)",
        &[&id, &key, &sha256_hex(yaml.as_bytes()), &i32::try_from(yaml.len()).unwrap_or(i32::MAX), &user.id],
    )
    .await?;
        self.0
            .yamls
            .create(&key, Bytes::copy_from_slice(yaml.as_bytes()))
            .await
            .map_err(|e| ApiError::from(ServiceError::unavailable(e)))?;
        // Read inside the transaction: the answer is what this request wrote.
        let created = reload(&tx, id).await?;
        if let Err(e) = tx.commit().await {
            let _ = self.0.yamls.delete(&key).await;
            return Err(e.into());
        }
        Ok(created)
    }
}

impl Dashboards {
    /// Stores a new version of `current` (the caller checked roles), if the dashboard is
    /// still at one of `expected` (when given), and unless `yaml` is the current version's
    /// own text: then nothing is written, and the answer is the dashboard as it is.
    pub async fn update(
        &self,
        current: &Dashboard,
        user: &CurrentUser,
        meta: &DashboardMeta,
        yaml: &str,
        expected: Option<&[i32]>,
    ) -> ApiResult<Dashboard> {
        let mut client = self.0.db.get().await?;
        let tx = client.transaction().await?;
        // The lock first, alone: a join in the locking statement would be re-checked against
        // the row a concurrent writer just committed, and find no version to join.
        let version: i32 = tx
            .query_opt(
                "SELECT version FROM dashboards WHERE id = $1 FOR UPDATE",
                &[&current.id],
            )
            .await?
            .ok_or_else(dashboard_not_found)?
            .get("version");
        if let Some(expected) = expected
            && !expected.contains(&version)
        {
            return Err(ServiceError::VersionMismatch { current: version }.into());
        }
        let sha256: String = tx
            .query_one(
                "SELECT sha256 FROM dashboard_versions WHERE dashboard_id = $1 AND version = $2",
                &[&current.id, &version],
            )
            .await?
            .get("sha256");
        if sha256 == sha256_hex(yaml.as_bytes()) {
            return reload(&tx, current.id).await;
        }
        let next = version + 1;
        let key = yaml_key(current.id, next);
        tx.execute(
        "UPDATE dashboards SET version = $2, yaml_key = $3, connection_id = $4, title = $5, description = $6, \
         view_type = $7, refresh_every_secs = $8, cache_ttl_secs = $9, updated_at = now() WHERE id = $1",
        &[
            &current.id,
            &next,
            &key,
            &meta.connection_id,
            &meta.title,
            &meta.description,
            &meta.view_type,
            &meta.refresh_every_secs,
            &meta.cache_ttl_secs,
        ],
    )
    .await?;
        tx.execute(
        "INSERT INTO dashboard_versions (dashboard_id, version, yaml_key, sha256, size_bytes, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&current.id, &next, &key, &sha256_hex(yaml.as_bytes()), &i32::try_from(yaml.len()).unwrap_or(i32::MAX), &user.id],
    )
    .await?;
        match self
            .0
            .yamls
            .create(&key, Bytes::copy_from_slice(yaml.as_bytes()))
            .await
        {
            Ok(_) => {}
            // A leftover of an update that never committed: this version number is ours now.
            Err(BlobError::AlreadyExists(_)) => {
                self.0
                    .yamls
                    .put(&key, Bytes::copy_from_slice(yaml.as_bytes()))
                    .await
                    .map_err(|e| ApiError::from(ServiceError::unavailable(e)))?;
            }
            Err(e) => return Err(ServiceError::unavailable(e).into()),
        }
        // Read inside the transaction, under the row lock: the version and ETag answered are
        // the ones this request created, not a concurrent writer's that committed just after.
        let updated = reload(&tx, current.id).await?;
        if let Err(e) = tx.commit().await {
            let _ = self.0.yamls.delete(&key).await;
            return Err(e.into());
        }
        // Readers of this process see the new version at once (others within
        // `serving::ACCESS_STALENESS`).
        self.0.caches.access_changed();
        Ok(updated)
    }
}

impl Dashboards {
    /// The YAML of the current version, or of `version`.
    pub async fn yaml(
        &self,
        dashboard: &Dashboard,
        version: Option<i32>,
    ) -> ApiResult<(i32, Bytes)> {
        let (version, key) = match version {
            None => (dashboard.version, dashboard.yaml_key.clone()),
            Some(v) => {
                let client = self.0.db.get().await?;
                let row = client
                .query_opt(
                    "SELECT yaml_key FROM dashboard_versions WHERE dashboard_id = $1 AND version = $2",
                    &[&dashboard.id, &v],
                )
                .await?
                .ok_or_else(|| ApiError::from(ServiceError::NotFound(Missing::Version(v))))?;
                (v, row.get(0))
            }
        };
        let blob = self.0.yamls.get(&key).await.map_err(|e| match e {
            BlobError::NotFound(_) => ApiError::from(ServiceError::internal(anyhow::anyhow!(
                "the YAML of {} v{version} is missing",
                dashboard.slug
            ))),
            other => ServiceError::unavailable(other).into(),
        })?;
        Ok((version, blob.bytes))
    }
}

impl Dashboards {
    /// Deletes the dashboard: its rows first (so it is gone at once), then every object it had
    /// (YAML versions and cached results); objects that cannot be deleted are logged. Of
    /// concurrent deletes one succeeds and the others find nothing (404).
    pub async fn delete(&self, dashboard: &Dashboard) -> ApiResult<()> {
        let mut client = self.0.db.get().await?;
        let tx = client.transaction().await?;
        tx.query_opt(
            "SELECT id FROM dashboards WHERE id = $1 FOR UPDATE",
            &[&dashboard.id],
        )
        .await?
        .ok_or_else(dashboard_not_found)?;
        let yaml_keys: Vec<String> = tx
            .query(
                "SELECT yaml_key FROM dashboard_versions WHERE dashboard_id = $1",
                &[&dashboard.id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let cache_keys: Vec<String> = tx
            .query(
                "SELECT blob_key FROM query_cache WHERE dashboard_id = $1",
                &[&dashboard.id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let deleted = tx
            .execute("DELETE FROM dashboards WHERE id = $1", &[&dashboard.id])
            .await?;
        if deleted == 0 {
            return Err(dashboard_not_found());
        }
        tx.commit().await?;
        drop(client);
        self.0.caches.access_changed();
        self.0.caches.forget_dashboard(dashboard.id).await;
        for key in &yaml_keys {
            if let Err(e) = self.0.yamls.delete(key).await {
                tracing::error!(error = %e, key, "orphaned dashboard YAML");
            }
        }
        for key in &cache_keys {
            if let Err(e) = self.0.cache.delete(key).await {
                tracing::warn!(error = %e, key, "orphaned cached result");
            }
        }
        Ok(())
    }
}

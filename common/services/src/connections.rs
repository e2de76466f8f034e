//! Connections as every function sees them: the row (with tenancy), and the warehouse it
//! opens, with its sealed credentials loaded and decrypted only when needed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{Clash, ServiceError, ServiceResult};
use deadpool_postgres::Pool;
use edge::{
    ApiError, ApiResult, CurrentUser,
    tenancy::{require, require_team_role},
};

use platform::{
    blob::BlobError, blob::BlobStore, keyring, keyring::Binding, keyring::Envelope,
    keyring::KeyRing, keyring::KeyRingError, warehouse::AccessCheck, warehouse::ColumnInfo,
    warehouse::DatasetInfo, warehouse::Dialect, warehouse::DryRun, warehouse::Limits,
    warehouse::Param, warehouse::QueryResult, warehouse::TableInfo, warehouse::Warehouse,
    warehouse::WarehouseError, warehouse::bigquery::BigQueryWarehouse,
    warehouse::postgres::ConnectPolicy, warehouse::postgres::PostgresCredentials,
    warehouse::postgres::PostgresWarehouse,
};

use base::domain::Role;

use settings::WarehouseSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    PendingValidation,
    Validated,
    Failed,
}

impl ConnectionStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "validated" => Self::Validated,
            "failed" => Self::Failed,
            _ => Self::PendingValidation,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingValidation => "pending_validation",
            Self::Validated => "validated",
            Self::Failed => "failed",
        }
    }
}

/// A connection as the API shows it: never the credentials.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub warehouse_type: Dialect,
    pub status: ConnectionStatus,
    /// Why the last validation failed (never contains the credentials).
    pub validation_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated_at: Option<OffsetDateTime>,
    /// Non-secret facts: `project_id`, `client_email` (BigQuery); `host`, `port`,
    /// `database`, `user` (Postgres).
    #[schema(value_type = ConnectionDetails)]
    pub details: serde_json::Value,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip)]
    pub credentials_key: String,
}

/// What [`Connection::details`] holds, by warehouse type (documentation).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ConnectionDetails {
    Bigquery {
        project_id: String,
        client_email: String,
    },
    Postgres {
        host: String,
        port: u16,
        database: String,
        user: String,
    },
}

pub const CONNECTION_COLUMNS: &str = "c.id, c.team_id, c.name, c.warehouse_type, c.status, c.validation_error, \
     c.validated_at, c.details, c.created_by, c.created_at, c.updated_at, c.credentials_key";

impl Connection {
    pub fn from_row(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            team_id: row.get("team_id"),
            name: row.get("name"),
            warehouse_type: Dialect::parse(row.get("warehouse_type")).unwrap_or(Dialect::Postgres),
            status: ConnectionStatus::parse(row.get("status")),
            validation_error: row.get("validation_error"),
            validated_at: row.get("validated_at"),
            details: row.get("details"),
            created_by: row.get("created_by"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            credentials_key: row.get("credentials_key"),
        }
    }
}

pub fn connection_not_found() -> ApiError {
    ServiceError::NotFound(crate::error::Missing::Connection).into()
}

/// The connection and the caller's role in its team; 404 for non-members, 403 below `needed`.
pub async fn load(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    user: &CurrentUser,
    needed: Role,
) -> ApiResult<(Connection, Role)> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {CONNECTION_COLUMNS}, m.role FROM connections c \
             LEFT JOIN team_members m ON m.team_id = c.team_id AND m.user_id = $2 WHERE c.id = $1"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&id, &user.id])
        .await?
        .ok_or_else(connection_not_found)?;
    let role = row.get::<_, Option<&str>>("role").and_then(Role::parse);
    let role = require(role, needed, connection_not_found)?;
    Ok((Connection::from_row(&row), role))
}

/// Where a connection's sealed credentials live in the credentials bucket.
pub fn credentials_key(team_id: Uuid, connection_id: Uuid) -> String {
    format!("teams/{team_id}/connections/{connection_id}/credentials.json")
}

// ------------------------------------------------------------------ the `connections` table
// Every statement on `connections` is here (the catalog's and the dashboards' tenancy joins
// aside).

/// A connection by id, with no tenancy check: for work that already holds the right to it
/// (serving a dashboard of its team, a scan job, a validation after [`load`]).
pub async fn by_id(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<Option<Connection>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|row| Connection::from_row(&row)))
}

/// The warehouse type of a connection, when it exists.
pub async fn dialect_of(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<Option<Dialect>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("SELECT warehouse_type FROM connections WHERE id = $1")
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|row| Dialect::parse(row.get("warehouse_type")).unwrap_or(Dialect::Postgres)))
}

/// What a new connection is made of (its credentials already sealed under `credentials_key`).
pub struct NewRow<'a> {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: &'a str,
    pub dialect: Dialect,
    pub credentials_key: &'a str,
    pub key_id: &'a str,
    pub details: &'a serde_json::Value,
    pub created_by: Uuid,
}

/// Inserts a connection; a name the team already uses is a 409.
pub async fn insert(
    client: &impl deadpool_postgres::GenericClient,
    new: &NewRow<'_>,
) -> ApiResult<Connection> {
    let inserted = client
        .query_one(
            &format!(
                "WITH c AS (INSERT INTO connections (id, team_id, name, warehouse_type, credentials_key, key_id, details, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *) SELECT {CONNECTION_COLUMNS} FROM c"
            ),
            &[
                &new.id,
                &new.team_id,
                &new.name,
                &new.dialect.as_str(),
                &new.credentials_key,
                &new.key_id,
                new.details,
                &new.created_by,
            ],
        )
        .await;
    match inserted {
        Ok(row) => Ok(Connection::from_row(&row)),
        Err(e) => Err(match storage::db::unique_violation(&e) {
            Some("connections_team_name_key") => {
                ServiceError::Conflict(Clash::ConnectionNameTaken(new.name.to_owned())).into()
            }
            _ => e.into(),
        }),
    }
}

/// A page of a team's connections, newest first (`after`: the last id of the page before).
pub async fn list_page(
    client: &impl deadpool_postgres::GenericClient,
    team_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Connection>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c WHERE c.team_id = $1 AND ($2::uuid IS NULL OR c.id < $2) \
             ORDER BY c.id DESC LIMIT $3"
        ))
        .await?;
    let rows = client.query(&stmt, &[&team_id, &after, &limit]).await?;
    Ok(rows.iter().map(Connection::from_row).collect())
}

/// Records a validation's outcome (`error`: why it failed, `None` when it passed).
pub async fn record_validation(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    status: ConnectionStatus,
    error: Option<&str>,
) -> Result<Connection, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "WITH c AS (UPDATE connections SET status = $2, validation_error = $3, \
                 validated_at = CASE WHEN $2 = 'validated' THEN now() ELSE validated_at END, updated_at = now() \
                 WHERE id = $1 RETURNING *) SELECT {CONNECTION_COLUMNS} FROM c"
            ),
            &[&id, &status.as_str(), &error],
        )
        .await?;
    Ok(Connection::from_row(&row))
}

/// Deletes a connection inside `tx` (locked first); dashboards still on it make it a 409.
pub async fn delete(tx: &deadpool_postgres::Transaction<'_>, id: Uuid) -> ApiResult<()> {
    tx.execute("SELECT 1 FROM connections WHERE id = $1 FOR UPDATE", &[&id])
        .await?;
    match tx
        .execute("DELETE FROM connections WHERE id = $1", &[&id])
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match storage::db::foreign_key_violation(&e) {
            Some(_) => ServiceError::Conflict(Clash::ConnectionInUse).into(),
            None => e.into(),
        }),
    }
}

pub fn keyring_error(e: KeyRingError) -> ApiError {
    ServiceError::from(e).into()
}

pub fn blob_error(e: BlobError) -> ApiError {
    ServiceError::from(e).into()
}

/// A warehouse whose error messages are scrubbed of the secrets it was opened with.
struct Redacting {
    inner: Arc<dyn Warehouse>,
    secrets: Vec<String>,
}

impl Redacting {
    fn clean(&self, e: WarehouseError) -> WarehouseError {
        let refs: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        e.redact(&refs)
    }
}

#[async_trait::async_trait]
impl Warehouse for Redacting {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }
    async fn check_access(&self) -> Vec<AccessCheck> {
        let refs: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        self.inner
            .check_access()
            .await
            .into_iter()
            .map(|mut c| {
                c.message = refs
                    .iter()
                    .filter(|s| s.len() >= 4)
                    .fold(c.message, |m, s| m.replace(s, "[redacted]"));
                c
            })
            .collect()
    }
    async fn dry_run(&self, sql: &str, params: &[Param]) -> Result<DryRun, WarehouseError> {
        self.inner
            .dry_run(sql, params)
            .await
            .map_err(|e| self.clean(e))
    }
    async fn query(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
    ) -> Result<QueryResult, WarehouseError> {
        self.inner
            .query(sql, params, limits)
            .await
            .map_err(|e| self.clean(e))
    }
    async fn list_datasets(&self) -> Result<Vec<DatasetInfo>, WarehouseError> {
        self.inner.list_datasets().await.map_err(|e| self.clean(e))
    }
    async fn list_tables(&self, dataset: &str) -> Result<Vec<TableInfo>, WarehouseError> {
        self.inner
            .list_tables(dataset)
            .await
            .map_err(|e| self.clean(e))
    }
    async fn table_columns(
        &self,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, WarehouseError> {
        self.inner
            .table_columns(dataset, table)
            .await
            .map_err(|e| self.clean(e))
    }
}

/// The secrets inside credentials, to scrub from messages.
fn secrets_of(dialect: Dialect, secret: &[u8]) -> Vec<String> {
    match dialect {
        Dialect::Postgres => {
            let Ok(credentials) = PostgresCredentials::from_secret(secret) else {
                return Vec::new();
            };
            let password = storage::db_tls::parse(&credentials.url).ok().and_then(|t| {
                t.config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            });
            password
                .into_iter()
                .chain([credentials.url.clone()])
                .collect()
        }
        Dialect::Bigquery => {
            let v: serde_json::Value = serde_json::from_slice(secret).unwrap_or_default();
            ["private_key", "private_key_id"]
                .iter()
                .filter_map(|k| v[*k].as_str().map(str::to_owned))
                .collect()
        }
    }
}

/// Opens a warehouse from plaintext credentials.
pub async fn connect(
    dialect: Dialect,
    secret: &[u8],
    settings: &WarehouseSettings,
) -> Result<Arc<dyn Warehouse>, WarehouseError> {
    let secrets = secrets_of(dialect, secret);
    let opened: Result<Arc<dyn Warehouse>, WarehouseError> = match dialect {
        Dialect::Postgres => {
            let credentials = PostgresCredentials::from_secret(secret)?;
            PostgresWarehouse::connect(
                &credentials,
                ConnectPolicy {
                    allow_private_hosts: settings.allow_private_hosts,
                    allow_plaintext: settings.allow_plaintext,
                },
            )
            .await
            .map(|w| Arc::new(w) as _)
        }
        Dialect::Bigquery => BigQueryWarehouse::from_service_account(
            secret,
            &settings.bigquery_api_url,
            &settings.gcp_token_uri,
        )
        .await
        .map(|w| Arc::new(w) as _),
    };
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let inner = opened.map_err(|e| e.redact(&refs))?;
    Ok(Arc::new(Redacting { inner, secrets }))
}

/// The connections service: the `connections` rows and their sealed credentials, and the
/// warehouses they open. Built from the pool, the credentials bucket, the key ring and the
/// warehouse settings; cheap to clone.
#[derive(Clone)]
pub struct Connections(Arc<ConnectionsInner>);

struct ConnectionsInner {
    db: Pool,
    credentials: Arc<dyn BlobStore>,
    key_ring: Arc<dyn KeyRing>,
    settings: WarehouseSettings,
    /// Opened warehouses, cached per connection (and credentials blob) so credentials are
    /// decrypted (one KMS call) and clients built once per few minutes, not per query.
    opened: moka::future::Cache<(Uuid, String), Arc<dyn Warehouse>>,
}

/// What a new connection is made of, its credentials still in the clear.
pub struct NewConnection {
    pub name: String,
    pub dialect: Dialect,
    pub secret: Zeroizing<Vec<u8>>,
    /// Non-secret facts about it (see [`Connection::details`]).
    pub details: serde_json::Value,
}

/// What a validation concluded.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationOutcome {
    /// Every check passed: the status is `validated`.
    Validated,
    /// The warehouse refused something (credentials, permissions): the status is `failed`.
    Failed,
    /// The warehouse could not be reached or was too slow: the status is left as it was,
    /// since that says nothing about the credentials. Try again later.
    Unreachable,
}

/// A validation's outcome, with the connection as it now is.
pub struct Validation {
    pub connection: Connection,
    pub outcome: ValidationOutcome,
    pub checks: Vec<AccessCheck>,
}

/// Validation must answer within API Gateway's 29 s.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(25);

impl Connections {
    pub fn new(
        db: Pool,
        credentials: Arc<dyn BlobStore>,
        key_ring: Arc<dyn KeyRing>,
        settings: WarehouseSettings,
    ) -> Self {
        Self(Arc::new(ConnectionsInner {
            db,
            credentials,
            key_ring,
            settings,
            opened: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }))
    }

    /// The warehouse settings the connections open with (limits, allowed hosts).
    pub fn settings(&self) -> &WarehouseSettings {
        &self.0.settings
    }

    /// The connection and the caller's role in its team; 404 for non-members, 403 below
    /// `needed`.
    pub async fn get(
        &self,
        id: Uuid,
        user: &CurrentUser,
        needed: Role,
    ) -> ApiResult<(Connection, Role)> {
        let client = self.0.db.get().await?;
        load(&client, id, user, needed).await
    }

    /// A page of the team's connections (members).
    pub async fn list(
        &self,
        team_id: Uuid,
        user: &CurrentUser,
        after: Option<Uuid>,
        limit: i64,
    ) -> ApiResult<Vec<Connection>> {
        let client = self.0.db.get().await?;
        require_team_role(&client, team_id, user, Role::Viewer).await?;
        Ok(list_page(&client, team_id, after, limit).await?)
    }

    /// Creates a connection (admins): its credentials are sealed and stored, then its row
    /// written. Nothing half-written: the sealed blob goes if the row cannot be made.
    pub async fn create(
        &self,
        team_id: Uuid,
        user: &CurrentUser,
        new: &NewConnection,
    ) -> ApiResult<Connection> {
        {
            let client = self.0.db.get().await?;
            require_team_role(&client, team_id, user, Role::Admin).await?;
        }
        let id = Uuid::now_v7();
        // Sealing asks the key ring (a remote call): no pooled connection is held meanwhile.
        let (key, key_id) = self.store_credentials(team_id, id, &new.secret).await?;
        let inserted = async {
            let client = self.0.db.get().await?;
            insert(
                &client,
                &NewRow {
                    id,
                    team_id,
                    name: &new.name,
                    dialect: new.dialect,
                    credentials_key: &key,
                    key_id: &key_id,
                    details: &new.details,
                    created_by: user.id,
                },
            )
            .await
        }
        .await;
        match inserted {
            Ok(connection) => {
                tracing::info!(connection_id = %id, %team_id, warehouse_type = %new.dialect, "connection created");
                Ok(connection)
            }
            Err(e) => {
                if let Err(cleanup) = self.0.credentials.delete(&key).await {
                    tracing::error!(error = %cleanup, "removing credentials of a connection that was not created");
                }
                Err(e)
            }
        }
    }

    /// Validates a connection (editors): decrypts its credentials, connects, and checks
    /// the permissions Bridge needs. The status becomes `validated` or `failed`, or stays
    /// as it was when the warehouse could not be reached.
    pub async fn validate(&self, id: Uuid, user: &CurrentUser) -> ApiResult<Validation> {
        // No pooled connection is held while the key ring and the warehouse are asked.
        let (connection, _) = self.get(id, user, Role::Editor).await?;
        self.forget(id).await;
        let secret = self.load_credentials(&connection).await?;
        let checks = tokio::time::timeout(VALIDATION_TIMEOUT, async {
            match connect(connection.warehouse_type, &secret, &self.0.settings).await {
                Ok(warehouse) => warehouse.check_access().await,
                Err(e) => vec![AccessCheck::failed("connect", &e)],
            }
        })
        .await
        .unwrap_or_else(|_| {
            vec![AccessCheck::failed(
                "timeout",
                &WarehouseError::Timeout(VALIDATION_TIMEOUT),
            )]
        });
        drop(secret);
        let failed = checks.iter().find(|c| !c.ok);
        let client = self.0.db.get().await?;
        let (connection, outcome) = match failed {
            // Unreachable or slow says nothing about the credentials: the status stays.
            Some(check) if check.transient() => {
                let connection = by_id(&client, id).await?.ok_or_else(connection_not_found)?;
                (connection, ValidationOutcome::Unreachable)
            }
            Some(check) => {
                let error = format!("{}: {}", check.name, check.message);
                let connection =
                    record_validation(&client, id, ConnectionStatus::Failed, Some(&error)).await?;
                (connection, ValidationOutcome::Failed)
            }
            None => {
                let connection =
                    record_validation(&client, id, ConnectionStatus::Validated, None).await?;
                (connection, ValidationOutcome::Validated)
            }
        };
        tracing::info!(connection_id = %id, outcome = ?outcome, "connection validated");
        Ok(Validation {
            connection,
            outcome,
            checks,
        })
    }

    /// Deletes a connection (admins): its sealed credentials, its row and everything that
    /// hangs off it. Returns the connection as it was.
    pub async fn delete(&self, id: Uuid, user: &CurrentUser) -> ApiResult<Connection> {
        let mut client = self.0.db.get().await?;
        let tx = client.transaction().await?;
        let (connection, _) = load(&tx, id, user, Role::Admin).await?;
        delete(&tx, id).await?;
        // The blob goes before the commit: if it cannot be deleted, the row stays and the
        // request can be retried (deleting is idempotent).
        self.0
            .credentials
            .delete(&connection.credentials_key)
            .await
            .map_err(blob_error)?;
        tx.commit().await?;
        self.forget(id).await;
        tracing::info!(connection_id = %id, "connection deleted");
        Ok(connection)
    }

    /// The connection's warehouse, opened (or taken from the cache) with its sealed
    /// credentials, metered: every query and dry run is written to the cost ledger and held
    /// to the team's daily warehouse budget (see [`crate::usage`]).
    pub async fn warehouse(&self, connection: &Connection) -> ServiceResult<Arc<dyn Warehouse>> {
        let opened = self.opened(connection).await?;
        Ok(crate::usage::Metered::wrap(
            opened,
            crate::usage::Meter {
                db: self.0.db.clone(),
                team_id: connection.team_id,
                connection_id: connection.id,
            },
        ))
    }

    async fn opened(&self, connection: &Connection) -> ServiceResult<Arc<dyn Warehouse>> {
        let key = (connection.id, connection.credentials_key.clone());
        self.0
            .opened
            .try_get_with(key, async {
                let secret = self.load_credentials(connection).await?;
                Ok::<_, ServiceError>(
                    connect(connection.warehouse_type, &secret, &self.0.settings).await?,
                )
            })
            .await
            .map_err(ServiceError::from_shared)
    }

    /// Drops the connection's opened warehouses (validation reconnects; deletion ends them).
    pub async fn forget(&self, connection_id: Uuid) {
        crate::caches::invalidate_where(&self.0.opened, |(id, _), _| *id == connection_id).await;
    }

    /// Seals and stores credentials; only if nothing is stored there yet.
    pub async fn store_credentials(
        &self,
        team_id: Uuid,
        connection_id: Uuid,
        secret: &[u8],
    ) -> ApiResult<(String, String)> {
        let envelope = keyring::seal(
            &*self.0.key_ring,
            &Binding::credential(team_id, connection_id),
            secret,
        )
        .await
        .map_err(keyring_error)?;
        let key = credentials_key(team_id, connection_id);
        let bytes =
            serde_json::to_vec(&envelope).map_err(|e| ApiError::from(ServiceError::internal(e)))?;
        self.0
            .credentials
            .create(&key, Bytes::from(bytes))
            .await
            .map_err(blob_error)?;
        Ok((key, envelope.key_id))
    }

    /// Loads and opens a connection's credentials.
    pub async fn load_credentials(
        &self,
        connection: &Connection,
    ) -> ServiceResult<Zeroizing<Vec<u8>>> {
        let blob = self.0.credentials.get(&connection.credentials_key).await?;
        let envelope: Envelope = serde_json::from_slice(&blob.bytes).map_err(|e| {
            ServiceError::internal(
                anyhow::Error::new(e).context("the stored envelope is unreadable"),
            )
        })?;
        Ok(keyring::open(
            &*self.0.key_ring,
            &Binding::credential(connection.team_id, connection.id),
            &envelope,
        )
        .await?)
    }
}

/// A warehouse's refusal as an HTTP problem (see [`ServiceError`] for the statuses).
pub fn warehouse_error(e: WarehouseError) -> ApiError {
    ServiceError::Warehouse(e).into()
}

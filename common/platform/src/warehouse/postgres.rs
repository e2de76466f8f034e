//! Postgres as a warehouse (a "dataset" is a schema). Queries run in `READ ONLY`
//! transactions under `statement_timeout`; a dry run prepares the statement (its output
//! columns, without running it) and asks `EXPLAIN (FORMAT JSON)` for the rows and widths
//! the scans expect, which stand in for bytes. System schemas are never listed.

use std::{net::IpAddr, time::Duration};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::{Number, Value};
use tokio_postgres::{
    error::SqlState,
    types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked},
};

use super::{
    AccessCheck, Column, ColumnInfo, DatasetInfo, Dialect, DryRun, Limits, Param, ParamValue,
    QueryResult, ResultBudget, TableInfo, Warehouse, WarehouseError, short,
};

/// Rows fetched from a portal at a time.
const FETCH_BATCH: usize = 1_000;

pub struct PostgresWarehouse {
    pool: Pool,
    database: String,
}

/// Is `ip` somewhere a customer's warehouse should not be (loopback, private, link-local…)?
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// What the connection may do, from the warehouse settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPolicy {
    /// May the host be on a loopback or private address?
    pub allow_private_hosts: bool,
    /// May the connection travel in plain text (`sslmode` disable, allow or prefer)?
    pub allow_plaintext: bool,
}

impl ConnectPolicy {
    /// Anything goes: local development and tests.
    pub const LOCAL: Self = Self {
        allow_private_hosts: true,
        allow_plaintext: true,
    };
}

/// A Postgres warehouse's credentials as sealed: `{"url", "ca_cert"?}`, or (connections
/// made before CA certificates could be given) the URL alone.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PostgresCredentials {
    pub url: String,
    /// PEM certificates the server's must chain to (`verify-ca`, `verify-full`, `require`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for PostgresCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCredentials")
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresCredentials {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.url.zeroize();
    }
}

impl PostgresCredentials {
    /// A URL alone, with no CA certificate.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_cert: None,
        }
    }

    pub fn from_secret(secret: &[u8]) -> Result<Self, WarehouseError> {
        if secret.first() == Some(&b'{') {
            return serde_json::from_slice(secret).map_err(|_| {
                WarehouseError::Credentials("the stored credentials are not readable".into())
            });
        }
        let url = std::str::from_utf8(secret)
            .map_err(|_| WarehouseError::Credentials("the stored URL is not text".into()))?;
        Ok(Self {
            url: url.to_owned(),
            ca_cert: None,
        })
    }

    pub fn to_secret(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl PostgresWarehouse {
    /// Prepares a pool for `credentials`. Outside `policy.allow_private_hosts`, every address
    /// the host resolves to must be public, and the connection is pinned to the address that
    /// was checked. TLS as the URL's `sslmode` says (`verify-full` by default off loopback),
    /// against the credentials' CA or the system's roots.
    pub async fn connect(
        credentials: &PostgresCredentials,
        policy: ConnectPolicy,
    ) -> Result<Self, WarehouseError> {
        let mut target = storage::db_tls::parse(&credentials.url)
            .map_err(|m| WarehouseError::Credentials(format!("the connection URL {m}")))?;
        if target.ssl_mode.may_be_plain() && !policy.allow_plaintext {
            return Err(WarehouseError::PermissionDenied(format!(
                "sslmode={} could send the data in plain text, which is refused here: use \
                 verify-full (the default), verify-ca or require",
                target.ssl_mode.as_str()
            )));
        }
        let config = &mut target.config;
        let database = config.get_dbname().map(str::to_owned).ok_or_else(|| {
            WarehouseError::Credentials("the connection URL names no database".into())
        })?;
        if !policy.allow_private_hosts {
            let hosts = config.get_hosts().to_vec();
            let ports = config.get_ports().to_vec();
            let mut pinned = Vec::new();
            for (i, host) in hosts.iter().enumerate() {
                let tokio_postgres::config::Host::Tcp(name) = host else {
                    return Err(WarehouseError::PermissionDenied(
                        "Unix-socket warehouses are not allowed here".into(),
                    ));
                };
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                let addrs: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|_| {
                        WarehouseError::Unavailable(format!("the host `{name}` does not resolve"))
                    })?
                    .map(|a| a.ip())
                    .collect();
                match addrs.first() {
                    Some(ip) if !addrs.iter().any(|a| is_private(*a)) => pinned.push(*ip),
                    Some(_) => {
                        return Err(WarehouseError::PermissionDenied(format!(
                            "the host `{name}` resolves to a private or loopback address, which is not allowed"
                        )));
                    }
                    None => {
                        return Err(WarehouseError::Unavailable(format!(
                            "the host `{name}` does not resolve"
                        )));
                    }
                }
            }
            for ip in pinned {
                config.hostaddr(ip);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("bridge");
        config.keepalives(true);
        let roots = match credentials.ca_cert.as_deref() {
            Some(pem) => storage::db_tls::Roots::Pem(pem.as_bytes()),
            None => storage::db_tls::Roots::System,
        };
        let tls = storage::db_tls::connector(&mut target, roots)
            .map_err(|e| WarehouseError::Credentials(short(format!("{e:#}"))))?;
        let manager = Manager::from_config(
            target.config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| WarehouseError::Unavailable(short(e)))?;
        Ok(Self { pool, database })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, WarehouseError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => map_pg(e),
            other => WarehouseError::Unavailable(short(other)),
        })
    }
}

/// What a query can leave behind on its session that a rollback does not undo: advisory
/// locks, settings, listeners, temporary objects. Cleared after every use, so nothing of one
/// query reaches the next on a pooled connection.
const RESET_SESSION: &str =
    "SELECT pg_advisory_unlock_all(); RESET ALL; UNLISTEN *; DISCARD SEQUENCES; DISCARD TEMP";

/// Runs `$body` (which may use `?`) in a read-only transaction with `statement_timeout` set,
/// bounded by a client-side timeout too (a stalled server cannot hold a request); always
/// rolls back, then resets the session. A connection that timed out or cannot be reset
/// leaves the pool instead of carrying anything to the next query.
macro_rules! read_only {
    ($self:ident, $timeout:expr, |$tx:ident| $body:block) => {async {
        let timeout: Duration = $timeout;
        let mut client = $self.client().await?;
        let work = async {
            let owned = client.build_transaction().read_only(true).start().await.map_err(map_pg)?;
            owned
                .batch_execute(&format!("SET LOCAL statement_timeout = {}", timeout.as_millis().max(1)))
                .await
                .map_err(map_pg)?;
            let $tx = &owned;
            let out: Result<_, WarehouseError> = async $body.await;
            let _ = owned.rollback().await;
            out
        };
        match tokio::time::timeout(timeout + Duration::from_secs(2), work).await {
            Ok(out) => {
                if client.batch_execute(RESET_SESSION).await.is_err() {
                    drop(deadpool_postgres::Object::take(client));
                }
                out
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(WarehouseError::Timeout(timeout))
            }
        }
    }.await};
}

fn map_pg(e: tokio_postgres::Error) -> WarehouseError {
    let Some(db) = e.as_db_error() else {
        return if e.is_closed() {
            WarehouseError::Unavailable("the connection closed".into())
        } else {
            WarehouseError::Unavailable(short(e))
        };
    };
    let code = db.code().code();
    let msg = short(db.message());
    match db.code() {
        c if *c == SqlState::QUERY_CANCELED => WarehouseError::Timeout(Duration::ZERO),
        c if *c == SqlState::INSUFFICIENT_PRIVILEGE => WarehouseError::PermissionDenied(msg),
        c if *c == SqlState::INVALID_CATALOG_NAME => WarehouseError::NotFound(msg),
        c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            WarehouseError::InvalidQuery(format!("only read-only queries may run: {msg}"))
        }
        _ if code.starts_with("28") => WarehouseError::Credentials(msg),
        _ if code.starts_with("42") || code.starts_with("22") || code.starts_with("0A") => {
            WarehouseError::InvalidQuery(msg)
        }
        _ => WarehouseError::Unavailable(msg),
    }
}

fn param_type(v: &ParamValue) -> Type {
    match v {
        ParamValue::Bool(_) => Type::BOOL,
        ParamValue::Int(_) => Type::INT8,
        ParamValue::Float(_) => Type::FLOAT8,
        ParamValue::String(_) => Type::TEXT,
        ParamValue::Date(_) => Type::DATE,
        ParamValue::Timestamp(_) => Type::TIMESTAMPTZ,
    }
}

#[derive(Debug)]
struct Bound<'a>(&'a ParamValue);

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            ParamValue::Bool(v) => v.to_sql(ty, out),
            ParamValue::Int(v) => v.to_sql(ty, out),
            ParamValue::Float(v) => v.to_sql(ty, out),
            ParamValue::String(v) => v.to_sql(ty, out),
            ParamValue::Date(v) => v.to_sql(ty, out),
            ParamValue::Timestamp(v) => v.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Any column value, decoded from Postgres's binary format into JSON.
struct Cell(Value);

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// NUMERIC's binary form (base-10000 digits) as a decimal string.
fn numeric_string(raw: &[u8]) -> Result<String, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short numeric".into())
    };
    let (ndigits, weight, sign, dscale) = (
        word(0)? as usize,
        word(1)? as i16,
        word(2)?,
        word(3)? as usize,
    );
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |i: i32| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        if i < 0 || i as usize >= ndigits {
            Ok(0)
        } else {
            word(4 + i as usize)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=i32::from(weight) {
            let d = digit(i)?;
            if i == 0 {
                s.push_str(&d.to_string())
            } else {
                s.push_str(&format!("{d:04}"))
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = i32::from(weight) + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)?));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let v = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
            Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
            Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
            Type::OID => Value::from(u32::from_sql(ty, raw)?),
            Type::FLOAT4 => number(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => number(f64::from_sql(ty, raw)?),
            // Every digit, as a string: a JSON number would be read as a double.
            Type::NUMERIC => Value::String(numeric_string(raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Value::String(String::from_sql(ty, raw)?)
            }
            Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
            Type::DATE => Value::String(time::Date::from_sql(ty, raw)?.to_string()),
            Type::TIME => Value::String(time::Time::from_sql(ty, raw)?.to_string()),
            Type::TIMESTAMP => {
                let t = time::PrimitiveDateTime::from_sql(ty, raw)?;
                Value::String(
                    t.assume_utc()
                        .format(&time::format_description::well_known::Rfc3339)?
                        .trim_end_matches('Z')
                        .to_owned(),
                )
            }
            Type::TIMESTAMPTZ => Value::String(
                time::OffsetDateTime::from_sql(ty, raw)?
                    .format(&time::format_description::well_known::Rfc3339)?,
            ),
            Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
            Type::BYTEA => Value::String(STANDARD.encode(raw)),
            _ => match ty.kind() {
                Kind::Enum(_) => Value::String(std::str::from_utf8(raw)?.to_owned()),
                Kind::Array(_) => Value::Array(
                    Vec::<Cell>::from_sql(ty, raw)?
                        .into_iter()
                        .map(|c| c.0)
                        .collect(),
                ),
                Kind::Domain(inner) => Cell::from_sql(inner, raw)?.0,
                _ if ty.name() == "citext" => Value::String(std::str::from_utf8(raw)?.to_owned()),
                _ => {
                    return Err(format!(
                        "columns of type `{}` cannot be served; cast it in SQL (e.g. `col::text`)",
                        ty.name()
                    )
                    .into());
                }
            },
        };
        Ok(Cell(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Sums rows × width over the plan's scan nodes: what the scans are expected to read.
fn plan_bytes(plan: &Value) -> u64 {
    fn walk(node: &Value, total: &mut f64) {
        let kind = node["Node Type"].as_str().unwrap_or("");
        if kind.contains("Scan") {
            let rows = node["Plan Rows"].as_f64().unwrap_or(0.0);
            let width = node["Plan Width"].as_f64().unwrap_or(0.0);
            *total += rows * width;
        }
        if let Some(children) = node["Plans"].as_array() {
            for c in children {
                walk(c, total);
            }
        }
    }
    let root = &plan[0]["Plan"];
    let mut total = 0.0;
    walk(root, &mut total);
    if total == 0.0 {
        total =
            root["Plan Rows"].as_f64().unwrap_or(0.0) * root["Plan Width"].as_f64().unwrap_or(0.0);
    }
    total.max(0.0) as u64
}

async fn estimate(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[Param],
) -> Result<u64, WarehouseError> {
    let types: Vec<Type> = params.iter().map(|p| param_type(&p.value)).collect();
    let stmt = tx
        .prepare_typed(&format!("EXPLAIN (FORMAT JSON) {sql}"), &types)
        .await
        .map_err(map_pg)?;
    let bound: Vec<Bound<'_>> = params.iter().map(|p| Bound(&p.value)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    let row = tx.query_one(&stmt, &refs).await.map_err(map_pg)?;
    let plan: Value = row
        .try_get(0)
        .map_err(|e| WarehouseError::Unavailable(short(e)))?;
    Ok(plan_bytes(&plan))
}

fn columns_of(stmt: &tokio_postgres::Statement) -> Vec<Column> {
    stmt.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            data_type: c.type_().name().to_owned(),
        })
        .collect()
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
impl Warehouse for PostgresWarehouse {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    #[tracing::instrument(name = "warehouse.check_access", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn check_access(&self) -> Vec<AccessCheck> {
        let mut checks = Vec::new();
        let connected = read_only!(self, Duration::from_secs(10), |tx| {
            let row = tx
                .query_one("SELECT current_user::text, version()", &[])
                .await
                .map_err(map_pg)?;
            Ok::<_, WarehouseError>(format!("connected as {}", row.get::<_, String>(0)))
        });
        let ok = connected.is_ok();
        checks.push(AccessCheck::of("connect", connected));
        if ok {
            let schemas = self.list_datasets().await.and_then(|s| {
                if s.is_empty() {
                    Err(WarehouseError::PermissionDenied(
                        "the role can read no schema".into(),
                    ))
                } else {
                    Ok(format!("{} readable schemas", s.len()))
                }
            });
            checks.push(AccessCheck::of("list_schemas", schemas));
        }
        checks
    }

    #[tracing::instrument(name = "warehouse.dry_run", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn dry_run(&self, sql: &str, params: &[Param]) -> Result<DryRun, WarehouseError> {
        read_only!(self, METADATA_TIMEOUT, |tx| {
            let types: Vec<Type> = params.iter().map(|p| param_type(&p.value)).collect();
            let stmt = tx.prepare_typed(sql, &types).await.map_err(map_pg)?;
            let bytes = estimate(tx, sql, params).await?;
            Ok(DryRun {
                bytes,
                columns: columns_of(&stmt),
            })
        })
    }

    #[tracing::instrument(name = "warehouse.query", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn query(
        &self,
        sql: &str,
        params: &[Param],
        limits: &Limits,
    ) -> Result<QueryResult, WarehouseError> {
        read_only!(self, limits.timeout, |tx| {
            let estimated = estimate(tx, sql, params).await?;
            if estimated > limits.max_bytes {
                return Err(WarehouseError::BytesLimit {
                    limit: limits.max_bytes,
                    estimated: Some(estimated),
                });
            }
            let types: Vec<Type> = params.iter().map(|p| param_type(&p.value)).collect();
            let stmt = tx.prepare_typed(sql, &types).await.map_err(map_pg)?;
            let columns = columns_of(&stmt);
            let bound: Vec<Bound<'_>> = params.iter().map(|p| Bound(&p.value)).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            // A portal fetches in batches, only what is kept (plus one row, to know whether
            // more existed), and stops as soon as the rows so far are over the size cap.
            let portal = tx.bind(&stmt, &refs).await.map_err(map_pg)?;
            let mut budget = ResultBudget::new(limits.max_result_bytes);
            let mut rows: Vec<Vec<Value>> = Vec::new();
            let mut truncated = false;
            loop {
                let want = (limits.max_rows + 1 - rows.len()).min(FETCH_BATCH);
                let fetch = i32::try_from(want).unwrap_or(i32::MAX);
                let fetched = tx.query_portal(&portal, fetch).await.map_err(map_pg)?;
                let exhausted = fetched.len() < want;
                for row in &fetched {
                    if rows.len() == limits.max_rows {
                        truncated = true;
                        break;
                    }
                    let mut out = Vec::with_capacity(columns.len());
                    for i in 0..columns.len() {
                        let cell: Cell = row.try_get(i).map_err(|e| {
                            WarehouseError::Unsupported(match std::error::Error::source(&e) {
                                Some(s) => s.to_string(),
                                None => short(e),
                            })
                        })?;
                        out.push(cell.0);
                    }
                    budget.add(&out)?;
                    rows.push(out);
                }
                if truncated || exhausted {
                    break;
                }
            }
            Ok(QueryResult {
                columns,
                rows,
                bytes_scanned: Some(estimated),
                truncated,
            })
        })
        .map_err(|e| match e {
            WarehouseError::Timeout(_) => WarehouseError::Timeout(limits.timeout),
            other => other,
        })
    }

    #[tracing::instrument(name = "warehouse.list_datasets", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn list_datasets(&self) -> Result<Vec<DatasetInfo>, WarehouseError> {
        let database = self.database.clone();
        read_only!(self, METADATA_TIMEOUT, |tx| {
            let rows = tx
                .query(
                    "SELECT n.nspname::text, obj_description(n.oid, 'pg_namespace') FROM pg_namespace n \
                     WHERE has_schema_privilege(n.oid, 'USAGE') \
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                       AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
                     ORDER BY 1",
                    &[],
                )
                .await
                .map_err(map_pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let name: String = r.get(0);
                    DatasetInfo {
                        fully_qualified_name: format!("{database}.{name}"),
                        name,
                        description: r.get(1),
                        location: None,
                        last_modified: None,
                    }
                })
                .collect())
        })
    }

    #[tracing::instrument(name = "warehouse.list_tables", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn list_tables(&self, dataset: &str) -> Result<Vec<TableInfo>, WarehouseError> {
        let database = self.database.clone();
        read_only!(self, METADATA_TIMEOUT, |tx| {
            let rows = tx
                .query(
                    "SELECT c.relname::text, c.relkind::text, \
                            CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 END, \
                            pg_total_relation_size(c.oid), \
                            CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
                            (SELECT md5(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' \
                                                   || a.attnotnull::text || ' ' || coalesce(col_description(c.oid, a.attnum), ''), \
                                                   E'\\n' ORDER BY a.attnum)) \
                             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns_digest \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
                       AND has_table_privilege(c.oid, 'SELECT') \
                     ORDER BY 1",
                    &[&dataset],
                )
                .await
                .map_err(map_pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let name: String = r.get(0);
                    let kind: String = r.get(1);
                    let part: Option<String> = r.get(4);
                    TableInfo {
                        fully_qualified_name: format!("{database}.{dataset}.{name}"),
                        name,
                        table_type: match kind.as_str() {
                            "v" => "VIEW",
                            "m" => "MATERIALIZED_VIEW",
                            "f" => "EXTERNAL",
                            _ => "TABLE",
                        }
                        .into(),
                        row_count: r.get(2),
                        size_bytes: r.get(3),
                        partitioning: part.map(|p| {
                            let (kind, rest) = p.split_once(' ').unwrap_or((&p, ""));
                            serde_json::json!({ "type": kind, "key": rest.trim_matches(|c| c == '(' || c == ')') })
                        }),
                        clustering: None,
                        last_modified: None,
                        columns_digest: r.get("columns_digest"),
                    }
                })
                .collect())
        })
    }

    #[tracing::instrument(name = "warehouse.table_columns", skip_all, fields(otel.kind = "client", warehouse = "postgres"))]
    async fn table_columns(
        &self,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, WarehouseError> {
        read_only!(self, METADATA_TIMEOUT, |tx| {
            let rows = tx
                .query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
                            col_description(c.oid, a.attnum), \
                            COALESCE(a.attnum = ANY(pt.partattrs::int2[]), false) \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                     LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid \
                     WHERE n.nspname = $1 AND c.relname = $2 AND has_table_privilege(c.oid, 'SELECT') \
                     ORDER BY a.attnum",
                    &[&dataset, &table],
                )
                .await
                .map_err(map_pg)?;
            if rows.is_empty() {
                return Err(WarehouseError::NotFound(format!(
                    "table `{dataset}.{table}`"
                )));
            }
            Ok(rows
                .iter()
                .map(|r| ColumnInfo {
                    name: r.get(0),
                    data_type: r.get(1),
                    nullable: r.get(2),
                    description: r.get(3),
                    is_partitioning: r.get(4),
                    clustering_ordinal: None,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(p.parse().expect("ip")), "{p}");
        }
        for p in ["8.8.8.8", "34.120.0.1", "2001:4860:4860::8888"] {
            assert!(!is_private(p.parse().expect("ip")), "{p}");
        }
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.678 : ndigits 3, weight 1, sign 0, dscale 3, digits [1, 2345, 6780]
        let raw: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric_string(&raw).expect("numeric"), "12345.678");
        // -0.05 : ndigits 1, weight -1, sign 0x4000, dscale 2, digits [500]
        let raw: Vec<u8> = [1u16, 0xffff, 0x4000, 2, 500]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric_string(&raw).expect("numeric"), "-0.05");
        let raw: Vec<u8> = [0u16, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric_string(&raw).expect("zero"), "0");
    }
}

//! Request bodies and the credentials they carry, checked field by field before anything is
//! stored. Messages name fields, never values: a credential is not echoed, even back to its
//! sender.

use base64::{Engine, engine::general_purpose::STANDARD};
use edge::{ApiError, error::FieldError};
use platform::{warehouse::AccessCheck, warehouse::Dialect};
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use services::connections::Connection;
use utoipa::ToSchema;
use zeroize::Zeroizing;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// 1 to 100 characters, unique in the team.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    pub warehouse_type: Dialect,
    /// BigQuery: the service-account key file's JSON object. Postgres: `{"url": "postgres://…"}`.
    #[serde(default)]
    #[schema(value_type = Option<Credentials>)]
    pub credentials: Option<Value>,
    /// BigQuery only, instead of `credentials`: the key file, base64-encoded.
    #[serde(default)]
    pub credentials_base64: Option<String>,
}

/// A connection's credentials, by warehouse type (documentation of what
/// [`CreateConnection::credentials`] accepts; the checks are in this module).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Credentials {
    Bigquery(ServiceAccountKey),
    Postgres(PostgresUrl),
}

/// A Google Cloud service-account key file, as downloaded (its other fields are kept).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ServiceAccountKey {
    /// Always `service_account`.
    #[schema(pattern = "^service_account$")]
    r#type: String,
    project_id: String,
    client_email: String,
    /// An RSA private key in PEM (PKCS#8) form.
    private_key: String,
    private_key_id: Option<String>,
}

/// A Postgres warehouse: a `postgres://` URL, and the CA that signs its server's certificate
/// when that is not a public one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PostgresUrl {
    /// `postgres://user:password@host:port/database?sslmode=verify-full`.
    #[schema(pattern = "^postgres(ql)?://")]
    url: String,
    /// PEM text of the CA certificate(s).
    ca_cert: Option<String>,
}

impl std::fmt::Debug for CreateConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateConnection")
            .field("name", &self.name)
            .field("warehouse_type", &self.warehouse_type)
            .finish_non_exhaustive()
    }
}

/// A checked request: the secret to seal, and what may be shown about it.
pub use services::connections::NewConnection;

impl TryFrom<CreateConnection> for NewConnection {
    type Error = ApiError;

    fn try_from(body: CreateConnection) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let name = body.name.trim().to_owned();
        if name.is_empty() {
            errors.push(FieldError::new("name", "must not be empty"));
        } else if name.chars().count() > 100 {
            errors.push(FieldError::new("name", "must be at most 100 characters"));
        } else if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        let credentials = match (
            body.credentials,
            body.credentials_base64,
            body.warehouse_type,
        ) {
            (Some(_), Some(_), _) => {
                errors.push(FieldError::new(
                    "credentials_base64",
                    "send either credentials or credentials_base64, not both",
                ));
                None
            }
            (None, Some(b64), Dialect::Bigquery) => match decode_key_file(&b64) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            (None, Some(_), Dialect::Postgres) => {
                errors.push(FieldError::new(
                    "credentials_base64",
                    "is for BigQuery key files; Postgres takes credentials.url",
                ));
                None
            }
            (Some(v), None, _) => Some(v),
            (None, None, _) => {
                errors.push(FieldError::new("credentials", "is required"));
                None
            }
        };
        let checked = credentials.map(|c| match body.warehouse_type {
            Dialect::Bigquery => check_service_account(c),
            Dialect::Postgres => check_postgres(c),
        });
        match checked {
            Some(Ok((secret, details))) if errors.is_empty() => Ok(Self {
                name,
                dialect: body.warehouse_type,
                secret,
                details,
            }),
            Some(Err(mut e)) => {
                errors.append(&mut e);
                Err(ApiError::unprocessable(errors))
            }
            _ => Err(ApiError::unprocessable(errors)),
        }
    }
}

fn decode_key_file(b64: &str) -> Result<Value, FieldError> {
    let err = |m: &str| FieldError::new("credentials_base64", m);
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = Zeroizing::new(
        STANDARD
            .decode(compact)
            .map_err(|_| err("is not valid base64"))?,
    );
    serde_json::from_slice(&bytes).map_err(|_| err("does not decode to a JSON key file"))
}

type Checked = Result<(Zeroizing<Vec<u8>>, Value), Vec<FieldError>>;

/// A Google service-account key: the fields BigQuery needs, with a real RSA private key.
fn check_service_account(v: Value) -> Checked {
    let Value::Object(map) = v else {
        return Err(vec![FieldError::new(
            "credentials",
            "must be the service-account key file's JSON object",
        )]);
    };
    let mut errors = Vec::new();
    let field = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let path = |k: &str| format!("credentials.{k}");
    match field("type") {
        None => errors.push(FieldError::new(path("type"), "is required")),
        Some("service_account") => {}
        Some(_) => errors.push(FieldError::new(
            path("type"),
            "must be \"service_account\" (this is not a service-account key)",
        )),
    }
    match field("project_id") {
        None => errors.push(FieldError::new(path("project_id"), "is required")),
        Some(p)
            if !(p.len() <= 128
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
                })) =>
        {
            errors.push(FieldError::new(
                path("project_id"),
                "is not a Google Cloud project id",
            ));
        }
        Some(_) => {}
    }
    match field("client_email") {
        None => errors.push(FieldError::new(path("client_email"), "is required")),
        Some(e) if base::domain::Email::parse(e).is_err() => {
            errors.push(FieldError::new(
                path("client_email"),
                "is not an email address",
            ));
        }
        Some(_) => {}
    }
    match field("private_key") {
        None => errors.push(FieldError::new(path("private_key"), "is required")),
        Some(pem) => {
            let usable = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
                .ok()
                .is_some_and(|der| {
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).is_ok()
                });
            if !usable {
                errors.push(FieldError::new(
                    path("private_key"),
                    "is not an RSA private key in PEM (PKCS#8) form",
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let details =
        json!({ "project_id": field("project_id"), "client_email": field("client_email") });
    let secret = Zeroizing::new(serde_json::to_vec(&Value::Object(map)).unwrap_or_default());
    Ok((secret, details))
}

/// `{"url": "postgres://user:password@host:port/database?sslmode=…", "ca_cert"?: "-----BEGIN
/// CERTIFICATE-----…"}`.
fn check_postgres(v: Value) -> Checked {
    let Value::Object(map) = v else {
        return Err(vec![FieldError::new(
            "credentials",
            "must be an object: {\"url\": \"postgres://…\"}",
        )]);
    };
    let unknown: Vec<FieldError> = map
        .keys()
        .filter(|k| !matches!(k.as_str(), "url" | "ca_cert"))
        .map(|k| {
            FieldError::new(
                format!("credentials.{k}"),
                "is not a known field; expected `url` and, optionally, `ca_cert`",
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let err = |m: &str| vec![FieldError::new("credentials.url", m)];
    let Some(url) = map
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Err(err("is required"));
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(err("must be a postgres:// URL"));
    }
    if url.len() > 2048 {
        return Err(err("is too long"));
    }
    let target = storage::db_tls::parse(url).map_err(|m| err(&m))?;
    let config = &target.config;
    // Postgres can store no NUL, and no part of a connection has a control character.
    let control = |s: &str| s.chars().any(char::is_control);
    let parts_clean = config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(h) => !control(h),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    }) && [
        config.get_user(),
        config.get_dbname(),
        config.get_options(),
        config.get_application_name(),
    ]
    .into_iter()
    .flatten()
    .all(|s| !control(s))
        && config.get_password().is_none_or(|p| !p.contains(&0));
    if !parts_clean {
        return Err(err(
            "must not contain control characters (such as %00) in any part",
        ));
    }
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err(err("must name a host")),
    };
    let Some(user) = config.get_user().map(str::to_owned) else {
        return Err(err("must name a user"));
    };
    let Some(database) = config.get_dbname().map(str::to_owned) else {
        return Err(err("must name a database"));
    };
    let ca_cert = match map.get("ca_cert") {
        None | Some(Value::Null) => None,
        Some(Value::String(pem)) if storage::db_tls::pem_certificates(pem.as_bytes()) > 0 => {
            Some(pem.clone())
        }
        Some(_) => {
            return Err(vec![FieldError::new(
                "credentials.ca_cert",
                "must be PEM text holding the CA certificate(s) that sign the server's (-----BEGIN CERTIFICATE-----…)",
            )]);
        }
    };
    let details = json!({
        "host": host,
        "port": config.get_ports().first().copied().unwrap_or(5432),
        "database": database,
        "user": user,
        "sslmode": target.ssl_mode.as_str(),
        "ca_cert": ca_cert.is_some(),
    });
    let credentials = platform::warehouse::postgres::PostgresCredentials {
        url: url.to_owned(),
        ca_cert,
    };
    Ok((credentials.to_secret(), details))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<Connection>,
    pub next_cursor: Option<String>,
}

pub use services::connections::ValidationOutcome;

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationResult {
    #[serde(flatten)]
    pub connection: Connection,
    pub outcome: ValidationOutcome,
    /// Each check run, in order; the first failure is the `validation_error`.
    pub checks: Vec<AccessCheck>,
    pub duration_ms: u64,
}

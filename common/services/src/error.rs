//! What the services fail with, and the one place it becomes HTTP.
//!
//! A service returns a [`ServiceError`] for what is its own to say (a warehouse's refusal, a
//! credential that cannot be read, a missing parameter, a response over its budget); the
//! [`From<ServiceError> for ApiError`](ServiceError#impl-From<ServiceError>-for-ApiError)
//! below decides, for each, the status, the stable `code`, and whether the message may be
//! shown (internal failures are logged with their cause and answered with a generic text).
//! Tenancy refusals (404/403) and input errors are decided at the edge and pass through as
//! [`ServiceError::Edge`].

use std::{borrow::Cow, sync::Arc};

use axum::http::StatusCode;
use edge::ApiError;
use platform::{blob::BlobError, keyring::KeyRingError, warehouse::WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The customer's warehouse said no, or could not be reached.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A query needs a dashboard parameter that was not given and has no default.
    #[error("this query needs the parameter `{0}`, which has no default")]
    ParameterRequired(String),
    /// A dashboard's whole answer would be over its byte budget with this query in it.
    #[error(
        "with this query the dashboard's data would be over the response budget of {budget} \
         bytes; read it alone from /v1/dashboards/{slug}/query/{query}/data"
    )]
    ResponseTooLarge {
        budget: usize,
        slug: String,
        query: String,
    },
    /// Something the caller named does not exist (or is not theirs to know of).
    #[error("{}", .0.message())]
    NotFound(Missing),
    /// The request conflicts with the current state of what it names.
    #[error("{}", .0.message())]
    Conflict(Clash),
    /// A dashboard that does not validate, with every problem (path and message).
    #[error("{} problems in the dashboard", .0.len())]
    InvalidDashboard(Vec<base::FieldError>),
    /// `If-Match` named no version that is current.
    #[error(
        "the dashboard is at version {current}, which If-Match does not name; read it again before writing"
    )]
    VersionMismatch { current: i32 },
    /// The stored credentials do not decrypt (tampered, or sealed for another object).
    #[error(
        "the stored credentials cannot be decrypted; delete the connection and create it again"
    )]
    CredentialsUnreadable,
    #[error("the connection's credentials are missing; delete the connection and create it again")]
    CredentialsMissing,
    /// A dependency (Bridge's database, object storage, KMS) failed: retry later.
    #[error("a service Bridge depends on is unavailable; retry shortly")]
    Unavailable(#[source] Arc<anyhow::Error>),
    /// A bug or a broken invariant.
    #[error("an internal error occurred")]
    Internal(#[source] Arc<anyhow::Error>),
    /// Decided at the edge (tenancy, input): passed on as it is.
    #[error("{}", .0.detail)]
    Edge(ApiError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// What was not found.
#[derive(Debug, Clone)]
pub enum Missing {
    Connection,
    Scan,
    Dataset,
    Table,
    Dashboard,
    Version(i32),
}

impl Missing {
    fn code(&self) -> &'static str {
        match self {
            Self::Connection => "connection_not_found",
            Self::Scan => "scan_not_found",
            Self::Dataset => "dataset_not_found",
            Self::Table => "table_not_found",
            Self::Dashboard => "dashboard_not_found",
            Self::Version(_) => "version_not_found",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Connection => "no such connection".into(),
            Self::Scan => "no such scan of this connection".into(),
            Self::Dataset => "no such dataset".into(),
            Self::Table => "no such table".into(),
            Self::Dashboard => "no such dashboard".into(),
            Self::Version(v) => format!("the dashboard has no version {v}"),
        }
    }
}

/// What the request clashes with.
#[derive(Debug, Clone)]
pub enum Clash {
    ConnectionNotValidated,
    ScanInProgress,
    ConnectionNameTaken(String),
    ConnectionInUse,
    SlugTaken(String),
}

impl Clash {
    fn code(&self) -> &'static str {
        match self {
            Self::ConnectionNotValidated => "connection_not_validated",
            Self::ScanInProgress => "scan_in_progress",
            Self::ConnectionNameTaken(_) => "connection_name_taken",
            Self::ConnectionInUse => "connection_in_use",
            Self::SlugTaken(_) => "slug_taken",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::ConnectionNotValidated => {
                "validate the connection successfully before scanning it".into()
            }
            Self::ScanInProgress => {
                "this connection is being scanned already; follow that scan".into()
            }
            Self::ConnectionNameTaken(name) => {
                format!("the team already has a connection named `{name}`")
            }
            Self::ConnectionInUse => "dashboards use this connection; delete them or point them at another connection first".into(),
            Self::SlugTaken(slug) => {
                format!("the slug `{slug}` is taken; slugs are unique across Bridge")
            }
        }
    }
}

impl ServiceError {
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(source.into()))
    }

    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(Arc::new(source.into()))
    }

    /// The stable machine-readable code (also the `code` of a failed query in a dashboard's
    /// data, where no HTTP status applies).
    pub fn code(&self) -> &'static str {
        self.mapping().1
    }

    /// The message a caller may read.
    pub fn public_message(&self) -> Cow<'_, str> {
        match self {
            Self::Edge(e) => Cow::Borrowed(&e.detail),
            // Internal and unavailable errors display their generic text, never the cause.
            other => Cow::Owned(other.to_string()),
        }
    }

    /// Status and code: the one table.
    fn mapping(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Warehouse(e) => (
                match e {
                    WarehouseError::InvalidQuery(_)
                    | WarehouseError::BytesLimit { .. }
                    | WarehouseError::ResultTooLarge { .. }
                    | WarehouseError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    WarehouseError::NotFound(_) => StatusCode::NOT_FOUND,
                    WarehouseError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    WarehouseError::Credentials(_)
                    | WarehouseError::PermissionDenied(_)
                    | WarehouseError::Unavailable(_) => StatusCode::BAD_GATEWAY,
                    WarehouseError::BudgetExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
                },
                e.code(),
            ),
            Self::ParameterRequired(_) => (StatusCode::BAD_REQUEST, "parameter_required"),
            Self::ResponseTooLarge { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "response_too_large")
            }
            Self::NotFound(what) => (StatusCode::NOT_FOUND, what.code()),
            Self::Conflict(clash) => (StatusCode::CONFLICT, clash.code()),
            Self::VersionMismatch { .. } => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            Self::InvalidDashboard(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_dashboard"),
            Self::CredentialsUnreadable => (StatusCode::CONFLICT, "credentials_unreadable"),
            Self::CredentialsMissing => (StatusCode::CONFLICT, "credentials_missing"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Edge(e) => (e.status, e.code),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Edge(e) => e,
            ServiceError::InvalidDashboard(errors) => {
                let mut e = ApiError::unprocessable(errors);
                e.code = "invalid_dashboard";
                e
            }
            // The edge logs the cause and hides it.
            ServiceError::Internal(source) => ApiError::internal(anyhow::anyhow!("{source:#}")),
            ServiceError::Unavailable(source) => {
                ApiError::unavailable(anyhow::anyhow!("{source:#}"))
            }
            ServiceError::Warehouse(WarehouseError::BudgetExceeded(reason)) => {
                crate::usage::budget_exceeded(reason)
            }
            other => {
                let (status, code) = other.mapping();
                ApiError::new(status, code, other.to_string())
            }
        }
    }
}

impl ServiceError {
    /// The error of a shared computation (moka hands it to every waiter in an `Arc`).
    pub fn from_shared(e: Arc<ServiceError>) -> Self {
        Arc::try_unwrap(e).unwrap_or_else(|shared| match &*shared {
            Self::Warehouse(e) => Self::Warehouse(e.clone()),
            Self::ParameterRequired(name) => Self::ParameterRequired(name.clone()),
            Self::ResponseTooLarge {
                budget,
                slug,
                query,
            } => Self::ResponseTooLarge {
                budget: *budget,
                slug: slug.clone(),
                query: query.clone(),
            },
            Self::NotFound(what) => Self::NotFound(what.clone()),
            Self::Conflict(clash) => Self::Conflict(clash.clone()),
            Self::InvalidDashboard(errors) => Self::InvalidDashboard(errors.clone()),
            Self::VersionMismatch { current } => Self::VersionMismatch { current: *current },
            Self::CredentialsUnreadable => Self::CredentialsUnreadable,
            Self::CredentialsMissing => Self::CredentialsMissing,
            Self::Unavailable(source) => Self::Unavailable(source.clone()),
            Self::Internal(source) => Self::Internal(source.clone()),
            Self::Edge(e) => Self::Edge(ApiError::new(e.status, e.code, e.detail.clone())),
        })
    }
}

impl From<ApiError> for ServiceError {
    fn from(e: ApiError) -> Self {
        Self::Edge(e)
    }
}

impl From<KeyRingError> for ServiceError {
    fn from(e: KeyRingError) -> Self {
        match e {
            KeyRingError::Undecryptable => Self::CredentialsUnreadable,
            KeyRingError::Unavailable(source) => Self::unavailable(source),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound(_) => Self::CredentialsMissing,
            other => Self::unavailable(other),
        }
    }
}

impl From<tokio_postgres::Error> for ServiceError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::from(e).into()
    }
}

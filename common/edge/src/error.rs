//! The one HTTP error type: every failure leaves Bridge as an RFC 9457
//! `application/problem+json` body with a stable `code` and the request's `trace_id`.
//!
//! Internals (the `source` chain) are logged once, inside the request's span, and never
//! reach a body: a 5xx says only that something failed and which trace to look up.

use std::borrow::Cow;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

pub use base::FieldError;

/// The body of every error response (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:bridge:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable: clients branch on this, not on `detail`.
    pub code: String,
    /// The request's correlation id (also in the `x-correlation-id` header).
    pub trace_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Cow<'static, str>,
    pub errors: Vec<FieldError>,
    /// What went wrong inside; logged, never sent.
    pub source: Option<anyhow::Error>,
    /// Seconds for a `Retry-After` header (429s; a 503 says 2 unless told).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            source: None,
            retry_after: None,
        }
    }

    /// 429: a rate limit or a budget is spent; `Retry-After` says when to come back.
    pub fn too_many_requests(
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
        retry_after_secs: u64,
    ) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// 400: the request cannot be read (malformed JSON, bad path or query parameter).
    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 400 naming one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("`{field}` {message}"),
        )
        .with_errors(vec![FieldError { field, message }])
    }

    /// 422: the body is JSON of the wrong shape or with values out of range.
    pub fn unprocessable(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("`{}` {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", detail).with_errors(errors)
    }

    /// 401: no usable credentials.
    pub fn unauthorized(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 403: a member of the team whose role does not allow this.
    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_role", detail)
    }

    /// 404: absent, or belonging to a team the caller is not in (never told apart).
    pub fn not_found(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 412: an `If-Match` precondition failed.
    pub fn precondition_failed(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            detail,
        )
    }

    /// 503: a dependency (the database) is unreachable; worth retrying.
    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a service Bridge depends on is unavailable; retry shortly",
        )
        .with_source(source)
    }

    /// 500: a bug or an unexpected failure; the detail stays generic.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; quote trace_id when reporting it",
        )
        .with_source(source)
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn to_problem(&self) -> Problem {
        Problem {
            type_: format!("urn:bridge:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.to_string(),
            code: self.code.to_owned(),
            trace_id: crate::telemetry::current_trace_id().unwrap_or_default(),
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(code = self.code, error = %format!("{source:#}"), "request failed")
                }
                None => tracing::error!(code = self.code, "request failed"),
            }
        } else {
            tracing::info!(status = self.status.as_u16(), code = self.code, detail = %self.detail, "request refused");
        }
        let mut response = (self.status, Json(self.to_problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            // Connection-level failures are the database being away, not a bug.
            Self::unavailable(e)
        } else {
            Self::internal(e)
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::unavailable(e)
    }
}

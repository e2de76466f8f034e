//! Extractors whose rejections are problems that name the offending field.
//!
//! Use these instead of axum's `Json`, `Path` and `Query`: axum's reject in plain text.
//! A syntactically broken body is a 400 (`malformed_json`); JSON of the wrong shape is a 422
//! (`invalid_body`) listing each field; a bad path or query parameter is a 400
//! (`invalid_parameter`) naming it; a body over the limit is a 413.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::PathRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::error::Category;

use crate::{error::ApiError, error::FieldError};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body (or response).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn is_json(value: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the whole body under the 1 MiB limit.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {} bytes", MAX_BODY_BYTES),
            )
        } else {
            ApiError::bad_request("unreadable_body", "the request body could not be read")
        }
    })
}

/// The path of the first string (or key) in `v` holding a NUL character, which no text
/// column in Postgres can store.
fn nul_path(v: &serde_json::Value, path: &mut String) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_path(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(members) => members.iter().any(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let found = k.contains('\0') || nul_path(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

/// A 400 naming the field when the JSON holds a NUL character (written `\u0000`).
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    let suspect = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !suspect {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    let mut path = String::new();
    if nul_path(&value, &mut path) {
        let field = if path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_characters",
            format!("`{field}` contains a NUL character (\\u0000), which Bridge does not accept"),
        )
        .with_errors(vec![FieldError::new(
            field,
            "must not contain a NUL character",
        )]));
    }
    Ok(())
}

/// Parses JSON, turning serde's errors into problems that name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request body is empty; send a JSON object",
        ));
    }
    // Every body Bridge accepts is an object; serde would otherwise read `[..]` as a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::unprocessable(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    refuse_nul(bytes)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => ApiError::unprocessable(vec![field_error(
                &path,
                &strip_position(&inner.to_string()),
            )]),
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON: {inner}"),
            ),
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Turns serde's message into `{field, message}`: missing and unknown fields are named
/// themselves rather than by their parent's path.
fn field_error(path: &str, msg: &str) -> FieldError {
    let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_owned);
    if let Some(rest) = msg.strip_prefix("missing field ")
        && let Some(name) = quoted(rest)
    {
        return FieldError::new(join(path, &name), "is required");
    }
    if let Some(rest) = msg.strip_prefix("unknown field ")
        && let Some(name) = quoted(rest)
    {
        let field = if path.ends_with(&name) {
            path.to_owned()
        } else {
            join(path, &name)
        };
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        let message = if expected.is_empty() {
            "is not a known field".to_owned()
        } else {
            format!("is not a known field; expected {expected}")
        };
        return FieldError::new(field, message);
    }
    let field = if path.is_empty() || path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    FieldError::new(field, msg.to_owned())
}

/// Path parameters; a malformed one is a 400 naming it.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                Err(match e.into_kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => ApiError::invalid_field(key, describe_expected(expected_type, &value)),
                    ErrorKind::DeserializeError {
                        key,
                        value,
                        message,
                    } => ApiError::invalid_field(key, describe_expected(&message, &value)),
                    ErrorKind::ParseError {
                        value,
                        expected_type,
                    } => ApiError::invalid_field("path", describe_expected(expected_type, &value)),
                    other => ApiError::bad_request("invalid_parameter", other.to_string()),
                })
            }
            Err(other) => Err(ApiError::internal(anyhow::anyhow!(
                "path extraction: {other}"
            ))),
        }
    }
}

fn describe_expected(expected: &str, value: &str) -> String {
    let shown: String = value.chars().take(64).collect();
    if expected.contains("Uuid") || expected.contains("UUID") {
        format!("must be a UUID, not `{shown}`")
    } else {
        format!("`{shown}` is not valid here")
    }
}

/// Query-string parameters; an unknown or malformed one is a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let fe = field_error(&path, &e.into_inner().to_string());
        let message = if fe.message.starts_with("invalid digit") || fe.message.contains("number") {
            "must be a whole number".to_owned()
        } else {
            fe.message
        };
        ApiError::invalid_field(
            if fe.field == "body" {
                "query".to_owned()
            } else {
                fe.field
            },
            message,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    fn field_of(json: &str) -> (StatusCode, Vec<FieldError>) {
        let e = parse_json::<Body>(json.as_bytes()).expect_err("must fail");
        (e.status, e.errors)
    }

    #[test]
    fn malformed_json_is_400() {
        for bad in ["", "  ", "{", "{\"name\":}", "not json"] {
            let e = parse_json::<Body>(bad.as_bytes()).expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.code, "malformed_json");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let (s, e) = field_of("{}");
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e[0].field, "name");
        assert_eq!(e[0].message, "is required");

        let (_, e) = field_of(r#"{"name":"x","colour":1}"#);
        assert_eq!(e[0].field, "colour");
        assert!(
            e[0].message.contains("not a known field"),
            "{}",
            e[0].message
        );

        let (_, e) = field_of(r#"{"name":5}"#);
        assert_eq!(e[0].field, "name");
        assert!(e[0].message.contains("invalid type"));

        let (_, e) = field_of(r#"{"name":"x","inner":{"max":"lots"}}"#);
        assert_eq!(e[0].field, "inner.max");

        let (_, e) = field_of(r#"{"name":"x","inner":{}}"#);
        assert_eq!(e[0].field, "inner.max");

        let (_, e) = field_of(r#"{"name":"x","inner":{"max":1,"min":0}}"#);
        assert_eq!(e[0].field, "inner.min");

        let (_, e) = field_of(r#"[1]"#);
        assert_eq!(e[0].field, "body");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        cursor: Option<String>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<Page>("limit=ten").expect_err("bad limit");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.errors[0].field, "limit");
        let e = parse_query::<Page>("limt=10").expect_err("unknown");
        assert_eq!(e.errors[0].field, "limt");
        assert!(parse_query::<Page>("limit=10&cursor=abc").is_ok());
        assert!(parse_query::<Page>("").is_ok());
    }
}

/// A dashboard's YAML, sent either as JSON `{"yaml": "…"}` or raw with
/// `Content-Type: application/yaml` (or `text/yaml`).
#[derive(Debug, Clone)]
pub struct YamlBody(pub String);

/// A dashboard's YAML inside JSON.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YamlJson {
    /// The YAML text (at most 1 MiB).
    pub yaml: String,
}

impl<S: Send + Sync> FromRequest<S> for YamlBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let is_yaml = matches!(
            ct.as_str(),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
        );
        if !is_yaml && !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send `{\"yaml\": \"…\"}` as application/json, or the YAML itself as application/yaml",
            ));
        }
        let bytes = read_body(req, state).await?;
        if is_yaml {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::bad_request("invalid_encoding", "the YAML must be UTF-8"))?;
            return Ok(YamlBody(text));
        }
        let body: YamlJson = parse_json(&bytes)?;
        Ok(YamlBody(body.yaml))
    }
}

//! Conditional requests (RFC 9110 §13): `ETag`s, `If-None-Match` (weak comparison, for
//! reads: 304 Not Modified) and `If-Match` (strong comparison, for writes: 412 when no
//! named tag is current). Tags are quoted opaque strings; a list is comma-separated; `*`
//! matches any current representation.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{ApiError, ApiResult};

/// One entity-tag of a list: `"x"` or `W/"x"`.
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// The members of an `If-Match` / `If-None-Match` list; `None` for `*`; an error names
/// the header when it is not a list of entity-tags.
fn parse_list<'a>(name: &'static str, value: &'a str) -> ApiResult<Option<Vec<EntityTag<'a>>>> {
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (weak, quoted) = match item.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let opaque = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .filter(|o| !o.contains('"'))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    name,
                    "must be `*` or a list of quoted entity-tags, e.g. \"3\" (as the ETag gives them)",
                )
            })?;
        tags.push(EntityTag { weak, opaque });
    }
    if tags.is_empty() {
        return Err(ApiError::invalid_field(name, "must not be empty"));
    }
    Ok(Some(tags))
}

/// What `If-Match` asks: `None` when absent or `*` (any current version will do), else the
/// opaque values of its strong tags (a weak tag never matches for a write, so it is left
/// out: a list of weak tags alone matches nothing).
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<Vec<String>>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid_field("If-Match", "must be visible ASCII"))?;
    Ok(parse_list("If-Match", text)?.map(|tags| {
        tags.into_iter()
            .filter(|t| !t.weak)
            .map(|t| t.opaque.to_owned())
            .collect()
    }))
}

/// Whether `If-None-Match` names `current` (weak comparison: `W/"3"` names `"3"`), so a
/// read can answer 304. A malformed header is ignored, as if absent.
pub fn none_match(headers: &HeaderMap, current: &str) -> bool {
    let Some(text) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match parse_list("If-None-Match", text) {
        Ok(None) => true,
        Ok(Some(tags)) => tags.iter().any(|t| t.opaque == current),
        Err(_) => false,
    }
}

/// The `ETag` header value of opaque tag `tag` (strong).
pub fn etag(tag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{tag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// 304 Not Modified, carrying the tag and the caching headers the 200 would have (the
/// answers depend on who asks: `Vary: Authorization`).
pub fn not_modified(tag: &str, cache_control: HeaderValue) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [
            (header::ETAG, etag(tag)),
            (header::CACHE_CONTROL, cache_control),
            (header::VARY, HeaderValue::from_static("Authorization")),
        ],
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_is_a_strong_comparison_over_a_list() {
        let m = |v: &str| if_match(&headers(header::IF_MATCH, v));
        assert_eq!(m("\"3\"").unwrap(), Some(vec!["3".to_owned()]));
        assert_eq!(
            m("\"2\", \"3\"").unwrap(),
            Some(vec!["2".to_owned(), "3".to_owned()])
        );
        assert_eq!(m("W/\"3\"").unwrap(), Some(vec![]));
        assert_eq!(m("W/\"2\", \"3\"").unwrap(), Some(vec!["3".to_owned()]));
        assert_eq!(m("*").unwrap(), None);
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        for bad in ["3", "\"3", "", " , ", "\"a\"b\""] {
            let e = m(bad).expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn if_none_match_is_a_weak_comparison() {
        let n = |v: &str| none_match(&headers(header::IF_NONE_MATCH, v), "3");
        assert!(n("\"3\""));
        assert!(n("W/\"3\""));
        assert!(n("\"1\", W/\"3\""));
        assert!(n("*"));
        assert!(!n("\"4\""));
        assert!(!n("3"));
        assert!(!none_match(&HeaderMap::new(), "3"));
    }
}

//! The warm read's two caches, which let a cached data response be answered with no
//! Postgres round trip and no rendering (see `serving`'s documentation):
//!
//! - **Access**: (user, slug) → the dashboard as it is now and the caller's role in its team,
//!   trusted for [`ACCESS_STALENESS`]. Only members' answers are kept (a non-member asks
//!   Postgres every time, and gets 404). This process's own changes to who may read what
//!   (members, roles, team settings, a dashboard saved or deleted) move the
//!   [`AccessEpoch`](edge::tenancy::AccessEpoch), after which no older answer is trusted;
//!   another process's changes are seen once its entries expire: **at most 2 s** after they
//!   committed, a removed member gets 404, a deleted dashboard 404, a saved one its new
//!   version.
//! - **Ready**: the response as sent, per (dashboard, version, the team's caps, the route,
//!   the raw query string, the content coding): its bytes in that coding, its ETag, and the
//!   result keys it was made of (their hit counts). Kept only when every query was answered
//!   from the cache, and only until the soonest of those results expires, so it never
//!   outlives what it was made of. Looked up only after access was granted for that very
//!   version. A forced precompute in this process drops the dashboard's entries (its fresh
//!   results replace theirs); in other processes the in-process result cache (L1) already
//!   keeps serving what it holds until it expires.

use std::{sync::Arc, time::Duration, time::Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::dashboards::Dashboard;
use base::domain::Role;

/// How long an access answer is trusted without asking Postgres again: the bound on how
/// late another process's change of membership, role or dashboard version is seen.
pub const ACCESS_STALENESS: Duration = Duration::from_secs(2);

/// Access answers kept at most (a few hundred bytes each).
pub(crate) const ACCESS_ENTRIES: u64 = 100_000;

/// A member's access to a dashboard, as Postgres answered it at `epoch`.
pub struct Access {
    pub dashboard: Arc<Dashboard>,
    pub role: Role,
    pub(crate) epoch: u64,
}

/// What makes the bytes of a data response, all known before any query is looked at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadyKey {
    dashboard_id: Uuid,
    version: i32,
    /// The team's caps, which the results' limits (and so their keys) are made under.
    caps: (u64, Option<usize>),
    /// `None`: the whole dashboard; `Some(id)`: that query alone.
    query: Option<Box<str>>,
    /// The query string as sent: the same string binds the same values in one version.
    params: Box<str>,
    /// The coding negotiated from `Accept-Encoding`.
    coding: &'static str,
}

impl ReadyKey {
    pub fn new(
        dashboard: &Dashboard,
        query: Option<&str>,
        params: Option<&str>,
        coding: &'static str,
    ) -> Self {
        Self {
            dashboard_id: dashboard.id,
            version: dashboard.version,
            caps: (dashboard.max_bytes_billed, dashboard.max_result_bytes),
            query: query.map(Box::from),
            params: Box::from(params.unwrap_or("")),
            coding,
        }
    }

    pub(crate) fn dashboard_id(&self) -> Uuid {
        self.dashboard_id
    }

    pub(crate) fn weight(&self) -> usize {
        self.params.len() + self.query.as_ref().map_or(0, |q| q.len()) + 96
    }
}

/// A data response's body as sent, in the coding it is in (`None`: as is; a body too
/// small to gain from compression is kept as is whatever coding was asked), fresh for
/// `fresh_for` (the validators' max-age).
#[derive(Clone)]
pub struct EncodedBody {
    pub bytes: Bytes,
    pub content_encoding: Option<&'static str>,
    pub fresh_for: Duration,
}

/// A response ready to send: its ETag (the validators'), its body, and the keys of the
/// results it was made of.
pub struct Ready {
    pub etag: String,
    etag_header: HeaderValue,
    pub body: EncodedBody,
    pub(crate) result_keys: Box<[String]>,
    /// Hits since the counts were last written.
    pub(crate) hits: std::sync::atomic::AtomicI64,
}

impl Ready {
    pub fn new(etag: String, body: EncodedBody, result_keys: Vec<String>) -> Self {
        Self {
            etag_header: edge::conditional::etag(&etag),
            etag,
            body,
            result_keys: result_keys.into_boxed_slice(),
            hits: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The response: 304 when `If-None-Match` holds its ETag, else its bytes.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        if is_current(headers, &self.etag) {
            not_modified(self.etag_header.clone())
        } else {
            ok(self.etag_header.clone(), &self.body)
        }
    }
}

/// Whether the caller's copy (`If-None-Match`) is the one whose ETag is `etag`.
pub fn is_current(headers: &HeaderMap, etag: &str) -> bool {
    edge::conditional::none_match(headers, etag)
}

/// Private: a data response depends on who asks. `no-cache`: a client revalidates every time
/// (a 304 costs no rendering), because the URL names no version, and a `max-age` would let a
/// browser show the previous version's data after a save.
fn cache_control() -> HeaderValue {
    HeaderValue::from_static("private, no-cache")
}

fn vary() -> HeaderValue {
    HeaderValue::from_static("Authorization, Accept-Encoding")
}

/// 304 for the data response whose ETag header is `etag`.
pub fn not_modified(etag: HeaderValue) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control()),
            (header::VARY, vary()),
        ],
    )
        .into_response()
}

/// 200 with `body`, in its coding.
pub fn ok(etag: HeaderValue, body: &EncodedBody) -> Response {
    let mut response = (
        [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control()),
            (header::VARY, vary()),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body.bytes.clone(),
    )
        .into_response();
    if let Some(coding) = body.content_encoding {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    response
}

pub(crate) struct UntilStale;

impl moka::Expiry<ReadyKey, Arc<Ready>> for UntilStale {
    fn expire_after_create(&self, _: &ReadyKey, v: &Arc<Ready>, _: Instant) -> Option<Duration> {
        Some(v.body.fresh_for)
    }
}

//! A Cloud Storage stub speaking the **XML API** the way `object_store`'s GCS client uses it:
//! <https://cloud.google.com/storage/docs/xml-api/put-object-upload>,
//! <https://cloud.google.com/storage/docs/xml-api/get-object-download>,
//! <https://cloud.google.com/storage/docs/xml-api/head-object>,
//! <https://cloud.google.com/storage/docs/xml-api/delete-object>, the
//! `x-goog-if-generation-match` precondition
//! (<https://cloud.google.com/storage/docs/xml-api/reference-headers#xgoogifgenerationmatch>)
//! and the XML error bodies (<https://cloud.google.com/storage/docs/xml-api/reference-status>).
//!
//! Why it exists: `gcp-storage-emulator` speaks the JSON API but not this one (its PUT
//! answers without `ETag`, its GET without `Last-Modified`, its DELETE is 501), and it
//! ignores generation preconditions, which Bridge relies on for create-if-absent and
//! compare-and-swap writes.
//!
//! What it does: one bucket, in memory. `PUT /{bucket}/{object}` (also a copy with
//! `x-goog-copy-source`), `GET` (with `Range`, `If-Match`, `If-None-Match`, `generation`),
//! `HEAD`, `DELETE`; generations increase with every write; every request needs an
//! `Authorization: Bearer …` header (any token). Not implemented (501): listing, XML
//! multipart uploads, and everything else.

#![allow(clippy::unwrap_used, clippy::result_large_err)] // test support: handlers answer early with a Response

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::Response,
    routing::any,
};
use time::{OffsetDateTime, macros::format_description};

/// A running GCS stub holding one bucket. `base_url` is what `object_store`'s
/// `GoogleConfigKey::BaseUrl` wants (objects live at `{base_url}/{bucket}/{object}`).
#[derive(Clone)]
pub struct GcsStub {
    pub base_url: String,
    pub bucket: String,
    state: Arc<Inner>,
}

struct Inner {
    bucket: String,
    objects: Mutex<Store>,
}

struct Store {
    objects: BTreeMap<String, Object>,
    next_generation: i64,
}

#[derive(Clone)]
struct Object {
    data: Bytes,
    generation: i64,
    etag: String,
    updated: OffsetDateTime,
    content_type: String,
    /// Headers stored with the object and answered on reads (`x-goog-meta-*`,
    /// `Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language`).
    headers: Vec<(String, String)>,
}

impl GcsStub {
    /// Starts a stub serving `bucket` on a free loopback port.
    pub async fn start(bucket: &str) -> GcsStub {
        let state = Arc::new(Inner {
            bucket: bucket.to_owned(),
            objects: Mutex::new(Store {
                objects: BTreeMap::new(),
                // Real generations are microsecond timestamps; any increasing number will do.
                next_generation: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64,
            }),
        });
        let router = Router::new()
            .route("/{bucket}/{*object}", any(object))
            .fallback(not_implemented)
            .with_state(state.clone());
        GcsStub {
            base_url: super::serve(router).await,
            bucket: bucket.to_owned(),
            state,
        }
    }

    /// Every object's content, by name.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        let store = self.state.objects.lock().unwrap();
        store
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.data.to_vec()))
            .collect()
    }

    /// The current generation of `name`, if it exists.
    pub fn generation(&self, name: &str) -> Option<i64> {
        let store = self.state.objects.lock().unwrap();
        store.objects.get(name).map(|o| o.generation)
    }
}

const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

fn http_date(t: OffsetDateTime) -> String {
    t.format(HTTP_DATE).unwrap()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An XML API error: `<Error><Code>…</Code><Message>…</Message><Details>…</Details></Error>`.
fn error(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message><Details>{}</Details></Error>",
        xml_escape(message),
        xml_escape(details)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml; charset=UTF-8")
        .body(Body::from(body))
        .unwrap()
}

fn precondition_failed() -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold.",
        "Precondition Failed",
    )
}

fn no_such_key(bucket: &str, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
        &format!("No such object: {bucket}/{name}"),
    )
}

async fn not_implemented() -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        "A header or query you provided requested a function that is not implemented.",
        "The GCS stub implements object PUT, GET, HEAD and DELETE only.",
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `x-goog-if-generation-match`: `Some(Err)` when present but not a number.
fn generation_match(headers: &HeaderMap) -> Option<Result<i64, Response>> {
    header_str(headers, "x-goog-if-generation-match").map(|v| {
        v.trim().parse::<i64>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Invalid argument.",
                &format!("Invalid x-goog-if-generation-match: {v}"),
            )
        })
    })
}

fn etag_of(data: &[u8]) -> String {
    format!(
        "\"{}\"",
        base::crypto::hex(&base::crypto::sha256(data)[..16])
    )
}

fn with_object_headers(
    mut builder: axum::http::response::Builder,
    o: &Object,
) -> axum::http::response::Builder {
    builder = builder
        .header(header::ETAG, &o.etag)
        .header(header::LAST_MODIFIED, http_date(o.updated))
        .header("x-goog-generation", o.generation.to_string())
        .header("x-goog-metageneration", "1")
        .header("x-goog-stored-content-length", o.data.len().to_string())
        .header("x-goog-stored-content-encoding", "identity")
        .header("x-goog-storage-class", "STANDARD");
    for (k, v) in &o.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
}

async fn object(
    State(state): State<Arc<Inner>>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if super::bearer(&headers).is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "Authentication required.",
            "The request carries no Authorization: Bearer header.",
        );
    }
    if bucket != state.bucket {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist.",
            &format!("No such bucket: {bucket}"),
        );
    }
    if query.contains_key("uploadId") || query.contains_key("uploads") {
        return not_implemented().await;
    }
    match method {
        Method::PUT => put(&state, name, &headers, body),
        Method::GET | Method::HEAD => get(&state, &name, &query, &headers, method == Method::HEAD),
        Method::DELETE => delete(&state, &name, &headers),
        _ => not_implemented().await,
    }
}

fn put(state: &Inner, name: String, headers: &HeaderMap, body: Bytes) -> Response {
    let mut store = state.objects.lock().unwrap();
    let current = store.objects.get(&name).map_or(0, |o| o.generation);
    match generation_match(headers) {
        Some(Err(bad)) => return bad,
        Some(Ok(wanted)) if wanted != current => return precondition_failed(),
        _ => {}
    }
    let copy_source = header_str(headers, "x-goog-copy-source").map(str::to_owned);
    let (data, content_type, stored) = match &copy_source {
        Some(source) => {
            let source = percent_decode(source.trim_start_matches('/'));
            let Some((src_bucket, src_name)) = source.split_once('/') else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "Invalid argument.",
                    "x-goog-copy-source must be bucket/object",
                );
            };
            match store
                .objects
                .get(src_name)
                .filter(|_| src_bucket == state.bucket)
            {
                Some(o) => (o.data.clone(), o.content_type.clone(), o.headers.clone()),
                None => return no_such_key(src_bucket, src_name),
            }
        }
        None => {
            let stored = headers
                .iter()
                .filter(|(k, _)| {
                    let k = k.as_str();
                    k.starts_with("x-goog-meta-")
                        || matches!(
                            k,
                            "cache-control"
                                | "content-disposition"
                                | "content-encoding"
                                | "content-language"
                        )
                })
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let content_type = header_str(headers, "content-type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            (body, content_type, stored)
        }
    };
    let generation = store.next_generation;
    store.next_generation += 1;
    let object = Object {
        etag: etag_of(&data),
        data,
        generation,
        updated: OffsetDateTime::now_utc(),
        content_type,
        headers: stored,
    };
    store.objects.insert(name, object.clone());
    let builder = with_object_headers(Response::builder().status(StatusCode::OK), &object);
    let body = match copy_source {
        Some(_) => Body::from(format!(
            "<?xml version='1.0' encoding='UTF-8'?><CopyObjectResult><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>",
            object
                .updated
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            xml_escape(&object.etag)
        )),
        None => Body::empty(),
    };
    builder.body(body).unwrap()
}

fn get(
    state: &Inner,
    name: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let store = state.objects.lock().unwrap();
    let wanted_generation = query.get("generation").and_then(|g| g.parse::<i64>().ok());
    let Some(o) = store
        .objects
        .get(name)
        .filter(|o| wanted_generation.is_none_or(|g| g == o.generation))
    else {
        return no_such_key(&state.bucket, name);
    };
    match generation_match(headers) {
        Some(Err(bad)) => return bad,
        Some(Ok(wanted)) if wanted != o.generation => return precondition_failed(),
        _ => {}
    }
    let matches = |list: &str| {
        list.split(',')
            .any(|t| t.trim() == "*" || t.trim() == o.etag)
    };
    if header_str(headers, "if-match").is_some_and(|l| !matches(l)) {
        return precondition_failed();
    }
    if header_str(headers, "if-none-match").is_some_and(matches) {
        return with_object_headers(Response::builder().status(StatusCode::NOT_MODIFIED), o)
            .body(Body::empty())
            .unwrap();
    }
    let len = o.data.len();
    let (status, start, end) = match header_str(headers, "range") {
        None => (StatusCode::OK, 0, len),
        Some(range) => match parse_range(range, len) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
            None => {
                return error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range cannot be satisfied.",
                    &format!("Request range: {range}; object size: {len}"),
                );
            }
        },
    };
    let mut builder = with_object_headers(Response::builder().status(status), o)
        .header(header::CONTENT_TYPE, o.content_type.as_str())
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    if head {
        builder
            .header(header::CONTENT_LENGTH, HeaderValue::from(end - start))
            .body(Body::empty())
            .unwrap()
    } else {
        builder.body(Body::from(o.data.slice(start..end))).unwrap()
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` → the half-open range it selects.
fn parse_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<usize>().ok()?.saturating_add(1).min(len),
        ),
    };
    (start < end && start < len).then_some((start, end))
}

fn delete(state: &Inner, name: &str, headers: &HeaderMap) -> Response {
    let mut store = state.objects.lock().unwrap();
    let Some(current) = store.objects.get(name).map(|o| o.generation) else {
        return no_such_key(&state.bucket, name);
    };
    match generation_match(headers) {
        Some(Err(bad)) => return bad,
        Some(Ok(wanted)) if wanted != current => return precondition_failed(),
        _ => {}
    }
    store.objects.remove(name);
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

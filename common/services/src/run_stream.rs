//! A run's events as `text/event-stream`, the same for chat (`…/stream`, `…/events`) and
//! for `POST /v1/dashboards/generate`: an `id:` on every event (its number in the run),
//! `retry:` once with the first, a heartbeat comment every 15 s, no caching or proxy
//! buffering, and the run's id in `x-run-id`.

use std::{convert::Infallible, time::Duration};

use axum::{
    http::HeaderValue,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::chat::{RunEvent, Started};

const HEARTBEAT: Duration = Duration::from_secs(15);
/// What EventSource clients wait before reconnecting (sent once, with the first event).
const RETRY: Duration = Duration::from_secs(2);

pub fn sse_event(e: &RunEvent) -> SseEvent {
    let event = SseEvent::default()
        .id(e.seq.to_string())
        .event(&e.event)
        .data(e.data.to_string());
    if e.seq == 1 {
        event.retry(RETRY)
    } else {
        event
    }
}

/// The response streaming `stream` (the request's deadline lifted: a run keeps its own).
pub fn sse_response(
    stream: impl Stream<Item = SseEvent> + Send + 'static,
    run_id: Option<Uuid>,
) -> Response {
    edge::app::lift_deadline();
    let mut response = Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(id) = run_id
        && let Ok(v) = HeaderValue::from_str(&id.to_string())
    {
        headers.insert("x-run-id", v);
    }
    response
}

/// A started run's live events as the response.
pub fn live(started: Started) -> Response {
    let mut rx = started.events;
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    sse_response(events.map(|e| sse_event(&e)), Some(started.run_id))
}

//! What the network adapters share: one `reqwest` client per provider, the retry policy
//! before the first byte, the circuit breaker, and the driver that turns an SSE response
//! into [`Event`]s with an idle timeout between chunks.
//!
//! Retries (backon): exponential backoff from 500 ms, factor 2, full jitter, at most
//! `LLM_MAX_RETRIES` more attempts, on 408, 429, 5xx (529 included) and connection failures —
//! only before the response head, never once a stream has begun (a model's answer is not
//! idempotent to replay). A `retry-after` (seconds or an HTTP date) replaces the backoff's
//! wait; one longer than `LLM_RETRY_MAX_DELAY_MS` ends the retries at once.
//!
//! The breaker counts one failure per call (not per attempt): a call whose retries all
//! failed, or whose stream failed mid-way (in-band error, stall, cut).

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, SystemTime},
};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use sse_stream::{Sse, SseByteStream};

use crate::{Breaker, Event, EventStream, LlmError};

/// The largest error body read from a provider (the message is taken from it).
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct Transport {
    pub provider: &'static str,
    pub client: reqwest::Client,
    pub breaker: Arc<Breaker>,
    max_retries: usize,
    retry_max_delay: Duration,
    idle: Duration,
}

impl Transport {
    pub fn new(provider: &'static str, settings: &settings::LlmSettings) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // The whole-request timeout would cut long streams: the first byte is bounded
            // here, each later chunk by the idle timeout.
            .read_timeout(settings.first_byte_timeout.max(settings.idle_timeout))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            provider,
            client,
            breaker: Arc::new(Breaker::new(
                provider,
                settings.breaker_failures,
                settings.breaker_cooldown,
            )),
            max_retries: settings.max_retries,
            retry_max_delay: settings.retry_max_delay,
            idle: settings.idle_timeout,
        })
    }

    /// Sends the request `build` makes (once per attempt) and returns the 2xx response, after
    /// the retries the policy allows.
    pub async fn open(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LlmError> {
        if let Err(retry_in) = self.breaker.admit() {
            return Err(LlmError::CircuitOpen {
                provider: self.provider,
                retry_in,
            });
        }
        let provider = self.provider;
        let attempt = || async {
            let response = crate::telemetry::propagate(build())
                .send()
                .await
                .map_err(|e| LlmError::Connect {
                    provider,
                    message: describe(&e),
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = read_bounded(response, MAX_ERROR_BODY).await;
            Err(LlmError::Http {
                provider,
                status: status.as_u16(),
                message: error_message(&body),
                retry_after,
            })
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(self.retry_max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries);
        let max_delay = self.retry_max_delay;
        let result = attempt
            .retry(backoff)
            .when(retryable)
            .adjust(|e, backoff_delay| {
                let delay = backoff_delay?;
                match e {
                    LlmError::Http {
                        retry_after: Some(after),
                        ..
                    } => (*after <= max_delay).then_some(*after),
                    _ => Some(delay),
                }
            })
            .notify(|e, delay| {
                tracing::warn!(
                    provider,
                    code = e.code(),
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "LLM call failed before its first byte; retrying"
                );
            })
            .await;
        match result {
            Ok(response) => Ok(response),
            Err(e) => {
                if e.is_provider_failure() {
                    self.breaker.failure();
                } else {
                    self.breaker.release();
                }
                Err(e)
            }
        }
    }

    /// Turns an SSE response into events through `decoder`, with the idle timeout between
    /// chunks, and settles the breaker when the stream ends, fails, or is dropped.
    pub fn drive<D: Decoder>(&self, response: reqwest::Response, decoder: D) -> EventStream {
        let bytes: BoxStream<'static, Result<Bytes, reqwest::Error>> =
            response.bytes_stream().boxed();
        drive(
            SseByteStream::new(bytes).boxed(),
            decoder,
            self.idle,
            self.breaker.clone(),
            self.provider,
        )
    }
}

/// Decodes one provider's SSE blocks into events.
pub trait Decoder: Send + 'static {
    /// Adds the events of one SSE block to `out`; returns true once the terminal block
    /// (`message_stop`, `[DONE]`) has been read, after which nothing more is read.
    fn feed(&mut self, sse: Sse, out: &mut VecDeque<Event>) -> Result<bool, LlmError>;
    /// The error for a stream that ended before its terminal block.
    fn truncated(&self) -> LlmError;
}

type SseResults = BoxStream<'static, Result<Sse, sse_stream::Error>>;

/// Settles the breaker once: success at the stop event, failure at a provider failure,
/// release when dropped first (the consumer went away).
struct Settle {
    breaker: Arc<Breaker>,
    settled: bool,
}

impl Settle {
    fn success(&mut self) {
        if !self.settled {
            self.settled = true;
            self.breaker.success();
        }
    }

    fn failure(&mut self, e: &LlmError) {
        if !self.settled {
            self.settled = true;
            if e.is_provider_failure() {
                self.breaker.failure();
            } else {
                self.breaker.release();
            }
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.release();
        }
    }
}

struct Driver<D> {
    sse: SseResults,
    decoder: D,
    pending: VecDeque<Event>,
    terminal: bool,
    done: bool,
    idle: Duration,
    provider: &'static str,
    settle: Settle,
}

/// The driver, apart from `reqwest` so that benchmarks can feed it recorded bytes.
pub fn drive<D: Decoder>(
    sse: SseResults,
    decoder: D,
    idle: Duration,
    breaker: Arc<Breaker>,
    provider: &'static str,
) -> EventStream {
    let state = Driver {
        sse,
        decoder,
        pending: VecDeque::new(),
        terminal: false,
        done: false,
        idle,
        provider,
        settle: Settle {
            breaker,
            settled: false,
        },
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                if matches!(event, Event::Stop(_)) {
                    s.settle.success();
                    s.done = true;
                    s.pending.clear();
                }
                return Some((Ok(event), s));
            }
            if s.done {
                return None;
            }
            if s.terminal {
                // The terminal block came without a stop event: the decoder's bug, or a
                // provider breaking its format. Never end silently.
                let e = s.decoder.truncated();
                return Some(s.fail(e));
            }
            let next = match tokio::time::timeout(s.idle, s.sse.next()).await {
                Err(_) => {
                    let e = LlmError::Idle {
                        provider: s.provider,
                        idle: s.idle,
                    };
                    return Some(s.fail(e));
                }
                Ok(next) => next,
            };
            match next {
                None => {
                    let e = s.decoder.truncated();
                    return Some(s.fail(e));
                }
                Some(Err(e)) => {
                    let e = LlmError::Connect {
                        provider: s.provider,
                        message: format!("the stream broke: {e}"),
                    };
                    return Some(s.fail(e));
                }
                Some(Ok(block)) => match s.decoder.feed(block, &mut s.pending) {
                    Ok(terminal) => s.terminal = terminal,
                    Err(e) => return Some(s.fail(e)),
                },
            }
        }
    })
    .boxed()
}

impl<D> Driver<D> {
    fn fail(mut self, e: LlmError) -> (Result<Event, LlmError>, Self) {
        self.settle.failure(&e);
        self.done = true;
        self.pending.clear();
        (Err(e), self)
    }
}

fn retryable(e: &LlmError) -> bool {
    match e {
        LlmError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
        LlmError::Connect { .. } => true,
        _ => false,
    }
}

/// `retry-after` as seconds or as an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let when = SystemTime::from(when);
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

async fn read_bounded(response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    body
}

/// The message of a provider's error body (`{"error": {"message"}}` in both formats), else
/// its start. Provider messages do not carry our key; they are kept short all the same.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .or_else(|| e.as_str().map(str::to_owned))
    });
    let message = message.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    crate::truncate(message.trim(), 500)
}

/// A reqwest error, without its URL's query (none carries a key here, but stay safe).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", crate::truncate(&detail, 200))
    }
}

/// Parses one SSE block's data as JSON of type `T`.
pub fn json<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    data: &str,
) -> Result<T, LlmError> {
    serde_json::from_str(data).map_err(|e| LlmError::Decode {
        provider,
        message: format!("{e} in {}", crate::truncate(data, 200)),
    })
}

/// Recorded bytes as the stream `drive` reads, split into `chunk`-byte pieces (tests and
/// benchmarks).
pub fn replay(bytes: Bytes, chunk: usize) -> impl Stream<Item = Result<Sse, sse_stream::Error>> {
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(bytes.slice(at..(at + chunk.max(1)).min(bytes.len()))))
        .collect();
    SseByteStream::new(futures::stream::iter(pieces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_messages_come_from_either_format() {
        assert_eq!(
            error_message(
                br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            ),
            "slow down"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }
}

//! Model calls: every provider call is recorded in `model_calls` — input, output, cache-read
//! and cache-write tokens (each counted once: see [`llm::Usage`]), latency to the first event
//! and in all, purpose, stop reason or error, and cost from the price table (`NULL` for a
//! model without a price: unknown, never zero). The session's totals move in the same
//! transaction, so they always equal the sum of its calls.

use std::{sync::Arc, time::Instant};

use deadpool_postgres::Pool;
use llm::{Event, PriceTable, Provider, Request, StopReason, Turn, Usage};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// Who a call is for, and why.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub team_id: Uuid,
    pub session_id: Option<Uuid>,
    /// `chat`, `dashboard_generation`, `session_summary`, …
    pub purpose: String,
    /// Who the call is charged to (the cost ledger's user), when a person asked for it.
    pub user_id: Option<Uuid>,
    /// The chat or generation run the call belongs to.
    pub run_id: Option<Uuid>,
}

/// How a call ended, for [`ModelCalls::record_of`].
#[derive(Debug)]
pub struct Finished<'a> {
    pub usage: Usage,
    pub first_event: Option<std::time::Duration>,
    pub latency: std::time::Duration,
    /// `None` when the call failed.
    pub stop: Option<&'a StopReason>,
    /// Its code and message, when it failed.
    pub error: Option<String>,
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub id: Uuid,
    pub team_id: Uuid,
    pub session_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub provider: String,
    pub model: String,
    pub purpose: String,
    pub usage: Usage,
    /// Dollars, 12 decimal places; `None` when the model has no price.
    pub cost_usd: Option<String>,
    pub first_token_ms: Option<i32>,
    pub latency_ms: i32,
    pub stop_reason: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub executed_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct ModelCalls {
    pool: Pool,
    prices: Arc<PriceTable>,
}

fn stop_name(s: &StopReason) -> String {
    match s {
        StopReason::EndTurn => "end_turn".into(),
        StopReason::ToolUse => "tool_use".into(),
        StopReason::MaxTokens => "max_tokens".into(),
        StopReason::StopSequence => "stop_sequence".into(),
        StopReason::Refusal => "refusal".into(),
        StopReason::Other(o) => llm::truncate(o, 40),
    }
}

fn ms(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ModelCalls {
    pub fn new(pool: Pool, prices: Arc<PriceTable>) -> Self {
        Self { pool, prices }
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Makes one call, streaming its events to `on_event`, and records it — a failure too
    /// (with the usage seen before it, if any). The record is written before this returns.
    pub async fn call(
        &self,
        provider: &dyn Provider,
        request: &Request,
        ctx: &CallContext,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Turn> {
        let model = if request.model.is_empty() {
            provider.default_model().to_owned()
        } else {
            request.model.clone()
        };
        let span = crate::llm_span!(provider.name(), model);
        let started = Instant::now();
        let mut usage_seen = Usage::default();
        let mut first = None;
        let streamed = async {
            match provider.stream(request).await {
                Ok(stream) => {
                    llm::collect(stream, started, |e| {
                        if first.is_none() {
                            first = Some(started.elapsed());
                        }
                        if let Event::Usage(u) = e {
                            usage_seen = *u;
                        }
                        on_event(e);
                    })
                    .await
                }
                Err(e) => Err(e),
            }
        };
        let outcome = tracing::Instrument::instrument(streamed, span.clone()).await;
        let latency = started.elapsed();
        let (usage, stop, error) = match &outcome {
            Ok(turn) => (turn.usage, Some(turn.stop.clone()), None),
            Err(e) => (usage_seen, None, Some(format!("{}: {e}", e.code()))),
        };
        let record = self.record_of(
            provider,
            &model,
            ctx,
            Finished {
                usage,
                first_event: first,
                latency,
                stop: stop.as_ref(),
                error,
            },
        );
        span.in_scope(|| crate::telemetry::recorded(&record));
        self.record(&record).await?;
        Ok(outcome?)
    }

    /// The record of a finished call: costed from the price table, its error bounded.
    pub fn record_of(
        &self,
        provider: &dyn Provider,
        model: &str,
        ctx: &CallContext,
        done: Finished<'_>,
    ) -> CallRecord {
        CallRecord {
            id: Uuid::now_v7(),
            team_id: ctx.team_id,
            session_id: ctx.session_id,
            user_id: ctx.user_id,
            run_id: ctx.run_id,
            provider: provider.name().to_owned(),
            model: model.to_owned(),
            purpose: ctx.purpose.clone(),
            usage: done.usage,
            cost_usd: self.prices.cost(model, &done.usage).map(|c| c.usd()),
            first_token_ms: done.first_event.map(ms),
            latency_ms: ms(done.latency),
            stop_reason: done.stop.map(stop_name),
            error: done.error.map(|e| llm::truncate(&e, 590)),
            executed_at: OffsetDateTime::now_utc(),
        }
    }

    /// Writes one call and moves its session's totals, in one transaction.
    pub async fn record(&self, r: &CallRecord) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO model_calls (id, team_id, session_id, provider, model, purpose, \
             input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cost_usd, \
             first_token_ms, latency_ms, stop_reason, error, executed_at, user_id, run_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::numeric, $12, $13, $14, $15, $16, $17, $18)",
            &[
                &r.id,
                &r.team_id,
                &r.session_id,
                &r.provider,
                &r.model,
                &r.purpose,
                &tokens(r.usage.input_tokens),
                &tokens(r.usage.output_tokens),
                &tokens(r.usage.cache_read_tokens),
                &tokens(r.usage.cache_write_tokens),
                &r.cost_usd,
                &r.first_token_ms,
                &r.latency_ms,
                &r.stop_reason,
                &r.error,
                &r.executed_at,
                &r.user_id,
                &r.run_id,
            ],
        )
        .await?;
        if let Some(session) = r.session_id {
            tx.execute(
                "UPDATE session_manifests SET \
                   input_tokens = input_tokens + $2, output_tokens = output_tokens + $3, \
                   cache_read_tokens = cache_read_tokens + $4, \
                   cache_write_tokens = cache_write_tokens + $5, \
                   total_tokens = total_tokens + $2 + $3 + $4 + $5, \
                   total_cost_usd = total_cost_usd + coalesce($6::text::numeric, 0), \
                   unpriced_calls = unpriced_calls + CASE WHEN $6::text IS NULL THEN 1 ELSE 0 END, \
                   updated_at = now() \
                 WHERE id = $1",
                &[
                    &session,
                    &tokens(r.usage.input_tokens),
                    &tokens(r.usage.output_tokens),
                    &tokens(r.usage.cache_read_tokens),
                    &tokens(r.usage.cache_write_tokens),
                    &r.cost_usd,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A session's calls, newest first.
    pub async fn for_session(&self, session_id: Uuid, limit: usize) -> Result<Vec<CallRecord>> {
        let client = self.pool.get().await?;
        let limit = limit.clamp(1, 200) as i64;
        let rows = client
            .query(
                "SELECT id, team_id, session_id, provider, model, purpose, input_tokens, \
                 output_tokens, cached_input_tokens, cache_write_tokens, cost_usd::text, \
                 first_token_ms, latency_ms, stop_reason, error, executed_at, user_id, run_id \
                 FROM model_calls WHERE session_id = $1 ORDER BY executed_at DESC, id DESC LIMIT $2",
                &[&session_id, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let t = |i: usize| -> Result<u64> { Ok(r.try_get::<_, i64>(i)?.max(0) as u64) };
                Ok(CallRecord {
                    id: r.try_get(0)?,
                    team_id: r.try_get(1)?,
                    session_id: r.try_get(2)?,
                    user_id: r.try_get(16)?,
                    run_id: r.try_get(17)?,
                    provider: r.try_get(3)?,
                    model: r.try_get(4)?,
                    purpose: r.try_get(5)?,
                    usage: Usage {
                        input_tokens: t(6)?,
                        output_tokens: t(7)?,
                        cache_read_tokens: t(8)?,
                        cache_write_tokens: t(9)?,
                    },
                    cost_usd: r.try_get(10)?,
                    first_token_ms: r.try_get(11)?,
                    latency_ms: r.try_get(12)?,
                    stop_reason: r.try_get(13)?,
                    error: r.try_get(14)?,
                    executed_at: r.try_get(15)?,
                })
            })
            .collect()
    }
}

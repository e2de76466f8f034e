//! API rate limits per user and per team: token buckets in Postgres (`rate_buckets`,
//! migration V11), so a limit holds across every instance of every function.
//!
//! A bucket holds a minute's worth of requests and refills continuously. An instance does
//! not ask Postgres on every request: it takes a lease of a second's refill (at least one
//! token) and spends it in memory, asking again when it is empty. Tokens leased by an
//! instance that then goes idle (or dies) are lost to the bucket, which only ever errs
//! towards refusing a little early, never towards letting more through than the limit.
//! A refused request gets 429 `rate_limited` with `Retry-After` (when the bucket next holds
//! a token). If Postgres cannot be asked, the request is let through (logged): a rate limit
//! must not turn a database hiccup into an outage of reads that would otherwise succeed.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use settings::RateLimits;
use uuid::Uuid;

use crate::ApiError;

/// How long an unused lease is kept before its tokens are given up.
const LEASE_LIFETIME: Duration = Duration::from_secs(60);
/// The most leases kept in memory (one per active user and team).
const MAX_LEASES: usize = 50_000;

struct Lease {
    tokens: u32,
    taken: Instant,
}

/// The limits and this instance's leases.
pub struct RateLimiter {
    limits: RateLimits,
    leases: Mutex<HashMap<String, Lease>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// One request of `user`.
    pub async fn user(&self, db: &Pool, user: Uuid) -> Result<(), ApiError> {
        match self.limits.user_per_min {
            Some(per_min) => self.take(db, format!("user:{user}"), per_min, "you").await,
            None => Ok(()),
        }
    }

    /// One request on behalf of `team` (one that reaches its warehouse or LLM budget).
    pub async fn team(&self, db: &Pool, team: Uuid) -> Result<(), ApiError> {
        match self.limits.team_per_min {
            Some(per_min) => {
                self.take(db, format!("team:{team}"), per_min, "your team")
                    .await
            }
            None => Ok(()),
        }
    }

    /// Spends a token of the local lease, if any is left.
    fn spend_local(&self, key: &str) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get_mut(key) {
            Some(l) if l.tokens > 0 && l.taken.elapsed() < LEASE_LIFETIME => {
                l.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    fn keep_lease(&self, key: String, tokens: u32) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.len() >= MAX_LEASES {
            leases.retain(|_, l| l.tokens > 0 && l.taken.elapsed() < LEASE_LIFETIME);
            if leases.len() >= MAX_LEASES {
                return; // spent from Postgres one at a time until room is made
            }
        }
        leases.insert(
            key,
            Lease {
                tokens,
                taken: Instant::now(),
            },
        );
    }

    async fn take(&self, db: &Pool, key: String, per_min: u32, who: &str) -> Result<(), ApiError> {
        if self.spend_local(&key) {
            return Ok(());
        }
        let capacity = f64::from(per_min);
        let per_sec = capacity / 60.0;
        // A second's refill, at least one token: this request's and the next ones'.
        let want = (per_sec.ceil() as i32).max(1);
        let taken = async {
            let client = db.get().await?;
            let row = client
                .query_one(
                    "WITH p AS (SELECT $1::text AS key, $2::float8 AS cap, $3::int4 AS want, $4::float8 AS rate) \
                     INSERT INTO rate_buckets AS b (key, tokens, granted, updated_at) \
                       SELECT p.key, p.cap - least(p.want, floor(p.cap)), least(p.want, floor(p.cap))::int4, now() FROM p \
                     ON CONFLICT (key) DO UPDATE SET \
                       granted = least($3::int4, floor(least($2::float8, b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $4::float8)))::int4, \
                       tokens = least($2::float8, b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $4::float8) \
                              - least($3::int4, floor(least($2::float8, b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $4::float8))), \
                       updated_at = now() \
                     RETURNING granted, tokens",
                    &[&key, &capacity, &want, &per_sec],
                )
                .await?;
            Ok::<_, anyhow::Error>((row.get::<_, i32>(0), row.get::<_, f64>(1)))
        }
        .await;
        match taken {
            Ok((granted, _)) if granted >= 1 => {
                self.keep_lease(key, (granted - 1) as u32);
                Ok(())
            }
            Ok((_, tokens)) => {
                let wait = ((1.0 - tokens.max(0.0)) / per_sec).ceil().max(1.0) as u64;
                Err(ApiError::too_many_requests(
                    "rate_limited",
                    format!(
                        "{who} sent more than {per_min} requests a minute; try again in {wait} s"
                    ),
                    wait,
                ))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "rate limit not checked");
                Ok(())
            }
        }
    }
}

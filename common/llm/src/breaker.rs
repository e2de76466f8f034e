//! A circuit breaker per provider, as the spec asks: closed while calls succeed; open after
//! `failures` consecutive failures, refusing calls at once for `cooldown`; then half-open,
//! letting one trial call through — its success closes the circuit, its failure opens it
//! again. Every change of state is logged (`llm_breaker` target, warn when opening), and
//! [`Breaker::snapshot`] gives the state and counters to health and metrics.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    /// In half-open state, whether the one trial call is under way.
    trial_in_flight: bool,
}

#[derive(Debug)]
pub struct Breaker {
    provider: &'static str,
    failures: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    opened_total: AtomicU64,
    refused_total: AtomicU64,
}

/// The breaker's state, for health checks and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    pub provider: &'static str,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// How often the circuit opened since the process started.
    pub opened_total: u64,
    /// Calls refused while open.
    pub refused_total: u64,
}

impl Breaker {
    pub fn new(provider: &'static str, failures: u32, cooldown: Duration) -> Self {
        crate::telemetry::breaker_state(provider, BreakerState::Closed);
        Self {
            provider,
            failures: failures.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
            }),
            opened_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent enough to
        // matter; keep serving rather than poisoning every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call go out now? `Err(retry_in)` while the circuit is open, or while the
    /// half-open trial call is under way.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let elapsed = inner.opened_at.map(|t| t.elapsed()).unwrap_or_default();
                if elapsed >= self.cooldown {
                    inner.state = BreakerState::HalfOpen;
                    inner.trial_in_flight = true;
                    crate::telemetry::breaker_state(self.provider, BreakerState::HalfOpen);
                    tracing::info!(
                        target: "llm_breaker",
                        provider = self.provider,
                        state = "half_open",
                        "LLM circuit half-open: one trial call goes through"
                    );
                    Ok(())
                } else {
                    self.refused_total.fetch_add(1, Ordering::Relaxed);
                    Err(self.cooldown - elapsed)
                }
            }
            BreakerState::HalfOpen => {
                if inner.trial_in_flight {
                    self.refused_total.fetch_add(1, Ordering::Relaxed);
                    Err(Duration::from_secs(1))
                } else {
                    inner.trial_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    pub fn success(&self) {
        let mut inner = self.lock();
        if inner.state != BreakerState::Closed {
            tracing::info!(
                target: "llm_breaker",
                provider = self.provider,
                state = "closed",
                "LLM circuit closed: the provider answers again"
            );
            crate::telemetry::breaker_state(self.provider, BreakerState::Closed);
        }
        inner.state = BreakerState::Closed;
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.trial_in_flight = false;
    }

    pub fn failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.trial_in_flight = false;
        let open = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => inner.consecutive_failures >= self.failures,
            BreakerState::Open => false,
        };
        if open {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::breaker_state(self.provider, BreakerState::Open);
            tracing::warn!(
                target: "llm_breaker",
                provider = self.provider,
                state = "open",
                consecutive_failures = inner.consecutive_failures,
                cooldown_secs = self.cooldown.as_secs(),
                "LLM circuit open: calls are refused until the cool-down ends"
            );
        }
    }

    /// A call that ended neither in success nor in a provider failure (the caller went
    /// away, or sent a request the provider refused): frees a half-open trial slot.
    pub fn release(&self) {
        let mut inner = self.lock();
        inner.trial_in_flight = false;
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        BreakerSnapshot {
            provider: self.provider,
            state: inner.state,
            consecutive_failures: inner.consecutive_failures,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            refused_total: self.refused_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_recovers_through_one_trial() {
        let b = Breaker::new("test", 5, Duration::from_millis(50));
        for _ in 0..4 {
            b.admit().expect("closed");
            b.failure();
        }
        assert_eq!(b.snapshot().state, BreakerState::Closed);
        b.admit().expect("closed");
        b.failure();
        assert_eq!(b.snapshot().state, BreakerState::Open);
        assert!(b.admit().is_err(), "open refuses");
        std::thread::sleep(Duration::from_millis(60));
        b.admit().expect("half-open lets one trial through");
        assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one trial at a time");
        b.failure();
        assert_eq!(
            b.snapshot().state,
            BreakerState::Open,
            "a failed trial reopens"
        );
        std::thread::sleep(Duration::from_millis(60));
        b.admit().expect("trial");
        b.success();
        let s = b.snapshot();
        assert_eq!(s.state, BreakerState::Closed);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.opened_total, 2);
        assert_eq!(s.refused_total, 2);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new("test", 2, Duration::from_secs(60));
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.snapshot().state, BreakerState::Closed);
        b.failure();
        assert_eq!(b.snapshot().state, BreakerState::Open);
    }
}

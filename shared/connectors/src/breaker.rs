//! Circuit breaker per channel account: stop calling a channel that keeps failing, probe it after a
//! cool-down, resume when it answers.
//!
//! Lambdas are many and short-lived, so the state lives behind [`BreakerStore`] (load + compare-and-set
//! by version; DynamoDB in production, [`MemoryBreakerStore`] in tests and single-process use). Only
//! failures that say something about the channel count (transient, rate-limited, auth); a permanent
//! failure is about one request and leaves the breaker alone.
//!
//! ```text
//! closed --N consecutive failures--> open --cool-down--> half-open (one probe)
//!   ^                                  ^                      |  failure
//!   +----------- probe succeeds -------+----------------------+
//! ```

use std::{collections::HashMap, future::Future, sync::Mutex, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ConnectorError, FailureClass};

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive counted failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    #[serde(with = "millis")]
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failure_threshold: 5, cool_down: Duration::from_secs(30) }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Phase {
    Closed,
    /// Refusing calls until `until`.
    Open {
        until: DateTime<Utc>,
    },
    /// One probe is out since `since`; a probe that never reports back is replaced after a cool-down.
    HalfOpen {
        since: DateTime<Utc>,
    },
}

/// The persisted state of one breaker. `version` increases with every write (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    pub version: u64,
    pub phase: Phase,
    pub consecutive_failures: u32,
}

impl Default for BreakerState {
    fn default() -> Self {
        Self { version: 0, phase: Phase::Closed, consecutive_failures: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("breaker store: {0}")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where breaker state lives between invocations.
#[async_trait]
pub trait BreakerStore: Send + Sync + std::fmt::Debug {
    /// The current state, `None` when the breaker has never been written (closed).
    async fn load(&self, key: &str) -> Result<Option<BreakerState>, StoreError>;
    /// Writes `next` only if the stored version is still `expected_version` (0 = absent). Returns
    /// whether the write won.
    async fn compare_and_set(&self, key: &str, expected_version: u64, next: &BreakerState) -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: BreakerStore + ?Sized> BreakerStore for std::sync::Arc<T> {
    async fn load(&self, key: &str) -> Result<Option<BreakerState>, StoreError> {
        (**self).load(key).await
    }
    async fn compare_and_set(&self, key: &str, expected_version: u64, next: &BreakerState) -> Result<bool, StoreError> {
        (**self).compare_and_set(key, expected_version, next).await
    }
}

/// In-process store.
#[derive(Debug, Default)]
pub struct MemoryBreakerStore {
    states: Mutex<HashMap<String, BreakerState>>,
}

#[async_trait]
impl BreakerStore for MemoryBreakerStore {
    async fn load(&self, key: &str) -> Result<Option<BreakerState>, StoreError> {
        Ok(self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned())
    }

    async fn compare_and_set(&self, key: &str, expected_version: u64, next: &BreakerState) -> Result<bool, StoreError> {
        let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = states.get(key).map_or(0, |s| s.version);
        if current != expected_version {
            return Ok(false);
        }
        states.insert(key.to_owned(), next.clone());
        Ok(true)
    }
}

/// One breaker, for one key (a channel account), over a store.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    store: S,
    key: String,
    policy: BreakerPolicy,
}

/// What [`CircuitBreaker::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Closed,
    /// This call is the half-open probe.
    Probe,
}

impl<S: BreakerStore> CircuitBreaker<S> {
    pub fn new(store: S, key: impl Into<String>, policy: BreakerPolicy) -> Self {
        Self { store, key: key.into(), policy }
    }

    pub async fn state(&self) -> Result<BreakerState, StoreError> {
        Ok(self.store.load(&self.key).await?.unwrap_or_default())
    }

    /// Runs `call` if the breaker lets it through, and records its outcome.
    pub async fn call<T, F>(&self, call: F) -> Result<T, ConnectorError>
    where
        F: Future<Output = Result<T, ConnectorError>> + Send,
    {
        let admission = self.admit(Utc::now()).await?;
        let result = call.await;
        let failed = result.as_ref().err().is_some_and(ConnectorError::counts_against_channel);
        self.record(admission, failed, Utc::now()).await?;
        result
    }

    /// Decides whether a call may go out now; an open breaker answers with a retryable error.
    pub async fn admit(&self, now: DateTime<Utc>) -> Result<Admission, ConnectorError> {
        loop {
            let state = self.state().await.map_err(store_failure)?;
            let (next_phase, admission) = match state.phase {
                Phase::Closed => return Ok(Admission::Closed),
                Phase::Open { until } if now < until => return Err(open_error(&self.key, until, now)),
                Phase::HalfOpen { since } if now < since + self.cool_down() => {
                    return Err(open_error(&self.key, since + self.cool_down(), now));
                }
                Phase::Open { .. } | Phase::HalfOpen { .. } => (Phase::HalfOpen { since: now }, Admission::Probe),
            };
            let next = BreakerState { version: state.version + 1, phase: next_phase, ..state.clone() };
            if self.store.compare_and_set(&self.key, state.version, &next).await.map_err(store_failure)? {
                tracing::info!(breaker = %self.key, "circuit half-open: sending one probe");
                return Ok(admission);
            }
            // Someone else moved the state; look again.
        }
    }

    /// Records a call's outcome: `failed` only for failures that count against the channel.
    pub async fn record(&self, admission: Admission, failed: bool, now: DateTime<Utc>) -> Result<(), ConnectorError> {
        loop {
            let state = self.state().await.map_err(store_failure)?;
            let next = match (failed, admission, state.phase) {
                (false, _, Phase::Closed) if state.consecutive_failures == 0 => return Ok(()),
                (false, Admission::Closed, Phase::Closed) | (false, Admission::Probe, _) => {
                    BreakerState { version: state.version + 1, phase: Phase::Closed, consecutive_failures: 0 }
                }
                (true, Admission::Probe, _) => BreakerState {
                    version: state.version + 1,
                    phase: Phase::Open { until: now + self.cool_down() },
                    consecutive_failures: state.consecutive_failures.saturating_add(1),
                },
                (true, Admission::Closed, Phase::Closed) => {
                    let failures = state.consecutive_failures.saturating_add(1);
                    let phase = if failures >= self.policy.failure_threshold {
                        tracing::warn!(breaker = %self.key, failures, "circuit opened");
                        Phase::Open { until: now + self.cool_down() }
                    } else {
                        Phase::Closed
                    };
                    BreakerState { version: state.version + 1, phase, consecutive_failures: failures }
                }
                // Late outcomes of calls admitted before the breaker opened change nothing: only the
                // probe decides.
                (_, Admission::Closed, Phase::Open { .. } | Phase::HalfOpen { .. }) => return Ok(()),
            };
            if self.store.compare_and_set(&self.key, state.version, &next).await.map_err(store_failure)? {
                return Ok(());
            }
        }
    }

    fn cool_down(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.policy.cool_down).unwrap_or(chrono::TimeDelta::MAX)
    }
}

fn open_error(key: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> ConnectorError {
    let wait = (until - now).to_std().unwrap_or_default();
    ConnectorError::new(FailureClass::Transient, format!("circuit open for {key}")).with_retry_after(Some(wait))
}

fn store_failure(e: StoreError) -> ConnectorError {
    ConnectorError::transient("circuit breaker store unavailable").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker<MemoryBreakerStore> {
        let policy = BreakerPolicy { failure_threshold: 3, cool_down: Duration::from_secs(10) };
        CircuitBreaker::new(MemoryBreakerStore::default(), "shopify:shop-eu", policy)
    }

    async fn fail(b: &CircuitBreaker<MemoryBreakerStore>, now: DateTime<Utc>) {
        let a = b.admit(now).await.unwrap();
        b.record(a, true, now).await.unwrap();
    }

    #[tokio::test]
    async fn opens_after_threshold_then_probes_then_closes() {
        let b = breaker();
        let t0 = Utc::now();
        for _ in 0..3 {
            fail(&b, t0).await;
        }
        assert!(matches!(b.state().await.unwrap().phase, Phase::Open { .. }));
        let refused = b.admit(t0 + chrono::TimeDelta::seconds(5)).await.unwrap_err();
        assert!(refused.is_retryable() && refused.retry_after.is_some());

        let later = t0 + chrono::TimeDelta::seconds(11);
        assert_eq!(b.admit(later).await.unwrap(), Admission::Probe);
        assert!(b.admit(later).await.is_err(), "only one probe at a time");
        b.record(Admission::Probe, false, later).await.unwrap();
        let s = b.state().await.unwrap();
        assert_eq!((s.phase, s.consecutive_failures), (Phase::Closed, 0));
    }

    #[tokio::test]
    async fn failed_probe_reopens() {
        let b = breaker();
        let t0 = Utc::now();
        for _ in 0..3 {
            fail(&b, t0).await;
        }
        let later = t0 + chrono::TimeDelta::seconds(11);
        assert_eq!(b.admit(later).await.unwrap(), Admission::Probe);
        b.record(Admission::Probe, true, later).await.unwrap();
        assert!(matches!(b.state().await.unwrap().phase, Phase::Open { until } if until > later));
    }

    #[tokio::test]
    async fn a_success_resets_the_count() {
        let b = breaker();
        let t0 = Utc::now();
        fail(&b, t0).await;
        fail(&b, t0).await;
        b.record(Admission::Closed, false, t0).await.unwrap();
        fail(&b, t0).await;
        assert_eq!(b.state().await.unwrap().phase, Phase::Closed);
    }

    #[tokio::test]
    async fn permanent_failures_do_not_count() {
        let b = breaker();
        for _ in 0..5 {
            let r: Result<(), _> = b.call(async { Err(ConnectorError::permanent("unknown sku")) }).await;
            assert!(r.is_err());
        }
        assert_eq!(b.state().await.unwrap(), BreakerState::default());
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = BreakerState { version: 7, phase: Phase::Open { until: Utc::now() }, consecutive_failures: 5 };
        let back: BreakerState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}

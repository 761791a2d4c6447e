//! EventBridge: publishing domain events on the Manifold bus, the versioned interface ERPs and CRMs
//! subscribe to. The detail carries the schema version, the trace id and the canonical record.

use async_trait::async_trait;
use aws_sdk_eventbridge::{Client, types::PutEventsRequestEntry};
use manifold_domain::events::{EVENT_SOURCE, EventDetail, EventKind};
use serde::Serialize;

use crate::StoreError;

/// The event port.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes one event; `detail` is an [`EventDetail`] serialized to JSON.
    async fn publish_json(&self, kind: EventKind, detail: String) -> Result<(), StoreError>;
}

/// Serializes and publishes a typed event.
pub async fn publish<T: Serialize + Sync>(
    publisher: &dyn EventPublisher,
    detail: &EventDetail<T>,
) -> Result<(), StoreError> {
    let json =
        serde_json::to_string(detail).map_err(|e| StoreError::Invalid { what: "event", reason: e.to_string() })?;
    publisher.publish_json(detail.kind, json).await
}

/// EventBridge implementation.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

#[async_trait]
impl EventPublisher for EventBridgeBus {
    async fn publish_json(&self, kind: EventKind, detail: String) -> Result<(), StoreError> {
        let out = self
            .client
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(EVENT_SOURCE)
                    .detail_type(kind.as_str())
                    .detail(detail)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StoreError::service("eventbridge", "PutEvents", e))?;
        if out.failed_entry_count() > 0 {
            let reason = out.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(StoreError::Service { service: "eventbridge", operation: "PutEvents", source: reason.into() });
        }
        Ok(())
    }
}

/// In-memory bus for unit tests.
#[derive(Debug, Default)]
pub struct MemoryBus {
    pub events: std::sync::Mutex<Vec<(EventKind, String)>>,
}

#[async_trait]
impl EventPublisher for MemoryBus {
    async fn publish_json(&self, kind: EventKind, detail: String) -> Result<(), StoreError> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((kind, detail));
        Ok(())
    }
}

/// Fault injection for tests: wraps a publisher and fails chosen calls (1-based) with a retryable
/// error, as EventBridge does when it throttles or is unreachable.
pub struct FailingCalls<P: ?Sized> {
    inner: std::sync::Arc<P>,
    fail: std::collections::BTreeSet<usize>,
    calls: std::sync::atomic::AtomicUsize,
}

impl<P: ?Sized> std::fmt::Debug for FailingCalls<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingCalls").field("fail", &self.fail).field("calls", &self.calls).finish_non_exhaustive()
    }
}

impl<P: ?Sized> FailingCalls<P> {
    /// Fails the calls numbered in `fail` (1 is the first call), passes the others to `inner`.
    pub fn new(inner: std::sync::Arc<P>, fail: impl IntoIterator<Item = usize>) -> Self {
        Self { inner, fail: fail.into_iter().collect(), calls: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// Calls made so far, failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn should_fail(&self) -> bool {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.fail.contains(&n)
    }
}

#[async_trait]
impl<P: EventPublisher + ?Sized> EventPublisher for FailingCalls<P> {
    async fn publish_json(&self, kind: EventKind, detail: String) -> Result<(), StoreError> {
        if self.should_fail() {
            return Err(StoreError::Service {
                service: "eventbridge",
                operation: "PutEvents",
                source: "injected fault".into(),
            });
        }
        self.inner.publish_json(kind, detail).await
    }
}

//! Domain events on the EventBridge bus: the internal, versioned interface that ERPs and CRMs
//! subscribe to. `source` is always [`EVENT_SOURCE`]; `detail-type` is the [`EventKind`]; the detail
//! carries the schema version, the trace id and the canonical record.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The EventBridge `source` of every Manifold event.
pub const EVENT_SOURCE: &str = "manifold";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EventKind {
    OrderAccepted,
    OrderUpdated,
    OrderCancelled,
    OrderOversold,
    InventoryChanged,
    ShipmentCreated,
    RefundCreated,
    ProductChanged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderAccepted => "OrderAccepted",
            EventKind::OrderUpdated => "OrderUpdated",
            EventKind::OrderCancelled => "OrderCancelled",
            EventKind::OrderOversold => "OrderOversold",
            EventKind::InventoryChanged => "InventoryChanged",
            EventKind::ShipmentCreated => "ShipmentCreated",
            EventKind::RefundCreated => "RefundCreated",
            EventKind::ProductChanged => "ProductChanged",
        }
    }
}

/// The `detail` of every event Manifold publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDetail<T> {
    /// Schema version of `data` (`v1`).
    pub version: String,
    pub kind: EventKind,
    /// Stable across re-publications of the same fact (an outbox replay, a ledger replay): consumers
    /// deduplicate on it, since every event is published at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub trace_id: String,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

impl<T> EventDetail<T> {
    pub fn new(kind: EventKind, trace_id: impl Into<String>, occurred_at: DateTime<Utc>, data: T) -> Self {
        Self {
            version: crate::records::SCHEMA_VERSION.to_owned(),
            kind,
            event_id: None,
            trace_id: trace_id.into(),
            occurred_at,
            data,
        }
    }

    /// The same event with its stable id: [`event_id`] of what the event is about.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }
}

/// A stable event id: the kind and the parts that identify the fact (an ingest key, an order id, a
/// position version), so publishing the same fact twice yields the same id.
pub fn event_id(kind: EventKind, parts: &[&str]) -> String {
    format!("{}:{}", kind.as_str(), parts.join(":"))
}

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
    pub trace_id: String,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

impl<T> EventDetail<T> {
    pub fn new(kind: EventKind, trace_id: impl Into<String>, occurred_at: DateTime<Utc>, data: T) -> Self {
        Self { version: crate::records::SCHEMA_VERSION.to_owned(), kind, trace_id: trace_id.into(), occurred_at, data }
    }
}

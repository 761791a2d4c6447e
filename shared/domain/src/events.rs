//! Domain events on the EventBridge bus: the internal, versioned interface that ERPs and CRMs
//! subscribe to. `source` is always [`EVENT_SOURCE`]; `detail-type` is the [`EventKind`]; the detail
//! carries the schema version, the event id, the trace id and the payload.
//!
//! Events carry ids and business fields, never customer contact data: everything on the bus is kept
//! by its archive (30 days, replayable) and copied to every subscriber's queue, so an email or an
//! address published once would be out of reach of any erasure. Order events carry an
//! [`OrderEventV1`] (the order without its buyer, phone or addresses); a consumer that needs those
//! reads the canonical record from the `RecordsTable` by the order id.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AccountId, Channel, Currency, Order, OrderCustomer, OrderId, OrderLine, OrderStatus, OrderWarning, Oversell, Totals,
};

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
    /// A return was created or moved to another state (its data: the [`crate::Return`]).
    ReturnUpdated,
    ProductChanged,
    /// An order not shipped by its deadline ([`DeadlineV1`]).
    OrderLate,
    /// A pushed tracking number the channel still did not show after one more push ([`DeadlineV1`]).
    TrackingUnconfirmed,
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
            EventKind::ReturnUpdated => "ReturnUpdated",
            EventKind::ProductChanged => "ProductChanged",
            EventKind::OrderLate => "OrderLate",
            EventKind::TrackingUnconfirmed => "TrackingUnconfirmed",
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

/// The `data` of `OrderLate` and `TrackingUnconfirmed`, version 1: which order, which deadline passed
/// and why it counts as missed. Ids only: consumers read the record for anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineV1 {
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    /// The shipment whose tracking was not confirmed (`TrackingUnconfirmed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    pub deadline: DateTime<Utc>,
    /// Why it counts as missed, in words (`still paid, not shipped`, `the channel shows no tracking`).
    pub reason: String,
}

/// A stable event id: the kind and the parts that identify the fact (an ingest key, an order id, a
/// position version), so publishing the same fact twice yields the same id.
pub fn event_id(kind: EventKind, parts: &[&str]) -> String {
    format!("{}:{}", kind.as_str(), parts.join(":"))
}

/// The `data` of the order events (`OrderAccepted`, `OrderUpdated`, `OrderCancelled`,
/// `OrderOversold`), version 1: what the order is about (ids, channel, status, lines with their SKUs and
/// quantities, money, the version it was taken at, the oversell decision) and nothing about who bought
/// it. The buyer's name, email and phone and the shipping and billing addresses stay in the canonical
/// record; there is deliberately no field to put them in.
///
/// Unknown fields are tolerated (not denied) on reading, so a consumer keeps working while events of
/// an older shape, or with a field added compatibly, are still in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderEventV1 {
    /// `{channel}:{account}:{channel_order_id}`: the key of the canonical record.
    pub id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub channel_order_id: String,
    pub order_number: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub currency: Currency,
    /// The lines as the record holds them: ids, SKUs, product titles, quantities and money.
    pub lines: Vec<OrderLine>,
    pub totals: Totals,
    /// The channel's update marker the record was stored at (epoch milliseconds).
    pub source_version: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<OrderWarning>,
    /// The channel's latest ship time, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_by: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversold: Option<Oversell>,
    /// Routing and shipping (no personal data): a held order reserves nothing until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<crate::rules::Fulfillment>,
}

impl From<&Order> for OrderEventV1 {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.clone(),
            channel: o.channel,
            account: o.account.clone(),
            channel_order_id: o.channel_order_id.clone(),
            order_number: o.order_number.clone(),
            status: o.status,
            created_at: o.created_at,
            updated_at: o.updated_at,
            currency: o.currency,
            lines: o.lines.clone(),
            totals: o.totals.clone(),
            source_version: o.source_version,
            warnings: o.warnings.clone(),
            ship_by: o.ship_by,
            oversold: o.oversold.clone(),
            fulfillment: o.fulfillment.clone(),
        }
    }
}

impl OrderEventV1 {
    /// The order as the event knows it, for consumers that work on business fields only (the ledger):
    /// every field of the record except the buyer and the addresses, which are empty.
    pub fn into_order(self) -> Order {
        Order {
            id: self.id,
            channel: self.channel,
            account: self.account,
            channel_order_id: self.channel_order_id,
            order_number: self.order_number,
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            currency: self.currency,
            lines: self.lines,
            totals: self.totals,
            customer: OrderCustomer::default(),
            shipping_address: None,
            billing_address: None,
            source_version: self.source_version,
            warnings: self.warnings,
            ship_by: self.ship_by,
            oversold: self.oversold,
            fulfillment: self.fulfillment,
            customer_id: None,
            contact_erased_at: None,
        }
    }
}

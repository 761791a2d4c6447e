//! The ledger's vocabulary: positions, reservation requests and records, outcomes and errors.
//!
//! These types are shared by the pure planning code, both stores and the callers, so that a DynamoDB
//! item, an in-memory fake and a test all speak about the same things.

use std::fmt;

use chrono::{DateTime, Utc};
use manifold_domain::{
    AccountId, Channel, OrderId, OversellAction, ShortLine, Sku,
    config::{BundleComponent, ChannelConfig},
    records::Order,
};
use serde::{Deserialize, Serialize};

/// The location used when the caller names none (and the one an account sells from unless its
/// `stock.location` names another).
pub use manifold_domain::config::DEFAULT_LOCATION;

/// Identifies one stock position: a master SKU at one location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PositionKey {
    pub sku: Sku,
    pub location: String,
}

impl PositionKey {
    pub fn new(sku: Sku, location: impl Into<String>) -> Self {
        Self { sku, location: location.into() }
    }

    /// The position at the default location.
    pub fn default_location(sku: Sku) -> Self {
        Self::new(sku, DEFAULT_LOCATION)
    }
}

impl fmt::Display for PositionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.sku, self.location)
    }
}

/// The authoritative stock of one SKU at one location.
///
/// `available` is stored (not only derived) because DynamoDB condition expressions cannot do
/// arithmetic; every write keeps `available == on_hand - reserved`. `version` increases by one with
/// every change and orders everything derived from the position (entries, channel pushes).
/// Version 0 means the position has never been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub sku: Sku,
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub version: u64,
    /// The as-of time of the latest absolute count applied to this position (ERP/WMS counts that
    /// carry one). A count as of an earlier time is stale and loses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

impl Position {
    /// A position that was never written: nothing on hand, nothing reserved.
    pub fn empty(key: &PositionKey) -> Self {
        Self {
            sku: key.sku.clone(),
            location: key.location.clone(),
            on_hand: 0,
            reserved: 0,
            available: 0,
            version: 0,
            as_of: None,
        }
    }

    pub fn key(&self) -> PositionKey {
        PositionKey::new(self.sku.clone(), self.location.clone())
    }
}

/// One component a line consumes per unit sold (the line's own SKU, or a bundle's components).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub sku: Sku,
    pub per_unit: u32,
}

/// One order line as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveLine {
    pub line_id: String,
    /// The SKU sold (a bundle SKU stays a bundle SKU here).
    pub sku: Sku,
    pub quantity: u32,
    /// What one unit of this line takes from stock.
    pub components: Vec<Component>,
}

/// An order to reserve: what the ledger needs and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReservation {
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub trace_id: Option<String>,
    /// Where the stock is taken from.
    pub location: String,
    pub lines: Vec<ReserveLine>,
    /// Lines that take nothing from stock (no SKU: a gift card, a service; or zero quantity). A
    /// shipment naming them is a no-op rather than an unknown line.
    #[serde(default)]
    pub stockless_lines: Vec<String>,
    /// The channel account's policy when the order cannot be fully reserved.
    pub oversell: OversellAction,
    /// Which version of the order this is (the canonical order's `source_version`, epoch ms): a
    /// later version whose lines changed adjusts the reservation; an older one changes nothing.
    #[serde(default)]
    pub version: i64,
}

impl OrderReservation {
    /// Builds the request from a canonical order: lines without a SKU reserve nothing, bundles expand
    /// to their components, and the location the stock is taken from and the oversell policy come
    /// from the account's stock rules (the default location and Hold when the account is not
    /// configured).
    pub fn from_order(order: &Order, config: &ChannelConfig, trace_id: Option<String>) -> Self {
        let account = config.account(order.channel, order.account.as_str());
        let oversell = account.map_or(OversellAction::Hold, |a| a.stock.oversell);
        let location = account.map_or_else(|| DEFAULT_LOCATION.to_owned(), |a| a.stock.location.clone());
        let (stocked, stockless): (Vec<_>, Vec<_>) =
            order.lines.iter().partition(|l| l.quantity > 0 && l.sku.is_some());
        let lines = stocked
            .iter()
            .filter_map(|l| {
                l.sku.as_ref().map(|sku| ReserveLine::new(l.line_id.clone(), sku.clone(), l.quantity, config))
            })
            .collect();
        Self {
            order_id: order.id.clone(),
            channel: order.channel,
            account: order.account.clone(),
            trace_id,
            location,
            lines,
            stockless_lines: stockless.iter().map(|l| l.line_id.clone()).collect(),
            oversell,
            version: order.source_version,
        }
    }
}

impl ReserveLine {
    /// A line selling `quantity` of `sku`, expanded to its components when `sku` is a bundle.
    pub fn new(line_id: impl Into<String>, sku: Sku, quantity: u32, config: &ChannelConfig) -> Self {
        let components = config.bundle(&sku).map_or_else(
            || vec![Component { sku: sku.clone(), per_unit: 1 }],
            |b| {
                b.components
                    .iter()
                    .map(|BundleComponent { sku, quantity }| Component { sku: sku.clone(), per_unit: *quantity })
                    .collect()
            },
        );
        Self { line_id: line_id.into(), sku, quantity, components }
    }
}

/// Where an order's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// An order too large for one transaction, part-way through its chunks.
    Reserving,
    /// Every unit is reserved.
    Reserved,
    /// Reserved although stock was short, on purpose (`OversellAction::Backorder`).
    Backordered,
    /// Could not be reserved; nothing is held (`Hold` or `Cancel`).
    Rejected,
    /// Cancelled or refunded: nothing is held any more.
    Released,
    /// Everything reserved left the warehouse.
    Shipped,
}

/// What one line of the order holds and what happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecord {
    pub line_id: String,
    pub sku: Sku,
    pub quantity: u32,
    pub components: Vec<Component>,
    #[serde(default)]
    pub released: u32,
    #[serde(default)]
    pub shipped: u32,
    /// Shipped units the buyer sent back and the ledger took back (at most `shipped`).
    #[serde(default)]
    pub returned: u32,
}

impl LineRecord {
    /// Units of this line still reserved.
    pub fn outstanding(&self) -> u32 {
        self.quantity.saturating_sub(self.released + self.shipped)
    }
}

/// Units held at one position on behalf of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub sku: Sku,
    pub location: String,
    pub quantity: u64,
}

/// The per-order record: exactly what was reserved and its state. Its conditional creation makes
/// reserving idempotent; `applied_refs` makes releases and shipments idempotent; `rev` serialises
/// every change to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub location: String,
    pub state: ReservationState,
    pub lines: Vec<LineRecord>,
    /// Units held now, per position. The truth for releases and for resuming a chunked reservation.
    pub held: Vec<Held>,
    #[serde(default)]
    pub short_lines: Vec<ShortLine>,
    /// Order lines that take nothing from stock: shipping them is a no-op. (Records written before
    /// this field existed know none, so a shipment naming such a line is refused for them.)
    #[serde(default)]
    pub stockless_lines: Vec<String>,
    pub oversell: OversellAction,
    /// Release and shipment references already applied (refund id, shipment id, `cancel`...).
    #[serde(default)]
    pub applied_refs: Vec<String>,
    /// The latest order version the reservation follows (see [`OrderReservation::version`]).
    #[serde(default)]
    pub order_version: i64,
    pub rev: u64,
    pub updated_at: DateTime<Utc>,
}

impl ReservationRecord {
    pub fn held_quantity(&self, key: &PositionKey) -> u64 {
        self.held.iter().find(|h| h.sku == key.sku && h.location == key.location).map_or(0, |h| h.quantity)
    }

    pub(crate) fn add_held(&mut self, key: &PositionKey, delta: i64) {
        if let Some(h) = self.held.iter_mut().find(|h| h.sku == key.sku && h.location == key.location) {
            h.quantity = h.quantity.saturating_add_signed(delta);
        } else if delta > 0 {
            self.held.push(Held {
                sku: key.sku.clone(),
                location: key.location.clone(),
                quantity: delta.unsigned_abs(),
            });
        }
        self.held.retain(|h| h.quantity > 0);
    }
}

/// The result of applying an order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every unit is reserved.
    Reserved,
    /// This order was applied before; nothing changed now.
    AlreadyApplied { state: ReservationState },
    /// A later version of the order changed its lines and the reservation now follows it: what the
    /// edit added is reserved, what it removed is released.
    Amended,
    /// Stock was short. With `Backorder` the order is reserved anyway; with `Hold` and `Cancel`
    /// nothing is reserved and the caller holds or cancels the order.
    Oversold { short_lines: Vec<ShortLine>, action: OversellAction },
}

/// Which part of an order a release or shipment covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything still reserved.
    WholeOrder,
    /// `(line_id, units)` pairs; more units than a line still holds are capped.
    Lines(Vec<(String, u32)>),
}

/// The result of a release or a shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Units moved, per position.
    Applied { moved: Vec<Held> },
    /// This reference was applied before.
    AlreadyApplied,
    /// The order holds nothing to move (never reserved, rejected, or already closed).
    NothingHeld,
}

/// The result of an on-hand update from the source of truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    Applied,
    AlreadyApplied,
}

/// What a ledger call changed, for the caller's availability fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<T> {
    pub outcome: T,
    /// Positions as they are after the call (empty when nothing changed).
    pub positions: Vec<Position>,
}

/// Why a ledger call failed. `is_retryable` tells the caller whether to let the message be retried.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("dynamodb {operation} failed")]
    Dynamo {
        operation: &'static str,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("stored item {key} is not a valid ledger item")]
    Corrupt {
        key: String,
        #[source]
        source: serde_dynamo::Error,
    },
    #[error("order {0} is being reserved by another invocation")]
    InProgress(OrderId),
    #[error("gave up on {what} after {attempts} attempts under contention")]
    Contention { what: String, attempts: u32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An absolute count older than the one the position already applied: it loses, nothing changes.
    #[error(
        "stale count for {key}: as of {as_of}, but the count applied to this position is as of {applied}; the newer count stands"
    )]
    Stale { key: PositionKey, as_of: DateTime<Utc>, applied: DateTime<Utc> },
}

impl LedgerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            LedgerError::Dynamo { retryable, .. } => *retryable,
            LedgerError::InProgress(_) | LedgerError::Contention { .. } => true,
            LedgerError::Corrupt { .. } | LedgerError::Invalid(_) | LedgerError::Stale { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use manifold_domain::config::ChannelConfig;

    use super::*;

    #[test]
    fn an_order_reserves_at_its_accounts_location() {
        let example = include_str!("../../../infra/channels.example.toml");
        let text = example.replacen("stock = { buffer = 2,", "stock = { location = \"wh-2\", buffer = 2,", 1);
        let config = ChannelConfig::parse("x.toml", &text).unwrap();
        let order: Order = serde_json::from_value(serde_json::json!({
            "id": "shopify:shop-eu:1", "channel": "shopify", "account": "shop-eu", "channel_order_id": "1",
            "order_number": "1", "status": "paid", "created_at": "2026-11-30T10:00:00Z",
            "updated_at": "2026-11-30T10:00:00Z", "currency": "EUR",
            "lines": [{"line_id": "L1", "sku": "TEE-BLK-M", "channel_sku": null, "sku_mapped": false, "title": "Tee",
                       "quantity": 2, "unit_price": "10.00", "total": "20.00", "tax": "0.00", "discount": "0.00"}],
            "totals": {"subtotal": "20.00", "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": "20.00"},
            "customer": {}, "shipping_address": null, "billing_address": null, "source_version": 42
        }))
        .unwrap();
        let req = OrderReservation::from_order(&order, &config, None);
        assert_eq!((req.location.as_str(), req.version), ("wh-2", 42));
        let mut elsewhere = order.clone();
        elsewhere.account = AccountId::new("not-configured").unwrap();
        assert_eq!(OrderReservation::from_order(&elsewhere, &config, None).location, DEFAULT_LOCATION);
    }
}

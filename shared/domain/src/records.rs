//! Canonical records v1: orders, inventory, products, prices, shipments, refunds, returns and customers.
//!
//! Field names are the public contract (the event bus payloads, the DynamoDB items, the JSON Schemas in
//! `schemas/`). Renaming one is a breaking change and needs a `v2`.

use std::{collections::BTreeMap, str::FromStr};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AccountId, Amount, Channel, ChannelSku, Currency, DomainError, OrderId, Sku};

/// The version of the canonical schemas defined in this module.
pub const SCHEMA_VERSION: &str = "v1";

/// Where an order is in its life. A closed set: channel statuses map onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    PartiallyFulfilled,
    Fulfilled,
    Cancelled,
    Refunded,
    PartiallyRefunded,
}

impl OrderStatus {
    pub const NAMES: [&'static str; 7] =
        ["pending", "paid", "partially_fulfilled", "fulfilled", "cancelled", "refunded", "partially_refunded"];
    const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::PartiallyFulfilled,
        OrderStatus::Fulfilled,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
        OrderStatus::PartiallyRefunded,
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Cancelled and fully refunded orders hold no stock.
    pub fn releases_stock(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Refunded)
    }
}

impl FromStr for OrderStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| DomainError::UnknownStatus(s.to_owned()))
    }
}

/// A postal address. `country_code` is ISO 3166-1 alpha-2.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
}

impl Address {
    /// Checks and upper-cases an ISO 3166-1 alpha-2 code.
    /// An ISO 3166-1 country code as the alpha-2 code records keep: alpha-2 as given (upper-cased),
    /// alpha-3 (OTTO's `DEU`, Kaufland's addresses) mapped through the standard's table.
    pub fn country(code: &str) -> Result<String, DomainError> {
        let c = code.trim();
        if !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
            return Err(DomainError::InvalidCountry(code.to_owned()));
        }
        match c.len() {
            2 => Ok(c.to_ascii_uppercase()),
            3 => celes::Country::from_alpha3(c.to_ascii_uppercase())
                .map(|country| country.alpha2.to_owned())
                .map_err(|_| DomainError::InvalidCountry(code.to_owned())),
            _ => Err(DomainError::InvalidCountry(code.to_owned())),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The buyer as the order names them. Personal data: never logged (see the telemetry crate).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// The channel's own id of the buyer (Shopify's customer id, eBay's username), when it gives one;
    /// `None` for guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_customer_id: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// The channel's id of this line (stable across updates of the order).
    pub line_id: String,
    /// The master SKU after mapping. `None` for lines with no SKU at all (custom items, tips).
    pub sku: Option<Sku>,
    /// The SKU as the channel sent it.
    pub channel_sku: Option<ChannelSku>,
    /// False when the channel SKU has no entry in the mapping: `sku` then keeps the channel's value
    /// and the order carries a [`OrderWarning::UnmappedSku`].
    pub sku_mapped: bool,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Amount,
    /// `unit_price * quantity` before discount and tax.
    pub total: Amount,
    pub tax: Amount,
    pub discount: Amount,
}

/// Order-level money. All amounts are in the order's `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub subtotal: Amount,
    pub shipping: Amount,
    pub tax: Amount,
    pub discount: Amount,
    pub total: Amount,
}

/// Something the normalizer noticed and kept rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OrderWarning {
    /// The channel SKU has no mapping to a master SKU.
    UnmappedSku { line_id: String, channel_sku: String },
    /// A line without any SKU; it reserves no stock.
    LineWithoutSku { line_id: String },
}

/// Lines the ledger could not reserve: the order is held, back-ordered or cancelled per configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Oversell {
    pub short_lines: Vec<ShortLine>,
    /// What the channel configuration says to do about it.
    pub action: OversellAction,
    pub detected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortLine {
    pub sku: Sku,
    pub requested: u32,
    pub available: i64,
}

/// The per-channel policy for an order that cannot be fully reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OversellAction {
    /// Keep the order, reserve nothing, and wait for a person.
    #[default]
    Hold,
    /// Accept the order and let stock go negative on purpose, to be filled later.
    Backorder,
    /// Cancel the order through the channel's connector.
    Cancel,
}

/// A sales order, whichever channel it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// `{channel}:{account}:{channel_order_id}`.
    pub id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub channel_order_id: String,
    /// The number people see (may repeat on some channels, e.g. Zalando).
    pub order_number: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub totals: Totals,
    pub customer: OrderCustomer,
    pub shipping_address: Option<Address>,
    pub billing_address: Option<Address>,
    /// The channel's own update marker as epoch milliseconds; a record is only replaced by one whose
    /// `source_version` is greater, so late out-of-order deliveries never regress it.
    pub source_version: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<OrderWarning>,
    /// The latest time the channel expects the order to ship (Amazon's `LatestShipDate`), when it
    /// gives one; otherwise the account's `shipping.ship_within` applies (see the late-order watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_by: Option<DateTime<Utc>>,
    /// Set by the inventory ledger when the order could not be fully reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversold: Option<Oversell>,
    /// How the order is routed and shipped: carrier and service for the WMS, the fulfilling location,
    /// a hold for review, tags, and the rules that decided each (see [`crate::rules`]). Decided once,
    /// when the order is first stored; kept across its later updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<crate::rules::Fulfillment>,
    /// The [`Customer`] this order belongs to, set when the order is joined to one (see
    /// [`crate::customers`]); kept across the order's later updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Set when the buyer asked to be forgotten: the contact data and addresses are gone, and later
    /// updates of the order from its channel are stored without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_erased_at: Option<DateTime<Utc>>,
}

impl Order {
    /// Held for review by a routing rule and not released: it reserves nothing.
    pub fn is_held(&self) -> bool {
        self.fulfillment.as_ref().is_some_and(crate::rules::Fulfillment::is_held)
    }

    /// Quantity per master SKU across all lines (lines without a SKU reserve nothing).
    pub fn quantities_by_sku(&self) -> std::collections::BTreeMap<Sku, u32> {
        let mut out = std::collections::BTreeMap::new();
        for line in &self.lines {
            if let Some(sku) = &line.sku {
                *out.entry(sku.clone()).or_insert(0) += line.quantity;
            }
        }
        out
    }
}

/// A stock level on one channel or at one location, as reported by that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryLevel {
    pub channel: Channel,
    pub account: AccountId,
    pub sku: Option<Sku>,
    pub channel_sku: Option<ChannelSku>,
    /// The channel's inventory item or listing id when it keys stock by id rather than SKU.
    pub channel_item_id: Option<String>,
    pub location_id: Option<String>,
    pub available: i64,
    pub updated_at: DateTime<Utc>,
    pub source_version: i64,
}

/// Why stock moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    Reserve,
    Release,
    Ship,
    SetOnHand,
    Backorder,
    /// Units moved between the shards of a hot SKU's position; the SKU's total does not change.
    Rebalance,
    /// Shipped units a buyer sent back, taken onto on-hand (sellable, or a damaged location).
    Return,
}

/// A change to one SKU's stock position (the ledger's immutable entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryAdjustment {
    pub sku: Sku,
    pub location: String,
    pub reason: AdjustmentReason,
    /// Change to `on_hand`.
    pub on_hand_delta: i64,
    /// Change to `reserved`.
    pub reserved_delta: i64,
    pub on_hand_after: i64,
    pub reserved_after: i64,
    pub order_id: Option<OrderId>,
    pub channel: Option<Channel>,
    pub trace_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// One sellable variant of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub channel_variant_id: String,
    pub sku: Option<Sku>,
    pub channel_sku: Option<ChannelSku>,
    pub title: String,
    pub price: Option<Amount>,
    pub barcode: Option<String>,
    /// The id the channel keys stock by (Shopify inventory_item_id, Etsy product id, ...).
    pub inventory_item_id: Option<String>,
    pub inventory_quantity: Option<i64>,
}

/// One product image. Channels show images in the order of the list (the first is the main one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Where the image can be fetched (`https://`); channels that import by URL fetch it themselves.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
    /// SHA-256 of the image's bytes, lowercase hex, where the source knows it. A new file at the
    /// same URL changes it, so the change is pushed; uploads check the fetched bytes against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// A product as a channel shows it, with its variants (`product.v2`).
///
/// v2 added `description`, `attributes` and `images`. Migration from v1: none needed; a v1 document
/// reads as v2 with no description, no attributes and no images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// `{channel}:{account}:{channel_product_id}`.
    pub id: String,
    pub channel: Channel,
    pub account: AccountId,
    pub channel_product_id: String,
    pub title: String,
    /// HTML or plain text, as the channel holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    pub currency: Option<Currency>,
    pub variants: Vec<Variant>,
    pub updated_at: DateTime<Utc>,
    pub source_version: i64,
}

/// A SKU's product content as the ERP or PIM keeps it (`product_content.v1`): what the content tier
/// gives every channel that takes it. One per SKU; a write older than the stored one is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductContent {
    pub sku: Sku,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Name to value (`material = "stoneware"`), for channels that take free attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// In display order; the first is the main image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Shipping weight of one unit, in grams (shipping rules match on an order's weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_grams: Option<u32>,
    /// When the source changed it; orders writes.
    pub updated_at: DateTime<Utc>,
}

/// A selling price for one SKU on one channel (or everywhere when `channel` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub sku: Sku,
    pub channel: Option<Channel>,
    pub currency: Currency,
    pub amount: Amount,
    pub compare_at: Option<Amount>,
    pub effective_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentLine {
    pub line_id: Option<String>,
    pub sku: Option<Sku>,
    pub quantity: u32,
}

/// Goods handed to a carrier for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub id: String,
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub channel_order_id: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub lines: Vec<ShipmentLine>,
    pub shipped_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundLine {
    pub line_id: String,
    pub sku: Option<Sku>,
    pub quantity: u32,
    /// Whether the units go back to stock.
    pub restock: bool,
}

/// Money returned to the buyer, optionally with units back to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub id: String,
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub currency: Currency,
    pub amount: Amount,
    pub lines: Vec<RefundLine>,
    pub created_at: DateTime<Utc>,
}

/// Where a return is. The states are ordered: a return only moves forward, and `rejected` ends it
/// without goods coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnState {
    /// The buyer asked to send goods back.
    Requested,
    /// The seller or the marketplace accepted the request.
    Approved,
    /// The goods arrived back at the seller.
    Received,
    /// The buyer got the money back for the returned goods.
    Refunded,
    /// The request was refused or cancelled: nothing comes back.
    Rejected,
}

impl ReturnState {
    /// Whether the goods are back (or, where the channel has no receipt step, refunded as returned):
    /// the point the default restock policy restocks at.
    pub fn goods_back(self) -> bool {
        matches!(self, ReturnState::Received | ReturnState::Refunded)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    /// The order line the units were sold on.
    pub line_id: String,
    pub sku: Option<Sku>,
    pub quantity: u32,
    /// The buyer's or channel's reason for this line, as the channel words or codes it.
    pub reason: Option<String>,
}

/// Goods a buyer sends back, from request to refund: what the restock policy acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Return {
    /// `{channel}:{account}:{channel_return_id}`.
    pub id: String,
    pub order_id: OrderId,
    pub channel: Channel,
    pub account: AccountId,
    pub channel_order_id: String,
    pub channel_return_id: String,
    pub state: ReturnState,
    /// The reason for the whole return, where the channel gives one.
    pub reason: Option<String>,
    pub lines: Vec<ReturnLine>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub use crate::customers::Customer;

/// Any canonical record, tagged by kind: what the ingest path stores and publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum Record {
    Order(Box<Order>),
    InventoryLevel(InventoryLevel),
    Product(Product),
    Price(Price),
    Shipment(Shipment),
    Refund(Refund),
    Return(Return),
    Customer(Box<Customer>),
}

#[cfg(test)]
mod country_tests {
    use super::Address;

    #[test]
    fn alpha_2_and_alpha_3_codes_become_alpha_2_and_anything_else_is_refused() {
        assert_eq!(Address::country(" de ").unwrap(), "DE");
        assert_eq!(Address::country("DEU").unwrap(), "DE");
        assert_eq!(Address::country("aut").unwrap(), "AT");
        assert_eq!(Address::country("CZE").unwrap(), "CZ");
        for bad in ["XYZ", "Deutschland", "D", "D3", ""] {
            assert!(Address::country(bad).is_err(), "{bad:?} is not a country code");
        }
    }
}

//! Channel documents in, canonical records v1 out.
//!
//! Every sales channel describes orders, refunds, shipments, stock and products in its own shape, with
//! its own traps (money as strings, floats or minor units; line prices that are really line totals; dates
//! without zones). This crate is the only place that knows those shapes: one module per channel under
//! [`channels`], pure functions (no I/O, no async, no clock), so the ingest path can call them anywhere
//! and tests can feed them published payloads.
//!
//! * [`normalize`] / [`normalize_order`] / [`normalize_all`]: a fetched document to canonical records.
//! * [`classify`]: what an inbound notification is (a full document, a thin reference to fetch first,
//!   or something to acknowledge and ignore).
//! * [`body_event_id`]: the channel's delivery id inside a notification body, for deduplication.
//!
//! Errors name the offending field ([`NormalizeError::path`]) and are always permanent.

mod build;
pub mod channels;
mod dates;
mod error;
mod json;
pub mod samples;

use chrono::{DateTime, Utc};
use manifold_domain::{Channel, Order, Record, config::AccountConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::NormalizeError;
use json::Node;

/// What a normalizer needs besides the document: whose account it is (id and SKU map) and when the
/// document arrived. No clock is read inside this crate.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub account: &'a AccountConfig,
    pub received_at: DateTime<Utc>,
}

/// The kind of channel document to normalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Order,
    Refund,
    /// An order's returns and refunds, read together (each becomes a Return and, where money went
    /// back, a Refund).
    Return,
    Shipment,
    InventoryLevel,
    Product,
}

impl DocKind {
    pub const ALL: [DocKind; 6] = [
        DocKind::Order,
        DocKind::Refund,
        DocKind::Return,
        DocKind::Shipment,
        DocKind::InventoryLevel,
        DocKind::Product,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Order => "order",
            DocKind::Refund => "refund",
            DocKind::Return => "return",
            DocKind::Shipment => "shipment",
            DocKind::InventoryLevel => "inventory_level",
            DocKind::Product => "product",
        }
    }
}

/// What an inbound notification body is: a full document to normalize now, a thin reference whose
/// resource must be fetched through the channel connector first, or something to acknowledge and ignore.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Full { kind: DocKind, doc: Value },
    Thin { kind: DocKind, resource_id: String, event_time: Option<DateTime<Utc>> },
    Ignore { reason: String },
}

/// Normalizes one channel document of `kind` into a canonical record of that kind.
///
/// A few documents hold several records of a kind (an Etsy receipt with several shipments, a BigCommerce
/// shipments list): this returns the last one, the most recent. An order document may also hold the
/// returns its units report (Kaufland, OTTO): they are left out here; use [`normalize_all`] for every
/// record.
pub fn normalize(channel: Channel, kind: DocKind, doc: &Value, ctx: &Context) -> Result<Record, NormalizeError> {
    normalize_all(channel, kind, doc, ctx)?
        .into_iter()
        .rfind(|r| is_kind(r, kind))
        .ok_or_else(|| NormalizeError::new("", format!("the {channel} document holds no {}", kind.as_str())))
}

/// Whether `record` is what a document of `kind` is about.
fn is_kind(record: &Record, kind: DocKind) -> bool {
    matches!(
        (kind, record),
        (DocKind::Order, Record::Order(_))
            | (DocKind::Refund, Record::Refund(_))
            | (DocKind::Return, Record::Return(_) | Record::Refund(_))
            | (DocKind::Shipment, Record::Shipment(_))
            | (DocKind::InventoryLevel, Record::InventoryLevel(_))
            | (DocKind::Product, Record::Product(_))
    )
}

/// Normalizes every record a channel document of `kind` holds (usually exactly one; an order
/// document first gives its order, then any returns its lines report).
pub fn normalize_all(
    channel: Channel,
    kind: DocKind,
    doc: &Value,
    ctx: &Context,
) -> Result<Vec<Record>, NormalizeError> {
    let root = Node::root(doc);
    (channels::module(channel).normalize)(kind, &root, ctx)
}

/// Normalizes an order document (see each channel module for the exact input it expects).
pub fn normalize_order(channel: Channel, doc: &Value, ctx: &Context) -> Result<Order, NormalizeError> {
    match normalize(channel, DocKind::Order, doc, ctx)? {
        Record::Order(order) => Ok(*order),
        other => Err(NormalizeError::new("", format!("expected an order record, built {other:?}"))),
    }
}

/// Classifies an inbound notification body.
///
/// `topic` is the channel's event name where it sends one in a header (Shopify X-Shopify-Topic e.g.
/// "orders/create", WooCommerce X-WC-Webhook-Topic e.g. "order.updated"); other channels carry it in the
/// body (BigCommerce scope, Etsy event_type, TikTok type, Amazon NotificationType, eBay metadata.topic).
pub fn classify(channel: Channel, topic: Option<&str>, body: &Value) -> Result<Inbound, NormalizeError> {
    let root = Node::root(body);
    let topic = topic.map(str::trim).filter(|t| !t.is_empty());
    (channels::module(channel).classify)(topic, &root)
}

/// The id the channel gives this delivery/event when it is in the body (BigCommerce hash, TikTok
/// tts_notification_id, Amazon NotificationMetadata.NotificationId, eBay notification.notificationId),
/// for deduplication. Channels that put it in a header (Shopify, WooCommerce, Etsy) return `None`.
pub fn body_event_id(channel: Channel, body: &Value) -> Option<String> {
    let path = channel.spec().body_event_id?;
    Node::root(body).at(path).opt_text().ok().flatten()
}

//! Kaufland Global Marketplace (Seller API v2): push notifications that carry no order data, verified
//! and then completed by fetching the order; every API request signed with the seller's keys.

use super::{Channel, ChannelSpec, Inbound, spec::v_number};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Kaufland,
    title: "Kaufland",
    inbound: Inbound::Webhooks,
    // Notifications name an event and a resource only; no delivery id is documented, so deliveries are
    // told apart by their body.
    event_id_headers: &[],
    topic_header: None,
    body_event_id: None,
    // GET /v2/orders/{id_order}, which embeds the order units.
    fetch_calls: 1,
    // Units, orders and prices are per storefront (de, cz, sk, pl, at, fr, it).
    required_settings: &["storefront"],
    api_version: v_number,
    stock_sla: None,
    // 111 requests per second per seller, across every endpoint.
    push_concurrency: 2,
};

/// Kaufland's cancellation reasons (`PATCH /v2/order-units/{id}/cancel`), read by the connector and
/// its simulator.
pub const CANCEL_REASONS: &[&str] = &[
    "BuyerCancelled",
    "ShippingAddressUndeliverable",
    "WrongCatalogData",
    "GeneralAdjustment",
    "MerchandiseNotReceived",
    "NoInventory",
    "DelayedInventory",
    "WrongPrice",
    "NoReactionBuyer",
    "UndeliverableRegion",
];

//! Kaufland Global Marketplace (Seller API v2): push notifications that carry no order data, verified
//! and then completed by fetching the order; every API request signed with the seller's keys.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::v_number};

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
    capabilities: Capabilities {
        orders_in: Cell::Supported("signed notifications order_new, order_unit_new; GET /v2/orders/{id}"),
        order_updates_in: Cell::Supported("notification order_unit_status_changed, the unit's order re-read"),
        returns_in: Cell::Supported(
            "units returned or returned_paid on GET /v2/orders/{id}, re-read on return_* notifications and by the sweep",
        ),
        stock_out: Cell::Supported("POST /v2/units/bulk amount, 150 per call"),
        price_out: Cell::Supported("POST /v2/units/bulk listing_price in storefront cents"),
        tracking_out: Cell::Supported("PATCH /v2/order-units/{id}/send"),
        cancel_out: Cell::Supported("PATCH /v2/order-units/{id}/cancel with a reason"),
        acknowledge: Cell::NotOffered(
            "Kaufland has no acknowledgement step; units wait in need_to_be_sent (Seller API v2)",
        ),
        list_orders_since: Cell::Supported("GET /v2/orders?ts_units_updated_from_iso"),
        read_stock: Cell::Supported("GET /v2/units?id_offer="),
        listing_sync: Cell::Supported("GET /v2/units, offset pages"),
    },
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

//! Shopify: signed webhooks, quarterly Admin API versions.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::digits};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Shopify,
    title: "Shopify",
    inbound: Inbound::Webhooks,
    event_id_headers: &["x-shopify-event-id", "x-shopify-webhook-id"],
    topic_header: Some("x-shopify-topic"),
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &["location_id"],
    // Quarterly YYYY-MM.
    api_version: |v| v.len() == 7 && digits(&v[..4]) && &v[4..5] == "-" && matches!(&v[5..], "01" | "04" | "07" | "10"),
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported("webhooks orders/create and orders/paid (HMAC-signed), the REST order in the body"),
        order_updates_in: Cell::Supported(
            "webhooks orders/updated, orders/cancelled, orders/edited (re-read with GET orders/{id}.json)",
        ),
        returns_in: Cell::Supported(
            "webhooks refunds/create (a Refund) and returns/* (GraphQL return(id:) read back: requested, open, closed, declined)",
        ),
        stock_out: Cell::Supported("GraphQL inventorySetQuantities, 250 per call, idempotency key"),
        price_out: Cell::Supported("GraphQL productVariantsBulkUpdate"),
        tracking_out: Cell::Supported("GraphQL fulfillmentCreate on the order's open fulfillment orders"),
        cancel_out: Cell::Supported("GraphQL orderCancel (restock, no refund)"),
        acknowledge: Cell::NotOffered(
            "Shopify has no acknowledgement step: an order is the shop's once created (Admin API Order)",
        ),
        list_orders_since: Cell::Supported("REST GET orders.json?updated_at_min, Link-header pages"),
        read_stock: Cell::Supported("GraphQL inventoryItems by SKU, inventoryLevel at the location"),
        listing_sync: Cell::Supported("GraphQL productVariants, 100 per page"),
    },
};

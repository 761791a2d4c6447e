//! WooCommerce: signed webhooks (and an unsigned creation ping), REST API v1 to v3.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Woocommerce,
    title: "WooCommerce",
    inbound: Inbound::Webhooks,
    event_id_headers: &["x-wc-webhook-delivery-id"],
    topic_header: Some("x-wc-webhook-topic"),
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &[],
    api_version: |v| matches!(v, "v1" | "v2" | "v3"),
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported("webhook order.created (X-WC-Webhook-Signature), the REST v3 order in the body"),
        order_updates_in: Cell::Supported("webhooks order.updated and order.restored"),
        returns_in: Cell::Supported(
            "webhook action.woocommerce_order_refunded; GET orders/{id}/refunds (a refund with lines is a Return)",
        ),
        stock_out: Cell::Supported("POST products/batch and products/{id}/variations/batch, 100 per call"),
        price_out: Cell::Supported("the same batch endpoints with regular_price"),
        tracking_out: Cell::Supported("PUT orders/{id}: Shipment Tracking plugin meta, status completed"),
        cancel_out: Cell::Supported("PUT orders/{id} status cancelled, with an order note"),
        acknowledge: Cell::NotOffered("WooCommerce has no acknowledgement step (REST API v3 order statuses)"),
        list_orders_since: Cell::Supported("GET orders?modified_after, X-WP-TotalPages"),
        read_stock: Cell::Supported("GET products?sku= (variations of variable products)"),
        listing_sync: Cell::Supported("GET products and products/{id}/variations, 100 per page"),
    },
};

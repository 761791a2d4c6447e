//! BigCommerce: thin webhooks (an id and a hash), completed by fetching the order.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Bigcommerce,
    title: "BigCommerce",
    inbound: Inbound::Webhooks,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: Some("hash"),
    // Order, products, shipping addresses.
    fetch_calls: 3,
    required_settings: &["location_id"],
    api_version: |v| matches!(v, "v2" | "v3"),
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported(
            "webhook store/order/created, completed with GET /v2/orders/{id}, products, addresses",
        ),
        order_updates_in: Cell::Supported("webhooks store/order/updated, statusUpdated, archived"),
        returns_in: Cell::Supported(
            "webhook store/order/refund/created; GET /v3/orders/{id}/payment_actions/refunds become Refunds of the products they name (BigCommerce has no returns API)",
        ),
        stock_out: Cell::Supported("PUT /v3/inventory/adjustments/absolute"),
        price_out: Cell::Supported("PUT /v3/catalog/variants, 50 per call"),
        tracking_out: Cell::Supported("POST /v2/orders/{id}/shipments"),
        cancel_out: Cell::Supported("PUT /v2/orders/{id} status_id 5 (Cancelled)"),
        acknowledge: Cell::NotOffered("BigCommerce has no acknowledgement step (Orders v2)"),
        list_orders_since: Cell::Supported("GET /v2/orders?min_date_modified"),
        read_stock: Cell::Supported("GET /v3/catalog/variants?sku:in="),
        listing_sync: Cell::Supported("GET /v3/catalog/variants, 250 per page"),
    },
};

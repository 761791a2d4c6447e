//! eBay: Notification API deliveries signed with ECDSA, endpoint validated by a challenge.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::v_number};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Ebay,
    title: "eBay",
    inbound: Inbound::Webhooks,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: Some("notification.notificationId"),
    fetch_calls: 1,
    required_settings: &[],
    api_version: v_number,
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported("Notification API ORDER_CONFIRMATION (signed), completed with getOrder"),
        order_updates_in: Cell::Supported("notifications ITEM_MARKED_SHIPPED, ORDER_CANCELLATION"),
        returns_in: Cell::Supported(
            "Post-Order GET /post-order/v2/return/search (open and closed), swept by the reconciliation tier",
        ),
        stock_out: Cell::Supported("POST /sell/inventory/v1/bulk_update_price_quantity, 25 per call"),
        price_out: Cell::Supported("the same call with offers and price"),
        tracking_out: Cell::Supported("POST /sell/fulfillment/v1/order/{id}/shipping_fulfillment"),
        cancel_out: Cell::Supported("POST /post-order/v2/cancellation"),
        acknowledge: Cell::NotOffered("eBay has no acknowledgement step (Fulfillment API v1)"),
        list_orders_since: Cell::Supported("GET /sell/fulfillment/v1/order?filter=lastmodifieddate"),
        read_stock: Cell::Supported("POST /sell/inventory/v1/bulk_get_inventory_item"),
        listing_sync: Cell::Supported("GET /sell/inventory/v1/inventory_item and each SKU's offers"),
    },
};

//! Etsy: Standard Webhooks, Open API v3.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Etsy,
    title: "Etsy",
    inbound: Inbound::Webhooks,
    event_id_headers: &["webhook-id"],
    topic_header: None,
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &["shop_id"],
    api_version: |v| v == "v3",
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported(
            "webhook order.paid (Standard Webhooks), completed with GET shops/{shop_id}/receipts/{id}",
        ),
        order_updates_in: Cell::Supported("webhooks order.* re-read the receipt (status, cancellation)"),
        returns_in: Cell::Supported(
            "the receipt's refunds[] (ShopRefund), re-read on order.* webhooks, become Refunds; Open API v3 has no returns and no refunded transactions",
        ),
        stock_out: Cell::Supported("PUT listings/{id}/inventory: the whole product set, read first"),
        price_out: Cell::Supported("the same inventory write with the offerings' price"),
        tracking_out: Cell::Supported("POST shops/{shop_id}/receipts/{id}/tracking"),
        cancel_out: Cell::NotOffered(
            "Open API v3 has no operation that cancels a receipt (updateShopReceipt sets was_shipped and was_paid only); sellers cancel in Shop Manager",
        ),
        acknowledge: Cell::NotOffered("Etsy has no acknowledgement step (Open API v3 receipts)"),
        list_orders_since: Cell::Supported("GET shops/{shop_id}/receipts?min_last_modified"),
        read_stock: Cell::Supported(
            "GET listings/batch?listing_ids&includes=Inventory (getListingsByListingIds) by the listing sync's ids, 100 a call",
        ),
        listing_sync: Cell::Supported("GET shops/{shop_id}/listings?state=active&includes=Inventory"),
    },
};

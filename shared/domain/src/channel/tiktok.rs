//! TikTok Shop: signed webhooks, API versions named by month (`202309`).

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::digits};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Tiktok,
    title: "TikTok Shop",
    inbound: Inbound::Webhooks,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: Some("tts_notification_id"),
    fetch_calls: 1,
    required_settings: &["warehouse_id", "app_key"],
    api_version: |v| v.len() == 6 && digits(v),
    stock_sla: None,
    // 50 requests per second per shop.
    push_concurrency: 5,
    capabilities: Capabilities {
        orders_in: Cell::Supported("webhook type 1 (order status change), signed; GET /order/202309/orders?ids="),
        order_updates_in: Cell::Supported(
            "webhook types 1, 3 and 11 (order status, recipient address, cancellation status) re-read the order",
        ),
        returns_in: Cell::Supported(
            "webhook type 12 (return status change); POST /return_refund/202309/returns/search by order id",
        ),
        stock_out: Cell::Supported("POST /product/202309/products/{id}/inventory/update"),
        price_out: Cell::Supported("POST /product/202309/products/{id}/prices/update"),
        tracking_out: Cell::Supported("POST /fulfillment/202309/packages/{id}/ship"),
        cancel_out: Cell::Supported(
            "POST /return_refund/202309/cancellations with the account's seller reason key (cancel_reason)",
        ),
        acknowledge: Cell::NotOffered("TikTok Shop has no acknowledgement step (Order API 202309)"),
        list_orders_since: Cell::Supported("POST /order/202309/orders/search update_time_ge"),
        read_stock: Cell::Supported(
            "POST /product/202309/inventory/search by the listing sync's SKU ids, 100 a call, available at the account's warehouse",
        ),
        listing_sync: Cell::Supported("POST /product/202309/products/search status ACTIVATE"),
    },
};

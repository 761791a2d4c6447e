//! Amazon SP-API: notifications on SQS, completed by fetching the order.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::digits};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Amazon,
    title: "Amazon",
    inbound: Inbound::Queue,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: Some("NotificationMetadata.NotificationId"),
    // getOrder and getOrderItems.
    fetch_calls: 2,
    required_settings: &["seller_id", "marketplace_id"],
    // Per-API dated versions; the Orders API version is pinned (v0 or a date).
    api_version: |v| v == "v0" || (v.len() == 10 && digits(&v[..4]) && &v[4..5] == "-"),
    stock_sla: None,
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported(
            "SP-API ORDER_CHANGE notifications on SQS, completed with getOrder and getOrderItems",
        ),
        order_updates_in: Cell::Supported("ORDER_CHANGE notifications (status changes, cancellations)"),
        returns_in: Cell::Supported(
            "Reports API GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE, asked for by one reconciliation sweep and read by the next",
        ),
        stock_out: Cell::Supported("Listings Items patchListingsItem; JSON_LISTINGS_FEED in bulk"),
        price_out: Cell::Supported("patchListingsItem purchasable_offer; JSON_LISTINGS_FEED in bulk"),
        tracking_out: Cell::Supported("Orders v0 confirmShipment"),
        cancel_out: Cell::Supported(
            "POST_ORDER_ACKNOWLEDGEMENT_DATA feed, StatusCode Failure with CancelReason; the processing report is polled",
        ),
        acknowledge: Cell::Supported(
            "POST_ORDER_ACKNOWLEDGEMENT_DATA feed (StatusCode Success) for each paid order stored, batched per push; the processing report is polled",
        ),
        list_orders_since: Cell::Supported("Orders v0 getOrders LastUpdatedAfter, NextToken"),
        read_stock: Cell::Supported("Listings Items getListingsItem fulfillmentAvailability"),
        listing_sync: Cell::Supported("Listings Items searchListingsItems, 20 per page"),
    },
};

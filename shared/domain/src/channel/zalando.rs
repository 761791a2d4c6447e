//! Zalando zDirect: no push; orders are polled, and stock must reach it within 10 minutes.

use std::time::Duration;

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::v_number};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Zalando,
    title: "Zalando",
    inbound: Inbound::ExportPoll,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &["sales_channel_id"],
    api_version: v_number,
    stock_sla: Some(Duration::from_mins(10)),
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported("zDirect GET /merchants/{id}/orders?exported=false, polled"),
        order_updates_in: Cell::Supported(
            "the reconciliation tier polls GET /merchants/{id}/orders?last_updated_after (exported or not): line cancellations",
        ),
        returns_in: Cell::Supported("order lines with status returned, from the same poll of orders changed since"),
        stock_out: Cell::Supported("POST /merchants/{id}/stocks, 1000 per call"),
        price_out: Cell::Supported("POST /merchants/{id}/prices (shape unverified)"),
        tracking_out: Cell::Supported("PATCH the order lines to shipped with the tracking number"),
        cancel_out: Cell::Supported("PATCH the order lines to canceled"),
        acknowledge: Cell::Supported("PATCH /merchants/{id}/orders/{id} exported: true"),
        list_orders_since: Cell::Supported("GET /merchants/{id}/orders?exported=false"),
        read_stock: Cell::NotOffered("zDirect documents stock writes only (POST .../stocks), no read per EAN"),
        listing_sync: Cell::Supported("GET /merchants/{id}/stocks read back (unverified)"),
    },
};

//! Amazon SP-API: notifications on SQS, completed by fetching the order.

use super::{Channel, ChannelSpec, Inbound, spec::digits};

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
};

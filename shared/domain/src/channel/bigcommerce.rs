//! BigCommerce: thin webhooks (an id and a hash), completed by fetching the order.

use super::{Channel, ChannelSpec, Inbound};

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
};

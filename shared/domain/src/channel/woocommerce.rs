//! WooCommerce: signed webhooks (and an unsigned creation ping), REST API v1 to v3.

use super::{Channel, ChannelSpec, Inbound};

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
};

//! Shopify: signed webhooks, quarterly Admin API versions.

use super::{Channel, ChannelSpec, Inbound, spec::digits};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Shopify,
    title: "Shopify",
    inbound: Inbound::Webhooks,
    event_id_headers: &["x-shopify-event-id", "x-shopify-webhook-id"],
    topic_header: Some("x-shopify-topic"),
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &["location_id"],
    // Quarterly YYYY-MM.
    api_version: |v| v.len() == 7 && digits(&v[..4]) && &v[4..5] == "-" && matches!(&v[5..], "01" | "04" | "07" | "10"),
    stock_sla: None,
    push_concurrency: 2,
};

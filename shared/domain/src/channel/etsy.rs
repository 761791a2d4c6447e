//! Etsy: Standard Webhooks, Open API v3.

use super::{Channel, ChannelSpec, Inbound};

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
};

//! TikTok Shop: signed webhooks, API versions named by month (`202309`).

use super::{Channel, ChannelSpec, Inbound, spec::digits};

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
};

//! eBay: Notification API deliveries signed with ECDSA, endpoint validated by a challenge.

use super::{Channel, ChannelSpec, Inbound, spec::v_number};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Ebay,
    title: "eBay",
    inbound: Inbound::Webhooks,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: Some("notification.notificationId"),
    fetch_calls: 1,
    required_settings: &[],
    api_version: v_number,
    stock_sla: None,
    push_concurrency: 2,
};

//! Zalando zDirect: no push; orders are polled, and stock must reach it within 10 minutes.

use std::time::Duration;

use super::{Channel, ChannelSpec, Inbound, spec::v_number};

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
};

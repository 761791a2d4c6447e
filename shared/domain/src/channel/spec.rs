//! The static facts of one channel that more than one crate reads: how its deliveries arrive and are
//! told apart, what an account of it must configure, which API versions may be pinned.
//!
//! Each channel's facts are one `const` in its own file beside this one; [`Channel::spec`] is the one
//! exhaustive table. Facts only one crate needs (a connector's wire shapes, a simulator's error bodies,
//! a signature scheme) live in that crate's module of the channel, behind its own exhaustive registry.

use std::time::Duration;

use super::{Capabilities, Channel};

/// How a channel hands Manifold its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Signed HTTP webhooks through the webhook function.
    Webhooks,
    /// Notifications on an SQS queue (Amazon's SP-API notifications, through EventBridge or SQS).
    Queue,
    /// No push at all: the scheduler's orders tier lists the orders changed since its last runs, at the
    /// account's `sync.orders` cadence (OTTO Market). Every order it stores is a delivery, not drift.
    Poll,
    /// No push at all: a function of its own polls the orders not yet exported and marks each one
    /// exported once stored (Zalando's `exported=false`).
    ExportPoll,
}

/// The static facts of one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSpec {
    pub channel: Channel,
    /// The channel's name as people write it ("WooCommerce"), for descriptions and alarms.
    pub title: &'static str,
    pub inbound: Inbound,
    /// Headers that carry a per-delivery id, tried in order (deduplication).
    pub event_id_headers: &'static [&'static str],
    /// The header that names the event, where the channel sends one (otherwise it is in the body).
    pub topic_header: Option<&'static str>,
    /// The dotted path of the delivery id in the body, where the channel puts it there.
    pub body_event_id: Option<&'static str>,
    /// API calls the connector's `fetch_order` makes to complete a thin notification.
    pub fetch_calls: u64,
    /// Settings an account cannot work without.
    pub required_settings: &'static [&'static str],
    /// Whether a pinned API version is one the channel publishes (its versioning scheme).
    pub api_version: fn(&str) -> bool,
    /// The longest stock cadence the channel's terms allow (Zalando: 10 minutes).
    pub stock_sla: Option<Duration>,
    /// How many push functions may run at once for the channel (its queue's maximum concurrency in
    /// the template): the channel's API budget, not Lambda's, bounds the parallelism.
    pub push_concurrency: u8,
    /// What the channel does for each job a merchant expects of it (the capability matrix).
    pub capabilities: Capabilities,
}

impl ChannelSpec {
    /// Whether each order taken in is acknowledged to the channel afterwards, through the push queue
    /// (Amazon). A channel polled for orders not yet exported acknowledges in its poll instead.
    pub fn acknowledges_after_ingest(&self) -> bool {
        self.capabilities.acknowledge.is_supported() && self.inbound != Inbound::ExportPoll
    }

    /// A delivery's id from its headers, by [`event_id_headers`](Self::event_id_headers).
    pub fn header_event_id<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        self.event_id_headers.iter().find_map(|n| header(n).filter(|v| !v.is_empty()).map(str::to_owned))
    }
}

/// `v` followed by digits (`v3`).
pub(super) fn v_number(v: &str) -> bool {
    v.strip_prefix('v').is_some_and(digits)
}

/// Only ASCII digits, at least one.
pub(super) fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

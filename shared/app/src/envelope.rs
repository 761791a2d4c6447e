//! The ingest envelope: what every inbound path (webhook, Amazon notification, Zalando poll,
//! reconciliation, quarantine replay) puts on the ingest path. The raw body travels untouched, so a
//! message that fails later can be quarantined and replayed exactly as the channel sent it.

use chrono::{DateTime, Utc};
use manifold_domain::Channel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where an envelope came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Webhook,
    AmazonNotification,
    ZalandoPoll,
    Reconcile,
    Replay,
}

/// Version 1 of the ingest message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestEnvelope {
    pub v: u32,
    pub channel: Channel,
    pub account: String,
    pub source: Source,
    /// The channel's event name (`orders/create`, `order.updated`...) when it sends one out of band.
    pub topic: Option<String>,
    /// The delivery's deduplication key: the channel's event id, or a hash of the body.
    pub event_id: String,
    pub trace_id: String,
    pub received_at: DateTime<Utc>,
    /// The body exactly as received (UTF-8 JSON for every channel we accept).
    pub body: String,
    /// Set when the body is already a full document of this kind (polls, reconciliation) rather than
    /// a notification to classify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<manifold_normalize::DocKind>,
}

impl IngestEnvelope {
    /// The key under which this envelope's effect is applied exactly once.
    pub fn ingest_key(&self) -> String {
        format!("{}:{}:{}", self.channel, self.account, self.event_id)
    }
}

/// `sha256:<hex>` of a body, the dedupe key for channels that send no event id.
pub fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

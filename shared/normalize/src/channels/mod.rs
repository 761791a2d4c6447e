//! One module per sales channel. Each exposes its [`Normalizer`] (`normalize(kind, doc, ctx)` and
//! `classify(topic, body)`) as `MODULE`, and documents, in its `//!` docs, the exact input documents it
//! accepts and its status mapping table. [`module`] is the registry.

pub mod amazon;
pub mod bigcommerce;
pub mod ebay;
pub mod etsy;
pub mod kaufland;
pub mod otto;
pub mod shopify;
pub mod tiktok;
pub mod woocommerce;
pub mod zalando;

use manifold_domain::{Channel, Record};

use crate::{Context, DocKind, Inbound, NormalizeError, json::Node};

/// What the normalizer knows of one channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normalizer {
    /// Every record of `kind` the document holds.
    pub normalize: fn(DocKind, &Node<'_>, &Context<'_>) -> Result<Vec<Record>, NormalizeError>,
    /// What a notification body is; `topic` is the event name where the channel sends it in a header.
    pub classify: fn(Option<&str>, &Node<'_>) -> Result<Inbound, NormalizeError>,
    /// An order document as ingest receives it, from the channel's fixtures (the benchmarks' input).
    pub sample: fn() -> serde_json::Value,
}

/// A fixture's JSON (fixtures are checked by the tests that read them).
pub(crate) fn fixture(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// The registry: every channel's normalizer.
pub(crate) const fn module(channel: Channel) -> Normalizer {
    match channel {
        Channel::Shopify => shopify::MODULE,
        Channel::Woocommerce => woocommerce::MODULE,
        Channel::Bigcommerce => bigcommerce::MODULE,
        Channel::Amazon => amazon::MODULE,
        Channel::Etsy => etsy::MODULE,
        Channel::Tiktok => tiktok::MODULE,
        Channel::Zalando => zalando::MODULE,
        Channel::Ebay => ebay::MODULE,
        Channel::Kaufland => kaufland::MODULE,
        Channel::Otto => otto::MODULE,
    }
}

/// The error for a document kind a channel never sends.
pub(crate) fn unsupported(channel: Channel, kind: DocKind) -> NormalizeError {
    NormalizeError::new("", format!("{channel} documents of kind {} are not normalized", kind.as_str()))
}

pub(crate) fn ignore(reason: impl Into<String>) -> Inbound {
    Inbound::Ignore { reason: reason.into() }
}

pub(crate) fn one(record: Record) -> Vec<Record> {
    vec![record]
}

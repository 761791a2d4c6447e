//! One module per sales channel. Each exposes `normalize(kind, doc, ctx)` and `classify(...)` and
//! documents, in its `//!` docs, the exact input documents it accepts and its status mapping table.

pub mod amazon;
pub mod bigcommerce;
pub mod ebay;
pub mod etsy;
pub mod shopify;
pub mod tiktok;
pub mod woocommerce;
pub mod zalando;

use manifold_domain::{Channel, Record};

use crate::{DocKind, Inbound, NormalizeError};

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

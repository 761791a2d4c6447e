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

/// A unit a marketplace reports as returned on the order itself (a Kaufland order unit, an OTTO
/// position item: one unit each), with the canonical line it was sold on.
pub(crate) struct ReturnedUnit {
    pub unit_id: String,
    pub line_id: String,
    pub state: manifold_domain::ReturnState,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The order, then one Return per returned unit (`{channel}:{account}:unit-{unit id}`, one unit of its
/// line): a unit is its own return, so each is taken back once whatever the order's later states.
pub(crate) fn with_unit_returns(order: manifold_domain::Order, units: Vec<ReturnedUnit>) -> Vec<Record> {
    let returns: Vec<Record> = units
        .into_iter()
        .map(|u| {
            let at = u.at.unwrap_or(order.updated_at);
            let sku = order.lines.iter().find(|l| l.line_id == u.line_id).and_then(|l| l.sku.clone());
            let line = manifold_domain::ReturnLine { line_id: u.line_id, sku, quantity: 1, reason: None };
            Record::Return(order_return(&order, format!("unit-{}", u.unit_id), u.state, None, vec![line], (at, at)))
        })
        .collect();
    let mut out = one(Record::Order(Box::new(order)));
    out.extend(returns);
    out
}

/// A Return of `order` with the channel's id for it, under the canonical id
/// `{channel}:{account}:{channel_return_id}`; `at` is when it was created and last changed.
pub(crate) fn order_return(
    order: &manifold_domain::Order,
    channel_return_id: String,
    state: manifold_domain::ReturnState,
    reason: Option<String>,
    lines: Vec<manifold_domain::ReturnLine>,
    at: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) -> manifold_domain::Return {
    manifold_domain::Return {
        id: format!("{}:{}:{channel_return_id}", order.channel, order.account),
        order_id: order.id.clone(),
        channel: order.channel,
        account: order.account.clone(),
        channel_order_id: order.channel_order_id.clone(),
        channel_return_id,
        state,
        reason,
        lines,
        created_at: at.0,
        updated_at: at.1,
    }
}

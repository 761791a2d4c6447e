//! One module per channel. Each holds the channel's wire shapes and its [`ConnectorModule`] (how its
//! client is built, how it gets access tokens, how it signs webhooks, which id its writes key by);
//! sending, limits and failure classes come from [`crate::transport`]. [`module`] is the registry.

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

use std::{collections::BTreeMap, sync::Arc};

use manifold_domain::{Amount, Channel, config::AccountConfig};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{
    Credentials,
    client::{ChannelConnector, ListingIds, PushOutcome},
    error::ConnectorError,
    token::Lifecycle,
    transport::ApiParts,
    verify::scheme::Scheme,
};

/// What the connectors crate knows of one channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectorModule {
    /// The channel's API client for an account.
    pub(crate) build: fn(&AccountConfig, &Credentials, ApiParts) -> Arc<dyn ChannelConnector>,
    /// How its access tokens are obtained and renewed.
    pub(crate) tokens: Lifecycle,
    /// How it signs the webhooks it delivers.
    pub(crate) webhooks: Scheme,
    /// The listing id its stock and price writes key by, or `None` where they key by SKU.
    pub(crate) item_id: fn(&ListingIds) -> Option<String>,
    /// What its API changes of a listing's content, and how images reach it.
    pub(crate) content: crate::content::ContentSupport,
}

/// The registry: every channel's connector module.
pub(crate) const fn module(channel: Channel) -> &'static ConnectorModule {
    match channel {
        Channel::Shopify => &shopify::MODULE,
        Channel::Woocommerce => &woocommerce::MODULE,
        Channel::Bigcommerce => &bigcommerce::MODULE,
        Channel::Amazon => &amazon::MODULE,
        Channel::Etsy => &etsy::MODULE,
        Channel::Tiktok => &tiktok::MODULE,
        Channel::Zalando => &zalando::MODULE,
        Channel::Ebay => &ebay::MODULE,
        Channel::Kaufland => &kaufland::MODULE,
        Channel::Otto => &otto::MODULE,
    }
}

/// `a/b` of two ids, or `a` alone (a product without variations).
pub(crate) fn compound(a: Option<&String>, b: Option<&String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}/{b}")),
        (Some(a), None) => Some(a.clone()),
        _ => None,
    }
}

/// An id the channel sends as a number or a string, as text (`null` and `""` are no id).
pub(crate) fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A price the channel shows as a decimal string or a JSON number, exactly (numbers are read from
/// their shortest decimal form).
pub(crate) fn price_of(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// The next page number of a numbered listing, when `page` is not the last of `pages`.
pub(crate) fn next_page(page: u32, pages: u32, empty: bool) -> Option<String> {
    (!empty && page < pages).then(|| (page + 1).to_string())
}

/// A page-number or offset cursor as the number it names (`None`: the first page).
pub(crate) fn cursor_number(cursor: Option<&str>, first: u32) -> Result<u32, ConnectorError> {
    cursor.map_or(Ok(first), |c| {
        c.parse().map_err(|_| ConnectorError::permanent(format!("{c:?} is not a listing cursor of this channel")))
    })
}

/// Groups items by a key (a product, a listing), keeping first-seen order of keys and items.
pub(crate) fn group_by<T, K: Ord + Clone>(items: &[T], key: impl Fn(&T) -> K) -> Vec<(K, Vec<&T>)> {
    let mut order: Vec<K> = Vec::new();
    let mut groups: BTreeMap<K, Vec<&T>> = BTreeMap::new();
    for item in items {
        let k = key(item);
        groups
            .entry(k.clone())
            .or_insert_with(|| {
                order.push(k);
                Vec::new()
            })
            .push(item);
    }
    order.into_iter().filter_map(|k| groups.remove(&k).map(|v| (k, v))).collect()
}

/// Runs one batch: a retryable failure aborts the push (`Err`), a permanent one rejects the batch's
/// items and the push goes on with the next batch.
pub(crate) fn settle(
    outcome: &mut PushOutcome,
    skus: &[&str],
    result: Result<PushOutcome, ConnectorError>,
) -> Result<(), ConnectorError> {
    match result {
        Ok(o) => outcome.merge(o),
        Err(e) if e.is_retryable() || e.class == crate::error::FailureClass::Auth => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, items = skus.len(), "batch rejected");
            outcome.reject_all(skus.iter().copied(), &e);
        }
    }
    Ok(())
}

/// Writes each listing's content on its own (`write`): a listing the channel refuses is rejected
/// alone and the others go on; a retryable (or auth) failure ends the push, as [`settle`] decides.
pub(crate) async fn each_listing<'a, F, Fut>(
    items: &'a [crate::content::ContentUpdate],
    write: F,
) -> Result<PushOutcome, ConnectorError>
where
    F: Fn(&'a crate::content::ContentUpdate) -> Fut,
    Fut: std::future::Future<Output = Result<(), ConnectorError>>,
{
    let mut outcome = PushOutcome::default();
    for item in items {
        let sku = item.channel_sku.as_str();
        let result =
            write(item).await.map(|()| PushOutcome { delivered: vec![sku.to_owned()], ..PushOutcome::default() });
        settle(&mut outcome, &[sku], result)?;
    }
    Ok(outcome)
}

/// An amount as the decimal string most channels take (`"12.50"`).
pub(crate) fn decimal(amount: &Amount) -> String {
    amount.to_string()
}

/// An amount as a JSON number, for channels that take floats (Etsy, Zalando). The decimal string is
/// parsed by serde_json's shortest-representation reader, so `19.99` is sent as `19.99`.
pub(crate) fn number(amount: &Amount) -> serde_json::Value {
    serde_json::from_str::<serde_json::Number>(&amount.to_string())
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A URL path segment (a SKU, a seller id) percent-encoded: unreserved characters kept, every other
/// byte escaped.
pub(crate) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `id` of a `product/variation`-style compound channel item id.
pub(crate) fn split_item_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (id, None),
    }
}

/// How far back a returns sweep reads (by return creation date): the account's
/// `returns_lookback_days` setting (1 to `max`), 30 days by default, so a return's later states are
/// read again until it is that old.
pub(crate) fn returns_lookback(
    settings: &BTreeMap<String, String>,
    max: i64,
) -> Result<chrono::Duration, ConnectorError> {
    const DEFAULT_DAYS: i64 = 30;
    let days = match settings.get("returns_lookback_days") {
        None => DEFAULT_DAYS.min(max),
        Some(d) => d.parse::<i64>().ok().filter(|d| (1..=max).contains(d)).ok_or_else(|| {
            ConnectorError::permanent(format!("returns_lookback_days {d:?} is not a number of days from 1 to {max}"))
        })?,
    };
    Ok(chrono::Duration::days(days))
}

/// A returns sweep's findings of one order: its id and what the channel listed for it.
pub(crate) type OrderReturns = (String, Vec<Value>);

/// A returns sweep's findings grouped by order id, reduced to the orders whose findings differ from
/// the last sweep's: `seen` maps each order id to the digest of its findings then. Answers the
/// changed groups and the digests of every group now, so an order that left the sweep's window is
/// forgotten and one unchanged is neither fetched nor handed on again.
pub(crate) fn changed_returns(
    by_order: BTreeMap<String, Vec<Value>>,
    seen: &serde_json::Map<String, Value>,
) -> (Vec<OrderReturns>, serde_json::Map<String, Value>) {
    use sha2::Digest as _;
    let (mut changed, mut digests) = (Vec::new(), serde_json::Map::new());
    for (order_id, found) in by_order {
        let digest = hex::encode(sha2::Sha256::digest(Value::Array(found.clone()).to_string().as_bytes()));
        let unchanged = seen.get(&order_id).and_then(Value::as_str) == Some(digest.as_str());
        digests.insert(order_id.clone(), Value::String(digest));
        if !unchanged {
            changed.push((order_id, found));
        }
    }
    (changed, digests)
}

pub(crate) fn missing_item_id(channel_sku: &str, what: &str) -> ConnectorError {
    ConnectorError::permanent(format!("{channel_sku}: channel_item_id ({what}) is required"))
}

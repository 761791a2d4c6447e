//! Figure 1: the oversell window. Orders are posted as signed webhooks to the local HTTP API at a
//! steady rate (Shopify and WooCommerce in turn, each a basket of fresh SKUs), and the window of an
//! order runs from its POST to the moment every other channel's simulator holds each of its SKUs'
//! new quantity: until then another channel can still sell a unit this order took.
//!
//! Each SKU is sold once in the run, so an order's new quantity per channel is known in advance (the
//! fan-out's publishable quantity of `on_hand - 1`), and the first write of that quantity after the
//! POST is where the window closes for that channel. A channel whose publishable quantity does not
//! change (a cap, a rounding) already holds it and is left out of that order's window.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use manifold_domain::{Channel, Sku, config::ChannelConfig};
use manifold_ledger::{DEFAULT_LOCATION, Position, fanout::push_jobs};
use manifold_simulator::{SimHandle, state::StockChange};
use serde::Serialize;
use serde_json::Value;

use crate::{CliError, demo};

const SHOPIFY_ORDER: &str =
    include_str!("../../../normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");
const WOO_ORDER: &str = include_str!("../../../normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json");

/// The channels orders come from, and the account path each posts to.
pub const ORIGINS: [(Channel, &str); 2] = [(Channel::Shopify, "shop-eu"), (Channel::Woocommerce, "woo-main")];

/// One order the bench posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub origin: Channel,
    pub skus: Vec<String>,
    pub posted: Instant,
    pub status: u16,
}

/// The webhook body of order `n` of `origin` selling one unit of each of `skus`.
pub fn order_body(origin: Channel, n: usize, skus: &[String]) -> Vec<u8> {
    let (mut doc, line_id_base) = if origin == Channel::Shopify {
        let mut d: Value = serde_json::from_str(SHOPIFY_ORDER).unwrap_or_default();
        let mut order = d["order"].take();
        order["id"] = serde_json::json!(6_000_000_000_u64 + n as u64);
        order["name"] = serde_json::json!(format!("#B{n}"));
        order["order_number"] = serde_json::json!(100_000 + n);
        (order, 7_000_000_000_u64)
    } else {
        let mut order: Value = serde_json::from_str(WOO_ORDER).unwrap_or_default();
        order["id"] = serde_json::json!(500_000 + n);
        order["number"] = serde_json::json!((500_000 + n).to_string());
        (order, 8_000_000_000_u64)
    };
    let template = doc["line_items"][0].clone();
    let lines: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(k, sku)| {
            let mut line = template.clone();
            line["id"] = serde_json::json!(line_id_base + (n * 10 + k) as u64);
            line["sku"] = serde_json::json!(sku);
            line["quantity"] = serde_json::json!(1);
            line
        })
        .collect();
    doc["line_items"] = Value::Array(lines);
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The headers `origin` sends with order `n`'s webhook.
pub fn order_headers(origin: Channel, n: usize, body: &[u8]) -> Result<Vec<(String, String)>, CliError> {
    let mut h = demo::channel_headers(origin, body)?;
    if origin == Channel::Shopify {
        h.push(("x-shopify-event-id".into(), format!("bench-evt-{n}")));
        h.push(("x-shopify-topic".into(), "orders/create".into()));
    } else {
        h.push(("x-wc-webhook-topic".into(), "order.created".into()));
        h.push(("x-wc-webhook-delivery-id".into(), format!("bench-woo-{n}")));
    }
    Ok(h)
}

/// Posts `orders` webhooks to `api` at `rate` per second, numbered from `first`, `lines` fresh SKUs
/// each (from `skus`, in order); returns when every POST was answered.
pub async fn post_orders(
    api: &str,
    skus: &[String],
    first: usize,
    orders: usize,
    lines: usize,
    rate: f64,
) -> Result<Vec<Posted>, CliError> {
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sends = Vec::with_capacity(orders);
    for n in 0..orders {
        ticker.tick().await;
        let (origin, account) = ORIGINS[n % ORIGINS.len()];
        let basket: Vec<String> = skus[n * lines..(n + 1) * lines].to_vec();
        let body = order_body(origin, first + n, &basket);
        let headers = order_headers(origin, first + n, &body)?;
        let url = format!("{api}/v1/webhooks/{origin}/{account}");
        let http = http.clone();
        sends.push(tokio::spawn(async move {
            let mut request = http.post(url).body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let posted = Instant::now();
            let status = request.send().await.map_or(0, |r| r.status().as_u16());
            Posted { origin, skus: basket, posted, status }
        }));
    }
    let mut posted = Vec::with_capacity(orders);
    for s in sends {
        posted.push(s.await.map_err(|e| CliError::Usage(format!("a webhook POST task failed: {e}")))?);
    }
    Ok(posted)
}

/// What every account should list for a SKU with `available` units, by (channel, channel SKU).
fn publishable(config: &ChannelConfig, sku: &Sku, available: i64) -> BTreeMap<(Channel, String), i64> {
    let position = Position {
        sku: sku.clone(),
        location: DEFAULT_LOCATION.to_owned(),
        on_hand: available,
        reserved: 0,
        available,
        version: 1,
        as_of: None,
    };
    push_jobs(config, &position, None)
        .into_iter()
        .map(|j| ((j.channel, j.channel_sku), i64::from(j.quantity)))
        .collect()
}

/// The (channel, simulator stock key) -> quantity every simulator should show before the run.
pub fn initial_listing(
    config: &ChannelConfig,
    catalog: &BTreeMap<(Channel, String), String>,
    skus: &[String],
    on_hand: i64,
) -> BTreeMap<(Channel, String), i64> {
    let mut out = BTreeMap::new();
    for sku in skus.iter().filter_map(|s| Sku::new(s.as_str()).ok()) {
        for ((channel, channel_sku), q) in publishable(config, &sku, on_hand) {
            if let Some(key) = catalog.get(&(channel, channel_sku)) {
                out.insert((channel, key.clone()), q);
            }
        }
    }
    out
}

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let i = ((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1;
            (ms[i] * 10.0).round() / 10.0
        };
        Self { count: ms.len(), p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// The windows of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Windows {
    /// Over orders whose every channel update was seen.
    pub window: Spread,
    /// Channel updates measured (order x SKU x other channel whose quantity changes).
    pub updates: usize,
    /// Orders with at least one update never seen within the wait (left out of `window`).
    pub unfinished: usize,
    /// Webhook POSTs not answered 200.
    pub refused: usize,
    /// Per channel: from the POST to that channel holding the new quantity.
    pub by_channel: BTreeMap<String, Spread>,
}

/// When each order's new quantities reached every other channel (see the module docs).
pub fn windows(
    config: &ChannelConfig,
    catalog: &BTreeMap<(Channel, String), String>,
    changes: &[StockChange],
    posted: &[Posted],
    on_hand: i64,
) -> Windows {
    let mut by_key: HashMap<(Channel, &str), Vec<&StockChange>> = HashMap::new();
    for c in changes {
        by_key.entry((c.channel, c.key.as_str())).or_default().push(c);
    }
    let mut per_order = Vec::new();
    let mut per_channel: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut updates, mut unfinished) = (0, 0);
    for order in posted {
        let mut worst = Some(Duration::ZERO);
        for sku in order.skus.iter().filter_map(|s| Sku::new(s.as_str()).ok()) {
            let before = publishable(config, &sku, on_hand);
            for ((channel, channel_sku), after) in publishable(config, &sku, on_hand - 1) {
                if channel == order.origin || before.get(&(channel, channel_sku.clone())) == Some(&after) {
                    continue;
                }
                let Some(key) = catalog.get(&(channel, channel_sku)) else { continue };
                updates += 1;
                let seen = by_key
                    .get(&(channel, key.as_str()))
                    .and_then(|cs| cs.iter().find(|c| c.at >= order.posted && c.quantity == after))
                    .map(|c| c.at - order.posted);
                match seen {
                    Some(d) => {
                        per_channel.entry(channel.to_string()).or_default().push(d.as_secs_f64() * 1000.0);
                        worst = worst.map(|w| w.max(d));
                    }
                    None => worst = None,
                }
            }
        }
        match worst {
            Some(w) => per_order.push(w.as_secs_f64() * 1000.0),
            None => unfinished += 1,
        }
    }
    Windows {
        window: Spread::of(per_order),
        updates,
        unfinished,
        refused: posted.iter().filter(|p| p.status != 200).count(),
        by_channel: per_channel.into_iter().map(|(c, v)| (c, Spread::of(v))).collect(),
    }
}

/// Whether every update of `posted` has been seen (the run can stop waiting).
pub fn settled(
    config: &ChannelConfig,
    catalog: &BTreeMap<(Channel, String), String>,
    sim: &SimHandle,
    posted: &[Posted],
    on_hand: i64,
) -> bool {
    windows(config, catalog, &sim.stock_changes(), posted, on_hand).unfinished == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (100, 50.0, 99.0, 100.0));
        let one = Spread::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
        assert_eq!(Spread::of(Vec::new()).count, 0);
    }

    #[test]
    fn generated_orders_normalize_to_their_basket() {
        let config = ChannelConfig::parse("example", include_str!("../../../../infra/channels.example.toml")).unwrap();
        let skus: Vec<String> = vec!["BENCH-1".into(), "BENCH-2".into(), "BENCH-3".into()];
        for (origin, _) in ORIGINS {
            let body = order_body(origin, 7, &skus);
            let doc: Value = serde_json::from_slice(&body).unwrap();
            let account = config.accounts.iter().find(|a| a.channel == origin).unwrap();
            let ctx = manifold_normalize::Context { account, received_at: chrono::Utc::now() };
            let order = manifold_normalize::normalize_order(origin, &doc, &ctx).unwrap();
            let sold: Vec<(String, u32)> =
                order.quantities_by_sku().into_iter().map(|(s, q)| (s.to_string(), q)).collect();
            assert_eq!(sold, vec![("BENCH-1".into(), 1), ("BENCH-2".into(), 1), ("BENCH-3".into(), 1)], "{origin}");
        }
    }

    #[test]
    fn a_window_closes_when_the_last_other_channel_holds_the_new_quantity() {
        let config = ChannelConfig::parse("example", include_str!("../../../../infra/channels.example.toml")).unwrap();
        let sku = Sku::new("BENCH-9").unwrap();
        let catalog: BTreeMap<(Channel, String), String> = config
            .enabled_accounts()
            .map(|a| ((a.channel, a.channel_sku_for(&sku)), format!("{}-key", a.channel)))
            .collect();
        let t0 = Instant::now();
        let posted = vec![Posted { origin: Channel::Shopify, skus: vec!["BENCH-9".into()], posted: t0, status: 200 }];
        let after = publishable(&config, &sku, 9);
        let mut changes = Vec::new();
        for (i, ((channel, channel_sku), q)) in after.iter().enumerate() {
            let key = catalog[&(*channel, channel_sku.clone())].clone();
            let at = t0 + Duration::from_millis(100 * (i as u64 + 1));
            // A stale write first (the old quantity), which must not close the window.
            changes.push(StockChange { at, channel: *channel, key: key.clone(), quantity: q + 1 });
            changes.push(StockChange { at, channel: *channel, key, quantity: *q });
        }
        let w = windows(&config, &catalog, &changes, &posted, 10);
        assert_eq!(w.unfinished, 0);
        assert!(w.updates >= 5, "{w:?}");
        assert!(!w.by_channel.contains_key("shopify"), "the origin is not another channel");
        // The window is the slowest other channel's: each channel's write landed 100 ms after the last.
        let before = publishable(&config, &sku, 10);
        let slowest = after
            .iter()
            .enumerate()
            .filter(|(_, (k, q))| k.0 != Channel::Shopify && before.get(*k) != Some(*q))
            .map(|(i, _)| f64::from(u32::try_from(i + 1).unwrap() * 100))
            .fold(0.0, f64::max);
        assert!((w.window.max_ms - slowest).abs() < 1.0, "{w:?}");
        // Without the last channel's write the order stays open.
        changes.pop();
        assert_eq!(windows(&config, &catalog, &changes, &posted, 10).unfinished, 1);
    }
}

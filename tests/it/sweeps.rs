//! Missed-order sweeps, channel by channel. Webhooks get lost (Shopify drops a delivery after 8
//! retries, WooCommerce has no retry at all), so every channel that can list its orders is swept: the
//! `reconcile` tier reads the orders updated in the last two reconcile periods (the windows of
//! consecutive runs overlap) and Zalando, which has no push at all, is polled for the orders it has not
//! marked exported. Both feed the normal ingest path, so what a sweep finds is stored and published
//! like a webhook's order, and what is already held is recognised and stored again never.
//!
//! One table over the channels: each seeds 30 orders built from its real fixture order, in the shape
//! its list endpoint serves, with no webhook delivered; the simulators filter by update time and page
//! as each channel documents (capped at 7 a page here, so every client walks several pages). The
//! oldest order was updated exactly at the window's start, which must be swept; one order updated a
//! minute before it (Zalando: one already exported) must not be.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use manifold_domain::{Channel, OrderId, config::Cadence};
use serde_json::{Value, json};

use crate::{
    fixtures::{AMAZON_ITEMS, AMAZON_ORDER, BC_ADDRESSES, BC_ORDER, BC_PRODUCTS, SHOPIFY_ORDER},
    inbound::Harness,
};

/// Orders placed per channel while its webhooks are off.
const ORDERS: u32 = 30;
/// What each simulated order list serves at most per page.
const PAGE_CAP: usize = 7;

/// How a channel's missed orders are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// The `reconcile` tier: orders updated since twice the account's reconcile cadence ago.
    Reconcile,
    /// Zalando's poll (it pushes nothing): orders not yet marked exported.
    ZalandoPoll,
}

/// One channel's row: how it is swept and its `n`-th order updated at `at`, built from the channel's
/// real fixture order with its ids, number and update time rewritten, as `seed_order` takes it (the
/// connector's `fetch_order` shape). Every channel Manifold connects can list its orders
/// (/work/shared/guides/channels.md), so no row is marked as unable to.
struct Case {
    channel: Channel,
    sweep: Sweep,
    order: fn(u32, DateTime<Utc>) -> (String, Value),
}

const CASES: &[Case] = &[
    Case { channel: Channel::Shopify, sweep: Sweep::Reconcile, order: shopify },
    Case { channel: Channel::Woocommerce, sweep: Sweep::Reconcile, order: woocommerce },
    Case { channel: Channel::Bigcommerce, sweep: Sweep::Reconcile, order: bigcommerce },
    Case { channel: Channel::Amazon, sweep: Sweep::Reconcile, order: amazon },
    Case { channel: Channel::Etsy, sweep: Sweep::Reconcile, order: etsy },
    Case { channel: Channel::Tiktok, sweep: Sweep::Reconcile, order: tiktok },
    Case { channel: Channel::Ebay, sweep: Sweep::Reconcile, order: ebay },
    Case { channel: Channel::Zalando, sweep: Sweep::ZalandoPoll, order: zalando },
    Case { channel: Channel::Kaufland, sweep: Sweep::Reconcile, order: kaufland },
];

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture json")
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn shopify(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o = fixture(SHOPIFY_ORDER)["order"].take();
    let id = 6_100_000_000 + u64::from(n);
    o["id"] = json!(id);
    o["admin_graphql_api_id"] = json!(format!("gid://shopify/Order/{id}"));
    o["name"] = json!(format!("#{}", 5000 + n));
    o["order_number"] = json!(5000 + n);
    o["number"] = json!(4000 + n);
    o["updated_at"] = json!(iso(at));
    (id.to_string(), o)
}

fn woocommerce(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o = fixture(include_str!("../../shared/normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json"));
    let id = 9000 + n;
    o["id"] = json!(id);
    o["number"] = json!(id.to_string());
    o["order_key"] = json!(format!("wc_order_sweep{n}"));
    o["date_modified"] = json!(at.format("%Y-%m-%dT%H:%M:%S").to_string());
    o["date_modified_gmt"] = json!(at.format("%Y-%m-%dT%H:%M:%S").to_string());
    (id.to_string(), o)
}

fn bigcommerce(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let id = 7000 + n;
    let mut order = fixture(BC_ORDER);
    order["id"] = json!(id);
    order["date_modified"] = json!(at.to_rfc2822());
    let mut products = fixture(BC_PRODUCTS);
    let mut addresses = fixture(BC_ADDRESSES);
    for part in products.as_array_mut().into_iter().chain(addresses.as_array_mut()).flatten() {
        part["order_id"] = json!(id);
    }
    (id.to_string(), json!({ "order": order, "products": products, "shipping_addresses": addresses }))
}

fn amazon(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let id = format!("902-{:07}-5435065", 1_000_000 + n);
    let mut order = fixture(AMAZON_ORDER)["payload"].take();
    order["AmazonOrderId"] = json!(id);
    order["LastUpdateDate"] = json!(iso(at));
    let items = fixture(AMAZON_ITEMS)["payload"]["OrderItems"].take();
    (id, json!({ "order": order, "order_items": items }))
}

fn etsy(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut r = fixture(include_str!("../../shared/normalize/fixtures/etsy/receipt-written-from-v3-schema.json"));
    let id = 3_100_000_000 + u64::from(n);
    r["receipt_id"] = json!(id);
    r["update_timestamp"] = json!(at.timestamp());
    r["updated_timestamp"] = json!(at.timestamp());
    for t in r["transactions"].as_array_mut().into_iter().flatten() {
        t["receipt_id"] = json!(id);
    }
    (id.to_string(), r)
}

fn tiktok(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o =
        fixture(include_str!("../../shared/normalize/fixtures/tiktok/order-detail-202309-written-from-docs.json"));
    let id = format!("5764614130387{:05}", 10_000 + n);
    o["id"] = json!(id);
    o["update_time"] = json!(at.timestamp());
    (id, o)
}

fn ebay(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o = fixture(include_str!("../../shared/normalize/fixtures/ebay/getorder-written-from-docs.json"));
    let id = format!("12-{:05}-78901", 10_000 + n);
    o["orderId"] = json!(id);
    o["legacyOrderId"] = json!(format!("1100{n:08}-0"));
    o["lastModifiedDate"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    (id, o)
}

fn zalando(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o = fixture(include_str!("../../shared/normalize/fixtures/zalando/order-jsonapi-written-from-docs.json"));
    let id = format!("5eed0000-2c66-4f3a-b7b2-{n:012}");
    o["data"]["id"] = json!(id);
    let attributes = &mut o["data"]["attributes"];
    attributes["order_id"] = json!(id);
    attributes["order_number"] = json!(format!("1010544455{n:04}"));
    attributes["modified_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    (id, o)
}

fn kaufland(n: u32, at: DateTime<Utc>) -> (String, Value) {
    let mut o = fixture(include_str!("../../shared/normalize/fixtures/kaufland/order-two-units-one-offer.json"));
    let id = format!("SWP{n:04}");
    o["data"]["id_order"] = json!(id);
    for (k, unit) in o["data"]["order_units"].as_array_mut().into_iter().flatten().enumerate() {
        unit["id_order"] = json!(id);
        unit["id_order_unit"] = json!(880_000_000 + u64::from(n) * 10 + k as u64);
        unit["ts_updated_iso"] = json!(iso(at));
    }
    (id, o)
}

/// Runs one sweep of every channel, as the schedules would: the reconcile tier, then Zalando's poll.
/// Returns the orders the tier found webhooks had missed (its drift) and the orders the poll fetched.
async fn sweep(h: &Harness, now: DateTime<Utc>) -> (usize, usize) {
    let tier = h.app.run_tier("reconcile", now).await.expect("reconcile tier");
    let poll = h.app.poll_zalando(now).await.expect("zalando poll");
    if poll.failed > 0 {
        let quarantined: Vec<String> =
            h.app.quarantine.list(false).await.unwrap().into_iter().map(|q| q.reason).collect();
        panic!("{poll:?}; quarantined: {quarantined:?}");
    }
    (tier.drift, poll.fetched)
}

/// The order ids each published order event names, by channel.
async fn published(h: &Harness) -> BTreeMap<Channel, BTreeSet<String>> {
    let mut out: BTreeMap<Channel, BTreeSet<String>> = BTreeMap::new();
    for event in h.stack.events().await {
        let Some(id) = event["detail"]["data"]["id"].as_str() else { continue };
        if !event["detail-type"].as_str().is_some_and(|k| k.starts_with("Order")) {
            continue;
        }
        if let Some(channel) = id.split(':').next().and_then(|c| c.parse::<Channel>().ok()) {
            out.entry(channel).or_default().insert(id.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn one_sweep_stores_each_channels_missed_orders_and_a_second_stores_none() {
    let h = Harness::new().await;
    h.sim.cap_order_pages(PAGE_CAP);
    let now = Utc::now().duration_trunc(Duration::seconds(1)).expect("whole second");
    let config = h.app.live_config.snapshot();

    // Webhooks off: the orders exist only on the channels.
    let mut expected: BTreeMap<Channel, BTreeSet<String>> = BTreeMap::new();
    let mut outside: BTreeMap<Channel, OrderId> = BTreeMap::new();
    for case in CASES {
        let account = config.enabled_accounts().find(|a| a.channel == case.channel).expect("account");
        let order_id = |channel_id: &str| OrderId::new(format!("{}:{}:{channel_id}", case.channel, account.account));
        let window = match (case.sweep, account.sync.reconcile) {
            (Sweep::Reconcile, Cadence::Every(d)) => Duration::from_std(d * 2).expect("window"),
            (Sweep::Reconcile, other) => panic!("{}: reconcile cadence {other:?} is not a period", case.channel),
            (Sweep::ZalandoPoll, _) => Duration::hours(1),
        };
        let start = now - window;
        let step = window / i32::try_from(ORDERS).expect("order count");
        for n in 0..ORDERS {
            // Order 0 was updated exactly as the window opens: the bound is inclusive.
            let (channel_id, doc) = (case.order)(n, start + step * i32::try_from(n).expect("n"));
            h.sim.seed_order(case.channel, doc).unwrap_or_else(|e| panic!("{}: {e}", case.channel));
            expected.entry(case.channel).or_default().insert(order_id(&channel_id).expect("order id").to_string());
        }
        // Outside the sweep: updated a minute before the window (the previous run's business), or for
        // Zalando already exported.
        let (channel_id, mut doc) = (case.order)(ORDERS, start - Duration::minutes(1));
        if case.sweep == Sweep::ZalandoPoll {
            doc["data"]["attributes"]["exported"] = json!(true);
        }
        h.sim.seed_order(case.channel, doc).unwrap_or_else(|e| panic!("{}: {e}", case.channel));
        outside.insert(case.channel, order_id(&channel_id).expect("order id"));
    }

    let reconciled = CASES.iter().filter(|c| c.sweep == Sweep::Reconcile).count();
    let zalando = CASES.iter().filter(|c| c.sweep == Sweep::ZalandoPoll).count();
    let (drift, fetched) = sweep(&h, now).await;
    let quarantined: Vec<String> = h.app.quarantine.list(false).await.unwrap().into_iter().map(|q| q.reason).collect();
    assert!(quarantined.is_empty(), "nothing swept is quarantined: {quarantined:?}");
    assert_eq!(drift, reconciled * ORDERS as usize, "every reconciled channel's 30 orders were missed by webhooks");
    assert_eq!(fetched, zalando * ORDERS as usize, "the poll fetched Zalando's 30 new orders");

    let events = published(&h).await;
    for case in CASES {
        let want = &expected[&case.channel];
        let mut stored = 0;
        for id in want {
            let order = h.app.records.get_order(&OrderId::new(id.clone()).unwrap()).await.unwrap();
            stored += usize::from(order.is_some());
        }
        assert_eq!(stored, ORDERS as usize, "{}: one sweep stores every missed order", case.channel);
        assert!(
            h.app.records.get_order(&outside[&case.channel]).await.unwrap().is_none(),
            "{}: an order outside the sweep is not fetched",
            case.channel
        );
        assert_eq!(events.get(&case.channel), Some(want), "{}: each stored order is published once", case.channel);
    }

    // The next run's window overlaps this one: everything it finds is already held, and where the
    // channel lists summaries (Amazon's items, BigCommerce's products and addresses: a call each per
    // order) no held order's details are read again: the second sweep makes the list calls only.
    let requests = |c: Channel| h.sim.snapshot().requests.get(&c).copied().unwrap_or(0);
    let before: Vec<u64> = [Channel::Amazon, Channel::Bigcommerce].into_iter().map(requests).collect();
    let (drift, fetched) = sweep(&h, now + Duration::minutes(1)).await;
    assert_eq!((drift, fetched), (0, 0), "a second sweep stores nothing");
    let pages = u64::from(ORDERS).div_ceil(PAGE_CAP as u64) + 1;
    for (channel, before) in [Channel::Amazon, Channel::Bigcommerce].into_iter().zip(before) {
        let calls = requests(channel) - before;
        assert!(calls <= pages, "{channel}: the second sweep made {calls} calls, more than its {pages} list pages");
    }
    let again = published(&h).await;
    assert!(again.is_empty(), "a second sweep publishes nothing: {again:?}");
}

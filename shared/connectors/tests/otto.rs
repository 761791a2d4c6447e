//! The OTTO Market connector against its simulator: stock answered 207 for part of a batch, price
//! updates followed to their process's end, the shipment body, cancellation, tokens that expire and
//! are refreshed, 429s waited out, and the order list walked by its cursor with the bound included.

use std::time::Duration;

use chrono::{DateTime, Utc};
use manifold_connectors::{
    CallContext, ChannelConnector, Credentials, FailureClass, PriceUpdate, StockRead, StockUpdate, build, http_client,
};
use manifold_domain::{
    AccountId, Amount, Channel, Currency, OrderId, Shipment, ShipmentLine, Sku,
    config::{AccountConfig, ChannelConfig},
};
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, SimLimit, Simulator, Write};
use serde_json::{Value, json};

const PROCESSABLE: &str = include_str!("../../normalize/fixtures/otto/order-processable-written-from-docs.json");
const SALES_ORDER: &str = "5f1b8a55-2b7c-4f0e-9d1a-6c3e2a7b9d10";
const TEES: [&str; 2] = ["a3c1e2f4-0001-4b8e-9c1d-1f2e3d4c5b6a", "a3c1e2f4-0002-4b8e-9c1d-1f2e3d4c5b6a"];

/// An OTTO account on the simulator, as a configuration file gives it, with `extra` settings lines.
fn account(sim: &SimHandle, extra: &str) -> AccountConfig {
    let text = format!(
        r#"version = 1
[[accounts]]
channel = "otto"
account = "otto-test"
api_version = "v4"
secret = "manifold/otto/test"
endpoint = "{endpoint}"
rate_limit = {{ kind = "unlimited" }}
[accounts.settings]
ship_from_city = "Hamburg"
ship_from_zip_code = "22179"
ship_from_country = "DEU"
{extra}
[accounts.sku_map]
"OTTO-TEE-BLK-M" = "TEE-BLK-M"
"#,
        endpoint = sim.base_url(Channel::Otto),
    );
    ChannelConfig::parse("otto-test.toml", &text).unwrap().accounts.remove(0)
}

/// The app's client credentials: no stored token, so every token comes from `/v1/token`.
fn creds() -> Credentials {
    [("client_id", "otto-app"), ("client_secret", "otto-secret")].into_iter().collect()
}

fn connector(sim: &SimHandle, extra: &str) -> std::sync::Arc<dyn ChannelConnector> {
    build(&account(sim, extra), creds(), http_client(Duration::from_secs(5)).unwrap())
}

fn ctx() -> CallContext {
    CallContext::new("otto-test")
}

async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config.unlimited(Channel::Otto)).await.expect("simulator")
}

fn catalog(skus: &[&str]) -> Vec<CatalogItem> {
    skus.iter()
        .map(|s| CatalogItem {
            id: (*s).to_owned(),
            sku: (*s).to_owned(),
            quantity: 0,
            product_id: None,
            variant_id: None,
            price_minor: None,
        })
        .collect()
}

fn stock(sku: &str, quantity: u32) -> StockUpdate {
    StockUpdate { sku: Sku::new(sku).unwrap(), channel_sku: sku.to_owned(), quantity, channel_item_id: None }
}

fn price(sku: &str, amount: &str, currency: &str) -> PriceUpdate {
    let currency = Currency::new(currency).unwrap();
    PriceUpdate {
        sku: Sku::new(sku).unwrap(),
        channel_sku: sku.to_owned(),
        amount: Amount::parse(amount, currency).unwrap(),
        currency,
        channel_item_id: None,
    }
}

fn writes(sim: &SimHandle, path: &str) -> Vec<Write> {
    sim.snapshot()
        .writes
        .remove(&Channel::Otto)
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.path.ends_with(path))
        .collect()
}

fn requests(sim: &SimHandle) -> u64 {
    sim.snapshot().requests.get(&Channel::Otto).copied().unwrap_or(0)
}

fn unit_status(sim: &SimHandle, position_item: &str) -> Value {
    let snapshot = sim.snapshot();
    let order = snapshot.orders[&Channel::Otto].iter().find(|o| o.id == SALES_ORDER).unwrap().doc.clone();
    order["positionItems"].as_array().unwrap().iter().find(|p| p["positionItemId"] == position_item).unwrap()
        ["fulfillmentStatus"]
        .clone()
}

fn shipment(lines: Vec<ShipmentLine>, carrier: &str) -> Shipment {
    Shipment {
        id: "wms-otto-1".into(),
        order_id: OrderId::new(format!("otto:otto-test:{SALES_ORDER}")).unwrap(),
        channel: Channel::Otto,
        account: AccountId::new("otto-test").unwrap(),
        channel_order_id: SALES_ORDER.into(),
        carrier: Some(carrier.into()),
        tracking_number: Some("JJD000390007880537593".into()),
        tracking_url: None,
        lines,
        shipped_at: "2026-03-03T14:30:00Z".parse().unwrap(),
    }
}

#[tokio::test]
async fn stock_is_sent_in_batches_and_a_207_refuses_only_the_unknown_skus() {
    let sim = start(SimConfig::default()).await;
    let known: Vec<String> = (0..449).map(|i| format!("SKU-{i:03}")).collect();
    sim.seed_catalog(Channel::Otto, catalog(&known.iter().map(String::as_str).collect::<Vec<_>>()));
    let mut items: Vec<StockUpdate> =
        known.iter().enumerate().map(|(i, s)| stock(s, u32::try_from(i % 7).unwrap())).collect();
    items.insert(300, stock("NO-MOIN", 4));

    let outcome = connector(&sim, "").push_stock(&items, &ctx()).await.unwrap();

    assert_eq!(outcome.delivered.len(), 449);
    assert_eq!(outcome.rejected.len(), 1);
    let (sku, err) = &outcome.rejected[0];
    assert_eq!(sku, "NO-MOIN");
    assert_eq!(err.class, FailureClass::Permanent);
    assert!(err.message.contains("SKU NO-MOIN is unknown"), "OTTO's own text: {err}");
    let calls = writes(&sim, "/v1/availability/quantities");
    let sizes: Vec<usize> = calls.iter().map(|w| w.body.as_array().unwrap().len()).collect();
    assert_eq!(sizes, [200, 200, 50], "200 per call (unverified figure, the default)");
    assert_eq!(calls[0].body[3], json!({ "sku": "SKU-003", "quantity": 3 }));
    let held = sim.snapshot().stock.remove(&Channel::Otto).unwrap();
    assert_eq!(held.get("SKU-448"), Some(&0));
    assert_eq!(held.get("SKU-006"), Some(&6));
    assert_eq!(held.get("NO-MOIN"), None);

    // A lower `batch_size` setting splits further.
    let small = connector(&sim, r#"batch_size = "100""#);
    assert_eq!(small.max_batch(), 100);
    small.push_stock(&items[..250], &ctx()).await.unwrap();
    assert_eq!(writes(&sim, "/v1/availability/quantities").len(), 3 + 3);
}

#[tokio::test]
async fn prices_wait_for_their_process_and_reject_what_it_failed_and_what_otto_cannot_take() {
    let sim = start(SimConfig::default()).await;
    sim.seed_catalog(Channel::Otto, catalog(&["TEE", "MUG"]));
    let otto = connector(&sim, "");
    let before = requests(&sim);

    let outcome = otto
        .push_prices(
            &[
                price("TEE", "19.99", "EUR"),
                price("GHOST", "5.00", "EUR"),
                price("MUG", "7.50", "USD"),
                price("MUG", "9.95", "EUR"),
            ],
            &ctx(),
        )
        .await
        .unwrap();

    let mut delivered = outcome.delivered.clone();
    delivered.sort();
    assert_eq!(delivered, ["MUG", "TEE"]);
    let rejected: Vec<(&str, &str)> = outcome.rejected.iter().map(|(s, e)| (s.as_str(), e.message.as_str())).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.iter().any(|(s, m)| *s == "MUG" && m.contains("EUR only")), "{rejected:?}");
    assert!(rejected.iter().any(|(s, m)| *s == "GHOST" && m.contains("unknown variation")), "{rejected:?}");
    assert!(outcome.rejected.iter().all(|(_, e)| e.class == FailureClass::Permanent));

    let posted = writes(&sim, "/v4/products/prices");
    assert_eq!(posted.len(), 1, "the three EUR prices in one call");
    assert_eq!(posted[0].body[0], json!({ "sku": "TEE", "standardPrice": { "amount": 19.99, "currency": "EUR" } }));
    assert_eq!(posted[0].body.as_array().unwrap().len(), 3, "the USD price is never sent");
    // The POST, the process read while pending, the read that finds it done, its failed results.
    assert_eq!(requests(&sim) - before, 4);

    // The Products version is a setting (v4 or v5 live is unverified).
    connector(&sim, r#"products_version = "v5""#).push_prices(&[price("TEE", "18.00", "EUR")], &ctx()).await.unwrap();
    assert_eq!(writes(&sim, "/v5/products/prices").len(), 1);
}

#[tokio::test]
async fn a_shipment_names_the_processable_units_of_its_lines_and_is_not_sent_twice() {
    let sim = start(SimConfig::default()).await;
    sim.seed_order(Channel::Otto, serde_json::from_str(PROCESSABLE).unwrap()).unwrap();
    let otto = connector(&sim, "");
    // The normalizer's line id holds both tee units' ids: the WMS ships both.
    let line = ShipmentLine { line_id: Some(TEES.join(",")), sku: Some(Sku::new("TEE-BLK-M").unwrap()), quantity: 2 };

    otto.push_tracking(&shipment(vec![line.clone()], "DHL Express"), &ctx()).await.unwrap();

    let sent = writes(&sim, "/v1/shipments");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body,
        json!({
            "trackingKey": { "carrier": "DHL_EXPRESS", "trackingNumber": "JJD000390007880537593" },
            "shipDate": "2026-03-03T14:30:00Z",
            "shipFromAddress": { "city": "Hamburg", "countryCode": "DEU", "zipCode": "22179" },
            "positionItems": [
                { "positionItemId": TEES[0], "salesOrderId": SALES_ORDER },
                { "positionItemId": TEES[1], "salesOrderId": SALES_ORDER },
            ],
        })
    );
    assert_eq!(unit_status(&sim, TEES[0]), "SENT");
    assert_eq!(unit_status(&sim, "b7d2f3a5-0003-4c9f-8d2e-2a3b4c5d6e7f"), "PROCESSABLE", "the mug was not shipped");

    // The same shipment again (a retried push): its units are SENT under its number, nothing is sent.
    otto.push_tracking(&shipment(vec![line], "DHL Express"), &ctx()).await.unwrap();
    assert_eq!(writes(&sim, "/v1/shipments").len(), 1);

    // A carrier OTTO does not know is a permanent failure naming the ones it does; nothing is sent.
    let mug = ShipmentLine { line_id: None, sku: Some(Sku::new("MUG-WHITE").unwrap()), quantity: 1 };
    let err = otto.push_tracking(&shipment(vec![mug], "Brieftaube"), &ctx()).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent);
    assert!(err.message.contains("Brieftaube") && err.message.contains("HERMES"), "{err}");
    assert_eq!(writes(&sim, "/v1/shipments").len(), 1);
}

#[tokio::test]
async fn cancelling_cancels_the_processable_units_and_a_second_cancel_is_otto_s_conflict() {
    let sim = start(SimConfig::default()).await;
    sim.seed_order(Channel::Otto, serde_json::from_str(PROCESSABLE).unwrap()).unwrap();
    let otto = connector(&sim, "");

    otto.cancel_order(SALES_ORDER, "out of stock", &ctx()).await.unwrap();
    assert_eq!(writes(&sim, &format!("/v4/orders/{SALES_ORDER}/cancellation")).len(), 1);
    assert_eq!(unit_status(&sim, TEES[1]), "CANCELLED_BY_PARTNER");

    let err = otto.cancel_order(SALES_ORDER, "out of stock", &ctx()).await.unwrap_err();
    assert_eq!((err.class, err.status), (FailureClass::Permanent, Some(409)));
    assert_eq!(
        err.message,
        format!("Conflict: no position item of the order can be cancelled (/v4/orders/{SALES_ORDER}/cancellation)")
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_once_then_replaced() {
    let sim = start(SimConfig::default().strict_tokens(Duration::from_hours(1))).await;
    let otto = connector(&sim, "");
    let count = |f: fn(&manifold_simulator::Snapshot) -> Option<u64>| f(&sim.snapshot()).unwrap_or(0);

    otto.push_stock(&[stock("A", 1)], &ctx()).await.unwrap();
    assert_eq!(count(|s| s.token_requests.get(&Channel::Otto).copied()), 1, "a client-credentials token");

    // OTTO ends the token's life early: our cache still thinks it valid.
    sim.expire_access_tokens(Channel::Otto);
    let err = otto.push_stock(&[stock("A", 2)], &ctx()).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Auth);
    assert_eq!(count(|s| s.unauthorized.get(&Channel::Otto).copied()), 1);

    // The refused token was dropped: the next call gets a new one and goes through.
    otto.push_stock(&[stock("A", 3)], &ctx()).await.unwrap();
    assert_eq!(count(|s| s.token_requests.get(&Channel::Otto).copied()), 2);
    assert_eq!(sim.snapshot().stock[&Channel::Otto]["A"], 3);
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_call_retried() {
    // One request every two seconds with nothing saved up; the account itself sets no limit.
    let sim = Simulator::start(
        SimConfig::default().with_limit(Channel::Otto, SimLimit::TokenBucket { rate_per_second: 0.5, burst: 1.0 }),
    )
    .await
    .unwrap();
    let otto = connector(&sim, r#"batch_size = "1""#);

    let outcome = otto.push_stock(&[stock("A", 1), stock("B", 2)], &ctx()).await.unwrap();

    assert_eq!(outcome.delivered, ["A", "B"]);
    assert!(sim.snapshot().throttled[&Channel::Otto] >= 1, "the second call was refused first");
    assert_eq!(sim.snapshot().stock[&Channel::Otto]["B"], 2);
}

fn order_at(n: u32, at: DateTime<Utc>) -> Value {
    let mut doc: Value = serde_json::from_str(PROCESSABLE).unwrap();
    doc["salesOrderId"] = json!(format!("so-{n:02}"));
    doc["orderNumber"] = json!(format!("page{n:06}"));
    doc["lastModifiedDate"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    doc
}

#[tokio::test]
async fn the_order_list_is_walked_by_its_cursor_and_includes_its_bound() {
    let sim = start(SimConfig::default()).await;
    sim.cap_order_pages(3);
    let since: DateTime<Utc> = "2026-03-02T10:00:00.000Z".parse().unwrap();
    for n in 0..10 {
        // Order 0 changed exactly at the bound.
        sim.seed_order(Channel::Otto, order_at(n, since + chrono::Duration::minutes(i64::from(n)))).unwrap();
    }
    sim.seed_order(Channel::Otto, order_at(99, since - chrono::Duration::milliseconds(1))).unwrap();
    let before = requests(&sim);

    let orders = connector(&sim, "").list_orders_since(since, &ctx()).await.unwrap();

    let ids: Vec<&str> = orders.iter().map(|o| o["salesOrderId"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..10).map(|n| format!("so-{n:02}")).collect();
    assert_eq!(ids, want, "every page, oldest change first, the bound included, nothing before it");
    assert_eq!(requests(&sim) - before, 4, "pages of 3: the first by fromDate, three by cursor alone");
}

#[tokio::test]
async fn stock_reads_and_orders_come_back_as_otto_holds_them() {
    let sim = start(SimConfig::default()).await;
    sim.seed_catalog(Channel::Otto, catalog(&["A", "B"]));
    sim.seed_order(Channel::Otto, serde_json::from_str(PROCESSABLE).unwrap()).unwrap();
    let otto = connector(&sim, "");
    otto.push_stock(&[stock("A", 5)], &ctx()).await.unwrap();

    let read = otto.read_stock(&[StockRead::sku("A"), StockRead::sku("NOT-LISTED")], &ctx()).await.unwrap();
    assert_eq!(read, [("A".to_owned(), 5)], "a SKU OTTO holds nothing for is left out");
    let order = otto.fetch_order(SALES_ORDER, &ctx()).await.unwrap();
    assert_eq!(order["orderNumber"], "bkp9wr24gl");
    let missing = otto.fetch_order("no-such-order", &ctx()).await.unwrap_err();
    assert_eq!((missing.class, missing.status), (FailureClass::Permanent, Some(404)));
}

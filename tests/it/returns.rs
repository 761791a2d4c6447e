//! The seed merchant's own path (WooCommerce and Amazon, and eBay's swept returns), against moto and the channel simulators: an
//! order is shipped by the WMS and the selling channel receives the tracking in its own documented
//! shape (an Amazon order that cannot be fulfilled is cancelled there: `pipeline.rs`); goods that come
//! back are taken back onto stock once under the account's restock policy, however often the channel
//! says so.

use chrono::Utc;
use http::HeaderValue;
use manifold_app::ledger::{LedgerOutcome, OnHandUpdate};
use manifold_connectors::verify::sign;
use manifold_domain::{Channel, OrderId, config::RestockPolicy};
use manifold_ledger::{Ledger, PositionKey};
use serde_json::{Value, json};

use crate::{fixtures::SECRET, inbound::Harness};

const WOO_ORDER: &str = include_str!("../../shared/normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json");

fn key(sku: &str, location: &str) -> PositionKey {
    PositionKey::new(manifold_domain::Sku::new(sku).unwrap(), location)
}

async fn on_hand(h: &Harness, sku: &str, location: &str) -> (i64, i64, i64) {
    let p = h.app.ledger.position(&key(sku, location)).await.unwrap();
    (p.on_hand, p.reserved, p.available)
}

/// What the ledger did with one bus event: its kind, its detail, the outcome.
type Applied = Vec<(String, Value, LedgerOutcome)>;

/// Delivers a signed WooCommerce webhook with `topic`, runs ingest, then the ledger over every event
/// the bus got.
async fn woo_webhook(h: &Harness, topic: &'static str, delivery: &'static str, body: &[u8]) -> Applied {
    let settings = h.app.config().await.account(Channel::Woocommerce, "woo-main").unwrap().settings.clone();
    let mut headers = sign(Channel::Woocommerce, SECRET, &settings, "", body, Utc::now()).unwrap();
    headers.insert("x-wc-webhook-topic", HeaderValue::from_static(topic));
    headers.insert("x-wc-webhook-delivery-id", HeaderValue::from_static(delivery));
    let response = h.app.handle_webhook("woocommerce", "woo-main", &headers, body, Utc::now()).await;
    assert_eq!(response.status, 200, "{topic}: {response:?}");
    h.run_ingest().await;
    let mut out = Vec::new();
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        let outcome = h.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("the ledger applies the event");
        out.push((kind, e["detail"].clone(), outcome));
    }
    out
}

/// The merchant refunds `quantity` of order line `line` in WooCommerce (what the shop's admin does
/// through the same REST endpoint when goods come back).
async fn refund_in_woocommerce(h: &Harness, order: &str, line: u64, quantity: u32) -> Value {
    let url = format!("{}/wc/v3/orders/{order}/refunds", h.sim.base_url(Channel::Woocommerce));
    let body = json!({ "reason": "too small", "api_refund": false,
                       "line_items": [{ "id": line, "quantity": quantity, "refund_total": 12.0 }] });
    let reply = reqwest::Client::new().post(url).basic_auth("ck_sim", Some("cs_sim")).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 201, "the simulator took the refund");
    reply.json().await.unwrap()
}

#[tokio::test]
async fn a_woocommerce_order_ships_with_tracking_and_its_returned_unit_is_restocked_once() {
    let h = Harness::new().await;
    let order: Value = serde_json::from_str(WOO_ORDER).unwrap();
    h.sim.seed_order(Channel::Woocommerce, order).unwrap();
    let count = OnHandUpdate { on_hand: 5, location: None, source_ref: Some("erp-bar3".into()), as_of: None };
    h.app.set_on_hand("Bar3", &count, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;

    let placed = woo_webhook(&h, "order.created", "woo-d-1", WOO_ORDER.as_bytes()).await;
    assert!(
        placed.iter().any(|(k, _, o)| k == "OrderAccepted" && matches!(o, LedgerOutcome::Reserved { .. })),
        "{placed:?}"
    );
    assert_eq!(on_hand(&h, "Bar3", "default").await, (5, 1, 4));

    // The WMS ships the order: the unit leaves the warehouse and WooCommerce gets the tracking as the
    // Shipment Tracking plugin's order meta, the order completed.
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-woo-1", "order_id": "woocommerce:woo-main:727", "channel": "woocommerce", "account": "woo-main",
        "channel_order_id": "727", "carrier": "DHL", "tracking_number": "00340434161094042557", "tracking_url": null,
        "lines": [{"line_id": "316", "sku": "Bar3", "quantity": 1}], "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    let shipped = h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert!(matches!(shipped, LedgerOutcome::Shipped { .. }), "{shipped:?}");
    assert_eq!(on_hand(&h, "Bar3", "default").await, (4, 0, 4));
    let url = h.stack.env.push_queues[&Channel::Woocommerce].clone();
    for _ in 0..3 {
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Woocommerce, e)).await.unwrap();
    }
    let snap = h.sim.snapshot();
    let woo = &snap.orders[&Channel::Woocommerce][0].doc;
    assert_eq!(woo["status"], "completed");
    let tracking = &woo["meta_data"][0];
    assert_eq!(tracking["key"], "_wc_shipment_tracking_items");
    assert_eq!(tracking["value"][0]["tracking_number"], "00340434161094042557");
    assert_eq!(tracking["value"][0]["tracking_provider"], "DHL");

    // The bar comes back: the merchant refunds it with its line in WooCommerce, and WooCommerce's
    // refund action webhook names the order. It arrives twice (two deliveries): one unit back, once.
    let refund = refund_in_woocommerce(&h, "727", 316, 1).await;
    let note = json!({ "action": "woocommerce_order_refunded", "arg": 727 }).to_string();
    let first = woo_webhook(&h, "action.woocommerce_order_refunded", "woo-d-2", note.as_bytes()).await;
    assert!(
        first.iter().any(|(k, _, o)| k == "ReturnUpdated" && matches!(o, LedgerOutcome::Restocked { .. })),
        "{first:?}"
    );
    assert!(first.iter().any(|(k, _, o)| k == "RefundCreated" && matches!(o, LedgerOutcome::Ignored(_))), "{first:?}");
    assert_eq!(on_hand(&h, "Bar3", "default").await, (5, 0, 5), "the returned bar is sellable again");
    let second = woo_webhook(&h, "action.woocommerce_order_refunded", "woo-d-3", note.as_bytes()).await;
    assert!(
        second.iter().all(|(_, _, o)| !matches!(o, LedgerOutcome::Restocked { .. })),
        "a second delivery takes nothing back: {second:?}"
    );
    assert_eq!(on_hand(&h, "Bar3", "default").await, (5, 0, 5));

    // The canonical Return, published as it is stored (under the latest delivery's trace), with its
    // order line and state.
    let published = first.iter().find(|(k, _, _)| k == "ReturnUpdated").map(|(_, d, _)| d).unwrap();
    let latest = second.iter().find(|(k, _, _)| k == "ReturnUpdated").map_or(published, |(_, d, _)| d);
    let trace = latest["trace_id"].as_str().unwrap();
    let stored: Vec<Value> = h
        .app
        .records
        .by_trace(trace)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "return")
        .map(|r| r.record)
        .collect();
    assert_eq!(stored.len(), 1, "one Return stored under the delivery's trace");
    let ret = &published["data"];
    assert!(stored[0].to_string().contains(ret["id"].as_str().unwrap()), "{stored:?}");
    assert_eq!(ret["id"], format!("woocommerce:woo-main:refund-{}", refund["id"]));
    assert_eq!(ret["state"], "refunded");
    assert_eq!(ret["reason"], "too small");
    assert_eq!(ret["lines"], json!([{ "line_id": "316", "sku": "Bar3", "quantity": 1, "reason": null }]));
    assert_eq!(ret["order_id"], OrderId::new("woocommerce:woo-main:727").unwrap().as_str());
}

#[tokio::test]
async fn under_restock_never_returned_goods_go_to_the_damaged_location_and_never_on_sale() {
    let h = Harness::with_config(|c| {
        let woo = c.accounts.iter_mut().find(|a| a.account.as_str() == "woo-main").unwrap();
        woo.stock.restock = RestockPolicy::Never;
    })
    .await;
    let order: Value = serde_json::from_str(WOO_ORDER).unwrap();
    h.sim.seed_order(Channel::Woocommerce, order).unwrap();
    let count = OnHandUpdate { on_hand: 5, location: None, source_ref: Some("erp-bar3".into()), as_of: None };
    h.app.set_on_hand("Bar3", &count, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    woo_webhook(&h, "order.created", "woo-n-1", WOO_ORDER.as_bytes()).await;
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-woo-n", "order_id": "woocommerce:woo-main:727", "channel": "woocommerce", "account": "woo-main",
        "channel_order_id": "727", "carrier": "DHL", "tracking_number": "00340434161094042558", "tracking_url": null,
        "lines": [], "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert_eq!(on_hand(&h, "Bar3", "default").await, (4, 0, 4));

    refund_in_woocommerce(&h, "727", 316, 1).await;
    let note = json!({ "action": "woocommerce_order_refunded", "arg": 727 }).to_string();
    let applied = woo_webhook(&h, "action.woocommerce_order_refunded", "woo-n-2", note.as_bytes()).await;
    assert!(applied.iter().any(|(k, _, o)| k == "ReturnUpdated" && matches!(o, LedgerOutcome::Restocked { .. })));
    assert_eq!(on_hand(&h, "Bar3", "default").await, (4, 0, 4), "nothing back on sale");
    assert_eq!(on_hand(&h, "Bar3", "damaged").await, (1, 0, 1), "counted where damaged goods are kept");
}

const AMAZON_SKU: &str = "NABetaASINB00551Q3CS";

#[tokio::test]
async fn an_amazon_order_shipped_by_the_wms_is_confirmed_on_amazon_with_its_items_and_tracking() {
    let h = Harness::new().await;
    // The SP-API sandbox's order (TEST_CASE_200): one unit of one SKU.
    let count = OnHandUpdate { on_hand: 5, location: None, source_ref: Some("erp-amz".into()), as_of: None };
    h.app.set_on_hand(AMAZON_SKU, &count, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    // The ORDER_CHANGE notification arrives on the queue; the order is fetched, stored and reserved.
    let order_id = crate::inbound::amazon_order_notified(&h, "amazon-seed", 1).await;
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        h.app.apply_event(&kind, &e["detail"], Utc::now()).await.unwrap();
    }
    let id = OrderId::new(format!("amazon:A2EUQ1WTGCTBG2:{order_id}")).unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("stored");
    assert_eq!(on_hand(&h, AMAZON_SKU, "default").await, (5, 1, 4));

    // The WMS ships both lines; Amazon receives confirmShipment with its own item ids.
    let lines: Vec<Value> =
        stored.lines.iter().map(|l| json!({ "line_id": l.line_id, "sku": l.sku, "quantity": l.quantity })).collect();
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-amz-1", "order_id": id.as_str(), "channel": "amazon", "account": "A2EUQ1WTGCTBG2",
        "channel_order_id": order_id, "carrier": "DHL", "tracking_number": "00340434161094042559",
        "tracking_url": null, "lines": lines, "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert_eq!(on_hand(&h, AMAZON_SKU, "default").await, (4, 0, 4));
    let url = h.stack.env.push_queues[&Channel::Amazon].clone();
    for _ in 0..3 {
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Amazon, e)).await.unwrap();
    }
    let snap = h.sim.snapshot();
    let confirmations: Vec<&manifold_simulator::Write> = snap.writes[&Channel::Amazon]
        .iter()
        .filter(|w| w.path.ends_with(&format!("/orders/v0/orders/{order_id}/shipmentConfirmation")))
        .collect();
    assert_eq!(confirmations.len(), 1, "one confirmShipment for the shipment");
    let detail = &confirmations[0].body["packageDetail"];
    assert_eq!(detail["carrierCode"], "DHL");
    assert_eq!(detail["trackingNumber"], "00340434161094042559");
    assert_eq!(detail["packageReferenceId"], "wms-amz-1");
    let mut shipped: Vec<(String, i64)> = detail["orderItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["orderItemId"].as_str().unwrap().to_owned(), i["quantity"].as_i64().unwrap()))
        .collect();
    shipped.sort();
    assert_eq!(shipped, [("05015851154158".to_owned(), 1)], "Amazon's own order item id");
}

/// Ledger outcomes of every event the bus got since the last look.
async fn apply_all(h: &Harness) -> Vec<LedgerOutcome> {
    let mut out = Vec::new();
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        out.push(h.app.apply_event(&kind, &e["detail"], Utc::now()).await.unwrap());
    }
    out
}

/// One reconciliation run of `account` (every 15 minutes) and the ledger's work on what it found:
/// (returns the sweep handed on, units restocked, refunds that restocked nothing).
async fn reconcile_returns(
    h: &Harness,
    account: &manifold_domain::config::AccountConfig,
    label: &str,
) -> (usize, usize, usize) {
    let cadence = manifold_domain::config::Cadence::Every(std::time::Duration::from_mins(15));
    let poll = h.app.reconcile_account(account, cadence, Utc::now()).await.unwrap();
    assert!(!poll.failed, "{label}: {poll:?}");
    let applied = apply_all(h).await;
    let restocked = applied.iter().filter(|o| matches!(o, LedgerOutcome::Restocked { .. })).count();
    let refunds = applied.iter().filter(|o| **o == LedgerOutcome::Ignored("refund restocks nothing")).count();
    (poll.returns_seen, restocked, refunds)
}

/// Zalando pushes nothing and lists new orders only until they are exported: a unit returned weeks
/// later reaches Manifold through the reconciliation tier's poll of orders changed since, and goes
/// back on stock once, however many polls see it.
#[tokio::test]
async fn a_zalando_unit_returned_after_export_is_restocked_once_by_the_changes_poll() {
    let h = Harness::new().await;
    let sku = "woo-tee-black-m";
    // Both of the order's articles are in stock (an order reserves wholly or not at all).
    for item in [sku, "4006381333948"] {
        let count = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-z".into()), as_of: None };
        h.app.set_on_hand(item, &count, "t-erp", Utc::now()).await.unwrap();
    }
    let _ = h.stack.events().await;
    let doc: Value = serde_json::from_str(include_str!(
        "../../shared/normalize/fixtures/zalando/order-jsonapi-written-from-docs.json"
    ))
    .unwrap();
    let order_id = h.sim.seed_order(Channel::Zalando, doc).unwrap();
    let polled = h.app.poll_zalando(Utc::now()).await.unwrap();
    assert_eq!((polled.stored, polled.acknowledged), (1, 1), "{polled:?}");
    let applied = apply_all(&h).await;
    assert_eq!(on_hand(&h, sku, "default").await, (10, 2, 8), "{applied:?}");
    let id = OrderId::new(format!("zalando:merchant-zde-1:{order_id}")).unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("stored");
    let tee = stored.lines.iter().find(|l| l.sku.as_ref().is_some_and(|s| s.as_str() == sku)).unwrap();
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-z-1", "order_id": id.as_str(), "channel": "zalando", "account": "merchant-zde-1",
        "channel_order_id": order_id, "carrier": "DHL", "tracking_number": "00340434161094099999",
        "tracking_url": null, "lines": [{ "line_id": tee.line_id, "sku": sku, "quantity": 2 }],
        "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    apply_all(&h).await;
    assert_eq!(on_hand(&h, sku, "default").await, (8, 0, 8));

    // Days later the buyer sends one tee back; Zalando marks its order line returned.
    let mut held = h.sim.snapshot().orders[&Channel::Zalando].iter().find(|o| o.id == order_id).unwrap().clone();
    assert!(held.exported, "the poll marked it exported: the new-orders list no longer shows it");
    held.doc["data"]["attributes"]["status"] = json!("fulfilled");
    held.doc["data"]["attributes"]["modified_at"] = json!(Utc::now().to_rfc3339());
    let lines = held.doc["included"].as_array_mut().unwrap();
    let mut units = lines.iter_mut().filter(|r| r["type"] == "OrderLine");
    units.next().unwrap()["attributes"]["status"] = json!("returned");
    for other in units {
        other["attributes"]["status"] = json!("shipped");
    }
    h.sim.seed_order(Channel::Zalando, held.doc).unwrap();
    assert_eq!(h.app.poll_zalando(Utc::now()).await.unwrap().fetched, 0, "not a new order");

    let account = h.app.config().await.account(Channel::Zalando, "merchant-zde-1").unwrap().clone();
    let cadence = manifold_domain::config::Cadence::Every(std::time::Duration::from_mins(15));
    let mut restocked = 0;
    for run in 0..2 {
        let poll = h.app.reconcile_account(&account, cadence, Utc::now()).await.unwrap();
        assert!(!poll.failed && poll.orders_seen == 1, "run {run}: {poll:?}");
        restocked += apply_all(&h).await.iter().filter(|o| matches!(o, LedgerOutcome::Restocked { .. })).count();
    }
    assert_eq!(restocked, 1, "taken back once");
    assert_eq!(on_hand(&h, sku, "default").await, (9, 0, 9));
}

/// Amazon reports seller-fulfilled returns only in its returns report: one reconciliation run asks
/// for it, a later one reads it once Amazon has built it. A unit delivered back to the seller goes
/// back on stock once, however many reports list it.
#[tokio::test]
async fn an_amazon_return_delivered_to_the_seller_is_restocked_once_from_the_returns_report() {
    let h = Harness::new().await;
    let count = OnHandUpdate { on_hand: 5, location: None, source_ref: Some("erp-amz-r".into()), as_of: None };
    h.app.set_on_hand(AMAZON_SKU, &count, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let order_id = crate::inbound::amazon_order_notified(&h, "amazon-returns", 1).await;
    apply_all(&h).await;
    let id = OrderId::new(format!("amazon:A2EUQ1WTGCTBG2:{order_id}")).unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("stored");
    let line = &stored.lines[0];
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-amz-r", "order_id": id.as_str(), "channel": "amazon", "account": "A2EUQ1WTGCTBG2",
        "channel_order_id": order_id, "carrier": "UPS", "tracking_number": "1Z999AA10123456784",
        "tracking_url": null, "lines": [{ "line_id": line.line_id, "sku": line.sku, "quantity": line.quantity }],
        "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    apply_all(&h).await;
    assert_eq!(on_hand(&h, AMAZON_SKU, "default").await, (4, 0, 4));

    // The buyer returned the unit; it reached the seller yesterday.
    let row = json!({ "Order ID": order_id, "Return request date": (Utc::now() - chrono::Duration::days(3)).to_rfc3339(),
        "Return request status": "Approved", "Amazon RMA ID": "DmsQ4uVwRRMA", "Currency code": "USD",
        "Merchant SKU": AMAZON_SKU, "Return quantity": "1", "Return Reason": "CR-DEFECTIVE",
        "Return delivery date": (Utc::now() - chrono::Duration::days(1)).to_rfc3339(), "Refunded Amount": "" });
    h.sim.seed_return(Channel::Amazon, &order_id, "Amazon RMA ID", row.clone());
    let account = h.app.config().await.account(Channel::Amazon, "A2EUQ1WTGCTBG2").unwrap().clone();
    let run = |label: &'static str| reconcile_returns(&h, &account, label);
    // Run 1 asks for a report; run 2 finds it still being built; run 3 reads it (and asks for the
    // next): the return, restocked.
    assert_eq!(run("ask").await, (0, 0, 0));
    assert_eq!(run("being built").await, (0, 0, 0));
    assert_eq!(run("read").await, (1, 1, 0));
    // The next report lists the return as it was: the order is neither fetched nor handed on again.
    assert_eq!(run("being built").await, (0, 0, 0));
    assert_eq!(run("read unchanged").await, (0, 0, 0));
    // Amazon refunds it later: the changed rows are read again (a Refund beside the return), and
    // the unit is still taken back only once.
    let mut refunded = row.clone();
    refunded["Refunded Amount"] = json!("10.00");
    h.sim.seed_return(Channel::Amazon, &order_id, "Amazon RMA ID", refunded);
    // The report asked for before the refund still shows the old rows; the one after shows it.
    assert_eq!(run("being built").await, (0, 0, 0));
    assert_eq!(run("read, from before the refund").await, (0, 0, 0));
    assert_eq!(run("being built").await, (0, 0, 0));
    assert_eq!(run("read changed").await, (1, 0, 1), "read again: a refund, restocked no more");
    assert_eq!(on_hand(&h, AMAZON_SKU, "default").await, (5, 0, 5));
}

/// eBay notifies no returns: the reconciliation tier searches the Post-Order API's open and closed
/// returns each run. A unit delivered back goes on stock once; its refund later is money only; a
/// return whose buyer keeps the goods restocks nothing, even once its summary reads only CLOSED.
#[tokio::test]
async fn an_ebay_return_delivered_to_the_seller_is_restocked_once_and_a_kept_one_never() {
    const SKU: &str = "IPOD2008PINK";
    let h = Harness::new().await;
    let count = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-ebay-r".into()), as_of: None };
    h.app.set_on_hand(SKU, &count, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let mut doc: Value =
        serde_json::from_str(include_str!("../../shared/normalize/fixtures/ebay/getorder-written-from-docs.json"))
            .unwrap();
    doc["lastModifiedDate"] = json!(Utc::now().to_rfc3339());
    let order_id = h.sim.seed_order(Channel::Ebay, doc.clone()).unwrap();
    let account = h.app.config().await.account(Channel::Ebay, "ebay-de").unwrap().clone();
    let run = |label: &'static str| reconcile_returns(&h, &account, label);
    // The sweep finds the order (no webhook came) and no returns yet; the WMS ships all three units.
    assert_eq!(run("order").await, (0, 0, 0));
    let id = OrderId::new(format!("ebay:ebay-de:{order_id}")).unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("the sweep stored the order");
    let line = &stored.lines[0];
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": "wms-ebay-r", "order_id": id.as_str(), "channel": "ebay", "account": "ebay-de",
        "channel_order_id": order_id, "carrier": "DHL", "tracking_number": "00340434161094099999",
        "tracking_url": null, "lines": [{ "line_id": line.line_id, "sku": SKU, "quantity": 3 }],
        "shipped_at": "2026-11-30T09:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    apply_all(&h).await;
    assert_eq!(on_hand(&h, SKU, "default").await, (7, 0, 7));

    // One unit comes back and reaches the seller.
    let created = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let summary = |return_id: &str, state: &str, refunded: Option<f64>| {
        let mut s = json!({ "returnId": return_id, "orderId": order_id, "state": state,
            "creationInfo": { "item": { "itemId": "110012345678", "transactionId": line.line_id, "returnQuantity": 1 },
                              "reason": "NOT_AS_DESCRIBED", "creationDate": { "value": created } } });
        if let Some(v) = refunded {
            s["sellerTotalRefund"] = json!({ "actualRefundAmount": { "value": v, "currency": "EUR" } });
        }
        s
    };
    h.sim.seed_return(Channel::Ebay, &order_id, "returnId", summary("5000070001", "ITEM_DELIVERED", None));
    assert_eq!(run("delivered").await, (1, 1, 0));
    assert_eq!(on_hand(&h, SKU, "default").await, (8, 0, 8));
    assert_eq!(run("unchanged").await, (0, 0, 0), "the same returns are neither fetched nor handed on");
    // The seller refunds it and eBay closes it: money back, the unit taken back no more.
    h.sim.seed_return(Channel::Ebay, &order_id, "returnId", summary("5000070001", "CLOSED", Some(14.99)));
    assert_eq!(run("closed with refund").await, (1, 0, 1));

    // A second buyer complaint: refunded, the buyer keeps the unit. Then eBay closes it.
    h.sim.seed_return(Channel::Ebay, &order_id, "returnId", summary("5000070002", "ITEM_KEPT", Some(5.0)));
    let (seen, restocked, _) = run("kept").await;
    assert_eq!((seen, restocked), (1, 0));
    h.sim.seed_return(Channel::Ebay, &order_id, "returnId", summary("5000070002", "CLOSED", Some(5.0)));
    let (seen, restocked, _) = run("kept, closed").await;
    assert_eq!((seen, restocked), (1, 0), "a kept unit never goes back on stock");
    assert_eq!(on_hand(&h, SKU, "default").await, (8, 0, 8));
}

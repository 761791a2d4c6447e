//! The order-to-stock pipeline against moto: a webhook's order reaches the ledger through the bus
//! events, reserves stock, fans availability out to every channel's push queue, and an order that
//! cannot be served is marked oversold. The ERP's on-hand count keeps open reservations.

use chrono::Utc;
use manifold_app::{ledger::LedgerOutcome, ledger::OnHandUpdate};
use manifold_domain::{Channel, OversellAction};
use manifold_ledger::{Ledger, PositionKey};

use crate::inbound::{Harness, shopify_body, shopify_headers, shopify_order_id};

/// Feeds the captured bus events to the ledger consumer, as the LedgerQueue rule would.
async fn run_ledger(h: &Harness) -> Vec<(String, LedgerOutcome)> {
    let mut out = Vec::new();
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        let outcome = h.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("ledger applies the event");
        out.push((kind, outcome));
    }
    out
}

/// The paid Shopify order arrives as a signed webhook, is ingested, and its events reach the ledger.
async fn shopify_order_through_ledger(h: &Harness, event_id: &str) -> Vec<(String, LedgerOutcome)> {
    let body = shopify_body();
    let headers = shopify_headers(&body, event_id, "orders/create");
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    h.run_ingest().await;
    run_ledger(h).await
}

fn key(sku: &str) -> PositionKey {
    PositionKey::new(manifold_domain::Sku::new(sku).unwrap(), "default")
}

#[tokio::test]
async fn an_order_reserves_stock_and_every_channel_gets_the_new_availability() {
    let h = Harness::new().await;
    // The paid Shopify order sells one IPOD2009BLACK (unmapped: the master SKU keeps its value).
    let update = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-1".into()), as_of: None };
    let position = h.app.set_on_hand("IPOD2009BLACK", &update, "trace-erp", Utc::now()).await.unwrap();
    assert_eq!((position.on_hand, position.reserved, position.available), (10, 0, 10));
    let _ = h.stack.events().await; // InventoryChanged from the ERP update
    for c in Channel::ALL {
        let jobs = h.stack.drain(&h.stack.env.push_queues[&c]).await;
        assert_eq!(jobs.len(), 1, "{c} got the ERP count");
    }

    let applied = shopify_order_through_ledger(&h, "evt-p1").await;
    assert!(
        matches!(applied.as_slice(), [(k, LedgerOutcome::Reserved { jobs })] if k == "OrderAccepted" && *jobs == Channel::ALL.len()),
        "{applied:?}"
    );
    let p = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap();
    assert_eq!((p.on_hand, p.reserved, p.available), (10, 1, 9));

    // Each channel's own queue holds its own publishable quantity (buffers from the example config).
    let shopify: Vec<serde_json::Value> = h
        .stack
        .drain(&h.stack.env.push_queues[&Channel::Shopify])
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(shopify.len(), 1);
    assert_eq!(shopify[0]["quantity"], 7, "9 available minus Shopify's buffer of 2");
    let ebay: Vec<serde_json::Value> = h
        .stack
        .drain(&h.stack.env.push_queues[&Channel::Ebay])
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(ebay[0]["quantity"], 8, "9 minus eBay's buffer of 1, under its cap of 10");

    // The ERP counts 4 on hand while the order is open: the reservation is kept.
    let p = h
        .app
        .set_on_hand(
            "IPOD2009BLACK",
            &OnHandUpdate { on_hand: 4, location: None, source_ref: Some("erp-2".into()), as_of: None },
            "t",
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!((p.on_hand, p.reserved, p.available), (4, 1, 3));

    // Redelivering the same event reserves nothing more.
    let order = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    let detail = serde_json::json!({"trace_id": "t", "data": order});
    assert_eq!(h.app.apply_event("OrderAccepted", &detail, Utc::now()).await.unwrap(), LedgerOutcome::AlreadyApplied);
}

#[tokio::test]
async fn an_order_without_stock_is_marked_oversold_and_announced() {
    let h = Harness::new().await;
    let applied = shopify_order_through_ledger(&h, "evt-p2").await;
    assert!(
        matches!(applied.as_slice(), [(_, LedgerOutcome::Oversold { action: OversellAction::Hold, short: 1 })]),
        "{applied:?}"
    );
    let stored = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    let oversold = stored.oversold.expect("marked on the canonical record");
    assert_eq!(oversold.short_lines[0].sku.as_str(), "IPOD2009BLACK");
    assert_eq!(oversold.short_lines[0].requested, 1);
    let kinds: Vec<String> =
        h.stack.events().await.iter().map(|e| e["detail-type"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(kinds.contains(&"OrderOversold".to_owned()), "{kinds:?}");
    let p = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap();
    assert_eq!(p.reserved, 0, "a held order reserves nothing");
}

/// Collects formatted log lines in memory.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_trace_id_follows_an_order_from_its_webhook_to_the_channel_push() {
    let h = Harness::new().await;
    let lines = Lines::default();
    let sink = lines.clone();
    // The production subscriber, writing to memory. Installed process-wide (a thread-scoped one can miss
    // events whose callsites other tests' threads registered first), so the assertions below pick this
    // transaction's lines out by its own order id and trace id.
    tracing::subscriber::set_global_default(manifold_telemetry::logging::subscriber(move || sink.clone()))
        .expect("no other test installs a global subscriber");

    h.app
        .set_on_hand(
            "IPOD2009BLACK",
            &OnHandUpdate { on_hand: 5, location: None, source_ref: None, as_of: None },
            "trace-erp",
            Utc::now(),
        )
        .await
        .unwrap();
    for url in h.stack.env.push_queues.values() {
        h.stack.drain(url).await;
    }
    let _ = h.stack.events().await;
    // A fresh order number, so this transaction's lines can be told from other tests' in the process.
    let mut order: serde_json::Value = serde_json::from_slice(&shopify_body()).unwrap();
    let order_number = 7_000_000 + u64::from(Utc::now().timestamp_subsec_micros());
    order["id"] = serde_json::json!(order_number);
    let order_id = format!("shopify:shop-eu:{order_number}");
    let body = serde_json::to_vec(&order).unwrap();
    let response = h
        .app
        .handle_webhook("shopify", "shop-eu", &shopify_headers(&body, "evt-trace", "orders/create"), &body, Utc::now())
        .await;
    assert_eq!(response.status, 200);
    let trace = response.trace_id.clone();
    h.run_ingest().await;
    run_ledger(&h).await;
    let url = h.stack.env.push_queues[&Channel::Ebay].clone();
    let polled =
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Ebay, e)).await.unwrap();
    assert_eq!(polled, 1, "the fan-out put one job on eBay's queue");

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let mut stages = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every log line is JSON");
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        // Every line about this order, at any stage, carries the webhook's trace id.
        if line.contains(&order_id) {
            assert!(
                spans.iter().any(|s| s["trace_id"] == trace.as_str()),
                "a line about the order lost its trace: {line}"
            );
        }
        for s in spans.iter().filter(|s| s["trace_id"] == trace.as_str()) {
            stages.insert(s["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(text.contains(&order_id), "the order's own lines were captured");
    for stage in ["webhook", "ingest", "ledger", "push_message"] {
        assert!(stages.contains(stage), "no {stage} line carried the trace: {stages:?}\n{text}");
    }
}

#[tokio::test]
async fn a_wms_shipment_ships_the_reservation_and_sends_tracking_to_the_selling_channel() {
    let h = Harness::new().await;
    h.app
        .set_on_hand(
            "IPOD2009BLACK",
            &OnHandUpdate { on_hand: 5, location: None, source_ref: None, as_of: None },
            "t-erp",
            Utc::now(),
        )
        .await
        .unwrap();
    shopify_order_through_ledger(&h, "evt-ship").await;
    for url in h.stack.env.push_queues.values() {
        h.stack.drain(url).await;
    }

    let shipment: manifold_domain::Shipment = serde_json::from_value(serde_json::json!({
        "id": "wms-ship-1",
        "order_id": "shopify:shop-eu:1073459981",
        "channel": "shopify",
        "account": "shop-eu",
        "channel_order_id": "1073459981",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": null,
        "lines": [{"line_id": "1071823193", "sku": "IPOD2009BLACK", "quantity": 1}],
        "shipped_at": "2026-11-26T12:00:00Z"
    }))
    .unwrap();
    let outcome = h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert!(matches!(outcome, LedgerOutcome::Shipped { .. }), "{outcome:?}");
    let p = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap();
    assert_eq!((p.on_hand, p.reserved, p.available), (4, 0, 4), "the reserved unit left the warehouse");

    // The tracking job is on the queue of the channel that sold the order, and only there.
    let shopify = h.stack.drain(&h.stack.env.push_queues[&Channel::Shopify]).await;
    let tracking: Vec<serde_json::Value> = shopify
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap())
        .filter(|b| b["type"] == "tracking")
        .collect();
    assert_eq!(tracking.len(), 1, "{shopify:?}");
    assert_eq!(tracking[0]["shipment"]["tracking_number"], "1Z999AA10123456784");
    let ebay = h.stack.drain(&h.stack.env.push_queues[&Channel::Ebay]).await;
    assert!(ebay.iter().all(|m| !m.body().unwrap_or_default().contains("tracking")));

    // The same shipment again moves nothing.
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert_eq!(h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap().on_hand, 4);
}

#[tokio::test]
async fn an_oversold_order_on_a_cancel_channel_is_cancelled_through_the_connector() {
    let h = Harness::with_config(|c| {
        for a in c.accounts.iter_mut().filter(|a| a.channel == Channel::Shopify) {
            a.stock.oversell = OversellAction::Cancel;
        }
    })
    .await;
    let applied = shopify_order_through_ledger(&h, "evt-cancel").await;
    assert!(
        matches!(applied.as_slice(), [(_, LedgerOutcome::Oversold { action: OversellAction::Cancel, .. })]),
        "{applied:?}"
    );
    let writes = h.sim.snapshot().writes.get(&Channel::Shopify).cloned().unwrap_or_default();
    let cancels: Vec<_> = writes.iter().filter(|w| w.body.to_string().contains("orderCancel")).collect();
    assert_eq!(cancels.len(), 1, "one orderCancel call reached the channel: {writes:?}");
    assert!(cancels[0].body.to_string().contains("1073459981"));
    assert_eq!(h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap().reserved, 0);
}

/// Posts a signed Shopify webhook of `body` with `topic`, and runs ingest and the ledger over it.
async fn shopify_webhook_through_ledger(
    h: &Harness,
    body: &serde_json::Value,
    topic: &str,
    event_id: &str,
) -> Vec<(String, LedgerOutcome)> {
    let body = serde_json::to_vec(body).unwrap();
    let headers = shopify_headers(&body, event_id, topic);
    let response = h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await;
    assert_eq!(response.status, 200, "{response:?}");
    h.run_ingest().await;
    run_ledger(h).await
}

async fn triple(h: &Harness, key: &PositionKey) -> (i64, i64, i64) {
    let p = h.app.ledger.position(key).await.unwrap();
    (p.on_hand, p.reserved, p.available)
}

fn count(on_hand: i64, location: Option<&str>, source_ref: Option<&str>, as_of: Option<&str>) -> OnHandUpdate {
    OnHandUpdate {
        on_hand,
        location: location.map(str::to_owned),
        source_ref: source_ref.map(str::to_owned),
        as_of: as_of.map(|t| t.parse().unwrap()),
    }
}

/// The channel's own fulfillment and refund webhooks move ledger stock, end to end.
///
/// The real Shopify fulfillment (1069019877) and refund (929361472) fixtures belong to order 450789469,
/// not to the order fixture 1073459981 this test ingests. The coherent trio is built here from copies
/// of the real payloads: the order's one line (1071823193, IPOD2009BLACK) is sold twice, the
/// fulfillment's `order_id` and line item are rewritten to that order and line (one unit), and the
/// refund's `order_id` and `line_item_id` likewise, with `restock_type: return` (one unit back).
#[tokio::test]
async fn a_shopify_fulfillment_ships_and_a_refund_with_restock_releases_ledger_stock() {
    let h = Harness::new().await;
    h.app.set_on_hand("IPOD2009BLACK", &count(10, None, Some("erp-1"), None), "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let ipod = key("IPOD2009BLACK");

    let mut order: serde_json::Value = serde_json::from_slice(&shopify_body()).unwrap();
    order["line_items"][0]["quantity"] = serde_json::json!(2);
    let applied = shopify_webhook_through_ledger(&h, &order, "orders/create", "evt-e2e-order").await;
    assert!(matches!(applied.as_slice(), [(_, LedgerOutcome::Reserved { .. })]), "{applied:?}");
    assert_eq!(triple(&h, &ipod).await, (10, 2, 8));

    let fixture = |text: &str, root: &str| serde_json::from_str::<serde_json::Value>(text).unwrap()[root].clone();
    let mut fulfillment = fixture(
        include_str!("../../shared/normalize/fixtures/shopify/fulfillment-1069019877-rest-2026-07-create.json"),
        "fulfillment",
    );
    fulfillment["order_id"] = serde_json::json!(1_073_459_981_u64);
    fulfillment["line_items"][0]["id"] = serde_json::json!(1_071_823_193_u64);
    fulfillment["line_items"][0]["sku"] = serde_json::json!("IPOD2009BLACK");
    fulfillment["line_items"][0]["quantity"] = serde_json::json!(1);
    let applied = shopify_webhook_through_ledger(&h, &fulfillment, "fulfillments/create", "evt-e2e-ful").await;
    assert!(
        applied.iter().any(|(k, o)| k == "ShipmentCreated" && matches!(o, LedgerOutcome::Shipped { .. })),
        "{applied:?}"
    );
    assert_eq!(triple(&h, &ipod).await, (9, 1, 8), "one unit left the warehouse: on-hand and reserved down");

    let mut refund = fixture(
        include_str!("../../shared/normalize/fixtures/shopify/refund-929361472-rest-2026-07-create.json"),
        "refund",
    );
    refund["order_id"] = serde_json::json!(1_073_459_981_u64);
    refund["refund_line_items"][0]["line_item_id"] = serde_json::json!(1_071_823_193_u64);
    refund["refund_line_items"][0]["restock_type"] = serde_json::json!("return");
    refund["refund_line_items"][0]["quantity"] = serde_json::json!(1);
    let applied = shopify_webhook_through_ledger(&h, &refund, "refunds/create", "evt-e2e-refund").await;
    assert!(
        applied.iter().any(|(k, o)| k == "RefundCreated" && matches!(o, LedgerOutcome::Released { .. })),
        "{applied:?}"
    );
    assert_eq!(triple(&h, &ipod).await, (9, 0, 9), "the restocked unit is available again");

    // Shopify redelivers both (new event ids, same payloads): nothing moves twice.
    shopify_webhook_through_ledger(&h, &fulfillment, "fulfillments/create", "evt-e2e-ful-2").await;
    shopify_webhook_through_ledger(&h, &refund, "refunds/create", "evt-e2e-refund-2").await;
    assert_eq!(triple(&h, &ipod).await, (9, 0, 9));
}

#[tokio::test]
async fn a_held_order_that_ships_anyway_takes_its_units_off_on_hand_and_counts_one_oversell() {
    let h = Harness::new().await;
    h.app.set_on_hand("IPOD2009BLACK", &count(0, None, Some("erp-0"), None), "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let applied = shopify_order_through_ledger(&h, "evt-held").await;
    assert!(
        matches!(applied.as_slice(), [(_, LedgerOutcome::Oversold { action: OversellAction::Hold, .. })]),
        "{applied:?}"
    );
    // The mark is written once: replays (and the metric, counted by whoever wrote it) find it there.
    let stored = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    let again = h.app.records.set_oversold(&stored.id, stored.oversold.as_ref()).await.unwrap();
    assert!(!again, "a second mark is not a first one");
    let detail = serde_json::json!({"trace_id": "t", "data": manifold_domain::events::OrderEventV1::from(&stored)});
    assert_eq!(h.app.apply_event("OrderUpdated", &detail, Utc::now()).await.unwrap(), LedgerOutcome::AlreadyApplied);

    // The merchant found the unit and the WMS ships it.
    let shipment: manifold_domain::Shipment = serde_json::from_value(serde_json::json!({
        "id": "wms-held-1", "order_id": "shopify:shop-eu:1073459981", "channel": "shopify", "account": "shop-eu",
        "channel_order_id": "1073459981", "carrier": "UPS", "tracking_number": "1Z999AA10123456785",
        "tracking_url": null, "lines": [{"line_id": "1071823193", "sku": "IPOD2009BLACK", "quantity": 1}],
        "shipped_at": "2026-11-26T12:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert_eq!(triple(&h, &key("IPOD2009BLACK")).await, (-1, 0, -1), "no phantom unit left behind");
}

#[tokio::test]
async fn a_later_order_version_adjusts_the_reservation_and_an_older_one_arriving_late_changes_nothing() {
    let h = Harness::new().await;
    h.app.set_on_hand("IPOD2009BLACK", &count(10, None, Some("erp-1"), None), "t-erp", Utc::now()).await.unwrap();
    shopify_order_through_ledger(&h, "evt-edit").await;
    let ipod = key("IPOD2009BLACK");
    assert_eq!(triple(&h, &ipod).await, (10, 1, 9));
    let v1 = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    let event = |o: &manifold_domain::Order| serde_json::json!({"trace_id": "t-edit", "data": manifold_domain::events::OrderEventV1::from(o)});
    let mut v2 = v1.clone();
    v2.lines[0].quantity = 4;
    v2.source_version += 1000;
    let out = h.app.apply_event("OrderUpdated", &event(&v2), Utc::now()).await.unwrap();
    assert!(matches!(out, LedgerOutcome::Amended { jobs } if jobs > 0), "{out:?}");
    assert_eq!(triple(&h, &ipod).await, (10, 4, 6));
    // v2 again, and v1 late: nothing moves.
    assert_eq!(
        h.app.apply_event("OrderUpdated", &event(&v2), Utc::now()).await.unwrap(),
        LedgerOutcome::AlreadyApplied
    );
    assert_eq!(
        h.app.apply_event("OrderUpdated", &event(&v1), Utc::now()).await.unwrap(),
        LedgerOutcome::AlreadyApplied
    );
    assert_eq!(triple(&h, &ipod).await, (10, 4, 6));
    // v3 lowers it to 2; a cancellation as v4 releases the rest.
    let mut v3 = v2.clone();
    v3.lines[0].quantity = 2;
    v3.source_version += 1000;
    h.app.apply_event("OrderUpdated", &event(&v3), Utc::now()).await.unwrap();
    assert_eq!(triple(&h, &ipod).await, (10, 2, 8));
    let mut v4 = v3.clone();
    v4.status = manifold_domain::OrderStatus::Cancelled;
    v4.source_version += 1000;
    let out = h.app.apply_event("OrderCancelled", &event(&v4), Utc::now()).await.unwrap();
    assert!(matches!(out, LedgerOutcome::Released { .. }), "{out:?}");
    assert_eq!(triple(&h, &ipod).await, (10, 0, 10));
    h.app.apply_event("OrderUpdated", &event(&v3), Utc::now()).await.unwrap();
    assert_eq!(triple(&h, &ipod).await, (10, 0, 10), "a cancelled order stays cancelled");
}

#[tokio::test]
async fn a_held_order_edited_down_to_what_is_available_is_reserved_and_no_longer_marked_oversold() {
    let h = Harness::new().await;
    h.app.set_on_hand("IPOD2009BLACK", &count(2, None, Some("erp-2"), None), "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let mut order: serde_json::Value = serde_json::from_slice(&shopify_body()).unwrap();
    order["line_items"][0]["quantity"] = serde_json::json!(5);
    let applied = shopify_webhook_through_ledger(&h, &order, "orders/create", "evt-edit-held").await;
    assert!(matches!(applied.as_slice(), [(_, LedgerOutcome::Oversold { .. })]), "{applied:?}");
    let v1 = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    assert!(v1.oversold.is_some());
    let mut v2 = v1.clone();
    v2.lines[0].quantity = 2;
    v2.source_version += 1000;
    let detail = serde_json::json!({"trace_id": "t", "data": manifold_domain::events::OrderEventV1::from(&v2)});
    let out = h.app.apply_event("OrderUpdated", &detail, Utc::now()).await.unwrap();
    assert!(matches!(out, LedgerOutcome::Amended { .. }), "{out:?}");
    assert_eq!(triple(&h, &key("IPOD2009BLACK")).await, (2, 2, 0));
    let stored = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    assert_eq!(stored.oversold, None, "the edit fits: no longer oversold");
}

#[tokio::test]
async fn a_stale_erp_count_is_refused_with_409_and_a_resent_one_does_not_reapply_after_a_shipment() {
    let h = Harness::new().await;
    let ten = count(10, None, None, Some("2026-11-30T10:00:00Z"));
    h.app.set_on_hand("IPOD2009BLACK", &ten, "t-erp-1", Utc::now()).await.unwrap();
    shopify_order_through_ledger(&h, "evt-stale").await;
    let shipment: manifold_domain::Shipment = serde_json::from_value(serde_json::json!({
        "id": "wms-stale-1", "order_id": "shopify:shop-eu:1073459981", "channel": "shopify", "account": "shop-eu",
        "channel_order_id": "1073459981", "carrier": "UPS", "tracking_number": "1Z999AA10123456786",
        "tracking_url": null, "lines": [{"line_id": "1071823193", "sku": "IPOD2009BLACK", "quantity": 1}],
        "shipped_at": "2026-11-30T10:30:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    let ipod = key("IPOD2009BLACK");
    assert_eq!(triple(&h, &ipod).await, (9, 0, 9));
    // The ERP retries its 10:00 count without a source_ref (another trace id): not applied again.
    let p = h.app.set_on_hand("IPOD2009BLACK", &ten, "t-erp-retry", Utc::now()).await.unwrap();
    assert_eq!((p.on_hand, p.available), (9, 9));
    // A count as of 09:00 loses: 409, nothing changes.
    let nine = count(12, None, Some("erp-9h"), Some("2026-11-30T09:00:00Z"));
    let err = h.app.set_on_hand("IPOD2009BLACK", &nine, "t-erp-old", Utc::now()).await.unwrap_err();
    assert_eq!(manifold_app::ledger::inventory_status(&err), 409, "{err}");
    assert!(err.to_string().contains("stale count"), "{err}");
    assert_eq!(triple(&h, &ipod).await, (9, 0, 9));
    // The bulk import honours the same rule per row.
    let report = h
        .app
        .import_stock(
            r#"[{"sku":"IPOD2009BLACK","on_hand":3,"as_of":"2026-11-30T09:30:00Z"},{"sku":"OTHER-SKU","on_hand":3,"as_of":"2026-11-30T09:30:00Z"}]"#,
            false,
            "import-930",
            "t-import",
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(report["applied"], 1, "{report}");
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("stale"), "{report}");
    assert_eq!(triple(&h, &ipod).await, (9, 0, 9));
    // A newer count applies.
    let eleven = count(7, None, None, Some("2026-11-30T11:00:00Z"));
    assert_eq!(h.app.set_on_hand("IPOD2009BLACK", &eleven, "t-erp-11", Utc::now()).await.unwrap().on_hand, 7);
}

/// Drains one channel's push queue: its stock jobs as (sku, location, quantity, version).
async fn stock_jobs(h: &Harness, channel: Channel) -> Vec<(String, String, u64, u64)> {
    h.stack
        .drain(&h.stack.env.push_queues[&channel])
        .await
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap())
        .filter(|j| j.get("quantity").is_some() && j.get("type").is_none())
        .map(|j| {
            (
                j["sku"].as_str().unwrap().to_owned(),
                j["location"].as_str().unwrap().to_owned(),
                j["quantity"].as_u64().unwrap(),
                j["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_account_reserves_and_is_published_at_its_own_location() {
    let h = Harness::with_config(|c| {
        for a in c.accounts.iter_mut().filter(|a| a.channel == Channel::Shopify) {
            a.stock.location = "wh-2".into();
        }
    })
    .await;
    h.app.set_on_hand("IPOD2009BLACK", &count(50, None, Some("erp-d"), None), "t", Utc::now()).await.unwrap();
    h.app.set_on_hand("IPOD2009BLACK", &count(5, Some("wh-2"), Some("erp-w"), None), "t", Utc::now()).await.unwrap();
    let shopify = stock_jobs(&h, Channel::Shopify).await;
    assert_eq!(
        shopify,
        vec![("IPOD2009BLACK".into(), "wh-2".into(), 3, 1)],
        "5 minus Shopify's buffer of 2, wh-2 only"
    );
    let ebay = stock_jobs(&h, Channel::Ebay).await;
    assert_eq!(ebay.len(), 1, "{ebay:?}");
    assert_eq!((ebay[0].1.as_str(), ebay[0].2), ("default", 10), "eBay sells from default, capped at 10");

    // The Shopify order reserves at wh-2; the default position is untouched.
    shopify_order_through_ledger(&h, "evt-loc").await;
    let wh2 = PositionKey::new(manifold_domain::Sku::new("IPOD2009BLACK").unwrap(), "wh-2");
    assert_eq!(triple(&h, &wh2).await, (5, 1, 4));
    assert_eq!(triple(&h, &key("IPOD2009BLACK")).await, (50, 0, 50));
    assert_eq!(stock_jobs(&h, Channel::Shopify).await, vec![("IPOD2009BLACK".into(), "wh-2".into(), 2, 2)]);
    assert!(stock_jobs(&h, Channel::Ebay).await.is_empty(), "nothing changed at eBay's location");
}

#[tokio::test]
async fn bundles_publish_what_their_scarcest_component_allows() {
    let h = Harness::new().await;
    // GIFT-SET = 1 TEE-BLK-M + 2 MUG-WHITE (example configuration).
    h.app.set_on_hand("TEE-BLK-M", &count(10, None, Some("erp-t"), None), "t", Utc::now()).await.unwrap();
    h.app.set_on_hand("MUG-WHITE", &count(7, None, Some("erp-m"), None), "t", Utc::now()).await.unwrap();
    let ebay = stock_jobs(&h, Channel::Ebay).await;
    let latest_gift = ebay.iter().filter(|j| j.0 == "GIFT-SET").max_by_key(|j| j.3).cloned();
    assert_eq!(latest_gift, Some(("GIFT-SET".into(), "default".into(), 2, 2)), "3 sets minus eBay's buffer: {ebay:?}");
    // A component moves: the bundle follows.
    h.app.set_on_hand("MUG-WHITE", &count(2, None, Some("erp-m2"), None), "t", Utc::now()).await.unwrap();
    let ebay = stock_jobs(&h, Channel::Ebay).await;
    let gift: Vec<_> = ebay.iter().filter(|j| j.0 == "GIFT-SET").collect();
    assert_eq!(gift.len(), 1, "{ebay:?}");
    assert_eq!((gift[0].2, gift[0].3), (0, 3), "1 set minus eBay's buffer of 1");
}

/// Kaufland end to end: a signed, thin `order_new` notification, the order fetched from the channel
/// (units grouped into lines), the reservation, the new availability written to the unit in a signed
/// bulk call, then the WMS's shipment marking the shipped unit sent with its tracking number.
#[tokio::test]
async fn a_kaufland_notification_becomes_a_reservation_a_unit_write_and_a_sent_unit() {
    let h = Harness::with_config(|c| {
        let k = c.accounts.iter_mut().find(|a| a.channel == Channel::Kaufland).expect("the example sells on Kaufland");
        k.item_ids.insert("TEE-BLK-M".into(), "7001".into());
    })
    .await;
    h.sim.seed_catalog(
        Channel::Kaufland,
        vec![manifold_simulator::CatalogItem {
            id: "7001".into(),
            sku: "TEE-BLK-M".into(),
            quantity: 0,
            product_id: Some("391823311".into()),
            variant_id: None,
            price_minor: Some(2499),
        }],
    );
    for (sku, n) in [("TEE-BLK-M", 10), ("MUG-WHITE", 5)] {
        h.app.set_on_hand(sku, &count(n, None, Some("erp-k"), None), "t-erp", Utc::now()).await.unwrap();
    }
    let _ = h.stack.events().await;
    for c in Channel::ALL {
        h.stack.drain(&h.stack.env.push_queues[&c]).await;
    }
    let order: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/normalize/fixtures/kaufland/order-two-units-one-offer.json"))
            .unwrap();
    h.sim.seed_order(Channel::Kaufland, order).unwrap();

    let body = br#"{"event_name":"order_new","id_order":"MB7UWLD","ts_created_iso":"2026-11-20T09:15:03Z"}"#;
    let settings = h.app.config().await.account(Channel::Kaufland, "kaufland-de").unwrap().settings.clone();
    let secret = manifold_simulator::KAUFLAND_KEYS.1;
    let headers =
        manifold_connectors::verify::sign(Channel::Kaufland, secret, &settings, "", body, Utc::now()).unwrap();
    let forged =
        manifold_connectors::verify::sign(Channel::Kaufland, "not-the-key", &settings, "", body, Utc::now()).unwrap();
    assert_eq!(h.app.handle_webhook("kaufland", "kaufland-de", &forged, body, Utc::now()).await.status, 401);
    assert_eq!(h.app.handle_webhook("kaufland", "kaufland-de", &headers, body, Utc::now()).await.status, 200);
    assert_eq!(h.run_ingest().await, 1);
    let id = manifold_domain::OrderId::new("kaufland:kaufland-de:MB7UWLD").unwrap();
    let stored = h.app.records.get_order(&id).await.unwrap().expect("fetched from Kaufland and stored");
    assert_eq!(stored.lines.iter().map(|l| l.quantity).collect::<Vec<_>>(), [2, 1], "three units, two lines");

    let applied = run_ledger(&h).await;
    assert!(matches!(applied.as_slice(), [(_, LedgerOutcome::Reserved { .. })]), "{applied:?}");
    assert_eq!(triple(&h, &key("TEE-BLK-M")).await, (10, 2, 8));

    // The fan-out's job for Kaufland: 8 available minus its buffer of 1, written to unit 7001.
    let url = h.stack.env.push_queues[&Channel::Kaufland].clone();
    let polled =
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Kaufland, e)).await.unwrap();
    assert!(polled >= 1, "the fan-out queued Kaufland's new availability");
    assert_eq!(h.sim.snapshot().stock[&Channel::Kaufland]["7001"], 7);

    // The WMS ships one tee: the shipment's tracking goes back to Kaufland as one unit sent.
    let shipment: manifold_domain::Shipment = serde_json::from_value(serde_json::json!({
        "id": "wms-k-1", "order_id": "kaufland:kaufland-de:MB7UWLD", "channel": "kaufland", "account": "kaufland-de",
        "channel_order_id": "MB7UWLD", "carrier": "DHL", "tracking_number": "00340434161094015902",
        "tracking_url": null, "lines": [{"line_id": "TEE-BLK-M", "sku": "TEE-BLK-M", "quantity": 1}],
        "shipped_at": "2026-11-21T12:00:00Z"
    }))
    .unwrap();
    h.app.record_shipment(&shipment, "t-wms", Utc::now()).await.unwrap();
    assert_eq!(triple(&h, &key("TEE-BLK-M")).await, (9, 1, 8), "one unit left the warehouse");
    for _ in 0..3 {
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Kaufland, e)).await.unwrap();
    }
    let snap = h.sim.snapshot();
    let units = snap.orders[&Channel::Kaufland][0].doc["data"]["order_units"].as_array().unwrap().clone();
    let statuses: Vec<&str> = units.iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["sent", "need_to_be_sent", "need_to_be_sent"], "exactly one tee unit marked sent");
    let sends: Vec<&manifold_simulator::Write> =
        snap.writes[&Channel::Kaufland].iter().filter(|w| w.path.ends_with("/send")).collect();
    assert_eq!(sends[0].body["tracking_numbers"], "00340434161094015902");

    // The buyer sends the tee back: Kaufland marks its unit returned and says so. The order is read
    // again, its returned unit becomes a Return, and the tee is back on sale once, however often the
    // notification comes.
    let mut doc = snap.orders[&Channel::Kaufland][0].doc.clone();
    doc["data"]["order_units"][0]["status"] = serde_json::json!("returned");
    doc["data"]["order_units"][0]["ts_updated_iso"] = serde_json::json!("2026-11-25T10:00:00Z");
    let unit = doc["data"]["order_units"][0]["id_order_unit"].clone();
    h.sim.seed_order(Channel::Kaufland, doc).unwrap();
    for (n, expected) in [(1, (10, 1, 9)), (2, (10, 1, 9))] {
        let body = serde_json::json!({ "event_name": "return_unit_status_changed", "id_order_unit": unit,
                                       "ts_created_iso": format!("2026-11-25T10:00:0{n}Z") })
        .to_string();
        let headers =
            manifold_connectors::verify::sign(Channel::Kaufland, secret, &settings, "", body.as_bytes(), Utc::now())
                .unwrap();
        let response = h.app.handle_webhook("kaufland", "kaufland-de", &headers, body.as_bytes(), Utc::now()).await;
        assert_eq!(response.status, 200);
        h.run_ingest().await;
        let applied = run_ledger(&h).await;
        let restocked = applied.iter().filter(|(_, o)| matches!(o, LedgerOutcome::Restocked { .. })).count();
        assert_eq!(restocked, usize::from(n == 1), "delivery {n}: {applied:?}");
        assert_eq!(triple(&h, &key("TEE-BLK-M")).await, expected, "delivery {n}");
    }
}

/// Amazon cancels asynchronously: the ledger submits the order-acknowledgement feed, the feed check
/// it queues runs through the push consumer (in progress, checked again after its delay, done), and
/// the simulator's order ends `Canceled`.
#[tokio::test]
async fn an_oversold_amazon_order_is_cancelled_through_a_feed_checked_by_the_push_consumer() {
    let h = Harness::with_settings(
        |c| {
            for a in c.accounts.iter_mut().filter(|a| a.channel == Channel::Amazon) {
                a.stock.oversell = OversellAction::Cancel;
            }
        },
        // The simulator finishes a feed on the second look; the checks need not wait a minute.
        |s| s.push.feed_check_delay = std::time::Duration::from_secs(1),
    )
    .await;
    let order_id = crate::inbound::amazon_order_notified(&h, "amazon", 1).await;

    let applied = run_ledger(&h).await;
    assert!(
        applied.iter().any(|(_, o)| matches!(o, LedgerOutcome::Oversold { action: OversellAction::Cancel, .. })),
        "{applied:?}"
    );
    let snap = h.sim.snapshot();
    let feeds: Vec<_> =
        snap.writes[&Channel::Amazon].iter().filter(|w| w.path.ends_with("/feeds/2021-06-30/feeds")).collect();
    assert_eq!(feeds.len(), 1, "the ledger submitted one feed");
    assert_eq!(feeds[0].body["feedType"], "POST_ORDER_ACKNOWLEDGEMENT_DATA");

    let (status, _) = amazon_order(&h, &order_id);
    assert_ne!(status, "Canceled", "Amazon applies a feed while processing it, not when it is submitted");

    // The feed check waits on the Amazon push queue (delayed); the consumer asks until the feed is
    // done, which is when the simulator applies it.
    let url = h.stack.env.push_queues[&Channel::Amazon].clone();
    // The order's acknowledgement (queued when it was stored) goes through the same queue.
    // Both feeds are applied as Amazon processes them, in whichever order the checks find them done.
    crate::support::eventually(
        "the order cancelled and acknowledged on Amazon",
        std::time::Duration::from_secs(90),
        || async {
            manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Amazon, e)).await.unwrap();
            let settled = crate::support::queue_depth(&h.stack.sqs, &url).await == 0;
            let (status, notes) = amazon_order(&h, &order_id);
            (settled && status == "Canceled" && notes["acknowledged"] == true).then_some(())
        },
    )
    .await;
    let (_, notes) = amazon_order(&h, &order_id);
    assert_eq!(notes["cancel_reason"], "NoInventory", "the account's default reason");
    assert_eq!(notes["acknowledged"], true, "the order was acknowledged when it was taken in");
    // The polls that saw the feeds done read their reports and settled the checks (the queue is
    // empty), and nothing was quarantined (the cancel went through).
    let quarantined = h.app.quarantine.list(false).await.unwrap();
    assert!(quarantined.iter().all(|q| q.channel != "amazon"), "{quarantined:?}");
}

/// The seeded Amazon order's `OrderStatus` and what the simulator noted of it.
fn amazon_order(h: &Harness, id: &str) -> (String, serde_json::Value) {
    let snap = h.sim.snapshot();
    let o = snap.orders[&Channel::Amazon].iter().find(|o| o.id == id).expect("seeded");
    (o.doc["order"]["OrderStatus"].as_str().unwrap_or_default().to_owned(), o.doc["_sim"].clone())
}

/// A cancel Amazon refuses (the order already shipped) comes back in the feed's report: the push
/// consumer quarantines that order with the report's reason, and the order stays shipped.
#[tokio::test]
async fn a_cancel_amazon_refuses_in_its_report_is_quarantined_by_the_feed_check() {
    let h = Harness::with_settings(|_| {}, |s| s.push.feed_check_delay = std::time::Duration::from_secs(1)).await;
    let order: serde_json::Value = serde_json::from_str(crate::fixtures::AMAZON_ORDER).unwrap();
    let items: serde_json::Value = serde_json::from_str(crate::fixtures::AMAZON_ITEMS).unwrap();
    let order_id = order["payload"]["AmazonOrderId"].as_str().unwrap().to_owned();
    let mut shipped = order["payload"].clone();
    shipped["OrderStatus"] = serde_json::json!("Shipped");
    h.sim
        .seed_order(
            Channel::Amazon,
            serde_json::json!({"order": shipped, "order_items": items["payload"]["OrderItems"]}),
        )
        .unwrap();
    let account = h.app.config().await.account(Channel::Amazon, "A2EUQ1WTGCTBG2").unwrap().clone();
    let connector = h.app.connector(&account).await.unwrap();
    let ctx = manifold_connectors::CallContext::new("t-refused");
    let manifold_connectors::Accepted::Submitted(submission) =
        connector.cancel_order(&order_id, "out of stock", &ctx).await.unwrap()
    else {
        panic!("Amazon cancels through a feed");
    };
    h.app.enqueue_feed_check(Channel::Amazon, &account.account, &submission, 1, "t-refused").await.unwrap();

    let url = h.stack.env.push_queues[&Channel::Amazon].clone();
    let quarantined =
        crate::support::eventually("the refused cancel quarantined", std::time::Duration::from_secs(90), || async {
            manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Amazon, e)).await.unwrap();
            let all = h.app.quarantine.list(false).await.unwrap();
            all.into_iter().find(|q| q.channel == "amazon" && q.payload.contains(&order_id))
        })
        .await;
    assert_eq!(quarantined.stage, "push");
    assert!(quarantined.reason.contains("already shipped"), "{}", quarantined.reason);
    assert!(quarantined.reason.starts_with("permanent"), "{}", quarantined.reason);
    let payload: serde_json::Value = serde_json::from_str(&quarantined.payload).unwrap();
    assert_eq!(payload, serde_json::json!({ "submission": submission.id, "operation": "cancel", "item": order_id }));
    assert_eq!(amazon_order(&h, &order_id).0, "Shipped");
    assert_eq!(crate::support::queue_depth(&h.stack.sqs, &url).await, 0, "the check is settled");
}

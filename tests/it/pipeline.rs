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
    let update = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-1".into()) };
    let position = h.app.set_on_hand("IPOD2009BLACK", &update, "trace-erp", Utc::now()).await.unwrap();
    assert_eq!((position.on_hand, position.reserved, position.available), (10, 0, 10));
    let _ = h.stack.events().await; // InventoryChanged from the ERP update
    for c in Channel::ALL {
        let jobs = h.stack.drain(&h.stack.env.push_queues[&c]).await;
        assert_eq!(jobs.len(), 1, "{c} got the ERP count");
    }

    let applied = shopify_order_through_ledger(&h, "evt-p1").await;
    assert!(
        matches!(applied.as_slice(), [(k, LedgerOutcome::Reserved { jobs: 8 })] if k == "OrderAccepted"),
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
            &OnHandUpdate { on_hand: 4, location: None, source_ref: Some("erp-2".into()) },
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
            &OnHandUpdate { on_hand: 5, location: None, source_ref: None },
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
            &OnHandUpdate { on_hand: 5, location: None, source_ref: None },
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

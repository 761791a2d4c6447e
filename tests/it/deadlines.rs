//! Shipping deadlines against the emulator and the Shopify simulator: an order past its ship-by time
//! raises `OrderLate` exactly once (metric, event, `manifold orders late`), an order shipped in time
//! raises nothing, and a tracking push the channel does not show is pushed once more, then reported.

use chrono::{Duration, Utc};
use manifold_app::ledger::OnHandUpdate;
use manifold_aws::watch::WatchKind;
use manifold_domain::{AccountId, Channel, Shipment, ShipmentLine};
use manifold_telemetry::Recorder;

use crate::inbound::{Harness, shopify_body, shopify_headers, shopify_order_id};
use crate::support::{lambda_event, unique};

/// The paid Shopify order (one IPOD2009BLACK) through webhook, ingest and ledger, with stock for it.
async fn order_taken(h: &Harness) -> manifold_domain::Order {
    let stock = OnHandUpdate { on_hand: 5, location: None, source_ref: Some(unique("erp")), as_of: None };
    h.app.set_on_hand("IPOD2009BLACK", &stock, "trace-deadline", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    let body = shopify_body();
    let headers = shopify_headers(&body, &unique("evt"), "orders/create");
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    h.run_ingest().await;
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        h.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("the ledger takes the order");
    }
    h.app.records.get_order(&shopify_order_id()).await.unwrap().expect("stored")
}

fn is_order(order: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |d| d["order_id"] == order
}

#[tokio::test]
async fn an_order_past_its_ship_by_time_raises_order_late_exactly_once() {
    let h = Harness::new().await;
    let order = order_taken(&h).await;
    assert_eq!(order.ship_by, None, "Shopify gives no ship-by time: the account's 48 hours apply");
    let deadline = order.created_at + Duration::hours(48);
    let recorder = Recorder::start();

    let early = h.app.check_deadlines(deadline - Duration::minutes(1)).await.unwrap();
    assert_eq!((early.due, early.late), (0, 0), "not due before its deadline");

    let late = h.app.check_deadlines(deadline + Duration::minutes(1)).await.unwrap();
    assert_eq!((late.due, late.late, late.shipped, late.errors), (1, 1, 0, 0), "{late:?}");
    let again = h.app.check_deadlines(deadline + Duration::hours(5)).await.unwrap();
    assert_eq!((again.due, again.late), (0, 0), "reported once, then no longer watched");

    let reported = h.app.watch.reported(WatchKind::ShipBy).await.unwrap();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].order_id, order.id);
    assert_eq!(reported[0].deadline, deadline);
    assert!(reported[0].reason.contains("paid"), "{}", reported[0].reason);
    let events: Vec<_> = h.stack.events().await.into_iter().filter(|e| e["detail-type"] == "OrderLate").collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["data"]["order_id"], order.id.as_str());
    assert!(events[0]["detail"]["data"].get("email").is_none());
    let metric = recorder.sum("OrderLate", is_order(order.id.as_str()));
    assert!((metric - 1.0).abs() < 1e-9, "OrderLate counted once, counted {metric}");

    let cli = manifold_cli::commands::orders::late(h.app.watch.as_ref()).await.unwrap();
    assert_eq!(cli.late.len(), 1);
    assert!(cli.unconfirmed_tracking.is_empty());
}

#[tokio::test]
async fn an_order_shipped_before_its_deadline_is_not_late() {
    let h = Harness::new().await;
    let order = order_taken(&h).await;
    let shipment = Shipment {
        id: unique("wms-ship"),
        order_id: order.id.clone(),
        channel: Channel::Shopify,
        account: AccountId::new("shop-eu").unwrap(),
        channel_order_id: order.channel_order_id.clone(),
        carrier: Some("UPS".into()),
        tracking_number: Some("1Z999AA10123456784".into()),
        tracking_url: None,
        lines: vec![],
        shipped_at: Utc::now(),
    };
    h.app.record_shipment(&shipment, "trace-wms", Utc::now()).await.expect("the WMS shipment is recorded");
    for e in h.stack.events().await {
        let kind = e["detail-type"].as_str().unwrap_or_default().to_owned();
        h.app.apply_event(&kind, &e["detail"], Utc::now()).await.expect("the ledger ships it");
    }
    let report = h.app.check_deadlines(order.created_at + Duration::hours(49)).await.unwrap();
    assert_eq!((report.due, report.shipped, report.late), (1, 1, 0), "{report:?}");
    assert!(h.app.watch.reported(WatchKind::ShipBy).await.unwrap().is_empty());
}

/// Pushes what is on the Shopify push queue through the push consumer.
async fn push_shopify(h: &Harness) -> usize {
    let jobs = h.stack.drain(&h.stack.env.push_queues[&Channel::Shopify]).await;
    let response = h.app.push_batch(Channel::Shopify, lambda_event(&jobs)).await;
    assert!(response.batch_item_failures.is_empty());
    jobs.len()
}

fn tracked(order: &manifold_domain::Order) -> Shipment {
    Shipment {
        id: unique("ship"),
        order_id: order.id.clone(),
        channel: Channel::Shopify,
        account: order.account.clone(),
        channel_order_id: order.channel_order_id.clone(),
        carrier: Some("DHL".into()),
        tracking_number: Some("00340434161094042557".into()),
        tracking_url: None,
        lines: order
            .lines
            .iter()
            .map(|l| ShipmentLine { line_id: Some(l.line_id.clone()), sku: l.sku.clone(), quantity: l.quantity })
            .collect(),
        shipped_at: Utc::now(),
    }
}

#[tokio::test]
async fn tracking_the_channel_shows_is_confirmed_and_tracking_it_never_shows_is_pushed_again_then_reported() {
    let h = Harness::new().await;
    let order = order_taken(&h).await;
    let unfulfilled = shopify_body();
    let doc: serde_json::Value = serde_json::from_slice(&unfulfilled).unwrap();
    let _ = h.stack.drain(&h.stack.env.push_queues[&Channel::Shopify]).await;

    // Shown: Shopify applies the fulfillment to the order; the check confirms it.
    h.sim.seed_order(Channel::Shopify, doc.clone()).unwrap();
    h.app.enqueue_tracking(&tracked(&order), "trace-track-1").await.unwrap();
    assert_eq!(push_shopify(&h).await, 1);
    // (The fixture order is years old, so its ship-by deadline is also due in this check.)
    let shown = h.app.check_deadlines(Utc::now() + Duration::hours(7)).await.unwrap();
    assert_eq!((shown.confirmed, shown.pushed_again, shown.unconfirmed), (1, 0, 0), "{shown:?}");

    // Never shown: the channel accepts each push and the order still reads unfulfilled.
    let recorder = Recorder::start();
    h.sim.seed_order(Channel::Shopify, doc.clone()).unwrap();
    h.app.enqueue_tracking(&tracked(&order), "trace-track-2").await.unwrap();
    assert_eq!(push_shopify(&h).await, 1);
    h.sim.seed_order(Channel::Shopify, doc.clone()).unwrap();
    let first = h.app.check_deadlines(Utc::now() + Duration::hours(7)).await.unwrap();
    assert_eq!((first.due, first.pushed_again, first.unconfirmed), (1, 1, 0), "{first:?}");
    assert_eq!(push_shopify(&h).await, 1, "the tracking is pushed once more");
    h.sim.seed_order(Channel::Shopify, doc).unwrap();
    let second = h.app.check_deadlines(Utc::now() + Duration::hours(7)).await.unwrap();
    assert_eq!((second.due, second.pushed_again, second.unconfirmed), (1, 0, 1), "{second:?}");
    let third = h.app.check_deadlines(Utc::now() + Duration::hours(30)).await.unwrap();
    assert_eq!(third.due, 0, "reported once, then no longer watched");

    let reported = h.app.watch.reported(WatchKind::Tracking).await.unwrap();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].order_id, order.id);
    let metric = recorder.sum("TrackingUnconfirmed", is_order(order.id.as_str()));
    assert!((metric - 1.0).abs() < 1e-9, "TrackingUnconfirmed counted once, counted {metric}");
    let events = h.stack.events().await;
    assert_eq!(events.iter().filter(|e| e["detail-type"] == "TrackingUnconfirmed").count(), 1);
}

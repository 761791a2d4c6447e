//! Signed outbound webhooks to a WMS, against moto and a WMS simulator on loopback: orders stored and
//! their events published on the stack's bus; the changes queue (as in `changes.rs`) carries them to
//! `App::changes_batch`, which fans them out to a FIFO deliveries queue created here as the template
//! declares it (with its DLQ); `App::deliveries_batch` sends them. The WMS verifies every request with
//! the `standardwebhooks` reference implementation, keeps what it accepted by `webhook-id`, and fails
//! when told to.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_sqs::types::QueueAttributeName;
use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use chrono::Utc;
use manifold_aws::events::publish;
use manifold_domain::{
    Shipment,
    events::{EventDetail, EventKind, event_id},
    webhooks::Subscription,
};
use serde_json::{Value, json};

use crate::{
    changes::{changes_queue, order},
    fixtures::WEBHOOK_SIGNING_SECRET,
    inbound::Harness,
    support::{self, unique},
};

/// How the WMS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Three calls in ten fail with 500, in a fixed pattern.
    Flaky,
    /// Every call fails with 503.
    Down,
}

#[derive(Debug, Clone)]
struct Wms {
    mode: Mode,
    calls: u64,
    bad_signatures: u64,
    /// Accepted deliveries, in the order they arrived: (webhook-id, event type, order id).
    accepted: Vec<(String, String, String)>,
}

type Shared = Arc<Mutex<Wms>>;

async fn receive(State(wms): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = standardwebhooks::Webhook::new(WEBHOOK_SIGNING_SECRET).unwrap().verify(&body, &headers);
    let mut w = wms.lock().unwrap();
    w.calls += 1;
    if verified.is_err() {
        w.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let failing = match w.mode {
        Mode::Up => false,
        Mode::Flaky => [1, 4, 7].contains(&(w.calls % 10)),
        Mode::Down => true,
    };
    if failing {
        return if w.mode == Mode::Down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    let data = &payload["data"]["data"];
    let order = data["order_id"].as_str().or_else(|| data["id"].as_str()).unwrap_or_default().to_owned();
    w.accepted.push((id, payload["type"].as_str().unwrap_or_default().to_owned(), order));
    StatusCode::NO_CONTENT
}

/// The WMS on loopback; its URL.
async fn wms(mode: Mode) -> (Shared, String) {
    let state = Arc::new(Mutex::new(Wms { mode, calls: 0, bad_signatures: 0, accepted: Vec::new() }));
    let app = axum::Router::new().route("/hooks/manifold", post(receive)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/manifold", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

/// A FIFO deliveries queue and its FIFO DLQ (after `receives` receives), as the template declares them.
async fn deliveries_queue(sqs: &aws_sdk_sqs::Client, receives: u32) -> (String, String) {
    let fifo = |name: String| {
        sqs.create_queue().queue_name(format!("{name}.fifo")).attributes(QueueAttributeName::FifoQueue, "true")
    };
    let dlq = fifo(unique("deliveries-dlq")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = support::queue_arn(sqs, &dlq).await;
    let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": receives }).to_string();
    let queue = fifo(unique("deliveries"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
}

struct Setup {
    h: Harness,
    wms: Shared,
    changes: String,
    deliveries: String,
    dlq: String,
}

async fn setup(mode: Mode, receives: u32) -> Setup {
    let (wms, url) = wms(mode).await;
    let sdk = support::aws().await;
    let (deliveries, dlq) = deliveries_queue(&aws_sdk_sqs::Client::new(&sdk), receives).await;
    let subscription = Subscription {
        id: "wms".into(),
        url,
        events: vec![EventKind::OrderAccepted, EventKind::ShipmentCreated],
        secret: "manifold/webhooks/wms".into(),
        enabled: true,
    };
    let queue = deliveries.clone();
    let h = Harness::with_settings(
        move |c| c.webhooks = vec![subscription],
        move |s| {
            s.deliveries_queue_url = Some(queue);
            // Retries at once, and a breaker that opens only on a long outage and probes again soon:
            // the test waits for no clock.
            s.push.backoff_base = Duration::ZERO;
            s.push.breaker.failure_threshold = 50;
            s.push.breaker.cool_down = Duration::from_millis(20);
        },
    )
    .await;
    let changes = changes_queue(&h).await;
    Setup { h, wms, changes, deliveries, dlq }
}

/// Publishes OrderAccepted for each order, then ShipmentCreated for each.
async fn publish_orders_and_shipments(h: &Harness, orders: std::ops::RangeInclusive<u64>) {
    for n in orders.clone() {
        let o = order(n, 1);
        let key = format!("wh-{n}");
        let detail = EventDetail::new(
            EventKind::OrderAccepted,
            "t-wh",
            Utc::now(),
            manifold_domain::events::OrderEventV1::from(&o),
        )
        .with_id(event_id(EventKind::OrderAccepted, &[&key]));
        publish(&**h.app.bus.get(), &detail).await.unwrap();
    }
    for n in orders {
        let shipment: Shipment = serde_json::from_value(json!({
            "id": format!("wms-{n}"), "order_id": format!("shopify:shop-eu:{n}"), "channel": "shopify", "account": "shop-eu",
            "channel_order_id": n.to_string(), "carrier": "DHL", "tracking_number": format!("0034043416109{n:07}"),
            "tracking_url": null, "lines": [], "shipped_at": "2026-11-30T12:00:00Z"
        }))
        .unwrap();
        let detail = EventDetail::new(EventKind::ShipmentCreated, "t-wh", Utc::now(), &shipment)
            .with_id(event_id(EventKind::ShipmentCreated, &[&format!("wh-ship-{n}")]));
        publish(&**h.app.bus.get(), &detail).await.unwrap();
    }
}

/// Runs the changes and deliveries consumers until both queues stay empty.
async fn run_consumers(s: &Setup) {
    let mut quiet = 0;
    for _ in 0..500 {
        let indexed =
            manifold_app::local::poll_once(&s.h.stack.sqs, &s.changes, |e| s.h.app.changes_batch(e)).await.unwrap();
        let delivered = manifold_app::local::poll_once(&s.h.stack.sqs, &s.deliveries, |e| s.h.app.deliveries_batch(e))
            .await
            .unwrap();
        quiet = if indexed + delivered == 0 { quiet + 1 } else { 0 };
        if quiet == 3 {
            return;
        }
    }
    panic!("the consumers did not drain their queues");
}

/// What the WMS holds now.
fn seen(wms: &Shared) -> Wms {
    wms.lock().unwrap().clone()
}

fn unique_ids(wms: &Shared) -> BTreeSet<String> {
    wms.lock().unwrap().accepted.iter().map(|(id, _, _)| id.clone()).collect()
}

#[tokio::test]
async fn every_order_reaches_the_wms_signed_once_per_event_in_order_though_it_fails_three_calls_in_ten() {
    let s = Box::pin(setup(Mode::Flaky, 10)).await;
    publish_orders_and_shipments(&s.h, 1..=20).await;
    run_consumers(&s).await;

    let w = seen(&s.wms);
    assert_eq!(w.bad_signatures, 0, "every request verified");
    assert!(w.calls > 40, "some calls failed and were retried: {} calls", w.calls);
    let ids: BTreeSet<&String> = w.accepted.iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 40, "two events for each of 20 orders, each arrived");
    assert_eq!(w.accepted.len(), 40, "and none twice");
    // Per order, the order came before its shipment.
    let mut first: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, kind, order) in &w.accepted {
        first.entry(order.as_str()).or_default().push(kind.as_str());
    }
    assert_eq!(first.len(), 20);
    for (order, kinds) in first {
        assert_eq!(kinds, ["OrderAccepted", "ShipmentCreated"], "{order}");
    }

    // A re-published event (an outbox replay) is no second delivery: the webhook id is the same.
    publish_orders_and_shipments(&s.h, 1..=1).await;
    run_consumers(&s).await;
    assert_eq!(unique_ids(&s.wms).len(), 40);

    let attempts = manifold_cli::commands::webhooks::attempts(&s.h.app, "wms", 200).await.unwrap();
    assert!(attempts.attempts.iter().any(|a| a.status == Some(500)), "failures are listed");
    assert!(attempts.attempts.iter().any(|a| a.status == Some(204)), "and deliveries");
}

#[tokio::test]
async fn after_an_outage_replay_delivers_the_window_under_the_same_webhook_ids() {
    let s = Box::pin(setup(Mode::Down, 3)).await;
    let start = Utc::now() - chrono::Duration::seconds(5);
    publish_orders_and_shipments(&s.h, 1..=3).await;
    run_consumers(&s).await;
    assert!(s.wms.lock().unwrap().accepted.is_empty());
    let dead = s.h.stack.drain(&s.dlq).await;
    assert!(!dead.is_empty(), "refused every retry: dead-lettered");

    // The WMS is back; the operator replays the day.
    s.wms.lock().unwrap().mode = Mode::Up;
    let report = manifold_cli::commands::webhooks::replay(&s.h.app, "wms", start, None).await.unwrap();
    assert_eq!(report.queued, 6);
    run_consumers(&s).await;
    let w = seen(&s.wms);
    assert_eq!(w.bad_signatures, 0);
    let ids: BTreeSet<&String> = w.accepted.iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 6, "{:?}", w.accepted);
    let expected: BTreeSet<String> = (1..=3)
        .flat_map(|n| {
            [
                manifold_app::webhooks_out::webhook_id(
                    "wms",
                    &event_id(EventKind::OrderAccepted, &[&format!("wh-{n}")]),
                ),
                manifold_app::webhooks_out::webhook_id(
                    "wms",
                    &event_id(EventKind::ShipmentCreated, &[&format!("wh-ship-{n}")]),
                ),
            ]
        })
        .collect();
    assert_eq!(ids.into_iter().cloned().collect::<BTreeSet<_>>(), expected, "the ids the outage attempts carried");
    let unknown = manifold_cli::commands::webhooks::replay(&s.h.app, "nope", start, None).await;
    assert!(unknown.is_err());
}

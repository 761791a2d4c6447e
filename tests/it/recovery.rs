//! Nothing lost after a commit: AWS faults injected between a commit and what must follow it (a
//! failing port wrapper fails the Nth call), then the SQS redelivery finishes the job.

use std::sync::Arc;

use chrono::Utc;
use manifold_app::{
    App,
    ledger::{LedgerOutcome, OnHandUpdate},
};
use manifold_aws::events::FailingCalls;
use manifold_ledger::{Ledger, PositionKey};

use crate::{
    inbound::{Harness, shopify_body, shopify_headers},
    support::lambda_event,
};

fn key(sku: &str) -> PositionKey {
    PositionKey::new(manifold_domain::Sku::new(sku).unwrap(), "default")
}

/// The harness's app with its event bus failing the calls numbered in `fail` (1-based).
fn with_failing_bus(h: &Harness, fail: impl IntoIterator<Item = usize>) -> App {
    let mut app = h.app.clone();
    app.bus = Arc::new(FailingCalls::new(h.app.bus.clone(), fail));
    app
}

#[tokio::test]
async fn a_publish_failing_after_the_order_commit_is_finished_by_the_sqs_retry() {
    let h = Harness::new().await;
    let update = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-outbox".into()) };
    h.app.set_on_hand("IPOD2009BLACK", &update, "t-erp", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;

    let body = shopify_body();
    let headers = shopify_headers(&body, "evt-outbox", "orders/create");
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    let messages = h.stack.drain(&h.stack.env.ingest_queue_url.clone()).await;
    assert_eq!(messages.len(), 1);

    // The order commits, then PutEvents fails: the message is reported for retry.
    let app = with_failing_bus(&h, [1]);
    let first = app.ingest_batch(lambda_event(&messages)).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the failed publish must be retried");
    assert!(h.stack.events().await.is_empty(), "nothing was published");

    // SQS delivers the same message again: the ingest key is found, the pending event goes out.
    let second = app.ingest_batch(lambda_event(&messages)).await;
    assert!(second.batch_item_failures.is_empty());
    // A third delivery (at-least-once) publishes nothing more.
    assert!(app.ingest_batch(lambda_event(&messages)).await.batch_item_failures.is_empty());

    let events = h.stack.events().await;
    let accepted: Vec<_> = events.iter().filter(|e| e["detail-type"] == "OrderAccepted").collect();
    assert_eq!(accepted.len(), 1, "exactly one OrderAccepted: {events:?}");
    assert!(accepted[0]["detail"]["event_id"].as_str().is_some_and(|id| id.starts_with("OrderAccepted:")));

    // The ledger reserves once, also when the consumer sees the event twice.
    for _ in 0..2 {
        h.app.apply_event("OrderAccepted", &accepted[0]["detail"], Utc::now()).await.unwrap();
    }
    let p = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap();
    assert_eq!((p.on_hand, p.reserved), (10, 1), "one reservation");
    let replay = h.app.apply_event("OrderAccepted", &accepted[0]["detail"], Utc::now()).await.unwrap();
    assert!(!matches!(replay, LedgerOutcome::Reserved { .. }), "{replay:?}");
}

//! Nothing lost after a commit: AWS faults injected between a commit and what must follow it (a
//! failing port wrapper fails the Nth call), then the SQS redelivery finishes the job.

use std::sync::Arc;

use chrono::Utc;
use manifold_app::{
    App,
    ledger::{LedgerOutcome, OnHandUpdate},
};
use manifold_aws::events::FailingCalls;
use manifold_domain::{Channel, OversellAction};
use manifold_ledger::{Ledger, PositionKey, fanout::SqsPushQueue};
use manifold_simulator::{FaultKind, FaultSpec};

use crate::{
    awsproxy::{AwsProxy, FaultKind as AwsFault, Trigger},
    inbound::{Harness, shopify_body, shopify_headers},
    support::{self, lambda_event},
};

fn key(sku: &str) -> PositionKey {
    PositionKey::new(manifold_domain::Sku::new(sku).unwrap(), "default")
}

/// The harness's app with its event bus failing the calls numbered in `fail` (1-based).
fn with_failing_bus(h: &Harness, fail: impl IntoIterator<Item = usize>) -> App {
    let mut app = h.app.clone();
    app.bus = app.ports.ready("bus", Arc::new(FailingCalls::new(h.app.bus.get().clone(), fail)));
    app
}

#[tokio::test]
async fn a_publish_failing_after_the_order_commit_is_finished_by_the_sqs_retry() {
    let h = Harness::new().await;
    let update = OnHandUpdate { on_hand: 10, location: None, source_ref: Some("erp-outbox".into()), as_of: None };
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

#[tokio::test]
async fn an_oversold_orders_follow_ups_failing_once_are_all_done_by_the_replays() {
    let h = Harness::with_config(|c| {
        for a in c.accounts.iter_mut().filter(|a| a.channel == Channel::Shopify) {
            a.stock.oversell = OversellAction::Cancel;
        }
    })
    .await;
    // Nothing on hand: the order cannot be reserved and the Shopify account cancels it.
    let update = OnHandUpdate { on_hand: 0, location: None, source_ref: Some("erp-oversold".into()), as_of: None };
    h.app.set_on_hand("IPOD2009BLACK", &update, "t-erp", Utc::now()).await.unwrap();
    for c in Channel::ALL {
        let _ = h.stack.drain(&h.stack.env.push_queues[&c]).await;
    }
    let _ = h.stack.events().await;
    let body = shopify_body();
    let headers = shopify_headers(&body, "evt-oversold-replay", "orders/create");
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    h.run_ingest().await;
    let events = h.stack.events().await;
    let accepted = events.iter().find(|e| e["detail-type"] == "OrderAccepted").expect("OrderAccepted").clone();
    let detail = &accepted["detail"];

    // First delivery: the ledger commits the rejection, the order is marked, then the OrderOversold
    // publish fails. Nothing after it happened.
    let failing_bus = with_failing_bus(&h, [1]);
    assert!(failing_bus.apply_event("OrderAccepted", detail, Utc::now()).await.is_err());
    let order_id = crate::inbound::shopify_order_id();
    assert!(h.app.records.get_order(&order_id).await.unwrap().unwrap().oversold.is_some(), "marked");
    let cancels = |h: &Harness| {
        let writes = h.sim.snapshot().writes.get(&Channel::Shopify).cloned().unwrap_or_default();
        writes.iter().filter(|w| w.body.to_string().contains("orderCancel")).count()
    };
    assert_eq!(cancels(&h), 0);

    // Second delivery: the event goes out, then the channel cancel fails once.
    h.sim.inject(FaultSpec {
        channel: Channel::Shopify,
        kind: FaultKind::ServerError,
        probability: None,
        next_n: Some(1),
    });
    assert!(h.app.apply_event("OrderAccepted", detail, Utc::now()).await.is_err());
    assert_eq!(cancels(&h), 0);

    // Third delivery finishes the job; a fourth changes nothing.
    for _ in 0..2 {
        let outcome = h.app.apply_event("OrderAccepted", detail, Utc::now()).await.unwrap();
        assert_eq!(outcome, LedgerOutcome::AlreadyApplied);
    }
    assert_eq!(cancels(&h), 1, "cancelled on the channel exactly once");
    let events = h.stack.events().await;
    let oversold: Vec<_> = events.iter().filter(|e| e["detail-type"] == "OrderOversold").collect();
    assert_eq!(oversold.len(), 1, "announced once: {oversold:?}");
    assert_eq!(oversold[0]["detail"]["event_id"], format!("OrderOversold:{order_id}"));
    let p = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap();
    assert_eq!((p.on_hand, p.reserved), (0, 0), "a rejected order holds nothing");
}

#[tokio::test]
async fn an_enqueue_failing_after_the_gate_write_is_pushed_by_the_next_stock_tier_run() {
    let h = Harness::new().await;
    let ebay = h.stack.env.push_queues[&Channel::Ebay].clone();
    // For this app eBay's queue does not exist: the gate takes the version, then SendMessage fails.
    let mut broken = h.app.clone();
    let mut urls = h.stack.env.push_queues.clone();
    urls.insert(Channel::Ebay, format!("{ebay}-missing"));
    broken.push_queue = broken.ports.ready("push_queue", SqsPushQueue::new(h.app.sqs.get().clone(), urls));
    let update = OnHandUpdate { on_hand: 6, location: None, source_ref: Some("erp-gate".into()), as_of: None };
    assert!(broken.set_on_hand("IPOD2009BLACK", &update, "t-gate", Utc::now()).await.is_err());
    let version = h.app.ledger.position(&key("IPOD2009BLACK")).await.unwrap().version;

    // The scheduled stock tier re-offers the same version: the gate knows it never reached eBay.
    h.app.run_tier("stock", Utc::now()).await.unwrap();
    // Enqueued without a delay, so one poll finds it.
    let pushed =
        manifold_app::local::poll_once(&h.app.sqs, &ebay, |e| h.app.push_batch(Channel::Ebay, e)).await.unwrap();
    assert_eq!(pushed, 1, "the lost version was enqueued again and pushed");
    let stock = h.sim.snapshot().stock.get(&Channel::Ebay).cloned().unwrap_or_default();
    assert!(stock.values().any(|q| *q == 5), "eBay shows 6 minus its buffer of 1: {stock:?} (version {version})");

    // Delivered now: the next run coalesces it.
    h.app.run_tier("stock", Utc::now()).await.unwrap();
    assert!(h.stack.drain(&ebay).await.is_empty(), "a delivered version is not re-sent");
}

#[tokio::test]
async fn an_erp_count_retried_after_a_failed_fan_out_finishes_the_fan_out() {
    let h = Harness::new().await;
    let ebay = h.stack.env.push_queues[&Channel::Ebay].clone();
    let mut broken = h.app.clone();
    let mut urls = h.stack.env.push_queues.clone();
    urls.insert(Channel::Ebay, format!("{ebay}-missing"));
    broken.push_queue = broken.ports.ready("push_queue", SqsPushQueue::new(h.app.sqs.get().clone(), urls));
    let update = OnHandUpdate { on_hand: 4, location: None, source_ref: Some("erp-retry".into()), as_of: None };
    assert!(broken.set_on_hand("IPOD2009BLACK", &update, "t-erp", Utc::now()).await.is_err());

    // The ERP retries the same count: applied once, and the fan-out is finished.
    let p = h.app.set_on_hand("IPOD2009BLACK", &update, "t-erp", Utc::now()).await.unwrap();
    assert_eq!((p.on_hand, p.version), (4, 1), "the count applied once");
    let jobs = h.stack.drain(&ebay).await;
    assert_eq!(jobs.len(), 1, "eBay gets the count it missed");
    let job: serde_json::Value = serde_json::from_str(jobs[0].body().unwrap()).unwrap();
    assert_eq!((job["quantity"].as_u64(), job["version"].as_u64()), (Some(3), Some(1)), "4 minus eBay's buffer of 1");
}

#[tokio::test]
async fn a_ledger_transaction_cancelled_by_throttling_is_retryable_and_a_malformed_one_is_not() {
    let h = Harness::new().await;
    let proxy = AwsProxy::new(&support::endpoint(), "123456789012");
    let sdk = support::sdk_via(proxy.listen("InventoryApiFunction").await).await;
    let mut app = h.app.clone();
    app.ledger = app.ports.ready(
        "ledger",
        Arc::new(manifold_ledger::StockLedger::new(
            manifold_ledger::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &h.stack.env.ledger_table)
                .emulator_safe(),
        )),
    );
    // The count's commit (position, entry and source marker: one TransactWriteItems, authorized as
    // PutItem per item) is cancelled once, as DynamoDB does under throttling.
    let cancelled = AwsFault::Fail { status: 400, code: "TransactionCanceledException".into() };
    proxy.faults.add("dynamodb:PutItem", None, Trigger::Nth(1), cancelled);
    let update = OnHandUpdate { on_hand: 9, location: None, source_ref: Some("erp-throttled".into()), as_of: None };
    let err = app.set_on_hand("IPOD2009BLACK", &update, "t", Utc::now()).await.unwrap_err();
    assert!(err.is_retryable(), "the ERP gets a 503 and retries, not a 400: {err}");
    let p = app.set_on_hand("IPOD2009BLACK", &update, "t", Utc::now()).await.unwrap();
    assert_eq!((p.on_hand, p.version), (9, 1), "the retry applies the count once");

    // A request DynamoDB refuses as malformed is permanent: retrying it cannot help.
    proxy.faults.clear();
    let invalid = AwsFault::Fail { status: 400, code: "ValidationException".into() };
    proxy.faults.add("dynamodb:PutItem", None, Trigger::Always, invalid);
    let update = OnHandUpdate { on_hand: 8, location: None, source_ref: Some("erp-invalid".into()), as_of: None };
    let err = app.set_on_hand("IPOD2009BLACK", &update, "t", Utc::now()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_malformed_payload_is_kept_once_however_often_it_arrives_and_never_dropped_unkept() {
    let h = Harness::new().await;
    let proxy = AwsProxy::new(&support::endpoint(), "123456789012");
    let sdk = support::sdk_via(proxy.listen("WebhookFunction").await).await;
    let mut app = h.app.clone();
    let quarantine = manifold_aws::quarantine::DynamoQuarantine::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &h.stack.env.quarantine_table,
    );
    app.quarantine = app.ports.ready("quarantine", Arc::new(quarantine));
    let kept = async |trace: &str| {
        let all = h.app.quarantine.list(false).await.unwrap();
        all.into_iter().filter(|q| q.payload.contains(trace)).count()
    };

    // Not JSON, and the quarantine cannot keep it: the sender is told to retry, not 400.
    let event_id = support::unique("evt-broken");
    let body = format!("{{\"id\": \"{event_id}\", truncated");
    let headers = shopify_headers(body.as_bytes(), &event_id, "orders/create");
    let unavailable = AwsFault::Fail { status: 500, code: "InternalServerError".into() };
    proxy.faults.add("dynamodb:PutItem", None, Trigger::Nth(1), unavailable);
    let first = app.handle_webhook("shopify", "shop-eu", &headers, body.as_bytes(), Utc::now()).await;
    assert_eq!(first.status, 503, "{}", first.message);
    assert_eq!(kept(&event_id).await, 0);
    let retried = app.handle_webhook("shopify", "shop-eu", &headers, body.as_bytes(), Utc::now()).await;
    assert_eq!(retried.status, 400, "{}", retried.message);
    assert_eq!(kept(&event_id).await, 1);

    // JSON the normalizer cannot read, accepted and then delivered to ingest three times (its ack
    // lost twice): kept once, under one id.
    let mut order: serde_json::Value = serde_json::from_str(crate::fixtures::SHOPIFY_ORDER).unwrap();
    order["order"]["line_items"][0]["quantity"] = serde_json::json!("many");
    let body = serde_json::to_vec(&order["order"]).unwrap();
    let event_id = support::unique("evt-unreadable");
    let headers = shopify_headers(&body, &event_id, "orders/create");
    assert_eq!(app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    let messages = h.stack.drain(&h.stack.env.ingest_queue_url.clone()).await;
    for _ in 0..3 {
        assert!(app.ingest_batch(lambda_event(&messages)).await.batch_item_failures.is_empty());
    }
    assert_eq!(kept(&event_id).await, 1);
}

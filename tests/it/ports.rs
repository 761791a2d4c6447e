//! Each function builds only the ports it uses: a cold start builds no client or store, and one
//! representative event of each function's source builds exactly the ports its handler needs (the
//! webhook function never builds the ledger, the push gate or the bus). This is what a cold start
//! pays for, shown on the application context each function's binary builds.

use std::collections::BTreeSet;

use chrono::Utc;
use manifold_app::{App, ledger::OnHandUpdate};
use manifold_domain::Channel;

use crate::inbound::{Harness, shopify_body, shopify_headers};
use crate::support::lambda_event;

fn built(app: &App) -> BTreeSet<&'static str> {
    app.built_ports()
}

fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

#[tokio::test]
async fn each_function_builds_only_the_ports_its_handler_uses() {
    let h = Harness::new().await;
    let stock =
        OnHandUpdate { on_hand: 10, location: None, source_ref: Some(crate::support::unique("erp")), as_of: None };
    h.app.set_on_hand("IPOD2009BLACK", &stock, "trace-ports", Utc::now()).await.unwrap();
    let _ = h.stack.events().await;
    for c in Channel::ALL {
        let _ = h.stack.drain(&h.stack.env.push_queues[&c]).await;
    }

    // Webhook: verify the signature (the verifier and its HTTP client), claim the delivery, enqueue.
    let webhook = h.cold_start();
    assert!(built(&webhook).is_empty(), "a cold start builds nothing: {:?}", built(&webhook));
    let body = shopify_body();
    let event_id = crate::support::unique("evt-ports");
    let headers = shopify_headers(&body, &event_id, "orders/create");
    assert_eq!(webhook.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 200);
    assert_eq!(built(&webhook), set(&["ddb", "http", "idempotency", "queue", "sqs", "verifier"]));

    // Ingest: the record, its key and the outbox in one transaction, then the bus.
    let ingest = h.cold_start();
    let messages = h.stack.drain(&h.stack.env.ingest_queue_url).await;
    assert_eq!(messages.len(), 1);
    let response = ingest.ingest_batch(lambda_event(&messages)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(built(&ingest), set(&["bus", "ddb", "records", "state"]));

    // Ledger: the reservation, then the fan-out through the push gate to the push queues.
    let ledger = h.cold_start();
    let events = h.stack.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    ledger.apply_event("OrderAccepted", &events[0]["detail"], Utc::now()).await.expect("reserved");
    assert!(!built(&ledger).contains("verifier") && !built(&ledger).contains("idempotency"));
    for needed in ["ledger", "push_gate", "push_queue"] {
        assert!(built(&ledger).contains(needed), "the ledger consumer uses {needed}: {:?}", built(&ledger));
    }

    // Push: one channel's stock job to its simulator; no ledger, no verifier, no ingest path.
    let push = h.cold_start();
    let jobs = h.stack.drain(&h.stack.env.push_queues[&Channel::Shopify]).await;
    assert_eq!(jobs.len(), 1);
    let response = push.push_batch(Channel::Shopify, lambda_event(&jobs)).await;
    assert!(response.batch_item_failures.is_empty());
    for unused in ["ledger", "verifier", "idempotency", "records", "bus"] {
        assert!(!built(&push).contains(unused), "the push consumer never uses {unused}: {:?}", built(&push));
    }
}

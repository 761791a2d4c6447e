//! The pull API the ERP and the WMS poll, against moto: records are stored and their events published
//! on the stack's bus; a FIFO queue and rule shaped as the template's `ChangesQueue` and `ChangesRule`
//! carry them (moto's EventBridge delivers to the FIFO queue in one message group) to
//! `App::changes_batch`, which numbers them in the StateTable; `App::pull_http`, the inventory API's
//! handler for `GET /v1/{collection}`, pages through them.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use futures::{StreamExt, stream};
use manifold_aws::events::publish;
use manifold_domain::{
    Order, Record, Shipment,
    events::{EventDetail, EventKind, OrderEventV1, event_id},
};
use serde_json::{Value, json};

use crate::{
    inbound::Harness,
    support::{self, unique},
};

/// A FIFO queue fed by a rule on the stack's bus, as the template wires the change index.
pub(crate) async fn changes_queue(h: &Harness) -> String {
    let sqs = &h.stack.sqs;
    let created = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique("changes")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .expect("create the FIFO queue");
    let url = created.queue_url.expect("queue url");
    let arn = support::queue_arn(sqs, &url).await;
    let eb = aws_sdk_eventbridge::Client::new(&h.stack.sdk);
    let rule = unique("changes-rule");
    let pattern = json!({ "source": ["manifold"], "detail-type": ["OrderAccepted", "OrderUpdated", "OrderCancelled",
        "OrderOversold", "ShipmentCreated", "RefundCreated", "ReturnUpdated"] });
    eb.put_rule()
        .name(&rule)
        .event_bus_name(&h.stack.env.event_bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("changes")
        .arn(arn)
        .sqs_parameters(aws_sdk_eventbridge::types::SqsParameters::builder().message_group_id("changes").build())
        .build()
        .unwrap();
    eb.put_targets().rule(&rule).event_bus_name(&h.stack.env.event_bus).targets(target).send().await.unwrap();
    url
}

/// Runs the changes consumer over the queue until it stays empty; answers the messages it took.
async fn index_all(h: &Harness, queue: &str) -> usize {
    let (mut taken, mut empty) = (0, 0);
    while empty < 2 {
        let n = manifold_app::local::poll_once(&h.stack.sqs, queue, |e| h.app.changes_batch(e)).await.unwrap();
        if n == 0 {
            empty += 1;
        }
        taken += n;
    }
    taken
}

/// Order `n` at `version`: one line of `TEE-{n}` and, for even `n`, a second one of `MUG-1`.
pub(crate) fn order(n: u64, version: i64) -> Order {
    let line = |id: String, sku: String, quantity: u32| {
        json!({ "line_id": id, "sku": sku, "channel_sku": sku, "sku_mapped": true, "title": "Tee", "quantity": quantity,
                "unit_price": "10.00", "total": format!("{}.00", 10 * quantity), "tax": "0.00", "discount": "0.00" })
    };
    let mut lines = vec![line(format!("{n}-1"), format!("TEE-{n}"), 1)];
    if n.is_multiple_of(2) {
        lines.push(line(format!("{n}-2"), "MUG-1".into(), 2));
    }
    serde_json::from_value(json!({
        "id": format!("shopify:shop-eu:{n}"), "channel": "shopify", "account": "shop-eu", "channel_order_id": n.to_string(),
        "order_number": format!("#{n}"), "status": "paid", "created_at": "2026-11-30T10:00:00Z",
        "updated_at": "2026-11-30T10:00:00Z", "currency": "EUR", "lines": lines,
        "totals": {"subtotal": "0.00", "shipping": "0.00", "tax": "0.00", "discount": "0.00", "total": "0.00"},
        "customer": {}, "shipping_address": null, "billing_address": null, "source_version": version
    }))
    .unwrap()
}

/// Stores the orders (at `version`) as ingest leaves them in the records table, and publishes each
/// one's event. The items are written with plain PutItem rather than ingest's transaction: moto copies
/// a whole table for every transaction, which makes a thousand of them take minutes.
async fn store_and_publish(h: &Harness, numbers: impl IntoIterator<Item = u64>, version: i64) {
    let numbers: Vec<u64> = numbers.into_iter().collect();
    let ddb = aws_sdk_dynamodb::Client::new(&h.stack.sdk);
    let table = h.stack.env.records_table.clone();
    stream::iter(numbers)
        .for_each_concurrent(8, |n| {
            let (ddb, table) = (ddb.clone(), table.clone());
            async move {
                let o = order(n, version);
                ddb.put_item()
                    .table_name(table)
                    .item("pk", AttributeValue::S(format!("ORDER#{}", o.id)))
                    .item("sk", AttributeValue::S("CURRENT".into()))
                    .item("kind", AttributeValue::S("order".into()))
                    .item("record", serde_dynamo::to_attribute_value(&o).unwrap())
                    .send()
                    .await
                    .expect("store the order");
                let key = format!("pull-{n}-{version}");
                let kind = if version == 1 { EventKind::OrderAccepted } else { EventKind::OrderUpdated };
                let detail = EventDetail::new(kind, "t-pull", Utc::now(), OrderEventV1::from(&o))
                    .with_id(event_id(kind, &[&key]));
                publish(&**h.app.bus.get(), &detail).await.expect("publish");
            }
        })
        .await;
}

/// Stores and publishes the orders a hundred at a time, the consumer indexing each hundred as the
/// deployed one would while they arrive (moto's FIFO sends slow down with the queue's depth).
pub(crate) async fn store_and_index(
    h: &Harness,
    queue: &str,
    numbers: impl IntoIterator<Item = u64>,
    version: i64,
) -> usize {
    let numbers: Vec<u64> = numbers.into_iter().collect();
    let mut indexed = 0;
    for chunk in numbers.chunks(100) {
        store_and_publish(h, chunk.iter().copied(), version).await;
        indexed += index_all(h, queue).await;
    }
    indexed
}

/// One page of `GET /v1/{collection}`: the records' ids, the next cursor, whether more may follow.
async fn page(
    app: &manifold_app::App,
    collection: &str,
    since: Option<&str>,
    limit: usize,
) -> (Vec<String>, String, bool) {
    let mut query = HashMap::from([("limit".to_owned(), limit.to_string())]);
    if let Some(c) = since {
        query.insert("since".to_owned(), c.to_owned());
    }
    let response = app.pull_http(collection, None, &query, "t-pull").await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["version"], "v1");
    let ids = body["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    (ids, body["next_cursor"].as_str().unwrap().to_owned(), body["has_more"].as_bool().unwrap())
}

#[tokio::test]
async fn the_pull_api_pages_through_1000_changed_orders_and_misses_none_when_changes_arrive_during_paging() {
    let h = Harness::new().await;
    let queue = changes_queue(&h).await;
    assert_eq!(store_and_index(&h, &queue, 1..=1000, 1).await, 1000);

    let mut seen: Vec<String> = Vec::new();
    let (mut cursor, mut pages) = (None::<String>, 0);
    loop {
        let (ids, next, more) = page(&h.app, "orders", cursor.as_deref(), 100).await;
        assert!(ids.len() <= 100);
        pages += 1;
        seen.extend(ids.iter().cloned());
        cursor = Some(next);
        if pages == 3 {
            // While the ERP pages: 50 new orders, and 20 it already read change again.
            assert_eq!(store_and_index(&h, &queue, 1001..=1050, 1).await, 50);
            assert_eq!(store_and_index(&h, &queue, 1..=20, 2).await, 20);
        }
        if !more && ids.is_empty() {
            break;
        }
        assert!(pages < 30, "paging does not end");
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    let expected: BTreeSet<String> = (1..=1050).map(|n| format!("shopify:shop-eu:{n}")).collect();
    assert_eq!(distinct.len(), 1050, "every order, none missed");
    assert!(expected.iter().all(|id| distinct.contains(id)));
    for n in 1..=20 {
        let id = format!("shopify:shop-eu:{n}");
        assert_eq!(seen.iter().filter(|s| **s == id).count(), 2, "{id}: read, then read again after it changed");
    }
    assert_eq!(seen.len(), 1070, "each change once");

    // The cursor lives in DynamoDB, not in a process: a redeployed function continues from it.
    let redeployed = h.cold_start();
    let (ids, same, more) = page(&redeployed, "orders", cursor.as_deref(), 100).await;
    assert!(ids.is_empty() && !more && Some(&same) == cursor.as_ref(), "nothing new: the same cursor back");
    store_and_index(&h, &queue, [7], 3).await;
    let (ids, _, _) = page(&redeployed, "orders", cursor.as_deref(), 100).await;
    assert_eq!(ids, ["shopify:shop-eu:7"]);
}

#[tokio::test]
async fn a_redelivered_event_is_one_change_and_each_collection_reads_its_own_records() {
    let h = Harness::new().await;
    let queue = changes_queue(&h).await;
    store_and_publish(&h, [1, 2], 1).await;
    // The outbox publishes again after a crash: the same event id, a new EventBridge event.
    store_and_publish(&h, [1], 1).await;
    let shipment: Shipment = serde_json::from_value(json!({
        "id": "wms-pull-1", "order_id": "shopify:shop-eu:1", "channel": "shopify", "account": "shop-eu",
        "channel_order_id": "1", "carrier": "DHL", "tracking_number": "00340434161094099999", "tracking_url": null,
        "lines": [], "shipped_at": "2026-11-30T12:00:00Z"
    }))
    .unwrap();
    let key = "pull-ship-1";
    h.app.records.get().put_record(&Record::Shipment(shipment.clone()), key, "t-pull", Utc::now(), &[]).await.unwrap();
    let detail = EventDetail::new(EventKind::ShipmentCreated, "t-pull", Utc::now(), &shipment)
        .with_id(event_id(EventKind::ShipmentCreated, &[key]));
    publish(&**h.app.bus.get(), &detail).await.unwrap();
    assert_eq!(index_all(&h, &queue).await, 4, "four events on the queue");

    let (mut orders, _, _) = page(&h.app, "orders", None, 100).await;
    orders.sort();
    assert_eq!(orders, ["shopify:shop-eu:1", "shopify:shop-eu:2"], "the redelivery is no second change");
    let (shipments, cursor, _) = page(&h.app, "shipments", None, 100).await;
    assert_eq!(shipments, ["wms-pull-1"]);

    let get = |collection: &'static str, id: &'static str| {
        let app = &h.app;
        async move { app.pull_http(collection, Some(id), &HashMap::new(), "t-pull").await.unwrap() }
    };
    let one = get("orders", "shopify:shop-eu:2").await;
    assert_eq!(one.status(), 200);
    let body: Value = serde_json::from_slice(one.body()).unwrap();
    assert_eq!((body["version"].as_str(), body["record"]["order_number"].as_str()), (Some("v1"), Some("#2")));
    assert_eq!(get("orders", "shopify:shop-eu:404").await.status(), 404);
    assert_eq!(get("customers", "x").await.status(), 404, "no such collection");

    // A cursor belongs to its collection, and only cursors the API handed out are taken.
    let wrong = h.app.pull_http("orders", None, &HashMap::from([("since".into(), cursor)]), "t").await.unwrap();
    assert_eq!(wrong.status(), 400);
    assert!(String::from_utf8_lossy(wrong.body()).contains("not orders"), "{:?}", wrong.body());
    let forged = h.app.pull_http("orders", None, &HashMap::from([("since".into(), "abc".into())]), "t").await.unwrap();
    assert_eq!(forged.status(), 400);
    let too_many =
        h.app.pull_http("orders", None, &HashMap::from([("limit".into(), "501".into())]), "t").await.unwrap();
    assert_eq!(too_many.status(), 400);
}

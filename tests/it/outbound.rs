//! Outbound connectors against the channel simulators on loopback: request shapes, batching,
//! idempotency keys, rate limits that bind (and are never exceeded), failure classes and the breaker.
//! Throughput figures live in the `ratelimit` bench of manifold-connectors, not here.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use manifold_connectors::{
    Accepted, CallContext, ChannelConnector, ConnectorError, Credentials, FailureClass, PriceUpdate, PushOutcome,
    StockRead, StockUpdate, Submission, SubmissionState,
    breaker::{BreakerPolicy, MemoryBreakerStore, Phase},
    build,
    guarded::Guarded,
    http_client,
};
use manifold_domain::{
    AccountId, Amount, Channel, Currency, Shipment, ShipmentLine, Sku,
    config::{AccountConfig, RateLimit},
};
use manifold_simulator::{CatalogItem, FaultKind, FaultSpec, SimConfig, SimHandle, SimLimit, Simulator};
use serde_json::{Value, json};

use crate::support::eventually;

fn version(channel: Channel) -> &'static str {
    manifold_simulator::api_version(channel)
}

/// An account of `channel` on the simulator, with every setting any channel's connector reads.
pub(crate) fn account(
    sim: &SimHandle,
    channel: Channel,
    rate_limit: RateLimit,
    settings: &[(&str, &str)],
) -> AccountConfig {
    let mut all: BTreeMap<String, String> = [
        ("location_id", "gid://shopify/Location/1"),
        ("seller_id", "A2EUQ1WTGCTBG2"),
        ("marketplace_id", "A1PA6795UKMFR9"),
        ("shop_id", "12345678"),
        ("warehouse_id", "7068517275539793707"),
        ("app_key", "sim-app-key"),
        ("sales_channel_id", "bf48ba35-149d-4b76-8ac9-d08d126b517f"),
        ("storefront", "de"),
        ("ship_from_city", "Hamburg"),
        ("ship_from_zip_code", "22179"),
        ("ship_from_country", "DEU"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if channel == Channel::Bigcommerce {
        all.insert("location_id".into(), "1".into());
    }
    for (k, v) in settings {
        all.insert((*k).to_owned(), (*v).to_owned());
    }
    AccountConfig {
        secret: format!("manifold/{channel}/it"),
        rate_limit,
        settings: all,
        ..crate::support::sim_account(channel, "it-account", version(channel), sim.base_url(channel), &[])
    }
}

fn creds() -> Credentials {
    let (client_key, secret_key) = manifold_simulator::KAUFLAND_KEYS;
    [
        ("access_token", "sim-token"),
        ("client_id", "ck_sim"),
        ("client_secret", "cs_sim"),
        ("api_key", "sim-keystring"),
        ("client_key", client_key),
        ("secret_key", secret_key),
    ]
    .into_iter()
    .collect()
}

/// The connector of [`account`], built as deployed code builds it.
pub(crate) fn connector(
    sim: &SimHandle,
    channel: Channel,
    rate_limit: RateLimit,
    settings: &[(&str, &str)],
) -> Arc<dyn ChannelConnector> {
    build(&account(sim, channel, rate_limit, settings), creds(), http_client(Duration::from_secs(2)).unwrap())
}

fn items(n: usize, id: impl Fn(usize) -> Option<String>) -> Vec<StockUpdate> {
    (0..n)
        .map(|i| StockUpdate {
            sku: Sku::new(format!("SKU-{i:05}")).unwrap(),
            channel_sku: format!("SKU-{i:05}"),
            quantity: u32::try_from(i % 50).unwrap(),
            channel_item_id: id(i),
        })
        .collect()
}

/// `items` takes an id per index; Shopify's is the inventory item gid.
#[allow(clippy::unnecessary_wraps)]
fn shopify_gid(i: usize) -> Option<String> {
    Some(format!("gid://shopify/InventoryItem/{i}"))
}

fn ctx(trace: &str) -> CallContext {
    CallContext::new(trace)
}

fn writes_to<'a>(
    sim: &'a manifold_simulator::Snapshot,
    channel: Channel,
    path_part: &str,
) -> Vec<&'a manifold_simulator::Write> {
    sim.writes.get(&channel).into_iter().flatten().filter(|w| w.path.contains(path_part)).collect()
}

async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts on loopback")
}

#[tokio::test]
async fn shopify_batches_600_skus_into_3_idempotent_inventory_set_quantities_calls() {
    let sim = start(SimConfig::default()).await;
    let shopify =
        connector(&sim, Channel::Shopify, RateLimit::LeakyBucket { capacity: 1000.0, leak_per_second: 50.0 }, &[]);
    let push = items(600, shopify_gid);

    let outcome = shopify.push_stock(&push, &ctx("trace-shopify-600")).await.unwrap();

    assert_eq!(outcome.delivered.len(), 600);
    assert!(outcome.rejected.is_empty());
    let snap = sim.snapshot();
    let calls = writes_to(&snap, Channel::Shopify, "graphql.json");
    assert_eq!(calls.len(), 3);
    let sizes: Vec<usize> =
        calls.iter().map(|w| w.body["variables"]["input"]["quantities"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [250, 250, 100]);
    let first = &calls[0].body;
    assert!(first["query"].as_str().unwrap().contains("@idempotent(key: $idempotencyKey)"));
    assert_eq!(first["variables"]["input"]["name"], "available");
    assert_eq!(first["variables"]["input"]["ignoreCompareQuantity"], true);
    assert_eq!(
        first["variables"]["input"]["quantities"][7],
        json!({ "inventoryItemId": "gid://shopify/InventoryItem/7", "locationId": "gid://shopify/Location/1", "quantity": 7 })
    );
    let keys = &snap.idempotency_keys[&Channel::Shopify];
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| !k.is_empty()) && keys[0] != keys[1]);
    assert_eq!(snap.stock[&Channel::Shopify]["gid://shopify/InventoryItem/599"], 49);

    // The same push under the same trace id reuses the keys, so Shopify deduplicates a retry.
    shopify.push_stock(&push, &ctx("trace-shopify-600")).await.unwrap();
    let again = sim.snapshot().idempotency_keys[&Channel::Shopify].clone();
    assert_eq!(&again[3..], &keys[..]);
}

type ItemId = Box<dyn Fn(usize) -> Option<String>>;

#[tokio::test]
async fn batch_sizes_follow_each_channel() {
    let sim = start(SimConfig::default().unlimited(Channel::Zalando).unlimited(Channel::Bigcommerce)).await;
    let unlimited = RateLimit::Unlimited;
    let cases: [(Channel, &str, usize, ItemId); 4] = [
        (Channel::Ebay, "bulk_update_price_quantity", 24, Box::new(|_| None)),
        (Channel::Zalando, "/stocks", 1, Box::new(|_| None)),
        (Channel::Bigcommerce, "adjustments/absolute", 1, Box::new(|_| None)),
        (Channel::Woocommerce, "products/batch", 6, Box::new(|i| Some((1000 + i).to_string()))),
    ];
    for (channel, path, calls, id) in cases {
        let c = connector(&sim, channel, unlimited, &[]);
        let outcome = c.push_stock(&items(600, id), &ctx("trace-batches")).await.unwrap();
        assert_eq!(outcome.delivered.len(), 600, "{channel}: {:?}", outcome.rejected.first());
        assert_eq!(writes_to(&sim.snapshot(), channel, path).len(), calls, "{channel}");
    }
    let snap = sim.snapshot();
    let ebay = &writes_to(&snap, Channel::Ebay, "bulk_update")[0].body;
    assert_eq!(ebay["requests"][3], json!({ "sku": "SKU-00003", "shipToLocationAvailability": { "quantity": 3 } }));
    let zalando = &writes_to(&snap, Channel::Zalando, "/stocks")[0].body;
    assert_eq!(
        zalando["items"][1],
        json!({ "sales_channel_id": "bf48ba35-149d-4b76-8ac9-d08d126b517f", "ean": "SKU-00001", "quantity": 1 })
    );
    let bc = &writes_to(&snap, Channel::Bigcommerce, "absolute")[0].body;
    assert_eq!(bc["items"][2], json!({ "location_id": 1, "sku": "SKU-00002", "quantity": 2 }));
    let woo = &writes_to(&snap, Channel::Woocommerce, "batch")[0].body;
    assert_eq!(woo["update"][0], json!({ "id": 1000, "manage_stock": true, "stock_quantity": 0 }));
    assert_eq!(snap.stock[&Channel::Woocommerce]["1599"], 49);
}

#[tokio::test]
async fn shopify_5000_skus_within_a_small_bucket_get_no_throttle() {
    // The configured figure is the documented default; the simulated store is far smaller, and the
    // limiter must learn that from throttleStatus instead of being throttled.
    let config = SimConfig::default()
        .with_limit(Channel::Shopify, SimLimit::Points { capacity: 40.0, restore_per_second: 40.0 });
    let sim = start(config).await;
    let shopify =
        connector(&sim, Channel::Shopify, RateLimit::LeakyBucket { capacity: 1000.0, leak_per_second: 50.0 }, &[]);

    let outcome = shopify.push_stock(&items(5000, shopify_gid), &ctx("trace-shopify-5000")).await.unwrap();

    assert_eq!(outcome.delivered.len(), 5000);
    let snap = sim.snapshot();
    assert_eq!(snap.throttled.get(&Channel::Shopify).copied().unwrap_or(0), 0, "no THROTTLED response");
    assert_eq!(snap.stock[&Channel::Shopify].len(), 5000);
}

#[tokio::test]
async fn bigcommerce_5000_skus_within_a_small_window_get_no_429() {
    let config =
        SimConfig::default().with_limit(Channel::Bigcommerce, SimLimit::Window { requests: 25, window_ms: 1000 });
    let sim = start(config).await;
    let bc = connector(
        &sim,
        Channel::Bigcommerce,
        RateLimit::FixedWindow { requests: 150, window_seconds: 30 },
        &[("batch_size", "50")],
    );

    let outcome = bc.push_stock(&items(5000, |_| None), &ctx("trace-bc-5000")).await.unwrap();

    assert_eq!(outcome.delivered.len(), 5000);
    let snap = sim.snapshot();
    assert_eq!(snap.throttled.get(&Channel::Bigcommerce).copied().unwrap_or(0), 0, "no 429");
    assert_eq!(snap.requests[&Channel::Bigcommerce], 100);
    assert_eq!(snap.stock[&Channel::Bigcommerce].len(), 5000);
}

#[tokio::test]
async fn unknown_skus_are_permanent_per_item_and_not_retried() {
    let sim = start(SimConfig::default()).await;
    let known: Vec<CatalogItem> = (0..20)
        .map(|i| CatalogItem {
            id: format!("SKU-{i:05}"),
            sku: format!("SKU-{i:05}"),
            quantity: 0,
            product_id: None,
            variant_id: None,
            price_minor: None,
        })
        .collect();
    sim.seed_catalog(Channel::Ebay, known.clone());
    sim.seed_catalog(Channel::Bigcommerce, known);

    let ebay = connector(&sim, Channel::Ebay, RateLimit::Unlimited, &[]);
    let outcome = ebay.push_stock(&items(25, |_| None), &ctx("trace-ebay-unknown")).await.unwrap();
    assert_eq!(outcome.delivered.len(), 20);
    assert_eq!(outcome.rejected.len(), 5);
    assert!(outcome.rejected.iter().all(|(_, e)| e.class == FailureClass::Permanent && !e.is_retryable()));
    assert_eq!(sim.snapshot().requests[&Channel::Ebay], 1, "one call, no retry");

    // BigCommerce validates the batch as a whole: a 422 rejects it, permanently, in one request.
    let bc = connector(&sim, Channel::Bigcommerce, RateLimit::Unlimited, &[]);
    let outcome = bc.push_stock(&items(25, |_| None), &ctx("trace-bc-unknown")).await.unwrap();
    assert_eq!(outcome.rejected.len(), 25);
    assert!(outcome.rejected.iter().all(|(_, e)| e.class == FailureClass::Permanent && e.status == Some(422)));
    assert_eq!(sim.snapshot().requests[&Channel::Bigcommerce], 1);
}

#[tokio::test]
async fn faults_are_classified() {
    let sim = start(SimConfig { timeout_delay: Duration::from_secs(5), ..SimConfig::default() }).await;
    let zalando = connector(&sim, Channel::Zalando, RateLimit::Unlimited, &[]);
    let push = items(3, |_| None);
    let cases = [
        (FaultKind::Unauthorized, FailureClass::Auth),
        (FaultKind::ServerError, FailureClass::Transient),
        (FaultKind::Malformed, FailureClass::Transient),
        (FaultKind::Timeout, FailureClass::Transient),
    ];
    for (kind, class) in cases {
        sim.inject(FaultSpec { channel: Channel::Zalando, kind, probability: None, next_n: Some(1) });
        let err: ConnectorError = zalando.push_stock(&push, &ctx("trace-faults")).await.unwrap_err();
        assert_eq!(err.class, class, "{kind:?}: {err}");
    }
    assert_eq!(sim.snapshot().requests[&Channel::Zalando], 4, "no retries of transient or auth failures");
    assert_eq!(zalando.push_stock(&push, &ctx("trace-faults")).await.unwrap().delivered.len(), 3);
}

#[tokio::test]
async fn breaker_opens_stops_calls_probes_once_and_closes() {
    let sim = start(SimConfig::default().unlimited(Channel::Bigcommerce)).await;
    let inner = connector(&sim, Channel::Bigcommerce, RateLimit::Unlimited, &[]);
    let policy = BreakerPolicy { failure_threshold: 3, cool_down: Duration::from_millis(300) };
    let guarded = Guarded::new(inner, Arc::new(MemoryBreakerStore::default()), "bigcommerce:it", policy);
    let push = items(2, |_| None);
    let requests = || sim.snapshot().requests.get(&Channel::Bigcommerce).copied().unwrap_or(0);

    sim.inject(FaultSpec {
        channel: Channel::Bigcommerce,
        kind: FaultKind::ServerError,
        probability: None,
        next_n: Some(4),
    });
    for _ in 0..3 {
        assert_eq!(guarded.push_stock(&push, &ctx("t")).await.unwrap_err().class, FailureClass::Transient);
    }
    assert_eq!(requests(), 3);
    assert!(matches!(guarded.breaker().state().await.unwrap().phase, Phase::Open { .. }));

    // Open: refused locally, nothing reaches the channel.
    let refused = guarded.push_stock(&push, &ctx("t")).await.unwrap_err();
    assert!(refused.is_retryable() && refused.message.contains("circuit open"), "{refused}");
    assert_eq!(requests(), 3);

    // After the cool-down one probe goes out; it meets the 4th injected failure and re-opens.
    let probe = eventually("the breaker to let a probe through", Duration::from_secs(5), || async {
        match guarded.push_stock(&push, &ctx("t")).await {
            Err(e) if e.message.contains("circuit open") => None,
            other => Some(other),
        }
    })
    .await;
    assert!(probe.is_err());
    assert_eq!(requests(), 4, "exactly one probe");
    assert!(guarded.push_stock(&push, &ctx("t")).await.unwrap_err().message.contains("circuit open"));

    // The next probe succeeds and closes the breaker.
    let probe = eventually("a second probe", Duration::from_secs(5), || async {
        match guarded.push_stock(&push, &ctx("t")).await {
            Err(e) if e.message.contains("circuit open") => None,
            other => Some(other),
        }
    })
    .await;
    assert_eq!(probe.unwrap().delivered.len(), 2);
    assert_eq!(guarded.breaker().state().await.unwrap().phase, Phase::Closed);
    assert_eq!(requests(), 5);
}

#[tokio::test]
async fn etsy_writes_back_the_whole_product_set() {
    let sim = start(SimConfig::default()).await;
    let product = |sku: &str, q| CatalogItem {
        id: sku.into(),
        sku: sku.into(),
        quantity: q,
        product_id: Some("555".into()),
        variant_id: None,
        price_minor: Some(1250),
    };
    sim.seed_catalog(Channel::Etsy, vec![product("MUG-S", 3), product("MUG-M", 4), product("MUG-L", 5)]);
    let etsy = connector(&sim, Channel::Etsy, RateLimit::TokenBucket { rate_per_second: 10.0, burst: 10 }, &[]);

    let push = vec![StockUpdate {
        sku: Sku::new("MUG-M").unwrap(),
        channel_sku: "MUG-M".into(),
        quantity: 9,
        channel_item_id: Some("555".into()),
    }];
    let outcome = etsy.push_stock(&push, &ctx("trace-etsy")).await.unwrap();

    assert_eq!(outcome.delivered, ["MUG-M"]);
    let snap = sim.snapshot();
    let put = writes_to(&snap, Channel::Etsy, "/listings/555/inventory");
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].body["products"].as_array().unwrap().len(), 3, "omitted products would be deleted");
    assert_eq!(put[0].body["products"][0]["offerings"][0]["price"], json!(12.5));
    let stock = &snap.stock[&Channel::Etsy];
    assert_eq!((stock["MUG-S"], stock["MUG-M"], stock["MUG-L"]), (3, 9, 5));
}

#[tokio::test]
async fn amazon_patches_few_skus_and_feeds_many() {
    let sim = start(
        SimConfig::default().with_limit(Channel::Amazon, SimLimit::TokenBucket { rate_per_second: 20.0, burst: 5.0 }),
    )
    .await;
    let amazon = connector(
        &sim,
        Channel::Amazon,
        RateLimit::TokenBucket { rate_per_second: 20.0, burst: 5 },
        &[("feed_threshold", "10")],
    );

    let outcome = amazon.push_stock(&items(8, |_| None), &ctx("trace-amazon")).await.unwrap();
    assert_eq!(outcome.delivered.len(), 8);
    let snap = sim.snapshot();
    let patches = writes_to(&snap, Channel::Amazon, "/listings/2021-08-01/items/A2EUQ1WTGCTBG2/");
    assert_eq!(patches.len(), 8);
    assert_eq!(patches[0].query, "marketplaceIds=A1PA6795UKMFR9");
    assert_eq!(
        patches[5].body,
        json!({ "productType": "PRODUCT", "patches": [{ "op": "replace", "path": "/attributes/fulfillment_availability", "value": [{ "fulfillment_channel_code": "DEFAULT", "quantity": 5 }] }] })
    );

    let outcome = amazon.push_stock(&items(200, |_| None), &ctx("trace-amazon-feed")).await.unwrap();
    assert_eq!(outcome.delivered.len(), 200);
    // Amazon applies a feed while processing it: the stock is there once the feed is done.
    let report = processed(&amazon, &outcome.submitted[0]).await;
    assert_eq!((report.delivered.len(), report.rejected.len()), (200, 0));
    let snap = sim.snapshot();
    assert_eq!(writes_to(&snap, Channel::Amazon, "/feeds/2021-06-30/feeds").len(), 1);
    assert_eq!(writes_to(&snap, Channel::Amazon, "/listings/").len(), 8, "bulk went through the feed");
    assert_eq!(snap.stock[&Channel::Amazon]["SKU-00199"], 49);
    assert_eq!(snap.throttled.get(&Channel::Amazon).copied().unwrap_or(0), 0);
    assert_eq!(
        amazon.read_stock(&[StockRead::sku("SKU-00003")], &ctx("t")).await.unwrap(),
        [("SKU-00003".to_owned(), 3)]
    );
}

#[tokio::test]
async fn fetch_order_returns_the_normalizer_input() {
    let sim = start(SimConfig::default()).await;
    let bc_doc = json!({
        "order": serde_json::from_str::<Value>(include_str!("../../shared/connectors/fixtures/outbound/v2-order-218-get.json")).unwrap(),
        "products": serde_json::from_str::<Value>(include_str!("../../shared/connectors/fixtures/outbound/v2-order-products-list.json")).unwrap(),
        "shipping_addresses": serde_json::from_str::<Value>(include_str!("../../shared/connectors/fixtures/outbound/v2-order-shipping-addresses-list.json")).unwrap(),
    });
    sim.seed_order(Channel::Bigcommerce, bc_doc.clone()).unwrap();
    let bc = connector(&sim, Channel::Bigcommerce, RateLimit::Unlimited, &[]);
    assert_eq!(bc.fetch_order("218", &ctx("t")).await.unwrap(), bc_doc);

    let order: Value = serde_json::from_str(include_str!(
        "../../shared/connectors/fixtures/outbound/orders-v0-getOrder-response-example.json"
    ))
    .unwrap();
    let items: Value = serde_json::from_str(include_str!(
        "../../shared/connectors/fixtures/outbound/orders-v0-getOrderItems-response-example.json"
    ))
    .unwrap();
    let mut order_items = items["payload"]["OrderItems"].as_array().unwrap().clone();
    order_items.extend(order_items.clone()); // 4 items: the simulator pages by 2, so NextToken is followed
    let amazon_doc = json!({ "order": order["payload"], "order_items": order_items });
    sim.seed_order(Channel::Amazon, amazon_doc.clone()).unwrap();
    let amazon = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[]);
    assert_eq!(amazon.fetch_order("902-3159896-1390916", &ctx("t")).await.unwrap(), amazon_doc);
}

#[tokio::test]
async fn zalando_orders_are_listed_until_acknowledged() {
    let sim = start(SimConfig::default()).await;
    let doc = json!({
        "data": { "id": "o-1", "type": "Order", "attributes": { "order_number": "10101", "exported": false },
                  "relationships": { "order_items": { "data": [{ "id": "i-1", "type": "OrderItem" }] } } },
        "included": [
            { "id": "i-1", "type": "OrderItem", "relationships": { "order_lines": { "data": [{ "id": "l-1", "type": "OrderLine" }] } } },
            { "id": "l-1", "type": "OrderLine", "attributes": { "status": "accepted" } }
        ]
    });
    sim.seed_order(Channel::Zalando, doc.clone()).unwrap();
    let zalando = connector(&sim, Channel::Zalando, RateLimit::Unlimited, &[]);

    assert_eq!(zalando.list_unexported_orders(&ctx("t")).await.unwrap(), std::slice::from_ref(&doc));
    zalando.acknowledge_order("o-1", &ctx("t")).await.unwrap();
    assert!(zalando.list_unexported_orders(&ctx("t")).await.unwrap().is_empty());
    // Changes to exported orders are still listed by when they changed.
    let changed = zalando.list_orders_since(Utc::now() - chrono::Duration::hours(1), &ctx("t")).await.unwrap();
    assert!(changed.is_empty(), "the seeded order has no modified_at: not listed as changed");

    let shipment = Shipment {
        id: "s-1".into(),
        order_id: manifold_domain::OrderId::new("zalando:it-account:o-1").unwrap(),
        channel: Channel::Zalando,
        account: AccountId::new("it-account").unwrap(),
        channel_order_id: "o-1".into(),
        carrier: Some("DHL".into()),
        tracking_number: Some("00340434161094015902".into()),
        tracking_url: None,
        lines: vec![ShipmentLine { line_id: None, sku: None, quantity: 1 }],
        shipped_at: Utc::now(),
    };
    zalando.push_tracking(&shipment, &ctx("t")).await.unwrap();
    let snap = sim.snapshot();
    let line = &snap.orders[&Channel::Zalando][0].doc["included"][1];
    assert_eq!(line["attributes"]["status"], "shipped");
}

#[tokio::test]
async fn prices_and_tracking_use_each_channels_endpoint() {
    let sim = start(SimConfig::default()).await;
    let price = |id: &str| PriceUpdate {
        sku: Sku::new("SKU-1").unwrap(),
        channel_sku: "SKU-1".into(),
        amount: Amount::parse("19.99", Currency::new("EUR").unwrap()).unwrap(),
        currency: Currency::new("EUR").unwrap(),
        channel_item_id: Some(id.into()),
    };
    let ebay = connector(&sim, Channel::Ebay, RateLimit::Unlimited, &[]);
    assert_eq!(ebay.push_prices(&[price("offer-9")], &ctx("t")).await.unwrap().delivered, ["SKU-1"]);
    let tiktok = connector(&sim, Channel::Tiktok, RateLimit::Unlimited, &[]);
    assert_eq!(tiktok.push_prices(&[price("1729/3301")], &ctx("t")).await.unwrap().delivered, ["SKU-1"]);
    let snap = sim.snapshot();
    assert_eq!(
        writes_to(&snap, Channel::Ebay, "bulk_update")[0].body["requests"][0]["offers"][0],
        json!({ "offerId": "offer-9", "price": { "value": "19.99", "currency": "EUR" } })
    );
    let tt = &writes_to(&snap, Channel::Tiktok, "/product/202309/products/1729/prices/update")[0];
    assert_eq!(tt.body["skus"][0]["price"], json!({ "amount": "19.99", "currency": "EUR" }));
    assert!(tt.query.contains("sign=") && tt.query.contains("app_key=sim-app-key"));

    sim.seed_order(Channel::Ebay, json!({ "orderId": "12-34", "lineItems": [{ "lineItemId": "L1", "quantity": 2 }] }))
        .unwrap();
    let shipment = Shipment {
        id: "s-2".into(),
        order_id: manifold_domain::OrderId::new("ebay:it-account:12-34").unwrap(),
        channel: Channel::Ebay,
        account: AccountId::new("it-account").unwrap(),
        channel_order_id: "12-34".into(),
        carrier: Some("USPS".into()),
        tracking_number: Some("9400100000000000000000".into()),
        tracking_url: None,
        lines: Vec::new(),
        shipped_at: Utc::now(),
    };
    ebay.push_tracking(&shipment, &ctx("t")).await.unwrap();
    let snap = sim.snapshot();
    let sent = &writes_to(&snap, Channel::Ebay, "shipping_fulfillment")[0].body;
    assert_eq!(sent["lineItems"], json!([{ "lineItemId": "L1", "quantity": 2 }]));
    assert_eq!(sent["shippingCarrierCode"], "USPS");
}

/// A Kaufland order of three units (two of one offer) as `GET /v2/orders/{id}` serves it.
fn kaufland_order(id: &str, updated: &str) -> Value {
    let unit = |n: u64, offer: &str, price: i64| {
        json!({ "id_order_unit": n, "id_order": id, "status": "need_to_be_sent", "ts_created_iso": "2026-11-20T09:15:02Z",
                "ts_updated_iso": updated, "price": price, "shipping_rate": 0, "currency": "EUR", "id_offer": offer,
                "product": { "id_product": 1, "eans": [], "title": offer } })
    };
    let n = id.bytes().map(u64::from).sum::<u64>() * 10;
    json!({ "data": { "id_order": id, "ts_created_iso": "2026-11-20T09:15:02Z", "storefront": "de",
                      "buyer": { "id_buyer": 1, "email": null }, "billing_address": null, "shipping_address": null,
                      "order_units": [unit(n + 1, "TEE-BLK-M", 2499), unit(n + 2, "TEE-BLK-M", 2499), unit(n + 3, "MUG-WHITE", 1299)] } })
}

#[tokio::test]
async fn kaufland_writes_units_in_signed_bulk_calls_of_150_read_per_unit() {
    let sim = start(SimConfig::default()).await;
    let units: Vec<CatalogItem> = (0..320)
        .map(|i| CatalogItem {
            id: (5000 + i).to_string(),
            sku: format!("SKU-{i:05}"),
            quantity: 0,
            product_id: Some("77".into()),
            variant_id: None,
            price_minor: Some(1000),
        })
        .collect();
    sim.seed_catalog(Channel::Kaufland, units);
    let kaufland = connector(&sim, Channel::Kaufland, RateLimit::Unlimited, &[]);
    // 330 updates: 320 known units, 5 unknown ones, 4 without a unit id, and one unit written twice.
    let mut push = items(329, |i| (i < 325).then(|| (5000 + i).to_string()));
    push.push(StockUpdate { quantity: 44, ..push[7].clone() });
    let outcome = kaufland.push_stock(&push, &ctx("trace-kaufland-bulk")).await.unwrap();
    assert_eq!(outcome.delivered.len(), 321, "320 units, the superseded write of unit 5007 included");
    assert_eq!(outcome.rejected.len(), 9);
    assert!(outcome.rejected.iter().all(|(_, e)| e.class == FailureClass::Permanent), "{:?}", outcome.rejected);
    let snap = sim.snapshot();
    let calls = writes_to(&snap, Channel::Kaufland, "/units/bulk");
    let sizes: Vec<usize> = calls.iter().map(|w| w.body.as_array().unwrap().len()).collect();
    assert_eq!(sizes, [150, 150, 25], "no call above 150 units, none with a unit twice");
    assert_eq!(calls[0].query, "storefront=de");
    assert_eq!(calls[0].body[1], json!({ "id_unit": 5001, "unit_data": { "amount": 1 } }));
    assert_eq!(snap.stock[&Channel::Kaufland]["5007"], 44, "the last write of a unit wins");
    assert_eq!(snap.unauthorized.get(&Channel::Kaufland).copied().unwrap_or(0), 0);

    // Prices: integer cents of the storefront's currency; another currency is refused before any call.
    let price = |currency: &str, amount: &str| PriceUpdate {
        sku: Sku::new("SKU-00001").unwrap(),
        channel_sku: "SKU-00001".into(),
        amount: Amount::parse(amount, Currency::new(currency).unwrap()).unwrap(),
        currency: Currency::new(currency).unwrap(),
        channel_item_id: Some("5001".into()),
    };
    let outcome = kaufland.push_prices(&[price("EUR", "19.99")], &ctx("t")).await.unwrap();
    assert_eq!(outcome.delivered, ["SKU-00001"]);
    let snap = sim.snapshot();
    let last = writes_to(&snap, Channel::Kaufland, "/units/bulk").pop().unwrap().body.clone();
    assert_eq!(last, json!([{ "id_unit": 5001, "unit_data": { "listing_price": 1999 } }]));
    let outcome = kaufland.push_prices(&[price("CZK", "499.00")], &ctx("t")).await.unwrap();
    assert!(outcome.rejected[0].1.to_string().contains("EUR"), "{:?}", outcome.rejected);

    // Listings: every unit with its id, offer and amount, paged by offset.
    let mut cursor = None;
    let mut listed = Vec::new();
    loop {
        let page = kaufland.list_listings(cursor.as_deref(), &ctx("t")).await.unwrap();
        listed.extend(page.listings);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed.len(), 320);
    assert_eq!(listed[7].ids.listing.as_deref(), Some("5007"));
    assert_eq!(listed[7].quantity, Some(44));
    assert_eq!(
        kaufland.read_stock(&[StockRead::sku("SKU-00007")], &ctx("t")).await.unwrap(),
        [("SKU-00007".to_owned(), 44)]
    );
}

#[tokio::test]
async fn kaufland_orders_are_read_by_unit_listed_by_update_sent_and_cancelled_per_unit() {
    let sim = start(SimConfig::default()).await;
    sim.cap_order_pages(1);
    for (id, at) in [("KA1", "2026-11-20T09:16:00Z"), ("KA2", "2026-11-20T10:00:00Z"), ("KA3", "2026-11-19T10:00:00Z")]
    {
        sim.seed_order(Channel::Kaufland, kaufland_order(id, at)).unwrap();
    }
    let kaufland = connector(&sim, Channel::Kaufland, RateLimit::Unlimited, &[]);
    let doc = kaufland.fetch_order("KA1", &ctx("t")).await.unwrap();
    assert_eq!(doc["data"]["id_order"], "KA1");
    let unit = doc["data"]["order_units"][2]["id_order_unit"].to_string();
    assert_eq!(kaufland.fetch_order(&format!("unit:{unit}"), &ctx("t")).await.unwrap(), doc, "a unit names its order");

    let since = chrono::DateTime::parse_from_rfc3339("2026-11-20T09:16:00Z").unwrap().with_timezone(&Utc);
    let listed = kaufland.list_orders_since(since, &ctx("t")).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d["data"]["id_order"].as_str().unwrap()).collect();
    assert_eq!(ids, ["KA1", "KA2"], "inclusive bound, one order per page");

    // One tee ships: one of its two units is marked sent with the tracking number as one string.
    let shipment = Shipment {
        id: "s-1".into(),
        order_id: manifold_domain::OrderId::new("kaufland:it-account:KA1").unwrap(),
        channel: Channel::Kaufland,
        account: AccountId::new("it-account").unwrap(),
        channel_order_id: "KA1".into(),
        carrier: Some("DHL".into()),
        tracking_number: Some("00340434161094015902".into()),
        tracking_url: None,
        lines: vec![ShipmentLine { line_id: Some("TEE-BLK-M".into()), sku: None, quantity: 1 }],
        shipped_at: Utc::now(),
    };
    kaufland.push_tracking(&shipment, &ctx("t")).await.unwrap();
    let sent: Vec<Value> = {
        let snap = sim.snapshot();
        writes_to(&snap, Channel::Kaufland, "/send").iter().map(|w| w.body.clone()).collect()
    };
    assert_eq!(sent, [json!({ "tracking_numbers": "00340434161094015902", "carrier_code": "DHL" })]);

    // Cancelling takes the units not yet sent, with a reason from Kaufland's list.
    kaufland.cancel_order("KA1", "out of stock", &ctx("t")).await.unwrap();
    let snap = sim.snapshot();
    let cancels = writes_to(&snap, Channel::Kaufland, "/cancel");
    assert_eq!(cancels.len(), 2);
    assert!(cancels.iter().all(|w| w.body == json!({ "reason": "NoInventory" })));
    let statuses: Vec<&str> = snap.orders[&Channel::Kaufland][0].doc["data"]["order_units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "cancelled", "cancelled"]);
    let err = kaufland.cancel_order("KA1", "out of stock", &ctx("t")).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent, "nothing left to cancel: {err}");
}

/// An Amazon order from the Orders v0 fixtures, under `id`, with `status`.
fn amazon_order(id: &str, status: &str) -> Value {
    let order: Value = serde_json::from_str(include_str!(
        "../../shared/connectors/fixtures/outbound/orders-v0-getOrder-response-example.json"
    ))
    .unwrap();
    let items: Value = serde_json::from_str(include_str!(
        "../../shared/connectors/fixtures/outbound/orders-v0-getOrderItems-response-example.json"
    ))
    .unwrap();
    let mut order = order["payload"].clone();
    order["AmazonOrderId"] = json!(id);
    order["OrderStatus"] = json!(status);
    json!({ "order": order, "order_items": items["payload"]["OrderItems"] })
}

/// Asks about `submission` until Amazon has processed it; the simulator answers `IN_PROGRESS` once.
async fn processed(amazon: &Arc<dyn ChannelConnector>, submission: &Submission) -> PushOutcome {
    let mut pending = 0;
    loop {
        match amazon.submission_result(submission, &ctx("t-check")).await.unwrap() {
            SubmissionState::Pending => pending += 1,
            SubmissionState::Done(outcome) => {
                assert_eq!(pending, 1, "the simulator reports the feed in progress once, then done");
                return outcome;
            }
        }
        assert!(pending < 5, "the feed never finished processing");
    }
}

fn amazon_order_status(sim: &SimHandle, id: &str) -> (String, Value) {
    let snap = sim.snapshot();
    let order = snap.orders[&Channel::Amazon].iter().find(|o| o.id == id).expect("seeded").clone();
    (order.doc["order"]["OrderStatus"].as_str().unwrap().to_owned(), order.doc["_sim"].clone())
}

#[tokio::test]
async fn amazon_cancels_an_order_through_an_acknowledgement_feed_and_reads_its_report() {
    let sim = start(SimConfig::default()).await;
    sim.seed_order(Channel::Amazon, amazon_order("171-0000001-0000001", "Unshipped")).unwrap();
    let amazon = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[("cancel_reason", "GeneralAdjustment")]);

    let accepted = amazon.cancel_order("171-0000001-0000001", "out of stock", &ctx("t-cancel")).await.unwrap();
    let Accepted::Submitted(submission) = accepted else { panic!("Amazon cancels asynchronously: {accepted:?}") };
    assert_eq!(
        (submission.operation.as_str(), submission.items.as_slice()),
        ("cancel", &["171-0000001-0000001".to_owned()][..])
    );

    // What reached Amazon: the documented sequence, and the envelope naming every item with the reason.
    let snap = sim.snapshot();
    let document = writes_to(&snap, Channel::Amazon, "/feeds/2021-06-30/documents");
    assert_eq!(document[0].body, json!({ "contentType": "text/xml; charset=UTF-8" }));
    let upload = writes_to(&snap, Channel::Amazon, "/_upload/");
    let xml = upload[0].body.as_str().expect("the XML document as text");
    for part in [
        "<MessageType>OrderAcknowledgement</MessageType>",
        "<MerchantIdentifier>A2EUQ1WTGCTBG2</MerchantIdentifier>",
        "<AmazonOrderID>171-0000001-0000001</AmazonOrderID><StatusCode>Failure</StatusCode>",
        "<Item><AmazonOrderItemCode>68828574383266</AmazonOrderItemCode><CancelReason>GeneralAdjustment</CancelReason></Item>",
        "<Item><AmazonOrderItemCode>79039765272157</AmazonOrderItemCode><CancelReason>GeneralAdjustment</CancelReason></Item>",
    ] {
        assert!(xml.contains(part), "{part} missing from {xml}");
    }
    let feed = writes_to(&snap, Channel::Amazon, "/feeds/2021-06-30/feeds");
    assert_eq!(feed[0].body["feedType"], "POST_ORDER_ACKNOWLEDGEMENT_DATA");
    assert!(upload[0].path.ends_with(feed[0].body["inputFeedDocumentId"].as_str().unwrap()), "the uploaded document");

    let outcome = processed(&amazon, &submission).await;
    assert_eq!(outcome.delivered, ["171-0000001-0000001"]);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let (status, sim_notes) = amazon_order_status(&sim, "171-0000001-0000001");
    assert_eq!(status, "Canceled");
    assert_eq!(sim_notes["cancel_reason"], "GeneralAdjustment");
}

#[tokio::test]
async fn amazon_refuses_to_cancel_a_shipped_order_per_item_and_permanently() {
    let sim = start(SimConfig::default()).await;
    sim.seed_order(Channel::Amazon, amazon_order("171-0000002-0000001", "Shipped")).unwrap();
    let amazon = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[]);
    let Accepted::Submitted(submission) =
        amazon.cancel_order("171-0000002-0000001", "out of stock", &ctx("t")).await.unwrap()
    else {
        panic!("a feed is submitted");
    };
    let outcome = processed(&amazon, &submission).await;
    assert!(outcome.delivered.is_empty());
    let [(item, e)] = outcome.rejected.as_slice() else { panic!("one rejection: {:?}", outcome.rejected) };
    assert_eq!(item, "171-0000002-0000001");
    assert_eq!(e.class, FailureClass::Permanent, "{e}");
    assert!(e.message.contains("already shipped"), "{e}");
    assert_eq!(amazon_order_status(&sim, "171-0000002-0000001").0, "Shipped", "nothing changed");

    // A setting outside Amazon's list is refused before anything is sent.
    let writes = sim.snapshot().writes[&Channel::Amazon].len();
    let wrong = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[("cancel_reason", "OutOfStock")]);
    let e = wrong.cancel_order("171-0000002-0000001", "out of stock", &ctx("t")).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Permanent);
    assert_eq!(sim.snapshot().writes[&Channel::Amazon].len(), writes);
}

#[tokio::test]
async fn amazon_acknowledges_many_orders_in_one_feed_and_an_unknown_order_is_rejected_alone() {
    let sim = start(SimConfig::default()).await;
    sim.seed_order(Channel::Amazon, amazon_order("171-0000003-0000001", "Unshipped")).unwrap();
    sim.seed_order(Channel::Amazon, amazon_order("171-0000003-0000002", "Unshipped")).unwrap();
    let amazon = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[]);
    let ids: Vec<String> =
        ["171-0000003-0000001", "171-0000009-0000009", "171-0000003-0000002"].map(str::to_owned).into();
    let submitted = amazon.acknowledge_orders(&ids, &ctx("t-ack")).await.unwrap();
    let [submission] = submitted.as_slice() else { panic!("one feed for all orders: {submitted:?}") };
    assert_eq!(writes_to(&sim.snapshot(), Channel::Amazon, "/feeds/2021-06-30/feeds").len(), 1);
    let outcome = processed(&amazon, submission).await;
    assert_eq!(outcome.delivered, ["171-0000003-0000001", "171-0000003-0000002"]);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(
        (outcome.rejected[0].0.as_str(), outcome.rejected[0].1.class),
        ("171-0000009-0000009", FailureClass::Permanent)
    );
    let (status, notes) = amazon_order_status(&sim, "171-0000003-0000002");
    assert_eq!((status.as_str(), &notes["acknowledged"]), ("Unshipped", &json!(true)));
}

#[tokio::test]
async fn an_amazon_listings_feed_with_an_unknown_sku_rejects_only_that_sku() {
    let sim = start(SimConfig::default()).await;
    let catalog: Vec<CatalogItem> = (0..12)
        .filter(|i| *i != 7)
        .map(|i| CatalogItem {
            id: format!("SKU-{i:05}"),
            sku: format!("SKU-{i:05}"),
            quantity: 0,
            product_id: None,
            variant_id: None,
            price_minor: None,
        })
        .collect();
    sim.seed_catalog(Channel::Amazon, catalog);
    let amazon = connector(&sim, Channel::Amazon, RateLimit::Unlimited, &[("feed_threshold", "10")]);
    let pushed = amazon.push_stock(&items(12, |_| None), &ctx("t-feed")).await.unwrap();
    assert_eq!(pushed.delivered.len(), 12, "accepted with the feed");
    let [submission] = pushed.submitted.as_slice() else { panic!("the feed is reported: {pushed:?}") };
    assert_eq!(submission.operation, "stock");
    let outcome = processed(&amazon, submission).await;
    assert_eq!(outcome.delivered.len(), 11);
    let [(sku, e)] = outcome.rejected.as_slice() else { panic!("one rejection: {:?}", outcome.rejected) };
    assert_eq!((sku.as_str(), e.class), ("SKU-00007", FailureClass::Permanent));
    assert!(e.message.contains("4000001"), "{e}");
}

#[tokio::test]
async fn the_amazon_simulator_refuses_a_malformed_order_feed() {
    let sim = start(SimConfig::default()).await;
    let http = reqwest::Client::new();
    let base = sim.base_url(Channel::Amazon);
    let doc: Value = http
        .post(format!("{base}/feeds/2021-06-30/documents"))
        .header("x-amz-access-token", "t")
        .json(&json!({ "contentType": "text/xml; charset=UTF-8" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = doc["url"].as_str().unwrap();
    let put = |body: &'static str| http.put(url).header("content-type", "text/xml; charset=UTF-8").body(body).send();
    assert_eq!(put("<AmazonEnvelope><Header>").await.unwrap().status(), 400, "not well-formed");
    assert_eq!(put("<AmazonEnvelope><Header><MerchantIdentifier>A</MerchantIdentifier></Header><MessageType>Inventory</MessageType></AmazonEnvelope>").await.unwrap().status(), 400, "not an order acknowledgement");
    assert_eq!(put("<AmazonEnvelope><Header><MerchantIdentifier>A</MerchantIdentifier></Header><MessageType>OrderAcknowledgement</MessageType><Message><MessageID>1</MessageID><OrderAcknowledgement><AmazonOrderID>1</AmazonOrderID><StatusCode>Success</StatusCode></OrderAcknowledgement></Message></AmazonEnvelope>").await.unwrap().status(), 200);
}

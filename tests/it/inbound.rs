//! Inbound end to end against moto: signed webhooks through the real handler, the ingest consumer,
//! DynamoDB and the event bus; thin notifications completed through the channel simulator.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use http::{HeaderMap, HeaderValue};
use manifold_app::{App, app::Settings};
use manifold_aws::secrets::StaticSecrets;
use manifold_connectors::verify::sign;
use manifold_domain::{Channel, OrderId, OrderStatus, config::ChannelConfig};
use manifold_simulator::{SimConfig, SimHandle, Simulator};

use crate::support::{Stack, lambda_event};

use crate::fixtures::{
    AMAZON_ITEMS, AMAZON_NOTIFICATION, AMAZON_ORDER, BC_ADDRESSES, BC_ORDER, BC_PRODUCTS, BC_WEBHOOK, ETSY_SECRET,
    EXAMPLE, SECRET, SHOPIFY_ORDER,
};

/// The token entered with the eBay notification destination (32 to 80 of `[A-Za-z0-9_-]`).
const EBAY_VERIFICATION_TOKEN: &str = "manifold_verification_token_0123456789";

/// A private stack, the simulator, and an App wired to both (shared with the pipeline tests).
pub(crate) struct Harness {
    pub(crate) stack: Stack,
    pub(crate) app: App,
    pub(crate) sim: SimHandle,
    /// What `app` was built from, so a test can cold-start another context on the same stack.
    config: ChannelConfig,
    secrets: HashMap<String, String>,
    settings: Settings,
}

impl Harness {
    pub(crate) async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// A harness whose example configuration is first adjusted by `adjust`.
    pub(crate) async fn with_config(adjust: impl FnOnce(&mut ChannelConfig)) -> Self {
        Self::with_settings(adjust, |_| {}).await
    }

    /// A harness whose example configuration and application settings are first adjusted.
    pub(crate) async fn with_settings(
        adjust: impl FnOnce(&mut ChannelConfig),
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let stack = Stack::new().await;
        let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
        let mut config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        adjust(&mut config);
        let mut secrets = HashMap::new();
        for a in &mut config.accounts {
            a.endpoint = sim.base_url(a.channel);
            secrets.insert(a.secret.clone(), crate::fixtures::account_secret(a.channel));
        }
        for w in &config.webhooks {
            secrets.insert(w.secret.clone(), crate::fixtures::WEBHOOK_SIGNING_SECRET.to_owned());
        }
        // CRM accounts reach the simulator's HubSpot (or keep their own webhook endpoint).
        for c in &mut config.crms {
            if c.kind == manifold_domain::customers::CrmKind::Hubspot {
                c.endpoint = sim.hubspot_url();
                let creds = serde_json::json!({
                    "token": manifold_simulator::hubspot::DEFAULT_TOKEN,
                    "client_secret": crate::fixtures::HUBSPOT_CLIENT_SECRET
                });
                secrets.insert(c.secret.clone(), creds.to_string());
            } else {
                secrets.insert(c.secret.clone(), crate::fixtures::WEBHOOK_SIGNING_SECRET.to_owned());
            }
        }
        let mut settings = Settings {
            max_body_bytes: 64 * 1024,
            emulator_safe_ledger: true,
            crm_queue_url: Some(crate::support::create_queue(&stack.sqs, "crm").await),
            customers_queue_url: Some(crate::support::create_queue(&stack.sqs, "customers").await),
            ingest_dlq_url: Some(crate::support::create_queue(&stack.sqs, "ingest-dlq").await),
            ..Settings::default()
        };
        tune(&mut settings);
        let app = Self::build(&stack, &config, &secrets, &settings);
        Self { stack, app, sim, config, secrets, settings }
    }

    fn build(stack: &Stack, config: &ChannelConfig, secrets: &HashMap<String, String>, settings: &Settings) -> App {
        let secrets = Arc::new(StaticSecrets(secrets.clone()));
        App::build(config.clone(), stack.env.clone(), settings.clone(), &stack.sdk, secrets).unwrap()
    }

    /// An application context on the same stack, simulator and configuration that reads its secrets
    /// from `secrets` (Secrets Manager in moto, say) instead of the harness's fixed ones.
    pub(crate) fn with_secrets(&self, secrets: Arc<dyn manifold_aws::secrets::SecretSource>) -> App {
        App::build(self.config.clone(), self.stack.env.clone(), self.settings.clone(), &self.stack.sdk, secrets)
            .unwrap()
    }

    /// A new application context on the same stack, simulator and configuration, as a function's
    /// cold start builds it: no port built yet.
    pub(crate) fn cold_start(&self) -> App {
        Self::build(&self.stack, &self.config, &self.secrets, &self.settings)
    }

    /// Runs the ingest consumer over what the webhook enqueued, as the event source mapping would.
    pub(crate) async fn run_ingest(&self) -> usize {
        let url = self.stack.env.ingest_queue_url.clone();
        let messages = self.stack.drain(&url).await;
        if !messages.is_empty() {
            let response = self.app.ingest_batch(lambda_event(&messages)).await;
            assert!(
                response.batch_item_failures.is_empty(),
                "ingest failures: {:?}",
                response.batch_item_failures.len()
            );
        }
        messages.len()
    }
}

pub(crate) fn shopify_headers(body: &[u8], event_id: &str, topic: &str) -> HeaderMap {
    let mut h =
        sign(Channel::Shopify, SECRET, &std::collections::BTreeMap::default(), event_id, body, Utc::now()).unwrap();
    h.insert("x-shopify-event-id", HeaderValue::from_str(event_id).unwrap());
    h.insert("x-shopify-topic", HeaderValue::from_str(topic).unwrap());
    h
}

/// A Shopify webhook body: the REST order object, unwrapped.
pub(crate) fn shopify_body() -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    serde_json::to_vec(&v["order"]).unwrap()
}

pub(crate) fn shopify_order_id() -> OrderId {
    OrderId::new("shopify:shop-eu:1073459981").unwrap()
}

#[tokio::test]
async fn a_signed_webhook_gives_one_stored_order_and_one_event() {
    let h = Harness::new().await;
    let body = shopify_body();
    let response = h
        .app
        .handle_webhook("shopify", "shop-eu", &shopify_headers(&body, "evt-1", "orders/create"), &body, Utc::now())
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(h.run_ingest().await, 1);

    let order = h.app.records.get_order(&shopify_order_id()).await.unwrap().expect("order stored");
    assert_eq!(order.channel, Channel::Shopify);
    assert_eq!(order.customer.email.as_deref(), Some("jane@example.com"));
    let events = h.stack.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "OrderAccepted");
    assert_eq!(events[0]["detail"]["data"]["id"], "shopify:shop-eu:1073459981");
    assert_eq!(events[0]["detail"]["trace_id"], response.trace_id, "the event carries the webhook's trace id");
    // The stored record is findable by its trace id.
    let traced = h.app.records.by_trace(&response.trace_id).await.unwrap();
    assert_eq!(traced.len(), 1);
    // Its cost is counted for `manifold usage`, from the calls ingest made for it as the SDK counted
    // them: the order read, the transaction (order, ingest key, outbox), the event, its sent mark.
    let today = Utc::now().date_naive();
    let usage = h.app.state.usage("shopify", today, today).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].orders, usage[0].aws_requests, usage[0].api_calls), (1, 4, 0));
    assert!(usage[0].micro_usd > 0.0);
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_webhook_give_one_order_and_one_event() {
    let h = Arc::new(Harness::new().await);
    let body = Arc::new(shopify_body());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (h, body) = (h.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            h.app
                .handle_webhook(
                    "shopify",
                    "shop-eu",
                    &shopify_headers(&body, "evt-dup", "orders/create"),
                    &body,
                    Utc::now(),
                )
                .await
                .status
        }));
    }
    let statuses: Vec<u16> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    assert!(statuses.contains(&200));
    assert_eq!(h.run_ingest().await, 1, "exactly one delivery reached the queue");
    assert!(h.app.records.get_order(&shopify_order_id()).await.unwrap().is_some());
    assert_eq!(h.stack.events().await.len(), 1);

    // A late retry of the same delivery is acknowledged and enqueues nothing.
    let again = h
        .app
        .handle_webhook("shopify", "shop-eu", &shopify_headers(&body, "evt-dup", "orders/create"), &body, Utc::now())
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(h.run_ingest().await, 0);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_stores_nothing() {
    let h = Harness::new().await;
    let body = shopify_body();
    let mut headers = shopify_headers(&body, "evt-bad", "orders/create");
    headers.insert("x-shopify-hmac-sha256", HeaderValue::from_static("bm90IHRoZSByaWdodCBzaWduYXR1cmU="));
    let response = h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await;
    assert_eq!(response.status, 401);
    headers.remove("x-shopify-hmac-sha256");
    assert_eq!(h.app.handle_webhook("shopify", "shop-eu", &headers, &body, Utc::now()).await.status, 401);
    assert_eq!(h.run_ingest().await, 0);
    assert!(h.app.quarantine.list(true).await.unwrap().is_empty(), "an unauthenticated body is not kept");
}

#[tokio::test]
async fn unknown_routes_oversized_bodies_and_pings_get_their_status() {
    let h = Harness::new().await;
    let body = shopify_body();
    let headers = shopify_headers(&body, "evt-x", "orders/create");
    assert_eq!(h.app.handle_webhook("myspace", "shop-eu", &headers, &body, Utc::now()).await.status, 404);
    assert_eq!(h.app.handle_webhook("shopify", "nobody", &headers, &body, Utc::now()).await.status, 404);
    let big = vec![b' '; 70 * 1024];
    assert_eq!(
        h.app
            .handle_webhook("shopify", "shop-eu", &shopify_headers(&big, "evt-big", "orders/create"), &big, Utc::now())
            .await
            .status,
        413
    );
    let ping = b"webhook_id=42";
    assert_eq!(h.app.handle_webhook("woocommerce", "woo-main", &HeaderMap::new(), ping, Utc::now()).await.status, 200);
    assert_eq!(h.run_ingest().await, 0, "nothing of these is enqueued");
}

#[tokio::test]
async fn a_signed_but_malformed_payload_lands_in_quarantine() {
    let h = Harness::new().await;
    // Not JSON at all: refused at the edge with 400, and kept.
    let body = b"{\"id\": 1, truncated";
    let response = h
        .app
        .handle_webhook("shopify", "shop-eu", &shopify_headers(body, "evt-m1", "orders/create"), body, Utc::now())
        .await;
    assert_eq!(response.status, 400);
    // JSON, but an order that cannot be normalized: accepted, then quarantined by the consumer.
    let mut order: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    order["order"]["line_items"][0]["quantity"] = serde_json::json!("many");
    let body = serde_json::to_vec(&order["order"]).unwrap();
    let response = h
        .app
        .handle_webhook("shopify", "shop-eu", &shopify_headers(&body, "evt-m2", "orders/create"), &body, Utc::now())
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(h.run_ingest().await, 1);

    let kept = h.app.quarantine.list(false).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|q| q.stage == "webhook" && q.reason.contains("not JSON")));
    let normalize = kept.iter().find(|q| q.stage == "normalize").expect("normalize failure kept");
    assert!(normalize.reason.contains("line_items[0].quantity"), "{}", normalize.reason);
    assert!(normalize.payload.contains("\\\"many\\\""), "the exact payload is kept for replay");
    assert!(h.stack.events().await.is_empty());
}

#[tokio::test]
async fn an_out_of_order_update_never_regresses_the_order() {
    let h = Harness::new().await;
    let mut newer: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    newer["order"]["updated_at"] = serde_json::json!("2030-01-02T00:00:00Z");
    newer["order"]["cancelled_at"] = serde_json::json!("2030-01-02T00:00:00Z");
    newer["order"]["cancel_reason"] = serde_json::json!("customer");
    let newer = serde_json::to_vec(&newer["order"]).unwrap();
    let older = shopify_body();
    // orders/updated (cancelled, newer) arrives before orders/create (older).
    assert_eq!(
        h.app
            .handle_webhook(
                "shopify",
                "shop-eu",
                &shopify_headers(&newer, "evt-u", "orders/updated"),
                &newer,
                Utc::now()
            )
            .await
            .status,
        200
    );
    h.run_ingest().await;
    assert_eq!(
        h.app
            .handle_webhook(
                "shopify",
                "shop-eu",
                &shopify_headers(&older, "evt-c", "orders/create"),
                &older,
                Utc::now()
            )
            .await
            .status,
        200
    );
    h.run_ingest().await;
    let stored = h.app.records.get_order(&shopify_order_id()).await.unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Cancelled, "the older create did not regress the cancelled order");
    let kinds: Vec<String> =
        h.stack.events().await.iter().map(|e| e["detail-type"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(kinds, vec!["OrderCancelled"], "the stale create published nothing");
}

#[tokio::test]
async fn a_thin_bigcommerce_notification_is_completed_through_the_connector() {
    let h = Harness::new().await;
    // Serve the published order 218 (with products and addresses) from the simulator.
    let combined = serde_json::json!({
        "order": serde_json::from_str::<serde_json::Value>(BC_ORDER).unwrap(),
        "products": serde_json::from_str::<serde_json::Value>(BC_PRODUCTS).unwrap(),
        "shipping_addresses": serde_json::from_str::<serde_json::Value>(BC_ADDRESSES).unwrap(),
    });
    h.sim.seed_order(Channel::Bigcommerce, combined).unwrap();
    let mut hook: serde_json::Value = serde_json::from_str(BC_WEBHOOK).unwrap();
    hook["data"]["id"] = serde_json::json!(218);
    let body = serde_json::to_vec(&hook).unwrap();
    let headers =
        sign(Channel::Bigcommerce, SECRET, &std::collections::BTreeMap::default(), "", &body, Utc::now()).unwrap();
    let response = h.app.handle_webhook("bigcommerce", "store-abc123", &headers, &body, Utc::now()).await;
    assert_eq!(response.status, 200, "{response:?}");
    h.run_ingest().await;
    let order = h
        .app
        .records
        .get_order(&OrderId::new("bigcommerce:store-abc123:218").unwrap())
        .await
        .unwrap()
        .expect("fetched and stored");
    assert!(!order.lines.is_empty());
    assert!(
        h.sim.snapshot().requests.get(&Channel::Bigcommerce).copied().unwrap_or(0) >= 3,
        "order, products and addresses were fetched"
    );
    assert_eq!(h.stack.events().await.len(), 1);
}

/// Seeds the SP-API sandbox order (TEST_CASE_200) in the simulator and delivers its ORDER_CHANGE
/// notification `deliveries` times (standard SQS may deliver twice) through an SQS queue named
/// `queue` to the Amazon consumer, as Amazon would. Returns the Amazon order id.
pub(crate) async fn amazon_order_notified(h: &Harness, queue: &str, deliveries: usize) -> String {
    amazon_order_notified_with(h, queue, deliveries, |_| {}).await
}

/// [`amazon_order_notified`] with the sandbox order's `payload` first changed by `adjust`.
pub(crate) async fn amazon_order_notified_with(
    h: &Harness,
    queue: &str,
    deliveries: usize,
    adjust: impl FnOnce(&mut serde_json::Value),
) -> String {
    let mut order: serde_json::Value = serde_json::from_str(AMAZON_ORDER).unwrap();
    adjust(&mut order["payload"]);
    let items: serde_json::Value = serde_json::from_str(AMAZON_ITEMS).unwrap();
    let order_id = order["payload"]["AmazonOrderId"].as_str().unwrap().to_owned();
    h.sim
        .seed_order(
            Channel::Amazon,
            serde_json::json!({"order": order["payload"], "order_items": items["payload"]["OrderItems"]}),
        )
        .unwrap();
    let mut note: serde_json::Value = serde_json::from_str(AMAZON_NOTIFICATION).unwrap();
    note["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = serde_json::json!(order_id);
    note["Payload"]["OrderChangeNotification"]["SellerId"] = serde_json::json!("A2EUQ1WTGCTBG2");
    let queue = crate::support::create_queue(&h.stack.sqs, queue).await;
    for _ in 0..deliveries {
        h.stack.sqs.send_message().queue_url(&queue).message_body(note.to_string()).send().await.unwrap();
    }
    let messages = h.stack.drain(&queue).await;
    assert!(h.app.amazon_batch(lambda_event(&messages)).await.batch_item_failures.is_empty());
    order_id
}

#[tokio::test]
async fn amazon_notifications_from_sqs_join_the_same_ingest_path() {
    let h = Harness::new().await;
    // Delivered twice, as standard SQS may: one order, one event.
    let order_id = amazon_order_notified(&h, "amazon", 2).await;
    let stored = h
        .app
        .records
        .get_order(&OrderId::new(format!("amazon:A2EUQ1WTGCTBG2:{order_id}")).unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.currency.as_str(), "USD");
    // Events are published at least once: a duplicate racing the original may publish the pending
    // event again, always under the same id, which is what consumers deduplicate on.
    let ids: std::collections::BTreeSet<String> = h
        .stack
        .events()
        .await
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one event: {ids:?}");
}

/// Amazon expects each order a seller downloads to be acknowledged. The stored order's
/// acknowledgement goes out through the Amazon push queue as an order-acknowledgement feed; its check
/// reads the processing report. A duplicated notification may queue it twice: harmless, and still
/// no order is left unacknowledged.
#[tokio::test]
async fn an_amazon_order_taken_in_is_acknowledged_through_a_feed() {
    let h = Harness::with_settings(|_| {}, |s| s.push.feed_check_delay = std::time::Duration::from_secs(1)).await;
    let order_id = amazon_order_notified(&h, "amazon-ack", 2).await;
    let url = h.stack.env.push_queues[&Channel::Amazon].clone();
    crate::support::eventually("the order acknowledged on Amazon", std::time::Duration::from_secs(90), || async {
        manifold_app::local::poll_once(&h.app.sqs, &url, |e| h.app.push_batch(Channel::Amazon, e)).await.unwrap();
        let settled = crate::support::queue_depth(&h.stack.sqs, &url).await == 0;
        let snap = h.sim.snapshot();
        let acknowledged = snap.orders[&Channel::Amazon].iter().any(|o| o.id == order_id && o.exported);
        (settled && acknowledged).then_some(())
    })
    .await;
    let snap = h.sim.snapshot();
    let feeds: Vec<_> =
        snap.writes[&Channel::Amazon].iter().filter(|w| w.path.ends_with("/feeds/2021-06-30/feeds")).collect();
    assert!((1..=2).contains(&feeds.len()), "one feed per push batch: {feeds:?}");
    assert!(feeds.iter().all(|f| f.body["feedType"] == "POST_ORDER_ACKNOWLEDGEMENT_DATA"), "{feeds:?}");
    let quarantined = h.app.quarantine.list(false).await.unwrap();
    assert!(quarantined.iter().all(|q| q.channel != "amazon"), "{quarantined:?}");
}

#[tokio::test]
async fn zalando_orders_are_polled_and_marked_exported_only_after_they_are_stored() {
    let h = Harness::new().await;
    let doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/normalize/fixtures/zalando/order-jsonapi-written-from-docs.json"
    ))
    .unwrap();
    let id = h.sim.seed_order(Channel::Zalando, doc).unwrap();
    let report = h.app.poll_zalando(Utc::now()).await.unwrap();
    assert_eq!((report.fetched, report.stored, report.acknowledged), (1, 1, 1), "{report:?}");
    assert!(
        h.app
            .records
            .get_order(&OrderId::new(format!("zalando:merchant-zde-1:{id}")).unwrap())
            .await
            .unwrap()
            .is_some()
    );
    // Exported now: the next poll finds nothing new.
    let again = h.app.poll_zalando(Utc::now()).await.unwrap();
    assert_eq!(again.fetched, 0);
}

/// Sends a signed webhook for `channel`, runs the ingest consumer, and returns the stored order.
async fn deliver(
    h: &Harness,
    channel: Channel,
    account: &str,
    headers: HeaderMap,
    body: &[u8],
) -> manifold_domain::Order {
    let response = h.app.handle_webhook(channel.as_str(), account, &headers, body, Utc::now()).await;
    assert_eq!(response.status, 200, "{channel}: {response:?}");
    assert_eq!(h.run_ingest().await, 1, "{channel}: one delivery enqueued");
    let events = h.stack.events().await;
    let quarantined: Vec<String> = h.app.quarantine.list(false).await.unwrap().into_iter().map(|q| q.reason).collect();
    assert_eq!(events.len(), 1, "{channel}: no event; quarantined: {quarantined:?}");
    let id = events[0]["detail"]["data"]["id"].as_str().expect("order id").to_owned();
    h.app.records.get_order(&OrderId::new(id).unwrap()).await.unwrap().expect("stored")
}

fn settings(h: &Harness, channel: Channel) -> std::collections::BTreeMap<String, String> {
    h.app.live_config.snapshot().enabled_accounts().find(|a| a.channel == channel).unwrap().settings.clone()
}

#[tokio::test]
async fn woocommerce_etsy_tiktok_and_ebay_webhooks_reach_the_store_too() {
    let h = Harness::new().await;
    let now = Utc::now();

    // WooCommerce: the full REST order, signed with the webhook secret.
    let woo = include_bytes!("../../shared/normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json");
    let mut headers = sign(Channel::Woocommerce, SECRET, &settings(&h, Channel::Woocommerce), "", woo, now).unwrap();
    headers.insert("x-wc-webhook-topic", HeaderValue::from_static("order.created"));
    headers.insert("x-wc-webhook-delivery-id", HeaderValue::from_static("woo-delivery-1"));
    let order = deliver(&h, Channel::Woocommerce, "woo-main", headers, woo).await;
    assert_eq!(order.id.as_str(), "woocommerce:woo-main:727");

    // Etsy: a thin Standard Webhooks notification; the receipt is fetched back.
    let receipt: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/normalize/fixtures/etsy/receipt-written-from-v3-schema.json"))
            .unwrap();
    h.sim.seed_order(Channel::Etsy, receipt).unwrap();
    let etsy = serde_json::to_vec(&serde_json::json!({
        "event_type": "order.paid",
        "resource_url": "https://openapi.etsy.com/v3/application/shops/12345678/receipts/1234567890",
        "shop_id": 12_345_678
    }))
    .unwrap();
    let headers = sign(Channel::Etsy, ETSY_SECRET, &settings(&h, Channel::Etsy), "msg_etsy_1", &etsy, now).unwrap();
    let order = deliver(&h, Channel::Etsy, "shop-12345678", headers, &etsy).await;
    assert_eq!(order.id.as_str(), "etsy:shop-12345678:1234567890");

    // TikTok Shop: signed with app key + body; the order detail is fetched back.
    let detail: serde_json::Value = serde_json::from_str(include_str!(
        "../../shared/normalize/fixtures/tiktok/order-detail-202309-written-from-docs.json"
    ))
    .unwrap();
    h.sim.seed_order(Channel::Tiktok, detail).unwrap();
    let tiktok = include_bytes!("../../shared/normalize/fixtures/tiktok/webhook-order-status-written-from-docs.json");
    let headers = sign(Channel::Tiktok, SECRET, &settings(&h, Channel::Tiktok), "", tiktok, now).unwrap();
    let order = deliver(&h, Channel::Tiktok, "7000714532876273420", headers, tiktok).await;
    assert_eq!(order.id.as_str(), "tiktok:7000714532876273420:576461413038785752");

    // eBay: ECDSA over the body; the verifier fetches the public key by kid (from the simulator).
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let pem =
        p256::pkcs8::EncodePublicKey::to_public_key_pem(key.verifying_key(), p256::pkcs8::LineEnding::LF).unwrap();
    let put = reqwest::Client::new()
        .put(format!("{}/_sim/ebay/public_key/kid-test", h.sim.url()))
        .json(&serde_json::json!({ "key": pem }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let ebay_order: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/normalize/fixtures/ebay/getorder-written-from-docs.json"))
            .unwrap();
    h.sim.seed_order(Channel::Ebay, ebay_order).unwrap();
    let ebay = include_bytes!("../../shared/normalize/fixtures/ebay/notification-order-written-from-docs.json");
    let signature =
        manifold_connectors::verify::sign_ebay(&key, "kid-test", manifold_connectors::verify::EbayDigest::Sha1, ebay)
            .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-ebay-signature", HeaderValue::from_str(&signature).unwrap());
    let order = deliver(&h, Channel::Ebay, "ebay-de", headers, ebay).await;
    assert_eq!(order.id.as_str(), "ebay:ebay-de:12-03456-78901");
}

#[tokio::test]
async fn ebay_endpoint_validation_answers_the_documented_challenge_response() {
    // Given eBay validating https://hooks.example.com/v1/webhooks/ebay/ebay-de with challenge code "a8628072-3d33".
    let h = Harness::new().await;
    let url = "https://hooks.example.com/v1/webhooks/ebay/ebay-de?challenge_code=a8628072-3d33";
    let body = h.app.ebay_challenge("ebay-de", "a8628072-3d33", url).await.expect("answered");
    // Then the answer is hex(SHA-256(challengeCode + verificationToken + endpoint)), the endpoint without its query.
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            format!("a8628072-3d33{EBAY_VERIFICATION_TOKEN}https://hooks.example.com/v1/webhooks/ebay/ebay-de")
                .as_bytes(),
        ))
    };
    assert_eq!(body, serde_json::json!({ "challengeResponse": expected }));
    // An unknown account is 404 and an empty code 400: nothing is hashed for them.
    assert_eq!(h.app.ebay_challenge("nope", "x", url).await.unwrap_err().status, 404);
    assert_eq!(h.app.ebay_challenge("ebay-de", "", url).await.unwrap_err().status, 400);
}

#[tokio::test]
async fn a_bigcommerce_shipment_notification_fetches_the_shipment_and_stores_it() {
    const BC_SHIPMENT_WEBHOOK: &str =
        include_str!("../../shared/normalize/fixtures/bigcommerce/webhook-store-shipment-created.json");
    let h = Harness::new().await;
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let (products, addresses) = (json(BC_PRODUCTS), json(BC_ADDRESSES));
    h.sim
        .seed_order(
            Channel::Bigcommerce,
            serde_json::json!({ "order": json(BC_ORDER), "products": products, "shipping_addresses": addresses }),
        )
        .unwrap();
    // The merchant ships part of order 218 in BigCommerce, which then sends store/shipment/created.
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v2/orders/218/shipments", h.sim.base_url(Channel::Bigcommerce)))
        .header("x-auth-token", "token")
        .json(&serde_json::json!({
            "order_address_id": addresses[0]["id"],
            "tracking_number": "1Z999AA10123456784",
            "shipping_provider": "ups",
            "items": [{ "order_product_id": products[0]["id"], "quantity": 1 }],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let notify = |shipment_id: &serde_json::Value| {
        let mut hook = json(BC_SHIPMENT_WEBHOOK);
        hook["data"]["orderId"] = serde_json::json!(218);
        hook["data"]["id"] = shipment_id.clone();
        hook["hash"] = serde_json::json!(format!("shipment-{shipment_id}"));
        serde_json::to_vec(&hook).unwrap()
    };

    let body = notify(&created["id"]);
    let headers =
        sign(Channel::Bigcommerce, SECRET, &std::collections::BTreeMap::default(), "", &body, Utc::now()).unwrap();
    let response = h.app.handle_webhook("bigcommerce", "store-abc123", &headers, &body, Utc::now()).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(h.run_ingest().await, 1);

    let quarantined: Vec<String> = h.app.quarantine.list(false).await.unwrap().into_iter().map(|q| q.reason).collect();
    assert!(quarantined.is_empty(), "nothing quarantined: {quarantined:?}");
    let events = h.stack.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = &events[0]["detail"];
    assert_eq!(detail["kind"], "ShipmentCreated");
    // The data is the Shipment itself, exactly what the ledger's ShipmentCreated handler decodes.
    let shipment: manifold_domain::Shipment =
        serde_json::from_value(detail["data"].clone()).unwrap_or_else(|e| panic!("a bare shipment: {e}: {detail}"));
    assert_eq!(shipment.id, created["id"].to_string());
    assert_eq!(shipment.order_id, OrderId::new("bigcommerce:store-abc123:218").unwrap());
    assert_eq!(shipment.tracking_number.as_deref(), Some("1Z999AA10123456784"));
    assert_eq!(shipment.lines.len(), 1);
    assert_eq!(shipment.lines[0].line_id, Some(products[0]["id"].to_string()));
    assert_eq!(shipment.lines[0].quantity, 1);
    let stored = h.app.records.by_trace(detail["trace_id"].as_str().unwrap()).await.unwrap();
    let record = stored.iter().find(|r| r.kind == "shipment").expect("the shipment is stored");
    let record: manifold_domain::Record = serde_json::from_value(record.record.clone()).unwrap();
    assert_eq!(record, manifold_domain::Record::Shipment(shipment));

    // A notification naming a shipment BigCommerce does not have is a 404 there: quarantined, not retried.
    let body = notify(&serde_json::json!(999_999));
    let headers =
        sign(Channel::Bigcommerce, SECRET, &std::collections::BTreeMap::default(), "", &body, Utc::now()).unwrap();
    let response = h.app.handle_webhook("bigcommerce", "store-abc123", &headers, &body, Utc::now()).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(h.run_ingest().await, 1);
    let quarantined = h.app.quarantine.list(false).await.unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].reason.contains("999999"), "{}", quarantined[0].reason);
    assert!(h.stack.events().await.is_empty(), "no event for the missing shipment");
}

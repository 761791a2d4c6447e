//! Least privilege, proven: every AWS call each function makes is allowed by that function's own role,
//! and the role grants nothing the function does not call.
//!
//! moto does not enforce IAM as AWS does, so a missing grant only shows in a deployment (AccessDenied, the
//! message in a DLQ). Here each function of the transformed template runs the handlers its binary runs,
//! in a representative scenario against the stack in moto (`MANIFOLD_STACK`, created by
//! `infra/local/stack.py` from template.yaml), with the channel simulators on loopback. Each function's
//! `App` talks to moto through its own port of a recording proxy ([`crate::awsproxy`]), so every call is
//! attributed to the function that made it, as IAM action and resource ARN. `infra/local/iam_check.py` then
//! evaluates each call against that function's role policies from the template, resolved to the stack's
//! physical ARNs, with moto's IAM policy evaluator. Any call not allowed fails, and so does any grant no
//! call used, any `*` action, and any `*` resource outside the actions that have no resource-level
//! permissions. A second evaluation without one needed grant shows the check really fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use manifold_app::{
    App, IngestEnvelope, Source,
    app::Settings,
    config::{ConfigSource, LiveConfig},
    push::PushMessage,
    sync::{
        Slot, SyncKind, SyncRun, Trigger as RunTrigger,
        job::{PageMessage, PageOutcome},
    },
};
use manifold_aws::{
    AwsEnv,
    config_store::S3ConfigStore,
    secrets::{CachedSecrets, SecretsManager, StaticSecrets},
};
use manifold_connectors::verify::sign;
use manifold_domain::{
    AccountId, Channel, OrderId, OversellAction, Sku,
    config::{Bundle, BundleComponent, Cadence, ChannelConfig, SyncCadences},
};
use manifold_ledger::{Ledger, PositionKey, fanout::PushJob};
use manifold_simulator::{CatalogItem, FaultKind, FaultSpec, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::{
    awsproxy::{AwsProxy, Call, FaultKind as AwsFault, Trigger},
    support,
};

use crate::fixtures::{
    AMAZON_ITEMS, AMAZON_NOTIFICATION, AMAZON_ORDER, BC_ADDRESSES, BC_ORDER, BC_PRODUCTS, BC_WEBHOOK, ETSY_SECRET,
    EXAMPLE, SECRET, SHOPIFY_ORDER,
};

const ZALANDO_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/zalando/order-jsonapi-written-from-docs.json");

/// Grants a role needs that this scenario cannot make the code use, with the reason.
const NOT_EXERCISED: &[(&str, &str)] = &[(
    "secretsmanager:PutSecretValue",
    "written only when a channel rotates a refresh token (the token tests cover the write-back)",
)];

/// Actions IAM authorizes on no resource but `*` (no resource-level permissions).
const STAR_ONLY: &[&str] = &["cloudwatch:PutMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `shopify` -> `Shopify`, the spelling of logical ids.
/// The stack's names, the proxy, the simulator and the configuration every function shares.
struct Scenario {
    proxy: Arc<AwsProxy>,
    sim: SimHandle,
    env: AwsEnv,
    config: ChannelConfig,
    sdk: aws_config::SdkConfig,
    /// An App on moto directly, for setup and reads that no function makes (not recorded).
    direct: App,
    /// A prefix that keeps this run's orders, SKUs and secrets apart from every other run's.
    run: String,
}

impl Scenario {
    async fn new() -> Self {
        let sdk = support::aws().await;
        let env = AwsEnv::from_env()
            .expect("the stack's names: run through infra/local/test.sh, or `set -a; source .local/stack.env; set +a`");
        // The account id moto gives the stack, from one of its queue URLs.
        let account =
            env.ingest_queue_url.trim_end_matches('/').rsplit('/').nth(1).unwrap_or("123456789012").to_owned();
        let proxy = AwsProxy::new(&support::endpoint(), &account);
        let sim = Simulator::start(Channel::ALL.iter().fold(SimConfig::default(), |c, ch| c.unlimited(*ch)))
            .await
            .expect("simulator");
        let run = support::unique("iam").replace('-', "");
        let mut config = ChannelConfig::parse("channels.example.toml", EXAMPLE).unwrap();
        // The SKUs the push functions push, listed on every channel (WooCommerce and Etsy write by item id).
        let listed = [("PUSH-REFUSED", "9001"), ("PUSH-DELIVERED", "9002")]
            .map(|(name, id)| (format!("{}-{name}", run.to_uppercase()), id.to_owned()));
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        for a in &mut config.accounts {
            a.endpoint = sim.base_url(a.channel);
            // Under `manifold/`, as deployed, but this run's own: other tests write the shared names.
            a.secret = format!("manifold/{run}/{}/{}", a.channel, a.account);
            if a.channel == Channel::Shopify {
                a.stock.oversell = OversellAction::Cancel;
            }
            // Amazon, eBay and OTTO key their listings (and price writes) by SKU.
            let by_sku = matches!(a.channel, Channel::Amazon | Channel::Ebay | Channel::Otto);
            let items = listed.iter().map(|(sku, id)| CatalogItem {
                id: if by_sku { sku.clone() } else { id.clone() },
                sku: sku.clone(),
                quantity: 0,
                product_id: Some(id.clone()),
                variant_id: Some(id.clone()),
                price_minor: Some(1000),
            });
            sim.seed_catalog(a.channel, items.collect());
            // TikTok Shop writes by `product_id/sku_id`.
            let item_id = |id: &str| if a.channel == Channel::Tiktok { format!("{id}/{id}") } else { id.to_owned() };
            a.item_ids.extend(listed.iter().map(|(sku, id)| (sku.clone(), item_id(id))));
            let webhook_secret = if a.channel == Channel::Etsy { ETSY_SECRET } else { SECRET };
            let value = json!({
                "webhook_secret": webhook_secret,
                "access_token": "token",
                "client_id": "ck_test",
                "client_secret": "cs_test",
                "api_key": "keystring",
                "client_key": manifold_simulator::KAUFLAND_KEYS.0,
                "secret_key": manifold_simulator::KAUFLAND_KEYS.1
            });
            secrets
                .create_secret()
                .name(&a.secret)
                .secret_string(value.to_string())
                .send()
                .await
                .expect("create the account's secret in moto");
        }
        // The example's HubSpot account reaches this run's simulator, with this run's secret; a second CRM
        // account's secret is never created (its jobs fail and are retried).
        for crm in &mut config.crms {
            crm.endpoint = sim.hubspot_url();
            crm.secret = format!("manifold/{run}/crm/{}", crm.id);
            let creds = json!({
                "token": manifold_simulator::hubspot::DEFAULT_TOKEN,
                "client_secret": crate::fixtures::HUBSPOT_CLIENT_SECRET
            });
            secrets
                .create_secret()
                .name(&crm.secret)
                .secret_string(creds.to_string())
                .send()
                .await
                .expect("create the CRM account's secret in moto");
        }
        let mut unreachable = config.crms[0].clone();
        unreachable.id = "crm-without-secret".into();
        unreachable.secret = format!("manifold/{run}/crm/never-created");
        config.crms.push(unreachable);
        // The example's accounts are every run's on this stack: a listing sync another run made (a local
        // pipeline's tick) would keep this run's SKUs from them. Forget it, as the breakers are reset.
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        for a in &config.accounts {
            ddb.delete_item()
                .table_name(&env.state_table)
                .key("pk", AttributeValue::S(format!("LISTING#{}#{}", a.channel, a.account)))
                .key("sk", AttributeValue::S("SYNC".into()))
                .send()
                .await
                .expect("forget the account's listing sync");
        }
        let direct =
            App::build(config.clone(), env.clone(), settings(), &sdk, Arc::new(StaticSecrets::default())).unwrap();
        Self { proxy, sim, env, config, sdk, direct, run }
    }

    /// The App a function's binary builds, talking to AWS through the function's own proxy port, with the
    /// production secret source (Secrets Manager, cached).
    async fn app(&self, function: &str) -> App {
        self.app_with(function, self.config.clone()).await
    }

    /// [`Scenario::app`] with another configuration.
    async fn app_with(&self, function: &str, config: ChannelConfig) -> App {
        let endpoint = self.proxy.listen(function).await;
        let sdk = self.sdk.clone().into_builder().endpoint_url(endpoint).build();
        let secrets =
            CachedSecrets::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk)), Duration::from_mins(5));
        // Cold start reads the configuration object, and a later check is a conditional GET. The object in
        // the shared stack's bucket is not this run's configuration (its endpoints are this run's
        // simulators), so only the reads are exercised here; the App takes the run's configuration.
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        let bucket = std::env::var("CONFIG_BUCKET").expect("CONFIG_BUCKET (from .local/stack.env)");
        let store = Arc::new(S3ConfigStore::new(s3, bucket, "channels.toml"));
        if let Ok(live) = LiveConfig::load(ConfigSource::Store { store, refresh: Duration::ZERO }).await {
            live.refresh_now().await;
        }
        App::build(config, self.env.clone(), settings(), &sdk, Arc::new(secrets)).unwrap()
    }

    /// The run's configuration with a webhook subscription (its signing secret created under this run's
    /// `manifold/` name) to an endpoint on loopback that refuses its first call; the endpoint's call count.
    async fn subscribed(&self) -> (ChannelConfig, Arc<std::sync::atomic::AtomicU64>) {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = calls.clone();
        let endpoint =
            axum::Router::new().route(
                "/hook",
                axum::routing::post(move || {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if n == 0 { http::StatusCode::INTERNAL_SERVER_ERROR } else { http::StatusCode::NO_CONTENT }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, endpoint).await });
        let secret = format!("manifold/{}/webhook", self.run);
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(&secret)
            .secret_string(crate::fixtures::WEBHOOK_SIGNING_SECRET)
            .send()
            .await
            .expect("create the signing secret in moto");
        let mut config = self.config.clone();
        config.webhooks = vec![manifold_domain::webhooks::Subscription {
            id: self.run.clone(),
            url,
            events: vec![
                manifold_domain::events::EventKind::OrderAccepted,
                manifold_domain::events::EventKind::ShipmentCreated,
            ],
            secret,
            enabled: true,
        }];
        (config, calls)
    }

    fn sku(&self, name: &str) -> String {
        format!("{}-{name}", self.run.to_uppercase())
    }

    /// A Shopify order (the REST webhook body) with this run's number and one line of each of `skus`.
    fn shopify_order(number: u64, skus: &[&str]) -> Vec<u8> {
        let mut order: Value = serde_json::from_str::<Value>(SHOPIFY_ORDER).unwrap()["order"].clone();
        order["id"] = json!(number);
        // One buyer per run (the run's orders are numbered from one base): the customers function joins them.
        order["email"] = json!(format!("buyer-{}@example.com", number / 1000));
        let line = order["line_items"][0].clone();
        let lines: Vec<Value> = skus
            .iter()
            .enumerate()
            .map(|(i, sku)| {
                let mut l = line.clone();
                l["sku"] = json!(sku);
                l["id"] = json!(line["id"].as_u64().unwrap() + i as u64);
                l
            })
            .collect();
        order["line_items"] = json!(lines);
        serde_json::to_vec(&order).unwrap()
    }
}

fn settings() -> Settings {
    let sync_queue_url = std::env::var("SYNC_QUEUE_URL").ok();
    let export_bucket = std::env::var("EXPORT_BUCKET").ok().filter(|b| !b.is_empty());
    let deliveries_queue_url = std::env::var("DELIVERIES_QUEUE_URL").ok().filter(|b| !b.is_empty());
    let ingest_dlq_url = std::env::var("INGEST_DLQ_URL").ok().filter(|b| !b.is_empty());
    let crm_queue_url = std::env::var("CRM_QUEUE_URL").ok().filter(|b| !b.is_empty());
    let customers_queue_url = std::env::var("CUSTOMERS_QUEUE_URL").ok().filter(|b| !b.is_empty());
    Settings {
        emulator_safe_ledger: true,
        sync_queue_url,
        export_bucket,
        deliveries_queue_url,
        crm_queue_url,
        customers_queue_url,
        ingest_dlq_url,
        ..Settings::default()
    }
}

/// An SQS event as the event source mapping delivers it (`attempt` is the receive count).
fn sqs_event(bodies: &[String], attempt: u32) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(support::unique(&format!("msg{i}")));
        m.receipt_handle = Some(support::unique("receipt"));
        m.body = Some(body.clone());
        m.attributes.insert("ApproximateReceiveCount".into(), attempt.to_string());
        m.attributes.insert("SentTimestamp".into(), Utc::now().timestamp_millis().to_string());
        let mut trace = SqsMessageAttribute::default();
        trace.string_value = Some(format!("trace-iam-{i}"));
        trace.data_type = Some("String".into());
        m.message_attributes.insert("trace_id".into(), trace);
        event.records.push(m);
    }
    event
}

/// The bus event the LedgerRule delivers for `order`.
fn bus_event(kind: &str, data: &impl serde::Serialize) -> String {
    json!({ "source": "manifold", "detail-type": kind, "detail": { "trace_id": "trace-iam", "data": data } })
        .to_string()
}

fn shopify_headers(body: &[u8], event_id: &str) -> http::HeaderMap {
    let mut h = sign(Channel::Shopify, SECRET, &BTreeMap::default(), event_id, body, Utc::now()).unwrap();
    h.insert("x-shopify-event-id", http::HeaderValue::from_str(event_id).unwrap());
    h.insert("x-shopify-topic", http::HeaderValue::from_static("orders/create"));
    h
}

/// Runs every function's handlers, each through its own proxy port. Returns the recorded calls.
async fn run_every_function(s: &Scenario) -> Vec<Call> {
    let now = Utc::now();
    let base = 8_000_000_000 + u64::from(now.timestamp_subsec_micros()) * 1000;
    let (stocked, unstocked, imported) = (s.sku("STOCKED"), s.sku("UNSTOCKED"), s.sku("IMPORTED"));
    let (reserved_no, oversold_no) = (base + 1, base + 2);

    // inventory-api: the ERP's count, a stock import. (The WMS shipment comes after the order.)
    let inventory = s.app("InventoryApiFunction").await;
    let update = manifold_app::ledger::OnHandUpdate { on_hand: 5, location: None, source_ref: None, as_of: None };
    inventory.set_on_hand(&stocked, &update, "trace-iam-erp", now).await.expect("set on hand");
    let import = json!([{ "sku": imported, "on_hand": 3 }, { "sku": s.sku("IMPORTED-2"), "on_hand": 4 }]).to_string();
    inventory.import_stock(&import, false, &s.run, "trace-iam-import", now).await.expect("import");
    // A triggered sync of what changed since the account's last scheduled run: the slots, the run, its
    // first page on the SyncQueue.
    let triggered = inventory.sync_http("shopify", "shop-eu", "prices", "", "trace-iam-sync", now).await.unwrap();
    // The ERP's base prices: one set, a file of them (one row stale: refused, nothing written).
    let price: manifold_app::prices::PriceInput =
        serde_json::from_value(json!({ "amount": "12.50", "currency": "EUR" })).unwrap();
    inventory.set_price(&s.sku("PUSH-DELIVERED"), &price, "trace-iam-price", now).await.expect("set a price");
    let prices = json!([
        { "sku": stocked, "amount": "9.90", "currency": "EUR" },
        { "sku": s.sku("PUSH-DELIVERED"), "amount": "11.00", "currency": "EUR", "effective_at": "2020-01-01T00:00:00Z" }
    ])
    .to_string();
    let imported_prices = inventory.import_prices(&prices, false, &s.run, "trace-iam-prices", now).await.unwrap();
    assert_eq!(imported_prices["errors"].as_array().map(Vec::len), Some(1), "{imported_prices}");
    assert_eq!(triggered.status(), 202, "{:?}", triggered.body());
    // The PIM's product content: one set, a file of it (one row older than what is stored: refused).
    let content: manifold_app::content::ContentInput = serde_json::from_value(json!({
        "title": "Delivered mug", "images": [{ "url": "https://cdn.example/mug.jpg" }]
    }))
    .unwrap();
    inventory.set_content(&s.sku("PUSH-DELIVERED"), &content, "trace-iam-content", now).await.expect("set content");
    let contents = json!([
        { "sku": stocked, "title": "Stocked mug" },
        { "sku": s.sku("PUSH-DELIVERED"), "title": "Older", "updated_at": "2020-01-01T00:00:00Z" }
    ])
    .to_string();
    let imported_content = inventory.import_content(&contents, "trace-iam-contents", now).await.unwrap();
    assert_eq!(imported_content["errors"].as_array().map(Vec::len), Some(1), "{imported_content}");

    // webhook: two signed orders accepted, one signed body that is not JSON (quarantined).
    let webhook = s.app("WebhookFunction").await;
    let mut envelopes = Vec::new();
    // The reserved order has two lines (a multi-position reservation); the oversold one, one.
    for (number, skus) in [(reserved_no, vec![stocked.as_str(), imported.as_str()]), (oversold_no, vec![&unstocked])] {
        let body = Scenario::shopify_order(number, &skus);
        let event_id = format!("{}-{number}", s.run);
        let response =
            webhook.handle_webhook("shopify", "shop-eu", &shopify_headers(&body, &event_id), &body, now).await;
        assert_eq!(response.status, 200, "{response:?}");
        envelopes.push(IngestEnvelope {
            v: 1,
            channel: Channel::Shopify,
            account: "shop-eu".into(),
            source: Source::Webhook,
            topic: Some("orders/create".into()),
            event_id,
            trace_id: response.trace_id,
            received_at: now,
            body: String::from_utf8(body).unwrap(),
            document: None,
        });
    }
    // The ingest queue refuses one delivery: the claim is released so the channel's retry is not a duplicate.
    let refused = Scenario::shopify_order(base + 4, &[&stocked]);
    s.proxy.faults.add(
        "sqs:SendMessage",
        Some("WebhookFunction"),
        Trigger::Always,
        AwsFault::Fail { status: 500, code: "InternalError".into() },
    );
    let id = format!("{}-refused", s.run);
    let response = webhook.handle_webhook("shopify", "shop-eu", &shopify_headers(&refused, &id), &refused, now).await;
    assert_eq!(response.status, 503, "{response:?}");
    s.proxy.faults.clear();
    let junk = b"{\"id\": 1, truncated";
    let bad = webhook.handle_webhook("shopify", "shop-eu", &shopify_headers(junk, &s.run), junk, now).await;
    assert_eq!(bad.status, 400, "{bad:?}");

    // ingest: the two orders (stored, published), a thin BigCommerce notification (completed through
    // the connector), and an order that cannot be normalized (quarantined).
    let combined = json!({
        "order": serde_json::from_str::<Value>(BC_ORDER).unwrap(),
        "products": serde_json::from_str::<Value>(BC_PRODUCTS).unwrap(),
        "shipping_addresses": serde_json::from_str::<Value>(BC_ADDRESSES).unwrap(),
    });
    s.sim.seed_order(Channel::Bigcommerce, combined).unwrap();
    let mut hook: Value = serde_json::from_str(BC_WEBHOOK).unwrap();
    hook["data"]["id"] = json!(218);
    let thin = IngestEnvelope {
        channel: Channel::Bigcommerce,
        account: "store-abc123".into(),
        topic: None,
        event_id: format!("{}-bc", s.run),
        body: hook.to_string(),
        ..envelopes[0].clone()
    };
    let mut broken: Value = serde_json::from_slice(&Scenario::shopify_order(base + 3, &[&stocked])).unwrap();
    broken["line_items"][0]["quantity"] = json!("many");
    let broken =
        IngestEnvelope { event_id: format!("{}-broken", s.run), body: broken.to_string(), ..envelopes[0].clone() };
    // An Amazon order replayed from quarantine through the ingest queue: stored, and its
    // acknowledgement queued for the Amazon push consumer.
    let amazon_order: Value = serde_json::from_str(AMAZON_ORDER).unwrap();
    let amazon_items: Value = serde_json::from_str(AMAZON_ITEMS).unwrap();
    let mut replayed_order = amazon_order["payload"].clone();
    replayed_order["AmazonOrderId"] = json!(format!("{}-{}", &s.run[s.run.len() - 3..], base % 10_000_000 + 1));
    let replayed = IngestEnvelope {
        channel: Channel::Amazon,
        account: "A2EUQ1WTGCTBG2".into(),
        source: Source::AmazonNotification,
        topic: Some("ORDER_CHANGE".into()),
        event_id: format!("{}-amazon-replay", s.run),
        body: json!({ "order": replayed_order, "order_items": amazon_items["payload"]["OrderItems"] }).to_string(),
        document: Some(manifold_normalize::DocKind::Order),
        ..envelopes[0].clone()
    };
    let mut bodies: Vec<String> = envelopes.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    bodies.push(serde_json::to_string(&thin).unwrap());
    bodies.push(serde_json::to_string(&broken).unwrap());
    bodies.push(serde_json::to_string(&replayed).unwrap());
    let ingest = s.app("IngestFunction").await;
    let response = ingest.ingest_batch(sqs_event(&bodies, 1)).await;
    assert!(response.batch_item_failures.is_empty(), "ingest failures: {}", response.batch_item_failures.len());
    // Redelivered, as SQS may: each finds its record stored and reads what its outbox left pending.
    let response = ingest.ingest_batch(sqs_event(&bodies, 2)).await;
    assert!(response.batch_item_failures.is_empty(), "redelivery failures: {}", response.batch_item_failures.len());

    // amazon-notifications: an ORDER_CHANGE notification, the order fetched from SP-API and ingested.
    let order: Value = serde_json::from_str(AMAZON_ORDER).unwrap();
    let items: Value = serde_json::from_str(AMAZON_ITEMS).unwrap();
    let amazon_id = format!("{}-{}", &s.run[s.run.len() - 3..], base % 10_000_000);
    let mut payload = order["payload"].clone();
    payload["AmazonOrderId"] = json!(amazon_id);
    s.sim
        .seed_order(Channel::Amazon, json!({"order": payload, "order_items": items["payload"]["OrderItems"]}))
        .unwrap();
    let mut note: Value = serde_json::from_str(AMAZON_NOTIFICATION).unwrap();
    note["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = json!(amazon_id);
    note["Payload"]["OrderChangeNotification"]["SellerId"] = json!("A2EUQ1WTGCTBG2");
    note["NotificationMetadata"]["NotificationId"] = json!(format!("{}-note", s.run));
    let amazon = s.app("AmazonNotificationsFunction").await;
    // Delivered twice, as SQS may: the second finds the order stored and its outbox already sent.
    let response = amazon.amazon_batch(sqs_event(&[note.to_string()], 1)).await;
    assert!(response.batch_item_failures.is_empty());
    // And a notification for an order SP-API does not know: quarantined.
    let mut unknown = note.clone();
    unknown["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = json!(format!("{amazon_id}-gone"));
    unknown["NotificationMetadata"]["NotificationId"] = json!(format!("{}-gone", s.run));
    let response = amazon.amazon_batch(sqs_event(&[note.to_string(), unknown.to_string()], 2)).await;
    assert!(response.batch_item_failures.is_empty());
    let stored = OrderId::new(format!("amazon:A2EUQ1WTGCTBG2:{amazon_id}")).unwrap();
    assert!(s.direct.records.get_order(&stored).await.unwrap().is_some(), "the Amazon order was stored");

    // zalando-poll: a new order polled, stored and marked exported.
    let mut doc: Value = serde_json::from_str(ZALANDO_ORDER).unwrap();
    let zalando_id = format!("{}-zalando", s.run);
    doc["data"]["id"] = json!(zalando_id);
    doc["data"]["attributes"]["order_id"] = json!(zalando_id);
    s.sim.seed_order(Channel::Zalando, doc.clone()).unwrap();
    let zalando = s.app("ZalandoPollFunction").await;
    let report = zalando.poll_zalando(now).await.expect("poll");
    assert!(report.stored >= 1 && report.acknowledged >= 1, "{report:?}");
    // Not marked exported after all (a lost acknowledgement): the next poll finds it stored already.
    s.sim.seed_order(Channel::Zalando, doc.clone()).unwrap();
    // And an order whose date cannot be read: quarantined, left unexported.
    let mut broken = doc.clone();
    broken["data"]["id"] = json!(format!("{zalando_id}-broken"));
    broken["data"]["attributes"]["order_id"] = json!(format!("{zalando_id}-broken"));
    broken["data"]["attributes"]["order_date"] = json!("not a date");
    s.sim.seed_order(Channel::Zalando, broken).unwrap();
    let again = zalando.poll_zalando(now).await.expect("poll again");
    assert!(again.stored >= 1, "{again:?}");

    // ledger: the stocked order reserves (fan-out to every channel's queue); the unstocked one is marked
    // oversold and, on Shopify's cancel policy, cancelled through the connector.
    let ledger = s.app("LedgerFunction").await;
    let mut events = Vec::new();
    for number in [reserved_no, oversold_no] {
        let id = OrderId::new(format!("shopify:shop-eu:{number}")).unwrap();
        let order = s.direct.records.get_order(&id).await.unwrap().expect("ingested order");
        events.push(bus_event("OrderAccepted", &order));
    }
    let response = ledger.ledger_batch(sqs_event(&events, 1)).await;
    assert!(response.batch_item_failures.is_empty(), "ledger failures: {}", response.batch_item_failures.len());
    let oversold = s.direct.records.get_order(&OrderId::new(format!("shopify:shop-eu:{oversold_no}")).unwrap()).await;
    assert!(oversold.unwrap().unwrap().oversold.is_some(), "the unstocked order was marked oversold");
    let writes = s.sim.snapshot().writes.get(&Channel::Shopify).cloned().unwrap_or_default();
    assert!(writes.iter().any(|w| w.body.to_string().contains("orderCancel")), "the oversold order was cancelled");

    // inventory-api: the WMS ships the reserved order; its tracking goes to Shopify's push queue.
    let shipment: manifold_domain::Shipment = serde_json::from_value(json!({
        "id": format!("{}-ship", s.run),
        "order_id": format!("shopify:shop-eu:{reserved_no}"),
        "channel": "shopify",
        "account": "shop-eu",
        "channel_order_id": reserved_no.to_string(),
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": null,
        "lines": [
            {"line_id": "1071823193", "sku": stocked, "quantity": 1},
            {"line_id": "1071823194", "sku": imported, "quantity": 1}
        ],
        "shipped_at": now.to_rfc3339()
    }))
    .unwrap();
    inventory.record_shipment(&shipment, "trace-iam-wms", now).await.expect("shipment");

    // changes: the orders' and the shipment's events are numbered in the change index (a redelivered
    // batch numbers nothing twice) and fanned out to a webhook subscription (kept, queued);
    // inventory-api pages through them and reads one record.
    let (subscribed, endpoint_calls) = s.subscribed().await;
    let indexer = s.app_with("ChangesFunction", subscribed.clone()).await;
    let mut record_events = events.clone();
    record_events.push(bus_event("ShipmentCreated", &shipment));
    for _ in 0..2 {
        let response = indexer.changes_batch(sqs_event(&record_events, 1)).await;
        assert!(response.batch_item_failures.is_empty(), "changes failures: {}", response.batch_item_failures.len());
    }
    // deliveries: the queued deliveries sent to the subscription's endpoint, which refuses the first
    // (breaker failure, retry delay as the message's visibility, attempt recorded).
    let webhook_sender = s.app_with("DeliveriesFunction", subscribed).await;
    let queue = std::env::var("DELIVERIES_QUEUE_URL").expect("DELIVERIES_QUEUE_URL (from .local/stack.env)");
    let queued_deliveries = s
        .direct
        .sqs
        .get()
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = queued_deliveries.messages.unwrap_or_default();
    assert!(!messages.is_empty(), "the fan-out queued deliveries");
    let response = webhook_sender.deliveries_batch(support::lambda_event(&messages)).await;
    assert!(!response.batch_item_failures.is_empty(), "the endpoint refused the first delivery");
    assert!(endpoint_calls.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the endpoint was called");

    let page = inventory.pull_http("orders", None, &std::collections::HashMap::new(), "trace-iam-pull").await.unwrap();
    assert_eq!(page.status(), 200, "{:?}", page.body());
    let page: Value = serde_json::from_slice(page.body()).unwrap();
    assert!(page["records"].as_array().is_some_and(|r| !r.is_empty()), "{page}");

    // push, one function per channel: a job the channel refuses on its last attempt (breaker failure,
    // retry delay on its own queue, last error recorded), a message that is not a push job
    // (quarantined), then a stock job for a listed SKU (push gate, breaker success).
    let attempts = settings().push.max_receive_count;
    // SKUs no fan-out has offered, so the push gate holds no other version of them.
    let (refused, delivered) = (s.sku("PUSH-REFUSED"), s.sku("PUSH-DELIVERED"));
    for account in &s.config.accounts {
        // Each breaker starts closed: other tests drive these account ids through the shared stack too.
        s.direct
            .ddb
            .delete_item()
            .table_name(&s.env.state_table)
            .key(
                "pk",
                AttributeValue::S(manifold_aws::breaker::DynamoBreakerStore::pk(&format!(
                    "{}#{}",
                    account.channel, account.account
                ))),
            )
            .key("sk", AttributeValue::S("state".into()))
            .send()
            .await
            .expect("reset the breaker");
    }
    for channel in Channel::ALL {
        let function = format!("Push{}Function", channel.pascal());
        let push = s.app(&function).await;
        let account = s.config.accounts.iter().find(|a| a.channel == channel).expect("an account per channel");
        let job = |sku: &str, version: u64| {
            let channel_sku = account.sku_map.iter().find(|(_, m)| m.as_str() == sku).map_or(sku, |(c, _)| c.as_str());
            PushMessage::Stock(PushJob {
                channel,
                account: AccountId::new(account.account.as_str()).unwrap(),
                sku: Sku::new(sku).unwrap(),
                location: "default".into(),
                channel_sku: channel_sku.to_owned(),
                quantity: 2,
                version,
                trace_id: None,
            })
            .to_body()
            .unwrap()
        };
        s.sim.inject(FaultSpec { channel, kind: FaultKind::ServerError, probability: None, next_n: Some(1) });
        let failing = push.push_batch(channel, sqs_event(&[job(&refused, 1), "not a push job".into()], attempts)).await;
        assert_eq!(failing.batch_item_failures.len(), 1, "{channel}: the refused job is retried");
        s.sim.clear_faults();
        // A stock and a price job go through; the price the channel took is recorded for the prices tier.
        let price = PushMessage::Price(manifold_app::push::PriceJob {
            channel,
            account: AccountId::new(account.account.as_str()).unwrap(),
            sku: Sku::new(&delivered).unwrap(),
            channel_sku: delivered.clone(),
            amount: manifold_domain::Amount::parse("12.50", manifold_domain::Currency::new("EUR").unwrap()).unwrap(),
            currency: manifold_domain::Currency::new("EUR").unwrap(),
            channel_item_id: None,
            effective_at: Utc::now(),
            rules: Vec::new(),
        })
        .to_body()
        .unwrap();
        let mut jobs = vec![job(&delivered, 1), price];
        // Content too, where the channel keys it by SKU (what the listing took is recorded).
        let support = manifold_connectors::content::support(channel);
        if support.any() && support.key == manifold_connectors::content::ContentKey::Sku {
            let text =
                manifold_connectors::content::ContentText { title: Some("Delivered mug".into()), ..Default::default() };
            let content = PushMessage::Content(Box::new(manifold_app::push::ContentJob {
                channel,
                account: AccountId::new(account.account.as_str()).unwrap(),
                update: manifold_connectors::content::ContentUpdate {
                    sku: Sku::new(&delivered).unwrap(),
                    channel_sku: delivered.clone(),
                    ids: manifold_connectors::ListingIds::default(),
                    text: Some(text),
                    images: None,
                },
                text_hash: Some("iam".into()),
                image_hashes: Vec::new(),
                updated_at: Utc::now(),
            }));
            jobs.push(content.to_body().unwrap());
        }
        let pushed = push.push_batch(channel, sqs_event(&jobs, 1)).await;
        assert!(pushed.batch_item_failures.is_empty(), "{channel}: {:?}", pushed.batch_item_failures);
        // Credentials refused twice (the call and its one retry with a re-read secret): the job is parked,
        // re-sent to its own queue with a delay, and the original acknowledged.
        s.sim.inject(FaultSpec { channel, kind: FaultKind::Unauthorized, probability: None, next_n: Some(2) });
        let parked = push.push_batch(channel, sqs_event(&[job(&delivered, 2)], 1)).await;
        assert!(
            parked.batch_item_failures.is_empty(),
            "{channel}: a job waiting for credentials is parked, not failed"
        );
        s.sim.clear_faults();
    }

    // scheduler: every tier, as its four schedules invoke it. The stock tier finds a count the fan-out
    // never offered (written to the ledger alone), the reconcile tier an Amazon order no notification
    // delivered.
    let key = PositionKey::new(Sku::new(s.sku("COUNTED")).unwrap(), "default");
    s.direct.ledger.set_on_hand(&key, 7, &s.run).await.expect("a count the fan-out never saw");
    let missed = format!("{}-{}", &s.run[s.run.len() - 3..], (base + 5) % 10_000_000);
    let mut payload = order["payload"].clone();
    payload["AmazonOrderId"] = json!(missed);
    payload["LastUpdateDate"] = json!(Utc::now().to_rfc3339());
    payload["PurchaseDate"] = json!(Utc::now().to_rfc3339());
    s.sim
        .seed_order(Channel::Amazon, json!({"order": payload.clone(), "order_items": items["payload"]["OrderItems"]}))
        .unwrap();
    // And a Shopify order whose webhook was lost: Shopify lists whole orders, so the second sweep below
    // finds it held through a duplicate ingest (Amazon's held orders are not even read again).
    let (_, shopify_missed) = crate::sweeps::shopify(u32::try_from((base + 7) % 10_000_000).unwrap(), Utc::now());
    s.sim.seed_order(Channel::Shopify, shopify_missed).unwrap();
    // And one it cannot normalize: quarantined by the reconcile tier.
    payload["AmazonOrderId"] = json!(format!("{missed}-bad"));
    payload["PurchaseDate"] = json!("not a date");
    s.sim
        .seed_order(Channel::Amazon, json!({"order": payload, "order_items": items["payload"]["OrderItems"]}))
        .unwrap();
    // A bundle of the counted SKU and one the ledger never saw: re-sending the count reads the other
    // component (a position read), as any page of a stock run holding a bundle component does.
    let mut bundled = s.config.clone();
    bundled.bundles.push(Bundle {
        sku: Sku::new(s.sku("KIT")).unwrap(),
        components: [s.sku("COUNTED"), s.sku("NEVER-STOCKED")]
            .map(|sku| BundleComponent { sku: Sku::new(sku).unwrap(), quantity: 1 })
            .to_vec(),
    });
    let scheduler = s.app_with("SchedulerFunction", bundled).await;
    for tier in ["stock", "reconcile", "prices", "images", "crm"] {
        let report = scheduler.run_tier(tier, Utc::now()).await.unwrap_or_else(|e| panic!("tier {tier}: {e}"));
        match tier {
            "stock" => assert!(report.push_jobs >= 1, "{report:?}"),
            "reconcile" => assert!(report.drift >= 1, "{report:?}"),
            _ => {}
        }
    }
    // And the one-minute tick, on an account of this run's own (so no earlier run holds its slots) whose
    // one periodic kind is prices: the slot is claimed, the run created and its first page queued; the
    // page, as the SyncQueue delivers it, is done and recorded, which frees the slot.
    let mut ticked = s.config.clone();
    ticked.accounts.retain(|a| a.channel == Channel::Shopify);
    for a in &mut ticked.accounts {
        a.account = AccountId::new(format!("{}-tick", s.run)).unwrap();
        a.sync = SyncCadences {
            orders: Cadence::Realtime,
            stock: Cadence::OnDemand,
            prices: Cadence::Every(Duration::from_hours(1)),
            images: Cadence::OnDemand,
            reconcile: Cadence::OnDemand,
            listings: Cadence::OnDemand,
            ..SyncCadences::default()
        };
    }
    let per_minute = s.app_with("SchedulerFunction", ticked).await;
    let tick = per_minute.tick(Utc::now()).await.expect("tick");
    assert_eq!(tick.started.len(), 1, "{tick:?}");
    let page = PageMessage { run: tick.started[0].run.clone(), page: 0 };
    let done = per_minute.sync_page(&page, Utc::now()).await.expect("page");
    assert!(matches!(done, PageOutcome::Recorded(_)), "{done:?}");
    // And a delta stock run (what changed in the last ten minutes, as a scheduled run after the first
    // walks it): the ledger's `Changed` index is queried for this scenario's recent changes. The account
    // sells from a location nothing is stocked at, so nothing is offered on the shared queues.
    let mut changed = s.config.clone();
    changed.accounts.retain(|a| a.channel == Channel::Shopify);
    for a in &mut changed.accounts {
        a.account = AccountId::new(format!("{}-changed", s.run)).unwrap();
        a.stock.location = "iam-nowhere".into();
    }
    let delta = s.app_with("SchedulerFunction", changed).await;
    let slot = Slot::new(Channel::Shopify, AccountId::new(format!("{}-changed", s.run)).unwrap(), SyncKind::Stock);
    let now = Utc::now();
    let run = SyncRun::new(&slot, RunTrigger::Cli, false, Some(now - chrono::Duration::minutes(10)), now);
    delta.sync_store.create_run(&run).await.expect("create the delta run");
    let done = delta.sync_page(&PageMessage { run: run.id.clone(), page: 0 }, Utc::now()).await.expect("page");
    assert!(matches!(&done, PageOutcome::Recorded(d) if d.examined >= 1 && d.pushed == 0), "{done:?}");
    // And a listings run, on another account of this run's own: its one page walks the simulator's
    // Shopify listings into the listings store (StateTable) and publishes what is new there.
    let mut listed = s.config.clone();
    listed.accounts.retain(|a| a.channel == Channel::Shopify);
    for a in &mut listed.accounts {
        a.account = AccountId::new(format!("{}-listings", s.run)).unwrap();
        a.sync = SyncCadences {
            orders: Cadence::Realtime,
            stock: Cadence::OnDemand,
            prices: Cadence::OnDemand,
            images: Cadence::OnDemand,
            reconcile: Cadence::OnDemand,
            listings: Cadence::Every(Duration::from_hours(24)),
            ..SyncCadences::default()
        };
    }
    let listings_sync = s.app_with("SchedulerFunction", listed).await;
    let tick = listings_sync.tick(Utc::now()).await.expect("tick");
    assert_eq!(tick.started.len(), 1, "{tick:?}");
    let page = PageMessage { run: tick.started[0].run.clone(), page: 0 };
    let done = listings_sync.sync_page(&page, Utc::now()).await.expect("listings page");
    assert!(matches!(&done, PageOutcome::Recorded(d) if d.examined >= 2 && d.errors == 0), "{done:?}");

    // A second sweep finds the order the first one stored: a duplicate ingest, which reads the outbox
    // of its ingest key back (as a webhook delivered before the sweep would be).
    let again = scheduler.run_tier("reconcile", Utc::now()).await.expect("second sweep");
    assert_eq!(again.drift, 0, "{again:?}");

    // And the shipping deadlines, as every tick settles them: a month from now the orders the ledger
    // took above are past their ship-by time; each is read (record, reservation), settled and forgotten.
    let deadlines = scheduler.check_deadlines(Utc::now() + chrono::Duration::days(30)).await.expect("deadlines");
    assert!(deadlines.due >= 1 && deadlines.errors == 0, "{deadlines:?}");

    // And a CSV drop: the orders the change index holds, written once to the export bucket.
    let mut exporting = s.config.clone();
    exporting.exports = vec![manifold_domain::export::ExportConfig {
        id: s.run.clone(),
        prefix: None,
        every_minutes: 60,
        columns: Vec::new(),
    }];
    let exporter = s.app_with("SchedulerFunction", exporting).await;
    let runs = exporter.run_exports(Utc::now(), false).await.expect("exports");
    assert!(runs.iter().all(|r| r.file.is_some() && r.orders >= 2), "{runs:?}");

    // customers: the run's order events join their buyer (the second Shopify order finds the first's
    // customer by its email claim; the Amazon order, with no email, is a customer of its own).
    let customers = s.app("CustomersFunction").await;
    let mut order_events = Vec::new();
    for id in [format!("shopify:shop-eu:{reserved_no}"), format!("shopify:shop-eu:{oversold_no}"), stored.to_string()] {
        let order = s.direct.records.get_order(&OrderId::new(id).unwrap()).await.unwrap().expect("stored");
        order_events.push(bus_event("OrderAccepted", &order));
    }
    let response = customers.customers_batch(sqs_event(&order_events, 1)).await;
    assert!(response.batch_item_failures.is_empty(), "customers failures: {}", response.batch_item_failures.len());
    let buyer = customers
        .customer_of_order(&OrderId::new(format!("shopify:shop-eu:{reserved_no}")).unwrap())
        .await
        .unwrap()
        .expect("the order is joined");

    // scheduler: the CRM tier queued the changed customers (above, with the other tiers); crm: the jobs
    // sent to HubSpot (customers read, what HubSpot took recorded, its record ids claimed), a job of a CRM
    // account whose secret is missing (retried: its backoff as the message's visibility) and a job of a
    // CRM account the configuration does not have (quarantined). The tier ran before the order events
    // above were joined: it runs again for them.
    scheduler.run_tier("crm", Utc::now()).await.expect("crm tier");
    let crm = s.app("CrmFunction").await;
    let crm_queue = std::env::var("CRM_QUEUE_URL").expect("CRM_QUEUE_URL (from .local/stack.env)");
    let drain = async |queue: &str| {
        let mut bodies = Vec::new();
        loop {
            let got = s.direct.sqs.get().receive_message().queue_url(queue).max_number_of_messages(10).send().await;
            let messages = got.unwrap().messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for m in messages {
                s.direct
                    .sqs
                    .get()
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                bodies.push(m.body().unwrap_or_default().to_owned());
            }
        }
    };
    // The tier queued each CRM account's jobs; the account without a secret is exercised below.
    let jobs: Vec<String> = drain(&crm_queue).await.into_iter().filter(|b| b.contains("\"crm\":\"hubspot\"")).collect();
    assert!(!jobs.is_empty(), "the CRM tier queued jobs");
    let response = crm.crm_batch(sqs_event(&jobs, 1)).await;
    assert!(response.batch_item_failures.is_empty(), "crm failures: {}", response.batch_item_failures.len());
    let in_hubspot = customers.show_customer(&buyer).await.unwrap().unwrap().customer.crm_ids.get("hubspot").cloned();
    let record = in_hubspot.expect("the buyer was sent to HubSpot");
    let failing = [
        json!({"kind": "upsert", "crm": "crm-without-secret", "customer_ids": [buyer], "trace_id": "trace-iam-crm"})
            .to_string(),
        json!({"kind": "upsert", "crm": "crm-gone", "customer_ids": [buyer], "trace_id": "trace-iam-crm"}).to_string(),
    ];
    let response = crm.crm_batch(sqs_event(&failing, 1)).await;
    assert_eq!(response.batch_item_failures.len(), 1, "the job without credentials is retried, the other kept");

    // webhook: HubSpot reports the consent it owns, signed (v3): queued for the customers function, which
    // applies it.
    let body = json!([{ "eventId": 1, "subscriptionType": "contact.propertyChange", "occurredAt": Utc::now().timestamp_millis(),
        "objectId": record.parse::<u64>().unwrap(), "propertyName": "hs_marketing_consent", "propertyValue": "granted" }])
    .to_string();
    let uri = "https://api.example.com/v1/crm/hubspot";
    let stamp = Utc::now().timestamp_millis().to_string();
    let signature = manifold_simulator::hubspot::sign_v3(
        crate::fixtures::HUBSPOT_CLIENT_SECRET,
        "POST",
        uri,
        body.as_bytes(),
        &stamp,
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("x-hubspot-signature-v3", http::HeaderValue::from_str(&signature).unwrap());
    headers.insert("x-hubspot-request-timestamp", http::HeaderValue::from_str(&stamp).unwrap());
    let answer = webhook.crm_webhook("hubspot", uri, &headers, body.as_bytes(), Utc::now()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let customers_queue = std::env::var("CUSTOMERS_QUEUE_URL").expect("CUSTOMERS_QUEUE_URL (from .local/stack.env)");
    let updates: Vec<String> = drain(&customers_queue).await.into_iter().filter(|b| b.contains("\"crm\"")).collect();
    assert!(!updates.is_empty(), "the owned change was queued");
    let response = customers.customers_batch(sqs_event(&updates, 1)).await;
    assert!(response.batch_item_failures.is_empty());

    // customers: the buyer is forgotten (DELETE /v1/customers/{id}, IAM-authorized): orders erased, claims
    // released, the quarantined payloads and the dead-lettered deliveries naming them deleted (another
    // dead letter made visible again), HubSpot's erasure queued; crm: HubSpot erases it.
    let ingest_dlq = std::env::var("INGEST_DLQ_URL").expect("INGEST_DLQ_URL (from .local/stack.env)");
    for email in [format!("buyer-{}@example.com", reserved_no / 1000), "someone-else@example.org".to_owned()] {
        let parked = json!({ "body": json!({ "email": email }).to_string() }).to_string();
        s.direct.sqs.get().send_message().queue_url(&ingest_dlq).message_body(parked).send().await.unwrap();
    }
    let request: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest = serde_json::from_value(json!({
        "version": "2.0", "routeKey": "DELETE /v1/customers/{id}", "rawPath": format!("/v1/customers/{buyer}"),
        "headers": {}, "pathParameters": { "id": buyer }, "isBase64Encoded": false,
        "requestContext": { "http": { "method": "DELETE", "path": format!("/v1/customers/{buyer}") },
            "authorizer": { "iam": { "userArn": "arn:aws:iam::123456789012:user/iam-test" } }, "timeEpoch": 0 }
    }))
    .unwrap();
    let erased = customers.customers_http(&request, Utc::now()).await;
    assert_eq!(erased.status_code, 200, "{:?}", erased.body);
    let forgets = drain(&crm_queue).await;
    assert!(forgets.iter().any(|b| b.contains("forget")), "{forgets:?}");
    let response = crm.crm_batch(sqs_event(&forgets, 1)).await;
    assert!(response.batch_item_failures.is_empty());

    s.proxy.calls()
}

/// What `iam_check.py` answered.
struct Verdict {
    decisions: Vec<(Call, bool)>,
    /// Function -> its resolved inline policy documents.
    policies: BTreeMap<String, Vec<Value>>,
}

impl Verdict {
    /// Evaluates `calls` against the roles in the template, without the grants in `remove`
    /// (function, action).
    fn of(calls: &[Call], remove: &[(&str, &str)]) -> Self {
        let stack = std::env::var("MANIFOLD_STACK")
            .expect("MANIFOLD_STACK is unset: run through infra/local/test.sh, which creates the stack with stack.py");
        let request = json!({
            "stack": stack,
            "template": ".local/template.json",
            "calls": calls,
            "remove": remove.iter().map(|(f, a)| json!({"function": f, "action": a})).collect::<Vec<_>>(),
        });
        let python = repo().join(".venv/bin/python");
        let mut child = Command::new(&python)
            .arg(repo().join("infra/local/iam_check.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}): run infra/local/bootstrap.sh", python.display()));
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "iam_check.py failed: {}", String::from_utf8_lossy(&out.stderr));
        let answer: Value = serde_json::from_slice(&out.stdout).expect("iam_check.py answers JSON");
        let decisions = answer["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let call = Call {
                    function: d["function"].as_str().unwrap().to_owned(),
                    service: d["service"].as_str().unwrap().to_owned(),
                    action: d["action"].as_str().unwrap().to_owned(),
                    resource: d["resource"].as_str().unwrap().to_owned(),
                };
                (call, d["allowed"] == true)
            })
            .collect();
        let policies = answer["policies"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(f, docs)| {
                (f.clone(), docs.as_array().unwrap().iter().map(|d| d["document"].clone()).collect::<Vec<_>>())
            })
            .collect();
        Self { decisions, policies }
    }

    /// Distinct calls not allowed, as `Function: action on resource` lines.
    fn denied(&self) -> BTreeSet<String> {
        self.decisions
            .iter()
            .filter(|(_, allowed)| !allowed)
            .map(|(c, _)| format!("{}: {} on {}", c.function, c.action, c.resource))
            .collect()
    }

    /// Every (function, action, resource pattern) granted, from each Allow statement.
    fn grants(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (function, docs) in &self.policies {
            for doc in docs {
                for statement in as_list(&doc["Statement"]) {
                    if statement["Effect"] != "Allow" {
                        continue;
                    }
                    for action in as_list(&statement["Action"]) {
                        for resource in as_list(&statement["Resource"]) {
                            out.push((
                                function.clone(),
                                action.as_str().unwrap_or_default().to_owned(),
                                resource.as_str().unwrap_or_default().to_owned(),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// Grants that are broader than IAM needs: `*` in an action, or a bare `*` resource for an action
    /// that has resource-level permissions.
    fn too_broad(&self) -> BTreeSet<String> {
        self.grants()
            .into_iter()
            .filter(|(_, action, resource)| {
                action.contains('*') || (resource == "*" && !STAR_ONLY.contains(&action.as_str()))
            })
            .map(|(f, a, r)| format!("{f}: {a} on {r}"))
            .collect()
    }

    /// Grants no recorded call of the function used (the role allows more than the function does).
    fn unused(&self) -> BTreeSet<String> {
        self.grants()
            .into_iter()
            .filter(|(_, action, _)| !NOT_EXERCISED.iter().any(|(a, _)| a == action))
            .filter(|(function, action, resource)| {
                !self.decisions.iter().any(|(c, _)| {
                    &c.function == function
                        && glob(&action.to_lowercase(), &c.action.to_lowercase())
                        && glob(resource, &c.resource)
                })
            })
            .map(|(f, a, r)| format!("{f}: {a} on {r}"))
            .collect()
    }
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Function logical ids of the transformed template.
fn template_functions() -> BTreeSet<String> {
    let path = repo().join(".local/template.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): run infra/local/lint.sh", path.display()));
    let t: Value = serde_json::from_str(&text).unwrap();
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_function_calls_only_what_its_role_allows_and_its_role_allows_only_what_it_calls() {
    let scenario = Scenario::new().await;
    let calls = Box::pin(run_every_function(&scenario)).await;
    let distinct: BTreeSet<String> =
        calls.iter().map(|c| format!("{}: {} on {}", c.function, c.action, c.resource)).collect();
    eprintln!("AWS calls by function:\n{}", lines(&distinct));

    let exercised: BTreeSet<String> = calls.iter().map(|c| c.function.clone()).collect();
    assert_eq!(exercised, template_functions(), "every function of the template ran its handlers");

    let verdict = Verdict::of(&calls, &[]);
    let denied = verdict.denied();
    assert!(denied.is_empty(), "calls the function's own role does not allow:\n{}", lines(&denied));
    let broad = verdict.too_broad();
    assert!(broad.is_empty(), "grants broader than IAM needs:\n{}", lines(&broad));
    let unused = verdict.unused();
    assert!(unused.is_empty(), "grants no call of the function used (remove them):\n{}", lines(&unused));

    // The test of the test: without the ingest role's events:PutEvents, the same calls fail the check,
    // exactly where the ingest function published its events.
    let without = Verdict::of(&calls, &[("IngestFunction", "events:PutEvents")]);
    let denied = without.denied();
    assert!(!denied.is_empty(), "removing a needed grant must make the check fail");
    assert!(
        denied.iter().all(|d| d.starts_with("IngestFunction: events:PutEvents on arn:aws:events:")),
        "only the ingest function's PutEvents calls lose their grant:\n{}",
        lines(&denied)
    );
}

fn lines(set: &BTreeSet<String>) -> String {
    set.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[test]
fn glob_matches_as_iam_does() {
    assert!(glob(
        "arn:aws:secretsmanager:*:secret:manifold/*",
        "arn:aws:secretsmanager:r:1:secret:manifold/x/y-AbCdEf"
    ));
    assert!(glob("table/t/index/*", "table/t/index/by_trace"));
    assert!(!glob("table/t/index/*", "table/t"));
    assert!(glob("secret:a-??????", "secret:a-123456"));
    assert!(!glob("secret:a-??????", "secret:a-12345"));
}

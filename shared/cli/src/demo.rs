//! `manifold demo`: the whole pipeline locally, on moto and the channel simulators, no AWS account.
//!
//! What it runs, with the same code as the Lambdas (only the SQS event source mappings, which moto
//! does not run, are replaced by [`manifold_app::local::poll_once`]):
//! 1. channel credentials are created in (moto's) Secrets Manager and the simulators start on loopback;
//! 2. the ERP sets on-hand stock through the inventory API service;
//! 3. signed webhooks arrive from Shopify, WooCommerce and BigCommerce (thin: fetched back through the
//!    connector), an Amazon notification lands on its SQS queue, and Zalando is polled; a duplicate, a
//!    forged signature and a malformed payload show the refusals;
//! 4. the ingest consumer stores canonical orders and publishes events; the bus rule routes them to the
//!    ledger queue, the ledger reserves stock and fans availability out to each channel's queue;
//! 5. each channel's push consumer sends the new quantities to its simulator within its rate limits;
//! 6. the scheduled `stock` and `reconcile` tiers run once, and a summary is printed.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use http::{HeaderMap, HeaderValue};
use manifold_app::{App, app::Settings, ledger::OnHandUpdate, local::poll_once};
use manifold_aws::{
    AwsEnv,
    secrets::{CachedSecrets, SecretsManager},
};
use manifold_connectors::verify::sign;
use manifold_domain::{Channel, config::ChannelConfig};
use manifold_ledger::Ledger;
use manifold_simulator::{CatalogItem, SimConfig, Simulator};

use crate::CliError;

/// Options of `manifold demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Channel configuration to run with (endpoints are pointed at the simulators).
    #[arg(long, default_value = "infra/channels.example.toml")]
    pub config: String,
}

const SECRET: &str = "demo-webhook-secret";
const ETSY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const SHOPIFY_ORDER: &str =
    include_str!("../../normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");
const WOO_ORDER: &str = include_str!("../../normalize/fixtures/woocommerce/order-727-rest-v3-retrieve.json");
const BC_WEBHOOK: &str = include_str!("../../normalize/fixtures/bigcommerce/webhook-store-order-created.json");
const BC_ORDER: &str = include_str!("../../normalize/fixtures/bigcommerce/v2-order-218-get.json");
const BC_PRODUCTS: &str = include_str!("../../normalize/fixtures/bigcommerce/v2-order-products-list.json");
const BC_ADDRESSES: &str = include_str!("../../normalize/fixtures/bigcommerce/v2-order-shipping-addresses-list.json");
const AMAZON_NOTE: &str = include_str!("../../normalize/fixtures/amazon/order-change-notification.json");
const AMAZON_ORDER: &str =
    include_str!("../../normalize/fixtures/amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json");
const AMAZON_ITEMS: &str =
    include_str!("../../normalize/fixtures/amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json");
const ZALANDO_ORDER: &str = include_str!("../../normalize/fixtures/zalando/order-jsonapi-written-from-docs.json");

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let sdk = manifold_aws::sdk_config().await;
    let env = AwsEnv::from_env()?;
    let ledger_queue =
        std::env::var("LEDGER_QUEUE_URL").map_err(|_| manifold_aws::env::MissingVar("LEDGER_QUEUE_URL".into()))?;
    let amazon_queue = std::env::var("AMAZON_NOTIFICATIONS_QUEUE_URL")
        .map_err(|_| manifold_aws::env::MissingVar("AMAZON_NOTIFICATIONS_QUEUE_URL".into()))?;
    let mut config = ChannelConfig::load(std::path::Path::new(&args.config))?;

    step(1, "Simulators on loopback, credentials in Secrets Manager");
    let sim = Simulator::start(SimConfig::default())
        .await
        .map_err(|e| CliError::Usage(format!("cannot start the simulators: {e}")))?;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    for a in &mut config.accounts {
        a.endpoint = sim.base_url(a.channel);
        let webhook_secret = if a.channel == Channel::Etsy { ETSY_SECRET } else { SECRET };
        let value = serde_json::json!({
            "webhook_secret": webhook_secret,
            "access_token": "demo-token",
            "client_id": "ck_demo",
            "client_secret": "cs_demo",
            "api_key": "demo-keystring"
        })
        .to_string();
        if sm.create_secret().name(&a.secret).secret_string(&value).send().await.is_err() {
            sm.put_secret_value()
                .secret_id(&a.secret)
                .secret_string(&value)
                .send()
                .await
                .map_err(|e| CliError::Usage(format!("secrets: {e}")))?;
        }
    }
    println!("    simulators at {}; {} accounts", sim.url(), config.accounts.len());
    let settings = Settings { emulator_safe_ledger: true, ..Settings::from_env() };
    let secrets = Arc::new(CachedSecrets::new(SecretsManager::new(sm), Duration::from_mins(5)));
    let app = App::build(config.clone(), env.clone(), settings, &sdk, secrets)?;

    // The orders' master SKUs, known before they arrive (pure normalization of the same documents).
    let demo_skus = ["IPOD2009BLACK", "IPOD2008PINK", "woo-tee-black-m", "TEE-BLK-M", "SKU-1234", "MUG-WHITE", "Bar3"];
    for channel in Channel::ALL {
        let account = config.enabled_accounts().find(|a| a.channel == channel);
        let items = demo_skus
            .iter()
            .enumerate()
            .filter_map(|(n, s)| {
                let sku = manifold_domain::Sku::new(*s).ok()?;
                let channel_sku = account.map_or_else(|| sku.to_string(), |a| a.channel_sku_for(&sku));
                // The key the channel's stock write uses: its item id where it has one.
                let id = match (channel, account.and_then(|a| a.item_ids.get(&channel_sku))) {
                    (_, Some(id)) => id.clone(),
                    (Channel::Shopify, None) => format!("gid://shopify/InventoryItem/{}", 900 + n),
                    _ => channel_sku.clone(),
                };
                Some(CatalogItem {
                    id,
                    sku: channel_sku,
                    quantity: 0,
                    product_id: Some("1001".into()),
                    variant_id: Some(format!("{}", 2001 + n)),
                    price_minor: Some(1999),
                })
            })
            .collect();
        sim.seed_catalog(channel, items);
    }

    step(2, "The ERP sets on-hand stock (PUT /v1/inventory/{sku})");
    // Every SKU the Shopify and WooCommerce orders sell gets 5 units; BigCommerce order 218's SKUs
    // get none, so that order shows the oversell path (held for review, per its account's rule).
    let mut stocked: Vec<(String, i64)> = Vec::new();
    for (channel, doc) in
        [(Channel::Shopify, json(SHOPIFY_ORDER)["order"].clone()), (Channel::Woocommerce, json(WOO_ORDER))]
    {
        if let Some(account) = config.enabled_accounts().find(|a| a.channel == channel) {
            let ctx = manifold_normalize::Context { account, received_at: Utc::now() };
            if let Ok(order) = manifold_normalize::normalize_order(channel, &doc, &ctx) {
                stocked.extend(order.quantities_by_sku().into_keys().map(|s| (s.to_string(), 5)));
            }
        }
    }
    for (sku, n) in stocked.iter().map(|(s, n)| (s.as_str(), *n)) {
        let p = app
            .set_on_hand(
                sku,
                &OnHandUpdate { on_hand: n, location: None, source_ref: Some(format!("erp-demo-{sku}-{n}")) },
                "demo-erp",
                Utc::now(),
            )
            .await
            .map_err(|e| CliError::Usage(format!("inventory: {e}")))?;
        println!("    {sku:<16} on_hand {:>3}  reserved {:>3}  available {:>3}", p.on_hand, p.reserved, p.available);
    }

    step(3, "Channels deliver orders");
    // Shopify knows its own order (the WMS shipment in step 5 fulfils it there).
    let _ = sim.seed_order(Channel::Shopify, json(SHOPIFY_ORDER)["order"].clone());
    let now = Utc::now();
    let shopify_body = serde_json::to_vec(&json(SHOPIFY_ORDER)["order"]).unwrap_or_default();
    let mut h = sign(Channel::Shopify, SECRET, &BTreeMap::new(), "", &shopify_body, now)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    h.insert("x-shopify-event-id", HeaderValue::from_static("demo-evt-1"));
    h.insert("x-shopify-topic", HeaderValue::from_static("orders/create"));
    report("shopify orders/create", &app.handle_webhook("shopify", "shop-eu", &h, &shopify_body, now).await);
    report("shopify same delivery again", &app.handle_webhook("shopify", "shop-eu", &h, &shopify_body, now).await);
    let mut forged = h.clone();
    forged.insert("x-shopify-hmac-sha256", HeaderValue::from_static("Zm9yZ2VkIHNpZ25hdHVyZQ=="));
    report("shopify forged signature", &app.handle_webhook("shopify", "shop-eu", &forged, &shopify_body, now).await);
    let broken = br#"{"id": 99, "line_items": "#;
    let mut hb = sign(Channel::Shopify, SECRET, &BTreeMap::new(), "", broken, now)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    hb.insert("x-shopify-topic", HeaderValue::from_static("orders/create"));
    report("shopify malformed payload", &app.handle_webhook("shopify", "shop-eu", &hb, broken, now).await);

    let woo_body = WOO_ORDER.as_bytes();
    let mut hw: HeaderMap = sign(Channel::Woocommerce, SECRET, &BTreeMap::new(), "", woo_body, now)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    hw.insert("x-wc-webhook-topic", HeaderValue::from_static("order.created"));
    hw.insert("x-wc-webhook-delivery-id", HeaderValue::from_static("demo-woo-1"));
    report("woocommerce order.created", &app.handle_webhook("woocommerce", "woo-main", &hw, woo_body, now).await);

    let _ = sim.seed_order(
        Channel::Bigcommerce,
        serde_json::json!({"order": json(BC_ORDER), "products": json(BC_PRODUCTS), "shipping_addresses": json(BC_ADDRESSES)}),
    );
    let mut bc_hook = json(BC_WEBHOOK);
    bc_hook["data"]["id"] = serde_json::json!(218);
    let bc_body = serde_json::to_vec(&bc_hook).unwrap_or_default();
    let hbc = sign(Channel::Bigcommerce, SECRET, &BTreeMap::new(), "", &bc_body, now)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    report(
        "bigcommerce store/order/created (thin)",
        &app.handle_webhook("bigcommerce", "store-abc123", &hbc, &bc_body, now).await,
    );

    let amazon_order = json(AMAZON_ORDER);
    let _ = sim.seed_order(Channel::Amazon, serde_json::json!({"order": amazon_order["payload"], "order_items": json(AMAZON_ITEMS)["payload"]["OrderItems"]}));
    let mut note = json(AMAZON_NOTE);
    note["Payload"]["OrderChangeNotification"]["AmazonOrderId"] = amazon_order["payload"]["AmazonOrderId"].clone();
    note["Payload"]["OrderChangeNotification"]["SellerId"] = serde_json::json!("A2EUQ1WTGCTBG2");
    app.sqs
        .send_message()
        .queue_url(&amazon_queue)
        .message_body(note.to_string())
        .send()
        .await
        .map_err(|e| CliError::Usage(format!("sqs: {e}")))?;
    println!("    {:<40} -> queued on the Amazon notifications queue", "amazon ORDER_CHANGE");
    let _ = sim.seed_order(Channel::Zalando, json(ZALANDO_ORDER));

    step(4, "Consumers: Amazon notifications, Zalando poll, ingest, ledger, pushes");
    drain(&app, &amazon_queue, |e| app.amazon_batch(e)).await?;
    let polled = app.poll_zalando(Utc::now()).await.map_err(|e| CliError::Usage(format!("zalando poll: {e}")))?;
    println!(
        "    zalando poll: {} fetched, {} stored, {} marked exported",
        polled.fetched, polled.stored, polled.acknowledged
    );
    let ingested = drain(&app, &env.ingest_queue_url, |e| app.ingest_batch(e)).await?;
    println!("    ingest consumer: {ingested} messages");
    let ledgered = drain(&app, &ledger_queue, |e| app.ledger_batch(e)).await?;
    println!("    ledger consumer: {ledgered} events");
    let mut pushed = 0;
    for (channel, url) in &env.push_queues {
        pushed += drain(&app, url, |e| app.push_batch(*channel, e)).await?;
    }
    println!("    push consumers: {pushed} jobs");

    step(5, "The WMS ships the Shopify order (POST /v1/shipments): stock leaves, tracking goes back to Shopify");
    let shopify_order = json(SHOPIFY_ORDER);
    let shipment = serde_json::json!({
        "id": "wms-demo-1",
        "order_id": "shopify:shop-eu:1073459981",
        "channel": "shopify",
        "account": "shop-eu",
        "channel_order_id": "1073459981",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": null,
        "lines": [{"line_id": shopify_order["order"]["line_items"][0]["id"].to_string(), "sku": "IPOD2009BLACK", "quantity": 1}],
        "shipped_at": Utc::now()
    });
    match serde_json::from_value::<manifold_domain::Shipment>(shipment) {
        Ok(shipment) => match app.record_shipment(&shipment, "demo-wms", Utc::now()).await {
            Ok(outcome) => println!("    ledger: {outcome:?}"),
            Err(e) => println!("    shipment failed: {e}"),
        },
        Err(e) => println!("    shipment not built: {e}"),
    }
    for (channel, url) in &env.push_queues {
        drain(&app, url, |e| app.push_batch(*channel, e)).await?;
    }
    let fulfilments = sim
        .snapshot()
        .writes
        .get(&Channel::Shopify)
        .map_or(0, |w| w.iter().filter(|w| w.body.to_string().contains("1Z999AA10123456784")).count());
    println!("    shopify received {fulfilments} fulfillment call(s) carrying the tracking number");

    step(6, "Scheduled tiers (moto never fires schedules; run once here)");
    for tier in ["stock", "reconcile", "prices"] {
        match app.run_tier(tier, Utc::now()).await {
            Ok(r) => println!(
                "    {tier:<10} positions {:>3}  push jobs {:>3}  orders seen {:>3}  drift {:>2}  {}",
                r.positions,
                r.push_jobs,
                r.orders_seen,
                r.drift,
                r.note.unwrap_or_default()
            ),
            Err(e) => println!("    {tier:<10} failed: {e}"),
        }
    }
    for (channel, url) in &env.push_queues {
        drain(&app, url, |e| app.push_batch(*channel, e)).await?;
    }

    step(7, "Result");
    for id in ["shopify:shop-eu:1073459981", "woocommerce:woo-main:727", "bigcommerce:store-abc123:218"] {
        if let Ok(order_id) = manifold_domain::OrderId::new(id) {
            match app.records.get_order(&order_id).await {
                Ok(Some(o)) => println!(
                    "    order {id:<34} {:<10} {} {:>8}  {} line(s){}",
                    o.status.as_str(),
                    o.currency,
                    o.totals.total,
                    o.lines.len(),
                    if o.oversold.is_some() { "  OVERSOLD (held)" } else { "" }
                ),
                Ok(None) => println!("    order {id:<34} not stored"),
                Err(e) => println!("    order {id:<34} unreadable: {e}"),
            }
        }
    }
    for sku in stocked.iter().map(|(s, _)| s.as_str()) {
        if let Ok(s) = manifold_domain::Sku::new(sku)
            && let Ok(p) = app.ledger.position(&manifold_ledger::PositionKey::new(s, "default")).await
        {
            println!(
                "    stock {sku:<16} on_hand {:>3}  reserved {:>3}  available {:>3}",
                p.on_hand, p.reserved, p.available
            );
        }
    }
    let snapshot = sim.snapshot();
    for (channel, stock) in &snapshot.stock {
        // Keys are what each channel's stock write uses: SKUs, EANs, or its own item ids.
        let listed: Vec<String> = stock.iter().filter(|(_, v)| **v != 0).map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "    {:<12} API calls {:>3}  throttled {:>2}  now listed: {}",
            channel.as_str(),
            snapshot.requests.get(channel).copied().unwrap_or(0),
            snapshot.throttled.get(channel).copied().unwrap_or(0),
            if listed.is_empty() { "-".to_owned() } else { listed.join(" ") }
        );
    }
    if let Some(path) = std::env::var_os("METRICS_FILE") {
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().into_iter().flatten() {
                let name = m["Name"].as_str().unwrap_or_default();
                if m["Unit"] == "Count" {
                    *totals.entry(name.to_owned()).or_default() += doc[name].as_f64().unwrap_or(0.0);
                }
            }
        }
        let shown: Vec<String> = totals.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("    metrics (EMF, {}): {}", std::path::Path::new(&path).display(), shown.join(" "));
    }
    let quarantined = app.quarantine.list(false).await.map_or(0, |q| q.len());
    println!("    quarantined payloads: {quarantined} (inspect with `manifold quarantine list`)");
    println!(
        "\nDone in {:.1}s. Inspect further with `manifold stock IPOD2009BLACK`, `manifold dlq list`, `manifold trace <id>`.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn report(what: &str, r: &manifold_app::webhook::WebhookResponse) {
    println!("    {what:<40} -> {} {} (trace {})", r.status, r.message, r.trace_id);
}

/// Polls a queue until it stays empty, running `handler` on each batch like the event source mapping.
async fn drain<F, Fut>(app: &App, url: &str, handler: F) -> Result<usize, CliError>
where
    F: Fn(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    let mut total = 0;
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    loop {
        let n = poll_once(&app.sqs, url, &handler).await.map_err(|e| CliError::Usage(format!("polling {url}: {e}")))?;
        total += n;
        if n == 0 || std::time::Instant::now() > deadline {
            return Ok(total);
        }
    }
}

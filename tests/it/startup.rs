//! Each function starts as Lambda starts it: for EVERY function of the transformed template, its real
//! built binary (`target/debug/<Metadata.BuildProperties.Binary>`) is started under an embedded Lambda
//! Runtime API on loopback with only the environment the template gives it, resolved to the local
//! stack's physical names (moto's CloudFormation), plus Lambda's reserved variables and the local AWS
//! endpoint and credentials. Each must reach its first `GET /runtime/invocation/next` without an init
//! error, then answer one representative event of its own event source, as the template wires it:
//! an HTTP API payload 2.0 request for each route, an SQS batch for each event source mapping, the
//! scheduled event (or the target's constant input) for each schedule.
//!
//! Needs the binaries: `infra/local/test.sh` builds them (`cargo build --workspace --bins`) before
//! `cargo test`; run that alone first when running this test by hand.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use chrono::Utc;
use manifold_cli::seed;
use manifold_connectors::verify::sign;
use manifold_domain::Channel;
use manifold_localrt::{
    Function, LocalAws, Logs, Options, Runtime, events,
    template::{Route, Schedule, SqsMapping},
};
use manifold_simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

const SHOPIFY_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");
const AMAZON_NOTE: &str = include_str!("../../shared/normalize/fixtures/amazon/order-change-notification.json");
const AMAZON_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/amazon/orders-v0-getOrder-sandbox-TEST_CASE_200.json");
const AMAZON_ITEMS: &str =
    include_str!("../../shared/normalize/fixtures/amazon/orders-v0-getOrderItems-sandbox-TEST_CASE_200.json");
const EXAMPLE_CONFIG: &str = include_str!("../../infra/channels.example.toml");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture json")
}

/// Everything one function's events need to know.
struct Fixtures {
    order: manifold_domain::Order,
    amazon_note: Value,
    sku: String,
}

/// The startup test and the wiring test share the stack's ConfigBucket object and queues: one at a time.
static STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What an operator provides before the functions run: the configuration in the stack's ConfigBucket
/// (endpoints pointed at `sim`), the accounts' secrets. Returns the prepared (not started) runtime.
async fn prepare(sim: &manifold_simulator::SimHandle, logs: Logs) -> (Runtime, manifold_domain::config::ChannelConfig) {
    let stack_name = std::env::var("MANIFOLD_STACK")
        .expect("MANIFOLD_STACK names the local stack: run through infra/local/test.sh (it creates the stack)");
    let sdk = crate::support::aws().await;
    let bin_dir = manifold_localrt::binary_dir(&root());
    assert!(
        bin_dir.join("webhook").is_file(),
        "no function binaries in {}: run `cargo build --workspace --bins` first (infra/local/test.sh does)",
        bin_dir.display()
    );
    let (config_text, config) = seed::config_for_simulators(EXAMPLE_CONFIG, sim).expect("example config");
    let runtime = Runtime::load(
        &root().join(".local/template.json"),
        &stack_name,
        LocalAws::from_env(),
        Options { logs, ..Options::new(bin_dir) },
    )
    .await
    .expect("template and stack");
    let bucket = runtime.stack.physical.get("ConfigBucket").cloned().expect("the stack has a ConfigBucket");
    seed::put_config(&sdk, &bucket, &config_text).await.expect("put channels.toml");
    seed::put_secrets(&sdk, &config).await.expect("secrets");
    (runtime, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_function_starts_from_the_template_alone_and_answers_its_event_source() {
    let _one_at_a_time = STACK.lock().await;
    let sim = Simulator::start(SimConfig::default()).await.expect("simulators");
    let (runtime, config) = prepare(&sim, Logs::Discard).await;

    let template = runtime.template.clone();
    let routes = template.routes().expect("routes");
    let mappings = template.sqs_mappings().expect("mappings");
    let schedules = template.schedules().expect("schedules");
    let functions = template.functions().expect("functions");
    assert!(functions.len() >= 15, "the template has {} functions", functions.len());

    // Fixtures the events carry: a Shopify order, an Amazon order the simulator knows.
    let shopify = config.accounts.iter().find(|a| a.channel == Channel::Shopify).expect("shopify account");
    let order = manifold_normalize::normalize_order(
        Channel::Shopify,
        &json_of(SHOPIFY_ORDER)["order"],
        &manifold_normalize::Context { account: shopify, received_at: Utc::now() },
    )
    .expect("shopify order");
    let amazon_order = json_of(AMAZON_ORDER);
    sim.seed_order(
        Channel::Amazon,
        json!({"order": amazon_order["payload"], "order_items": json_of(AMAZON_ITEMS)["payload"]["OrderItems"]}),
    )
    .expect("seed amazon order");
    let mut amazon_note = json_of(AMAZON_NOTE);
    amazon_note["Payload"]["OrderChangeNotification"]["AmazonOrderId"] =
        amazon_order["payload"]["AmazonOrderId"].clone();
    amazon_note["Payload"]["OrderChangeNotification"]["SellerId"] = json!("A2EUQ1WTGCTBG2");
    let fixtures = Fixtures { order, amazon_note, sku: format!("STARTUP-{}", std::process::id()) };

    // 1. Every function reaches its first `next` (all at once, as a deploy's first traffic would).
    let started = std::time::Instant::now();
    let inits = futures::future::join_all(runtime.functions.values().map(|f| {
        let f = f.clone();
        async move {
            let t = std::time::Instant::now();
            let r = f.start().await;
            (format!("{} {} ms", f.config.logical_id, t.elapsed().as_millis()), r)
        }
    }))
    .await;
    let init_failures: Vec<String> =
        inits.iter().filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string)).collect();
    assert!(init_failures.is_empty(), "init failed:\n{}", init_failures.join("\n\n"));
    println!(
        "{} functions reached their first `next` in {:.1}s (all at once, debug build): {}",
        inits.len(),
        started.elapsed().as_secs_f64(),
        inits.iter().map(|(timing, _)| timing.as_str()).collect::<Vec<_>>().join(", ")
    );

    // 2. Each answers its own event source's event.
    let mut failures = Vec::new();
    for spec in &functions {
        let f = runtime.function(&spec.logical_id).expect("prepared").clone();
        let mut answered = 0;
        for route in routes.iter().filter(|r| r.function == spec.logical_id) {
            answered += 1;
            if let Err(e) = http_case(&runtime, &f, route, &fixtures).await {
                failures.push(format!("{} {}: {e}", spec.logical_id, route.key()));
            }
        }
        for mapping in mappings.iter().filter(|m| m.function == spec.logical_id) {
            answered += 1;
            if let Err(e) = sqs_case(&runtime, &f, mapping, &fixtures).await {
                failures.push(format!("{} <- {}: {e}", spec.logical_id, mapping.queue));
            }
        }
        for schedule in schedules.iter().filter(|s| s.function == spec.logical_id) {
            answered += 1;
            if let Err(e) = schedule_case(&runtime, &f, schedule).await {
                failures.push(format!("{} <- {}: {e}", spec.logical_id, schedule.rule));
            }
        }
        if answered == 0 {
            failures.push(format!("{}: the template wires no event source to it", spec.logical_id));
        }
        let cold = f.stats.cold_starts.load(std::sync::atomic::Ordering::Relaxed);
        if cold != 1 {
            failures.push(format!("{}: {cold} cold starts (a crash or timeout restarted it)", spec.logical_id));
        }
    }
    runtime.shutdown();
    assert!(failures.is_empty(), "functions that did not answer their event:\n{}", failures.join("\n\n"));
}

/// The HTTP API request this route gets from its caller, invoked as the API's integration would.
async fn http_case(runtime: &Runtime, f: &Function, route: &Route, fx: &Fixtures) -> Result<(), String> {
    let mut params = BTreeMap::new();
    let mut query = "";
    let (path, body, mut headers): (String, Vec<u8>, BTreeMap<String, String>) = match route.path.as_str() {
        "/v1/webhooks/{channel}/{account}" => {
            params.insert("channel".to_owned(), "shopify".to_owned());
            params.insert("account".to_owned(), "shop-eu".to_owned());
            let body = serde_json::to_vec(&json_of(SHOPIFY_ORDER)["order"]).unwrap_or_default();
            let signed = sign(Channel::Shopify, seed::WEBHOOK_SECRET, &BTreeMap::new(), "", &body, Utc::now())
                .map_err(|e| e.to_string())?;
            let mut h: BTreeMap<String, String> = signed
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            h.insert("x-shopify-topic".into(), "orders/create".into());
            h.insert("x-shopify-event-id".into(), format!("startup-{}", uuid()));
            ("/v1/webhooks/shopify/shop-eu".to_owned(), body, h)
        }
        "/v1/webhooks/ebay/{account}" if route.method == "GET" => {
            params.insert("account".to_owned(), "ebay-de".to_owned());
            query = "challenge_code=startup-challenge";
            ("/v1/webhooks/ebay/ebay-de".to_owned(), Vec::new(), BTreeMap::new())
        }
        "/v1/inventory/{sku}" => {
            params.insert("sku".to_owned(), fx.sku.clone());
            (format!("/v1/inventory/{}", fx.sku), br#"{"on_hand": 3}"#.to_vec(), BTreeMap::new())
        }
        "/v1/inventory/import" => {
            let body = json!([{"sku": fx.sku, "on_hand": 4}]).to_string().into_bytes();
            ("/v1/inventory/import".to_owned(), body, BTreeMap::new())
        }
        "/v1/prices/{sku}" => {
            params.insert("sku".to_owned(), fx.sku.clone());
            let body = br#"{"amount": "19.99", "currency": "EUR"}"#.to_vec();
            (format!("/v1/prices/{}", fx.sku), body, BTreeMap::new())
        }
        "/v1/prices/import" => {
            let body = json!([{"sku": fx.sku, "amount": "18.99", "currency": "EUR"}]).to_string().into_bytes();
            ("/v1/prices/import".to_owned(), body, BTreeMap::new())
        }
        "/v1/products/{sku}" => {
            params.insert("sku".to_owned(), fx.sku.clone());
            let body = br#"{"title": "Startup mug", "images": [{"url": "https://cdn.example/mug.jpg"}]}"#.to_vec();
            (format!("/v1/products/{}", fx.sku), body, BTreeMap::new())
        }
        "/v1/products/import" => {
            let body = json!([{"sku": fx.sku, "title": "Startup mug, imported"}]).to_string().into_bytes();
            ("/v1/products/import".to_owned(), body, BTreeMap::new())
        }
        "/v1/shipments" => {
            // A shipment of an order the ledger never reserved: answered (400 or 200), not crashed.
            let body = json!({
                "id": format!("startup-{}", uuid()), "order_id": "shopify:shop-eu:startup-none", "channel": "shopify",
                "account": "shop-eu", "channel_order_id": "startup-none", "carrier": "UPS",
                "tracking_number": "1Z", "tracking_url": null, "lines": [], "shipped_at": Utc::now()
            });
            ("/v1/shipments".to_owned(), body.to_string().into_bytes(), BTreeMap::new())
        }
        "/v1/sync/{channel}/{account}/{kind}" => {
            // A prices run: answered with its id, its first page queued (not run here).
            for (k, v) in [("channel", "shopify"), ("account", "shop-eu"), ("kind", "prices")] {
                params.insert(k.to_owned(), v.to_owned());
            }
            ("/v1/sync/shopify/shop-eu/prices".to_owned(), br#"{"full": true}"#.to_vec(), BTreeMap::new())
        }
        "/v1/{collection}" => {
            params.insert("collection".to_owned(), "orders".to_owned());
            query = "limit=5";
            ("/v1/orders".to_owned(), Vec::new(), BTreeMap::new())
        }
        "/v1/customers/{id}" => {
            // A customer nobody stored: answered 404, nothing erased.
            params.insert("id".to_owned(), "cus_00000000000000000000".to_owned());
            ("/v1/customers/cus_00000000000000000000".to_owned(), Vec::new(), BTreeMap::new())
        }
        "/v1/crm/{crm}" => {
            // HubSpot's webhook without its v3 signature: refused (401), nothing queued.
            params.insert("crm".to_owned(), "hubspot".to_owned());
            let body = br#"[{"eventId": 1, "subscriptionType": "contact.propertyChange", "occurredAt": 0}]"#.to_vec();
            ("/v1/crm/hubspot".to_owned(), body, BTreeMap::new())
        }
        "/v1/{collection}/{id}" => {
            params.insert("collection".to_owned(), "orders".to_owned());
            params.insert("id".to_owned(), "shopify:shop-eu:startup-none".to_owned());
            ("/v1/orders/shopify:shop-eu:startup-none".to_owned(), Vec::new(), BTreeMap::new())
        }
        other => return Err(format!("no representative request for route {other}")),
    };
    headers.insert("content-type".into(), "application/json".into());
    headers.insert("host".into(), "127.0.0.1".into());
    let key = route.key();
    let event = events::http_api_event(&events::HttpRequest {
        route_key: &key,
        method: &route.method,
        path: &path,
        raw_query: query,
        headers,
        path_parameters: params,
        body: &body,
        iam: route.iam.then_some((runtime.aws.access_key_id.as_str(), runtime.stack.account.as_str())),
        account: &runtime.stack.account,
        api_id: "local",
    });
    let answer = f.invoke(&event).await.map_err(|e| e.to_string())?;
    let response = events::http_api_response(&answer);
    let text = String::from_utf8_lossy(&response.body);
    let accepted = match route.path.as_str() {
        "/v1/shipments" => response.status == 200 || response.status == 400,
        // An order nobody stored: answered 404, not crashed.
        "/v1/{collection}/{id}" | "/v1/customers/{id}" => response.status == 404,
        "/v1/crm/{crm}" => response.status == 401,
        "/v1/sync/{channel}/{account}/{kind}" => response.status == 202,
        "/v1/webhooks/ebay/{account}" => {
            // eBay's documented answer: hex(SHA-256(challengeCode + verificationToken + endpoint)).
            let expected = manifold_app::webhook::ebay_challenge_response(
                "startup-challenge",
                seed::EBAY_VERIFICATION_TOKEN,
                "https://127.0.0.1/v1/webhooks/ebay/ebay-de",
            );
            let answered: Value = serde_json::from_slice(&response.body).unwrap_or_default();
            response.status == 200 && answered["challengeResponse"] == expected.as_str()
        }
        _ => response.status == 200,
    };
    if accepted { Ok(()) } else { Err(format!("answered {}: {text}", response.status)) }
}

/// One SQS batch as the mapping delivers it, with a message of the kind that queue carries.
async fn sqs_case(runtime: &Runtime, f: &Function, mapping: &SqsMapping, fx: &Fixtures) -> Result<(), String> {
    let arn = runtime.stack.attribute(&mapping.queue, "Arn").map_err(|e| e.to_string())?;
    let binary = f.config.binary.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let body = match binary {
        "ingest" => json!({
            "v": 1, "channel": "shopify", "account": "shop-eu", "source": "webhook", "topic": "orders/create",
            "event_id": format!("startup-{}", uuid()), "trace_id": uuid(), "received_at": Utc::now(),
            "body": serde_json::to_string(&json_of(SHOPIFY_ORDER)["order"]).unwrap_or_default(),
        }),
        "amazon-notifications" => fx.amazon_note.clone(),
        "ledger" => json!({
            "version": "0", "id": uuid(), "detail-type": "OrderAccepted", "source": "manifold",
            "account": runtime.stack.account, "time": Utc::now(), "region": runtime.stack.region, "resources": [],
            "detail": {"trace_id": uuid(), "data": fx.order},
        }),
        "push" => {
            let channel = f.config.env.get("CHANNEL").cloned().unwrap_or_default();
            let account = fx_account(&channel);
            json!({"type": "stock", "channel": channel, "account": account, "sku": fx.sku, "location": "default",
                   "channel_sku": fx.sku, "quantity": 1, "version": 1})
        }
        // A page of a run that is not (or no longer) there: acknowledged, nothing done.
        "scheduler" => json!({"run": "20000101T000000000Z-00000000", "page": 0}),
        "changes" => json!({
            "version": "0", "id": uuid(), "detail-type": "OrderAccepted", "source": "manifold",
            "account": runtime.stack.account, "time": Utc::now(), "region": runtime.stack.region, "resources": [],
            "detail": {"trace_id": uuid(), "event_id": format!("startup-{}", uuid()), "data": fx.order},
        }),
        // A CRM update for a CRM account the configuration does not have: kept in quarantine, acknowledged.
        "customers" => {
            json!({"crm": "startup-gone", "record_id": "1", "property": "hs_marketing_consent", "value": "x"})
        }
        // A CRM job for a CRM account the configuration does not have: refused, kept in quarantine.
        "crm" => {
            json!({"kind": "upsert", "crm": "startup-gone", "customer_ids": ["cus_00000000000000000000"], "trace_id": uuid()})
        }
        // A delivery for a subscription the configuration no longer has: dropped, acknowledged.
        "deliveries" => json!({
            "subscription": "startup-gone", "webhook_id": format!("msg_{}", uuid()), "event_type": "OrderAccepted",
            "event_id": uuid(), "group": "startup-gone#none", "occurred_at": Utc::now(), "payload": {},
        }),
        other => return Err(format!("no representative message for the {other} binary")),
    };
    let record = events::sqs_record_of(&body.to_string(), &BTreeMap::new(), &arn, &runtime.stack.region);
    let answer = f.invoke(&events::sqs_event(&[record])).await.map_err(|e| e.to_string())?;
    let failed = answer["batchItemFailures"].as_array().ok_or_else(|| format!("not a batch response: {answer}"))?;
    if failed.is_empty() { Ok(()) } else { Err(format!("reported failures: {answer}")) }
}

/// The example configuration's account on `channel`.
fn fx_account(channel: &str) -> String {
    EXAMPLE_CONFIG
        .split("[[accounts]]")
        .find(|block| block.contains(&format!("channel = \"{channel}\"")))
        .and_then(|block| block.lines().find_map(|l| l.strip_prefix("account = ")))
        .map(|a| a.trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// What the rule sends its target.
async fn schedule_case(runtime: &Runtime, f: &Function, schedule: &Schedule) -> Result<(), String> {
    let rule_arn = runtime.stack.attribute(&schedule.rule, "Arn").unwrap_or_default();
    let event =
        events::scheduled_event(schedule.input.as_ref(), &rule_arn, &runtime.stack.account, &runtime.stack.region);
    let answer = tokio::time::timeout(Duration::from_mins(2), f.invoke(&event))
        .await
        .map_err(|_| "no answer in 2 minutes".to_owned())?
        .map_err(|e| e.to_string())?;
    if answer.is_object() { Ok(()) } else { Err(format!("answered {answer}")) }
}

fn uuid() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()))
}

/// The template's wiring around the real binaries: the HTTP API (IAM routes refuse what is not
/// SigV4-signed with the local credentials), the SQS event source mappings (ingest, the ledger behind
/// the bus rule, each channel's push function) and partial batch responses, end to end: a signed
/// webhook ends as the ledger's quantity in a channel's listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_template_wiring_carries_a_signed_webhook_to_a_channel_listing() {
    use manifold_ledger::Ledger;
    use manifold_localrt::wiring::{Wiring, WiringOptions, sign_sigv4};

    let _one_at_a_time = STACK.lock().await;
    let sim = Simulator::start(SimConfig::default()).await.expect("simulators");
    let (runtime, config) = prepare(&sim, Logs::Discard).await;
    let runtime = std::sync::Arc::new(runtime);
    // speedup 1: the one-minute tick may fire once; what it starts goes through the SyncQueue as deployed.
    let wiring = Wiring::start(
        runtime.clone(),
        WiringOptions { idle_poll: Duration::from_millis(100), ..WiringOptions::default() },
    )
    .await
    .expect("wiring");
    let api = wiring.url();
    let http = reqwest::Client::new();
    let aws = runtime.aws.clone();
    let sku = format!("WIRED-{}", uuid());

    // IAM-authorized route: unsigned and wrongly signed requests are refused before the function runs.
    let url = format!("{api}/v1/inventory/{sku}");
    let body = r#"{"on_hand": 5}"#;
    let unsigned = http.put(&url).body(body).send().await.expect("put");
    assert_eq!(unsigned.status().as_u16(), 403);
    let wrong = LocalAws { secret_access_key: "not-the-local-secret".into(), ..aws.clone() };
    let put = |creds: LocalAws| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let headers = sign_sigv4(
                "PUT",
                &url,
                &[("content-type", "application/json")],
                body.as_bytes(),
                &creds,
                std::time::SystemTime::now(),
            )
            .expect("sign");
            let mut request = http.put(&url).header("content-type", "application/json").body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request.send().await.expect("put")
        }
    };
    assert_eq!(put(wrong).await.status().as_u16(), 403);
    let stocked = put(aws.clone()).await;
    assert_eq!(stocked.status().as_u16(), 200);
    assert_eq!(http.get(format!("{api}/v2/nothing")).send().await.expect("get").status().as_u16(), 404);

    // A signed Shopify order for that SKU, posted to the public route.
    let mut order = json_of(SHOPIFY_ORDER)["order"].clone();
    let order_id = 9_000_000_000_u64 + u64::from(std::process::id());
    order["id"] = json!(order_id);
    order["line_items"][0]["sku"] = json!(sku);
    order["line_items"][0]["quantity"] = json!(1);
    let body = serde_json::to_vec(&order).expect("order");
    let signed = sign(Channel::Shopify, seed::WEBHOOK_SECRET, &BTreeMap::new(), "", &body, Utc::now())
        .expect("shopify signature");
    let mut request = http
        .post(format!("{api}/v1/webhooks/shopify/shop-eu"))
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-event-id", format!("wired-{}", uuid()))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in &signed {
        request = request.header(k.as_str(), v.to_str().expect("header"));
    }
    let answer = request.send().await.expect("webhook");
    assert_eq!(answer.status().as_u16(), 200, "{}", answer.text().await.unwrap_or_default());

    // IngestQueue -> ingest -> bus -> LedgerQueue -> ledger: the unit is reserved.
    let sdk = crate::support::aws().await;
    let env = manifold_aws::AwsEnv::from_lookup(|k| runtime.function("LedgerFunction")?.config.env.get(k).cloned())
        .expect("the ledger function's environment names the tables");
    let ledger = manifold_ledger::DynamoLedger::new(manifold_ledger::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &env.ledger_table,
    ));
    let key = manifold_ledger::PositionKey::new(manifold_domain::Sku::new(sku.as_str()).expect("sku"), "default");
    let position =
        crate::support::eventually("the ledger reserves the order's unit", Duration::from_mins(2), || async {
            ledger.position(&key).await.ok().filter(|p| p.reserved == 1)
        })
        .await;
    assert_eq!((position.on_hand, position.available), (5, 4));

    // The ledger fans out to every channel's push queue; eBay's push function lists the publishable quantity.
    let ebay = push_jobs_for(&config, &position, Channel::Ebay);
    let listed = crate::support::eventually("eBay lists the SKU", Duration::from_mins(2), || async {
        sim.snapshot().stock.get(&Channel::Ebay).and_then(|s| s.get(&ebay.0).copied()).filter(|q| *q == ebay.1)
    })
    .await;
    assert_eq!(listed, ebay.1);

    // Partial batch responses: a message the ledger cannot apply is left on its queue (for the
    // visibility timeout, then the redrive policy), never deleted.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ledger_queue = runtime.stack.queue_url("LedgerQueue").expect("ledger queue");
    let failed_before = wiring.stats.messages_failed.load(std::sync::atomic::Ordering::Relaxed);
    sqs.send_message().queue_url(&ledger_queue).message_body("not a bus event").send().await.expect("send");
    crate::support::eventually("the bad message is reported failed", Duration::from_mins(1), || async {
        (wiring.stats.messages_failed.load(std::sync::atomic::Ordering::Relaxed) > failed_before).then_some(())
    })
    .await;
    let in_flight = manifold_localrt::wiring::queue_depth(&sqs, &ledger_queue).await.expect("depth");
    assert!(in_flight >= 1, "the failed message stays on the queue");
    drop(wiring);
    runtime.shutdown();
    // Not left to come back in later runs against a kept emulator.
    let _ = sqs.purge_queue().queue_url(&ledger_queue).send().await;
    if let Ok(sync_queue) = runtime.stack.queue_url("SyncQueue") {
        let _ = sqs.purge_queue().queue_url(&sync_queue).send().await;
    }
}

/// (simulator key, quantity) of the push job the ledger makes for `channel`'s account.
fn push_jobs_for(
    config: &manifold_domain::config::ChannelConfig,
    position: &manifold_ledger::Position,
    channel: Channel,
) -> (String, i64) {
    let job = manifold_ledger::fanout::push_jobs(config, position, None)
        .into_iter()
        .find(|j| j.channel == channel)
        .expect("an account on the channel");
    (job.channel_sku, i64::from(job.quantity))
}

/// As Lambda's SQS event source mapping: a batch whose function crashes is not deleted and comes back
/// after the queue's visibility timeout, to a new execution environment (a new cold start); then only
/// the messages the function reports as failed stay on the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_batch_comes_back_after_the_visibility_timeout_to_a_new_environment() {
    use aws_sdk_sqs::types::QueueAttributeName;
    use manifold_localrt::{
        FunctionConfig, LogSink,
        template::SqsMapping,
        wiring::{SqsPoller, WiringStats, queue_depth},
    };

    let sdk = crate::support::aws().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(crate::support::unique("redelivery"))
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    for body in ["good", "bad"] {
        sqs.send_message().queue_url(&queue).message_body(body).send().await.expect("send");
    }

    // A stand-in function: its first environment crashes on its first batch; later ones report the
    // message whose body is "bad" as failed.
    let dir = std::env::temp_dir().join(crate::support::unique("redelivery-fn"));
    std::fs::create_dir_all(&dir).expect("dir");
    let marker = dir.join("crashed-once");
    let script = dir.join("bootstrap");
    std::fs::write(
        &script,
        format!(
            r#"#!/usr/bin/env python3
import json, os, sys, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        request_id = r.headers["lambda-runtime-aws-request-id"]
        event = json.load(r)
    if not os.path.exists("{marker}"):
        open("{marker}", "w").close()
        print("crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    failed = [{{"itemIdentifier": m["messageId"]}} for m in event["Records"] if m["body"] == "bad"]
    body = json.dumps({{"batchItemFailures": failed}}).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=body, method="POST")).read()
"#,
            marker = marker.display()
        ),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    let function = std::sync::Arc::new(Function::new(FunctionConfig {
        logical_id: "RedeliveryFunction".into(),
        name: "redelivery".into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:redelivery".into(),
        binary: script,
        timeout: Duration::from_secs(10),
        memory_mb: 128,
        handler: "bootstrap".into(),
        env: BTreeMap::from([("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned())]),
        max_concurrency: 1,
        logs: LogSink::Discard,
    }));
    let stats = std::sync::Arc::new(WiringStats::default());
    let poller = SqsPoller::new(
        SqsMapping {
            logical_id: "RedeliveryMapping".into(),
            function: "RedeliveryFunction".into(),
            queue: "RedeliveryQueue".into(),
            batch_size: 10,
            batching_window: Duration::from_millis(300),
            maximum_concurrency: Some(1),
            report_batch_item_failures: true,
            enabled: true,
        },
        function.clone(),
        queue.clone(),
        "arn:aws:sqs:us-east-1:123456789012:redelivery".into(),
        "us-east-1".into(),
        sqs.clone(),
        stats.clone(),
        Duration::from_millis(100),
    );

    // The batching window gathers both messages into one batch; the environment crashes on it.
    assert_eq!(poller.batch().await.expect("first batch"), 2);
    assert_eq!(stats.messages_deleted.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(queue_depth(&sqs, &queue).await.expect("depth"), 2, "a crashed batch deletes nothing");

    // After the visibility timeout the batch comes back, to a new environment.
    let again = crate::support::eventually("the batch to come back", Duration::from_secs(30), || async {
        let n = poller.batch().await.expect("batch");
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(again, 2);
    assert_eq!(function.stats.cold_starts.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(stats.messages_deleted.load(std::sync::atomic::Ordering::Relaxed), 1, "the good message is deleted");
    assert_eq!(
        stats.messages_failed.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "both messages of the crashed batch, then only the bad one, are left to retry"
    );
    let left = crate::support::eventually("the bad message to come back", Duration::from_secs(30), || async {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        got.messages.unwrap_or_default().into_iter().next()
    })
    .await;
    assert_eq!(left.body(), Some("bad"));
    assert_eq!(
        left.attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
            .map(String::as_str),
        Some("3"),
        "received by the crash, by the partial failure, and now"
    );
    function.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `manifold bench` on a small run, through the same binaries and stack: every figure is measured
/// from the run (no figure is asserted, but each must have been counted). The windows of every order
/// close, the work is counted in the functions (DynamoDB units as the emulator reports them), the
/// hot SKU sells exactly its units on hand whole and in shards, and the JSON copy reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bench_measures_every_figure_from_a_run() {
    let _one_at_a_time = STACK.lock().await;
    // The stack's queues as a fresh stack has them: what another test left would be the bench's work.
    let stack_name = std::env::var("MANIFOLD_STACK").expect("MANIFOLD_STACK names the local stack");
    let sqs = aws_sdk_sqs::Client::new(&crate::support::aws().await);
    let queues = sqs.list_queues().queue_name_prefix(&stack_name).send().await.expect("list queues");
    for url in queues.queue_urls() {
        sqs.purge_queue().queue_url(url).send().await.expect("purge");
    }
    let out = std::env::temp_dir().join(crate::support::unique("manifold-bench"));
    let args = manifold_cli::bench::BenchArgs {
        config: root().join("infra/channels.example.toml"),
        template: root().join(".local/template.json"),
        stack: stack_name,
        bin_dir: Some(manifold_localrt::binary_dir(&root())),
        port: 0,
        orders: 6,
        lines: 3,
        rate: 6.0,
        on_hand: 10,
        hot_orders: 24,
        hot_shards: 4,
        json_out: out.join("bench.json"),
        logs: out.join("logs"),
    };
    manifold_cli::bench::run(args).await.expect("the bench runs");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).expect("the JSON copy")).expect("json");

    let window = &report["oversell_window"]["windows"];
    assert_eq!(window["refused"], 0, "{window}");
    assert_eq!(window["unfinished"], 0, "every order's new quantities reached every other channel: {window}");
    assert_eq!(window["window"]["count"], 6);
    assert!(window["updates"].as_u64().unwrap() >= 6 * 3 * 5, "3 SKUs x at least 5 other channels: {window}");
    assert!(report["oversell_window"]["poll_delay"]["count"].as_u64().unwrap() > 0);

    let per_order = &report["work_and_cost"]["per_order"];
    for counted in
        ["lambda_invocations", "lambda_billed_ms", "dynamodb_write_units", "dynamodb_read_units", "sqs_requests"]
    {
        assert!(per_order[counted].as_f64().unwrap() > 0.0, "{counted} was counted: {per_order}");
    }
    assert_eq!(per_order["http_api_requests"], 1.0, "one webhook POST per order");
    assert!(report["work_and_cost"]["cost_per_million_orders"]["total"].as_f64().unwrap() > 0.0);

    let paths: BTreeMap<String, f64> = report["hot_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_owned(), p["calls"].as_f64().unwrap()))
        .collect();
    assert!(paths["webhook"] >= 2.0 && paths["ingest"] >= 2.0 && paths["ledger"] >= 2.0, "{paths:?}");

    let cold = &report["cold_start"];
    assert!(cold["functions"].as_array().unwrap().len() >= 15);
    assert!(cold["hello"]["init_p50_ms"].as_f64().unwrap() > 0.0, "the hello-world baseline started: {cold}");
    assert_eq!(report["normalization"].as_array().unwrap().len(), manifold_domain::Channel::ALL.len());

    for run in report["hot_sku"]["runs"].as_array().unwrap() {
        assert_eq!(run["sold"], run["on_hand"], "exactly the units on hand are sold: {run}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

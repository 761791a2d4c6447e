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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_function_starts_from_the_template_alone_and_answers_its_event_source() {
    let stack_name = std::env::var("MANIFOLD_STACK")
        .expect("MANIFOLD_STACK names the local stack: run through infra/local/test.sh (it creates the stack)");
    let sdk = crate::support::aws().await;
    let bin_dir = manifold_localrt::binary_dir(&root());
    assert!(
        bin_dir.join("webhook").is_file(),
        "no function binaries in {}: run `cargo build --workspace --bins` first (infra/local/test.sh does)",
        bin_dir.display()
    );

    // What an operator provides: the configuration in the stack's ConfigBucket, the accounts' secrets.
    let sim = Simulator::start(SimConfig::default()).await.expect("simulators");
    let (config_text, config) = seed::config_for_simulators(EXAMPLE_CONFIG, &sim).expect("example config");
    let runtime = Runtime::load(
        &root().join(".local/template.json"),
        &stack_name,
        LocalAws::from_env(),
        Options { logs: Logs::Discard, ..Options::new(bin_dir) },
    )
    .await
    .expect("template and stack");
    let bucket = runtime.stack.physical.get("ConfigBucket").cloned().expect("the stack has a ConfigBucket");
    seed::put_config(&sdk, &bucket, &config_text).await.expect("put channels.toml");
    seed::put_secrets(&sdk, &config).await.expect("secrets");

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
        async move { (f.config.logical_id.clone(), f.start().await) }
    }))
    .await;
    let init_failures: Vec<String> =
        inits.iter().filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string)).collect();
    assert!(init_failures.is_empty(), "init failed:\n{}", init_failures.join("\n\n"));
    println!("{} functions reached their first `next` in {:.1}s", inits.len(), started.elapsed().as_secs_f64());

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
        "/v1/shipments" => {
            // A shipment of an order the ledger never reserved: answered (400 or 200), not crashed.
            let body = json!({
                "id": format!("startup-{}", uuid()), "order_id": "shopify:shop-eu:startup-none", "channel": "shopify",
                "account": "shop-eu", "channel_order_id": "startup-none", "carrier": "UPS",
                "tracking_number": "1Z", "tracking_url": null, "lines": [], "shipped_at": Utc::now()
            });
            ("/v1/shipments".to_owned(), body.to_string().into_bytes(), BTreeMap::new())
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

//! Nothing lost under load: a duplicate storm through the real handlers against moto.
//!
//! The test plays the channel and Lambda's event source mappings. Signed Shopify deliveries (the
//! published order fixture with its id, number and lines rewritten per order) go to
//! `App::handle_webhook` from concurrent senders in a seeded random order, each order delivered 1 to 5
//! times: retries of one delivery (the same `X-Shopify-Event-Id`, refused by the webhook's claim) and
//! sibling deliveries of the same order version under their own event id (`orders/updated` next to
//! `orders/create`, refused by the ingest consumer as not newer than the stored order). A sender
//! answered 409 or 503 retries, as Shopify does. Pollers drain the ingest queue through
//! `App::ingest_batch` and the ledger queue (the bus rule's target) through `App::ledger_batch` while
//! the deliveries go on, until both queues are empty; then the outcome is read back from the stores.
//!
//! The storm's size is `STORM_ORDERS` (default 1,000, the figure of issue 10); the 10,000-order
//! variant is a bench command on the same engine (`tests/benches/storm.rs`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use futures::{StreamExt, stream};
use manifold_app::{App, app::Settings, ledger::OnHandUpdate};
use manifold_aws::secrets::StaticSecrets;
use manifold_cli::commands::dlq::Route;
use manifold_domain::{
    Channel, Sku,
    config::{ChannelConfig, RateLimit},
};
use manifold_ledger::{DynamoLedger, Ledger, PositionKey};
use manifold_simulator::{SimConfig, SimHandle, Simulator};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};

use crate::{
    fixtures::{EXAMPLE, SHOPIFY_ORDER, account_secret, shopify_headers},
    support::{self, Stack},
};

/// The Shopify account of the example configuration the storm's orders come from.
pub(crate) const ACCOUNT: &str = "shop-eu";
/// Master SKUs the orders pick their lines from.
pub(crate) const SKUS: usize = 20;
/// The seed of the storm's orders, quantities, delivery counts and delivery order.
pub(crate) const SEED: u64 = 10;
/// Concurrent webhook senders, and pollers per queue (the mappings' maximum concurrency).
pub(crate) const SENDERS: usize = 16;
pub(crate) const POLLERS: usize = 2;
/// How long a whole run may take before it is declared stuck (a guard, not a measurement).
const STUCK_AFTER: Duration = Duration::from_mins(30);

/// The storm's size: `STORM_ORDERS`, 1,000 by default.
pub(crate) fn orders_from_env() -> usize {
    std::env::var("STORM_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000)
}

/// One order of the storm, as the channel holds it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedOrder {
    /// The canonical order id (`shopify:shop-eu:{number}`).
    pub(crate) id: String,
    /// (master SKU, quantity) per line.
    pub(crate) lines: Vec<(String, u32)>,
}

/// One delivery a sender makes (retrying it on 409 or 503 until it is answered 200).
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The planned order it carries; `None` for a malformed one (see [`Plan::with_malformed`]).
    pub(crate) order: Option<usize>,
    pub(crate) body: Arc<Vec<u8>>,
    pub(crate) event_id: String,
    pub(crate) topic: &'static str,
}

/// The seeded storm: its orders and every delivery of them, shuffled.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) orders: Vec<PlannedOrder>,
    pub(crate) deliveries: Vec<Delivery>,
    /// On hand per SKU before the storm: more than every order together takes.
    pub(crate) initial: i64,
    rng: StdRng,
}

impl Plan {
    /// `orders` orders of 1 or 2 lines (1 to 3 units of one of the first `skus` storm SKUs each), each
    /// delivered 1 to 5 times. Order numbers start at `first_number`.
    pub(crate) fn new(orders: usize, skus: usize, first_number: u64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let fixture: Value = serde_json::from_str::<Value>(SHOPIFY_ORDER).expect("fixture")["order"].clone();
        let mut planned = Vec::with_capacity(orders);
        let mut deliveries = Vec::new();
        for (i, number) in (first_number..).take(orders).enumerate() {
            let lines: Vec<(String, u32)> = (0..rng.random_range(1..=2))
                .map(|_| (sku(rng.random_range(0..skus)), rng.random_range(1..=3)))
                .collect();
            let mut doc = fixture.clone();
            doc["id"] = json!(number);
            doc["name"] = json!(format!("#{number}"));
            doc["order_number"] = json!(number);
            let template = doc["line_items"][0].clone();
            doc["line_items"] = (0_u64..)
                .zip(&lines)
                .map(|(n, (sku, quantity))| {
                    let mut line = template.clone();
                    line["id"] = json!(number * 10 + n);
                    line["sku"] = json!(sku);
                    line["quantity"] = json!(quantity);
                    line
                })
                .collect();
            let body = Arc::new(serde_json::to_vec(&doc).expect("order body"));
            planned.push(PlannedOrder { id: format!("shopify:{ACCOUNT}:{number}"), lines });
            // The first delivery, then retries of an earlier one or siblings under their own event id.
            let delivery = |n: u64, topic| Delivery {
                order: Some(i),
                body: body.clone(),
                event_id: format!("storm-{number}-{n}"),
                topic,
            };
            let mut own = vec![delivery(1, "orders/create")];
            for n in 2..=rng.random_range(1..=5) {
                let next = if rng.random_bool(0.5) {
                    own[rng.random_range(0..own.len())].clone()
                } else {
                    delivery(n, "orders/updated")
                };
                own.push(next);
            }
            deliveries.extend(own);
        }
        deliveries.shuffle(&mut rng);
        let initial = 10 * i64::try_from(orders).expect("order count");
        Self { orders: planned, deliveries, initial, rng }
    }

    /// No orders: a run of it only drains what earlier runs left on the queues.
    pub(crate) fn none() -> Self {
        Self::new(0, 1, 0, SEED)
    }

    /// Adds `n` signed deliveries of orders the normalizer cannot read (a line quantity of `"many"`),
    /// at seeded random places: accepted by the webhook, quarantined by the ingest consumer.
    #[must_use]
    pub(crate) fn with_malformed(mut self, n: usize) -> Self {
        let mut doc = serde_json::from_str::<Value>(SHOPIFY_ORDER).expect("fixture")["order"].clone();
        doc["line_items"][0]["quantity"] = json!("many");
        for k in 0..n {
            doc["id"] = json!(4_000_000 + k);
            let delivery = Delivery {
                order: None,
                body: Arc::new(serde_json::to_vec(&doc).expect("malformed body")),
                event_id: format!("storm-malformed-{k}"),
                topic: "orders/create",
            };
            let at = self.rng.random_range(0..=self.deliveries.len());
            self.deliveries.insert(at, delivery);
        }
        self
    }

    /// Distinct deliveries (event ids): what the webhook accepts, once each.
    pub(crate) fn distinct(&self) -> usize {
        let mut ids: Vec<&str> = self.deliveries.iter().map(|d| d.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Units ordered per SKU, over every order.
    pub(crate) fn ordered(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (sku, quantity) in self.orders.iter().flat_map(|o| &o.lines) {
            *out.entry(sku.clone()).or_default() += i64::from(*quantity);
        }
        out
    }
}

/// The storm's SKU number `n`.
pub(crate) fn sku(n: usize) -> String {
    format!("STORM-{n:02}")
}

/// The functions of the order path, each with its own `App` ([`Rig::as_functions`]).
struct Functions {
    webhook: App,
    ingest: App,
    ledger: App,
}

/// A private stack, the channel simulators, and an `App` on the example configuration's accounts of
/// `channels` (each pointed at its simulator, no rate limits, every storm SKU listed on it) built with
/// `sdk`.
pub(crate) struct Rig {
    pub(crate) stack: Stack,
    pub(crate) sim: SimHandle,
    pub(crate) config: ChannelConfig,
    pub(crate) app: App,
    /// With [`Rig::as_functions`]: the webhook, ingest and ledger functions' own `App`s.
    functions: Option<Functions>,
    // What `as_functions` builds the functions' apps from: only the storm bench calls it.
    #[allow(dead_code)]
    settings: Settings,
    #[allow(dead_code)]
    secrets: HashMap<String, String>,
    /// (channel, channel SKU) -> the key the channel's simulator keeps its stock under.
    catalog: BTreeMap<(Channel, String), String>,
    /// The ledger as the test reads it: straight from moto, past any fault the app's calls meet.
    ledger: DynamoLedger,
}

impl Rig {
    pub(crate) async fn new(
        stack: Stack,
        sdk: &aws_config::SdkConfig,
        settings: Settings,
        channels: &[Channel],
    ) -> Self {
        let sim = Simulator::start(Channel::ALL.iter().fold(SimConfig::default(), |c, ch| c.unlimited(*ch)))
            .await
            .expect("simulator starts on loopback");
        let mut config = ChannelConfig::parse("channels.example.toml", EXAMPLE).expect("example configuration");
        config.accounts.retain(|a| channels.contains(&a.channel));
        let skus: Vec<String> = (0..SKUS).map(sku).collect();
        let mut secrets = HashMap::new();
        for a in &mut config.accounts {
            a.endpoint = sim.base_url(a.channel);
            a.rate_limit = RateLimit::Unlimited;
            secrets.insert(a.secret.clone(), account_secret(a.channel));
            // Channels that write stock by their own item id get one per SKU.
            for (i, s) in skus.iter().enumerate() {
                let channel_sku = a.channel_sku_for(&Sku::new(s.as_str()).expect("sku"));
                let id = match a.channel {
                    Channel::Woocommerce => format!("{}", 3000 + i),
                    Channel::Etsy => format!("{}", 1_000_000 + i),
                    Channel::Tiktok => format!("{}/{}", 1_729_000 + i, 1_729_500 + i),
                    Channel::Kaufland => format!("{}", 7_000_000 + i),
                    _ => continue,
                };
                a.item_ids.entry(channel_sku).or_insert(id);
            }
        }
        let skus: Vec<&str> = skus.iter().map(String::as_str).collect();
        let catalog = manifold_cli::demo::seed_catalogs(&sim, &config, &skus);
        let settings = Settings { emulator_safe_ledger: true, ..settings };
        let app = App::build(
            config.clone(),
            stack.env.clone(),
            settings.clone(),
            sdk,
            Arc::new(StaticSecrets(secrets.clone())),
        )
        .expect("app builds");
        let ledger = DynamoLedger::dynamo_emulator(stack.ddb.clone(), &stack.env.ledger_table);
        Self { stack, sim, config, app, functions: None, settings, secrets, catalog, ledger }
    }

    /// Gives the webhook, ingest and ledger functions an `App` each whose AWS calls go through
    /// `proxy` under the function's template name, so a run's calls are counted per function (as
    /// deployed, each function is its own process). Only the storm bench calls it.
    #[allow(dead_code)]
    pub(crate) async fn as_functions(&mut self, proxy: &Arc<crate::awsproxy::AwsProxy>) {
        let mut apps = Vec::new();
        for function in ["WebhookFunction", "IngestFunction", "LedgerFunction"] {
            let sdk = support::sdk_via(proxy.listen(function).await).await;
            let secrets = Arc::new(StaticSecrets(self.secrets.clone()));
            let app = App::build(self.config.clone(), self.stack.env.clone(), self.settings.clone(), &sdk, secrets)
                .expect("app builds");
            apps.push(app);
        }
        let [webhook, ingest, ledger] = <[App; 3]>::try_from(apps).unwrap_or_else(|_| unreachable!("three apps"));
        self.functions = Some(Functions { webhook, ingest, ledger });
    }

    fn webhook(&self) -> &App {
        self.functions.as_ref().map_or(&self.app, |f| &f.webhook)
    }

    fn ingest(&self) -> &App {
        self.functions.as_ref().map_or(&self.app, |f| &f.ingest)
    }

    fn ledger(&self) -> &App {
        self.functions.as_ref().map_or(&self.app, |f| &f.ledger)
    }

    /// The ERP counts `on_hand` of the first `skus` storm SKUs, under `reference`, and retries a
    /// count answered 503 (as the ERP does) until it applies.
    pub(crate) async fn count(&self, skus: usize, on_hand: i64, reference: &str) {
        for n in 0..skus {
            let update =
                OnHandUpdate { on_hand, location: None, source_ref: Some(format!("{reference}-{n}")), as_of: None };
            for attempt in 0.. {
                match self.app.set_on_hand(&sku(n), &update, reference, Utc::now()).await {
                    Ok(_) => break,
                    Err(e) if e.is_retryable() && attempt < 100 => {}
                    Err(e) => panic!("the count of {} failed for good: {e}", sku(n)),
                }
            }
        }
    }

    /// The ledger position of a storm SKU.
    pub(crate) async fn position(&self, sku: &str) -> manifold_ledger::Position {
        let key = PositionKey::default_location(Sku::new(sku).expect("sku"));
        self.ledger.position(&key).await.expect("position")
    }

    /// Per storm SKU and account where the channel does not list what the ledger makes publishable:
    /// (channel, SKU, listed, publishable).
    pub(crate) async fn off_channel(&self) -> Vec<(Channel, String, Option<i64>, u32)> {
        let snapshot = self.sim.snapshot();
        let mut out = Vec::new();
        for s in &skus() {
            let p = self.position(s).await;
            for job in manifold_ledger::fanout::push_jobs(&self.config, &p, None) {
                let key = self.catalog.get(&(job.channel, job.channel_sku.clone())).unwrap_or(&job.channel_sku);
                let listed = snapshot.stock.get(&job.channel).and_then(|m| m.get(key)).copied();
                if listed != Some(i64::from(job.quantity)) {
                    out.push((job.channel, s.clone(), listed, job.quantity));
                }
            }
        }
        out
    }

    /// The ids of every order stored in the records table.
    pub(crate) async fn stored_orders(&self) -> Vec<String> {
        let items: Vec<_> = self
            .stack
            .ddb
            .scan()
            .table_name(&self.stack.env.records_table)
            .filter_expression("begins_with(pk, :o) AND sk = :c")
            .expression_attribute_values(":o", AttributeValue::S("ORDER#".into()))
            .expression_attribute_values(":c", AttributeValue::S("CURRENT".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        items
            .into_iter()
            .map(|item| {
                let item = item.expect("scan records");
                item["pk"].as_s().expect("pk").trim_start_matches("ORDER#").to_owned()
            })
            .collect()
    }

    /// Orders the ingest consumer stored today and yesterday, by its usage counter (counted once per
    /// stored order, never for a duplicate).
    pub(crate) async fn orders_counted(&self) -> u64 {
        let today = Utc::now().date_naive();
        let usage = self.app.state.usage("shopify", today.pred_opt().unwrap_or(today), today).await.expect("usage");
        usage.iter().map(|u| u.orders).sum()
    }

    /// Every dead-letter route of the stack, as `manifold dlq` names them.
    pub(crate) fn routes(&self) -> Vec<Route> {
        let env = &self.stack.env;
        let mut routes = vec![
            (String::from("ingest"), None, env.ingest_queue_url.clone()),
            (String::from("ledger"), None, self.stack.events_queue.clone()),
        ];
        routes.extend(
            self.config
                .accounts
                .iter()
                .map(|a| (format!("push-{}", a.channel), Some(a.channel), env.push_queues[&a.channel].clone())),
        );
        routes
            .into_iter()
            .map(|(name, channel, source_url)| Route {
                name,
                channel,
                dlq_url: self.stack.dlqs[&source_url].clone(),
                source_url,
            })
            .collect()
    }
}

/// The storm's master SKUs.
pub(crate) fn skus() -> Vec<String> {
    (0..SKUS).map(sku).collect()
}

/// What a run did, counted as it went.
#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    /// Deliveries made (a delivery retried after a 409 or 503 counts once).
    pub(crate) deliveries: usize,
    /// Answered `200 accepted`: enqueued for ingest.
    pub(crate) accepted: usize,
    /// Answered `200 duplicate delivery ignored`.
    pub(crate) webhook_duplicates: usize,
    /// 409 and 503 answers the senders retried.
    pub(crate) sender_retries: usize,
    /// Distinct ingest messages the consumer acknowledged; acknowledgements of a message SQS had
    /// delivered again (at least once: a visibility timeout passed under load); messages reported for retry.
    pub(crate) ingested: usize,
    pub(crate) ingest_redelivered: usize,
    pub(crate) ingest_failures: usize,
    /// Ledger queue messages acknowledged, and those reported for retry.
    pub(crate) ledger_events: usize,
    pub(crate) ledger_failures: usize,
    /// Push jobs acknowledged, and those reported for retry, over every channel.
    pub(crate) pushed: usize,
    pub(crate) push_failures: usize,
    /// `OrderAccepted` events the ledger consumer applied, per order id (by distinct event id).
    pub(crate) order_accepted: BTreeMap<String, usize>,
    /// Per order: from its first accepted delivery to the end of the ledger batch that applied its
    /// `OrderAccepted` (reserved and fanned out).
    pub(crate) latencies: Vec<Duration>,
    /// When the last delivery was answered, the ingest queue drained, and the ledger queue drained.
    pub(crate) sent: Duration,
    pub(crate) ingest_drained: Duration,
    pub(crate) wall: Duration,
}

impl Report {
    /// Adds the counts of a later run on the same rig (one that drains what this one left).
    pub(crate) fn absorb(&mut self, later: Report) {
        self.deliveries += later.deliveries;
        self.accepted += later.accepted;
        self.webhook_duplicates += later.webhook_duplicates;
        self.sender_retries += later.sender_retries;
        self.ingested += later.ingested;
        self.ingest_redelivered += later.ingest_redelivered;
        self.ingest_failures += later.ingest_failures;
        self.ledger_events += later.ledger_events;
        self.ledger_failures += later.ledger_failures;
        self.pushed += later.pushed;
        self.push_failures += later.push_failures;
        for (order, n) in later.order_accepted {
            *self.order_accepted.entry(order).or_default() += n;
        }
        self.latencies.extend(later.latencies);
        self.wall += later.wall;
    }
}

/// Counters shared by the senders and pollers of one run.
#[derive(Default)]
struct Tally {
    report: Mutex<Report>,
    accepted_at: Mutex<HashMap<usize, Instant>>,
    ingested: Mutex<HashSet<String>>,
    applied: Mutex<HashSet<String>>,
}

impl Tally {
    fn update(&self, f: impl FnOnce(&mut Report)) {
        f(&mut self.report.lock().unwrap());
    }
}

/// How the webhook answered a delivery in the end.
enum Answer {
    Accepted,
    Duplicate,
}

/// Sends one delivery until it is answered 200; returns the answer and how many 409 and 503 answers
/// came first. The pause between attempts is the sender's retry schedule, as a channel has one.
async fn deliver(app: &App, delivery: &Delivery) -> (Answer, usize) {
    for attempt in 0..1_000 {
        let headers = shopify_headers(&delivery.body, &delivery.event_id, delivery.topic);
        let response = app.handle_webhook("shopify", ACCOUNT, &headers, &delivery.body, Utc::now()).await;
        match (response.status, response.message.as_str()) {
            (200, "accepted") => return (Answer::Accepted, attempt),
            (200, "duplicate delivery ignored") => return (Answer::Duplicate, attempt),
            (409 | 503, _) => tokio::time::sleep(Duration::from_millis(50)).await,
            (status, message) => panic!("delivery {} answered {status} {message}", delivery.event_id),
        }
    }
    panic!("delivery {} never answered 200", delivery.event_id)
}

/// Runs [`POLLERS`] pollers on `url` until `upstream` is done and the queue holds nothing (visible, in
/// flight or delayed).
async fn drain<F, Fut>(sqs: &aws_sdk_sqs::Client, url: &str, upstream: &AtomicBool, started: Instant, handler: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let poller = async || {
        loop {
            let polled = support::poll_once(sqs, url, 10, &handler).await;
            if polled.received == 0 && upstream.load(Ordering::SeqCst) && support::queue_depth(sqs, url).await == 0 {
                return;
            }
            assert!(started.elapsed() < STUCK_AFTER, "{url} still not drained after {STUCK_AFTER:?}");
        }
    };
    futures::future::join_all((0..POLLERS).map(|_| poller())).await;
}

/// The ids of a batch's messages, and those it reported for retry.
fn settled(event: &SqsEvent, response: &SqsBatchResponse) -> (Vec<String>, usize) {
    let failed: HashSet<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let acked =
        event.records.iter().filter_map(|m| m.message_id.clone()).filter(|id| !failed.contains(id.as_str())).collect();
    (acked, failed.len())
}

/// Plays the plan: the senders, the ingest consumer, the ledger consumer and (with `push`) every
/// account's push consumer all at once, until every delivery is answered and every queue is drained.
pub(crate) async fn run(rig: &Rig, plan: &Plan, push: bool) -> Report {
    let started = Instant::now();
    let counts = Tally::default();
    let tally = &counts;
    let (sent, ingested, applied) = (AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false));
    let app = &rig.app;
    let (webhook, ingest_app, ledger_app) = (rig.webhook(), rig.ingest(), rig.ledger());
    let senders = async {
        stream::iter(&plan.deliveries)
            .for_each_concurrent(SENDERS, |d| async {
                let (answer, retries) = deliver(webhook, d).await;
                let now = Instant::now();
                if let (Answer::Accepted, Some(order)) = (&answer, d.order) {
                    tally.accepted_at.lock().unwrap().entry(order).or_insert(now);
                }
                tally.update(|r| {
                    r.deliveries += 1;
                    r.sender_retries += retries;
                    match answer {
                        Answer::Accepted => r.accepted += 1,
                        Answer::Duplicate => r.webhook_duplicates += 1,
                    }
                });
            })
            .await;
        tally.update(|r| r.sent = started.elapsed());
        sent.store(true, Ordering::SeqCst);
    };
    let ingest = async {
        drain(&rig.stack.sqs, &rig.stack.env.ingest_queue_url, &sent, started, |event| async move {
            let response = ingest_app.ingest_batch(event.clone()).await;
            let (acked, failed) = settled(&event, &response);
            let fresh = acked.iter().filter(|id| tally.ingested.lock().unwrap().insert((*id).clone())).count();
            tally.update(|r| {
                r.ingested += fresh;
                r.ingest_redelivered += acked.len() - fresh;
                r.ingest_failures += failed;
            });
            response
        })
        .await;
        tally.update(|r| r.ingest_drained = started.elapsed());
        ingested.store(true, Ordering::SeqCst);
    };
    let index: &HashMap<&str, usize> = &plan.orders.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect();
    let ledger = async {
        drain(&rig.stack.sqs, &rig.stack.events_queue, &ingested, started, |event| async move {
            let response = ledger_app.ledger_batch(event.clone()).await;
            let done = Instant::now();
            let (acked, failed) = settled(&event, &response);
            let accepted_at = tally.accepted_at.lock().unwrap().clone();
            let mut applied = tally.applied.lock().unwrap();
            tally.update(|r| {
                r.ledger_failures += failed;
                r.ledger_events += acked.len();
                for m in event.records.iter().filter(|m| m.message_id.as_ref().is_some_and(|id| acked.contains(id))) {
                    let body: Value = serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap_or(Value::Null);
                    let event_id = body["detail"]["event_id"].as_str().unwrap_or_default().to_owned();
                    if body["detail-type"] != "OrderAccepted" || !applied.insert(event_id) {
                        continue;
                    }
                    let order = body["detail"]["data"]["id"].as_str().unwrap_or_default().to_owned();
                    let count = r.order_accepted.entry(order.clone()).or_default();
                    *count += 1;
                    if let (1, Some(at)) = (*count, index.get(order.as_str()).and_then(|i| accepted_at.get(i))) {
                        r.latencies.push(done - *at);
                    }
                }
            });
            response
        })
        .await;
        applied.store(true, Ordering::SeqCst);
    };
    let pushes = futures::future::join_all(rig.config.accounts.iter().filter(|_| push).map(|a| {
        let applied = &applied;
        drain(&rig.stack.sqs, &rig.stack.env.push_queues[&a.channel], applied, started, move |event| async move {
            let response = app.push_batch(a.channel, event.clone()).await;
            let (acked, failed) = settled(&event, &response);
            tally.update(|r| {
                r.pushed += acked.len();
                r.push_failures += failed;
            });
            response
        })
    }));
    tokio::join!(senders, ingest, ledger, pushes);
    let mut report = counts.report.into_inner().unwrap();
    report.wall = started.elapsed();
    report
}

/// The `q`th quantile of `samples` (0.5: the median), `ZERO` when there are none.
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let at = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use manifold_app::push::PushSettings;
    use manifold_cli::{
        aws::Aws,
        commands::dlq::{self, DeadLetter},
    };
    use manifold_connectors::breaker::BreakerPolicy;
    use manifold_simulator::{FaultKind, FaultSpec};

    use super::*;
    use crate::{
        awsproxy::{AwsProxy, FaultKind as AwsFault, Trigger},
        support::DeadLetters,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duplicate_storm_stores_each_order_once_and_takes_its_stock_once() {
        let stack = Stack::new().await;
        let sdk = stack.sdk.clone();
        // The Shopify account alone: the fan-out to every channel is the chaos run's subject.
        let rig = Rig::new(stack, &sdk, Settings::default(), &[Channel::Shopify]).await;
        let orders = orders_from_env();
        let plan = Plan::new(orders, SKUS, 5_000_000, SEED);
        rig.count(SKUS, plan.initial, "storm-initial").await;

        let report = run(&rig, &plan, false).await;
        eprintln!(
            "storm: {orders} orders, {} deliveries ({} distinct) in {:.1?}: {} refused by the webhook, {} by ingest; \
             {} sender retries, {} ingest messages delivered again; ingest to reserved p50 {:.1?} p99 {:.1?}",
            report.deliveries,
            plan.distinct(),
            report.wall,
            report.webhook_duplicates,
            report.ingested.saturating_sub(orders),
            report.sender_retries,
            report.ingest_redelivered,
            quantile(&report.latencies, 0.5),
            quantile(&report.latencies, 0.99),
        );

        // Every delivery was answered; each distinct one accepted once, every repeat refused as a duplicate.
        assert_eq!(report.deliveries, plan.deliveries.len());
        assert_eq!(report.accepted, plan.distinct(), "each delivery is accepted exactly once");
        assert_eq!(report.webhook_duplicates, plan.deliveries.len() - plan.distinct(), "every repeat is refused");
        assert!(report.webhook_duplicates > 0 && plan.distinct() > orders, "the plan has both kinds of duplicate");
        // Each accepted delivery reached the ingest consumer; exactly one per order stored it.
        assert_eq!(report.ingested, report.accepted);
        let mut stored = rig.stored_orders().await;
        stored.sort_unstable();
        let mut expected: Vec<String> = plan.orders.iter().map(|o| o.id.clone()).collect();
        expected.sort_unstable();
        assert_eq!(stored.len(), orders, "exactly {orders} orders stored");
        assert_eq!(stored, expected);
        assert_eq!(rig.orders_counted().await, orders as u64, "stored once each, so counted once each");
        assert_eq!(report.ingested - orders, plan.distinct() - orders, "every sibling delivery was refused by ingest");
        // One OrderAccepted per order reached the ledger.
        assert_eq!(report.order_accepted.len(), orders);
        assert!(report.order_accepted.values().all(|n| *n == 1), "an order was announced twice");

        // Stock was taken exactly once per order.
        for (sku, units) in plan.ordered() {
            let p = rig.position(&sku).await;
            assert_eq!(
                (p.on_hand, p.reserved, p.available),
                (plan.initial, units, plan.initial - units),
                "{sku}: reserved exactly what the orders asked"
            );
        }
    }

    /// SKUs the chaos run's orders and counts touch: each change goes out to every channel.
    const CHAOS_SKUS: usize = 4;

    /// Orders of the chaos run (`CHAOS_ORDERS`), each delivered 1 to 5 times, plus malformed deliveries.
    fn chaos_orders() -> usize {
        std::env::var("CHAOS_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_chaos_every_stock_change_reaches_every_channel_or_a_dlq_and_a_redrive_finishes_the_job() {
        // The template's redrive policy (5 receives); a visibility timeout short enough for
        // retries to come back soon, long enough for a batch on a busy emulator.
        let stack = Stack::with_dead_letters(DeadLetters { max_receive: 5, visibility_secs: 10 }).await;
        let proxy = AwsProxy::new(&support::endpoint(), "123456789012");
        let sdk = support::sdk_via(proxy.listen("Functions").await).await;
        let push = PushSettings {
            breaker: BreakerPolicy { failure_threshold: 5, cool_down: Duration::from_secs(1) },
            max_receive_count: 5,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(2),
            auth_delay: Duration::from_secs(2),
            ..PushSettings::default()
        };
        // A delivery whose completion mark failed is taken over after 2 s, not the default minute.
        let settings = Settings { push, claim_lease: chrono::Duration::seconds(2), ..Settings::default() };
        let rig = Rig::new(stack, &sdk, settings, &Channel::ALL).await;
        let orders = chaos_orders();
        let malformed = 3;
        let plan = Plan::new(orders, CHAOS_SKUS, 6_000_000, SEED).with_malformed(malformed);

        // 5% of the functions' AWS calls and 30% of every channel's calls fail.
        let failure = AwsFault::Fail { status: 500, code: "InternalServerError".into() };
        for service in ["dynamodb", "sqs", "events"] {
            proxy.faults.add(&format!("{service}:*"), None, Trigger::Rate(0.05), failure.clone());
        }
        rig.sim.seed_faults(SEED);
        for channel in Channel::ALL {
            rig.sim.inject(FaultSpec { channel, kind: FaultKind::ServerError, probability: Some(0.3), next_n: None });
        }
        rig.count(CHAOS_SKUS, plan.initial, "chaos-initial").await;
        let mut report = run(&rig, &plan, true).await;
        // Stock changes go on: the ERP recounts half the SKUs, and the changes flow out.
        rig.count(CHAOS_SKUS / 2, plan.initial / 2, "chaos-recount").await;
        let recount = run(&rig, &Plan::none(), true).await;
        let wall = report.wall + recount.wall;
        report.absorb(recount);
        let injected = proxy.calls().len();
        eprintln!(
            "chaos: {orders} orders + {malformed} malformed, {} deliveries in {:.1?}; {} sender retries; batch item \
             failures: ingest {}, ledger {}, push {} ({} pushes acknowledged); {injected} AWS calls",
            report.deliveries,
            wall,
            report.sender_retries,
            report.ingest_failures,
            report.ledger_failures,
            report.push_failures,
            report.pushed,
        );
        assert!(
            report.push_failures > 0 && report.sender_retries + report.ingest_failures + report.ledger_failures > 0
        );

        // Every stock change is on every channel, or its push is dead-lettered with its reason.
        let aws = Aws::new(rig.stack.env.clone(), &rig.stack.sdk);
        let mut dead: Vec<(String, DeadLetter)> = Vec::new();
        for route in rig.routes() {
            let shown = dlq::show(&aws, &route, 1_000).await.expect("dlq show");
            dead.extend(shown.messages.into_iter().map(|m| (route.name.clone(), m)));
        }
        for (queue, letter) in &dead {
            assert!(letter.last_error.is_some() || !queue.starts_with("push-"), "{queue}: no reason: {letter:?}");
        }
        for (channel, sku, listed, publishable) in rig.off_channel().await {
            // Its push died, or the change itself (an order or stock event) is still in a DLQ.
            let parked = dead.iter().any(|(queue, letter)| {
                (queue.as_str() == format!("push-{channel}") && letter.body.contains(&format!("\"{sku}\"")))
                    || !queue.starts_with("push-")
            });
            assert!(
                parked,
                "{channel} lists {listed:?} of {sku}, the ledger publishes {publishable}, and no DLQ holds it"
            );
        }

        // Faults off: the dead letters go back to their queues and are consumed.
        proxy.faults.clear();
        rig.sim.clear_faults();
        let routes = rig.routes();
        let redriven = dlq::redrive(&aws, &routes.iter().collect::<Vec<_>>(), false).await.expect("dlq redrive");
        let moved: usize = redriven.queues.iter().map(|q| q.moved).sum();
        assert_eq!(moved, dead.len(), "every dead letter was redriven: {redriven:?}");
        report.absorb(run(&rig, &Plan::none(), true).await);
        for route in &routes {
            assert_eq!(support::queue_depth(&rig.stack.sqs, &route.dlq_url).await, 0, "{} DLQ", route.name);
        }
        let off = rig.off_channel().await;
        assert!(off.is_empty(), "after the redrive every channel lists what the ledger publishes: {off:?}");

        // received = stored + quarantined + duplicates refused.
        let stored = rig.stored_orders().await.len();
        let quarantined = rig.app.quarantine.list(true).await.expect("quarantine").len();
        let refused = report.webhook_duplicates + (report.ingested - stored - quarantined);
        assert_eq!(report.ingested, report.accepted, "every accepted delivery was consumed");
        assert_eq!(stored, orders);
        assert_eq!(quarantined, malformed);
        assert_eq!(report.deliveries, stored + quarantined + refused);
        assert_eq!(refused, plan.deliveries.len() - orders - malformed);
        assert_eq!(report.order_accepted.len(), orders, "every order reached the ledger");
        for (sku, units) in plan.ordered() {
            let p = rig.position(&sku).await;
            assert_eq!(p.reserved, units, "{sku}: each order's stock taken once");
        }
    }
}

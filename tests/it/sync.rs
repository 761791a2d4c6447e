//! Cadences, delta and triggered syncs against moto and the channel simulators: a tick starts exactly
//! the (account, kind) slots that are due; a 10,000-SKU run interrupted halfway resumes from its cursor
//! and queues every SKU exactly once; a second full sync with nothing changed calls no channel; and
//! `manifold sync runs` lists what each run did. The test plays the SyncQueue's event source mapping
//! (moto runs none): it hands each page message to the scheduler's handler, and a page that fails is
//! handed over again, as SQS redelivers it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{TimeDelta, Utc};
use futures::{StreamExt, stream};
use manifold_app::{
    App,
    app::Settings,
    ledger::OnHandUpdate,
    sync::{
        RunStatus, SLOT_LEASE, Slot, SyncKind, SyncRun, Trigger,
        job::{PageMessage, PageOutcome},
        store::{Claim, DynamoSyncStore, SyncStore},
    },
};
use manifold_aws::secrets::StaticSecrets;
use manifold_domain::{
    AccountId, Channel, Sku,
    config::{AccountConfig, Cadence, ChannelConfig, RateLimit, StockRules, SyncCadences},
};
use manifold_ledger::fanout::{PushError, PushJob, PushQueue};
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, Simulator};
use serde_json::json;

use crate::support::{self, Stack};

/// A private stack with a sync queue, and an `App` whose accounts are `accounts` (pointed at `sim`).
struct Rig {
    stack: Stack,
    sync_queue: String,
    app: App,
    store: DynamoSyncStore,
}

impl Rig {
    async fn new(accounts: Vec<AccountConfig>) -> Self {
        let stack = Stack::new().await;
        let sync_queue = support::create_queue(&stack.sqs, "sync").await;
        let creds = json!({ "access_token": "sim-token" }).to_string();
        let secrets = StaticSecrets(accounts.iter().map(|a| (a.secret.clone(), creds.clone())).collect());
        let config = ChannelConfig::of_accounts(accounts);
        let settings =
            Settings { sync_queue_url: Some(sync_queue.clone()), emulator_safe_ledger: true, ..Settings::default() };
        let app = App::build(config, stack.env.clone(), settings, &stack.sdk, Arc::new(secrets)).expect("app");
        let store = DynamoSyncStore::new(stack.ddb.clone(), &stack.env.state_table);
        Self { stack, sync_queue, app, store }
    }

    /// The page messages waiting on the sync queue (received and deleted).
    async fn pages(&self) -> Vec<PageMessage> {
        let mut pages: Vec<PageMessage> = self
            .stack
            .drain(&self.sync_queue)
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap_or_default()).expect("a page message"))
            .collect();
        pages.sort_by(|a, b| (&a.run, a.page).cmp(&(&b.run, b.page)));
        pages
    }

    /// Plays the SyncQueue's mapping until no page is left: every page message to the handler, a
    /// failed one again (SQS's redelivery). Returns how many attempts failed.
    async fn run_pages<Q: PushQueue>(&self, queue: &Q) -> usize {
        let mut failures = 0;
        loop {
            let pages = self.pages().await;
            if pages.is_empty() {
                return failures;
            }
            for page in pages {
                loop {
                    match self.app.sync_page_with(&page, queue, Utc::now()).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(e.is_retryable(), "only retryable failures are injected: {e}");
                            failures += 1;
                            assert!(failures < 10, "a page kept failing: {e}");
                        }
                    }
                }
            }
        }
    }

    async fn run(&self, id: &str) -> SyncRun {
        self.store.run(id).await.expect("read run").expect("the run exists")
    }
}

/// The example configuration's account on `channel`, renamed `id`, pointed at `sim` (or nowhere: a
/// tick calls no channel), with `sync` cadences and no rate limit.
fn account(sim: Option<&SimHandle>, channel: Channel, id: &str, sync: SyncCadences) -> AccountConfig {
    let example = ChannelConfig::parse("channels.example.toml", crate::fixtures::EXAMPLE).expect("example");
    let base = example.accounts.into_iter().find(|a| a.channel == channel).expect("an example account");
    AccountConfig {
        account: AccountId::new(id).unwrap(),
        secret: format!("manifold/{channel}/{id}"),
        endpoint: sim.map_or_else(|| "http://127.0.0.1:9".to_owned(), |s| s.base_url(channel)),
        rate_limit: RateLimit::Unlimited,
        sync,
        stock: StockRules::default(),
        sku_map: BTreeMap::new(),
        item_ids: BTreeMap::new(),
        ..base
    }
}

/// Only the stock tier runs: every 5 minutes, every SKU verified within 15.
fn stock_every_5_verified_within_15() -> SyncCadences {
    SyncCadences {
        orders: Cadence::Realtime,
        stock: every(5),
        prices: Cadence::OnDemand,
        images: Cadence::OnDemand,
        reconcile: Cadence::OnDemand,
        listings: Cadence::OnDemand,
        verify_within: every(15),
    }
}

fn every(minutes: u64) -> Cadence {
    Cadence::Every(Duration::from_mins(minutes))
}

/// Writes positions straight into the ledger table, as the ledger stores them (version 1, `on_hand`
/// available): a 10,000-SKU catalog in a few hundred batch writes rather than 10,000 transactions.
async fn seed_positions(stack: &Stack, skus: &[String], on_hand: i64) {
    let now = Utc::now().to_rfc3339();
    let requests: Vec<WriteRequest> = skus
        .iter()
        .map(|sku| {
            let s = |v: &str| AttributeValue::S(v.to_owned());
            let n = |v: i64| AttributeValue::N(v.to_string());
            let item = HashMap::from([
                ("pk".to_owned(), s(&format!("SKU#{sku}"))),
                ("sk".to_owned(), s("LOC#default")),
                ("sku".to_owned(), s(sku)),
                ("location".to_owned(), s("default")),
                ("on_hand".to_owned(), n(on_hand)),
                ("reserved".to_owned(), n(0)),
                ("available".to_owned(), n(on_hand)),
                ("version".to_owned(), n(1)),
                ("updated_at".to_owned(), s(&now)),
            ]);
            WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build()
        })
        .collect();
    let table = stack.env.ledger_table.clone();
    stream::iter(requests.chunks(25).map(<[WriteRequest]>::to_vec))
        .for_each_concurrent(8, |chunk| {
            let (ddb, table) = (stack.ddb.clone(), table.clone());
            async move {
                let mut pending = HashMap::from([(table, chunk)]);
                while !pending.is_empty() {
                    let out = ddb.batch_write_item().set_request_items(Some(pending)).send().await.expect("seed");
                    pending = out.unprocessed_items.unwrap_or_default();
                    pending.retain(|_, v| !v.is_empty());
                }
            }
        })
        .await;
}

/// Counts what a run queues, per SKU, and fails one enqueue on demand (the interruption).
#[derive(Default)]
struct CountingQueue {
    pushed: Mutex<HashMap<Sku, u32>>,
    enqueues: AtomicU64,
    /// The enqueue with this number (1-based) fails, once.
    fail_at: AtomicU64,
}

impl PushQueue for CountingQueue {
    async fn enqueue(&self, job: &PushJob) -> Result<(), PushError> {
        let n = self.enqueues.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at.compare_exchange(n, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return Err(PushError::Aws {
                operation: "SendMessage",
                retryable: true,
                source: "injected: the consumer lost SQS halfway through the run".into(),
            });
        }
        *self.pushed.lock().unwrap().entry(job.sku.clone()).or_default() += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_tick_starts_exactly_the_due_slots_and_a_second_tick_none() {
    let cadences = |stock, reconcile| SyncCadences {
        orders: Cadence::Realtime,
        stock,
        prices: every(60),
        images: Cadence::OnDemand,
        reconcile,
        listings: Cadence::OnDemand,
        ..SyncCadences::default()
    };
    let rig = Rig::new(vec![
        account(None, Channel::Shopify, "tick-a", cadences(every(5), every(15))),
        account(None, Channel::Shopify, "tick-b", cadences(every(10), every(15))),
    ])
    .await;
    let now = Utc::now();
    let slot = |a: &str, kind| Slot::new(Channel::Shopify, AccountId::new(a).unwrap(), kind);
    // Seeded last runs, each finished: started `ago` minutes before now.
    let seeded = [
        (slot("tick-a", SyncKind::Stock), 6),     // 5m: due
        (slot("tick-a", SyncKind::Reconcile), 3), // 15m: not due
        (slot("tick-a", SyncKind::Prices), 20),   // 1h: not due
        (slot("tick-b", SyncKind::Stock), 4),     // 10m: not due
        (slot("tick-b", SyncKind::Reconcile), 16), // 15m: due
                                                  // tick-b prices: never ran, due; orders (realtime) and images (on demand): never
    ];
    for (slot, ago) in &seeded {
        let at = now - TimeDelta::minutes(*ago);
        let claim = Claim { now: at, due_before: at, lease_until: at, run_id: format!("seed-{slot}") };
        assert!(rig.store.claim(slot, &claim).await.unwrap(), "{slot}");
        rig.store.release(slot, &claim.run_id, at).await.unwrap();
    }
    let first = rig.app.tick(now).await.expect("tick");
    let mut started: Vec<String> = first.started.iter().map(|s| s.slot.clone()).collect();
    started.sort();
    let mut expected: Vec<String> =
        [slot("tick-a", SyncKind::Stock), slot("tick-b", SyncKind::Reconcile), slot("tick-b", SyncKind::Prices)]
            .iter()
            .map(ToString::to_string)
            .collect();
    expected.sort();
    assert_eq!(started, expected);
    // Each started run is recorded as scheduled, holds its slot, and has its first page queued.
    let pages = rig.pages().await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    for s in &first.started {
        let run = rig.run(&s.run).await;
        assert_eq!(
            (run.trigger, run.status, run.slot().to_string()),
            (Trigger::Scheduled, RunStatus::Running, s.slot.clone())
        );
        assert!(pages.contains(&PageMessage { run: s.run.clone(), page: 0 }));
    }
    let states: HashMap<Slot, _> = rig.store.slots().await.unwrap().into_iter().collect();
    let held = &states[&slot("tick-a", SyncKind::Stock)];
    assert_eq!(held.lease_until.map(|l| l.timestamp_millis()), Some((now + SLOT_LEASE).timestamp_millis()));

    // A second tick right after, and one overlapping it: nothing is due any more.
    let (second, overlapping) = tokio::join!(rig.app.tick(now + TimeDelta::seconds(1)), rig.app.tick(now));
    assert!(second.unwrap().started.is_empty());
    assert!(overlapping.unwrap().started.is_empty());
    assert!(rig.pages().await.is_empty(), "no page queued by the later ticks");
}

#[tokio::test]
async fn a_10000_sku_sync_interrupted_halfway_resumes_from_its_cursor_and_queues_each_sku_once() {
    const SKUS: usize = 10_000;
    let rig = Rig::new(vec![account(None, Channel::Shopify, "big-catalog", SyncCadences::default())]).await;
    let skus: Vec<String> = (0..SKUS).map(|i| format!("BIG-{i:05}")).collect();
    seed_positions(&rig.stack, &skus, 5).await;

    let slot = Slot::new(Channel::Shopify, AccountId::new("big-catalog").unwrap(), SyncKind::Stock);
    let run = rig.app.start_sync(slot, Trigger::Api, true, Utc::now()).await.expect("start");
    let queue = CountingQueue::default();
    queue.fail_at.store(SKUS as u64 / 2, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let failures = rig.run_pages(&queue).await;
    assert_eq!(failures, 1, "the run was interrupted once, halfway");
    let elapsed = started.elapsed();

    let pushed = queue.pushed.lock().unwrap().clone();
    let twice: Vec<_> = pushed.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "SKUs queued more than once: {:?}", &twice[..twice.len().min(5)]);
    assert_eq!(pushed.len(), SKUS, "every SKU queued");
    let ended = rig.run(&run.id).await;
    assert_eq!(ended.status, RunStatus::Finished, "{ended:?}");
    assert_eq!(ended.examined, SKUS as u64, "each position examined once, the redone page counted once");
    assert_eq!(ended.pushed, SKUS as u64, "what the interrupted attempt queued is counted too");
    assert!(ended.pages > 2, "the run went in pages: {}", ended.pages);
    assert_eq!(ended.cursor, None);
    println!(
        "10,000-SKU run: {} pages, {} queued, one interruption, {:.0} s on moto ({:.0} SKUs/s through the gate)",
        ended.pages,
        ended.pushed,
        elapsed.as_secs_f64(),
        f64::from(u32::try_from(SKUS).unwrap_or(u32::MAX)) / elapsed.as_secs_f64()
    );

    // The same page message again (SQS delivers at least once): nothing is redone.
    let again = rig.app.sync_page_with(&PageMessage { run: run.id.clone(), page: 0 }, &queue, Utc::now()).await;
    assert_eq!(again.unwrap(), PageOutcome::AlreadyDone);
    assert_eq!(queue.pushed.lock().unwrap().values().map(|n| *n as usize).sum::<usize>(), SKUS);
}

#[tokio::test]
async fn a_second_full_sync_with_nothing_changed_calls_no_channel_and_sync_runs_lists_both() {
    let sim = Simulator::start(SimConfig::default().unlimited(Channel::Shopify)).await.expect("simulator");
    let id = support::unique("delta").to_lowercase();
    let rig = Rig::new(vec![account(Some(&sim), Channel::Shopify, &id, SyncCadences::default())]).await;
    let skus: Vec<String> = (0..20).map(|i| format!("DELTA-{i:02}")).collect();
    sim.seed_catalog(
        Channel::Shopify,
        skus.iter()
            .enumerate()
            .map(|(i, sku)| CatalogItem {
                id: (1000 + i).to_string(),
                sku: sku.clone(),
                quantity: 0,
                product_id: None,
                variant_id: None,
                price_minor: None,
            })
            .collect(),
    );
    seed_positions(&rig.stack, &skus, 7).await;
    let push_queue = rig.stack.env.push_queues[&Channel::Shopify].clone();
    let slot = Slot::new(Channel::Shopify, AccountId::new(&id).unwrap(), SyncKind::Stock);

    // First full sync: every SKU goes to the push queue, and the push consumer delivers them.
    let first = rig.app.start_sync(slot.clone(), Trigger::Cli, true, Utc::now()).await.expect("start");
    assert_eq!(rig.run_pages(&*rig.app.push_queue).await, 0);
    let jobs = rig.stack.drain(&push_queue).await;
    assert_eq!(jobs.len(), skus.len());
    for batch in jobs.chunks(10) {
        let response = rig.app.push_batch(Channel::Shopify, support::lambda_event(batch)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let calls = sim.snapshot().requests.get(&Channel::Shopify).copied().unwrap_or(0);
    assert!(calls > 0, "the first sync reached the channel");

    // Second full sync, nothing changed: every SKU examined, none queued, no channel call.
    let second = rig.app.start_sync(slot, Trigger::Cli, true, Utc::now()).await.expect("start");
    assert_eq!(rig.run_pages(&*rig.app.push_queue).await, 0);
    assert!(rig.stack.drain(&push_queue).await.is_empty(), "nothing queued");
    assert_eq!(sim.snapshot().requests.get(&Channel::Shopify).copied().unwrap_or(0), calls, "no channel call");

    // `manifold sync runs`: both runs with what they did.
    let today = Utc::now().date_naive();
    let report = manifold_cli::commands::sync::runs(&rig.store, 1, today, Some(Channel::Shopify), Some(&id))
        .await
        .expect("runs");
    let got: Vec<_> = report.runs.iter().map(|r| (r.id.as_str(), r.trigger, r.status, r.examined, r.pushed)).collect();
    assert_eq!(
        got,
        [
            (first.id.as_str(), Trigger::Cli, RunStatus::Finished, 20, 20),
            (second.id.as_str(), Trigger::Cli, RunStatus::Finished, 20, 0),
        ]
    );
    // `manifold sync` follows a run until it ends, one progress line per page.
    let mut lines = Vec::new();
    let followed = manifold_cli::commands::sync::follow(&rig.store, &second.id, Duration::from_millis(50), |run| {
        lines.push(manifold_cli::commands::sync::progress_line(run));
    })
    .await
    .expect("follow");
    assert_eq!(followed.status, RunStatus::Finished);
    assert!(lines.last().is_some_and(|l| l.contains("finished") && l.contains("examined 20, pushed 0")), "{lines:?}");
    let text = manifold_cli::output::Human::human(&report);
    assert!(text.contains("TRIGGER") && text.contains("cli") && text.contains(&second.id), "{text}");
    assert!(report.runs.iter().all(|r| r.finished_at.is_some()));
}

#[tokio::test]
async fn the_stock_tier_reads_the_channel_corrects_drift_once_and_verifies_every_sku_within_its_period() {
    // An account whose stock tier runs every 5 minutes and verifies every SKU within 15 minutes: three
    // slices of the catalog, one per run after the first.
    let sim = Simulator::start(SimConfig::default().unlimited(Channel::Shopify)).await.expect("simulator");
    let id = support::unique("drift").to_lowercase();
    let cadences = stock_every_5_verified_within_15();
    let rig = Rig::new(vec![account(Some(&sim), Channel::Shopify, &id, cadences)]).await;
    // The ledger publishes 4 of each SKU; the channel shows 7 of the first (edited in its admin).
    let skus: Vec<String> = (0..3).map(|i| format!("DRIFT-{i}")).collect();
    let shown = [7, 4, 4];
    sim.seed_catalog(
        Channel::Shopify,
        skus.iter()
            .zip(shown)
            .enumerate()
            .map(|(i, (sku, quantity))| CatalogItem {
                id: format!("gid://shopify/InventoryItem/{}", 2000 + i),
                sku: sku.clone(),
                quantity,
                product_id: Some(format!("gid://shopify/Product/{}", 2000 + i)),
                variant_id: Some(format!("gid://shopify/ProductVariant/{}", 2000 + i)),
                price_minor: None,
            })
            .collect(),
    );
    seed_positions(&rig.stack, &skus, 4).await;
    let push_queue = rig.stack.env.push_queues[&Channel::Shopify].clone();
    let recorder = manifold_telemetry::Recorder::start();
    let start = Utc::now() - TimeDelta::seconds(10);

    // The tier's first run walks the whole catalog, reads the channel, and queues only the drifted SKU.
    let tick = rig.app.tick(start).await.expect("tick");
    assert_eq!(tick.started.len(), 1, "{tick:?}");
    assert_eq!(rig.run_pages(&*rig.app.push_queue).await, 0);
    let first = rig.run(&tick.started[0].run).await;
    assert_eq!((first.status, first.examined, first.pushed, first.drift), (RunStatus::Finished, 3, 1, 3), "{first:?}");
    let jobs = rig.stack.drain(&push_queue).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].body().unwrap_or_default().contains("\"DRIFT-0\""), "{jobs:?}");
    let response = rig.app.push_batch(Channel::Shopify, support::lambda_event(&jobs)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let on_channel = sim.snapshot().stock.get(&Channel::Shopify).cloned().unwrap_or_default();
    let drifted = on_channel.get("gid://shopify/InventoryItem/2000");
    assert_eq!(drifted, Some(&4), "the channel shows what the ledger publishes: {on_channel:?}");
    let is_account = |d: &serde_json::Value| d["Account"] == id.as_str();
    let metric = recorder.sum("StockDrift", is_account);
    assert!((metric - 3.0).abs() < 1e-9, "StockDrift per account counted 3 units, counted {metric}");

    // The ERP recounts one SKU: the ledger publishes it at once (and the push delivers it).
    let recount =
        OnHandUpdate { on_hand: 6, location: None, source_ref: Some(support::unique("recount")), as_of: None };
    rig.app.set_on_hand("DRIFT-1", &recount, "t-recount", Utc::now()).await.expect("recount");
    let jobs = rig.stack.drain(&push_queue).await;
    assert_eq!(jobs.len(), 1);
    assert!(rig.app.push_batch(Channel::Shopify, support::lambda_event(&jobs)).await.batch_item_failures.is_empty());

    // The next three runs each walk what changed since the previous one (the recount, found in the
    // ledger's Changed index, in the first of them) and one slice: together every SKU once plus the
    // changed one, all verified, nothing queued.
    let mut examined = 0;
    for run in 1..=3 {
        let now = start + TimeDelta::minutes(5 * run + 1);
        let tick = rig.app.tick(now).await.expect("tick");
        assert_eq!(tick.started.len(), 1, "run {run}: {tick:?}");
        assert_eq!(rig.run_pages(&*rig.app.push_queue).await, 0);
        let done = rig.run(&tick.started[0].run).await;
        assert_eq!((done.status, done.pushed, done.drift), (RunStatus::Finished, 0, 0), "run {run}: {done:?}");
        examined += done.examined;
    }
    assert_eq!(examined, 3 + 1, "the slices of one period cover the catalog once, plus what changed");
    assert!(rig.stack.drain(&push_queue).await.is_empty(), "nothing queued without drift");
}

/// Zalando documents no stock read: its stock runs offer what changed without reading the channel,
/// and count no failed sync (the "5 failed syncs in 10 minutes" alarm would fire on every run).
#[tokio::test]
async fn a_channel_without_a_stock_read_is_not_read_and_fails_no_sync() {
    let sim = Simulator::start(SimConfig::default().unlimited(Channel::Zalando)).await.expect("simulator");
    let id = support::unique("noread").to_lowercase();
    let cadences = stock_every_5_verified_within_15();
    let rig = Rig::new(vec![account(Some(&sim), Channel::Zalando, &id, cadences)]).await;
    let skus: Vec<String> = (0..2).map(|i| format!("NOREAD-{i}")).collect();
    seed_positions(&rig.stack, &skus, 4).await;
    let recorder = manifold_telemetry::Recorder::start();
    let tick = rig.app.tick(Utc::now()).await.expect("tick");
    assert_eq!(tick.started.len(), 1, "{tick:?}");
    assert_eq!(rig.run_pages(&*rig.app.push_queue).await, 0);
    let run = rig.run(&tick.started[0].run).await;
    assert_eq!((run.status, run.examined, run.pushed, run.drift), (RunStatus::Finished, 2, 2, 0), "{run:?}");
    let read_failures = recorder.sum("SyncFailed", |d| d["Channel"] == "zalando" && d["Operation"] == "read_stock");
    assert!(read_failures.abs() < 1e-9, "a read the channel does not offer is no failed sync: {read_failures}");
    let requests = sim.snapshot().requests.get(&Channel::Zalando).copied().unwrap_or(0);
    assert_eq!(requests, 0, "the channel was not asked for stock it cannot show");
}
